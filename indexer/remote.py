"""The deployed model services as engines: `--embedder-url` / `--detector-url` instead of local models.

`RemoteEmbedder` and `RemoteDetector` are called as `lookalike.engines`' engines are (uint8 pixels in,
a dict of arrays out), so the pipeline and `MainItems` do not know where the models run. Each calls
the `embed` / `detect` API of a `bentos.embedder:Embedder` / `bentos.detector:Detector` server
(on its own, or any server exposing those APIs) with `bentoml.SyncHTTPClient`, from as many
threads as the pipeline's model workers: each thread has its own client, and the server batches
what arrives from all of them. Scaling out is BentoML's: more replicas or GPUs behind the URL.

Wire format: a BentoML server takes numpy arrays from outside as JSON only (its binary pickle
encoding is refused by a main server), so a batch of 32 crops travels as 4.8M numbers: measured on
2 busy cores, 4.4 s per 32 crops through `embed`, against 0.6 s for the same batch sent as one
.npy file to an API taking a file. When the server also has `<api>_npy` (a non-batchable API
taking the batch as an uploaded .npy file and returning the same array, as `Embedder.embed_npy` and
`Detector.detect_npy` do), that one is used, in calls of at most `MAX_NPY_IMAGES` images. Answers
come back as JSON either way, read into an ndarray by the client: a few percent of the pixels' numbers.

The preprocessing and the vector sizes still come from the model cards in the local BentoML model
store (metadata only: no model is loaded), as the API service reads them; every answer is checked
against them, so a server running another model fails the run at once. A call that fails for a
reason that may pass (the server overloaded or restarting, a dropped connection) is retried
`retries` times with a backoff; then the run stops, as it does at once when the server refuses a
batch (a 400 from `<api>_npy` says what it expected).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np

from bentos.detector import BOX_COLUMNS
from bentos.npy import MAX_NPY_IMAGES
from lookalike.modelcard import EmbedderCard

log = logging.getLogger(__name__)

# The suffix of an API that takes the batch as an .npy file (see the module docstring).
NPY_SUFFIX = "_npy"
_TRANSIENT = (bentoml.exceptions.ServiceUnavailable, httpx.TransportError, ConnectionError, TimeoutError, OSError)


class RemoteError(RuntimeError):
    """A model service that cannot be used: unreachable, without the API, or serving another model."""


class RemoteModel:
    """One batchable API (`api`) of the BentoML server at `url`, called with a uint8 pixel batch."""

    def __init__(self, url: str, api: str, *, timeout_s: float = 120.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.api = api
        self.timeout_s = timeout_s
        self.retries = retries
        self._local = threading.local()
        self._client()  # fail now, in the caller's words, if the server or the API is missing

    def _client(self) -> bentoml.SyncHTTPClient:
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=10)
            except httpx.HTTPError as error:
                raise RemoteError(f"cannot reach the model service at {self.url}: {error}") from None
            if ready.status_code != 200:
                raise RemoteError(f"the model service at {self.url} is not ready (/readyz: {ready.status_code})")
            # Readiness is checked above: the client's own wait spins without pausing while nothing listens.
            client = bentoml.SyncHTTPClient(self.url, timeout=self.timeout_s, server_ready_timeout=0)
            if self.api not in client.endpoints:
                client.close()
                raise RemoteError(
                    f"the service at {self.url} has no /{self.api} API (it has {sorted(client.endpoints)}); "
                    f"give the URL of a server running the {self.api} service"
                )
            self._local.client = client
        return client

    def call(self, pixels: np.ndarray) -> np.ndarray:
        for attempt in range(self.retries + 1):
            try:
                return self._call(self._client(), pixels)
            except _TRANSIENT as error:
                if attempt == self.retries:
                    raise RemoteError(f"/{self.api} at {self.url} failed {attempt + 1} times: {error}") from error
                log.warning("/%s at %s failed (%s); retrying", self.api, self.url, error)
                time.sleep(min(10.0, 0.5 * 2**attempt))
            except bentoml.exceptions.BentoMLException as error:  # refused (4xx) or failed (5xx): no retry
                raise RemoteError(f"/{self.api} at {self.url} failed on pixels {pixels.shape}: {error}") from error
        raise AssertionError("unreachable")

    def _call(self, client: bentoml.SyncHTTPClient, pixels: np.ndarray) -> np.ndarray:
        if self.api + NPY_SUFFIX not in client.endpoints or not len(pixels):  # (`_npy` refuses empty batches)
            return np.asarray(client.call(self.api, pixels=np.ascontiguousarray(pixels)))
        parts = []
        with tempfile.TemporaryDirectory(prefix="indexer-") as folder:
            path = Path(folder) / "pixels.npy"
            for start in range(0, len(pixels), MAX_NPY_IMAGES):
                np.save(path, np.ascontiguousarray(pixels[start : start + MAX_NPY_IMAGES], np.uint8))
                parts.append(np.asarray(client.call(self.api + NPY_SUFFIX, pixels=path)))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class RemoteEmbedder:
    """`Embedder.embed` at `url` as an engine: pixels -> {"shape", "color"[, "detail"]}, split by the card's sizes."""

    def __init__(self, url: str, card: EmbedderCard, **options) -> None:
        self.model = RemoteModel(url, "embed", **options)
        self.card = card

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.model.call(pixels)
        expected = sum(self.card.dims.values())
        if rows.ndim != 2 or rows.shape != (len(pixels), expected):
            raise RemoteError(
                f"the embedder at {self.model.url} answered {rows.shape} for {len(pixels)} crops; the local card says "
                f"{expected} columns ({self.card.dims}): it serves another "
                "model than the local model store holds"
            )
        rows = rows.astype(np.float32, copy=False)
        return self.card.split_columns(rows)


class RemoteDetector:
    """`Detector.detect` at `url` as an engine: letterboxed pixels -> {"boxes", "scores"} per anchor."""

    def __init__(self, url: str, classes: int, **options) -> None:
        self.model = RemoteModel(url, "detect", **options)
        self.classes = classes

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.model.call(pixels)
        if rows.ndim != 3 or len(rows) != len(pixels) or rows.shape[2] != BOX_COLUMNS + self.classes:
            raise RemoteError(
                f"the detector at {self.model.url} answered {rows.shape} for {len(pixels)} photos; the local card "
                f"has {self.classes} classes: it serves another model than the local model store holds"
            )
        rows = rows.astype(np.float32, copy=False)
        return {"boxes": rows[..., :BOX_COLUMNS], "scores": rows[..., BOX_COLUMNS:]}
