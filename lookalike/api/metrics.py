"""Prometheus metrics of our own, served with BentoML's at `/metrics`.

- `lookalike_search_stage_seconds{stage}`: the API's time per stage of a request (fetch, decode,
  detect, embed, store); a search observes each stage it ran once.
- `lookalike_model_queue_seconds{model}`: how long each call to a model service waited in its
  adaptive-batching queue before its batch started (the model services observe it).
- `lookalike_model_batch_seconds{model}`: the model's time per batch.
BentoML's own `bentoml_service_adaptive_batch_size` gives the batch sizes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import bentoml

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("fetch", "decode", "detect", "embed", "store")

search_stage_seconds = bentoml.metrics.Histogram(
    name="lookalike_search_stage_seconds",
    documentation="Time the API spends per stage of a request.",
    labelnames=["stage"],
    buckets=_LATENCY_BUCKETS,
)
model_queue_seconds = bentoml.metrics.Histogram(
    name="lookalike_model_queue_seconds",
    documentation="Time a call to a model service waited for its batch to start.",
    labelnames=["model"],
    buckets=_LATENCY_BUCKETS,
)
model_batch_seconds = bentoml.metrics.Histogram(
    name="lookalike_model_batch_seconds",
    documentation="Time a model service spends on one batch.",
    labelnames=["model"],
    buckets=_LATENCY_BUCKETS,
)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Times the block into `lookalike_search_stage_seconds{stage=name}`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        search_stage_seconds.labels(stage=name).observe(time.perf_counter() - started)


def observe_queue_time(model: str) -> None:
    """Observe every batched call's queue wait in this process, as `model`.

    BentoML's batcher (`CorkDispatcher`) stamps each call when it is queued but exports no wait; we
    wrap the method that starts a batch, the one place that sees both stamps. BentoML is pinned, and
    if its internals move this logs a warning and the metric stays empty: serving is unaffected.
    """
    try:
        from bentoml._internal.marshal.dispatcher import CorkDispatcher
    except ImportError:
        log.warning("BentoML's batcher moved: lookalike_model_queue_seconds will not be observed")
        return
    original = CorkDispatcher.outbound_call
    if getattr(original, "_lookalike_model", None) is not None:
        return

    async def outbound_call(self, inputs_info, *args, **kwargs):
        started = time.time()
        for job in inputs_info:
            model_queue_seconds.labels(model=model).observe(max(0.0, started - job.enqueue_time))
        return await original(self, inputs_info, *args, **kwargs)

    outbound_call._lookalike_model = model
    CorkDispatcher.outbound_call = outbound_call
