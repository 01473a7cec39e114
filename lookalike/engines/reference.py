"""torch, the reference engine: the exported ONNX graph executed op by op with torch's own kernels.

Why the graph and not the training code's `nn.Module`: the shipped models exist only as ONNX
files (the embedder's torch checkpoint is lost; `training.embedder.from_onnx` rebuilds it, but
the detector's GroupNorm weights lost their names in export), and the GPU machines that run
`scripts/gpu_check.py` have torch and onnx but not this project's training dependencies. Each
ONNX op maps to the torch call the training model makes (Conv -> `F.conv2d`, ...), so this is
torch eager on the same weights; tests/integration/test_engines.py checks it against the
training code's embedder (`embedder_from_onnx`) too.

Runs on any torch device in float32, float16 or bfloat16 (floating constants and the graph's
float casts follow `dtype`; outputs come back float32). Constant subgraphs (the float16 weight
storage's Casts) are evaluated once at load. Needs `torch` and `onnx` (the training extras).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.engines.base import Engine

log = logging.getLogger(__name__)

# ONNX TensorProto data types -> torch dtype names (resolved once torch is imported).
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 16: "bfloat16"}
_FLOAT_TYPES = {1, 10, 16}


class TorchGraph:
    """An ONNX graph as a torch program: `graph(pixels_tensor) -> {output name: tensor}`."""

    def __init__(self, model, device: str = "cpu", dtype: str = "float32", channels_last: bool | None = None):
        import torch
        from onnx import helper, numpy_helper

        self.torch, self.device, self.dtype = torch, torch.device(device), getattr(torch, dtype)
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        graph = model.graph
        self.input_names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        self.output_names = [o.name for o in graph.output]
        self.values: dict[str, object] = {}
        for tensor in graph.initializer:
            self.values[tensor.name] = self._constant(numpy_helper.to_array(tensor))
        self.nodes: list[tuple[Callable, list[str], list[str]]] = []
        for node in graph.node:
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self.values[node.output[0]] = self._constant(numpy_helper.to_array(attributes["value"]))
                continue
            op = self._op(node.op_type, attributes)
            inputs, outputs = list(node.input), list(node.output)
            if all(name == "" or name in self.values for name in inputs):  # constant: fold it now
                self._store(outputs, op(*[self.values.get(name) for name in inputs]))
            else:
                self.nodes.append((op, inputs, outputs))
        if self.channels_last:
            for name, value in self.values.items():
                if value.is_floating_point() and value.dim() == 4:
                    self.values[name] = value.contiguous(memory_format=torch.channels_last)

    def _constant(self, array: np.ndarray):
        tensor = self.torch.from_numpy(np.array(array))
        if tensor.is_floating_point():
            return tensor.to(self.device, self.dtype)
        # Integer constants are shapes, axes and indices: they stay on the CPU with the Shape ops.
        return tensor

    def __call__(self, *inputs) -> dict[str, object]:
        values = dict(self.values)
        values.update(zip(self.input_names, inputs))
        for op, names, outputs in self.nodes:
            result = op(*[values[name] if name else None for name in names])
            if len(outputs) == 1:
                values[outputs[0]] = result
            else:
                values.update(zip(outputs, result))
        return {name: values[name] for name in self.output_names}

    def _store(self, names: list[str], result) -> None:
        """Keep a folded node's results as constants."""
        if len(names) == 1:
            self.values[names[0]] = result
        else:
            self.values.update(zip(names, result))

    # -----------------------------------------------------------------------------------------
    # ONNX ops (opset 18) as torch calls

    def _op(self, op_type: str, a: dict) -> Callable:
        torch, F = self.torch, self.torch.nn.functional
        if op_type in _ELEMENTWISE:
            return _ELEMENTWISE[op_type](torch)
        if op_type == "Cast":
            to = a["to"]
            if to in _FLOAT_TYPES:  # float casts follow the engine's compute dtype
                return lambda x: x.to(self.device, self.dtype)
            dtype = getattr(torch, _ONNX_DTYPES[to])
            return lambda x: x.to(dtype)
        if op_type == "Conv":
            return self._conv(a)
        if op_type == "Clip":
            return lambda x, low=None, high=None: torch.clamp(
                x, None if low is None else float(low), None if high is None else float(high)
            )
        if op_type == "AveragePool":
            if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or a.get("auto_pad", b"NOTSET") != b"NOTSET":
                raise NotImplementedError(f"AveragePool with {a}")
            return lambda x: F.avg_pool2d(x, a["kernel_shape"], a.get("strides", a["kernel_shape"]))
        if op_type == "Gemm":
            alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
            trans_a, trans_b = a.get("transA", 0), a.get("transB", 0)

            def gemm(x, w, c=None):
                y = (x.T if trans_a else x) @ (w.T if trans_b else w)
                y = y * alpha if alpha != 1.0 else y
                return y if c is None else y + (c * beta if beta != 1.0 else c)

            return gemm
        if op_type == "MatMul":
            return torch.matmul
        if op_type in ("ReduceMean", "ReduceSum", "ReduceL2"):
            return self._reduce(op_type, a)
        if op_type == "Softmax":
            return lambda x: torch.softmax(x, a.get("axis", -1))
        if op_type == "Concat":
            return lambda *xs: torch.cat(xs, a["axis"])
        if op_type == "Transpose":
            return lambda x: x.permute(*a["perm"])
        if op_type == "Reshape":
            allow_zero = a.get("allowzero", 0)

            def reshape(x, shape):
                sizes = [int(s) for s in shape.tolist()]
                if not allow_zero:
                    sizes = [x.shape[i] if s == 0 else s for i, s in enumerate(sizes)]
                return x.reshape(sizes)

            return reshape
        if op_type == "Unsqueeze":

            def unsqueeze(x, axes):
                for axis in sorted(int(v) % (x.dim() + len(axes)) for v in axes.tolist()):
                    x = x.unsqueeze(axis)
                return x

            return unsqueeze
        if op_type == "Expand":
            return lambda x, shape: x.expand(torch.broadcast_shapes(x.shape, tuple(int(s) for s in shape.tolist())))
        if op_type == "Shape":
            start, end = a.get("start", 0), a.get("end")
            return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64)
        if op_type == "Gather":
            axis = a.get("axis", 0)

            def gather(x, indices):
                flat = indices.reshape(-1).to(x.device) % x.shape[axis]
                picked = torch.index_select(x, axis, flat)
                return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))

            return gather
        if op_type == "Slice":

            def slice_(x, starts, ends, axes=None, steps=None):
                axes = range(len(starts)) if axes is None else axes.tolist()
                steps = [1] * len(starts) if steps is None else steps.tolist()
                index = [slice(None)] * x.dim()
                for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes, steps):
                    if step != 1:
                        raise NotImplementedError("Slice with a step other than 1")
                    index[axis] = slice(start, end)
                return x[tuple(index)]

            return slice_
        if op_type == "InstanceNormalization":
            return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=a.get("epsilon", 1e-5))
        if op_type == "Resize":
            return self._resize(a)
        raise NotImplementedError(f"ONNX op {op_type} has no torch mapping here")

    def _conv(self, a: dict) -> Callable:
        F = self.torch.nn.functional
        if a.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise NotImplementedError(f"Conv with auto_pad {a['auto_pad']}")
        rank = len(a["kernel_shape"])
        if rank != 2:
            raise NotImplementedError(f"Conv over {rank} spatial axes (only 2-d here)")
        pads = a.get("pads", [0] * 2 * rank)
        begin, end = pads[:rank], pads[rank:]
        group, strides, dilations = a.get("group", 1), a.get("strides", [1] * rank), a.get("dilations", [1] * rank)
        if begin == end:
            return lambda x, w, b=None: F.conv2d(x, w, b, strides, begin, dilations, group)
        # TF "same" padding (more after than before): pad explicitly, last axis first as F.pad wants.
        explicit = [p for axis in reversed(range(rank)) for p in (begin[axis], end[axis])]
        return lambda x, w, b=None: F.conv2d(F.pad(x, explicit), w, b, strides, 0, dilations, group)

    def _reduce(self, op_type: str, a: dict) -> Callable:
        torch = self.torch
        keep = bool(a.get("keepdims", 1))

        def reduce(x, axes=None):
            if axes is None or axes.numel() == 0:
                if a.get("noop_with_empty_axes", 0):
                    return x
                dims = list(range(x.dim()))
            else:
                dims = [int(v) for v in axes.tolist()]
            if op_type == "ReduceMean":
                return x.mean(dims, keepdim=keep)
            if op_type == "ReduceSum":
                return x.sum(dims, keepdim=keep)
            return torch.linalg.vector_norm(x, 2, dims, keepdim=keep)

        return reduce

    def _resize(self, a: dict) -> Callable:
        F = self.torch.nn.functional
        if (
            a.get("mode", b"nearest") != b"nearest"
            or a.get("coordinate_transformation_mode", b"half_pixel") != b"asymmetric"
            or a.get("nearest_mode", b"round_prefer_floor") != b"floor"
        ):
            raise NotImplementedError(f"Resize with {a} (only torch's nearest: asymmetric, floor)")

        def resize(x, roi=None, scales=None, sizes=None):
            if sizes is not None and sizes.numel():
                return F.interpolate(x, size=[int(s) for s in sizes.tolist()[2:]], mode="nearest")
            return F.interpolate(x, scale_factor=[float(s) for s in scales.tolist()[2:]], mode="nearest")

        return resize


_ELEMENTWISE = {
    "Add": lambda torch: torch.add,
    "Sub": lambda torch: torch.sub,
    "Mul": lambda torch: torch.mul,
    "Div": lambda torch: torch.div,
    "Relu": lambda torch: torch.relu,
    "Sigmoid": lambda torch: torch.sigmoid,
    "Sqrt": lambda torch: torch.sqrt,
    "Pow": lambda torch: torch.pow,
    # ONNX's Max takes any number of inputs (the detail head's uses two).
    "Max": lambda torch: lambda first, *rest: functools.reduce(torch.maximum, rest, first),
    "Identity": lambda torch: lambda x: x,
}


class TorchEngine(Engine):
    """The reference engine: an exported model's graph run by torch (see the module docstring)."""

    backend = "torch"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        threads: int | None = None,
        channels_last: bool | None = None,
    ):
        import onnx
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.path, self.device, self.dtype = Path(path), device, dtype
        model = onnx.load(str(path))
        self.graph = TorchGraph(model, device, dtype, channels_last)
        (self.input_name,) = self.graph.input_names
        self.output_names = self.graph.output_names
        self.item_shapes = {
            o.name: tuple(d.dim_value if d.HasField("dim_value") else 0 for d in o.type.tensor_type.shape.dim[1:])
            for o in model.graph.output
        }
        log.info("loaded %s on torch %s %s", path, device, dtype)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.graph.torch
        with torch.inference_mode():
            outputs = self.graph(torch.from_numpy(pixels).to(self.graph.device))
            return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    def synchronize(self) -> None:
        """Wait for queued GPU work (for timing)."""
        if self.graph.device.type == "cuda":
            self.graph.torch.cuda.synchronize()
