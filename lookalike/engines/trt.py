"""TensorRT: engines built from the shipped ONNX files on the serving GPU, cached on disk.

An engine is only valid for the GPU model and TensorRT version that built it, so it is built on
the serving machine (`python -m lookalike.engines build`, or at a service's start when the cache
lacks it) and cached under `engine_cache_dir` with a name made of the ONNX file's sha256, the
GPU's name, TensorRT's version, the precision and the batch profile (`engine_file_name`); the
builder's timing cache is kept beside it per GPU and TensorRT version, so a rebuild is fast.

Precision. TensorRT 11 removed the weak-typing flags (`BuilderFlag.FP16`, `INT8`): a network is
strongly typed and takes its precision from the ONNX graph. So the graph is prepared here
(`prepare_for_tensorrt`): the uint8 input is cast to float first (TensorRT takes uint8 only into a
Cast), and for fp16 everything that feeds a convolution is converted to float16 while the cheap
tails (the embedder's pooling heads and normalisation, the detector's box decoding, whose pixel
coordinates float16 would round to 0.25-0.5 px) stay float32; inputs and outputs keep their types.
int8 takes a Q/DQ graph (`python -m lookalike.engines quantize --symmetric`): explicit quantization.
The same strongly typed path runs on TensorRT 10.x (>= 10.0 has the STRONGLY_TYPED flag).

Batches. A graph with a dynamic batch gets one optimisation profile (min, opt, max batch, the
`trt_batch_profile` setting); a static-shape graph takes exactly its batch. Either way, calls with
more rows run in chunks and rows below the minimum are padded, the padding dropped from the
outputs (`lookalike.engines.base.run_in_batches`).

Device memory and copies go through `cuda-python` (`cuda.bindings.runtime`), a small wheel, so
serving needs no torch. Needs: tensorrt, cuda-python, onnx and an NVIDIA GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike.engines.base import Engine, file_sha256, run_in_batches

log = logging.getLogger(__name__)
Precision = Literal["fp16", "fp32", "int8"]
WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True, kw_only=True)
class TrtOptions:
    cache_dir: Path = Path("var/engines")
    precision: Precision = "fp16"
    batch_profile: tuple[int, int, int] = (1, 32, 64)  # min, opt, max
    workspace_bytes: int = WORKSPACE_BYTES
    device: int = 0

    def __post_init__(self) -> None:
        low, opt, high = self.batch_profile
        if not 1 <= low <= opt <= high:
            raise ValueError(f"batch profile must be 1 <= min <= opt <= max, got {self.batch_profile}")

    @classmethod
    def from_settings(cls) -> TrtOptions:
        from lookalike.settings import get_settings

        settings = get_settings()
        return cls(
            cache_dir=settings.engine_cache_dir,
            precision=settings.trt_precision,
            batch_profile=tuple(settings.trt_batch_profile),
        )


# ---------------------------------------------------------------------------------------------
# Where TensorRT can run, and the cache key (pure: tested without TensorRT)


def tensorrt_unavailable() -> str | None:
    """Why the TensorRT backend cannot run here, or None when it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install tensorrt on a CUDA machine)"
    try:
        _cudart()
    except ImportError:
        return "cuda-python is not installed (pip install cuda-python): it holds TensorRT's device buffers"
    if importlib.util.find_spec("onnx") is None:
        return "onnx is not installed: the graph is prepared for TensorRT with it"
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError, RuntimeError) as error:  # a broken install: missing libnvinfer, wrong CUDA
        return f"tensorrt does not import: {error}"
    count, error = cuda_device_count()
    if not count:
        return f"no CUDA GPU ({error})"
    return None


def _cudart():
    """cuda-python's CUDA runtime module (`cuda.bindings.runtime`; `cuda.cudart` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def cuda_device_count() -> tuple[int, str]:
    """(number of CUDA devices, the CUDA runtime's message when there are none)."""
    cudart = _cudart()

    status, count = cudart.cudaGetDeviceCount()
    if status != cudart.cudaError_t.cudaSuccess:
        return 0, cudart.cudaGetErrorString(status)[1].decode()
    return count, "" if count else "cudaGetDeviceCount found none"


def gpu_name(device: int = 0) -> str:
    cudart = _cudart()

    properties = _check(cudart.cudaGetDeviceProperties(device))
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).split("\x00")[0].strip()


def slug(text: str) -> str:
    """`NVIDIA H200 (SXM)` -> `nvidia-h200-sxm`: safe in a file name."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def engine_file_name(
    stem: str, onnx_sha256: str, gpu: str, trt_version: str, precision: str, batch_profile: tuple[int, int, int]
) -> str:
    """The cache file of an engine: what built it, readable, and different whenever any of it differs."""
    if not re.fullmatch(r"[0-9a-f]{64}", onnx_sha256):
        raise ValueError(f"not a sha256 hex digest: {onnx_sha256!r}")
    low, opt, high = batch_profile
    return f"{slug(stem)}-{onnx_sha256[:16]}-{slug(gpu)}-trt{slug(trt_version)}-{precision}-b{low}-{opt}-{high}.engine"


def timing_cache_name(gpu: str, trt_version: str) -> str:
    """The builder's timing cache: shared by every model built on this GPU with this TensorRT."""
    return f"timing-{slug(gpu)}-trt{slug(trt_version)}.cache"


# ---------------------------------------------------------------------------------------------
# The graph TensorRT builds from (pure ONNX: tested with ONNX Runtime and torch here)


def cast_input_first(model) -> None:
    """Make a uint8 graph input feed one Cast to float32, and its other consumers read that instead.

    TensorRT takes uint8 I/O only straight into a Cast; the exported graphs Transpose (and
    Shape) the pixels first. Casting first computes the same values.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        name, cast_name = graph_input.name, f"{graph_input.name}_as_float"
        if any(node.output[0] == cast_name for node in graph.node):
            continue  # done already
        for node in graph.node:
            for i, value in enumerate(node.input):
                if value == name:
                    node.input[i] = cast_name
        graph.node.insert(0, helper.make_node("Cast", [name], [cast_name], to=TensorProto.FLOAT, name=cast_name))
    # Values that were uint8 because they came from the pixels (the Transpose's output) are float now.
    for info in [v for v in graph.value_info if v.type.tensor_type.elem_type == TensorProto.UINT8]:
        graph.value_info.remove(info)


def convolution_feeders(model) -> set[str]:
    """Names of the nodes whose outputs reach a Conv (the Convs included): the part worth float16."""
    producers = {out: node for node in model.graph.node for out in node.output}
    feeders: set[str] = set()
    stack = [node for node in model.graph.node if node.op_type == "Conv"]
    while stack:
        node = stack.pop()
        if node.name in feeders:
            continue
        feeders.add(node.name)
        stack += [producers[name] for name in node.input if name in producers]
    return feeders


def name_nodes(model) -> None:
    """Give every node a unique name (the float16 converter's block list is by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def to_float16(model):
    """The graph with everything feeding a convolution in float16; tails, inputs and outputs as they were."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    name_nodes(model)
    feeders = convolution_feeders(model)
    tails = [node.name for node in model.graph.node if node.name not in feeders]
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=tails)
    sort_topologically(converted)  # the converter appends the Casts it inserts at the end
    del converted.graph.value_info[:]  # some keep their float32 types; TensorRT infers its own
    return converted


def sort_topologically(model) -> None:
    """Order the graph's nodes so each comes after the producers of its inputs (stable otherwise)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at {waiting[0].name}")
        pending = waiting
    nodes = [type(node)() for node in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def prepare_for_tensorrt(model, precision: Precision):
    """The ONNX graph TensorRT builds from, for `precision` (see the module docstring)."""
    cast_input_first(model)
    if precision == "fp16":
        return to_float16(model)
    if precision == "int8" and not any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        raise ValueError(
            "int8 needs a Q/DQ graph (explicit quantization): "
            "python -m lookalike.engines quantize MODEL.onnx MODEL-int8.onnx --symmetric"
        )
    return model


# ---------------------------------------------------------------------------------------------
# Building and running engines (need TensorRT and a GPU)


def _check(result):
    """A cuda-python call's (status, *values) -> its value(s); raises on an error status."""
    cudart = _cudart()

    status, *values = result
    if status != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA: {cudart.cudaGetErrorString(status)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values)


_LOGGER = None


def _trt_logger():
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def build_engine(onnx_path: str | Path, options: TrtOptions) -> Path:
    """The cached engine of `onnx_path` for this GPU, TensorRT and `options`; built when missing."""
    import onnx
    import tensorrt as trt

    onnx_path, cache_dir = Path(onnx_path), Path(options.cache_dir)
    gpu = gpu_name(options.device)
    name = engine_file_name(
        onnx_path.stem, file_sha256(onnx_path), gpu, trt.__version__, options.precision, options.batch_profile
    )
    path = cache_dir / name
    if path.exists():
        log.info("TensorRT engine from the cache: %s", path)
        return path
    log.info("building a TensorRT %s engine for %s on %s (minutes, once)", options.precision, onnx_path, gpu)
    model = prepare_for_tensorrt(onnx.load(str(onnx_path)), options.precision)
    logger = _trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    pixels = network.get_input(0)
    if pixels.shape[0] == -1:  # dynamic batch: one optimisation profile
        item = tuple(pixels.shape)[1:]
        low, opt, high = options.batch_profile
        profile = builder.create_optimization_profile()
        profile.set_shape(pixels.name, (low, *item), (opt, *item), (high, *item))
        config.add_optimization_profile(profile)
    timing_path = cache_dir / timing_cache_name(gpu, trt.__version__)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine for {onnx_path} (see its log above)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, memoryview(plan))
    _write_atomically(timing_path, memoryview(config.get_timing_cache().serialize()))
    about = {"onnx": str(onnx_path), "gpu": gpu, "tensorrt": trt.__version__, "options": repr(options)}
    path.with_suffix(".json").write_text(json.dumps(about, indent=2) + "\n")
    log.info("built %s", path)
    return path


def _write_atomically(path: Path, data) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


@dataclass
class _Buffer:
    pointer: int
    nbytes: int
    shape: tuple[int, ...] = field(default=())
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))


class TensorRTEngine(Engine):
    """An exported model run by a TensorRT engine built from it (see the module docstring)."""

    backend = "tensorrt"

    def __init__(self, path: str | Path, options: TrtOptions | None = None):
        import tensorrt as trt

        cudart = _cudart()

        self.path, self.options = Path(path), options or TrtOptions.from_settings()
        _check(cudart.cudaSetDevice(self.options.device))
        self.engine_path = build_engine(self.path, self.options)
        self.runtime = trt.Runtime(_trt_logger())
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {self.engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        (self.input_name,) = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n != self.input_name]
        input_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if input_shape[0] == -1:
            low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(low[0]), int(high[0])
        else:  # a static-shape graph: every call is padded to its batch
            self.min_batch = self.max_batch = int(input_shape[0])
        self.item_shapes = {n: tuple(max(int(d), 0) for d in self.engine.get_tensor_shape(n)[1:]) for n in names}
        self.buffers: dict[str, _Buffer] = {}
        for name in names:
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            max_shape = (self.max_batch, *self.item_shapes[name])
            if name != self.input_name and 0 in max_shape[1:]:
                raise ValueError(f"{path}: output {name} has a data-dependent shape {max_shape}")
            nbytes = int(np.prod(max_shape)) * dtype.itemsize
            self.buffers[name] = _Buffer(_check(cudart.cudaMalloc(nbytes)), nbytes, max_shape, dtype)
            self.context.set_tensor_address(name, int(self.buffers[name].pointer))
        self.stream = _check(cudart.cudaStreamCreate())
        self._lock = threading.Lock()
        log.info("loaded %s on TensorRT %s (batch %d..%d)", self.engine_path.name, trt.__version__, *self.batch_range)

    @property
    def batch_range(self) -> tuple[int, int]:
        return self.min_batch, self.max_batch

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return run_in_batches(self._run_batch, pixels, self.min_batch, self.max_batch)

    def _run_batch(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        cudart = _cudart()

        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        pixels = np.ascontiguousarray(pixels, self.buffers[self.input_name].dtype)
        with self._lock:
            self.context.set_input_shape(self.input_name, pixels.shape)
            source = self.buffers[self.input_name]
            _check(cudart.cudaMemcpyAsync(source.pointer, pixels.ctypes.data, pixels.nbytes, to_device, self.stream))
            if not self.context.execute_async_v3(int(self.stream)):
                raise RuntimeError(f"TensorRT failed to run {self.engine_path.name}")
            outputs = {}
            for name in self.output_names:
                buffer = self.buffers[name]
                host = np.empty(tuple(self.context.get_tensor_shape(name)), buffer.dtype)
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, buffer.pointer, host.nbytes, to_host, self.stream))
                outputs[name] = host
            _check(cudart.cudaStreamSynchronize(self.stream))
        return {name: value.astype(np.float32, copy=False) for name, value in outputs.items()}

    def synchronize(self) -> None:
        """Every run already waits for its copies back; kept for the benchmark's interface."""

    def close(self) -> None:
        cudart = _cudart()

        for buffer in self.buffers.values():
            cudart.cudaFree(buffer.pointer)
        self.buffers.clear()
        cudart.cudaStreamDestroy(self.stream)

    def __del__(self) -> None:
        if getattr(self, "buffers", None):
            with contextlib.suppress(ImportError, RuntimeError, AttributeError, TypeError):  # at interpreter exit
                self.close()
