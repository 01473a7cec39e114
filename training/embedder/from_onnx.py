"""Load an exported embedder graph's weights back into the torch `Embedder`, to fine-tune it.

    python -m training.embedder.from_onnx training/artifacts/embedder.onnx   # load, check parity with ONNX Runtime

The shipped embedder was trained end to end on a GPU and its torch checkpoint is lost: the
`.onnx` file and its `.json` sidecar (whose "config" is the model's `EmbedderConfig`) are all
there is. The export (`training.embedder.export`) keeps most weights as initializers under their
torch names with the `module.` prefix of its `PixelInput` wrapper, and changes them in four ways
that this loader undoes. Each is read from the graph's nodes, not guessed from names:

- float16 storage (`training.onnx_export.store_weights_fp16`): initializer `NAME.fp16` feeds a
  Cast node whose output is `NAME`; the values are cast back to float32.
- BatchNorm folded into the layer before it: the Conv or Gemm node's weight is already scaled
  by gamma / sqrt(var + eps) and its bias input holds the folded shift (`module.X.weight_bias`
  for convolutions without a bias, `module.X.bias` for a Linear that had one). The layer takes
  the folded weight and its BatchNorm becomes the identity plus that shift (weight 1, running
  mean 0, running var 1 - eps, bias = the shift); the layer's own bias, if any, becomes 0.
- constants computed at export: the category classifier's `F.normalize(weight)` is one folded
  constant, the second input of the MatMul that makes `category_logits` (unit rows, transposed);
  `CosineClassifier` normalises its weight anyway, so loading the unit rows changes nothing.
- deduplicated constants: the normalisation's mean and std (both 0.5) share one initializer;
  they are read from the Sub and the Div that use them.

The colour and pattern classifiers are not in the graph (the export has no outputs for them):
they keep the values they had (`NOT_EXPORTED`); `training.embedder.train` re-imprints them.

Folding is exact in eval mode, but in train mode a BatchNorm normalises by the batch's
statistics, and the identity form (weight 1, mean 0, var 1) would then rescale every channel to
unit variance: the first training step would start from a different network.
`calibrate_batchnorm` measures each BatchNorm's input on real data and re-expresses the same
eval-mode function with those statistics (running mean m, running var v, weight sqrt(v + eps),
bias shift + m), so train mode starts close to where eval mode is.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from lookalike.engines import OnnxEmbedder
from lookalike.modelcard import read_card
from training.embedder.detail import PREFIX as DETAIL_PREFIX
from training.embedder.export import output_names
from training.embedder.model import Embedder, EmbedderConfig
from training.onnx_export import PixelInput

log = logging.getLogger(__name__)
PREFIX = "module."  # the export's PixelInput wrapper holds the embedder as `module`
FP16_SUFFIX = ".fp16"
# Parameters the export drops: the colour and pattern logits are not graph outputs.
NOT_EXPORTED = ("colour_classifier.weight", "pattern_classifier.weight")
# Config fields that decide the parameters' shapes and meaning: a model built with others cannot
# take the graph's weights (classes in another order would swap classifier rows).
ARCHITECTURE_FIELDS = (
    "heads",
    "backbone",
    "embed_dim",
    "hidden_dim",
    "color_stages",
    "trunk_stages",
    "color_pooling",
    "shape_classes",
    "colour_classes",
    "pattern_classes",
    "classifier_scale",
    "mean",
    "std",
)
# Weights in float16 moved the shipped model's unit vectors by ~7e-4 (`export.FP16_STORAGE_TOLERANCE`).
PARITY_TOLERANCE = 1e-2


# ---------------------------------------------------------------------------------------------
# Reading the graph


class GraphConstants:
    """The graph's constant values by the name nodes use (float16 initializers cast back), and
    which initializers the loader consumed, so that none is silently left over."""

    def __init__(self, graph: onnx.GraphProto):
        self.initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        self.source = {name: name for name in self.initializers}
        for node in graph.node:
            if node.op_type == "Cast" and node.input[0] in self.initializers:
                self.source[node.output[0]] = node.input[0]
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.source

    def take(self, name: str) -> torch.Tensor:
        initializer = self.source[name]
        self.used.add(initializer)
        return torch.from_numpy(self.initializers[initializer].astype(np.float32))

    def unused_weights(self) -> list[str]:
        # The export's own constants (clip bounds, reshape targets, scalars) are at most 1-d and
        # not named after a module; anything else is a weight that went nowhere.
        return sorted(
            name
            for name, value in self.initializers.items()
            if name not in self.used and (name.startswith(PREFIX) or value.ndim >= 2)
        )


def torch_layer_name(weight_input: str) -> str:
    """`module.backbone.conv_head.weight` -> `backbone.conv_head`."""
    if not (weight_input.startswith(PREFIX) and weight_input.endswith(".weight")):
        raise ValueError(f"cannot map the graph's weight {weight_input!r} to a torch layer: its name was not kept")
    return weight_input[len(PREFIX) : -len(".weight")]


def layer_weights(graph: onnx.GraphProto, constants: GraphConstants) -> dict[str, tuple[str, str | None]]:
    """torch layer name -> (weight input, bias input) of its Conv or Gemm node."""
    layers = {}
    for node in graph.node:
        if node.op_type == "Gemm":
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attributes.get("transB") != 1 or attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0:
                raise ValueError(f"Gemm {node.name} is not a torch Linear (x @ W.T + b): {attributes}")
        elif node.op_type != "Conv":
            continue
        weight, bias = node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None
        if weight not in constants:
            raise ValueError(f"{node.op_type} node {node.name}: weight {weight!r} is computed, not stored")
        layers[torch_layer_name(weight)] = (weight, bias)
    return layers


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [node for node in graph.node if name in node.input]


def normalisation_inputs(graph: onnx.GraphProto, constants: GraphConstants) -> tuple[str, str]:
    """(mean, std) inputs of `(images - mean) / std`, the first Sub of the graph and the Div after it."""
    for node in graph.node:
        if node.op_type == "Sub" and node.input[1] in constants:
            (divide,) = _consumers(graph, node.output[0])
            if divide.op_type == "Div" and divide.input[1] in constants:
                return node.input[1], divide.input[1]
    raise ValueError("no (images - mean) / std in the graph")


def classifier_inputs(graph: onnx.GraphProto, constants: GraphConstants, output: str) -> tuple[str, str]:
    """(transposed unit weight, scale) of `output` = scale * unit(shape) @ unit(W).T."""
    producers = {out: node for node in graph.node for out in node.output}
    matmul = producers[output]
    if matmul.op_type != "MatMul" or matmul.input[1] not in constants:
        raise ValueError(f"{output} is made by {matmul.op_type}({list(matmul.input)}), not a MatMul with a constant")
    scaled = producers[matmul.input[0]]
    scales = [name for name in scaled.input if name in constants]
    if scaled.op_type != "Mul" or len(scales) != 1:
        raise ValueError(f"{output}'s features come from {scaled.op_type}({list(scaled.input)}), not a scaling")
    return matmul.input[1], scales[0]


# ---------------------------------------------------------------------------------------------
# Mapping onto the torch model


def batchnorm_after(model: nn.Module) -> dict[str, str]:
    """Layer name -> name of the BatchNorm right after it in its parent (conv_pw -> bn1, ...)."""
    pairs, last_layer = {}, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            last_layer = (name, module)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if last_layer is None or last_layer[0].rpartition(".")[0] != name.rpartition(".")[0]:
                raise ValueError(f"BatchNorm {name} follows no layer of its own module")
            layer_name, layer = last_layer
            if getattr(layer, "out_channels", getattr(layer, "out_features", None)) != module.num_features:
                raise ValueError(f"BatchNorm {name} does not fit {layer_name}")
            pairs[layer_name] = name
            last_layer = None
    return pairs


def identity_batchnorm(bn: nn.modules.batchnorm._BatchNorm, shift: torch.Tensor) -> dict[str, torch.Tensor]:
    """Buffers and parameters of a BatchNorm that adds `shift` in eval mode: sqrt(var + eps) = 1."""
    ones = torch.ones(bn.num_features)
    return {
        "weight": ones,
        "bias": shift,
        "running_mean": torch.zeros(bn.num_features),
        "running_var": ones - bn.eps,
        "num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


def layer_state(model: nn.Module, graph: onnx.GraphProto, constants: GraphConstants) -> dict[str, torch.Tensor]:
    """Every Conv/Linear's weights, its bias or folded BatchNorm, from the graph's layers."""
    modules, after = dict(model.named_modules()), batchnorm_after(model)
    state = {}
    for name, (weight, bias) in layer_weights(graph, constants).items():
        if name not in modules:
            raise ValueError(f"the graph has a layer {name!r} the torch model does not have")
        layer = modules[name]
        state[f"{name}.weight"] = constants.take(weight)
        folded = constants.take(bias) if bias else torch.zeros(state[f"{name}.weight"].shape[0])
        if name in after:  # the shift belongs to the BatchNorm; the layer's own bias is inside it
            bn_name = after[name]
            state |= {f"{bn_name}.{k}": v for k, v in identity_batchnorm(modules[bn_name], folded).items()}
            if layer.bias is not None:
                state[f"{name}.bias"] = torch.zeros_like(folded)
        elif layer.bias is not None:
            state[f"{name}.bias"] = folded
        elif bias:
            raise ValueError(f"the graph adds a bias after {name}, which has neither a bias nor a BatchNorm")
    return state


def constant_state(model: Embedder, graph: onnx.GraphProto, constants: GraphConstants) -> dict[str, torch.Tensor]:
    """The normalisation's mean and std, and the category classifier's weight with its scale checked."""
    mean, std = normalisation_inputs(graph, constants)
    state = {"mean": constants.take(mean).view(1, 3, 1, 1), "std": constants.take(std).view(1, 3, 1, 1)}
    if model.classifies:
        unit_weight_t, scale = classifier_inputs(graph, constants, "category_logits")
        graph_scale = float(constants.take(scale))
        if not np.isclose(graph_scale, model.shape_classifier.scale):
            raise ValueError(
                f"the graph's classifier scale {graph_scale} is not the model's {model.shape_classifier.scale}"
            )
        state["shape_classifier.weight"] = constants.take(unit_weight_t).T.contiguous()
    return state


def load_onnx_weights(model: Embedder, onnx_path: Path) -> None:
    """Set every parameter and buffer of `model` (built with the graph's config) from the graph.

    Raises listing what the graph did not give (but `NOT_EXPORTED`, which keep their values) and
    which of its weights went unused. The model computes in eval mode what the graph computes, up
    to the float16 storage; see `calibrate_batchnorm` before training it.
    """
    graph = onnx.load(onnx_path).graph
    constants = GraphConstants(graph)
    state = layer_state(model, graph, constants) | constant_state(model, graph, constants)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - set(NOT_EXPORTED))
    unknown = sorted(set(state) - set(expected))
    # The detail head (`training.embedder.detail`) is fitted onto the exported graph, not trained: not the model's.
    unused = [name for name in constants.unused_weights() if not name.startswith(DETAIL_PREFIX)]
    if missing or unknown or unused:
        raise ValueError(
            f"cannot map {onnx_path} onto the model: not in the graph {missing}, "
            f"not in the model {unknown}, graph weights left unused {unused}"
        )
    for name, value in state.items():
        if value.shape != expected[name].shape:
            raise ValueError(
                f"{name}: the graph has shape {tuple(value.shape)}, the model {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False)
    kept = [name for name in NOT_EXPORTED if name in expected]
    if kept:
        log.info("not in the graph, kept as they were: %s", ", ".join(kept))


def check_config_matches(config: EmbedderConfig, shipped: dict) -> None:
    """Raise naming every architecture field where `config` differs from the graph's sidecar config."""
    wanted = EmbedderConfig.from_dict({**shipped, "pretrained": False}).to_dict()
    built = config.to_dict()
    differences = [
        f"{key}: {built[key]!r} here, {wanted[key]!r} in the ONNX"
        for key in ARCHITECTURE_FIELDS
        if built[key] != wanted[key]
    ]
    if differences:
        raise ValueError("the ONNX model was built otherwise:\n  " + "\n  ".join(differences))


def sidecar_config(onnx_path: Path) -> dict:
    """The `EmbedderConfig` values in the `.json` sidecar of an exported embedder."""
    card = read_card(onnx_path.with_suffix(".json"))
    config = (card.model_extra or {}).get("config")
    if not config:
        raise ValueError(f"{onnx_path.with_suffix('.json')} has no 'config': it cannot say how to build the model")
    return config


def embedder_from_onnx(onnx_path: Path) -> Embedder:
    """The torch embedder of an exported graph, built from its sidecar's config (trunk frozen)."""
    config = EmbedderConfig.from_dict({**sidecar_config(onnx_path), "pretrained": False, "train_trunk": False})
    model = Embedder(config)
    load_onnx_weights(model, onnx_path)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Making folded BatchNorms trainable


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, forward: Callable[[object], object], batches: Iterable) -> list[str]:
    """Re-express each BatchNorm that `forward(batch)` reaches with its input's measured statistics.

    Eval mode computes the same function before and after (the shift absorbs the mean, the
    weight the spread), while train mode, which normalises by the batch's own statistics, now
    starts near it. Returns the names of the BatchNorms calibrated (those `forward` reached).
    """
    bns = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    sums: dict[str, list[torch.Tensor | int]] = {}

    def record(name: str):
        def hook(module, inputs, output):
            x = inputs[0].double()
            channels = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N * H * W)
            total = sums.setdefault(name, [0, 0.0, 0.0])
            total[0] += channels.shape[1]
            total[1] = total[1] + channels.sum(1)
            total[2] = total[2] + (channels**2).sum(1)

        return hook

    handles = [bn.register_forward_hook(record(name)) for name, bn in bns.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for name, (count, total, squares) in sums.items():
        bn, mean = bns[name], total / count
        var = (squares / count - mean**2).clamp_min(0)
        # Eval mode maps z to z * scale + shift; with running mean m and var v, the weight
        # scale * sqrt(v + eps) and the bias shift + scale * m give the same map.
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        shift = bn.bias.double() - bn.running_mean.double() * scale
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(scale * (var + bn.eps).sqrt())
        bn.bias.copy_(shift + scale * mean)
    return sorted(sums)


# ---------------------------------------------------------------------------------------------
# Parity check


@torch.no_grad()
def parity(model: Embedder, onnx_path: Path, crop_size: int, batches: int = 3, batch_size: int = 4) -> dict[str, float]:
    """Max absolute difference per output between torch (eval) and ONNX Runtime on random pixels."""
    session, wrapped = OnnxEmbedder(onnx_path), PixelInput(model).eval()
    rng = np.random.default_rng(0)
    errors = dict.fromkeys(output_names(model), 0.0)
    for _ in range(batches):
        pixels = rng.integers(0, 256, (batch_size, crop_size, crop_size, 3), dtype=np.uint8)
        expected, got = wrapped(torch.from_numpy(pixels)), session(pixels)
        for name, value in zip(errors, expected):
            errors[name] = max(errors[name], float(np.abs(got[name] - value.numpy()).max()))
    return errors


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path, help="an exported embedder; its config is read from the .json beside it")
    parser.add_argument("--batches", type=int, default=3, help="random uint8 batches compared")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE)
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    model = embedder_from_onnx(args.onnx)
    crop_size = read_card(args.onnx.with_suffix(".json")).preset.crop_size
    errors = parity(model, args.onnx, crop_size, args.batches)
    for name, error in errors.items():
        log.info("%s: max abs difference torch vs ONNX Runtime = %.2e", name, error)
    if max(errors.values()) > args.tolerance:
        raise SystemExit(f"parity failed: {errors} exceeds {args.tolerance}")
    log.info("parity within %.0e", args.tolerance)
    return errors


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(get_args_parser().parse_args())
