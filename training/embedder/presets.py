"""Training and evaluation presets side by side (torchvision references' `presets.py`).

Both yield uint8 HWC pixels, as serving does; the model scales and normalises inside. The eval
preset is `lookalike.preprocess.EvalPreset`, shared with serving and indexing. Random choices come
from a numpy Generator so every cached training view is reproducible from (seed, image, view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.preprocess import _RESAMPLING, EvalPreset

__all__ = ["EvalPreset", "TrainPreset"]


@dataclass(frozen=True, kw_only=True)
class TrainPreset:
    """Random resized crop (area `scale`, aspect `ratio`) to `crop_size`, then a random horizontal flip."""

    crop_size: int = 224
    scale: tuple[float, float] = (0.4, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    interpolation: str = "bicubic"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        image = image.convert("RGB")
        left, top, width, height = self._box(image.size, rng)
        crop = image.resize(
            (self.crop_size, self.crop_size),
            _RESAMPLING[self.interpolation],
            box=(left, top, left + width, top + height),
        )
        pixels = np.asarray(crop, dtype=np.uint8)
        return pixels[:, ::-1].copy() if rng.random() < self.hflip else pixels

    def _box(self, size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
        width, height = size
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
        side = min(width, height)  # fall back to the centre square
        return (width - side) // 2, (height - side) // 2, side, side
