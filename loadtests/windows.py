"""Latency over a window of a Locust run (a step, a phase), from the running totals of `runner.stats`.

Locust keeps, per request name and in total, a histogram of response times ({rounded ms: count});
the difference of two snapshots is the window's histogram, so each step of a shape gets its own
p50/p95/p99, requests/s and failures, not the run's cumulative ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from locust.stats import calculate_response_time_percentile

log = logging.getLogger(__name__)


class Window:
    """Open at `start`, read with `close`: requests, failures, rps and percentiles since `start`."""

    def __init__(self, stats) -> None:
        self.stats = stats
        self.start()

    def start(self) -> None:
        total = self.stats.total
        self.t0 = time.monotonic()
        self.requests0 = total.num_requests
        self.failures0 = total.num_failures
        self.times0 = dict(total.response_times)

    def close(self) -> dict:
        total = self.stats.total
        seconds = time.monotonic() - self.t0
        requests = total.num_requests - self.requests0
        times = {ms: n - self.times0.get(ms, 0) for ms, n in total.response_times.items()}
        times = {ms: n for ms, n in times.items() if n > 0}
        timed = sum(times.values())
        pct = {
            f"p{q}": (calculate_response_time_percentile(times, timed, q / 100) if timed else None)
            for q in (50, 95, 99)
        }
        return {
            "seconds": round(seconds, 1),
            "requests": requests,
            "failures": total.num_failures - self.failures0,
            "rps": round(requests / seconds, 2) if seconds else 0.0,
            **pct,
        }


def write_result(default_name: str, result: dict) -> Path:
    """The shape's result as JSON at $LOADTEST_OUT (else var/loadtest/`default_name`.json)."""
    path = Path(os.environ.get("LOADTEST_OUT", f"var/loadtest/{default_name}.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    log.info("%s: %s", default_name, json.dumps(result))
    return path


def env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
