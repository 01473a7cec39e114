"""Overload: the mix (loadtests/mix.py) at a normal load, then far more simultaneous users than the
service can hold, sending with no pause, then the normal load again. Shows what the service answers
when it sheds (status, `Retry-After`) and whether it recovers. Against `make demo`:

    LOADTEST_BASE_USERS=10 LOADTEST_BURST_USERS=200 LOADTEST_PHASE_S=20 \\
    .venv/bin/locust -f loadtests/locustfile_overload.py --host http://127.0.0.1:3000 \\
        --headless --csv var/loadtest/overload --html var/loadtest/overload.html --only-summary

Per phase (before, overload, after): requests, statuses, how many 503s carried Retry-After, latency.
The last phase lasts twice as long; recovered: no failures and p99 within LOADTEST_P99_MS over its second half.
Locust exits 1 (the 503s are failures); the verdict is in $LOADTEST_OUT (var/loadtest/overload.json).
"""

from __future__ import annotations

import collections
import logging

from locust import LoadTestShape, between, events

from loadtests import mix  # not `import Shopper`: Locust would run every User class it finds here
from loadtests.windows import Window, env, write_result

log = logging.getLogger(__name__)
PHASE = {"name": "before"}
STATUS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_think = between(0.5, 1.5)


class Flood(mix.Shopper):
    """A Shopper who stops looking at the answers while the overload lasts."""

    def wait_time(self):
        return 0.0 if PHASE["name"] == "overload" else _think(self)


@events.request.add_listener
def _count(response=None, exception=None, **_) -> None:
    counts = STATUS[PHASE["name"]]
    status = getattr(response, "status_code", 0) or 0
    if not status:
        counts["no response"] += 1
        return
    counts[str(status)] += 1
    if response.status_code == 503:
        counts["503 with Retry-After" if response.headers.get("Retry-After") else "503 without Retry-After"] += 1


class Overload(LoadTestShape):
    base = int(env("LOADTEST_BASE_USERS", 10))
    burst = int(env("LOADTEST_BURST_USERS", 200))
    phase_s = env("LOADTEST_PHASE_S", 20)
    p99_ms = env("LOADTEST_P99_MS", 500)
    settle_s = 5.0  # users arriving: not counted

    def __init__(self) -> None:
        super().__init__()
        self.phases: dict[str, dict] = {}
        self.window: Window | None = None
        self.current = None

    def tick(self):
        run_time = self.get_run_time()
        # before and overload: phase_s each; after: 2 x phase_s, judged over its second half (the backlog
        # the burst left drains during the first).
        starts = {"before": 0.0, "overload": self.phase_s, "after": 2 * self.phase_s}
        if run_time >= 4 * self.phase_s:
            self.finish_phase()
            self.report()
            return None
        name = [n for n, t in starts.items() if run_time >= t][-1]
        if name != self.current:
            self.finish_phase()
            self.current = name
            PHASE["name"] = name
            self.window = None
        settle = self.phase_s if name == "after" else self.settle_s
        if self.window is None and run_time - starts[name] >= settle:
            self.window = Window(self.runner.stats)
        # Users start and stop at the burst's rate: the burst ends at once, not over half a minute.
        return (self.burst if name == "overload" else self.base), self.burst

    def finish_phase(self) -> None:
        if self.current and self.window is not None and self.current not in self.phases:
            self.phases[self.current] = {**self.window.close(), "statuses (whole phase)": dict(STATUS[self.current])}

    def report(self) -> None:
        after = self.phases.get("after", {})
        shed = STATUS.get("overload", {})
        write_result(
            "overload",
            {
                "base_users": self.base,
                "burst_users": self.burst,
                "phase_s": self.phase_s,
                "phases": self.phases,
                "statuses_whole_phase": {k: dict(v) for k, v in STATUS.items()},
                "shed_503": shed.get("503", 0),
                "shed_with_retry_after": shed.get("503 with Retry-After", 0),
                "recovered": bool(after)
                and after["failures"] == 0
                and after["p99"] is not None
                and after["p99"] <= self.p99_ms,
            },
        )
