"""The service under load: start and stop `bentoml serve`, find its processes, sample them, read /metrics.

Used by the capacity run (`loadtests/capacity.py`) and the soak shape (`locustfile_soak.py`).
The embedded store (Qdrant Edge) is single-process: `start` refuses while anything holds `var/store`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SERVICES = ("lookalike", "embedder", "detector")


def holders(folder: Path) -> list[int]:
    """Pids with a file open under `folder` (what would fight over the embedded store)."""
    folder = folder.resolve()
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if any(Path(f.path).is_relative_to(folder) for f in proc.open_files()):
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def service_processes(root: int | None = None) -> dict[str, psutil.Process]:
    """{service name: worker process} by command line `--service-name NAME`.

    Only descendants of `root` when given, else only processes running in this checkout (other
    BentoML services on the machine, e.g. a container's, are not ours).
    """
    if root is not None:
        try:
            candidates = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            candidates = []
    else:
        here = os.getcwd()
        candidates = []
        for proc in psutil.process_iter():
            try:
                if proc.cwd() == here:
                    candidates.append(proc)
            except psutil.Error:
                continue
    found = {}
    for proc in candidates:
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "--service-name" in cmdline:
            name = cmdline[cmdline.index("--service-name") + 1]
            if name in SERVICES:
                found[name] = proc
    return found


@dataclass
class Sampler:
    """RSS and CPU time of each service process, sampled on demand."""

    processes: dict[str, psutil.Process]
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    cpu_start: dict[str, float] = field(default_factory=dict)
    started: float = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for name, proc in self.processes.items():
            times = proc.cpu_times()
            self.cpu_start[name] = times.user + times.system
            self.rss[name] = []
        self.sample()

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, proc in self.processes.items():
            try:
                self.rss[name].append((now, proc.memory_info().rss))
            except psutil.Error:
                pass

    def cpu(self) -> dict[str, float]:
        """Cores used by each process since `start` (CPU seconds / wall seconds)."""
        wall = time.monotonic() - self.started
        used = {}
        for name, proc in self.processes.items():
            try:
                times = proc.cpu_times()
                used[name] = (times.user + times.system - self.cpu_start[name]) / wall
            except psutil.Error:
                used[name] = float("nan")
        return used


@dataclass
class Server:
    """`bentoml serve` of service.py in this checkout, in its own process group."""

    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        bentoml = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "bentoml"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(bentoml), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200 and len(service_processes(self.proc.pid)) == len(SERVICES):
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"not ready in {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the group we started, SIGKILL after `grace_s`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of `url`/metrics: {(name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def histograms(before: dict, after: dict, name: str, label: str) -> dict[str, dict[str, float]]:
    """Per value of `label`: count, mean and bucket-interpolated p50/p95 of histogram `name` between scrapes."""
    out: dict[str, dict] = {}
    for (sample, labels), value in after.items():
        if not sample.startswith(name):
            continue
        labels_d = dict(labels)
        key = labels_d.get(label)
        if key is None:
            continue
        delta = value - before.get((sample, labels), 0.0)
        entry = out.setdefault(key, {"count": 0.0, "sum": 0.0, "buckets": {}})
        if sample == f"{name}_count":
            entry["count"] += delta
        elif sample == f"{name}_sum":
            entry["sum"] += delta
        elif sample == f"{name}_bucket":
            bound = float(labels_d["le"])
            entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + delta
    result = {}
    for key, entry in out.items():
        if entry["count"] <= 0:
            continue
        stats = {"count": entry["count"], "mean": entry["sum"] / entry["count"]}
        for q in (0.5, 0.95):
            stats[f"p{round(q * 100)}"] = _quantile(entry["buckets"], q)
        result[key] = stats
    return result


def _quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus' histogram_quantile: linear within the bucket holding the q-th observation."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, buckets[bound]
    return lower
