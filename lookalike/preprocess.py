"""The one preprocessing of Lookalike: photo -> fixed-size RGB pixels.

Geometry (resize, centre crop) happens here on uint8 pixels; scaling to [0, 1] and
normalising by mean/std happen inside the exported model, so the numbers live in one place
(the preset, saved in the model's metadata) and the engines receive 4x smaller uint8 batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True, kw_only=True)
class EvalPreset:
    """Resize the short side to `resize_size`, centre-crop `crop_size` (torchvision's eval preset)."""

    crop_size: int = 224
    resize_size: int = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLING)}, not {self.interpolation!r}")
        if self.resize_size < self.crop_size:
            raise ValueError("resize_size must be at least crop_size")

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image -> uint8 array (crop_size, crop_size, 3)."""
        image = image.convert("RGB")
        width, height = image.size
        scale = self.resize_size / min(width, height)
        resized = image.resize(
            (max(self.crop_size, round(width * scale)), max(self.crop_size, round(height * scale))),
            _RESAMPLING[self.interpolation],
        )
        left = (resized.width - self.crop_size) // 2
        top = (resized.height - self.crop_size) // 2
        cropped = resized.crop((left, top, left + self.crop_size, top + self.crop_size))
        return np.asarray(cropped, dtype=np.uint8)

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """Images -> uint8 array (n, crop_size, crop_size, 3), the embedder's input."""
        return np.stack([self(image) for image in images]) if images else self.empty()

    def empty(self) -> np.ndarray:
        return np.zeros((0, self.crop_size, self.crop_size, 3), dtype=np.uint8)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EvalPreset:
        values = dict(values)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
