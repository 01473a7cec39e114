"""Photo-like queries made from catalogue images, for evaluating search as a shopper uses it.

A shopper photographs the same item at home: off-centre, tilted, on a cluttered floor or bed,
in warm or cold light, a little blurred, JPEG-compressed by a phone or a messenger.
`PhotoLikeQuery` turns a catalogue image into such a photo of the same instance:

1. cut the garment out with its mask (`training.synth.colors.garment_mask` when none is given),
2. place it, scaled to fill 65-95% of the frame, rotated by up to +-15 degrees and off-centre,
   on a 3:4 or 4:3 frame of procedural clutter (a floor, bed or tiles with random objects) or
   of a supplied background photo, with a soft shadow under it,
3. warp the whole frame by a small perspective (the phone is not held square),
4. crop and rescale (up to 8% of each side; the output's long side is 480-800 px),
5. change exposure, gamma and white balance, with uneven light across the frame,
6. add sensor noise and a little Gaussian or motion blur,
7. re-encode as JPEG at quality 40-70.

`render` also gives the garment's box in the photo (a `training.synth.query.Query`): the alpha
the garment was pasted with goes through the same warp and crop as the pixels, and the box is
where it is over half opaque. It draws nothing more from the generator, so `render(...).image`
is exactly what `__call__` gives. `staged_scene` stops before the light and camera (steps 1-4),
for families that light and shoot the same scene their own way (`training.synth.hardphoto`).

Everything random comes from a generator seeded by (seed, index), so query `index` of a seed
is the same image on every machine and every run. Give every query of a set its own index
(e.g. item * variants + variant): two items photographed with the same index would share a
background, a shortcut a search could match on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field

import cv2
import numpy as np
from PIL import Image

from training.synth.colors import garment_mask
from training.synth.query import Box, Query, mask_box


@dataclass(frozen=True)
class PhotoLikeQuery:
    """`query(image, mask, index)` -> the `index`-th photo-like query of `image` for this seed."""

    seed: int = 0
    _: KW_ONLY
    long_side: tuple[int, int] = (480, 800)
    garment_fill: tuple[float, float] = (0.65, 0.95)
    max_rotation_degrees: float = 15.0
    max_perspective: float = 0.06
    max_crop: float = 0.08
    jpeg_quality: tuple[int, int] = (40, 70)
    backgrounds: Sequence[Image.Image] = field(default=(), repr=False)

    def __call__(self, image: Image.Image, mask: np.ndarray | None = None, index: int = 0) -> Image.Image:
        return self.render(image, mask, index).image

    def render(self, image: Image.Image, mask: np.ndarray | None = None, index: int = 0) -> Query:
        """The `index`-th photo-like query and the garment's box in it (the pixels `__call__` gives)."""
        rng = np.random.default_rng([self.seed, index])
        photo, alpha = self.staged_scene(image, mask, rng)
        photo = relight(photo, rng)
        photo = degrade(photo, rng)
        picture = jpeg_roundtrip(photo, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return Query(picture, alpha_box(alpha))

    def staged_scene(
        self, image: Image.Image, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-4 (garment placed, frame warped and cropped), before light and camera.

        Returns the float RGB frame and the garment's alpha in the same pixels, moved by the same
        geometry, so other families can stage their own light and camera on the same scene.
        """
        rgb = np.asarray(image.convert("RGB"))
        mask = garment_mask(image) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {rgb.shape[:2]}")
        if not mask.any():  # nothing to cut out: photograph the whole picture instead
            mask = np.ones_like(mask)
        frame_size = self._frame_size(rng)
        background = self._background(frame_size, rng)
        photo, alpha = compose(background, rgb, mask, self.garment_fill, self.max_rotation_degrees, rng)
        # The alpha takes the photo's own border mode: garment mirrored in at an edge is garment seen.
        matrix = perspective_matrix(photo.shape, self.max_perspective, rng)
        photo, alpha = (_warp(layer, matrix) for layer in (photo, alpha))
        edges = crop_edges(photo.shape, self.max_crop, rng)
        return _crop_resize(photo, edges, frame_size), _crop_resize(alpha, edges, frame_size)

    def _frame_size(self, rng: np.random.Generator) -> tuple[int, int]:
        """(width, height): a phone photo, portrait two times in three."""
        long_side = int(rng.integers(self.long_side[0], self.long_side[1] + 1))
        short_side = round(long_side * 3 / 4)
        return (short_side, long_side) if rng.random() < 2 / 3 else (long_side, short_side)

    def _background(self, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        if self.backgrounds and rng.random() < 0.5:
            return background_crop(self.backgrounds[rng.integers(len(self.backgrounds))], size, rng)
        return clutter(size, rng)


# ---------------------------------------------------------------------------------------------
# Backgrounds


def random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 1] with a uniform hue and the given HSV saturation and value ranges."""
    hsv = np.array([[[rng.uniform(0, 360), rng.uniform(*saturation), rng.uniform(*value)]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def smooth_noise(size: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Noise in [-1, 1] varying over about `cells` blobs across the frame (upscaled random grid)."""
    width, height = size
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def clutter(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A float RGB (h, w, 3) household surface (planks, tiles or fabric) with random objects on it."""
    width, height = size
    base = random_colour(rng, (0.05, 0.45), (0.35, 0.95))
    surface = np.ones((height, width, 3), np.float32) * base
    kind = rng.choice(["planks", "tiles", "fabric"])
    if kind == "planks":
        plank = max(8, int(rng.uniform(0.06, 0.15) * height))
        shade = rng.uniform(-0.12, 0.12, height // plank + 1)[np.arange(height) // plank]
        grain = smooth_noise((width // 8 + 1, height), 8, rng)[:, np.arange(width) // 8] * 0.05
        surface *= (1 + shade[:, None] + grain)[..., None]
        surface[np.arange(height) % plank == 0] *= 0.6
    elif kind == "tiles":
        tile = max(12, int(rng.uniform(0.12, 0.3) * min(size)))
        grout = (np.arange(height)[:, None] % tile < 2) | (np.arange(width)[None, :] % tile < 2)
        surface[grout] = surface[grout] * 0.55 + 0.3
    else:
        surface *= (1 + 0.15 * smooth_noise(size, 6, rng))[..., None]  # folds of a bedspread
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), rng.uniform(0.5, 2))
    surface *= (1 + rng.uniform(0.05, 0.4) * fibres)[..., None]  # carpet, wood grain, weave
    surface = _scatter_objects(surface, rng)
    surface *= (1 + 0.12 * smooth_noise(size, 3, rng))[..., None]  # uneven light
    surface += rng.normal(0, 0.02, surface.shape).astype(np.float32)
    return np.clip(surface, 0, 1)


def _scatter_objects(surface: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rectangles, ellipses and lines in random colours, some out of focus: what lies around on a floor."""
    height, width = surface.shape[:2]
    for _ in range(int(rng.integers(2, 9))):
        layer = np.zeros((height, width), np.float32)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        extent = (int(rng.uniform(0.05, 0.3) * width), int(rng.uniform(0.05, 0.3) * height))
        shape = rng.choice(["rectangle", "ellipse", "line"])
        if shape == "rectangle":
            corners = cv2.boxPoints((centre, extent, float(rng.uniform(0, 180)))).astype(np.int32)
            cv2.fillConvexPoly(layer, corners, 1.0)
        elif shape == "ellipse":
            cv2.ellipse(layer, centre, (extent[0] // 2, extent[1] // 2), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        else:
            end = (centre[0] + extent[0] * int(rng.choice([-1, 1])), centre[1] + extent[1])
            cv2.line(layer, centre, end, 1.0, int(rng.integers(2, 8)))
        if rng.random() < 0.5:
            layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(2, 8))
        opacity = rng.uniform(0.5, 1.0) * layer[..., None]
        surface = surface * (1 - opacity) + random_colour(rng, (0, 1), (0.1, 1)) * opacity
    return surface


def background_crop(image: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random region of a background photo covering a frame of `size`, as float RGB."""
    width, height = size
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255
    scale = max(width / rgb.shape[1], height / rgb.shape[0]) * rng.uniform(1.0, 1.5)
    resized = cv2.resize(rgb, (max(width, round(rgb.shape[1] * scale)), max(height, round(rgb.shape[0] * scale))))
    top = int(rng.integers(0, resized.shape[0] - height + 1))
    left = int(rng.integers(0, resized.shape[1] - width + 1))
    return resized[top : top + height, left : left + width]


# ---------------------------------------------------------------------------------------------
# Geometry


def compose(
    background: np.ndarray,
    rgb: np.ndarray,
    mask: np.ndarray,
    fill: tuple[float, float],
    max_rotation: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out garment scaled, rotated and placed on `background`, with a soft shadow under it,
    and its alpha (float, h x w) as it was pasted."""
    height, width = background.shape[:2]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    garment_height, garment_width = mask[window].shape
    scale = rng.uniform(*fill) * min(width / garment_width, height / garment_height)
    size = (max(1, round(garment_width * scale)), max(1, round(garment_height * scale)))
    # Eroding by one pixel keeps the catalogue background's rim out of the new photo.
    alpha = cv2.erode(mask[window].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    garment = cv2.resize(rgb[window].astype(np.float32) / 255, size, interpolation=cv2.INTER_AREA)

    slack_x, slack_y = max(0.0, width - size[0]), max(0.0, height - size[1])
    centre = np.array([width / 2 + rng.uniform(-0.5, 0.5) * slack_x, height / 2 + rng.uniform(-0.5, 0.5) * slack_y])
    own_centre = np.array([size[0] / 2, size[1] / 2])
    matrix = cv2.getRotationMatrix2D(tuple(own_centre), rng.uniform(-max_rotation, max_rotation), 1.0)
    matrix[:, 2] += centre - own_centre
    alpha = cv2.warpAffine(alpha, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.8)[..., None]
    garment = cv2.warpAffine(garment, matrix, (width, height), flags=cv2.INTER_LINEAR)

    offset = (rng.uniform(-0.02, 0.02) * width, rng.uniform(0, 0.03) * height)
    shadow = cv2.warpAffine(alpha[..., 0], np.float32([[1, 0, offset[0]], [0, 1, offset[1]]]), (width, height))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.02 * max(width, height))[..., None]
    ground = background * (1 - rng.uniform(0.15, 0.4) * shadow)
    return ground * (1 - alpha) + garment * alpha, alpha[..., 0]


def perspective_matrix(shape: tuple[int, ...], max_shift: float, rng: np.random.Generator) -> np.ndarray:
    """Move each corner by up to `max_shift` of the frame (the phone was not held square): the 3x3 matrix."""
    height, width = shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = (corners + rng.uniform(-max_shift, max_shift, (4, 2)) * [width, height]).astype(np.float32)
    return cv2.getPerspectiveTransform(corners, moved)


def _warp(layer: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = layer.shape[:2]
    return cv2.warpPerspective(layer, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def crop_edges(shape: tuple[int, ...], max_crop: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): up to `max_crop` of each side of a frame of `shape`, hiding the warp's edges."""
    height, width = shape[:2]
    left, right = (rng.uniform(0, max_crop, 2) * width).astype(int)
    top, bottom = (rng.uniform(0, max_crop, 2) * height).astype(int)
    return int(top), int(bottom), int(left), int(right)


def _crop_resize(layer: np.ndarray, edges: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    top, bottom, left, right = edges
    height, width = layer.shape[:2]
    return cv2.resize(layer[top : height - bottom, left : width - right], size, interpolation=cv2.INTER_AREA)


def alpha_box(alpha: np.ndarray) -> Box:
    """The box of alpha > 0.5 (of any visible alpha for a garment too thin for that; else the frame)."""
    box = mask_box(alpha > 0.5) or mask_box(alpha > 0.05)
    return box or (0.0, 0.0, float(alpha.shape[1]), float(alpha.shape[0]))


# ---------------------------------------------------------------------------------------------
# Light and camera


def relight(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma, white balance (warm lamp or cold daylight) and light falling off across the frame."""
    height, width = photo.shape[:2]
    warmth = rng.uniform(-0.12, 0.12)
    white_balance = np.array([1 + warmth, 1 + rng.uniform(-0.04, 0.04), 1 - warmth], np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[:height, :width].astype(np.float32)
    ramp = ((x / width - 0.5) * np.cos(direction) + (y / height - 0.5) * np.sin(direction))[..., None]
    light = rng.uniform(0.75, 1.2) * (1 + rng.uniform(0, 0.3) * ramp)
    return np.clip(photo * white_balance * light, 0, 1) ** rng.uniform(0.8, 1.25)


def degrade(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian or motion blur, then sensor noise."""
    if rng.random() < 0.3:
        length = int(rng.integers(3, 8))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        photo = cv2.filter2D(photo, -1, kernel / max(kernel.sum(), 1e-6))
    else:
        photo = cv2.GaussianBlur(photo, (0, 0), rng.uniform(0.3, 1.5))
    noise = rng.normal(0, rng.uniform(0.004, 0.02), photo.shape).astype(np.float32)
    return np.clip(photo + noise, 0, 1)


def jpeg_roundtrip(photo: np.ndarray, quality: int) -> Image.Image:
    """Encode and decode as JPEG: the artefacts of a phone camera or a messenger."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
