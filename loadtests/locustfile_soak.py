"""Soak: the mix (loadtests/mix.py) at a constant load for a set time, sampling the resident memory
of each service process (lookalike, embedder, detector) to check that it does not grow. Against
`make demo`, run from the checkout's root (the service processes are found there by command line):

    LOADTEST_SOAK_USERS=30 LOADTEST_SOAK_S=600 \\
    .venv/bin/locust -f loadtests/locustfile_soak.py --host http://127.0.0.1:3000 \\
        --headless --csv var/loadtest/soak --html var/loadtest/soak.html --only-summary

Memory is flat when each process's RSS over the last tenth of the run is within ±10% of its RSS
after the first tenth (warm-up: caches, pools). Result: $LOADTEST_OUT (var/loadtest/soak.json).
"""

from __future__ import annotations

import logging
import os

from locust import LoadTestShape

from loadtests.mix import Shopper  # noqa: F401
from loadtests.services import Sampler, service_processes
from loadtests.windows import Window, env, write_result

log = logging.getLogger(__name__)
TOLERANCE = 0.10


class Soak(LoadTestShape):
    users = int(env("LOADTEST_SOAK_USERS", 30))
    seconds = env("LOADTEST_SOAK_S", 600)
    sample_s = env("LOADTEST_SAMPLE_S", 5)

    def __init__(self) -> None:
        super().__init__()
        root = os.environ.get("LOADTEST_SERVER_PID")
        self.sampler = Sampler(service_processes(int(root) if root else None))
        if not self.sampler.processes:
            log.warning("no service processes found: memory is not sampled (run from the checkout's root)")
        self.window: Window | None = None
        self.next_sample = 0.0

    def tick(self):
        run_time = self.get_run_time()
        if self.window is None:
            self.window = Window(self.runner.stats)
            self.sampler.start()
        if run_time >= self.next_sample:
            self.sampler.sample()
            self.next_sample = run_time + self.sample_s
        if run_time >= self.seconds:
            self.report()
            return None
        return self.users, max(self.users / 2, 5)

    def report(self) -> None:
        memory = {}
        for name, samples in self.sampler.rss.items():
            if len(samples) < 4:
                continue
            tenth = max(1, len(samples) // 10)
            early = sum(rss for _, rss in samples[tenth : 2 * tenth]) / tenth
            late = sum(rss for _, rss in samples[-tenth:]) / tenth
            growth = late / early - 1
            memory[name] = {
                "after_warmup_mb": round(early / 2**20, 1),
                "end_mb": round(late / 2**20, 1),
                "peak_mb": round(max(rss for _, rss in samples) / 2**20, 1),
                "growth": round(growth, 4),
                "flat": abs(growth) <= TOLERANCE,
            }
        write_result(
            "soak",
            {
                "users": self.users,
                "seconds": self.seconds,
                "load": self.window.close() if self.window else None,
                "cpu_cores": {k: round(v, 3) for k, v in self.sampler.cpu().items()},
                "memory": memory,
                "memory_flat": bool(memory) and all(m["flat"] for m in memory.values()),
                "rss_samples": {
                    name: [(round(t, 1), rss) for t, rss in samples] for name, samples in self.sampler.rss.items()
                },
            },
        )
