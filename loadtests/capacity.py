"""Capacity run: how much of the request mix one machine holds, what adaptive batching buys, where it breaks.

    .venv/bin/python -m loadtests.capacity --out loadtests/reports/capacity    # what `make loadtest` runs

In one run, on this machine's cores:
1. the engines alone (`lookalike.engines`): embedder and detector throughput at batch 1 and 8, and the
   API's preprocessing per photo and per crop: the requests/s the models alone could sustain;
2. for adaptive batching on, then off (LOOKALIKE_BATCHING=false: the model APIs not batchable): `bentoml serve` on
   the demo store, the step load (`locustfile_step.py`, same steps for both), the CPU and RSS of each
   service process, and the per-stage latency and batch sizes from /metrics;
3. with batching on, the overload run (`locustfile_overload.py`): what shedding answers, and recovery.
Then `report.md` (tables, capacity model) and PNG plots in --out; Locust's CSV and HTML in --work.
The service must not be running (the embedded store is one process); everything started is stopped.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("loadtests.capacity")
ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENTOML_HOME", str(ROOT / "var" / "bentoml"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

# The mix (loadtests/mix.py): share of requests by kind.
MIX = {"search": 0.7, "similar": 0.2, "detect": 0.1}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests/reports/capacity", help="report.md and plots")
    parser.add_argument("--work", type=Path, default=ROOT / "var/loadtest", help="Locust CSV/HTML, server logs")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--p99-ms", type=float, default=500.0, help="latency bound of the step load")
    parser.add_argument("--step-users", type=int, default=6)
    parser.add_argument("--step-s", type=float, default=15.0, help="seconds per step (first 3 s not counted)")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--burst-users", type=int, default=150, help="simultaneous users of the overload phase")
    parser.add_argument(
        "--phase-s", type=float, default=10.0, help="seconds per overload phase (before, burst; after: x2)"
    )
    parser.add_argument("--no-overload", action="store_true")
    parser.add_argument("--soak-s", type=float, default=0.0, help="instead of all else: a soak of this many seconds")
    parser.add_argument("--soak-users", type=int, default=10)
    parser.add_argument("--arms", default="on,off", help="batching arms to run, in order")
    parser.add_argument("--bench-s", type=float, default=2.0, help="seconds per engine measurement")
    return parser


def budget_s(args: argparse.Namespace) -> float:
    """The most this run can take: what `make loadtest` promises (starts, steps, overload, stops, bench)."""
    arms = len(args.arms.split(","))
    if args.soak_s:
        return 60 + 20 + args.soak_s + 15
    per_arm = 60 + 20 + args.step_s * (args.max_steps + 1) + 15  # start, stop, steps, Locust start-up
    return 8 * args.bench_s + 20 + arms * per_arm + (0 if args.no_overload else 4 * args.phase_s + 15)


# ---- 1. the engines alone -------------------------------------------------------------------------


def bench_engines(seconds: float) -> dict:
    """Throughput of each engine at batch 1 and 8 on real photos, and the API's preprocessing costs."""
    import numpy as np
    from PIL import Image

    from lookalike.engines import load_detector, load_embedder
    from lookalike.settings import get_settings

    settings = get_settings()
    embedder, embedder_card = load_embedder(settings.embedder_model)
    detector, detector_card = load_detector(settings.detector_model)
    photos = [Image.open(p).convert("RGB") for p in sorted((settings.clothing_dir / "validation").glob("*/*.jpg"))[:16]]

    def rate(fn, items_per_call: int) -> float:
        fn()  # warm
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn()
            calls += 1
        return calls * items_per_call / (time.perf_counter() - started)

    result = {"embedder": {}, "detector": {}, "engine": type(embedder).__name__}
    crops = embedder_card.preset.batch(photos[:8])
    letterboxed = [detector_card.preset(p)[0] for p in photos[:8]]
    for batch in (1, 8):
        result["embedder"][batch] = rate(functools.partial(embedder, crops[:batch]), batch)
        result["detector"][batch] = rate(functools.partial(detector, np.stack(letterboxed[:batch])), batch)
    result["preprocess_crop_ms"] = 1000 / rate(lambda: embedder_card.preset(photos[0]), 1)
    result["preprocess_detect_ms"] = 1000 / rate(lambda: detector_card.preset(photos[0]), 1)
    return result


# ---- 2. the service under load ----------------------------------------------------------------------


def locust(locustfile: str, name: str, env: dict, args: argparse.Namespace, timeout_s: float, sampler=None) -> dict:
    """Locust headless on `locustfile` against the server; its JSON result; samples `sampler` meanwhile."""
    import psutil

    out = args.work / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", f"loadtests/{locustfile}", "--host", f"http://127.0.0.1:{args.port}",
        "--headless", "--only-summary", "--csv", str(args.work / name), "--html", str(args.work / f"{name}.html"),
    ]  # fmt: skip
    started = time.monotonic()
    with (args.work / f"{name}.log").open("w") as logfile:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "LOADTEST_OUT": str(out)},
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        me = psutil.Process(proc.pid)
        cpu0 = 0.0
        while proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                log.warning("%s ran past %.0f s: stopping it", name, timeout_s)
                proc.terminate()
                proc.wait(10)
                break
            if sampler is not None:
                sampler.sample()
            try:
                times = me.cpu_times()
                cpu0 = times.user + times.system
            except psutil.Error:
                pass
            time.sleep(1.0)
    wall = time.monotonic() - started
    result = json.loads(out.read_text()) if out.exists() else {"error": f"no result; see {name}.log"}
    result["locust_exit"] = proc.returncode
    result["locust_cores"] = round(cpu0 / wall, 3)
    return result


def run_arm(batching: bool, args: argparse.Namespace) -> dict:
    from loadtests.services import Sampler, Server, histograms, scrape, service_processes

    arm = "on" if batching else "off"
    demo_env = dict(line.split("=", 1) for line in (ROOT / "var/demo.env").read_text().split() if "=" in line)
    clothing = demo_env.get("LOOKALIKE_CLOTHING_DIR", os.environ.get("LOOKALIKE_CLOTHING_DIR", ""))
    env = {
        **demo_env,
        "LOOKALIKE_CATALOG_IMAGES_DIR": f"{clothing}/train",
        "LOOKALIKE_BATCHING": "true" if batching else "false",
    }
    server = Server(args.port, env, args.work / f"serve-batching-{arm}.log")
    log.info("batching %s: starting the service", arm)
    server.start(timeout_s=60)
    try:
        processes = service_processes(server.proc.pid)
        sampler = Sampler(processes)
        before = scrape(server.url)
        sampler.start()
        step_env = {
            "LOADTEST_P99_MS": str(args.p99_ms),
            "LOADTEST_STEP_USERS": str(args.step_users),
            "LOADTEST_STEP_S": str(args.step_s),
            "LOADTEST_MAX_STEPS": str(args.max_steps),
            "LOOKALIKE_CLOTHING_DIR": clothing,
        }
        log.info("batching %s: step load", arm)
        step = locust("locustfile_step.py", f"step-batching-{arm}", step_env, args,
                      timeout_s=args.step_s * (args.max_steps + 1) + 60, sampler=sampler)  # fmt: skip
        cpu = sampler.cpu()
        cpu_seconds = {name: cores * (time.monotonic() - sampler.started) for name, cores in cpu.items()}
        after = scrape(server.url)
        result = {
            "batching": batching,
            "step": step,
            "cpu_cores": cpu,
            "cpu_seconds": cpu_seconds,
            "rss_mb": {
                name: {
                    "start": samples[0][1] / 2**20,
                    "end": samples[-1][1] / 2**20,
                    "peak": max(r for _, r in samples) / 2**20,
                }
                for name, samples in sampler.rss.items()
                if samples
            },
            "rss_samples": {name: samples for name, samples in sampler.rss.items()},
            "stages": histograms(before, after, "lookalike_search_stage_seconds", "stage"),
            "queue": histograms(before, after, "lookalike_model_queue_seconds", "model"),
            "batch_seconds": histograms(before, after, "lookalike_model_batch_seconds", "model"),
            "batch_size": _batch_sizes(before, after),
            "requests": _requests(args.work / f"step-batching-{arm}_stats.csv"),
        }
        if batching and not args.no_overload:
            log.info("batching %s: overload", arm)
            result["overload"] = locust(
                "locustfile_overload.py",
                "overload",
                {
                    "LOADTEST_BASE_USERS": str(args.step_users),
                    "LOADTEST_BURST_USERS": str(args.burst_users),
                    "LOADTEST_PHASE_S": str(args.phase_s),
                    "LOADTEST_P99_MS": str(args.p99_ms),
                    "LOOKALIKE_CLOTHING_DIR": clothing,
                },
                args,
                timeout_s=4 * args.phase_s + 60,
            )
            result["overload"]["rss_mb_after"] = {
                name: proc.memory_info().rss / 2**20 for name, proc in processes.items() if proc.is_running()
            }
        return result
    finally:
        log.info("batching %s: stopping the service", arm)
        server.stop()


def run_soak(args: argparse.Namespace) -> Path:
    """The soak (`locustfile_soak.py`, batching on) on a service started here; soak.md and soak-rss.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtests.services import Server

    demo_env = dict(line.split("=", 1) for line in (ROOT / "var/demo.env").read_text().split() if "=" in line)
    clothing = demo_env.get("LOOKALIKE_CLOTHING_DIR", os.environ.get("LOOKALIKE_CLOTHING_DIR", ""))
    server = Server(
        args.port, {**demo_env, "LOOKALIKE_CATALOG_IMAGES_DIR": f"{clothing}/train"}, args.work / "serve-soak.log"
    )
    started, load = time.time(), os.getloadavg()
    server.start(timeout_s=60)
    try:
        soak = locust(
            "locustfile_soak.py",
            "soak",
            {
                "LOADTEST_SOAK_USERS": str(args.soak_users),
                "LOADTEST_SOAK_S": str(args.soak_s),
                "LOADTEST_SERVER_PID": str(server.proc.pid),
                "LOOKALIKE_CLOTHING_DIR": clothing,
            },
            args,
            timeout_s=args.soak_s + 60,
        )
    finally:
        server.stop()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, samples in soak.get("rss_samples", {}).items():
        ax.plot([t for t, _ in samples], [r / 2**20 for _, r in samples], label=name)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MB")
    ax.set_title(f"Soak: {args.soak_users} users, {args.soak_s:.0f} s (2 shared cores)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "soak-rss.png", dpi=110)
    plt.close(fig)
    load_stats = soak.get("load") or {}
    lines = [
        f"# Soak: {args.soak_users} users of the mix for {args.soak_s:.0f} s (batching on)",
        "",
        (
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}. **2 cores shared with other engineers' jobs** "
            f"(load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end); Locust on the same cores."
        ),
        "",
        (
            f"Load: {load_stats.get('rps', '–')} requests/s, p50 {load_stats.get('p50')} ms, p95 {load_stats.get('p95')} ms, "
            f"p99 {load_stats.get('p99')} ms, {load_stats.get('requests')} requests, {load_stats.get('failures')} failures."
        ),
        "",
        *table_head(
            "process",
            "CPU cores",
            "RSS after warm-up (2nd tenth) MB",
            "RSS last tenth MB",
            "peak MB",
            "growth",
            "flat (±10%)",
        ),
    ]
    for name, m in soak.get("memory", {}).items():
        lines.append(
            f"| {name} | {soak['cpu_cores'].get(name, float('nan')):.2f} | {m['after_warmup_mb']} | {m['end_mb']} | "
            f"{m['peak_mb']} | {100 * m['growth']:+.1f}% | {m['flat']} |"
        )
    lines += ["", f"Memory flat: **{soak.get('memory_flat')}**.", "", "![rss](soak-rss.png)"]
    path = args.out / "soak.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _batch_sizes(before: dict, after: dict) -> dict:
    """Per service: batches, calls and calls per batch (`bentoml_service_adaptive_batch_size` counts calls, not rows)."""
    sizes: dict[str, dict] = {}
    for (name, labels), value in after.items():
        if name.startswith("bentoml_service_adaptive_batch_size") and name.endswith(("_sum", "_count")):
            service = dict(labels).get("runner_name") or dict(labels).get("service_name") or "?"
            entry = sizes.setdefault(service, {"batches": 0.0, "calls": 0.0})
            entry["batches" if name.endswith("_count") else "calls"] += value - before.get((name, labels), 0.0)
    for entry in sizes.values():
        entry["mean"] = entry["calls"] / entry["batches"] if entry["batches"] else float("nan")
    return sizes


def _requests(stats_csv: Path) -> dict:
    """Locust's per-name totals of the whole run: {name: row}."""
    import csv

    if not stats_csv.exists():
        return {}
    with stats_csv.open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


# ---- 3. the report ----------------------------------------------------------------------------------


def plots(arms: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, result in arms.items():
        steps = result["step"].get("steps", [])
        ax.plot([s["rps"] for s in steps], [s["p99"] for s in steps], "o-", label=f"batching {arm}: p99")
        ax.plot([s["rps"] for s in steps], [s["p50"] for s in steps], "x--", label=f"batching {arm}: p50")
    ax.axhline(next(iter(arms.values()))["step"].get("p99_bound_ms", 500), color="grey", lw=0.8)
    ax.set_xlabel("requests/s (step)")
    ax.set_ylabel("latency, ms")
    ax.set_yscale("log")
    ax.set_title("Step load: latency against throughput (2 shared cores)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "step-latency.png", dpi=110)
    names.append("step-latency.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, result in arms.items():
        for name, samples in result["rss_samples"].items():
            ax.plot([t for t, _ in samples], [r / 2**20 for _, r in samples], label=f"{name} (batching {arm})")
    ax.set_xlabel("seconds into the step load")
    ax.set_ylabel("RSS, MB")
    ax.set_title("Resident memory of each service process")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rss.png", dpi=110)
    names.append("rss.png")
    plt.close(fig)
    return names


def table_head(*columns: str) -> list[str]:
    """A Markdown table's header row and the separator row under it."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def capacity_model(engines: dict, arms: dict) -> dict:
    """Requests/s per core and the model-only limit, from the batching-on arm."""
    on = arms.get("on") or next(iter(arms.values()))
    requests = sum(int(row["Request Count"]) for name, row in on["requests"].items() if name != "Aggregated")
    service_cpu = sum(on["cpu_seconds"].values())
    found = on["step"].get("items_found", {})
    answered = sum(f["searches"] for f in found.values())
    crops_per_search = sum(f["items"] for f in found.values()) / answered if answered else float("nan")
    emb = engines["embedder"][8]  # images/s: the batch the service mostly runs is small; 1 and 8 are alike here
    det = engines["detector"][1]
    model_s = MIX["search"] * (1 / det + crops_per_search / emb) + MIX["detect"] * (1 / det)
    preprocess_s = (MIX["search"] + MIX["detect"]) * engines["preprocess_detect_ms"] / 1000 + MIX[
        "search"
    ] * crops_per_search * engines["preprocess_crop_ms"] / 1000
    best = on["step"].get("best") or {}
    return {
        "requests": requests,
        "service_cpu_s": service_cpu,
        "cpu_ms_per_request": 1000 * service_cpu / requests if requests else float("nan"),
        "rps_per_core": requests / service_cpu if service_cpu else float("nan"),
        "crops_per_search": crops_per_search,
        "model_ms_per_request": 1000 * model_s,
        "model_only_rps": 1 / model_s,
        "preprocess_ms_per_request": 1000 * preprocess_s,
        "best_rps": best.get("rps"),
    }


def machines(target_rps: float, per_machine: float | None) -> str:
    return str(math.ceil(target_rps / per_machine)) if per_machine else "–"


def qdrant_cluster(items_per_search: float) -> list[str]:
    """The Qdrant cluster for 10M catalogue images, extrapolated from the 1M Qdrant Edge figures (FINDINGS)."""
    queries = 100 * 2 * (2.0 if math.isnan(items_per_search) else items_per_search)
    return [
        "",
        "## Qdrant for 10M catalogue images (extrapolated from the 1M Qdrant Edge figures in FINDINGS; not measured)",
        "",
        (
            "- Per point: two 128-d float32 vectors, 1 KB, kept for rescoring; binary codes 2 x 16 B (always in RAM); HNSW "
            "m=16, about 2 x 128 B of layer-0 links; payload about 0.2 KB: about 1.5 KB, so **10M points need about 15 GB** "
            "with the originals in RAM (on disk, rescoring with oversampling 8 reads ~800 random vectors per query). "
            "At 1M, `optimize()` peaked at 6.4 GB RSS and took 1043 s on 2 cores."
        ),
        (
            "- Query: 1.6-2.1 ms p50 at 1M; HNSW cost grows about with log N, so about 3-4 ms at 10M. A photo search runs "
            f"one query per vector per item (~{items_per_search:.1f} items): 100 searches/s is ~{queries:.0f} queries/s, "
            "about 1.5 cores busy; a cluster is sized by RAM and index builds, not by query CPU."
        ),
        (
            "- Proposed: **3 nodes x 8 vCPU, 32 GB RAM, NVMe; 6 shards, replication factor 2** (each node ~6.7M point "
            "copies, ~10 GB steady, headroom for one shard's optimize peak, survives one node down). Full re-index: "
            "upsert ~16K points/s per 2 cores, HNSW build ~1043 s per 1M per 2 cores, so about 30-40 min across the "
            "three nodes (replicas included). The server adds a network hop (~1 ms) that Edge does not have."
        ),
    ]


def write_report(engines: dict, arms: dict, started: float, load: tuple, out: Path, args) -> Path:
    pictures = plots(arms, out)
    model = capacity_model(engines, arms)
    lines = [
        "# Capacity of one machine: the request mix, batching on and off, overload",
        "",
        (
            f"Run `python -m loadtests.capacity` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s). **Machine: 2 cores, shared with other engineers' jobs during the run** "
            f"(load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end); Locust ran on the same "
            "2 cores. Every figure below is from this one run: compare them with each other, not with other runs."
        ),
        "",
        (
            "Batching **on**: the model services' own `max_batch_size` (embedder 32, detector 16), 500 ms window. "
            "**off**: `LOOKALIKE_BATCHING=false`, the model APIs declared `batchable=False`: each request's crops "
            "run as one call, never merged with another request's. Same steps, same mix, one after the other."
        ),
        "",
        (
            "Mix (`loadtests/mix.py`): 70% `POST /search` of a validation photo with 1 item (50%), 2 or 3 items "
            "(30%, 20%: photos pasted side by side), 20% `GET /products/demo/{offer_id}/similar`, 10% `POST /detect`; "
            "0.5-1.5 s between a user's requests. Demo catalogue: 3,068 photos in the embedded Qdrant Edge store."
        ),
        "",
        (
            f"## Step load (`locustfile_step.py`): +{args.step_users} users every {args.step_s:.0f} s "
            f"(first 3 s of each step not counted) until a step's p99 > {args.p99_ms:.0f} ms or a failure"
        ),
        "",
        *table_head("batching", "users", "requests/s", "p50 ms", "p95 ms", "p99 ms", "failures"),
    ]
    for arm, result in arms.items():
        for s in result["step"].get("steps", []):
            lines.append(
                f"| {arm} | {s['users']} | {s['rps']:.1f} | {fmt(s['p50'])} | {fmt(s['p95'])} | {fmt(s['p99'])} | {s['failures']} |"
            )
    lines += [
        "",
        *table_head("batching", "highest requests/s with p99 ≤ bound, 0 failures", "at users", "stopped because"),
    ]
    for arm, result in arms.items():
        best = result["step"].get("best") or {}
        lines.append(
            f"| {arm} | {fmt(best.get('rps'), 1)} | {best.get('users', '–')} | {result['step'].get('stopped')} |"
        )
    lines += ["", f"![step load]({pictures[0]})", "", "## Whole step run, per request kind (Locust)", "",
              *table_head("batching", "request", "count", "failures", "median ms", "p95 ms", "p99 ms")]  # fmt: skip
    for arm, result in arms.items():
        for name, row in result["requests"].items():
            lines.append(
                f"| {arm} | {name} | {row['Request Count']} | {row['Failure Count']} | {row['50%']} | {row['95%']} | {row['99%']} |"
            )
    lines += ["", "## Service processes over the step run", "",
              *table_head("batching", "process", "CPU cores used (mean)", "CPU s", "RSS start MB", "RSS end MB",
                          "RSS peak MB")]  # fmt: skip
    for arm, result in arms.items():
        for name, cores in result["cpu_cores"].items():
            rss = result["rss_mb"].get(name, {})
            lines.append(
                f"| {arm} | {name} | {cores:.2f} | {result['cpu_seconds'][name]:.0f} | {fmt(rss.get('start'))} | "
                f"{fmt(rss.get('end'))} | {fmt(rss.get('peak'))} |"
            )
        lines.append(f"| {arm} | Locust (load generator, same cores) | {result['step']['locust_cores']:.2f} | | | | |")
    lines += ["", f"![rss]({pictures[1]})", "", "## Where a request's time goes (/metrics, step run)", "",
              *table_head("batching", "stage", "observations", "mean ms", "p50 ms", "p95 ms")]  # fmt: skip
    for arm, result in arms.items():
        for kind, table in (
            ("stage", result["stages"]),
            ("queue", result["queue"]),
            ("batch", result["batch_seconds"]),
        ):
            for key, s in sorted(table.items()):
                label = (
                    key if kind == "stage" else f"{key}: {'wait for batch' if kind == 'queue' else 'model per batch'}"
                )
                lines.append(
                    f"| {arm} | {label} | {s['count']:.0f} | {1000 * s['mean']:.1f} | {1000 * s['p50']:.1f} | {1000 * s['p95']:.1f} |"
                )
        for service, s in result["batch_size"].items():
            lines.append(
                f"| {arm} | {service}: calls per batch | {s['batches']:.0f} batches | {fmt(s['mean'], 2)} | | |"
            )
    lines += [
        "",
        (
            "`detect` and `embed` include the API's preprocessing (letterbox, crops) and the call to the model "
            "service, i.e. its queue, batch and HTTP; `store` is the Qdrant Edge query; decode is the photo's JPEG decode."
        ),
        "",
        f"## The engines alone (`lookalike.engines`, {engines['engine']}, same run, before the service started)",
        "",
        *table_head("model", "batch 1", "batch 8"),
        f"| embedder, crops/s | {engines['embedder'][1]:.0f} | {engines['embedder'][8]:.0f} |",
        f"| detector, photos/s | {engines['detector'][1]:.0f} | {engines['detector'][8]:.0f} |",
        "",
        (
            f"API preprocessing (PIL, one thread): {engines['preprocess_detect_ms']:.1f} ms per photo for the detector, "
            f"{engines['preprocess_crop_ms']:.1f} ms per crop for the embedder."
        ),
        "",
        "Items the service found per photo search (step run, batching on), by items pasted into the photo: "
        + ", ".join(
            f"{k} pasted: {v['items'] / v['searches']:.2f} found ({v['searches']} searches)"
            for k, v in (arms.get("on") or next(iter(arms.values())))["step"].get("items_found", {}).items()
            if v["searches"]
        )
        + ".",
    ]
    if "overload" in arms.get("on", {}):
        ov = arms["on"]["overload"]
        lines += ["", (f"## Overload (`locustfile_overload.py`, batching on): {ov.get('base_users')} users, then "
                  f"{ov.get('burst_users')} with no pause, then {ov.get('base_users')} again ({ov.get('phase_s', 0):.0f} s, "
                  f"{ov.get('phase_s', 0):.0f} s, {2 * ov.get('phase_s', 0):.0f} s; 'after' judged over its second half)"), "",
                  *table_head("phase", "requests/s", "p50 ms", "p99 ms", "failures", "statuses (whole phase)")]  # fmt: skip
        for phase, p in ov.get("phases", {}).items():
            statuses = ", ".join(f"{k}: {v}" for k, v in p.get("statuses (whole phase)", {}).items())
            lines.append(
                f"| {phase} | {p['rps']:.1f} | {fmt(p['p50'])} | {fmt(p['p99'])} | {p['failures']} | {statuses} |"
            )
        lines += ["", f"503s while overloaded: {ov.get('shed_503', 0)}, with `Retry-After`: "
                  f"{ov.get('shed_with_retry_after', 0)}. Recovered (0 failures, p99 ≤ bound after the burst): "
                  f"**{ov.get('recovered')}**. RSS after: "
                  + ", ".join(f"{k} {v:.0f} MB" for k, v in ov.get("rss_mb_after", {}).items())]  # fmt: skip
    per_core = model["rps_per_core"]
    best = model["best_rps"]
    lines += [
        "",
        "## Capacity model (on paper, from the figures above)",
        "",
        (
            f"- Service CPU per request of the mix (batching on, whole step run): {model['service_cpu_s']:.0f} CPU-s for "
            f"{model['requests']} requests = **{model['cpu_ms_per_request']:.1f} ms of CPU per request, "
            f"{per_core:.1f} requests/s per core** if the service had the cores to itself."
        ),
        (
            f"- Items found (crops embedded) per photo search: {model['crops_per_search']:.2f}. Model time per request "
            f"of the mix (engines alone, both cores): {model['model_ms_per_request']:.1f} ms, so **the models alone could "
            f"sustain {model['model_only_rps']:.0f} requests/s** on these 2 cores; the API's preprocessing adds "
            f"{model['preprocess_ms_per_request']:.1f} ms of one thread per request."
        ),
        (
            f"- Measured: {fmt(best, 1)} requests/s at p99 ≤ {args.p99_ms:.0f} ms = "
            f"{fmt(100 * best / model['model_only_rps'] if best else None)}% of the model-only limit; the rest of "
            "the CPU goes to HTTP, multipart parsing, JSON, the inter-service calls, decode and the load generator."
        ),
        "",
        (
            "Machines for photo searches at p99 ≤ 500 ms, scaling the measured per-machine figure (2 cores, shared; a "
            "dedicated machine should do better). Searches are 70% of the mix, so a machine holding R requests/s "
            "of the mix holds 0.7 R searches/s among them; sized for searches-only traffic by the CPU per search:"
        ),
        "",
        *table_head("target", "2-core machines (this figure)", "8-core machines (linear per-core, untested)"),
    ]
    per_machine = best * 0.7 if best else None  # searches/s a 2-core machine holds within the mix
    for target in (10, 100):
        eight = per_machine * 4 if per_machine else None
        lines.append(f"| {target} searches/s | {machines(target, per_machine)} | {machines(target, eight)} |")
    lines += [
        "",
        (
            "More than one API process needs the catalogue in a Qdrant server or cluster (`LOOKALIKE_QDRANT_URL`): the "
            "embedded Edge store is single-process, so 1 against 2 API workers could not be measured here (no Qdrant "
            "server binary on this machine)."
        ),
    ]
    lines += qdrant_cluster(model["crops_per_search"])
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(
        json.dumps(
            {"engines": engines, "model": model, "arms": {k: {x: y for x, y in v.items() if x != "rss_samples"}
                                                          for k, v in arms.items()}},
            indent=1, default=str,
        )
    )  # fmt: skip
    return path


def main(args: argparse.Namespace) -> None:
    from loadtests.services import holders

    started, load = time.time(), os.getloadavg()
    log.info("this run ends within %.0f s", budget_s(args))
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            raise SystemExit(f"port {args.port} is in use: stop what serves there, or pass --port / PORT=")
    held = holders(ROOT / "var/store")
    if held:
        raise SystemExit(f"pids {held} hold var/store: stop them (e.g. `make demo`) first; Edge is one process")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.soak_s:
        path = run_soak(args)
        print(path.read_text())
        return
    log.info("engines alone")
    engines = bench_engines(args.bench_s)
    log.info("engines: %s", engines)
    arms = {}
    for arm in args.arms.split(","):
        arms[arm] = run_arm(arm == "on", args)
    path = write_report(engines, arms, started, load, args.out, args)
    log.info("report: %s (%.0f s)", path, time.time() - started)
    print(path.read_text())


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the `finally` blocks stop the service


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _exit_on_term)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(get_args_parser().parse_args())
