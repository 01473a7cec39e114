"""Baselines the neural embedders must beat by a wide margin.

Each baseline maps uint8 pixels (n, h, w, 3) — the same preset crops the embedder sees — to
vectors compared by `metric` (see `training.embedder.retrieval.Features`):

- `phash`, `dhash`, `whash`: imagehash's perceptual (DCT), difference and wavelet hashes of
  the grey image, 64 bits each (hash_size 8, the library's default); Hamming distance.
- `colorhash`: imagehash's colour hash (binbits 3: 42 bits of the shares of black, grey and
  coarse hue bins); Hamming distance.
- `hsv`: a colour histogram, 8 hue x 4 saturation x 4 value bins (OpenCV's HSV, hue 0-180),
  hues rotated by half a bin so that red does not straddle the wrap at 180, compared by the
  Bhattacharyya coefficient sum(sqrt(p * q)), computed as the cosine of the
  square-rooted L1-normalised histograms so that search stays one matrix product.
- `imagenet`: the untrained backbone, ImageNet-pretrained EfficientNet-Lite0's pooled
  penultimate features (1280-d), exported once to ONNX and run with ONNX Runtime; cosine.

`FeatureCache` keeps baseline features on disk keyed by the pixels' digest, so a second
evaluation (another model, the same data and seed) skips them; a change to how queries are
made changes the pixels and so misses the cache instead of reading stale vectors. A change to
how a baseline computes its vectors must change its `cache_key`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
import torch
from PIL import Image
from torch import nn

from lookalike.engines import OnnxEmbedder

log = logging.getLogger(__name__)

HSV_BINS = (8, 4, 4)


@dataclass(frozen=True)
class HashBaseline:
    """An imagehash function as a baseline: one packed code per image."""

    name: str
    function: Callable[..., imagehash.ImageHash]
    options: dict = field(default_factory=dict)
    metric: str = "hamming"
    parallel_batches: bool = True  # a Python loop over images: batches in threads overlap PIL's work

    @property
    def cache_key(self) -> str:
        options = (f"{key}{value}" for key, value in sorted(self.options.items()))
        return "-".join([self.name, *options, f"imagehash{imagehash.__version__}"])

    @property
    def description(self) -> str:
        bits = self.function(Image.new("RGB", (64, 64)), **self.options).hash.size
        return f"Hamming, {bits} bits"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.stack([pack_hash(self.function(Image.fromarray(image), **self.options)) for image in pixels])


def pack_hash(value: imagehash.ImageHash) -> np.ndarray:
    """An ImageHash's bits as packed uint8; zero padding to whole bytes leaves Hamming distances unchanged."""
    return np.packbits(np.asarray(value.hash, dtype=bool).ravel())


@dataclass(frozen=True)
class HsvHistogram:
    """Square roots of the L1-normalised HSV histogram: their cosine is the Bhattacharyya coefficient."""

    bins: tuple[int, int, int] = HSV_BINS
    name: str = "hsv"
    metric: str = "cosine"
    parallel_batches: bool = True

    @property
    def cache_key(self) -> str:
        return "hsv-" + "x".join(map(str, self.bins)) + "-red-centred"

    @property
    def description(self) -> str:
        return f"Bhattacharyya, {'x'.join(map(str, self.bins))} bins"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.stack([self.histogram(image) for image in pixels])

    def histogram(self, rgb: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2HSV)
        # Half a hue bin of rotation centres red on bin 0; else reds at hue 179 and 0 fall into two bins.
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(90 / self.bins[0])) % 180
        counts = cv2.calcHist([hsv], [0, 1, 2], None, list(self.bins), [0, 180, 0, 256, 0, 256]).ravel()
        return np.sqrt(counts / max(counts.sum(), 1.0)).astype(np.float32)


class PooledFeatures(nn.Module):
    """[0, 1] images -> a timm model's pooled pre-logits features, normalised as the model was trained."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features((images - self.mean) / self.std)
        return self.model.forward_head(features, pre_logits=True)


def export_imagenet_features(path: Path, crop_size: int) -> Path:
    """The untrained backbone as an ONNX graph taking uint8 pixels (batch, crop, crop, 3)."""
    from training.backbone import efficientnet_lite0
    from training.onnx_export import export_onnx

    log.info("exporting the ImageNet backbone to %s", path)
    return export_onnx(PooledFeatures(efficientnet_lite0(pretrained=True)).eval(), path, crop_size, names=["features"])


class ImageNetFeatures:
    """ImageNet-pretrained EfficientNet-Lite0, no training: pooled penultimate features (1280-d)."""

    name = "imagenet"
    metric = "cosine"
    cache_key = "imagenet-tf_efficientnet_lite0"
    description = "cosine, 1280-d"
    parallel_batches = False  # ONNX Runtime already uses every core

    def __init__(self, onnx_path: Path):
        self.onnx_path = Path(onnx_path)
        self._engine: OnnxEmbedder | None = None

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self._engine is None:  # exported on first use: a fully cached run never needs it
            if not self.onnx_path.is_file():
                export_imagenet_features(self.onnx_path, pixels.shape[1])
            self._engine = OnnxEmbedder(self.onnx_path)
        return self._engine(pixels)["features"]


def build_baselines(names: list[str], work_dir: Path) -> list:
    """Baselines by name; `work_dir` holds the exported ImageNet graph."""
    factories: dict[str, Callable[[], object]] = {
        "phash": lambda: HashBaseline("phash", imagehash.phash, {"hash_size": 8}),
        "dhash": lambda: HashBaseline("dhash", imagehash.dhash, {"hash_size": 8}),
        "whash": lambda: HashBaseline("whash", imagehash.whash, {"hash_size": 8}),
        "colorhash": lambda: HashBaseline("colorhash", imagehash.colorhash, {"binbits": 3}),
        "hsv": HsvHistogram,
        "imagenet": lambda: ImageNetFeatures(Path(work_dir) / "imagenet-features.onnx"),
    }
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {sorted(factories)}")
    return [factories[name]() for name in names]


def pixel_digests(pixels: np.ndarray) -> np.ndarray:
    """One 16-byte digest per image, the cache key of its features."""
    return np.array([hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in pixels], dtype="S16")


class FeatureCache:
    """Features of deterministic encoders on disk, one .npz per encoder, keyed by pixel digest."""

    def __init__(self, folder: Path | None):
        self.folder = None if folder is None else Path(folder)

    def lookup(self, key: str, digests: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(features with rows for the hits or None, bool mask of the hits)."""
        stored = self._read(key)
        if stored is None:
            return None, np.zeros(len(digests), bool)
        known, features = stored
        position = {digest: row for row, digest in enumerate(known)}
        rows = np.array([position.get(digest, -1) for digest in digests])
        hits = rows >= 0
        result = np.zeros((len(digests), *features.shape[1:]), features.dtype)
        result[hits] = features[rows[hits]]
        return result, hits

    def store(self, key: str, digests: np.ndarray, features: np.ndarray) -> None:
        if self.folder is None:
            return
        stored = self._read(key)
        if stored is not None:
            fresh = ~np.isin(digests, stored[0])
            digests = np.concatenate([stored[0], digests[fresh]])
            features = np.concatenate([stored[1], features[fresh]])
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{key}.{os.getpid()}.npz"
        np.savez(partial, digests=digests, features=features)
        partial.replace(self._path(key))  # atomic: a concurrent run reads the old or the new file

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def _read(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.folder is None or not self._path(key).is_file():
            return None
        with np.load(self._path(key)) as stored:
            return stored["digests"], stored["features"]
