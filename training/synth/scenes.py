"""Detection scenes: real garment photos pasted 1-4 at a time into phone-photo-like frames, with boxes.

The real photos have one garment each and no boxes, so boxes are made by composing: a scene is
a frame with garments cut out of other photos pasted on it, and a garment's box is the box of
its pixels that are still visible at the end. `SceneComposer(items, root=..., mask_dir=...)`
makes scene `index` of a seed, the same on every machine (`np.random.default_rng([seed, index])`;
the garment masks are GrabCut's, see `training.synth.colors`, cached as PNGs).

Method
------
1. Frame: long side 480-1024 px; 15% square (as posted on Instagram), the rest 3:4 (three in
   four) or 9:16, portrait two times in three.
2. Background, one of: procedural clutter (floor, bed, tiles with things lying about;
   `photo.clutter`, 35%), another photo's background (the largest strip of a real photo outside
   its garment mask's box, scaled up to cover the frame; the blurred photo when every strip is
   under 24 px, 25%), a whole real photo heavily blurred (10%), a flat muted colour (15%) or a
   gradient of two (15%).
3. 1-4 garments, each from a different source photo, the garment's box long side log-uniform
   in 10-80% of the frame's long side (capped so that what is pasted fits the frame), rotated by
   up to 10 degrees, at most 25% of its box outside the frame, and placed, of 8 tries, where it
   covers least of the garments already there (partial overlap is allowed). 70% are pasted as a
   "cutout" (the garment alone through its mask, a soft shadow under it, like `photo.compose`);
   30% as a "photo": the whole source photo as a rectangle, its own background included and
   sometimes a white (print) or black (screen) border, slightly perspective-warped, as a shopper
   photographs a catalogue picture among clutter. Its box is still the garment's mask
   inside the rectangle, never the rectangle.
4. A later garment covers earlier ones (including its soft rim, alpha > 0.2). After the last
   paste every garment's box is the box of its still-visible mask pixels in the frame, slivers
   under 5 px thin removed (an edge peeking out beside a later garment); one with less than 40%
   of its pixels visible (covered or outside the frame) or a box side under 8 px is left
   unannotated.
5. Lighting, blur, noise and JPEG as `photo.relight`, `photo.degrade`, `photo.jpeg_roundtrip`.
6. 12% of scenes are instead a "catalogue shot": one source photo as the whole frame, up to 8%
   cropped off each side, relit and degraded, its garment's mask box the one annotation. Shops'
   photos look like this, and the indexer crops each to its main item.

Annotations carry the box (xyxy, float, scene pixels), the class (the source's folder name),
the source photo (relative to `root`, for "find the source photo" evaluation) and the visible
share. Backgrounds are drawn from the same items as the garments, so train scenes come from the
train split only and evaluation scenes from the validation split only: the split is just which
folder `scene_items` reads.

Limits
------
- A garment is as good as its GrabCut mask: background of the garment's colour or clutter
  touching it is pasted along; where GrabCut failed an ellipse stands in (~1% of photos), whose
  box is then the ellipse's.
- In photo mode the source's own background comes along, with whatever else is in it (a second
  garment, a bag, a hanger): those are in the picture but not annotated.
- A garment more than 60% covered is still in the picture, unannotated; its visible rest is
  then background to a detector.
- Backgrounds from real photos are strips beside a garment (floor, bedspread, wall) scaled up,
  so soft; scenes hold no people and no garment being worn.
- No global perspective or crop of the frame (boxes would have to follow); light is global.

Speed, one OpenCV thread on a shared 2-core build machine, masks cached: ~10 scenes/s at the
default long side 480-1024 (mean ~750), ~15/s at 640 x 640, ~45/s at 320 x 320 (`--long-side`);
half the time is `photo.relight`, `photo.degrade` and `photo.clutter`. On a mask cache miss
GrabCut adds ~0.2 s per photo: `python -m training.synth.colors masks ROOT --out DIR` first.
`write_scenes` runs `workers` processes; 32 scenes of the default size are ~2.5 MB of JPEG.

    python -m training.synth.colors masks ../shared/data/clothing/train --out var/masks/train
    python -m training.synth.scenes --data-dir ../shared/data/clothing --split train --count 4000 \\
        --out var/scenes/train --mask-dir var/masks/train
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from training.datasets import FolderDataset, load_image
from training.detector.coco import category_ids, read_coco, write_coco
from training.synth.colors import load_mask, mask_cache_path
from training.synth.photo import background_crop, clutter, degrade, jpeg_roundtrip, random_colour, relight

logger = logging.getLogger(__name__)

BACKGROUNDS = ("clutter", "photo", "blurred", "flat", "gradient")
MAX_SOURCE_SIDE = 1024  # larger source photos are shrunk first: no scene needs more
PLACEMENT_TRIES = 8
ACCEPTED_COVER = 0.5  # a position covering at most this share of an earlier garment's box is taken at once
MIN_STRIP = 24  # px: a background strip narrower than this is too little to scale up
SLIVER_KERNEL = np.ones((5, 5), np.uint8)  # visible parts thinner than this are dropped from a garment's box
COVERS = 0.2  # alpha above which a paste hides what is under it


@dataclass(frozen=True)
class SceneAnnotation:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the visible garment pixels, in scene pixels
    category: str
    source: str  # the source photo, relative to the composer's root
    visible: float  # share of the pasted garment's pixels that are visible (not covered, inside the frame)


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    annotations: list[SceneAnnotation]
    background: str = ""  # "clutter", "flat", "gradient", or "photo:<source>" / "blurred:<source>"
    # With `keep_masks`: each annotation's visible pixels, (height, width) bool, for checking.
    masks: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)


@dataclass
class _Layer:
    """A warped paste: `rgb`, `alpha` (what it covers) and `garment` (its garment's pixels) at (left, top)."""

    left: int
    top: int
    rgb: np.ndarray
    alpha: np.ndarray
    garment: np.ndarray

    def clip(self, width: int, height: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
        """(frame slices, layer slices) of the part inside a `width` x `height` frame, None if none is."""
        x0, y0 = max(self.left, 0), max(self.top, 0)
        x1, y1 = min(self.left + self.alpha.shape[1], width), min(self.top + self.alpha.shape[0], height)
        if x1 <= x0 or y1 <= y0:
            return None
        frame = (slice(y0, y1), slice(x0, x1))
        own = (slice(y0 - self.top, y1 - self.top), slice(x0 - self.left, x1 - self.left))
        return frame, own


@dataclass(frozen=True)
class SceneComposer:
    """`composer(index)` -> the `index`-th `Scene` of this seed, from `items` = (image path, class name)."""

    items: Sequence[tuple[Path, str]]
    _: KW_ONLY
    root: Path  # annotations name sources relative to this
    mask_dir: Path
    mask_root: Path | None = None  # what the mask cache mirrors (the split folder); None: `root`
    seed: int = 0
    min_items: int = 1
    max_items: int = 4
    scale: tuple[float, float] = (0.1, 0.8)  # garment box long side / frame long side, log-uniform
    photo_mode_fraction: float = 0.3
    long_side: tuple[int, int] = (480, 1024)
    square_fraction: float = 0.15
    max_rotation_degrees: float = 10.0
    max_perspective: float = 0.06  # photo mode: corner shift, share of the rectangle's size
    max_outside: float = 0.25  # share of a garment's box allowed outside the frame
    max_occlusion: float = 0.6  # a garment with less than 1 - this visible is not annotated
    min_box: int = 8
    jpeg_quality: tuple[int, int] = (50, 90)
    backgrounds: tuple[tuple[str, float], ...] = (
        ("clutter", 0.35),
        ("photo", 0.25),
        ("blurred", 0.1),
        ("flat", 0.15),
        ("gradient", 0.15),
    )
    keep_masks: bool = False
    catalogue_shot_fraction: float = 0.12  # scenes that are one source photo filling the frame
    max_catalogue_crop: float = 0.08  # of each side of a catalogue shot

    def __post_init__(self) -> None:
        items = tuple((Path(path), str(name)) for path, name in self.items)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "mask_dir", Path(self.mask_dir))
        if not items:
            raise ValueError("no source photos given")
        if not 1 <= self.min_items <= self.max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {self.min_items}, {self.max_items}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be 0 < low <= high, got {self.scale}")
        unknown = sorted({name for name, _ in self.backgrounds} - set(BACKGROUNDS))
        if unknown or not self.backgrounds:
            raise ValueError(f"backgrounds must be weights of {list(BACKGROUNDS)}, got {self.backgrounds}")

    @property
    def classes(self) -> list[str]:
        return sorted({name for _, name in self.items})

    def __call__(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, index])
        if rng.random() < self.catalogue_shot_fraction:
            return self._catalogue_shot(rng)
        width, height = self._frame_size(rng)
        canvas, background = self._background((width, height), rng)
        count = min(int(rng.integers(self.min_items, self.max_items + 1)), len(self.items))
        placed: list[tuple[int, np.ndarray, int, tuple[float, float, float, float]]] = []
        for item in rng.choice(len(self.items), size=count, replace=False):
            rgb, mask = self._load(self.items[item][0])
            photo_mode = rng.random() < self.photo_mode_fraction
            layer = self._layer(rgb, mask, photo_mode, (width, height), [box for *_, box in placed], rng)
            total = int(layer.garment.sum())
            clipped = layer.clip(width, height)
            if clipped is None or total == 0:
                continue
            frame, own = clipped
            _cast_shadow(canvas, layer, 0.4 if photo_mode else 1.0, rng)
            alpha = layer.alpha[own][..., None]
            canvas[frame] = canvas[frame] * (1 - alpha) + layer.rgb[own] * alpha
            covered = layer.alpha[own] > COVERS  # its soft rim too: no slivers peeking out along it
            for _, visible, _, _ in placed:
                visible[frame] &= ~covered
            visible = np.zeros((height, width), bool)
            visible[frame] = layer.garment[own]
            garment_box = _mask_box(layer.garment, layer.left, layer.top)
            placed.append((int(item), visible, total, garment_box))

        photo = degrade(relight(canvas, rng), rng)
        image = jpeg_roundtrip(photo, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        annotations, masks = [], []
        for item, visible, total, _ in placed:
            # Slivers a few pixels thin (an edge peeking out beside a later garment) are not worth a box.
            visible = cv2.morphologyEx(visible.view(np.uint8), cv2.MORPH_OPEN, SLIVER_KERNEL).view(bool)
            share = float(visible.sum()) / total
            box = _mask_box(visible)
            if share < 1 - self.max_occlusion or min(box[2] - box[0], box[3] - box[1]) < self.min_box:
                continue
            path, category = self.items[item]
            annotations.append(SceneAnnotation(box, category, self._relative(path), round(share, 3)))
            masks.append(visible)
        return Scene(image, annotations, background, tuple(masks) if self.keep_masks else ())

    def _catalogue_shot(self, rng: np.random.Generator) -> Scene:
        """One source photo as the whole scene, a little cropped: what a shop's catalogue photo looks like.

        The detector must find the big garment that fills a plain photo (the indexer crops every
        catalogue photo to its main item), which pasted garments of 10-80% of the frame rarely teach.
        """
        item = int(rng.integers(len(self.items)))
        rgb, mask = self._load(self.items[item][0])
        height, width = mask.shape
        cut = rng.uniform(0, self.max_catalogue_crop, 4) * [width, height, width, height]
        left, top = int(cut[0]), int(cut[1])
        right, bottom = width - int(cut[2]), height - int(cut[3])
        visible = mask[top:bottom, left:right]
        photo = degrade(relight(rgb[top:bottom, left:right].astype(np.float32) / 255, rng), rng)
        image = jpeg_roundtrip(photo, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        share = float(visible.sum()) / max(1, int(mask.sum()))
        box = _mask_box(visible) if visible.any() else (0.0, 0.0, 0.0, 0.0)
        path, category = self.items[item]
        annotations, masks = [], []
        if share >= 1 - self.max_occlusion and min(box[2] - box[0], box[3] - box[1]) >= self.min_box:
            annotations.append(SceneAnnotation(box, category, self._relative(path), round(share, 3)))
            masks.append(visible)
        return Scene(image, annotations, "catalogue", tuple(masks) if self.keep_masks else ())

    # -----------------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), self.root.resolve())).as_posix()

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The source photo (uint8 RGB) and its garment mask; the whole photo when the mask is empty."""
        image = load_image(path)
        mask = load_mask(self.mask_dir, self.mask_root or self.root, path, image=image)
        rgb = np.asarray(image)
        if max(rgb.shape[:2]) > MAX_SOURCE_SIDE:
            factor = MAX_SOURCE_SIDE / max(rgb.shape[:2])
            size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        return rgb, (mask if mask.any() else np.ones_like(mask))

    def _frame_size(self, rng: np.random.Generator) -> tuple[int, int]:
        """(width, height) of a phone photo: square, 3:4 or 9:16, portrait two times in three."""
        long_side = int(rng.integers(self.long_side[0], self.long_side[1] + 1))
        if rng.random() < self.square_fraction:
            return long_side, long_side
        short_side = round(long_side * (3 / 4 if rng.random() < 0.75 else 9 / 16))
        return (short_side, long_side) if rng.random() < 2 / 3 else (long_side, short_side)

    def _background(self, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A float RGB (h, w, 3) background and what it is."""
        names, weights = zip(*self.backgrounds, strict=True)
        kind = names[rng.choice(len(names), p=np.asarray(weights) / sum(weights))]
        width, height = size
        if kind in ("photo", "blurred"):
            path = self.items[rng.integers(len(self.items))][0]
            rgb, mask = self._load(path)
            strip = _background_strip(rgb, mask) if kind == "photo" else None
            if strip is None:  # the garment leaves no background: blur the whole photo instead
                kind, side = "blurred", int(rng.integers(12, 40))
                factor = side / max(rgb.shape[:2])
                small = (max(2, round(rgb.shape[1] * factor)), max(2, round(rgb.shape[0] * factor)))
                strip = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
            canvas = background_crop(Image.fromarray(np.ascontiguousarray(strip)), size, rng)
            if kind == "blurred":
                canvas = cv2.GaussianBlur(canvas, (0, 0), 0.01 * max(size))
            return np.ascontiguousarray(canvas), f"{kind}:{self._relative(path)}"
        if kind == "clutter":
            return clutter(size, rng), kind
        first = random_colour(rng, (0.0, 0.3), (0.15, 0.95))
        canvas = np.ones((height, width, 3), np.float32) * first
        if kind == "gradient":
            second = random_colour(rng, (0.0, 0.3), (0.15, 0.95))
            angle = rng.uniform(0, 2 * np.pi)
            y, x = np.mgrid[:height, :width].astype(np.float32)
            ramp = (x / width - 0.5) * np.cos(angle) + (y / height - 0.5) * np.sin(angle)
            ramp = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
            canvas = first * (1 - ramp) + second * ramp
        return canvas.astype(np.float32), kind

    def _layer(
        self,
        rgb: np.ndarray,
        mask: np.ndarray,
        photo_mode: bool,
        frame: tuple[int, int],
        taken: list[tuple[float, float, float, float]],
        rng: np.random.Generator,
    ) -> _Layer:
        """The source warped into the frame: the garment alone, or (photo mode) the whole photo."""
        width, height = frame
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        garment_w, garment_h = cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]
        garment_centre = np.array([(cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2])
        if photo_mode:
            border = int(rng.uniform(0.02, 0.06) * min(rgb.shape[:2])) if rng.random() < 0.5 else 0
            fill = (245, 245, 240) if rng.random() < 0.6 else (20, 20, 22)  # a print, or a phone or monitor
            source = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_CONSTANT, value=fill)
            garment = cv2.copyMakeBorder(mask.astype(np.uint8), border, border, border, border, cv2.BORDER_CONSTANT)
            alpha = np.ones(source.shape[:2], np.float32)
            garment_centre = garment_centre + border
            covered_w, covered_h = source.shape[1], source.shape[0]
        else:
            window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            source, garment = rgb[window], mask[window].astype(np.uint8)
            # Eroding by one pixel keeps the catalogue background's rim out of the scene (as photo.compose).
            alpha = cv2.erode(garment, np.ones((3, 3), np.uint8)).astype(np.float32)
            garment_centre = np.array([garment_w / 2, garment_h / 2])
            covered_w, covered_h = garment_w, garment_h

        low, high = np.log(self.scale[0]), np.log(self.scale[1])
        zoom = float(np.exp(rng.uniform(low, high))) * max(width, height) / max(garment_w, garment_h)
        zoom = min(zoom, width / covered_w, height / covered_h)  # what is pasted fits the frame
        centre = self._position(
            (garment_w * zoom, garment_h * zoom), (covered_w * zoom, covered_h * zoom), frame, taken, rng
        )
        angle = rng.uniform(-self.max_rotation_degrees, self.max_rotation_degrees)
        matrix = np.vstack([cv2.getRotationMatrix2D((0.0, 0.0), angle, zoom), [0, 0, 1]])
        matrix[:2, 2] = centre - matrix[:2, :2] @ garment_centre
        if photo_mode and self.max_perspective > 0:
            corners = _corners(source.shape[1], source.shape[0])
            placed = cv2.perspectiveTransform(corners[None], matrix)[0]
            shift = rng.uniform(-self.max_perspective, self.max_perspective, (4, 2)) * zoom * [covered_w, covered_h]
            matrix = cv2.getPerspectiveTransform(corners, (placed + shift).astype(np.float32))
        left, top, rgb_out, (alpha_out, garment_out) = _warp(source, [alpha, garment.astype(np.float32)], matrix)
        if not photo_mode:
            alpha_out = cv2.GaussianBlur(alpha_out, (0, 0), 0.8)
        garment_out = (garment_out > 0.5) & (alpha_out > 0.5)
        return _Layer(left, top, rgb_out, alpha_out, garment_out)

    def _position(
        self,
        garment_size: tuple[float, float],
        covered_size: tuple[float, float],
        frame: tuple[int, int],
        taken: list[tuple[float, float, float, float]],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The garment's centre: of a few random tries, the one covering least of the garments already placed."""
        best, best_cover = None, math.inf
        for _ in range(PLACEMENT_TRIES):
            centre = np.array(
                [_axis_position(garment_size[axis], frame[axis], self.max_outside, rng) for axis in range(2)]
            )
            half = np.asarray(covered_size) / 2  # photo mode: roughly, the rectangle is centred on the garment
            cover = max((_cover((*(centre - half), *(centre + half)), box) for box in taken), default=0.0)
            if cover < best_cover:
                best, best_cover = centre, cover
            if cover <= ACCEPTED_COVER:
                break
        return best


def _axis_position(size: float, extent: int, max_outside: float, rng: np.random.Generator) -> float:
    """A centre along one axis keeping at most `max_outside` of `size` outside [0, extent]."""
    low, high = size / 2 - max_outside * size, extent - size / 2 + max_outside * size
    return float(rng.uniform(low, high)) if low < high else extent / 2


def _cover(box: Sequence[float], other: Sequence[float]) -> float:
    """Share of `other`'s area inside `box`."""
    width = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    height = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    return width * height / max((other[2] - other[0]) * (other[3] - other[1]), 1e-6)


def _corners(width: int, height: int) -> np.ndarray:
    return np.float32([[0, 0], [width, 0], [width, height], [0, height]])


def _warp(
    rgb: np.ndarray, planes: list[np.ndarray], matrix: np.ndarray
) -> tuple[int, int, np.ndarray, list[np.ndarray]]:
    """Warp uint8 `rgb` and float `planes` by the 3x3 `matrix` into their own box: (left, top, rgb, planes).

    The source is first shrunk with area averaging to about the output's scale, so small pastes
    do not alias.
    """
    height, width = rgb.shape[:2]
    zoom = math.sqrt(abs(np.linalg.det(matrix[:2, :2] / matrix[2, 2])))
    if zoom < 0.8:
        size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        planes = [cv2.resize(plane, size, interpolation=cv2.INTER_AREA) for plane in planes]
        matrix = matrix @ np.diag([width / size[0], height / size[1], 1.0])
        height, width = size[1], size[0]
    placed = cv2.perspectiveTransform(_corners(width, height)[None], matrix)[0]
    left, top = np.floor(placed.min(axis=0)).astype(int)
    right, bottom = np.ceil(placed.max(axis=0)).astype(int)
    matrix = np.array([[1, 0, -left], [0, 1, -top], [0, 0, 1]], np.float64) @ matrix
    size = (int(right - left), int(bottom - top))
    warped = cv2.warpPerspective(rgb.astype(np.float32) / 255, matrix, size, flags=cv2.INTER_LINEAR)
    planes = [cv2.warpPerspective(plane, matrix, size, flags=cv2.INTER_LINEAR) for plane in planes]
    return int(left), int(top), warped, planes


def _cast_shadow(canvas: np.ndarray, layer: _Layer, strength: float, rng: np.random.Generator) -> None:
    """Darken `canvas` under a blurred, slightly offset copy of the layer's alpha (in place)."""
    height, width = canvas.shape[:2]
    size = max(layer.alpha.shape)
    blur = max(3, int(0.04 * size) | 1)
    offset = np.array([rng.uniform(-0.02, 0.02), rng.uniform(0, 0.03)]) * size
    pad = 2 * blur + int(np.abs(offset).max()) + 1
    x0, y0 = max(0, layer.left - pad), max(0, layer.top - pad)
    x1 = min(width, layer.left + layer.alpha.shape[1] + pad)
    y1 = min(height, layer.top + layer.alpha.shape[0] + pad)
    if x1 <= x0 or y1 <= y0:
        return
    move = np.float32([[1, 0, layer.left - x0 + offset[0]], [0, 1, layer.top - y0 + offset[1]]])
    shadow = cv2.warpAffine(layer.alpha, move, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    shadow = cv2.blur(cv2.blur(shadow, (blur, blur)), (blur, blur))  # two box blurs: soft, at any size
    canvas[y0:y1, x0:x1] *= 1 - strength * rng.uniform(0.15, 0.4) * shadow[..., None]


def _background_strip(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The largest strip of `rgb` beside its mask's box (left, right, above or below), or None if all are thin."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    strips = [rgb[:, : cols[0]], rgb[:, cols[-1] + 1 :], rgb[: rows[0]], rgb[rows[-1] + 1 :]]
    strips = [strip for strip in strips if min(strip.shape[:2]) >= MIN_STRIP]
    return max(strips, key=lambda strip: strip.shape[0] * strip.shape[1], default=None)


def _mask_box(mask: np.ndarray, left: int = 0, top: int = 0) -> tuple[float, float, float, float]:
    """Pixel-edge box (x0, y0, x1, y1) of a non-empty mask, shifted by (left, top)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return (float(left), float(top), float(left), float(top))
    return (float(cols[0] + left), float(rows[0] + top), float(cols[-1] + 1 + left), float(rows[-1] + 1 + top))


# ---------------------------------------------------------------------------------------------
# Writing a scene set


def scene_items(data_dir: Path, split: str) -> list[tuple[Path, str]]:
    """(image path, class) of every photo in DATA_DIR/SPLIT/<class>/: only that split's photos."""
    dataset = FolderDataset(Path(data_dir) / split)
    return [(sample.path, dataset.classes[sample.label]) for sample in dataset.samples]


def _config(composer: SceneComposer) -> dict:
    """What makes a scene set: the composer's settings and a digest of its items (paths relative to `root`)."""
    config = {
        item.name: getattr(composer, item.name)
        for item in dataclasses.fields(composer)
        if item.name not in ("items", "root", "mask_dir", "mask_root", "keep_masks")  # paths: as spelt
    }
    items = "\n".join(f"{composer._relative(path)}\t{name}" for path, name in composer.items)
    config["items"] = hashlib.sha256(items.encode()).hexdigest()[:16]
    return json.loads(json.dumps(config, default=str))


_worker: tuple[SceneComposer, Path] | None = None


def _init_worker(composer: SceneComposer, out_dir: Path, single_thread: bool = True) -> None:
    global _worker
    if single_thread:  # one scene per process: OpenCV's own threads would only contend
        cv2.setNumThreads(1)
    _worker = (composer, out_dir)


def _write_one(index: int) -> int:
    composer, out_dir = _worker
    scene = composer(index)
    name = f"{index:06d}"
    image_path = out_dir / "images" / f"{name}.jpg"
    partial = image_path.with_name(f".{name}.{os.getpid()}.tmp")
    scene.image.save(partial, format="JPEG", quality=95)
    partial.replace(image_path)
    label = {
        "file_name": f"images/{name}.jpg",
        "width": scene.image.width,
        "height": scene.image.height,
        "background": scene.background,
        "annotations": [dataclasses.asdict(item) for item in scene.annotations],
    }
    label_path = out_dir / "labels" / f"{name}.json"
    partial = label_path.with_name(f".{name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(label), encoding="utf-8")
    partial.replace(label_path)  # written last: a label means its image is complete
    return index


def write_scenes(composer: SceneComposer, count: int, out_dir: Path, *, workers: int = 2) -> Path:
    """Write scenes 0..count-1 as OUT/images/000000.jpg... and OUT/annotations.json (COCO); returns the JSON.

    Resumable: a scene whose image and label (OUT/labels/000000.json) exist is not made again.
    OUT/composer.json records the settings; a folder made with other settings is refused.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    config, config_path = _config(composer), out_dir / "composer.json"
    if config_path.is_file() and json.loads(config_path.read_text(encoding="utf-8")) != config:
        raise ValueError(f"{out_dir} holds scenes made with other settings ({config_path}); use another folder")
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")

    def done(index: int) -> bool:
        return (out_dir / "labels" / f"{index:06d}.json").is_file() and (
            out_dir / "images" / f"{index:06d}.jpg"
        ).is_file()

    todo = [index for index in range(count) if not done(index)]
    uncached = sum(
        not mask_cache_path(composer.mask_dir, composer.mask_root or composer.root, path).is_file()
        for path, _ in composer.items
    )
    if todo and uncached:
        logger.warning(
            "%d of %d masks are not cached under %s: each is computed on first use (~0.2 s); "
            "python -m training.synth.colors masks fills the cache faster",
            uncached,
            len(composer.items),
            composer.mask_dir,
        )
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(todo) > 1:
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(context.Pool(workers, _init_worker, (composer, out_dir)))
            results = pool.imap_unordered(_write_one, todo, chunksize=4)
        else:
            _init_worker(composer, out_dir, single_thread=False)
            results = map(_write_one, todo)
        for _ in tqdm(results, total=count, initial=count - len(todo), unit="scene", desc="scenes"):
            pass

    images, annotations = [], []
    for index in range(count):
        label = json.loads((out_dir / "labels" / f"{index:06d}.json").read_text(encoding="utf-8"))
        images.append((label["file_name"], label["width"], label["height"]))
        annotations.append([SceneAnnotation(**{**item, "box": tuple(item["box"])}) for item in label["annotations"]])
    path = write_coco(out_dir / "annotations.json", images, annotations, category_ids(composer.classes))
    logger.info("%d scenes, %d boxes: %s", count, sum(map(len, annotations)), path)
    return path


# ---------------------------------------------------------------------------------------------
# Looking at scenes


def preview_sheet(scenes: Sequence[Scene], columns: int = 4, side: int = 320) -> Image.Image:
    """A contact sheet: each scene fitted into a `side` square, boxes drawn with class and visible share."""
    rows = max(1, math.ceil(len(scenes) / columns))
    sheet = Image.new("RGB", (columns * side, rows * side), (40, 40, 40))
    names = sorted({item.category for scene in scenes for item in scene.annotations})
    colours = {name: tuple(int(255 * c) for c in _hue(i / max(1, len(names)))) for i, name in enumerate(names)}
    for number, scene in enumerate(scenes):
        tile = scene.image.copy()
        factor = min(side / tile.width, side / tile.height)
        tile = tile.resize((max(1, round(tile.width * factor)), max(1, round(tile.height * factor))))
        draw = ImageDraw.Draw(tile)
        for item in scene.annotations:
            box = [value * factor for value in item.box]
            draw.rectangle(box, outline=colours[item.category], width=2)
            text = f"{item.category} {item.visible:.0%}"
            draw.rectangle(draw.textbbox((box[0] + 2, box[1] + 1), text), fill=(0, 0, 0))
            draw.text((box[0] + 2, box[1] + 1), text, fill=colours[item.category])
        sheet.paste(tile, ((number % columns) * side, (number // columns) * side))
    return sheet


def _hue(fraction: float) -> np.ndarray:
    return cv2.cvtColor(np.array([[[360 * fraction, 0.8, 1.0]]], np.float32), cv2.COLOR_HSV2RGB)[0, 0]


# ---------------------------------------------------------------------------------------------
# Command line


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Compose detection scenes from garment photos", add_help=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding SPLIT/<class>/<image>")
    parser.add_argument("--split", default="train", help="sub-folder to take photos from (train, validation)")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for images/ and annotations.json")
    parser.add_argument("--mask-dir", type=Path, default=None, help="mask cache of the split (var/masks/SPLIT)")
    parser.add_argument("--min-items", type=int, default=1)
    parser.add_argument("--max-items", type=int, default=4)
    parser.add_argument("--photo-mode-fraction", type=float, default=0.3)
    parser.add_argument("--long-side", type=int, nargs=2, default=(480, 1024), metavar=("MIN", "MAX"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--preview", type=Path, default=None, help="also save a contact sheet of the first scenes (PNG)"
    )
    parser.add_argument("--preview-count", type=int, default=16)
    return parser


def main(args: argparse.Namespace) -> int:
    split_dir = args.data_dir / args.split
    if not split_dir.is_dir():
        raise SystemExit(f"{split_dir} is not a folder")
    composer = SceneComposer(
        scene_items(args.data_dir, args.split),
        root=args.data_dir,
        mask_dir=args.mask_dir or Path("var/masks") / args.split,
        mask_root=split_dir,
        seed=args.seed,
        min_items=args.min_items,
        max_items=args.max_items,
        photo_mode_fraction=args.photo_mode_fraction,
        long_side=tuple(args.long_side),
    )
    try:
        path = write_scenes(composer, args.count, args.out, workers=args.workers)
    except ValueError as error:  # e.g. the folder holds scenes of other settings
        raise SystemExit(str(error)) from None
    if args.preview is not None:
        coco = read_coco(path)
        scenes = [
            Scene(
                load_image(coco.image_path(i)),
                [SceneAnnotation(item.box, item.category, item.source, item.visible) for item in coco.annotations[i]],
            )
            for i in range(min(args.preview_count, len(coco.images)))
        ]
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        preview_sheet(scenes).save(args.preview)
        logger.info("wrote %s", args.preview)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main(get_args_parser().parse_args()))
