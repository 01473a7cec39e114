"""Evaluate an embedder against perceptual hashes, a colour histogram and untrained ImageNet features.

    python -m training.embedder.evaluate --model lookalike-embedder:latest --out reports/provisional
    python -m training.embedder.evaluate --model lookalike-embedder:latest --out /tmp/quick --limit 60
    python -m training.embedder.evaluate --model lookalike-embedder:NEW --compare lookalike-embedder:OLD --out reports/new-vs-old
    python -m training.embedder.evaluate --model lookalike-embedder:latest --onnx runs/x/embedder.onnx --out reports/x
    python -m training.embedder.evaluate --onnx training/artifacts/embedder.onnx --compare var/previous/embedder.onnx --out X

Writes OUT/report.md (the results table first, then the protocol, the classifier, per-class
tables and examples), its PNG plots, and OUT/metrics.json: a flat dict of the main numbers for
the model store's metadata (`training.embedder.export --metrics`). `--onnx X.onnx` evaluates a graph
not yet in the store, with the metadata of its shipped sidecar X.json, else of --model; `--compare`
takes a tag or such a pair too (`make report` compares the shipped embedder with the one shipped
before it, taken from git history).

Each image is decoded once into preset pixels, held in one array; garment masks come from
`training.synth.colors.load_mask`'s cache (--mask-cache), baseline features from a cache keyed by
pixel digest (--cache-dir), so a second run (another model) mostly re-runs the model. On 2 CPU
cores the full validation split takes about 6 minutes cold and 3 minutes warm.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lookalike.codec import binarize
from lookalike.settings import Settings
from training.embedder.baselines import FeatureCache, build_baselines, pixel_digests
from training.embedder.eval_data import EvalData, ModelUnderTest, load_eval_data, load_model, load_model_reference
from training.embedder.retrieval import (
    FACET_WEIGHTS,
    Features,
    facet_key,
    facet_label,
    fused_scores,
    per_group_mean,
    rank_relevant,
    recall_curve,
    same_label,
    similarity,
)
from training.report import (
    ExampleRow,
    Picture,
    Section,
    Table,
    example_sheet,
    plot_confusion_matrix,
    plot_recall_curves,
    write_report,
)
from training.synth.colors import PATTERNS

log = logging.getLogger(__name__)

ALL_BASELINES = ("phash", "dhash", "whash", "colorhash", "hsv", "imagenet")
NON_NEURAL = frozenset({"phash", "dhash", "whash", "colorhash", "hsv"})  # the baselines to beat "by a wide margin"
CURVE_KS = np.arange(1, 51)
TOP_K = 10
SHORTLIST_FACTOR = int(Settings.model_fields["oversampling"].default)  # the store's default oversampling
# The store's limit per searched vector: the service asks for the fusion shortlist, at least top_k.
SERVED_LIMIT = max(Settings.model_fields["fusion_shortlist"].default, TOP_K)
DEFAULT_WEIGHTS: dict[str, float] = Settings.model_fields["default_weights"].default
TIMING_IMAGES = 32
RECALLS = ("instance_recall@1", "instance_recall@10", "other_colour_recall@10")
FACET_COLUMNS = {  # metric key -> column heading of the Facets table
    "instance_recall@1": "instance R@1",
    "category_precision@10": "category P@10",
    "colour_precision@10": "colour P@10",
    "colour_pattern_precision@10": "colour+pattern P@10",
}

COLUMNS = {  # metric key -> column heading
    "classifier_top1": "classifier top-1",
    "instance_recall@1": "instance R@1",
    "instance_recall@10": "instance R@10",
    "category_precision@10": "category P@10",
    "colour_pattern_precision@10": "colour+pattern P@10",
    "colour_precision@10": "colour P@10",
    "other_colour_recall@10": "other colour R@10",
}

PROTOCOL = """\
Held-out data: `validation/`; `train/` images only serve as catalogue distractors (and as the
catalogue of category retrieval). Every method sees the same pixels, the model's eval preset
crop, and has one vector per task: `shape` for instance, category and other-colour retrieval,
`color` for colour retrieval (a baseline uses its one vector everywhere).

1. **Shape classifier**: top-1 of `category_logits` on the validation images.
2. **Instance retrieval**: catalogue = validation + train images; query = a photo-like version of
   each validation image (`training.synth.photo.PhotoLikeQuery(seed)`: the garment cut out with its
   mask, scaled, rotated, on clutter, perspective, relit, blurred, JPEG 40-70); recall@k of the
   source image.
3. **Category retrieval**: query = each validation image, catalogue = train images; precision@10
   of the same class.
4. **Colour retrieval**: every validation garment repainted {recolours} times (`recolor` with its
   mask; seeded `random_label`s with distinct colours per photo); each repainting queries all
   the others except the repaintings of its own photo; precision@10 of the same colour *and*
   pattern, and of the same colour alone. Classes have few members (about 100 colour+pattern
   classes), so the *perfect ranking* row gives the best P@10 possible.
5. **Same shape, other colour**: query = one repainting, targets = the other {others} repaintings
   of the same photo, catalogue = all repaintings; recall@10. The repaintings share their
   photo's background and silhouette, so this is near-duplicate search, where hashes have a
   fair chance.

Similarity: cosine for float vectors (the HSV histogram: Bhattacharyya coefficient, as the
cosine of square-rooted histograms); Hamming distance for codes (the model's *binary* rows are
the sign bits of the same vectors, `lookalike.codec.binarize`). Two more rows show how the
store searches its 1-bit index: *float query, binary index* scores the unit float query against
the catalogue's +-1 sign codes (Qdrant's binary quantisation with `query_encoding` scalar8bits,
less its 8-bit rounding of the query); *served* takes that score's best {shortlist} items and
re-ranks them by the float vectors (oversampling {oversampling} x the store's limit {limit}, i.e.
`fusion_shortlist`, at least k: the service's fused search with all the weight on the task's
vector), ranking the rest below them. Ties, frequent among 64-bit hashes, count at their expected
rank under a random order among the tied items.

**Facets**: tasks 2-4 again for the first model, each ranked by the service's fused search with
one set of facet weights (`training.embedder.retrieval.fused_scores`): every vector with a
positive weight draws its served shortlist of {limit}, and their union is ranked by the weighted
mean of the `shape` and `color` cosines; the same ranking serves every task, whichever vector
the task uses above."""


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass
class Method:
    """One row of the results table: a vector per image for the shape tasks and for the colour tasks."""

    name: str
    key: str  # "float" or "binary" for a model's rows, else the baseline's name
    model: str | None  # the model's name, None for a baseline
    description: str
    shape: Features
    color: Features
    ms_per_image: float

    @property
    def is_model(self) -> bool:
        return self.model is not None

    def scores(self, vector: str, queries, catalogue) -> np.ndarray:
        """(q, n) similarities of the images `queries` to the images `catalogue` (rows of the data's
        pixels) for a task of `vector`: "shape" (instance, category) or "color" (colour retrieval)."""
        features = self.shape if vector == "shape" else self.color
        return similarity(features[queries], features[catalogue])


@dataclass
class Facet:
    """The service's fused search with one set of facet weights, on a model's float vectors."""

    weights: dict[str, float]
    vectors: dict[str, np.ndarray]  # "shape", "color": one row per image of the data

    def scores(self, vector: str, queries, catalogue) -> np.ndarray:
        """As `Method.scores`, but every task is ranked alike: the weights decide, not the task's vector."""
        return fused_scores(self._rows(queries), self._rows(catalogue), self.weights, SERVED_LIMIT, SHORTLIST_FACTOR)

    def _rows(self, selection) -> dict[str, np.ndarray]:
        return {name: values[selection] for name, values in self.vectors.items()}


def run_batches(function: Callable, pixels: np.ndarray, batch_size: int, workers: int, desc: str):
    """`function` over batches of `pixels`, outputs concatenated (arrays, or dicts of arrays)."""
    batches = [pixels[start : start + batch_size] for start in range(0, len(pixels), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        bar = tqdm(total=len(pixels), desc=desc, unit="img", dynamic_ncols=True)
        outputs = []
        for batch, output in zip(batches, pool.map(function, batches)):
            outputs.append(output)
            bar.update(len(batch))
        bar.close()
    if isinstance(outputs[0], dict):
        return {key: np.concatenate([output[key] for output in outputs]) for key in outputs[0]}
    return np.concatenate(outputs)


def milliseconds_per_image(function: Callable, pixels: np.ndarray, repeats: int = 3) -> float:
    """Encoding speed on one batch of TIMING_IMAGES: the best of `repeats` calls after a warm-up (as timeit advises)."""
    sample = pixels[:TIMING_IMAGES]
    function(sample[:2])
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        function(sample)
        best = min(best, time.perf_counter() - started)
    return 1000 * best / len(sample)


def model_methods(
    model: ModelUnderTest, pixels: np.ndarray, batch_size: int, *, index_rows: bool = True
) -> tuple[list[Method], np.ndarray | None]:
    """The model's rows and its category logits (None without a classifier).

    Rows: float vectors, binary codes (both sides), and with `index_rows` the two ways the store
    can search a 1-bit index: a float query against the codes, and the service's search (that
    shortlist, SHORTLIST_FACTOR x SERVED_LIMIT items, rescored by the float vectors).
    """
    outputs = run_batches(model.embedder, pixels, batch_size, 1, f"embed {model.name}")
    speed = milliseconds_per_image(model.embedder, pixels)
    shape, color = outputs["shape"], outputs["color"]
    variants = [("float", "float", "cosine", 0), ("binary", "binary", "hamming", 0)]
    if index_rows:
        variants += [
            ("asymmetric", "float query, binary index", "asymmetric", 0),
            ("served", "served: binary index, rescored", "rescored", SHORTLIST_FACTOR * SERVED_LIMIT),
        ]
    rows = []
    for key, label, metric, shortlist in variants:
        encode = binarize if metric == "hamming" else np.asarray
        features = Features(encode(shape), metric, shortlist), Features(encode(color), metric, shortlist)
        rows.append(Method(f"{model.name} {label}", key, model.name, features[0].describe(), *features, speed))
    return rows, outputs.get("category_logits")


def baseline_method(baseline, pixels: np.ndarray, digests: np.ndarray, cache: FeatureCache, args) -> Method:
    """A baseline's features, read from the cache where the same pixels were encoded before."""
    cached, hits = cache.lookup(baseline.cache_key, digests)
    vectors = cached
    if not hits.all():
        log.info("%s: %d of %d images cached", baseline.name, hits.sum(), len(hits))
        missing = np.flatnonzero(~hits)
        todo = pixels if len(missing) == len(pixels) else pixels[missing]  # no copy of every pixel on a cold cache
        workers = args.workers if baseline.parallel_batches else 1
        computed = run_batches(baseline, todo, args.batch_size, workers, baseline.name)
        cache.store(baseline.cache_key, digests[missing], computed)
        if vectors is None:
            vectors = np.zeros((len(pixels), *computed.shape[1:]), computed.dtype)
        vectors[missing] = computed
    features = Features(vectors, baseline.metric)
    speed = milliseconds_per_image(baseline, pixels)
    return Method(f"baseline {baseline.name}", baseline.name, None, baseline.description, features, features, speed)


# ---------------------------------------------------------------------------------------------
# Tasks: each takes a method and the data and returns metrics (and what the report plots)


def instance_retrieval(method: Method | Facet, data: EvalData) -> tuple[dict[str, float], np.ndarray]:
    scores = method.scores("shape", data.parts["queries"], np.r_[data.parts["centre"], data.parts["catalogue"]])
    ranks = rank_relevant(scores, np.eye(*scores.shape, dtype=bool))
    curve = recall_curve(ranks, CURVE_KS)
    return {"instance_recall@1": curve[0], "instance_recall@10": curve[TOP_K - 1]}, curve


def category_retrieval(method: Method | Facet, data: EvalData) -> tuple[dict[str, float], np.ndarray, float]:
    """Mean P@10, P@10 per class, and the best P@10 possible."""
    scores = method.scores("shape", data.parts["centre"], data.parts["catalogue"])
    ranks = rank_relevant(scores, same_label(data.val_labels, data.train_labels))
    precision = ranks.precision(TOP_K)
    per_class = per_group_mean(precision, data.val_labels, len(data.classes))
    return {"category_precision@10": precision.mean()}, per_class, ranks.best_precision(TOP_K).mean()


def colour_retrieval(method: Method | Facet, data: EvalData) -> tuple[dict[str, float], dict[str, float]]:
    """Mean P@10 of the same colour+pattern and of the same colour, and the best P@10 possible of each."""
    scores = method.scores("color", data.parts["recoloured"], data.parts["recoloured"])
    same_photo = same_label(data.recolour_source, data.recolour_source)
    colours = np.array([label.colour_index for label in data.recolour_labels])
    classes = colours * len(PATTERNS) + np.array([label.pattern_index for label in data.recolour_labels])
    metrics, best = {}, {}
    for key, labels in (("colour_pattern_precision@10", classes), ("colour_precision@10", colours)):
        ranks = rank_relevant(scores, same_label(labels, labels), exclude=same_photo)
        metrics[key], best[key] = ranks.precision(TOP_K).mean(), ranks.best_precision(TOP_K).mean()
    return metrics, best


def other_colour_retrieval(method: Method, data: EvalData) -> dict[str, float]:
    repainted = method.shape[data.parts["recoloured"]]
    same_photo = same_label(data.recolour_source, data.recolour_source)
    itself = np.eye(len(repainted), dtype=bool)
    ranks = rank_relevant(similarity(repainted, repainted), same_photo, exclude=itself)
    return {"other_colour_recall@10": float(np.nanmean(ranks.recall(TOP_K)))}


@dataclass
class Classification:
    top1: float
    labels: list[str]
    matrix: np.ndarray  # rows true, columns predicted

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        correct, support = np.diag(self.matrix), self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return correct / self.matrix.sum(axis=0), correct / support, support


def classify(logits: np.ndarray, model: ModelUnderTest, data: EvalData) -> Classification:
    """Top-1 of the model's logits against the validation labels, matched by class name."""
    model_classes = model.shape_classes
    if not model_classes and logits.shape[1] == len(data.classes):
        log.warning("%s has no class names: assuming the data's classes %s", model.name, data.classes)
        model_classes = data.classes
    if len(model_classes) != logits.shape[1]:
        raise ValueError(f"{model.name}: {logits.shape[1]} logits but {len(model_classes)} class names")
    unknown = sorted(set(data.classes) - set(model_classes))
    if unknown:
        log.warning("%s cannot predict the data's classes %s: their images count as errors", model.name, unknown)
    labels = list(data.classes) + [name for name in model_classes if name not in data.classes]
    predicted = np.array([labels.index(model_classes[i]) for i in logits.argmax(axis=1)])
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(matrix, (data.val_labels, predicted), 1)
    return Classification(float((predicted == data.val_labels).mean()), labels, matrix)


# ---------------------------------------------------------------------------------------------
# Putting it together


@dataclass
class Results:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> metric -> value
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # method -> instance recall@k
    per_class: dict[str, np.ndarray] = field(default_factory=dict)  # method -> category P@10 per class
    best: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RECALLS, 1.0))  # the best value possible
    classifications: dict[str, Classification] = field(default_factory=dict)
    facets: list[tuple[dict[str, float], dict[str, float]]] = field(default_factory=list)  # weights, metrics


def evaluate_methods(methods: list[Method], data: EvalData, logits: dict[str, np.ndarray], models) -> Results:
    results = Results()
    for method in tqdm(methods, desc="metrics", unit="method", dynamic_ncols=True):
        instance, results.curves[method.name] = instance_retrieval(method, data)
        category, results.per_class[method.name], results.best["category_precision@10"] = category_retrieval(
            method, data
        )
        colour, best = colour_retrieval(method, data)
        results.best.update(best)
        results.metrics[method.name] = instance | category | colour | other_colour_retrieval(method, data)
    results.facets = evaluate_facets(methods[0], data)
    for model in models:
        if logits.get(model.name) is not None:
            classification = classify(logits[model.name][data.parts["centre"]], model, data)
            results.classifications[model.name] = classification
            for method in methods:
                if method.model == model.name:
                    results.metrics[method.name]["classifier_top1"] = classification.top1
    return results


def evaluate_facets(floats: Method, data: EvalData) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Instance, category and colour retrieval as served with each of FACET_WEIGHTS, on `floats`' vectors."""
    if floats.key != "float":
        raise ValueError(f"facets need a model's float vectors, not {floats.name}")
    vectors = {"shape": floats.shape.vectors, "color": floats.color.vectors}
    facets = []
    for weights in tqdm(FACET_WEIGHTS, desc="facets", unit="weights", dynamic_ncols=True):
        facet = Facet(weights, vectors)
        metrics = (
            instance_retrieval(facet, data)[0] | category_retrieval(facet, data)[0] | colour_retrieval(facet, data)[0]
        )
        facets.append((weights, {key: float(metrics[key]) for key in FACET_COLUMNS}))
    return facets


def best_facet(facets: list[tuple[dict[str, float], dict[str, float]]], key: str) -> tuple[dict[str, float], float]:
    weights, metrics = max(facets, key=lambda facet: facet[1][key])
    return weights, metrics[key]


def facets_section(model: ModelUnderTest, results: Results) -> Section:
    rows = [[facet_label(weights), *metrics.values()] for weights, metrics in results.facets]
    rows.append(["perfect ranking", *(results.best.get(key, 1.0) for key in FACET_COLUMNS)])
    by_label = {facet_label(weights): metrics for weights, metrics in results.facets}
    verdicts = []
    for key, aim, meaning in (
        ("colour_precision@10", FACET_WEIGHTS[-1], "same colour, other things"),
        ("category_precision@10", FACET_WEIGHTS[0], "same cut, other colour"),
    ):
        weights, value = best_facet(results.facets, key)
        verdict = "as meant" if weights == aim else f"not {facet_label(aim)} ({by_label[facet_label(aim)][key]:.3f})"
        verdicts.append(f"best {FACET_COLUMNS[key]} ({meaning}) is {facet_label(weights)}'s, {value:.3f}: {verdict}")
    note = (
        f"`{model.name}`, ranked as served with each set of facet weights (the fused search, limit {SERVED_LIMIT} per"
        f" weighted vector, oversampling {SHORTLIST_FACTOR}) on the tasks and data of the results table; the"
        f" service's default is {facet_label(DEFAULT_WEIGHTS)}. The " + "; the ".join(verdicts) + "."
    )
    return Section("Facets", [Table(["weights", *FACET_COLUMNS.values()], rows, note=note)])


def best_non_neural(methods: list[Method], results: Results) -> tuple[str, float] | None:
    candidates = [(results.metrics[m.name]["instance_recall@1"], m.name) for m in methods if m.key in NON_NEURAL]
    if not candidates:
        return None
    value, name = max(candidates)
    return name, value


def ratio(value: float, reference: float) -> float:
    return math.inf if reference == 0 else value / reference


def results_table(methods: list[Method], results: Results) -> Table:
    best = best_non_neural(methods, results)
    rows = []
    for method in methods:
        values = results.metrics[method.name]
        cells = [method.name, method.description, *(values.get(key) for key in COLUMNS)]
        times = "" if not method.is_model or best is None else f"×{ratio(values['instance_recall@1'], best[1]):.1f}"
        rows.append(cells + [times, f"{method.ms_per_image:.1f}"])
    rows.append(["perfect ranking", "", None, *(results.best.get(key) for key in list(COLUMNS)[1:]), "", ""])
    heading = "R@1 ÷ best hash/histogram"
    note = (
        f"{heading}: instance R@1 over that of {best[0]} ({best[1]:.3f}), the best non-neural baseline." if best else ""
    )
    note += f" ms/image: encoding a batch of {TIMING_IMAGES} preset crops, best of 3, on this machine (no decoding, no resizing)."
    return Table(["method", "similarity", *COLUMNS.values(), heading, "ms/image"], rows, note=note.strip())


def per_class_table(methods: list[Method], results: Results, data: EvalData) -> Table:
    shown = [m.name for m in methods if m.is_model or m.key == "imagenet"]
    counts = np.bincount(data.val_labels, minlength=len(data.classes))
    rows = [[name, int(counts[c]), *(results.per_class[m][c] for m in shown)] for c, name in enumerate(data.classes)]
    return Table(["class", "queries", *shown], rows, title="Category retrieval P@10 per class")


def classifier_section(models: list[ModelUnderTest], results: Results, out: Path) -> Section:
    section = Section("Shape classifier")
    for model in models:
        classification = results.classifications.get(model.name)
        if classification is None:
            section.body.append(f"`{model.name}` (heads: {model.heads}) has no classifier: skipped.")
            continue
        precision, recall, support = classification.precision_recall()
        rows = [[label, int(n), p, r] for label, n, p, r in zip(classification.labels, support, precision, recall)]
        title = f"`{model.name}`: top-1 {classification.top1:.3f} on {int(support.sum())} validation images"
        section.body.append(Table(["class", "images", "precision", "recall"], rows, title=title))
        file = "confusion_" + re.sub(r"[^A-Za-z0-9]+", "-", model.name).strip("-") + ".png"
        section.body.append(plot_confusion_matrix(classification.matrix, classification.labels, out, file, model.name))
    return section


def instance_examples(method: Method, data: EvalData, count: int, seed: int, out: Path) -> Picture:
    """A contact sheet of photo-like queries and the method's top 5 (green: the source image)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(data.count("queries"), min(count, data.count("queries")), replace=False))
    catalogue = Features.concatenate([method.shape[data.parts["centre"]], method.shape[data.parts["catalogue"]]])
    queries = method.shape[data.parts["queries"]][picked]
    top = np.argsort(-similarity(queries, catalogue), axis=1, kind="stable")[:, :5]
    rows = []
    for query, results in zip(picked, top):
        found = [data.pixels[data.parts["centre"].start + i] for i in results]  # centre and catalogue are adjacent
        label = data.classes[data.val_labels[query]]
        rows.append(ExampleRow(data.pixels[data.parts["queries"].start + query], found, list(results == query), label))
    caption = f"Photo-like queries (grey) and the top 5 of {method.name} (green: the source image)"
    return example_sheet(rows, out, "examples_instance.png", caption)


def flat_metrics(
    methods: list[Method], results: Results, models: list[ModelUnderTest], data: EvalData, seed: int
) -> dict:
    """The main numbers as one flat dict: `float_...`/`binary_...` for --model, `compare_...` for --compare.

    Goes into the model's metadata (`training.embedder.export --metrics`), so the keys are stable names.
    """
    flat: dict[str, float | int | str | None] = {
        "eval_seed": seed,
        "eval_queries": data.count("queries"),
        "eval_catalogue": data.count("centre") + data.count("catalogue"),
        "eval_data_fingerprint": data.fingerprint,
    }
    prefixes = {models[0].name: ""} | ({models[1].name: "compare_"} if len(models) > 1 else {})
    best = best_non_neural(methods, results)
    for method in methods:
        prefix = f"{prefixes[method.model]}{method.key}_" if method.is_model else f"baseline_{method.key}_"
        flat |= {prefix + key: value for key, value in results.metrics[method.name].items() if key != "classifier_top1"}
        if method.is_model and best is not None:
            flat[f"{prefix}instance_recall@1_over_best_hash_histogram"] = ratio(
                results.metrics[method.name]["instance_recall@1"], best[1]
            )
    for model in models:
        if model.name in results.classifications:
            flat[f"{prefixes[model.name]}classifier_top1"] = results.classifications[model.name].top1
    if best is not None:
        flat["best_hash_histogram_instance_recall@1"] = best[1]
    for weights, metrics in results.facets:
        flat |= {f"{facet_key(weights)}_{key}": value for key, value in metrics.items()}
    # The model store's metadata takes no None, and JSON has no NaN or infinity: such numbers are left out.
    dropped = [key for key, value in flat.items() if isinstance(value, float) and not math.isfinite(value)]
    if dropped:
        log.info("metrics.json leaves out %s (NaN or infinite)", dropped)
    return {
        key: float(value) if isinstance(value, np.floating) else value
        for key, value in flat.items()
        if key not in dropped
    }


def encode_all(models: list[ModelUnderTest], data: EvalData, args) -> tuple[list[Method], dict[str, np.ndarray]]:
    methods, logits = [], {}
    for model in models:
        rows, logits[model.name] = model_methods(model, data.pixels, args.batch_size, index_rows=model is models[0])
        methods += rows
    cache = FeatureCache(args.cache_dir)
    digests = pixel_digests(data.pixels)
    with tempfile.TemporaryDirectory() as scratch:
        for baseline in build_baselines(args.baselines, args.cache_dir or Path(scratch)):
            methods.append(baseline_method(baseline, data.pixels, digests, cache, args))
    return methods, logits


def main(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    if args.recolours < 2:
        raise SystemExit("--recolours must be at least 2: other-colour retrieval needs another repainting")
    try:
        models = [load_model(args.model, args.onnx)] + ([load_model_reference(args.compare)] if args.compare else [])
    except LookupError as error:
        raise SystemExit(str(error)) from None
    if len({model.preset for model in models}) > 1:
        raise SystemExit(f"--compare needs the same preprocessing: {[m.preset for m in models]}")
    data = load_eval_data(args, models[0].preset)
    methods, logits = encode_all(models, data, args)
    results = evaluate_methods(methods, data, logits, models)
    metrics = flat_metrics(methods, results, models, data, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_full_report(args, models, methods, results, data, time.perf_counter() - started)
    log.info("wrote %s in %.0f s", args.out, time.perf_counter() - started)
    return metrics


def write_full_report(args, models, methods, results, data, seconds: float) -> Path:
    out = args.out
    curves = plot_recall_curves(
        results.curves,
        out,
        title="Instance retrieval: photo-like query -> its source image",
        dashed=[m.name for m in methods if not m.is_model],
    )
    intro = [
        f"Model `{models[0].name}` (heads: {models[0].heads})"
        + (f" compared with `{models[1].name}` (heads: {models[1].heads})" if len(models) > 1 else "")
        + f"; data `{args.data_dir}`: {data.count('centre')} validation images, {data.count('catalogue')} train"
        f" distractors, {data.count('recoloured')} repaintings; seed {args.seed}; {seconds / 60:.1f} min.",
        (
            "Its photo-like queries come from the generator that also makes training views, so this report"
            " measures how well a model learned its own generator. Search quality on query families training"
            " never saw, framed and ranked as served, worst family first: `training.embedder.robustness`"
            " (`training/reports/robustness/report.md`)."
        ),
    ]
    others = args.recolours - 1
    sections = [
        Section("Results", [results_table(methods, results), curves]),
        facets_section(models[0], results),
        Section(
            "Protocol",
            [
                PROTOCOL.format(
                    recolours=args.recolours,
                    others=others,
                    shortlist=SHORTLIST_FACTOR * SERVED_LIMIT,
                    oversampling=SHORTLIST_FACTOR,
                    limit=SERVED_LIMIT,
                )
            ],
        ),
        classifier_section(models, results, out),
        Section("Category retrieval per class", [per_class_table(methods, results, data)]),
        Section("Examples", [instance_examples(methods[0], data, args.examples, args.seed, out)]),
        Section(
            "Run",
            [f"`{shlex.join(['python', '-m', 'training.embedder.evaluate', *sys.argv[1:]])}`", run_details(args, data)],
        ),
    ]
    return write_report(out, "Embedder evaluation", sections, intro)


def run_details(args, data: EvalData) -> str:
    from importlib.metadata import version

    packages = ", ".join(
        f"{name} {version(name)}" for name in ("onnxruntime", "imagehash", "numpy", "opencv-python-headless")
    )
    return (
        f"Data fingerprint `{data.fingerprint}`; masks from `{args.mask_cache}`; baseline cache "
        f"`{args.cache_dir or 'off'}`; {os.cpu_count()} CPUs; {packages}."
    )


def get_args_parser() -> argparse.ArgumentParser:
    from lookalike.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=settings.embedder_model, help="model store tag of the embedder")
    parser.add_argument(
        "--onnx", type=Path, help="evaluate this .onnx (metadata from its .json sidecar, else --model's)"
    )
    parser.add_argument(
        "--compare",
        help="a second model (store tag, or X.onnx with its X.json), e.g. the previous one, in the same tables",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=settings.clothing_dir, help="folder with train/ and validation/"
    )
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--limit", type=int, help="a seeded random N validation images and the same share of train")
    parser.add_argument("--mask-cache", type=Path, default=Path("var/masks"), help="garment mask cache")
    parser.add_argument(
        "--cache-dir", type=_optional_path, default=Path("var/eval-cache"), help="baseline feature cache ('' = off)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recolours", type=int, default=3, help="repaintings per validation image")
    parser.add_argument("--baselines", type=_names, default=list(ALL_BASELINES), help="comma-separated, '' for none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads for decoding and hashing")
    parser.add_argument("--examples", type=int, default=8, help="rows of the example sheet")
    return parser


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir"):  # the ImageNet export logs every graph pass
        logging.getLogger(chatty).setLevel(logging.WARNING)
    main(get_args_parser().parse_args())
