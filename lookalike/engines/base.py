"""What every engine is: uint8 pixels (n, h, w, 3) in, named float32 outputs (n, ...) out.

The backends (`ort`, `trt`, `reference`) differ in what runs the graph; callers see one
interface. The batch planning here is pure, so it is tested without TensorRT.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np


class Engine:
    """An exported model: uint8 pixels (n, h, w, 3) -> its named outputs, float32, each (n, ...).

    A backend sets `path`, `input_name`, `output_names` and `item_shapes` (one image's shape of
    each output; an axis the graph leaves symbolic counts as 0) and implements `run`.
    """

    backend: ClassVar[str] = ""
    path: Path
    input_name: str
    output_names: list[str]
    item_shapes: dict[str, tuple[int, ...]]

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, np.uint8)
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"expected uint8 pixels (n, h, w, 3), got shape {pixels.shape}")
        if len(pixels) == 0:
            return {name: np.zeros((0, *self.item_shape(name)), np.float32) for name in self.output_names}
        return self.run(pixels)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def item_shape(self, name: str) -> tuple[int, ...]:
        """One image's output shape; an axis the graph leaves symbolic counts as 0."""
        return self.item_shapes[name]

    def dim(self, name: str) -> int:
        """The width of a vector output (an embedder's `shape`, `color`)."""
        return self.item_shape(name)[-1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, backend={self.backend!r})"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Batches for engines that take only some batch sizes (TensorRT profiles, static-shape graphs)


def plan_batches(n: int, min_batch: int, max_batch: int) -> list[tuple[int, int, int]]:
    """Split `n` rows into runs an engine taking batches of `min_batch`..`max_batch` accepts.

    Returns (start, stop, size) per run: rows start:stop are sent padded to `size` rows
    (size = stop - start unless that is below `min_batch`). A static-shape engine has
    min_batch == max_batch, so every run, the last one included, is exactly that size.
    """
    if not 1 <= min_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    runs = []
    for start in range(0, n, max_batch):
        stop = min(n, start + max_batch)
        runs.append((start, stop, max(stop - start, min_batch)))
    return runs


def pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` with zero rows appended up to `size` (the rows themselves when already that long)."""
    if len(rows) > size:
        raise ValueError(f"cannot pad {len(rows)} rows down to {size}")
    if len(rows) == size:
        return rows
    padding = np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)
    return np.concatenate([rows, padding])


def run_in_batches(run, pixels: np.ndarray, min_batch: int, max_batch: int) -> dict[str, np.ndarray]:
    """`run(batch) -> {name: (size, ...)}` over `pixels` in planned runs; padding rows are dropped."""
    parts: dict[str, list[np.ndarray]] = {}
    for start, stop, size in plan_batches(len(pixels), min_batch, max_batch):
        outputs = run(pad_rows(pixels[start:stop], size))
        for name, value in outputs.items():
            parts.setdefault(name, []).append(value[: stop - start])
    return {name: np.concatenate(values) if len(values) > 1 else values[0] for name, values in parts.items()}
