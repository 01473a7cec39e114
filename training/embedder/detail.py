"""A third vector for an exported embedder: `detail`, "the same item", added to its ONNX graph.

    python -m training.embedder.detail --onnx training/artifacts/embedder.onnx --out var/detail/embedder.onnx

`shape` and `color` are trained to agree across items of a kind; `detail` keeps what tells one
item from another. It is the head convolution's activation X (the input of the global average
pool that feeds the shape head) pooled by GeM, then PCA-whitened:

    g = (mean over H, W of max(X, 0)^p)^(1/p)                    (n, C), p = 3
    detail = normalize((g - m) @ W)                               (n, dims), dims = 256

m and W (C x dims: the principal directions divided by their singular values, times sqrt(rows),
so every kept direction has unit variance) are fitted on the train photos of the robustness
protocol's catalogue, cropped as the indexer crops them (`training.embedder.served_data`). The
experiment that chose this (GeM p = 3, 256 whitened dims) lifted the worst query family's
Recall@1 from 0.188 to 0.27-0.33.

The nodes are appended to a copy of the graph; the other outputs are untouched, and the run
checks that they stay bit for bit the same, that `detail` matches a numpy computation from X,
and that every row has unit norm. The sidecar is the input's, with `dims["detail"]`, `detail`
among the outputs and a `detail` block saying how it was made.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from lookalike.engines.ort import OnnxEmbedder
from lookalike.modelcard import EmbedderCard

log = logging.getLogger(__name__)

SHAPE_HEAD_WEIGHT = "module.shape_head.0.weight"  # the first Linear of the shape head, fed by the pool
PREFIX = "detail_"  # every node, initializer and intermediate tensor this module adds
GEM_OUTPUT = f"{PREFIX}gem"  # the pooled (n, C) vector: an output only while the whitening is fitted
OUTPUT = "detail"
CHECK_CROPS = 32
PARITY_TOLERANCE = 1e-5
NORM_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Whitening:
    """PCA-whitening fitted on pooled features: detail = normalize((g - mean) @ projection)."""

    mean: np.ndarray  # (C,) float32
    projection: np.ndarray  # (C, dims) float32
    explained_variance: float  # share of the fitted rows' variance the kept directions hold
    rows: int

    @property
    def dims(self) -> int:
        return self.projection.shape[1]


# ---------------------------------------------------------------------------------------------
# The graph


def head_activation(graph: onnx.GraphProto, weight: str = SHAPE_HEAD_WEIGHT) -> str:
    """The tensor the shape head pools: the input of the ReduceMean whose output feeds the Gemm on `weight`.

    Found by structure, not by name: tensor names change with every export.
    """
    # The export stores weights in float16 (`NAME.fp16` -> Cast -> `NAME`), so `weight` names the
    # Gemm's B input, whether an initializer or the Cast's output.
    gemms = [node for node in graph.node if node.op_type == "Gemm" and node.input[1] == weight]
    if len(gemms) != 1:
        raise ValueError(f"expected one Gemm whose weight is {weight!r}, found {len(gemms)}: not a shipped embedder?")
    producers = {output: node for node in graph.node for output in node.output}
    pool = producers.get(gemms[0].input[0])
    if pool is None or pool.op_type != "ReduceMean":
        found = "a graph input or initializer" if pool is None else f"a {pool.op_type} node"
        raise ValueError(f"the Gemm on {weight!r} should be fed by a ReduceMean (global pool), but is fed by {found}")
    return pool.input[0]


def batch_dim(graph: onnx.GraphProto) -> str:
    """The dim_param of the outputs' first axis (`batch`), so `detail` reads like its siblings."""
    return graph.output[0].type.tensor_type.shape.dim[0].dim_param or "batch"


def without_detail(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` without an earlier detail head (its nodes, constants and output), so that
    fitting again replaces it; the shipped embedder's graph already has one."""
    model = copy.deepcopy(model)
    graph = model.graph
    kept_nodes = [node for node in graph.node if not node.name.startswith(PREFIX)]
    kept_constants = [tensor for tensor in graph.initializer if not tensor.name.startswith(PREFIX)]
    kept_outputs = [output for output in graph.output if output.name not in (OUTPUT, GEM_OUTPUT)]
    for field, kept in ((graph.node, kept_nodes), (graph.initializer, kept_constants), (graph.output, kept_outputs)):
        del field[:]
        field.extend(kept)
    return model


def with_gem(model: onnx.ModelProto, source: str, p: float) -> onnx.ModelProto:
    """A copy of `model` with the GeM of `source` (n, C, H, W) as an extra output GEM_OUTPUT (n, C)."""
    model = copy.deepcopy(model)
    graph = model.graph
    graph.initializer.extend(
        [
            _constant("p", np.array(p, np.float32)),
            _constant("inv_p", np.array(1.0 / p, np.float32)),
            _constant("zero", np.array(0.0, np.float32)),
            numpy_helper.from_array(np.array([2, 3], np.int64), f"{PREFIX}spatial_axes"),
        ]
    )
    graph.node.extend(
        [
            # A no-op on the shipped graph (X comes out of a Clip at 0): it keeps x^p and its
            # p-th root defined should a head's activation ever go negative.
            _node("Max", [source, f"{PREFIX}zero"], "positive"),
            _node("Pow", [f"{PREFIX}positive", f"{PREFIX}p"], "powered"),
            _node("ReduceMean", [f"{PREFIX}powered", f"{PREFIX}spatial_axes"], "pooled", keepdims=0),
            _node("Pow", [f"{PREFIX}pooled", f"{PREFIX}inv_p"], "gem"),
        ]
    )
    graph.output.append(helper.make_tensor_value_info(GEM_OUTPUT, TensorProto.FLOAT, [batch_dim(graph), None]))
    return model


def with_detail(gem_model: onnx.ModelProto, whitening: Whitening) -> onnx.ModelProto:
    """`with_gem`'s graph with the GeM output whitened and L2-normalised into OUTPUT, in place of GEM_OUTPUT."""
    model = copy.deepcopy(gem_model)
    graph = model.graph
    (position,) = [i for i, output in enumerate(graph.output) if output.name == GEM_OUTPUT]
    del graph.output[position]
    graph.initializer.extend(
        [
            _constant("mean", whitening.mean),
            _constant("projection", whitening.projection),
            _constant("min_norm", np.array(1e-12, np.float32)),  # as F.normalize's eps: a zero row stays zero
            numpy_helper.from_array(np.array([1], np.int64), f"{PREFIX}vector_axis"),
        ]
    )
    graph.node.extend(
        [
            _node("Sub", [GEM_OUTPUT, f"{PREFIX}mean"], "centred"),
            _node("MatMul", [f"{PREFIX}centred", f"{PREFIX}projection"], "whitened"),
            _node("ReduceL2", [f"{PREFIX}whitened", f"{PREFIX}vector_axis"], "norm", keepdims=1),
            _node("Clip", [f"{PREFIX}norm", f"{PREFIX}min_norm"], "safe_norm"),
            helper.make_node("Div", [f"{PREFIX}whitened", f"{PREFIX}safe_norm"], [OUTPUT], name=f"{PREFIX}normalize"),
        ]
    )
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch_dim(graph), whitening.dims]))
    onnx.checker.check_model(model, full_check=True)
    return model


def with_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A throwaway copy of `model` that also returns its intermediate tensor `name`."""
    model = copy.deepcopy(model)
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def _constant(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), f"{PREFIX}{name}")


def _node(op: str, inputs: list[str], output: str, **attributes) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [f"{PREFIX}{output}"], name=f"{PREFIX}{output}", **attributes)


@contextlib.contextmanager
def session(model: onnx.ModelProto) -> Iterator[OnnxEmbedder]:
    """`model` in ONNX Runtime, through a temporary file (the engines open paths)."""
    with tempfile.TemporaryDirectory(prefix="detail-") as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(model, path)
        yield OnnxEmbedder(path)


# ---------------------------------------------------------------------------------------------
# The fit


def gem_features(engine: OnnxEmbedder, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """GEM_OUTPUT of `engine` (a `with_gem` graph) for every image of `pixels`, (n, C) float32."""
    rows = [
        engine(pixels[start : start + batch_size])[GEM_OUTPUT]
        for start in tqdm(range(0, len(pixels), batch_size), desc="GeM features", unit="batch")
    ]
    return np.concatenate(rows)


def fit_whitening(features: np.ndarray, dims: int) -> Whitening:
    """PCA-whitening of `features` (n, C) to `dims` directions of unit variance (float64 fit, float32 result)."""
    features = np.asarray(features, np.float64)
    rows, channels = features.shape
    # Centred rows span at most rows - 1 directions: more would divide by a zero singular value.
    if not 1 <= dims <= min(rows - 1, channels):
        raise ValueError(f"cannot whiten {rows} rows of {channels} features to {dims} dims")
    mean = features.mean(0)
    _, singular, directions = np.linalg.svd(features - mean, full_matrices=False)
    if singular[dims - 1] <= singular[0] * 1e-6:
        raise ValueError(f"the features span fewer than {dims} directions: whitening would blow up noise")
    projection = directions[:dims].T / singular[:dims] * np.sqrt(rows)
    explained = float((singular[:dims] ** 2).sum() / (singular**2).sum())
    return Whitening(mean.astype(np.float32), projection.astype(np.float32), explained, rows)


# ---------------------------------------------------------------------------------------------
# Checks


def expected_detail(activation: np.ndarray, whitening: Whitening, p: float) -> np.ndarray:
    """`detail` computed in numpy (float64) from X (n, C, H, W): what the appended nodes must give."""
    x = np.maximum(np.asarray(activation, np.float64), 0.0)
    gem = (x**p).mean(axis=(2, 3)) ** (1.0 / p)
    whitened = (gem - whitening.mean) @ whitening.projection.astype(np.float64)
    return whitened / np.maximum(np.linalg.norm(whitened, axis=1, keepdims=True), 1e-12)


def verify(original: onnx.ModelProto, detailed: onnx.ModelProto, pixels: np.ndarray, whitening: Whitening, p: float):
    """Check `detailed` against `original` on `pixels`; return the numbers, raise if a check fails."""
    source = head_activation(original.graph)
    with session(with_output(original, source)) as engine:
        before = engine(pixels)
    with session(detailed) as engine:
        after = engine(pixels)
    parity = float(np.abs(after[OUTPUT] - expected_detail(before[source], whitening, p)).max())
    norm = float(np.abs(np.linalg.norm(after[OUTPUT].astype(np.float64), axis=1) - 1.0).max())
    changed = [name for name in before if name != source and not np.array_equal(before[name], after[name])]
    numbers = {"crops": len(pixels), "parity_max_abs_diff": parity, "norm_max_abs_diff": norm, "changed": changed}
    if parity > PARITY_TOLERANCE or norm > NORM_TOLERANCE or changed:
        raise AssertionError(f"the detail graph fails its checks: {numbers}")
    return numbers


# ---------------------------------------------------------------------------------------------
# The sidecar


def detail_sidecar(sidecar: dict, whitening: Whitening, p: float, source: str, fitted_on: str) -> dict:
    """A copy of the input's sidecar that describes `detail` as well (validated as an `EmbedderCard`)."""
    sidecar = copy.deepcopy(sidecar)
    sidecar["dims"] = {**sidecar["dims"], OUTPUT: whitening.dims}
    sidecar["outputs"] = [name for name in sidecar["outputs"] if name != OUTPUT] + [OUTPUT]
    sidecar[OUTPUT] = {
        "pooling": "gem",
        "p": int(p) if float(p).is_integer() else p,  # 3, not 3.0
        "source": source,
        "dims": whitening.dims,
        "whiten": True,
        "fitted_on": fitted_on,
        "explained_variance": whitening.explained_variance,
    }
    EmbedderCard.from_metadata(sidecar)
    return sidecar


# ---------------------------------------------------------------------------------------------
# The served data: the train photos of the robustness protocol's catalogue


def served_args(args: argparse.Namespace) -> argparse.Namespace:
    """The robustness protocol's options (its defaults: the cached catalogue is found again) with ours."""
    from training.embedder import robustness

    served = robustness.get_args_parser().parse_args([])
    for name in ("data_dir", "cache_dir", "limit", "detector"):
        setattr(served, name, getattr(args, name))
    served.families = []  # the queries are not needed, and the catalogue's cache key does not depend on them
    return served


def load_train_crops(args: argparse.Namespace, sidecar: dict):
    """(train photo crops as the indexer frames them, validation crops to check on), from `load_served_data`."""
    from training.embedder.served_data import Framer, load_served_data

    served = served_args(args)
    preset = EmbedderCard.from_metadata(sidecar).preset
    data = load_served_data(served, preset, Framer.from_files(served.detector, served.cache_dir))
    # The catalogue holds the validation photos (the targets), then the train photos, then the
    # distractors: rows [num_targets, num_photos) are the train photos.
    if not (data.catalogue_kind[: data.num_photos] == "photo").all():
        raise ValueError("the served catalogue does not start with its photos: served_data's order changed")
    return data.catalogue[data.num_targets : data.num_photos], data.catalogue[: min(CHECK_CROPS, data.num_targets)]


# ---------------------------------------------------------------------------------------------
# Entry point


def main(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    if args.out.resolve() == args.onnx.resolve():
        raise SystemExit(f"--out must differ from --onnx: {args.onnx} (and its sidecar) would be overwritten")
    sidecar = json.loads(args.onnx.with_suffix(".json").read_text(encoding="utf-8"))
    original = without_detail(onnx.load(args.onnx))
    source = head_activation(original.graph)
    log.info("pooling %s (the shape head's input) of %s with GeM p=%g", source, args.onnx, args.p)
    gem_model = with_gem(original, source, args.p)
    train, check = load_train_crops(args, sidecar)
    with session(gem_model) as engine:
        features = gem_features(engine, train, args.batch_size)
    whitening = fit_whitening(features, args.dims)
    log.info(
        "whitening fitted on %d train crops: %d of %d dims keep %.1f%% of the variance",
        whitening.rows,
        whitening.dims,
        features.shape[1],
        100 * whitening.explained_variance,
    )
    detailed = with_detail(gem_model, whitening)
    numbers = verify(original, detailed, np.asarray(check), whitening, args.p)
    log.info(
        "checked on %d validation crops: detail vs numpy max abs diff %.3g, unit norm within %.3g, "
        "shape/color/category_logits bit for bit the same",
        numbers["crops"],
        numbers["parity_max_abs_diff"],
        numbers["norm_max_abs_diff"],
    )
    fitted_on = f"{whitening.rows} train photos of {args.data_dir}/train framed as catalogue crops"
    card = detail_sidecar(sidecar, whitening, args.p, source, fitted_on)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(detailed, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %s and %s in %.0f s", args.out, args.out.with_suffix(".json").name, time.perf_counter() - started)
    return {**numbers, "explained_variance": whitening.explained_variance, "rows": whitening.rows}


def get_args_parser() -> argparse.ArgumentParser:
    from training.embedder import robustness

    served = robustness.get_args_parser()  # the served data's defaults, where the catalogue was cached
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True, help="an exported embedder with its .json sidecar")
    parser.add_argument("--out", type=Path, required=True, help="where to write the graph (and its .json sidecar)")
    parser.add_argument("--dims", type=int, default=256, help="whitened dimensions kept")
    parser.add_argument("--p", type=float, default=3.0, help="GeM exponent (1: average pooling)")
    parser.add_argument("--data-dir", type=Path, default=served.get_default("data_dir"))
    parser.add_argument("--cache-dir", type=lambda t: Path(t) if t else None, default=served.get_default("cache_dir"))
    parser.add_argument("--limit", type=int, help="robustness --limit: 9x this many train photos (a smoke run)")
    parser.add_argument(
        "--detector",
        type=lambda text: Path(text) if text else None,
        default=served.get_default("detector"),
        help="the detector that frames the catalogue crops; '' takes every photo whole",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
