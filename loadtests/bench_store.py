"""Benchmark the embedded vector store (Qdrant Edge): indexing speed, latency and recall.

    python -m loadtests.bench_store --points 100000 --out bench_store.md
    python -m loadtests.bench_store --points 2000          # quick check, a few seconds
    python -m loadtests.bench_store --fusion --queries 500  # fused shape + colour search instead
    python -m loadtests.bench_store --points 1000000 --quantizations all   # one store per quantisation

`--quantizations` (a comma-separated list of `lookalike.store.QUANTIZATIONS`, or `all`) builds one
store per quantisation, each in a child process forked from the one that made the data (so each
reports its own memory): upsert and `optimize()` time, disk, the store's resident memory (the
child's RSS after the searches less its RSS before opening the store) and its peak RSS; then
recall@k and latency unfiltered (codes + rescoring at 1x and 2x the oversampling, and codes alone)
and with a category filter (original vectors, as served, and codes + rescoring). Each store's rows
are written to `--out` (Markdown, and a PNG plot beside it) as soon as it is done, so a long run
that is stopped still leaves what it measured.

`--fusion` measures `search_fused` against Qdrant's server-side alternatives for shortlists
25/50/100/200 and weights (1, 0), (0.5, 0.5), (0.2, 0.8): recall@k of the fused top k against the
exact fused top k by brute force, and latency per query; and the latency of `vectors_of`. The colour
query is the colour vector of the same catalogue offer as the shape query, with noise of its own.

The data imitates embeddings rather than uniform noise: `--clusters` Gaussian clusters (default one
per 50 points, so 2,000 at 100K) around random unit centres, with an intra-cluster cosine of about
0.64; the colour vectors come from 256 clusters of their own. Categories are a 10 x 10 tree
assigned independently of the clusters, so the category filter (a top-level category, ~10% of the
points) keeps neighbours from many clusters: the harder case for a filtered search.

Queries are catalogue vectors with noise added (cosine ~0.95 to their source). Recall@k compares
each search with the true top-k by brute-force cosine in numpy over the original float vectors.
Search settings (hnsw_ef, oversampling) come from the settings (LOOKALIKE_*) unless given here.
The store is written to a fresh temporary folder, deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from qdrant_edge import Expression, Formula, Prefetch, QuantizationSearchParams, Query, QueryRequest, SearchParams
from tqdm import tqdm

from lookalike.catalog import Offer
from lookalike.settings import get_settings
from lookalike.store import (
    FULL_SCAN_THRESHOLD_KB,
    QUANTIZATIONS,
    Filters,
    Hit,
    Quantization,
    VectorName,
    _Point,
    _rank,
    point_id,
)
from lookalike.store.edge import EdgeStore

log = logging.getLogger("bench_store")

TOP_CATEGORIES = 10
LEAVES_PER_TOP = 10
COLOUR_CLUSTERS = 256
CLUSTER_SPREAD = 0.75  # noise norm relative to the unit centre: intra-cluster cosine ~ 1 / (1 + 0.75^2)
QUERY_NOISE = 0.33  # noise norm relative to a catalogue vector: cosine to the source ~ 0.95
WARMUP_QUERIES = 20
FUSION_SHORTLISTS = (25, 50, 100, 200)
# The vectors the fusion benchmark's stores hold and fuse.
FUSED: tuple[VectorName, ...] = ("shape", "color")
FUSION_WEIGHTS: tuple[dict[VectorName, float], ...] = (
    {"shape": 1.0, "color": 0.0},
    {"shape": 0.5, "color": 0.5},
    {"shape": 0.2, "color": 0.8},
)


@dataclass
class Dataset:
    offers: list[Offer]
    shape: np.ndarray
    color: np.ndarray
    ids: np.ndarray  # point id of each row
    top_category: np.ndarray
    queries: np.ndarray
    color_queries: np.ndarray  # the colour vectors of the same offers as `queries`, with noise


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int, spread: float) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    return centres[rng.integers(0, clusters, n)] + noise


def make_dataset(points: int, dim: int, clusters: int, queries: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    shape = clustered(rng, points, dim, clusters, CLUSTER_SPREAD)
    color = clustered(rng, points, dim, COLOUR_CLUSTERS, CLUSTER_SPREAD)
    top = rng.integers(0, TOP_CATEGORIES, points)
    leaf = top * LEAVES_PER_TOP + rng.integers(0, LEAVES_PER_TOP, points)
    offers = [
        Offer(
            shop=f"shop-{i % 7}",
            offer_id=f"{i}",
            title=f"offer {i}",
            url=f"https://shop.example/{i}",
            image_url=f"https://img.example/{i}.jpg",
            price=float(i % 500),
            currency="EUR",
            category_id=1000 + int(leaf[i]),
            category_ids=[1000 + int(leaf[i]), 1 + int(top[i])],
            gender=("women", "men", "unisex")[i % 3],
        )
        for i in range(points)
    ]
    ids = np.array([point_id(offer.shop, offer.offer_id) for offer in offers])
    sources = rng.integers(0, points, queries)
    unit = shape[sources] / np.linalg.norm(shape[sources], axis=1, keepdims=True)
    noisy = unit + rng.standard_normal((queries, dim)).astype(np.float32) * (QUERY_NOISE / np.sqrt(dim))
    colours = color[sources] / np.linalg.norm(color[sources], axis=1, keepdims=True)
    noisy_colours = colours + rng.standard_normal((queries, dim)).astype(np.float32) * (QUERY_NOISE / np.sqrt(dim))
    return Dataset(offers, shape, color, ids, top + 1, noisy.astype(np.float32), noisy_colours.astype(np.float32))


def true_top_k(data: Dataset, k: int, mask: np.ndarray | None) -> list[set[str]]:
    """The ids of the k nearest catalogue vectors of each query by cosine, optionally among `mask` only."""
    vectors = data.shape / np.linalg.norm(data.shape, axis=1, keepdims=True)
    ids = data.ids
    if mask is not None:
        vectors, ids = vectors[mask], ids[mask]
    queries = data.queries / np.linalg.norm(data.queries, axis=1, keepdims=True)
    result = []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ vectors.T
        best = np.argpartition(-scores, k, axis=1)[:, :k]
        result.extend(set(ids[row]) for row in best)
    return result


def run_queries(store: EdgeStore, data: Dataset, truth: list[set[str]], k: int, **search) -> dict:
    for query in data.queries[:WARMUP_QUERIES]:
        store.search(query, top_k=k, **search)
    latencies, recalls = [], []
    for query, expected in zip(data.queries, truth, strict=True):
        started = time.perf_counter()
        hits = store.search(query, top_k=k, **search)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({hit.id for hit in hits} & expected) / k)
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "mean": float(np.mean(latencies)),
        "recall": float(np.mean(recalls)),
    }


def true_fused_top_k(data: Dataset, weights: dict[VectorName, float], k: int) -> list[set[str]]:
    """The ids of the k offers with the highest weighted mean of both cosines, by brute force."""
    total = sum(weights.values())
    vectors = {"shape": data.shape, "color": data.color}
    queries = {"shape": data.queries, "color": data.color_queries}
    units = {name: vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True) for name in FUSED}
    result = []
    for start in range(0, len(data.queries), 256):
        fused = 0
        for name in FUSED:
            query = queries[name][start : start + 256]
            query = query / np.linalg.norm(query, axis=1, keepdims=True)
            fused = fused + weights[name] / total * (query @ units[name].T)
        best = np.argpartition(-fused, k, axis=1)[:, :k]
        result.extend(set(data.ids[row]) for row in best)
    return result


def _hits(candidates: list[_Point], query: dict[VectorName, np.ndarray], weights, k: int) -> list[Hit]:
    """Hits as `search_fused` makes them (all three scores, offers parsed) from points with payloads and vectors."""
    payloads = {c.id: c.payload for c in candidates}
    return [
        Hit(
            id=i,
            score=score,
            offer=Offer.model_validate(payloads[i]),
            **{f"{name}_score": cosine for name, cosine in cosines.items()},
        )
        for i, score, cosines in _rank(candidates, query, weights, k)
    ]


def own_all_payloads(store: EdgeStore, query, weights, k: int, shortlist: int) -> list[Hit]:
    """The fusion as first written: every candidate comes with its payload and both vectors."""
    weighted = [name for name in FUSED if weights[name] > 0]
    found = store._nearest([(name, query[name]) for name in weighted], max(shortlist, k), Filters(), with_vectors=True)
    return _hits(list({point.id: point for points in found for point in points}.values()), query, weights, k)


def qdrant_formula(store: EdgeStore, query, weights, k: int, shortlist: int, *, rescore_union: bool) -> list[Hit]:
    """Qdrant's server-side fusion: a prefetch of `shortlist` per weighted vector, ranked by a Formula
    of the weighted prefetch scores. A candidate missing from one prefetch has no score there: the
    Formula's default (0) stands in, unless `rescore_union`, which rescores the union of the prefetches
    by each vector (original vectors) so that every candidate has both, as `search_fused` does. Twice k
    come back, with vectors, to be ranked in float64 with ties by id as `search_fused` ranks them."""
    weighted = [name for name in FUSED if weights[name] > 0]
    total = sum(weights.values())
    limit = max(shortlist, k)

    def shortlists() -> list[Prefetch]:
        return [
            Prefetch(limit=limit, query=Query.Nearest(query[name], using=name), params=store._params)
            for name in weighted
        ]

    prefetches = shortlists()
    if rescore_union and len(weighted) > 1:
        exact = SearchParams(quantization=QuantizationSearchParams(ignore=True))
        prefetches = [
            Prefetch(
                limit=limit * len(weighted),
                query=Query.Nearest(query[name], using=name),
                prefetches=shortlists(),
                params=exact,
            )
            for name in weighted
        ]
    formula = Formula(
        Expression.Sum(
            [
                Expression.Mult([Expression.Constant(weights[name] / total), Expression.Variable(f"$score[{i}]")])
                for i, name in enumerate(weighted)
            ]
        ),
        defaults={f"$score[{i}]": 0.0 for i in range(len(weighted))},
    )
    points = store._live().query(
        QueryRequest(limit=2 * k, query=formula, prefetches=prefetches, with_payload=True, with_vector=True)
    )
    return _hits([_Point(str(p.id), p.score, p.payload, p.vector) for p in points], query, weights, k)


def run_fusion(store: EdgeStore, data: Dataset, k: int) -> tuple[list[tuple[str, int, str, dict]], dict]:
    """Recall@k against the exact fused ranking and latency of each method, the methods interleaved
    query by query (so that load from elsewhere on the machine hits them alike); and `vectors_of`."""
    methods = {
        "search_fused": lambda q, w, s: store.search_fused(
            {name: q[name][None, :] for name in FUSED}, weights=w, top_k=k, shortlist=s
        )[0],
        "own fusion, payloads of all candidates": lambda q, w, s: own_all_payloads(store, q, w, k, s),
        "Qdrant prefetch + Formula, missing score = 0": lambda q, w, s: qdrant_formula(
            store, q, w, k, s, rescore_union=False
        ),
        "Qdrant prefetch, union rescored, + Formula": lambda q, w, s: qdrant_formula(
            store, q, w, k, s, rescore_union=True
        ),
    }
    queries = [{"shape": shape, "color": color} for shape, color in zip(data.queries, data.color_queries, strict=True)]
    rows = []
    for weights in FUSION_WEIGHTS:
        truth = true_fused_top_k(data, weights, k)
        for shortlist in FUSION_SHORTLISTS:
            latencies: dict[str, list[float]] = {name: [] for name in methods}
            recalls: dict[str, list[float]] = {name: [] for name in methods}
            for method in methods.values():
                for query in queries[:WARMUP_QUERIES]:
                    method(query, weights, shortlist)
            for query, expected in zip(queries, truth, strict=True):
                for name, method in methods.items():
                    started = time.perf_counter()
                    hits = method(query, weights, shortlist)
                    latencies[name].append((time.perf_counter() - started) * 1000)
                    recalls[name].append(len({hit.id for hit in hits} & expected) / k)
            for name in methods:
                result = {
                    "p50": float(np.percentile(latencies[name], 50)),
                    "p99": float(np.percentile(latencies[name], 99)),
                    "recall": float(np.mean(recalls[name])),
                }
                rows.append((f"{weights['shape']:g} / {weights['color']:g}", shortlist, name, result))
                log.info("fusion %s | %d | %s: %s", rows[-1][0], shortlist, name, result)
    picks = np.random.default_rng(0).integers(0, len(data.offers), len(queries))
    latencies = []
    for pick in picks:
        offer = data.offers[pick]
        started = time.perf_counter()
        stored = store.vectors_of(offer.shop, offer.offer_id)
        latencies.append((time.perf_counter() - started) * 1000)
        assert stored is not None and stored.offer.offer_id == offer.offer_id
    lookup = {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}
    return rows, lookup


def folder_mb(path: Path) -> float:
    """Disk space in use: Qdrant preallocates sparse 32 MB files, so sizes would overstate it."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def resident_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class QuantizationRun:
    """What `measure_quantization` needs; module-level so forked children inherit it without pickling."""

    args: argparse.Namespace
    data: Dataset
    truth: list[set[str]]
    truth_filtered: list[set[str]]
    category: int
    hnsw_ef: int
    oversampling: float


_RUN: QuantizationRun | None = None


def measure_quantization(quantization: Quantization, path: Path) -> dict:
    """Build a store with `quantization` at `path` and measure it (runs in a forked child)."""
    run = _RUN
    assert run is not None
    args, data, oversampling = run.args, run.data, run.oversampling
    before = resident_mb()

    def open_store(**options) -> EdgeStore:
        return EdgeStore(
            path,
            dims={"shape": args.dim, "color": args.dim},
            hnsw_ef=run.hnsw_ef,
            oversampling=options.pop("oversampling", oversampling),
            quantization=quantization,
            upsert_batch_size=args.batch_size,
            full_scan_threshold_kb=args.full_scan_threshold_kb,
            **options,
        )

    result: dict = {"quantization": quantization}
    store = open_store()
    started = time.perf_counter()
    with tqdm(total=args.points, unit="pt", desc=f"upsert {quantization}") as progress:
        for start in range(0, args.points, args.batch_size):
            stop = start + args.batch_size
            store.upsert(data.offers[start:stop], data.shape[start:stop], data.color[start:stop])
            progress.update(min(stop, args.points) - start)
    result["upsert_points_per_s"] = args.points / (time.perf_counter() - started)
    started = time.perf_counter()
    store.optimize()
    result["optimize_s"] = time.perf_counter() - started
    log.info("%s: optimize %.0f s", quantization, result["optimize_s"])
    store.close()
    result["disk_mb"] = folder_mb(path)
    filtered = {"category_id": run.category}
    searches = [
        (f"codes + rescore x{oversampling:g}", {}, {}, run.truth),
        (f"codes + rescore x{2 * oversampling:g}", {"oversampling": 2 * oversampling}, {}, run.truth),
        ("codes alone, no rescoring", {"rescore": False}, {}, run.truth),
        ("filtered: original vectors (served)", {}, filtered, run.truth_filtered),
        (f"filtered: codes + rescore x{oversampling:g}", {"quantize_filtered": True}, filtered, run.truth_filtered),
    ]
    if args.exact:
        searches.append(("exact=True", {}, {"exact": True}, run.truth))
    result["searches"] = {}
    for name, options, search, truth in searches:
        store = open_store(**options)
        result["searches"][name] = run_queries(store, data, truth, args.top_k, **search)
        store.close()
        log.info("%s | %s: %s", quantization, name, result["searches"][name])
    store = open_store()
    run_queries(store, data, run.truth, args.top_k)  # the served settings, warm: the memory a server holds
    result["store_rss_mb"] = resident_mb() - before
    store.close()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _quantization_child(quantization: Quantization, path: Path, answer) -> None:
    try:
        answer.send(measure_quantization(quantization, path))
    except BaseException as error:
        answer.send({"quantization": quantization, "error": repr(error)})
        raise
    finally:
        shutil.rmtree(path, ignore_errors=True)


def quantization_report(args: argparse.Namespace, results: list[dict], clusters: int, share: str) -> str:
    names = list(results[0]["searches"]) if results and "searches" in results[0] else []
    lines = [
        f"### Qdrant Edge store: {args.points:,} points, one store per quantisation",
        "",
        (
            f"{args.dim}-d shape + colour vectors (both indexed), {clusters:,} shape clusters, {args.queries:,} "
            f"queries, recall@{args.top_k} against numpy brute force over the float vectors, seed {args.seed}; "
            f"qdrant-edge-py {version('qdrant-edge-py')}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} when this was written. Latency: one `search()` call, payload included, "
            f"after {WARMUP_QUERIES} warm-up queries. Filter: {share}; filtered searches scan the matching "
            f"points below {args.full_scan_threshold_kb:,} KB of vectors. Store RSS: the process's resident "
            "memory after the searches less before opening the store."
        ),
        "",
        "| quantization | upsert pts/s | optimize() s | disk MB | store RSS MB | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['quantization']} | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['quantization']} | {r['upsert_points_per_s']:,.0f} | {r['optimize_s']:,.0f} | "
            f"{r['disk_mb']:,.0f} | {r['store_rss_mb']:,.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        f"| quantization | search | p50 ms | p99 ms | recall@{args.top_k} |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        for name in names:
            if name in r.get("searches", {}):
                s = r["searches"][name]
                lines.append(f"| {r['quantization']} | {name} | {s['p50']:.2f} | {s['p99']:.2f} | {s['recall']:.4f} |")
    return "\n".join(lines) + "\n"


def plot_quantizations(results: list[dict], path: Path, top_k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for r in results:
        if "searches" not in r:
            continue
        points = [(s["p50"], s["recall"], name) for name, s in r["searches"].items() if name != "exact=True"]
        axis.plot([p[0] for p in points], [p[1] for p in points], "o", label=r["quantization"])
    axis.set_xlabel("p50 latency, ms (log)")
    axis.set_xscale("log")
    axis.set_ylabel(f"recall@{top_k}")
    axis.set_title("Each quantisation's searches: latency against recall")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def compare_quantizations(args: argparse.Namespace, run: QuantizationRun, clusters: int, share: str) -> str:
    """One store per quantisation, each built and measured in a forked child; the report rewritten after each."""
    global _RUN
    _RUN = run
    names = QUANTIZATIONS if args.quantizations == "all" else tuple(args.quantizations.split(","))
    unknown = set(names) - set(QUANTIZATIONS)
    if unknown:
        raise SystemExit(f"unknown quantizations {sorted(unknown)}; choose from {QUANTIZATIONS} or 'all'")
    root = args.path or Path(tempfile.mkdtemp(prefix="bench_store_"))
    fork = multiprocessing.get_context("fork")
    results: list[dict] = []
    report = ""
    for quantization in names:
        receive, send = fork.Pipe(duplex=False)
        child = fork.Process(target=_quantization_child, args=(quantization, root / quantization, send))
        child.start()
        send.close()
        results.append(receive.recv())
        child.join()
        report = quantization_report(args, results, clusters, share)
        if args.out:
            args.out.write_text(report, "utf-8")
            args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), "utf-8")
            plot_quantizations(results, args.out.with_suffix(".png"), args.top_k)
            log.info("wrote %s after %s", args.out, quantization)
    if args.path is None:
        shutil.rmtree(root, ignore_errors=True)
    print(report)
    return report


def main(args: argparse.Namespace) -> str:
    settings = get_settings()
    hnsw_ef = args.hnsw_ef or settings.hnsw_ef
    oversampling = args.oversampling or settings.oversampling
    clusters = args.clusters or max(1, args.points // 50)
    if args.path is not None and args.path.exists() and any(args.path.iterdir()):
        raise SystemExit(f"{args.path} is not empty; the benchmark only writes to a new folder")
    path = args.path or Path(tempfile.mkdtemp(prefix="bench_store_")) / "store"

    log.info("generating %d points in %d clusters, %d queries", args.points, clusters, args.queries)
    data = make_dataset(args.points, args.dim, clusters, args.queries, args.seed)
    category = 1  # a top-level category: ~1/TOP_CATEGORIES of the points
    in_category = data.top_category == category
    truth = true_top_k(data, args.top_k, None)
    truth_filtered = true_top_k(data, args.top_k, in_category)
    share = f"category, {in_category.mean():.1%} of points"
    if args.quantizations:
        run = QuantizationRun(args, data, truth, truth_filtered, category, hnsw_ef, oversampling)
        return compare_quantizations(args, run, clusters, share)

    def open_store(**options) -> EdgeStore:
        return EdgeStore(
            path,
            dims={"shape": args.dim, "color": args.dim},
            hnsw_ef=hnsw_ef,
            oversampling=options.pop("oversampling", oversampling),
            upsert_batch_size=args.batch_size,
            indexing_threshold_kb=args.indexing_threshold_kb,
            full_scan_threshold_kb=args.full_scan_threshold_kb,
            **options,
        )

    unfiltered = ("none", {}, truth)
    filtered = (share, {"category_id": category}, truth_filtered)
    # (search, store options, [(filter, search arguments, truth)]); the first runs on the reopened store
    variants = [
        (
            f"default: HNSW ef={hnsw_ef}, BQ + rescore x{oversampling:g}; filtered: original vectors",
            {},
            [unfiltered, filtered],
        ),
        (
            "exact=True",
            {},
            [("none", {"exact": True}, truth), (share, {"exact": True, "category_id": category}, truth_filtered)],
        ),
        (f"BQ + rescore x{2 * oversampling:g}", {"oversampling": 2 * oversampling}, [unfiltered]),
        (f"BQ + rescore x{oversampling:g} for filtered too", {"quantize_filtered": True}, [filtered]),
        (
            f"BQ + rescore x{2 * oversampling:g} for filtered too",
            {"quantize_filtered": True, "oversampling": 2 * oversampling},
            [filtered],
        ),
        ("BQ without rescoring", {"rescore": False, "quantize_filtered": True}, [unfiltered, filtered]),
    ]

    stages: dict[str, str] = {}
    searches: list[tuple[str, str, dict]] = []
    store: EdgeStore | None = None
    try:
        store = open_store()
        started = time.perf_counter()
        with tqdm(total=args.points, unit="pt", desc="upsert") as progress:
            for start in range(0, args.points, args.batch_size):
                stop = start + args.batch_size
                store.upsert(data.offers[start:stop], data.shape[start:stop], data.color[start:stop])
                progress.update(min(stop, args.points) - start)
        elapsed = time.perf_counter() - started
        stages["upsert"] = f"{args.points / elapsed:,.0f} points/s ({elapsed:.1f} s)"
        log.info("upsert: %s", stages["upsert"])

        started = time.perf_counter()
        store.optimize()
        stages["optimize() (HNSW build)"] = f"{time.perf_counter() - started:.1f} s"
        log.info("optimize: %s", stages["optimize() (HNSW build)"])

        started = time.perf_counter()
        store.close()
        stages["close (flush)"] = f"{time.perf_counter() - started:.2f} s"
        started = time.perf_counter()
        store = open_store()
        stages["reopen"] = f"{time.perf_counter() - started:.2f} s"
        stages["store on disk"] = f"{folder_mb(path):,.0f} MB"

        if args.fusion:
            fusion, lookup = run_fusion(store, data, args.top_k)
            variants = []
        for number, (name, options, runs) in enumerate(variants):
            if number and options != variants[number - 1][1]:
                store.close()
                store = open_store(**options)
            for filter_name, search, expected in runs:
                searches.append((name, filter_name, run_queries(store, data, expected, args.top_k, **search)))
                log.info("%s | %s: %s", name, filter_name, searches[-1][2])
        stages["peak RSS (whole run)"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
    finally:
        if store is not None:
            store.close()
        if args.path is None and not args.keep:
            shutil.rmtree(path.parent)
        else:
            log.info("store kept at %s", path)

    lines = [
        f"### Qdrant Edge store: {args.points:,} points",
        "",
        (
            f"{args.dim}-d shape + colour vectors, {clusters:,} shape clusters, {args.queries:,} queries, "
            f"recall@{args.top_k} vs numpy brute force, seed {args.seed}; qdrant-edge-py {version('qdrant-edge-py')}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end. Latency: one "
            f"`{'search_fused' if args.fusion else 'search'}()` call, payload included, "
            f"after {WARMUP_QUERIES} warm-up queries."
        ),
        "",
        "| stage | result |",
        "|---|---|",
        *(f"| {stage} | {result} |" for stage, result in stages.items()),
        "",
    ]
    if args.fusion:
        lines += [
            (
                f"Fused search, top {args.top_k}, no filter: recall@{args.top_k} against the exact fused top "
                f"{args.top_k} (numpy over all points); latency of one query with offers parsed and all three "
                "scores, the methods interleaved query by query."
            ),
            "",
            f"| weights shape / colour | shortlist | method | p50 ms | p99 ms | recall@{args.top_k} |",
            "|---|---|---|---|---|---|",
            *(
                f"| {weights} | {shortlist} | {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['recall']:.3f} |"
                for weights, shortlist, name, r in fusion
            ),
            "",
            f"`vectors_of` (retrieve by id, no search): p50 {lookup['p50']:.3f} ms, p99 {lookup['p99']:.3f} ms.",
            "",
        ]
    else:
        lines += [
            f"| search | filter | p50 ms | p99 ms | mean ms | recall@{args.top_k} |",
            "|---|---|---|---|---|---|",
            *(
                f"| {name} | {flt} | {r['p50']:.2f} | {r['p99']:.2f} | {r['mean']:.2f} | {r['recall']:.3f} |"
                for name, flt, r in searches
            ),
            "",
        ]
    table = "\n".join(lines)
    if args.out:
        args.out.write_text(table, "utf-8")
        log.info("wrote %s", args.out)
    print(table)
    return table


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per configuration")
    parser.add_argument("--clusters", type=int, default=None, help="shape clusters (default: points / 50)")
    parser.add_argument(
        "--dim", type=int, default=128, help="vector size of both vectors (the shipped embedder makes 128)"
    )
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000, help="offers per upsert call")
    parser.add_argument("--hnsw-ef", type=int, default=None, help="default: settings.hnsw_ef")
    parser.add_argument("--oversampling", type=float, default=None, help="default: settings.oversampling")
    parser.add_argument(
        "--indexing-threshold-kb", type=int, default=None, help="HNSW threshold (default Qdrant's, ~20K points)"
    )
    parser.add_argument(
        "--full-scan-threshold-kb",
        type=int,
        default=FULL_SCAN_THRESHOLD_KB,
        help="vectors (KB) below which a filtered search scans the matching points (default: the store's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fusion", action="store_true", help="benchmark fused shape + colour search instead of single-vector search"
    )
    parser.add_argument(
        "--quantizations",
        default=None,
        help=f"compare quantisations, one store each: comma-separated from {','.join(QUANTIZATIONS)}, or 'all'",
    )
    parser.add_argument("--exact", action="store_true", help="with --quantizations: also time exact=True on each store")
    parser.add_argument("--path", type=Path, default=None, help="new folder for the store (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
