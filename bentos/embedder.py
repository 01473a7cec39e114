"""Embedder: uint8 pixels -> `shape` and `color` vectors, adaptively batched."""

from __future__ import annotations

import bentoml
import numpy as np

from lookalike.api.metrics import model_batch_seconds, observe_queue_time
from lookalike.engines import EMBEDDER_FILE, service_resources, serving_device
from lookalike.settings import get_settings

# Latency-bound: a photo waits at most this long for company. On 2 CPU cores 500 ms keeps bursts
# from being shed with 503 (seen at 10 ms) while a lone request pays only the dispatcher's estimate.
# On a GPU (LOOKALIKE_GPU=true) a batch of 64 crops is a few milliseconds, so batches grow to the
# TensorRT profile's maximum (`trt_batch_profile`) within a shorter window (not yet measured on a GPU).
BATCHING = {"cpu": {"max_batch_size": 32, "max_latency_ms": 500}, "gpu": {"max_batch_size": 64, "max_latency_ms": 100}}
DEVICE = serving_device()
# LOOKALIKE_BATCHING=false: the smallest batch BentoML 1.4.40 accepts (it refuses max_batch_size=1 when
# batchable=True), the load tests' batching-off arm.
MAX_BATCH_SIZE = BATCHING[DEVICE]["max_batch_size"] if get_settings().batching else 2
MAX_LATENCY_MS = BATCHING[DEVICE]["max_latency_ms"]


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

    @bentoml.api(batchable=True, batch_dim=(0, 0), max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 -> (n, shape_dim + color_dim) float32: `shape` columns first, then `color`."""
        with model_batch_seconds.labels(model="embedder").time():
            vectors = self.engine(pixels)
        return np.concatenate([vectors["shape"], vectors["color"]], axis=1)
