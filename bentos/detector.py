"""Detector: letterboxed uint8 pixels -> every anchor's box and class scores, adaptively batched."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np

from bentos.npy import read_npy_batch
from lookalike.api.metrics import model_batch_seconds, observe_queue_time
from lookalike.engines import DETECTOR_FILE, Device, batching_options, service_resources, serving_device
from lookalike.settings import get_settings

# As the embedder's (bentos/embedder.py): a photo waits at most this long for company; shorter
# waits made the batcher shed bursts with 503 on 2 cores. One photo is one row. On a GPU
# (LOOKALIKE_GPU=true) larger batches in a shorter window (not yet measured on a GPU).
# (max_batch_size, max_latency_ms) per serving device; LOOKALIKE_BATCHING=false turns batching off.
BATCHING: dict[Device, tuple[int, int]] = {"cpu": (16, 500), "gpu": (64, 100)}
MAX_BATCH_SIZE, MAX_LATENCY_MS = BATCHING[serving_device()]
# Each returned row: per anchor, its box (x0, y0, x1, y1 in input pixels), then one score per class.
BOX_COLUMNS = 4


@bentoml.service(
    name="detector",
    workers=1,
    traffic={"timeout": 60},
    # The caller's client session is recycled after `max_requests`; under bursts of >100
    # in-flight calls that broke requests ("Connector is closed"), so recycle far less often.
    runner_connection={"max_requests": 1_000_000},
    **service_resources(),  # {"resources": {"gpu": 1}} when LOOKALIKE_GPU=true
)
class Detector:
    model = bentoml.models.BentoModel(get_settings().detector_model)

    def __init__(self) -> None:
        observe_queue_time("detector")
        from lookalike.engines import open_engine
        from lookalike.modelcard import DetectorCard

        # TensorRT on a GPU where it runs, else ONNX Runtime (LOOKALIKE_ENGINE overrides).
        self.engine = open_engine(self.model.path_of(DETECTOR_FILE))
        self.card = DetectorCard.from_metadata(self.model.info.metadata)

    @bentoml.api(**batching_options(BATCHING))
    def detect(self, pixels: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 letterboxed (`DetectorCard.preset`) -> (n, anchors, 4 + classes) float32.

        A batchable API returns one array, so each image's `boxes` and `scores` travel side by side;
        `split` takes them apart for `lookalike.detection.postprocess`.
        """
        return self._detect(pixels)

    @bentoml.api
    def detect_npy(self, pixels: Path) -> np.ndarray:
        """`detect` for a batch sent as one .npy file (`numpy.save`), for callers outside the server.

        BentoML takes an array from outside only as JSON: a batch of photos is millions of numbers
        and arrives ~7x slower than as a file (`indexer.remote`). Not batchable: the caller sends
        a batch. A file that is not a (n, S, S, 3) uint8 .npy is refused with 400.
        """
        return self._detect(read_npy_batch(pixels, self.card.preset.size, "letterboxed photos"))

    def _detect(self, pixels: np.ndarray) -> np.ndarray:
        with model_batch_seconds.labels(model="detector").time():
            outputs = self.engine(pixels)
        return np.concatenate([outputs["boxes"], outputs["scores"]], axis=2)


def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's (anchors, 4 + classes) row of `Detector.detect` -> boxes (anchors, 4), scores (anchors, classes)."""
    return rows[:, :BOX_COLUMNS], rows[:, BOX_COLUMNS:]
