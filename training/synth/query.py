"""What every query family makes: a picture a shopper would send, and where the item is in it.

A family (`training.synth.families`) turns a catalogue photo and its garment mask into a
`Query`. The box is the target garment's visible extent in the query's pixels: the evaluation
uses it the way a shopper uses the page, to pick which detected item to search with, never to
crop the query itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Query:
    image: Image.Image  # RGB
    box: Box  # the target garment's visible extent in `image`


@dataclass(frozen=True)
class Other:
    """Another catalogue photo a family may show beside or over the target (a collage, an occluder)."""

    image: Image.Image
    mask: np.ndarray  # bool (h, w), the garment


def mask_box(mask: np.ndarray) -> Box | None:
    """The tight box of a mask's true pixels (or of alpha > 0.5), None when it is empty."""
    mask = np.asarray(mask)
    mask = mask > 0.5 if mask.dtype.kind == "f" else mask.astype(bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def warp_box(box: Box, matrix: np.ndarray) -> Box:
    """The box around a box's four corners moved by a 2x3 affine or 3x3 perspective matrix."""
    x0, y0, x1, y1 = box
    corners = np.float32([[[x0, y0]], [[x1, y0]], [[x1, y1]], [[x0, y1]]])
    matrix = np.asarray(matrix, np.float32)
    moved = cv2.perspectiveTransform(corners, matrix) if matrix.shape == (3, 3) else cv2.transform(corners, matrix)
    xs, ys = moved[:, 0, 0], moved[:, 0, 1]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    )


def others_of(items: Sequence[Other], count: int, rng: np.random.Generator) -> list[Other]:
    """`count` of `items` drawn without replacement (fewer when there are fewer)."""
    if not items:
        return []
    picked = rng.choice(len(items), min(count, len(items)), replace=False)
    return [items[int(i)] for i in picked]
