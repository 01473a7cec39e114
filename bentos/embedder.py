"""Embedder: uint8 pixels -> `shape` and `color` vectors, adaptively batched."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np

from bentos.npy import read_npy_batch
from lookalike.api.metrics import model_batch_seconds, observe_queue_time
from lookalike.engines import EMBEDDER_FILE, Device, batching_options, service_resources, serving_device
from lookalike.settings import get_settings

# Latency-bound: a photo waits at most this long for company. On 2 CPU cores 500 ms keeps bursts
# from being shed with 503 (seen at 10 ms) while a lone request pays only the dispatcher's estimate.
# On a GPU (LOOKALIKE_GPU=true) a batch of 64 crops is a few milliseconds, so batches grow to the
# TensorRT profile's maximum (`trt_batch_profile`) within a shorter window (not yet measured on a GPU).
# (max_batch_size, max_latency_ms) per serving device; LOOKALIKE_BATCHING=false turns batching off.
BATCHING: dict[Device, tuple[int, int]] = {"cpu": (32, 500), "gpu": (64, 100)}
MAX_BATCH_SIZE, MAX_LATENCY_MS = BATCHING[serving_device()]


@bentoml.service(
    name="embedder",
    workers=1,
    traffic={"timeout": 60},
    # The caller's client session is recycled after `max_requests`; under bursts of >100
    # in-flight calls that broke requests ("Connector is closed"), so recycle far less often.
    runner_connection={"max_requests": 1_000_000},
    **service_resources(),  # {"resources": {"gpu": 1}} when LOOKALIKE_GPU=true
)
class Embedder:
    model = bentoml.models.BentoModel(get_settings().embedder_model)

    def __init__(self) -> None:
        observe_queue_time("embedder")
        from lookalike.engines import open_engine
        from lookalike.modelcard import EmbedderCard

        # TensorRT on a GPU where it runs, else ONNX Runtime (LOOKALIKE_ENGINE overrides).
        self.engine = open_engine(self.model.path_of(EMBEDDER_FILE))
        self.card = EmbedderCard.from_metadata(self.model.info.metadata)

    @bentoml.api(**batching_options(BATCHING))
    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 -> (n, sum of the card's dims) float32: `shape` columns first, then `color`
        (then `detail`, for embedders that make it: `EmbedderCard.split_columns` takes them apart)."""
        return self._embed(pixels)

    @bentoml.api
    def embed_npy(self, pixels: Path) -> np.ndarray:
        """`embed` for a batch sent as one .npy file (`numpy.save`), for callers outside the server.

        BentoML takes an array from outside only as JSON: 32 crops are 4.8M numbers and arrive ~7x
        slower than as a file (`indexer.remote`). Not batchable: the caller sends a batch. A file
        that is not a (n, crop_size, crop_size, 3) uint8 .npy (`EmbedderCard.preset`) is refused with 400.
        """
        return self._embed(read_npy_batch(pixels, self.card.preset.crop_size, "crops"))

    def _embed(self, pixels: np.ndarray) -> np.ndarray:
        with model_batch_seconds.labels(model="embedder").time():
            vectors = self.engine(pixels)
        return np.concatenate([vectors[name] for name in self.card.vector_names], axis=1)
