"""Search quality on photos nobody tuned for: query families, as served, worst family first.

    python -m training.embedder.robustness --onnx training/artifacts/embedder.onnx \\
        --compare var/previous/embedder-abc1234.onnx --out training/reports/robustness
    python -m training.embedder.robustness --onnx X.onnx --limit 40 --out /tmp/quick   # a smoke run

Protocol (`served_data` builds the images):
- **Catalogue**: every validation photo (the targets), every train photo, and generated
  distractors (train photos repainted, close crops of their garments): 12,613 images with the
  defaults; each cropped to its main item by the indexer's code with the shipped detector.
- **Query families** (`training.synth.families`): a query per validation photo and family,
  framed by the service's own code (detector, then the item a shopper would tap). `screenshot`
  and `rephoto` never make training views; the headline is the **worst family**, not the mean.
- **As served**: the store's fused search with the service's default facet weights
  (`Settings.default_weights`): for each vector with a positive weight, the float query against
  the catalogue's 1-bit codes, its best `oversampling x L` items rescored by the float vectors,
  the best L = max(`fusion_shortlist`, k) kept (the store's binary quantisation with rescoring);
  the union scored by the weighted mean of the `shape` and `color` cosines
  (`training.embedder.retrieval.fused_scores`; `tests/integration/test_served_equals_evaluated.py`
  checks that `/search` returns the same).
- **Facets**: the shipped model's families again, as served, for facet weights from
  `shape 1 · color 0` (same cut, any colour) to `shape 0 · color 1` (this colour, anything); the
  recommended default is the one with the best worst-family Recall@1 (ties: the best mean).
- **Class-held-out**: `--heldout X.onnx` is a model trained without `--heldout-classes`; it is
  scored on the queries of those classes only, beside the models that saw them.
- **Catalogue size**: Recall@1 of the first model as the catalogue grows from 500 images to all
  of it; the 3,409-image point is the real photos alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from lookalike.schemas import default_weights_for
from lookalike.settings import Settings
from training.embedder.baselines import FeatureCache, build_baselines, pixel_digests
from training.embedder.eval_data import ModelUnderTest, load_model, load_model_reference
from training.embedder.retrieval import (
    FACET_WEIGHTS,
    cosine_similarity,
    facet_key,
    facet_label,
    fused_scores,
    rank_relevant,
    recall_curve,
)
from training.embedder.served_data import FRAMINGS, Framer, ServedData, load_served_data
from training.report import Picture, Section, Table, save_figure, write_report
from training.synth.families import FAMILIES

log = logging.getLogger(__name__)

TOP_K = 10
# The service's search (`VectorStore.search_fused`) as configured by default.
OVERSAMPLING = int(Settings.model_fields["oversampling"].default)
FUSION_SHORTLIST = Settings.model_fields["fusion_shortlist"].default
DEFAULT_WEIGHTS: dict[str, float] = Settings.model_fields["default_weights"].default
VECTORS = ("shape", "color", "detail")  # the vectors an embedder may make (`detail`: newer ones only)
# With a detail vector, the Facets table also weighs it: every share of detail on a grid, the rest
# split between shape and colour as the shape/colour rows split it.
DETAIL_FACET_WEIGHTS = (
    {"detail": 1.0},
    {"shape": 0.25, "detail": 0.75},
    {"shape": 0.125, "color": 0.125, "detail": 0.75},
    {"color": 0.25, "detail": 0.75},
    {"shape": 0.5, "detail": 0.5},
    {"shape": 0.25, "color": 0.25, "detail": 0.5},
    {"color": 0.5, "detail": 0.5},
)
SERVED = (
    f"the store's fused search with the default weights {facet_label(DEFAULT_WEIGHTS)}: each weighted vector's"
    f" 1-bit shortlist of {OVERSAMPLING} x {max(FUSION_SHORTLIST, TOP_K)} items rescored by its floats to its best"
    f" {max(FUSION_SHORTLIST, TOP_K)}, their union by the weighted mean of cosines"
)
CATALOGUE_SIZES = (500, 1000, 2000, 3409, 6000, 9000, 12000)
FOUND_IOU = 0.5


Vectors = Mapping[str, np.ndarray]  # vector name ("shape", "color") -> (n, d), one row per image


@dataclass
class Encoded:
    """One method's vectors for the catalogue and for every family's queries in every framing."""

    name: str
    catalogue: Vectors
    queries: dict[str, dict[str, Vectors]]  # family -> framing -> vectors
    metric: str  # "served" for models (the store's fused search), "cosine" for float baselines
    ms_per_image: float


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def encode(name, function, cache_keys: dict[str, str], data: ServedData, cache: FeatureCache, batch: int, metric: str):
    """`function` (pixels -> {vector: rows}) over every image of `data`, through the cache keyed by pixel digest.

    `cache_keys` names the vectors kept and the cache file of each; an image is encoded again when
    any of its vectors is missing.
    """
    parts = [data.catalogue] + [data.queries[f][framing] for f in data.queries for framing in FRAMINGS]
    vectors = []
    started, computed = time.perf_counter(), 0
    for part in parts:
        digests = pixel_digests(part)
        known, hits = {}, np.ones(len(part), bool)
        for vector, key in cache_keys.items():
            known[vector], found = cache.lookup(key, digests)
            hits &= found
        missing = np.flatnonzero(~hits)
        if len(missing):
            outputs = [
                function(part[missing[i : i + batch]])
                for i in tqdm(range(0, len(missing), batch), desc=f"embed {name}", unit="batch")
            ]
            for vector, key in cache_keys.items():
                fresh = np.concatenate([output[vector] for output in outputs])
                cache.store(key, digests[missing], fresh)
                if known[vector] is None:
                    known[vector] = np.zeros((len(part), fresh.shape[1]), fresh.dtype)
                known[vector][missing] = fresh
            computed += len(missing)
        vectors.append(known)
    seconds = time.perf_counter() - started
    queries, position = {}, 1
    for family in data.queries:
        queries[family] = {}
        for framing in FRAMINGS:
            queries[family][framing] = vectors[position]
            position += 1
    speed = 1000 * seconds / computed if computed else float("nan")
    return Encoded(name, vectors[0], queries, metric, speed)


def model_encoder(model: ModelUnderTest):
    return lambda pixels: {vector: rows for vector, rows in model.embedder(pixels).items() if vector in VECTORS}


def vectors_of(model: ModelUnderTest) -> tuple[str, ...]:
    """The searchable vectors `model` makes, in `VECTORS` order."""
    return tuple(name for name in VECTORS if name in model.embedder.output_names)


def served_weights(method: Encoded, weights: Mapping[str, float]) -> Mapping[str, float]:
    """`weights` as the service would serve `method`: an embedder without a weighted vector gets
    the weights it was served with (`lookalike.schemas.default_weights_for`)."""
    return default_weights_for(tuple(method.catalogue), dict(weights)) if method.metric != "cosine" else weights


def baseline_encoder(baseline):
    return lambda pixels: {"shape": baseline(pixels)}  # its one vector, kept as `shape`


def rows_of(vectors: Vectors, rows) -> dict[str, np.ndarray]:
    return {vector: values[rows] for vector, values in vectors.items()}


# ---------------------------------------------------------------------------------------------
# Metrics


def recalls(
    queries: Vectors,
    catalogue: Vectors,
    metric: str,
    targets: np.ndarray,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> np.ndarray:
    """Recall@k (k = 1..50) of each query's target (catalogue row `targets[i]`)."""
    scores = served_scores(queries, catalogue, metric, weights)
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(scores)), targets] = True
    return recall_curve(rank_relevant(scores, relevant), np.arange(1, 51))


def served_scores(
    queries: Vectors,
    catalogue: Vectors,
    metric: str,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    *,
    top_k: int = TOP_K,
    shortlist: int = FUSION_SHORTLIST,
    oversampling: int = OVERSAMPLING,
) -> np.ndarray:
    """(q, n) scores as the service ranks them.

    "served": the store's fused search (`fused_scores`, each weighted vector's limit max(shortlist, top_k));
    "float": the same weighted mean of cosines over every item, without the 1-bit shortlists;
    "cosine": a float baseline's one vector (kept as `shape`), weights aside.
    """
    if metric == "cosine":
        return cosine_similarity(queries["shape"], catalogue["shape"])
    if metric == "float":
        shortlist = len(catalogue["shape"])
    elif metric != "served":
        raise ValueError(f"metric must be 'served', 'float' or 'cosine', not {metric!r}")
    return fused_scores(queries, catalogue, weights, max(shortlist, top_k), oversampling)


@dataclass
class FamilyResult:
    recall_at_1: float
    recall_at_10: float


def family_table(
    encoded: list[Encoded],
    data: ServedData,
    rows: np.ndarray | None = None,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> dict:
    """method -> family -> FamilyResult, as served with `weights`, for the queries `rows` (all by default)."""
    rows = np.arange(data.num_targets) if rows is None else rows
    results: dict[str, dict[str, FamilyResult]] = {}
    for method in encoded:
        results[method.name] = {}
        for family in data.queries:
            queries = rows_of(method.queries[family]["served"], rows)
            curve = recalls(queries, method.catalogue, method.metric, rows, served_weights(method, weights))
            results[method.name][family] = FamilyResult(curve[0], curve[TOP_K - 1])
    return results


def worst(results: dict[str, FamilyResult]) -> tuple[str, FamilyResult]:
    name = min(results, key=lambda family: (results[family].recall_at_1, results[family].recall_at_10))
    return name, results[name]


def mean_recall_at_1(results: dict[str, FamilyResult]) -> float:
    return float(np.mean([result.recall_at_1 for result in results.values()]))


def facet_table(method: Encoded, data: ServedData) -> list[tuple[dict[str, float], dict[str, FamilyResult]]]:
    """(weights, family -> FamilyResult as served with them) for each of FACET_WEIGHTS, and of
    DETAIL_FACET_WEIGHTS when the method has a detail vector."""
    grid = FACET_WEIGHTS + (DETAIL_FACET_WEIGHTS if "detail" in method.catalogue else ())
    return [(weights, family_table([method], data, weights=weights)[method.name]) for weights in grid]


def facet_rank(facet: tuple[dict[str, float], dict[str, FamilyResult]]) -> tuple[float, float]:
    """What the recommendation maximises: the worst family's Recall@1, then the mean Recall@1."""
    return worst(facet[1])[1].recall_at_1, mean_recall_at_1(facet[1])


def recommend(facets: list[tuple[dict[str, float], dict[str, FamilyResult]]]) -> dict[str, float]:
    """The weights with the best worst-family Recall@1, ties broken by the best mean Recall@1."""
    weights, _ = max(facets, key=facet_rank)
    return weights


def framing_rows(method: Encoded, data: ServedData) -> list[list]:
    """Per family: how often the searched item is the garment, and R@1 in each framing and without the 1-bit shortlist."""
    targets = np.arange(data.num_targets)
    weights = served_weights(method, DEFAULT_WEIGHTS)
    rows = []
    for family in data.queries:
        cells = [family, float((data.found[family] >= FOUND_IOU).mean())]
        for framing in ("whole", "true_box", "served"):
            cells.append(recalls(method.queries[family][framing], method.catalogue, method.metric, targets, weights)[0])
        cells.append(recalls(method.queries[family]["served"], method.catalogue, "float", targets, weights)[0])
        rows.append(cells)
    return rows


def size_curve(method: Encoded, data: ServedData, seed: int) -> dict[str, list[tuple[int, float]]]:
    """family -> (catalogue size, R@1 as served): targets always in; then train photos, then distractors."""
    rng = np.random.default_rng(seed)
    weights = served_weights(method, DEFAULT_WEIGHTS)
    photos = np.arange(data.num_targets, data.num_photos)
    distractors = np.arange(data.num_photos, len(data.catalogue))
    order = np.concatenate([rng.permutation(photos), rng.permutation(distractors)])
    sizes = sorted({min(size, len(data.catalogue)) for size in CATALOGUE_SIZES if size > data.num_targets})
    sizes = sorted(set(sizes) | {data.num_photos, len(data.catalogue)})
    targets = np.arange(data.num_targets)
    curve: dict[str, list[tuple[int, float]]] = {family: [] for family in data.queries}
    for size in tqdm(sizes, desc="catalogue sizes", unit="size"):
        rows = np.concatenate([targets, order[: size - data.num_targets]])
        for family in data.queries:
            catalogue = rows_of(method.catalogue, rows)
            recall = recalls(method.queries[family]["served"], catalogue, method.metric, targets, weights)[0]
            curve[family].append((size, recall))
    return curve


# ---------------------------------------------------------------------------------------------
# Report


def results_section(encoded: list[Encoded], results: dict, data: ServedData) -> Section:
    families = list(data.queries)
    header = ["method", *[f"{f} R@1 / R@10" for f in families], "worst family", "worst R@1", "worst R@10", "ms/image"]
    rows = []
    for method in encoded:
        name, result = worst(results[method.name])
        cells = [f"{r.recall_at_1:.3f} / {r.recall_at_10:.3f}" for r in results[method.name].values()]
        rows.append([method.name, *cells, name, result.recall_at_1, result.recall_at_10, method.ms_per_image])
    trained = ", ".join(f"`{f}`" for f in families if FAMILIES[f].trained_on) or "none"
    note = (
        f"{data.num_targets} queries per family; catalogue {len(data.catalogue)} images ({data.num_photos} photos,"
        f" {len(data.catalogue) - data.num_photos} generated distractors). Models are ranked as served: {SERVED};"
        " float baselines by cosine. Families that make the shipped"
        f" embedder's training views: {trained}; never: the rest (models shipped before it trained on `photo`"
        " only). ms/image: encoding, where this run computed it (blank when cached)."
    )
    return Section("Query families, as served", [Table(header, rows, note=note)])


def framing_section(method: Encoded, data: ServedData) -> Section:
    header = [
        "family",
        "item found (IoU ≥ 0.5)",
        "R@1 whole picture",
        "R@1 true box",
        "R@1 as served",
        "R@1 served, float",
    ]
    note = (
        "*whole picture*: detection off, the photo searched whole; *true box*: the garment's own box with the"
        " service's margin (a perfect detector); *as served*: the detector's item a shopper would tap;"
        " *served, float*: the same crops ranked by the exact score (the default weights' mean of cosines over"
        " every item), without the 1-bit shortlists."
    )
    return Section(
        f"Where `{method.name}` loses: framing and codes",
        [Table(header, framing_rows(method, data), note=note)],
    )


def heldout_section(encoded: list[Encoded], data: ServedData, classes: list[str]) -> tuple[Section, dict]:
    rows_mask = np.isin(np.array(data.classes)[data.query_labels], classes)
    rows = np.flatnonzero(rows_mask)
    results = family_table(encoded, data, rows)
    families = list(data.queries)
    table_rows = []
    for method in encoded:
        name, result = worst(results[method.name])
        table_rows.append(
            [method.name, *[results[method.name][f].recall_at_1 for f in families], name, result.recall_at_1]
        )
    note = (
        f"Queries of {', '.join(classes)} only ({len(rows)} per family), against the whole catalogue, as served."
        " The first row's model never saw these classes; the others did."
    )
    header = ["method", *[f"{f} R@1" for f in families], "worst family", "worst R@1"]
    section = Section(f"Class-held-out: {', '.join(classes)}", [Table(header, table_rows, note=note)])
    return section, results


def facets_section(method: Encoded, facets: list, data: ServedData) -> Section:
    families = list(data.queries)
    header = ["weights", *[f"{f} R@1" for f in families], "worst family", "worst R@1", "mean R@1"]
    rows = []
    for weights, results in facets:
        name, result = worst(results)
        cells = [results[f].recall_at_1 for f in families]
        rows.append([facet_label(weights), *cells, name, result.recall_at_1, mean_recall_at_1(results)])
    best, runner_up = sorted(facets, key=facet_rank, reverse=True)[:2]
    (best_worst, best_mean), (next_worst, next_mean) = facet_rank(best), facet_rank(runner_up)
    note = (
        f"`{method.name}`, {data.num_targets} queries per family, as served with each set of weights (the fused"
        f" search, limit {max(FUSION_SHORTLIST, TOP_K)} per weighted vector). The target is the query's own photo:"
        " weights that favour colour are judged here on finding that item, not on colour matches (for those,"
        f" the embedder report's Facets). **Recommended default: {facet_label(best[0])}** (best worst-family R@1,"
        f" ties by mean R@1: {best_worst:.3f}, mean {best_mean:.3f}); the runner-up, {facet_label(runner_up[0])}"
        f" ({next_worst:.3f}, mean {next_mean:.3f}), is {(best_worst - next_worst) * data.num_targets:.0f} of"
        f" {data.num_targets} queries behind on its worst family. The service's default is"
        f" {facet_label(DEFAULT_WEIGHTS)}."
    )
    return Section("Facets", [Table(header, rows, note=note)])


def curve_section(method: Encoded, curve: dict, data: ServedData, out: Path) -> Section:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for family, points in curve.items():
        sizes, values = zip(*points)
        axes.plot(sizes, values, marker="o", label=family)
    axes.axvline(data.num_photos, color="grey", linestyle=":", label="real photos only")
    axes.set(xscale="log", xlabel="catalogue images", ylabel="Recall@1 as served", ylim=(0, 1.01))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    title = f"Recall@1 of {method.name} as the catalogue grows"
    picture: Picture = save_figure(figure, out, "catalogue_size.png", title)
    sizes = [size for size, _ in next(iter(curve.values()))]
    rows = [[family, *[value for _, value in points]] for family, points in curve.items()]
    photos_at = sizes.index(data.num_photos)
    drops = [[family, points[photos_at][1] - points[-1][1]] for family, points in curve.items()]
    note = (
        f"Drop from the {data.num_photos}-image catalogue (real photos) to {sizes[-1]} images: "
        + ", ".join(f"{family} {drop:+.3f}".replace("+-", "-") for family, drop in drops)
        + " (positive: R@1 fell)."
    )
    table = Table(["family", *[str(size) for size in sizes]], rows, note=note)
    return Section("Catalogue size", [table, picture])


# ---------------------------------------------------------------------------------------------
# Putting it together


def load_methods(args) -> tuple[list[tuple[str, object, dict[str, str], str]], ModelUnderTest]:
    """(name, encoder, cache key per vector, metric) per method, and the first model (whose preset frames everything)."""
    first = load_model(args.model, args.onnx)
    models = [first] + [load_model_reference(str(path)) for path in args.compare]
    if args.heldout:
        models.append(load_model_reference(str(args.heldout)))
    if len({model.preset for model in models}) > 1:
        raise SystemExit(f"every model needs the same preprocessing: {[m.preset for m in models]}")
    methods = []
    for model in models:
        digest = file_digest(model.embedder.path)
        methods.append((model.name, model_encoder(model), {v: f"{v}-{digest}" for v in vectors_of(model)}, "served"))
    if args.imagenet:
        (baseline,) = build_baselines(["imagenet"], args.cache_dir or Path("var/eval-cache"))
        keys = {"shape": baseline.cache_key}
        methods.append(("untrained ImageNet Lite0 (1280-d, float)", baseline_encoder(baseline), keys, "cosine"))
    return methods, first


def main(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")
    methods, first = load_methods(args)
    framer = Framer.from_files(args.detector, args.cache_dir)
    data = load_served_data(args, first.preset, framer)
    cache = FeatureCache(args.cache_dir)
    encoded = [encode(name, fn, keys, data, cache, args.batch_size, metric) for name, fn, keys, metric in methods]
    heldout_name = str(args.heldout) if args.heldout else None
    main_methods = [m for m in encoded if m.name != heldout_name]
    results = family_table(main_methods, data)
    facets = facet_table(encoded[0], data)
    sections = [
        results_section(main_methods, results, data),
        facets_section(encoded[0], facets, data),
        framing_section(encoded[0], data),
    ]
    metrics = flat_metrics(main_methods, results, data) | facet_metrics(facets)
    if args.heldout:
        ordered = [m for m in encoded if m.name == heldout_name] + main_methods
        section, heldout = heldout_section(ordered, data, args.heldout_classes)
        sections.append(section)
        name, result = worst(heldout[heldout_name])
        metrics |= {"heldout_worst_family": name, "heldout_worst_recall@1": result.recall_at_1}
    curve = size_curve(encoded[0], data, args.seed)
    sections.append(curve_section(encoded[0], curve, data, args.out))
    metrics |= {f"size_{size}_{family}_recall@1": value for family, pts in curve.items() for size, value in pts}
    sections.append(Section("Protocol", [__doc__.split("Protocol (`served_data` builds the images):")[1].strip()]))
    sections.append(Section("Run", [f"`python -m training.embedder.robustness {' '.join(args.argv)}`"]))
    name, result = worst(results[encoded[0].name])
    intro = [
        (
            f"**Headline: worst query family `{name}`, as served: instance Recall@1 {result.recall_at_1:.3f},"
            f" Recall@10 {result.recall_at_10:.3f}** (`{encoded[0].name}`; {data.num_targets} queries per family,"
            f" {len(data.catalogue)} catalogue images; {(time.perf_counter() - started) / 60:.1f} min)."
        ),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    path = write_report(args.out, "Search quality by query family", sections, intro)
    print(path.read_text(encoding="utf-8").split("## Protocol")[0])
    return metrics


def flat_metrics(encoded: list[Encoded], results: dict, data: ServedData) -> dict:
    first = encoded[0].name
    name, result = worst(results[first])
    flat = {
        "queries_per_family": data.num_targets,
        "catalogue": len(data.catalogue),
        "worst_family": name,
        "worst_recall@1": result.recall_at_1,
        "worst_recall@10": result.recall_at_10,
        "data_fingerprint": data.fingerprint,
    }
    for family, value in results[first].items():
        flat |= {f"{family}_recall@1": value.recall_at_1, f"{family}_recall@10": value.recall_at_10}
    return {key: float(v) if isinstance(v, np.floating) else v for key, v in flat.items()}


def facet_metrics(facets: list) -> dict:
    """`facet_shape0.75_color0.25_photo_recall@1` and the like, the worst and mean per weights, and the pick."""
    flat = {}
    for weights, results in facets:
        prefix = facet_key(weights)
        flat |= {f"{prefix}_{family}_recall@1": float(result.recall_at_1) for family, result in results.items()}
        name, result = worst(results)
        flat |= {f"{prefix}_worst_family": name, f"{prefix}_worst_recall@1": float(result.recall_at_1)}
        flat[f"{prefix}_mean_recall@1"] = mean_recall_at_1(results)
    best = recommend(facets)
    flat |= {f"recommended_{name}_weight": weight for name, weight in best.items()}
    flat |= {f"served_{name}_weight": weight for name, weight in DEFAULT_WEIGHTS.items()}
    return flat


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lookalike-embedder:latest", help="model store tag (unless --onnx)")
    parser.add_argument("--onnx", type=Path, help="an exported embedder with its .json sidecar")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other embedders (.onnx with sidecar)")
    parser.add_argument("--heldout", type=Path, help="an embedder trained without --heldout-classes")
    parser.add_argument(
        "--heldout-classes", type=lambda t: [c for c in t.split(",") if c], default=["outwear", "shorts"]
    )
    parser.add_argument("--no-imagenet", dest="imagenet", action="store_false", help="skip the untrained baseline")
    parser.add_argument(
        "--detector",
        type=lambda text: Path(text) if text else None,
        default=Path("training/artifacts/detector.onnx"),
        help="the service's detector (.onnx with sidecar); '' searches every photo whole",
    )
    parser.add_argument("--families", type=lambda t: [f for f in t.split(",") if f], default=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path("training/reports/robustness"))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("LOOKALIKE_CLOTHING_DIR", "../shared/data/clothing"))
    )
    parser.add_argument("--limit", type=int, help="this many validation photos (and 9x as many train photos)")
    parser.add_argument("--recolourings", type=int, default=2, help="repaintings of each train photo as distractors")
    parser.add_argument("--no-garment-crops", dest="garment_crops", action="store_false")
    parser.add_argument("--mask-cache", type=Path, default=Path("var/masks"))
    parser.add_argument("--cache-dir", type=lambda t: Path(t) if t else None, default=Path("var/eval-cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return parser


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    arguments = get_args_parser().parse_args()
    arguments.argv = sys.argv[1:]
    main(arguments)
