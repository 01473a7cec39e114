"""Step load: the mix (loadtests/mix.py) with more users each step until a step's p99 passes a bound
or a request fails; reports the highest requests/s sustained below the bound. Against `make demo`:

    LOADTEST_P99_MS=500 LOADTEST_STEP_USERS=10 LOADTEST_STEP_S=20 LOADTEST_MAX_STEPS=12 \\
    .venv/bin/locust -f loadtests/locustfile_step.py --host http://127.0.0.1:3000 \\
        --headless --csv var/loadtest/step --html var/loadtest/step.html --only-summary

Each step's users, requests/s, p50/p95/p99 and failures (its own window, after the first
`LOADTEST_SETTLE_S` seconds of the step) go to $LOADTEST_OUT (var/loadtest/step.json).
"""

from __future__ import annotations

import logging

from locust import LoadTestShape

from loadtests.mix import FOUND, Shopper  # noqa: F401
from loadtests.windows import Window, env, write_result

log = logging.getLogger(__name__)


class StepLoad(LoadTestShape):
    p99_ms = env("LOADTEST_P99_MS", 500)
    step_users = int(env("LOADTEST_STEP_USERS", 10))
    step_s = env("LOADTEST_STEP_S", 20)
    settle_s = env("LOADTEST_SETTLE_S", 3)  # users still arriving: not counted
    max_steps = int(env("LOADTEST_MAX_STEPS", 12))

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict] = []
        self.step = 0
        self.window: Window | None = None
        self.stopped: str | None = None

    def tick(self):
        if self.stopped:
            return None
        run_time = self.get_run_time()
        step = int(run_time // self.step_s)
        if self.window is None and run_time - step * self.step_s >= self.settle_s:
            self.window = Window(self.runner.stats)
        if step != self.step:  # a step ended: judge it
            if self.window is not None:
                result = {"users": (self.step + 1) * self.step_users, **self.window.close()}
                self.steps.append(result)
                log.info("step %s", result)
                if result["failures"]:
                    self.stopped = "failures"
                elif result["p99"] is not None and result["p99"] > self.p99_ms:
                    self.stopped = f"p99 {result['p99']} ms > {self.p99_ms:.0f} ms"
            self.window = None
            self.step = step
            if step >= self.max_steps and not self.stopped:
                self.stopped = f"reached {self.max_steps} steps"
            if self.stopped:
                self.report()
                return None
        users = (step + 1) * self.step_users
        return users, max(users / 2, 5)

    def report(self) -> None:
        good = [s for s in self.steps if not s["failures"] and s["p99"] is not None and s["p99"] <= self.p99_ms]
        best = max(good, key=lambda s: s["rps"], default=None)
        write_result(
            "step",
            {
                "p99_bound_ms": self.p99_ms,
                "step_s": self.step_s,
                "stopped": self.stopped,
                "best": best,
                "steps": self.steps,
                "items_found": {str(k): {"searches": n, "items": m} for k, (n, m) in FOUND.items()},
            },
        )
