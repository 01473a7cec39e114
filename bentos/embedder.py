"""Embedder: uint8 pixels -> `shape` and `color` vectors, adaptively batched."""

from __future__ import annotations

import bentoml
import numpy as np

from lookalike.api.metrics import model_batch_seconds, observe_queue_time
from lookalike.engines import EMBEDDER_FILE
from lookalike.settings import get_settings

# Latency-bound: a photo waits at most this long for company; 500 ms keeps bursts from being
# shed with 503 (seen at 10 ms on 2 cores) while a lone request pays only the dispatcher's estimate.
MAX_BATCH_SIZE = 32
MAX_LATENCY_MS = 500


@bentoml.service(
    name="embedder",
    workers=1,
    traffic={"timeout": 60},
    # The caller's client session is recycled after `max_requests`; under bursts of >100
    # in-flight calls that broke requests ("Connector is closed"), so recycle far less often.
    runner_connection={"max_requests": 1_000_000},
)
class Embedder:
    model = bentoml.models.BentoModel(get_settings().embedder_model)

    def __init__(self) -> None:
        observe_queue_time("embedder")
        from lookalike.engines import OnnxEmbedder
        from lookalike.modelcard import EmbedderCard

        self.engine = OnnxEmbedder(self.model.path_of(EMBEDDER_FILE))
        self.card = EmbedderCard.from_metadata(self.model.info.metadata)

    @bentoml.api(batchable=True, batch_dim=(0, 0), max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 -> (n, shape_dim + color_dim) float32: `shape` columns first, then `color`."""
        with model_batch_seconds.labels(model="embedder").time():
            vectors = self.engine(pixels)
        return np.concatenate([vectors["shape"], vectors["color"]], axis=1)
