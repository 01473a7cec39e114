"""Colour and pattern classes for the `color` embedder, made by repainting real garment photos.

Real photos carry no colour labels, so the labels are synthesised: each photo's garment is
separated from its background (`garment_mask`), then repainted (`recolor`) in a palette colour
or a two-colour pattern, keeping the photo's own shading and fabric texture; the label is what
was painted. `RecoloredDataset` does this on the fly, deterministically per seed, epoch and
index; `ColorFolderDataset` reads real labels from folders named like the labels.

Garment mask
------------
Garment photos are centred and the garment is the largest thing in them, so OpenCV's GrabCut
is initialised with a centred rectangle (a 4% border is "certainly background") on a copy
scaled to 224 px on the long side, 5 iterations, with a fixed OpenCV seed so masks are
reproducible. The result is opened and closed (5x5 ellipse, removes specks and fills seams),
then only connected components of at least a quarter of the largest one's area are kept (a
pair of shoes is two components; stray background bits are small). When the mask covers less
than 10% or more than 95% of the image, GrabCut has failed and a centred ellipse (70% x 80% of
the frame) stands in (4 of the 341 validation photos). The mask is slightly blurred, scaled
back up bilinearly and thresholded at 0.35 (smooth edges, a pixel generous). About 0.2 s per
photo on one CPU core; `python -m training.synth.colors masks` caches them as PNGs. Known failures: background of the
garment's own colour, and clutter touching the garment (a rug under shoes, a door behind a
hung dress), is kept as garment; a garment filling the frame, its colour all along the border,
is taken for background (then the ellipse stands in, and a repainting shows a painted oval).

Palette (sRGB; nearest pair white/beige is 26 CIE76 units apart)
-----------------------------------------------------------------
| index | colour     | RGB           |
|-------|------------|---------------|
| 0     | black      | 25, 25, 25    |
| 1     | white      | 242, 242, 238 |
| 2     | grey       | 128, 128, 128 |
| 3     | red        | 200, 30, 35   |
| 4     | burgundy   | 110, 20, 45   |
| 5     | orange     | 235, 120, 30  |
| 6     | yellow     | 240, 205, 40  |
| 7     | green      | 35, 135, 65   |
| 8     | olive      | 112, 110, 50  |
| 9     | teal       | 0, 125, 130   |
| 10    | light-blue | 140, 185, 230 |
| 11    | blue       | 35, 85, 190   |
| 12    | navy       | 25, 35, 80    |
| 13    | purple     | 110, 50, 145  |
| 14    | pink       | 240, 135, 175 |
| 15    | brown      | 105, 65, 35   |
| 16    | beige      | 215, 195, 155 |

Patterns (drawn in the garment's own frame: sizes relative to its long side, random phase and
a few degrees of angle jitter; the second colour is drawn on the first and covers less of it)
-------------------------------------------------------------------------------------------
| index | pattern          | what is painted                                             |
|-------|------------------|-------------------------------------------------------------|
| 0     | plain            | one colour                                                  |
| 1     | stripes          | horizontal bands, period 5-14% of the garment, 25-45% second |
| 2     | vertical-stripes | the same bands, vertical                                    |
| 3     | checks           | horizontal and vertical bands crossing (gingham-like)       |
| 4     | dots             | round dots on a staggered grid                              |
| 5     | colour-block     | the garment split by a straight line; 30-45% second colour  |

Label names: "red" (plain) or "<colour>-<second>-<pattern>", e.g. "red-white-stripes",
"navy-white-dots". The first colour covers most of the garment and is the colour class; the
pattern is the pattern class.

    python -m training.synth.colors masks ../shared/data/clothing/train --out var/masks/train
    python -m training.synth.colors preview ../shared/data/clothing/train --out var/preview.png
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from lookalike.images import ImageError
from training.datasets import FolderDataset, ImageList, LabelledImages, is_image_file, load_image

logger = logging.getLogger(__name__)

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "white": (242, 242, 238),
    "grey": (128, 128, 128),
    "red": (200, 30, 35),
    "burgundy": (110, 20, 45),
    "orange": (235, 120, 30),
    "yellow": (240, 205, 40),
    "green": (35, 135, 65),
    "olive": (112, 110, 50),
    "teal": (0, 125, 130),
    "light-blue": (140, 185, 230),
    "blue": (35, 85, 190),
    "navy": (25, 35, 80),
    "purple": (110, 50, 145),
    "pink": (240, 135, 175),
    "brown": (105, 65, 35),
    "beige": (215, 195, 155),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
PATTERNS: tuple[str, ...] = ("plain", "stripes", "vertical-stripes", "checks", "dots", "colour-block")
ALIASES = {"gray": "grey", "color-block": "colour-block"}

MASK_WORKING_SIDE = 224
GRABCUT_ITERATIONS = 5
GRABCUT_BORDER = 0.04
MASK_FRACTION_RANGE = (0.10, 0.95)  # below 10%: on real photos only ever a print or a fragment
KEEP_COMPONENT_FRACTION = 0.25


# ---------------------------------------------------------------------------------------------
# Labels


@dataclass(frozen=True)
class ColorLabel:
    """A colour (the class), a pattern, and the pattern's second colour (None when plain)."""

    colour: str
    pattern: str = "plain"
    second: str | None = None

    def __post_init__(self) -> None:
        if self.colour not in PALETTE or (self.second is not None and self.second not in PALETTE):
            raise ValueError(f"colours must be in the palette {list(COLOURS)}, not {self.colour!r}/{self.second!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {list(PATTERNS)}, not {self.pattern!r}")
        if (self.pattern == "plain") != (self.second is None) or self.second == self.colour:
            raise ValueError("a plain label has no second colour; a pattern needs a second, different colour")

    @property
    def name(self) -> str:
        return self.colour if self.pattern == "plain" else f"{self.colour}-{self.second}-{self.pattern}"

    @property
    def colour_index(self) -> int:
        return COLOURS.index(self.colour)

    @property
    def pattern_index(self) -> int:
        return PATTERNS.index(self.pattern)

    @property
    def second_index(self) -> int | None:
        return None if self.second is None else COLOURS.index(self.second)

    @classmethod
    def parse(cls, name: str) -> ColorLabel:
        """Parse "red" or "red-white-stripes" (case-insensitive; "gray" is "grey")."""
        key = name.strip().lower()
        for alias, canonical in ALIASES.items():
            key = key.replace(alias, canonical)
        label = _labels_by_name().get(key)
        if label is None:
            raise ValueError(
                f"unknown colour label {name!r}: expected '<colour>' or '<colour>-<second colour>-<pattern>' "
                f"with colours from {list(COLOURS)} and patterns from {list(PATTERNS[1:])}"
            )
        return label


@functools.cache
def _labels_by_name() -> dict[str, ColorLabel]:
    """Every label by name; names are unambiguous because they are looked up whole, not split on '-'."""
    labels = [ColorLabel(colour) for colour in COLOURS]
    labels += [
        ColorLabel(colour, pattern, second)
        for pattern in PATTERNS[1:]
        for colour in COLOURS
        for second in COLOURS
        if second != colour
    ]
    return {label.name: label for label in labels}


def random_label(rng: np.random.Generator, plain_fraction: float = 0.4) -> ColorLabel:
    """A label with a uniformly drawn colour; plain with probability `plain_fraction`, else a uniform pattern."""
    colour = COLOURS[rng.integers(len(COLOURS))]
    if rng.random() < plain_fraction:
        return ColorLabel(colour)
    second = COLOURS[rng.choice([i for i, name in enumerate(COLOURS) if name != colour])]
    return ColorLabel(colour, PATTERNS[1 + rng.integers(len(PATTERNS) - 1)], second)


# ---------------------------------------------------------------------------------------------
# Garment mask


def garment_mask(image: Image.Image) -> np.ndarray:
    """Boolean (h, w) mask of the garment in a centred garment photo (method in the module docstring)."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = min(1.0, MASK_WORKING_SIDE / max(height, width))
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    mask = _clean_mask(_grabcut(small))
    low, high = MASK_FRACTION_RANGE
    if not low <= mask.mean() <= high:
        mask = centre_ellipse(small.shape[:2])
    # Blurring before upscaling smooths the staircase; the low threshold errs on the generous side,
    # since a missed rim of the old colour shows more than a pixel of painted background.
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)
    return cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR) > 0.35


def _grabcut(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    border_x, border_y = max(1, round(GRABCUT_BORDER * width)), max(1, round(GRABCUT_BORDER * height))
    rect = (border_x, border_y, width - 2 * border_x, height - 2 * border_y)
    labels = np.zeros((height, width), np.uint8)
    if rect[2] < 2 or rect[3] < 2:
        return labels.astype(bool)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means on OpenCV's global RNG
    try:
        cv2.grabCut(rgb, labels, rect, np.zeros((1, 65)), np.zeros((1, 65)), GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # e.g. too few pixels for its colour models: the fallback takes over
        return np.zeros((height, width), bool)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _clean_mask(mask: np.ndarray) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(components, 1 + np.flatnonzero(areas >= KEEP_COMPONENT_FRACTION * areas.max()))


def centre_ellipse(shape: tuple[int, int], width_fraction: float = 0.7, height_fraction: float = 0.8) -> np.ndarray:
    height, width = shape
    y, x = np.mgrid[:height, :width]
    return ((x + 0.5 - width / 2) / (width_fraction * width / 2)) ** 2 + (
        (y + 0.5 - height / 2) / (height_fraction * height / 2)
    ) ** 2 <= 1


def mask_cache_path(
    cache_dir: str | os.PathLike, root: str | os.PathLike, image_path: str | os.PathLike, box=None
) -> Path:
    """CACHE_DIR/<path relative to root>.png; "a.jpg" -> "a.jpg.png" so a.jpg and a.png never collide."""
    relative = Path(os.path.relpath(Path(image_path).resolve(), Path(root).resolve()))
    if relative.parts and relative.parts[0] == "..":
        raise ValueError(f"{image_path} is not under the mask root {root}")
    suffix = "" if box is None else ".{}_{}_{}_{}".format(*box)
    return Path(cache_dir) / relative.with_name(f"{relative.name}{suffix}.png")


def load_mask(
    cache_dir: str | os.PathLike,
    root: str | os.PathLike,
    image_path: str | os.PathLike,
    *,
    image: Image.Image | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """The garment mask of `image_path` (or of its `box` crop) from the cache, computed and stored on a miss.

    A cached mask older than its image, or of another size, is recomputed. Pass `image` when it
    is already decoded (the crop, when `box` is given) to save decoding it again.
    """
    cached = mask_cache_path(cache_dir, root, image_path, box)
    if cached.is_file() and cached.stat().st_mtime >= Path(image_path).stat().st_mtime:
        mask = np.asarray(Image.open(cached).convert("L")) > 127
        if image is None or mask.shape == (image.height, image.width):
            return mask
    if image is None:
        image = load_image(image_path)
        image = image if box is None else image.crop(box)
    mask = garment_mask(image)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    Image.fromarray(mask.astype(np.uint8) * 255).save(partial, format="PNG")
    partial.replace(cached)  # atomic: parallel workers never read half a file
    return mask


# ---------------------------------------------------------------------------------------------
# Repainting

SHADING_SCALE = 0.03  # blur of the large-scale shading, as a share of the garment's long side
TEXTURE_LIMIT = 4.0  # Lab L units: fine detail beyond this (prints, old stripes) is soft-clipped
MIN_LIGHTNESS_SPREAD = 8.0  # Lab L units; flat garments are not given exaggerated shading
MAX_SHADING_SIGMA = 12.0  # Lab L units per unit of shading: the deepest folds lie 3x this below the colour
COLOUR_JITTER = (4.0, 3.0)  # Lab L and a/b standard deviation: classes are regions, not points


def recolor(image: Image.Image, mask: np.ndarray, label: ColorLabel, rng: np.random.Generator) -> Image.Image:
    """Repaint the garment (`mask` True) in `label`'s colours and pattern; background pixels stay identical.

    Works in CIE Lab: the original lightness, turned into shading by `garment_shading`, is laid
    around the target's lightness (asymmetric, so black keeps dark folds and white bright ones),
    and chroma comes from the target, scaled down in shadows and highlights as real dye does.
    """
    rgb = np.asarray(image.convert("RGB"))
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {rgb.shape[:2]}")
    if not mask.any():
        return image.convert("RGB").copy()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    region, inside = rgb[window], mask[window]

    lightness = cv2.cvtColor(region.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0]
    shading = garment_shading(lightness, inside)
    second_share = pattern_weights(label.pattern, inside, rng)
    painted = _paint(shading, label.colour, rng)
    if label.second is not None:
        painted = painted * (1 - second_share[..., None]) + _paint(shading, label.second, rng) * second_share[..., None]
    painted_rgb = np.clip(cv2.cvtColor(painted.astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)

    alpha = _inner_feather(inside)[..., None]
    blended = np.round(region * (1 - alpha) + painted_rgb * 255 * alpha).astype(np.uint8)
    result = rgb.copy()
    result[window] = np.where(inside[..., None], blended, region)
    return Image.fromarray(result)


def garment_shading(lightness: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Lab lightness -> shading in units of the garment's robust spread, clipped to [-3, 3].

    Shading is split into a large scale (a blur over the garment only: folds, the light's
    fall-off) kept whole, and fine detail whose amplitude is soft-clipped to `TEXTURE_LIMIT`, so
    the weave stays while high-contrast prints, logos and the original's stripes fade.
    """
    sigma = max(1.0, SHADING_SCALE * max(inside.shape))
    weight = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigma)
    total = cv2.GaussianBlur(np.where(inside, lightness, 0).astype(np.float32), (0, 0), sigma)
    smooth = total / np.maximum(weight, 1e-6)  # a blur of the garment alone: the background never leaks in
    detail = lightness - smooth
    kept = smooth + TEXTURE_LIMIT * np.tanh(detail / TEXTURE_LIMIT)
    values = kept[inside]
    median = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - median))), MIN_LIGHTNESS_SPREAD)
    return np.clip((kept - median) / spread, -3, 3)


def _paint(shading: np.ndarray, colour: str, rng: np.random.Generator) -> np.ndarray:
    """A Lab image of `colour` under `shading`, with a small random shift of the colour itself."""
    target = cv2.cvtColor(np.array([[PALETTE[colour]]], np.float32) / 255, cv2.COLOR_RGB2Lab)[0, 0]
    target_l = float(np.clip(target[0] + rng.normal(0, COLOUR_JITTER[0]), 3, 97))
    target_ab = target[1:] + rng.normal(0, COLOUR_JITTER[1], 2)
    darker = np.clip(0.3 * target_l, 3, MAX_SHADING_SIGMA)  # room below: little for black
    lighter = np.clip(0.3 * (100 - target_l), 3, MAX_SHADING_SIGMA)  # room above: little for white
    new_l = np.clip(target_l + shading * np.where(shading < 0, darker, lighter), 0, 100)
    # Shadows and highlights of a dyed fabric are less saturated than its mid-tones.
    chroma = np.clip(np.minimum(new_l / target_l, (100 - new_l) / (100 - target_l)), 0, 1)
    return np.dstack([new_l, chroma * target_ab[0], chroma * target_ab[1]])


def _inner_feather(inside: np.ndarray) -> np.ndarray:
    """Alpha 1 inside the mask, fading to ~0.5 on its edge pixels, 0 outside: no hard rim."""
    blurred = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 1.0)
    return np.where(inside, np.clip(2 * blurred, 0, 1), 0.0)


def pattern_weights(pattern: str, inside: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Share of the second colour per pixel (0..1, anti-aliased), in the garment's own frame."""
    if pattern == "plain":
        return np.zeros(inside.shape, np.float32)
    ys, xs = np.nonzero(inside)
    size = float(max(np.ptp(ys), np.ptp(xs)) + 1)
    angle = np.deg2rad(rng.uniform(-8, 8))
    y, x = np.mgrid[: inside.shape[0], : inside.shape[1]].astype(np.float32)
    x, y = x - xs.mean(), y - ys.mean()
    across = y * np.cos(angle) - x * np.sin(angle)  # runs top to bottom: horizontal bands
    along = x * np.cos(angle) + y * np.sin(angle)  # runs left to right: vertical bands
    draw = _PATTERN_DRAWERS[pattern]
    return draw(along, across, size, inside, rng).astype(np.float32)


def _bands(coordinate: np.ndarray, period: float, duty: float, phase: float) -> np.ndarray:
    """1 on bands `duty * period` wide every `period` pixels, with one pixel of anti-aliasing."""
    position = np.mod(coordinate + phase, period)
    width = duty * period
    on_band = np.minimum(position, width - position)
    off_band = -np.minimum(position - width, period - position)
    distance = np.where(position < width, on_band, off_band)
    return np.clip(0.5 + distance, 0, 1)


def _stripes(along, across, size, inside, rng):
    period = size * rng.uniform(0.05, 0.14)
    return _bands(across, period, rng.uniform(0.25, 0.45), rng.uniform(0, period))


def _vertical_stripes(along, across, size, inside, rng):
    return _stripes(across, along, size, inside, rng)


def _checks(along, across, size, inside, rng):
    period = size * rng.uniform(0.06, 0.14)
    duty = rng.uniform(0.18, 0.28)
    horizontal = _bands(across, period, duty, rng.uniform(0, period))
    vertical = _bands(along, period, duty, rng.uniform(0, period))
    return 1 - (1 - horizontal) * (1 - vertical)


def _dots(along, across, size, inside, rng):
    spacing = size * rng.uniform(0.06, 0.12)
    radius = spacing * rng.uniform(0.18, 0.3)
    row = np.floor((across + rng.uniform(0, spacing)) / spacing)
    cell_y = np.mod(across + rng.uniform(0, spacing), spacing) - spacing / 2
    cell_x = np.mod(along + 0.5 * spacing * np.mod(row, 2) + rng.uniform(0, spacing), spacing) - spacing / 2
    return np.clip(0.5 + radius - np.hypot(cell_x, cell_y), 0, 1)


def _colour_block(along, across, size, inside, rng):
    coordinate = across if rng.random() < 0.6 else along  # top/bottom blocks are the commoner cut
    coordinate = coordinate if rng.random() < 0.5 else -coordinate
    threshold = np.quantile(coordinate[inside], 1 - rng.uniform(0.3, 0.45))
    return np.clip(0.5 + coordinate - threshold, 0, 1)


_PATTERN_DRAWERS: dict[str, Callable] = {
    "stripes": _stripes,
    "vertical-stripes": _vertical_stripes,
    "checks": _checks,
    "dots": _dots,
    "colour-block": _colour_block,
}


# ---------------------------------------------------------------------------------------------
# Datasets


class RecoloredDataset(Dataset):
    """Garment photos repainted with random labels: item i -> (image, colour_index, pattern_index).

    The label and the painting depend only on (seed, epoch, i), so a run is reproducible and
    every epoch sees new colours; call `set_epoch` before iterating (as with
    `DistributedSampler`). `masks` is a mask cache folder (see `load_mask`; crops are cached
    by box) or None to compute masks on the fly. The base dataset's transform is not used.
    """

    def __init__(
        self,
        base: LabelledImages | Iterable[str | os.PathLike],
        masks: str | os.PathLike | None = None,
        *,
        seed: int = 0,
        transform: Callable | None = None,
        plain_fraction: float = 0.4,
    ):
        self.base = base if isinstance(base, LabelledImages) else ImageList(base)
        self.masks = None if masks is None else Path(masks)
        self.mask_root = getattr(self.base, "root", None) or os.path.commonpath(
            [str(Path(sample.path).resolve().parent) for sample in self.base.samples]
        )
        self.seed, self.epoch = seed, 0
        self.transform = transform
        self.plain_fraction = plain_fraction
        self.classes = list(COLOURS)
        self.patterns = list(PATTERNS)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def _generators(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        label_seed, paint_seed = np.random.SeedSequence([self.seed, self.epoch, index]).spawn(2)
        return np.random.default_rng(label_seed), np.random.default_rng(paint_seed)

    def label(self, index: int) -> ColorLabel:
        """Item `index`'s label this epoch, without loading the image."""
        return random_label(self._generators(index)[0], self.plain_fraction)

    def __getitem__(self, index: int):
        label_rng, paint_rng = self._generators(index)
        label = random_label(label_rng, self.plain_fraction)
        crop, box = self.base.load_with_box(index)
        if self.masks is None:
            mask = garment_mask(crop)
        else:
            mask = load_mask(self.masks, self.mask_root, self.base.samples[index].path, image=crop, box=box)
        image = recolor(crop, mask, label, paint_rng)
        if self.transform is not None:
            image = self.transform(image)
        return image, label.colour_index, label.pattern_index


class ColorFolderDataset(Dataset):
    """Real colour labels, a sub-folder per label ("red", "navy-white-stripes"): item -> (image, colour, pattern)."""

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None):
        self.folders = FolderDataset(root)
        self.labels = [ColorLabel.parse(name) for name in self.folders.classes]
        self.classes = self.folders.classes
        self.samples = self.folders.samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image, folder_index = self.folders[index]
        label = self.labels[folder_index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label.colour_index, label.pattern_index


# ---------------------------------------------------------------------------------------------
# Command line


def _cache_one(cache_dir: Path, root: Path, path: Path) -> str | None:
    """Mask one image into the cache; the error message instead of raising, so one bad file stops nothing."""
    try:
        load_mask(cache_dir, root, path)
    except (ImageError, OSError) as error:
        return f"{path}: {error}"
    return None


def cache_masks(root: Path, cache_dir: Path, workers: int) -> int:
    """Compute the missing or stale masks of every image under `root`; returns how many images failed."""
    paths = sorted(path for path in root.rglob("*") if is_image_file(path))
    work = functools.partial(_cache_one, cache_dir, root)
    failures = 0
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # One image per process: OpenCV's own threads would only contend with the other workers.
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers, cv2.setNumThreads, (1,)))
            results = pool.imap_unordered(work, paths, chunksize=4)
        else:
            results = map(work, paths)
        for error in tqdm(results, total=len(paths), unit="img", desc="masks"):
            if error:
                failures += 1
                logger.warning("skipped %s", error)
    logger.info("%d masks under %s (%d failed)", len(paths) - failures, cache_dir, failures)
    return failures


def preview_sheet(paths: list[Path], seed: int = 0, side: int = 160) -> Image.Image:
    """One row per photo: original, mask overlay, then three random repaintings, for checking by eye."""
    rng = np.random.default_rng(seed)
    sheet = Image.new("RGB", (5 * side, len(paths) * side), "black")
    for row, path in enumerate(paths):
        image = load_image(path)
        mask = garment_mask(image)
        overlay = np.asarray(image).copy()
        overlay[~mask] = overlay[~mask] // 3 + np.array([170, 0, 170], np.uint8)
        tiles = [image, Image.fromarray(overlay)] + [recolor(image, mask, random_label(rng), rng) for _ in range(3)]
        for column, tile in enumerate(tiles):
            tile = tile.copy()
            tile.thumbnail((side, side))
            sheet.paste(tile, (column * side, row * side))
    return sheet


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Garment masks and colour repainting", add_help=True)
    commands = parser.add_subparsers(dest="command", required=True)
    masks = commands.add_parser("masks", help="cache garment masks of every image under ROOT")
    masks.add_argument("root", type=Path)
    masks.add_argument("--out", type=Path, required=True, help="cache folder; mirrors ROOT's tree")
    masks.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    preview = commands.add_parser("preview", help="save a contact sheet of masks and repaintings")
    preview.add_argument("root", type=Path)
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    preview.add_argument("--count", type=int, default=8)
    preview.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} is not a folder")
    if args.command == "masks":
        return 1 if cache_masks(args.root, args.out, args.workers) else 0
    paths = sorted(path for path in args.root.rglob("*") if is_image_file(path))
    picked = np.random.default_rng(args.seed).choice(len(paths), size=min(args.count, len(paths)), replace=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    preview_sheet([paths[i] for i in sorted(picked)], args.seed).save(args.out)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main(get_args_parser().parse_args()))
