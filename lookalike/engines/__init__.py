"""Inference engines for the exported models: one interface, three backends.

    engine = open_engine("training/artifacts/embedder.onnx")       # the backend the settings choose
    outputs = engine(pixels)    # uint8 (n, h, w, 3) -> {"shape": (n, 128), "color": (n, 128), ...} float32

Backends (`BACKENDS`), all taking the shipped ONNX file:
- `tensorrt` (`trt.py`): a TensorRT engine built from the ONNX file on the serving machine
  (float16, a min/opt/max batch profile, a timing cache), cached on disk under a key of the ONNX
  file's sha256, the GPU's name and TensorRT's version; `python -m lookalike.engines build`.
- `onnxruntime` (`ort.py`): CPU, with the CUDA provider where onnxruntime-gpu is installed.
- `torch` (`reference.py`): the graph run by torch, the reference the others are tested against.

`LOOKALIKE_ENGINE=auto` (the default) takes TensorRT where it imports and a CUDA GPU is present,
else ONNX Runtime. `LOOKALIKE_GPU=true` makes the model services ask BentoML for a GPU and use
the GPU batch sizes (`serving_device`). Importing this package imports no backend.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal

from lookalike.engines.base import Engine, file_sha256, pad_rows, plan_batches, run_in_batches
from lookalike.engines.ort import OnnxDetector, OnnxEmbedder, OnnxModel, OrtOptions, available_providers

log = logging.getLogger(__name__)

# The file inside each model store entry.
EMBEDDER_FILE = "embedder.onnx"
DETECTOR_FILE = "detector.onnx"
Backend = Literal["tensorrt", "onnxruntime", "torch"]
BACKENDS: tuple[Backend, ...] = ("tensorrt", "onnxruntime", "torch")
Device = Literal["cpu", "gpu"]

__all__ = [
    "BACKENDS",
    "DETECTOR_FILE",
    "EMBEDDER_FILE",
    "Engine",
    "OnnxDetector",
    "OnnxEmbedder",
    "OnnxModel",
    "OrtOptions",
    "available_providers",
    "choose_backend",
    "file_sha256",
    "load_detector",
    "load_embedder",
    "open_engine",
    "pad_rows",
    "plan_batches",
    "run_in_batches",
    "service_resources",
    "serving_device",
    "unavailable",
]


@cache
def unavailable(backend: Backend) -> str | None:
    """Why `backend` cannot run on this machine, or None when it can."""
    if backend == "onnxruntime":
        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"
    if backend == "torch":
        missing = [name for name in ("torch", "onnx") if importlib.util.find_spec(name) is None]
        return f"{' and '.join(missing)} not installed (pip install -e '.[train]')" if missing else None
    if backend == "tensorrt":
        from lookalike.engines.trt import tensorrt_unavailable

        return tensorrt_unavailable()
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def choose_backend(requested: str | None = None) -> Backend:
    """`requested` (default: the `engine` setting); "auto" is TensorRT where it can run, else ONNX Runtime."""
    if requested is None:
        from lookalike.settings import get_settings

        requested = get_settings().engine
    if requested == "auto":
        reason = unavailable("tensorrt")
        if reason is None:
            return "tensorrt"
        log.info("engine auto: ONNX Runtime (no TensorRT: %s)", reason)
        return "onnxruntime"
    if requested not in BACKENDS:
        raise ValueError(f"unknown engine {requested!r}; expected auto or one of {BACKENDS}")
    reason = unavailable(requested)
    if reason:
        raise RuntimeError(f"engine {requested!r} was asked for but cannot run here: {reason}")
    return requested


def open_engine(path: str | Path, backend: str | None = None) -> Engine:
    """The model at `path` (an ONNX file) on `backend` (default: the `engine` setting), configured by the settings."""
    backend = choose_backend(backend)
    if backend == "onnxruntime":
        return OnnxModel(path)
    if backend == "tensorrt":
        from lookalike.engines.trt import TensorRTEngine, TrtOptions

        return TensorRTEngine(path, TrtOptions.from_settings())
    from lookalike.engines.reference import TorchEngine

    return TorchEngine(path)


def serving_device() -> Device:
    """Where the model services run: "gpu" when the `gpu` setting asks for one."""
    from lookalike.settings import get_settings

    return "gpu" if get_settings().gpu else "cpu"


def service_resources() -> dict:
    """`@bentoml.service` keyword arguments for the serving device: a GPU when one is asked for."""
    return {"resources": {"gpu": 1}} if serving_device() == "gpu" else {}


def batching_options(limits: Mapping[Device, tuple[int, int]]) -> dict:
    """`@bentoml.api` keyword arguments of a model service's batched API: adaptive batching up to
    `limits[device]` = (max_batch_size, max_latency_ms) on the serving device. With the `batching`
    setting off, the API is not batchable at all: each caller's batch runs as it comes (the load
    tests' batching-off arm; BentoML refuses max_batch_size=1 with batching on)."""
    from lookalike.settings import get_settings

    if not get_settings().batching:
        return {"batchable": False}
    max_batch_size, max_latency_ms = limits[serving_device()]
    return {"batchable": True, "batch_dim": (0, 0), "max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms}


def load_embedder(tag: str, backend: str | None = None):
    """The embedder saved in the BentoML model store under `tag` on `backend`, and its card."""
    import bentoml

    from lookalike.modelcard import EmbedderCard

    model = bentoml.models.get(tag)
    return open_engine(model.path_of(EMBEDDER_FILE), backend), EmbedderCard.from_metadata(model.info.metadata)


def load_detector(tag: str, backend: str | None = None):
    """The detector saved in the BentoML model store under `tag` on `backend`, and its card."""
    import bentoml

    from lookalike.modelcard import DetectorCard

    model = bentoml.models.get(tag)
    return open_engine(model.path_of(DETECTOR_FILE), backend), DetectorCard.from_metadata(model.info.metadata)
