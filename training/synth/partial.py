"""Partial-view queries: a phone photo zoomed in on one part of a garment.

A shopper who likes a print, a collar with its buttons, a sleeve or a hem photographs just that,
close up: the query shows 30-60% of the garment and little else. `PartialView` makes such a
photo from a catalogue image and its garment mask:

1. pick a window of aspect 3:4 or 4:3 (portrait two times in three) whose share of the garment's
   mask pixels (its coverage) is in [0.3, 0.6]: `CANDIDATES` windows are drawn at once, each
   centred on a random garment pixel with an area of 15-90% of the garment's box, shifted inside
   the image, and their coverages read from one integral image; the first that fits is kept, else
   the one closest to the range;
2. tilt the phone a little: each corner of the window moves inward by up to 2.5% of its sides
   (inward, so no pixel from outside the photo is needed); if that takes the coverage out of
   range the window is shot square;
3. warp the window into a phone frame whose long side is 480-800 px (the catalogue photos are
   ~400x533, so this usually enlarges, as a phone's zoom does; a much larger window is shrunk by
   area first);
4. light, blur and noise as `photo.relight` and `photo.degrade`; JPEG at quality 50-85.

The box is the garment's mask inside the window, moved by the same warp: with the garment
filling the window, most of the frame. Everything random comes from
`np.random.default_rng([seed, STREAM, index])`, so query `index` of a seed is the same image on
every machine, and differs from the other families' queries of the same (seed, index).
`others` is taken for the families' common signature; a close-up shows no other garment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from training.synth.photo import alpha_box, degrade, jpeg_roundtrip, relight
from training.synth.query import Other, Query

STREAM = 11  # this family's generator stream: (seed, index) draws nothing another family draws
CANDIDATES = 64
COVERAGE = (0.3, 0.6)
WINDOW_AREA = (0.15, 0.9)  # of the garment's box
MAX_TILT = 0.025  # corner shift inward, share of the window's side
LONG_SIDE = (480, 800)
JPEG_QUALITY = (50, 85)

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in the catalogue image's pixels


@dataclass(frozen=True)
class PartialView:
    """`view(image, mask, index)` -> the `index`-th close-up of part of the garment, with its box."""

    seed: int = 0

    def __call__(self, image: Image.Image, mask: np.ndarray, index: int, others: Sequence[Other] = ()) -> Query:
        rng = np.random.default_rng([self.seed, STREAM, index])
        rgb = np.asarray(image.convert("RGB"), np.float32) / 255
        mask = np.asarray(mask, bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {rgb.shape[:2]}")
        if not mask.any():  # no garment found: a close-up of part of the whole picture
            mask = np.ones_like(mask)
        portrait = rng.random() < 2 / 3
        window = pick_window(mask, 3 / 4 if portrait else 4 / 3, rng)
        long_side = int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1))
        frame = (round(long_side * 3 / 4), long_side) if portrait else (long_side, round(long_side * 3 / 4))
        quad = tilted_quad(mask, window, rng)
        photo = _shoot(rgb, quad, frame)
        alpha = _shoot(mask.astype(np.float32), quad, frame)
        photo = degrade(relight(photo, rng), rng)
        picture = jpeg_roundtrip(photo, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
        return Query(picture, alpha_box(alpha))


def pick_window(mask: np.ndarray, aspect: float, rng: np.random.Generator) -> Window:
    """A window of `aspect` (width / height) showing a `COVERAGE` share of the mask's pixels.

    All candidates are drawn whether or not an early one fits, so the generator's later draws do
    not depend on the mask.
    """
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    box_area = (rows.max() + 1 - rows.min()) * (cols.max() + 1 - cols.min())
    area = rng.uniform(*WINDOW_AREA, CANDIDATES) * box_area
    window_height = np.minimum(np.sqrt(area / aspect), min(height, width / aspect))
    window_width = window_height * aspect
    centre = rng.integers(0, len(rows), CANDIDATES)
    x0 = np.clip(cols[centre] - window_width / 2, 0, width - window_width)
    y0 = np.clip(rows[centre] - window_height / 2, 0, height - window_height)
    windows = np.stack([x0, y0, x0 + window_width, y0 + window_height], axis=1).round().astype(int)
    shares = coverage(mask, windows)
    fits = (shares >= COVERAGE[0]) & (shares <= COVERAGE[1])
    miss = np.maximum(COVERAGE[0] - shares, shares - COVERAGE[1])
    best = int(np.argmax(fits)) if fits.any() else int(np.argmin(miss))
    return tuple(int(v) for v in windows[best])


def coverage(mask: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The share of the mask's pixels inside each (x0, y0, x1, y1) window (rows of `windows`)."""
    integral = cv2.integral(mask.astype(np.uint8)).astype(np.int64)
    x0, y0, x1, y1 = np.asarray(windows, int).reshape(-1, 4).T
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / max(int(integral[-1, -1]), 1)


def tilted_quad(mask: np.ndarray, window: Window, rng: np.random.Generator) -> np.ndarray:
    """The window's corners moved inward a little (the phone is not held square); square if that
    takes the coverage out of range."""
    x0, y0, x1, y1 = window
    square = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    quad = square + inward * rng.uniform(0, MAX_TILT, (4, 2)).astype(np.float32) * [x1 - x0, y1 - y0]
    inside = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
    share = (inside.astype(bool) & mask).sum() / mask.sum()
    return quad if COVERAGE[0] <= share <= COVERAGE[1] else square


def _shoot(layer: np.ndarray, quad: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """`layer`'s quad warped onto a frame of `frame` (width, height) pixels."""
    shrink = min(1.0, 1.5 * max(frame) / float(np.ptp(quad, axis=0).max()))
    if shrink < 1:  # a large photo: shrink by area first, as bilinear warping would alias
        size = (max(1, round(layer.shape[1] * shrink)), max(1, round(layer.shape[0] * shrink)))
        quad = quad * np.float32([size[0] / layer.shape[1], size[1] / layer.shape[0]])
        layer = cv2.resize(layer, size, interpolation=cv2.INTER_AREA)
    width, height = frame
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), corners)
    return cv2.warpPerspective(layer, matrix, frame, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
