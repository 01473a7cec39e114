"""The TensorRT backend's own code run without TensorRT or a GPU: against stand-ins for `tensorrt` and
cuda-python that "build" an engine by keeping the prepared ONNX graph, "run" it with ONNX Runtime and keep
"device" buffers in host memory.

What this proves: the build-cache-load-run path of `lookalike.engines.trt` executes (cache file names,
the timing cache, one optimisation profile for a dynamic batch, buffers sized for the largest batch,
chunks and padding, outputs copied back and trimmed) and the float16 graph it builds from gives the
float32 graph's answers. What it cannot prove: that the real TensorRT accepts the graph and calls
behave as the stand-ins do; `test_engines.py`'s `tensorrt` tests do that on a GPU machine.
"""

from __future__ import annotations

import ctypes
import json
import types

import numpy as np
import pytest

from lookalike.engines import OnnxModel, OrtOptions
from lookalike.engines import trt as trt_backend
from tests.conftest import SHIPPED_EMBEDDER

pytest.importorskip("onnx", reason="the graph is prepared for TensorRT with onnx: pip install -e '.[train]'")
EMBEDDER = SHIPPED_EMBEDDER.with_suffix(".onnx")
if not EMBEDDER.is_file():
    pytest.skip(f"no shipped embedder at {EMBEDDER}", allow_module_level=True)

SUCCESS = 0


def fake_cudart() -> types.SimpleNamespace:
    """cuda-python's runtime calls used by the backend, on host memory."""
    memory: dict[int, ctypes.Array] = {}

    def malloc(nbytes):
        buffer = ctypes.create_string_buffer(nbytes)
        memory[ctypes.addressof(buffer)] = buffer
        return SUCCESS, ctypes.addressof(buffer)

    def copy(dst, src, count, kind, stream):
        ctypes.memmove(dst, src, count)
        return (SUCCESS,)

    return types.SimpleNamespace(
        cudaError_t=types.SimpleNamespace(cudaSuccess=SUCCESS),
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
        cudaGetErrorString=lambda status: (SUCCESS, b"stand-in error"),
        cudaGetDeviceCount=lambda: (SUCCESS, 1),
        cudaGetDeviceProperties=lambda device: (SUCCESS, types.SimpleNamespace(name=b"Stand-in GPU 80GB\x00\x00")),
        cudaSetDevice=lambda device: (SUCCESS,),
        cudaMalloc=malloc,
        cudaFree=lambda pointer: (SUCCESS, memory.pop(pointer, None))[:1],
        cudaMemcpyAsync=copy,
        cudaStreamCreate=lambda: (SUCCESS, 7),
        cudaStreamSynchronize=lambda stream: (SUCCESS,),
        cudaStreamDestroy=lambda stream: (SUCCESS,),
        memory=memory,
    )


def fake_tensorrt(builds: list) -> types.ModuleType:
    """The TensorRT Python API calls the backend makes; the "plan" is the prepared graph plus its profile."""
    import onnx
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dtype: dtype

    class Input:
        def __init__(self, value):
            dims = value.type.tensor_type.shape.dim
            self.name = value.name
            self.shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)

    class Network:
        def __init__(self, flags):
            assert flags == 1 << 5, "strongly typed"
            self.model = None

        def get_input(self, index):
            return Input(self.model.graph.input[index])

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, data):
            self.network.model = onnx.ModelProto.FromString(data)
            return True

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data) or b"timings"

        def serialize(self):
            return self.data

    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = {"name": name, "shapes": [list(low), list(opt), list(high)]}

    class Config:
        profile = None

        def set_memory_pool_limit(self, pool, size):
            assert size > 0

        def add_optimization_profile(self, profile):
            self.profile = profile

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing = cache

        def get_timing_cache(self):
            return self.timing

    class Builder:
        def __init__(self, logger):
            pass

        create_network = staticmethod(Network)
        create_builder_config = staticmethod(Config)
        create_optimization_profile = staticmethod(Profile)

        def build_serialized_network(self, network, config):
            builds.append(network.model)
            profile = config.profile.shapes if config.profile else None
            header = json.dumps({"profile": profile}).encode()
            return len(header).to_bytes(4, "little") + header + network.model.SerializeToString()

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.batch = engine, {}, None

        def set_input_shape(self, name, shape):
            low, high = self.engine.batch_limits
            assert low <= shape[0] <= high, f"batch {shape[0]} outside the engine's {low}..{high}"
            self.batch = shape[0]

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def get_tensor_shape(self, name):
            return (self.batch, *self.engine.item_shapes[name])

        def execute_async_v3(self, stream):
            name = self.engine.input_name
            size = self.batch * int(np.prod(self.engine.item_shapes[name]))
            pixels = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(self.addresses[name]))
            pixels = pixels.reshape(self.batch, *self.engine.item_shapes[name])
            outputs = self.engine.session.run(None, {name: pixels})
            for output, value in zip(self.engine.output_names, outputs):
                value = np.ascontiguousarray(value, np.float32)
                ctypes.memmove(self.addresses[output], value.ctypes.data, value.nbytes)
            return True

    class Engine:
        def __init__(self, plan):
            length = int.from_bytes(plan[:4], "little")
            header = json.loads(plan[4 : 4 + length])
            model = onnx.ModelProto.FromString(plan[4 + length :])
            self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            (graph_input,) = self.session.get_inputs()
            self.input_name = graph_input.name
            self.output_names = [o.name for o in self.session.get_outputs()]
            self.names = [self.input_name, *self.output_names]
            self.static = isinstance(graph_input.shape[0], int)
            self.profile = header["profile"]
            self.batch_limits = (
                (graph_input.shape[0],) * 2
                if self.static
                else (self.profile["shapes"][0][0], self.profile["shapes"][2][0])
            )
            self.item_shapes = {
                graph_input.name: tuple(graph_input.shape[1:]),
                **{
                    o.name: tuple(d if isinstance(d, int) else 0 for d in o.shape[1:])
                    for o in self.session.get_outputs()
                },
            }
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, index):
            return self.names[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self.input_name else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return (self.batch_limits[0] if self.static else -1, *self.item_shapes[name])

        def get_tensor_profile_shape(self, name, profile):
            return self.profile["shapes"]

        def get_tensor_dtype(self, name):
            return np.uint8 if name == self.input_name else np.float32

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine(plan)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt


@pytest.fixture
def stand_ins(monkeypatch):
    """`tensorrt` and cuda-python replaced by the stand-ins; returns the list of graphs "built"."""
    builds: list = []
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt(builds))
    cudart = fake_cudart()
    monkeypatch.setattr(trt_backend, "_cudart", lambda: cudart)
    monkeypatch.setattr(trt_backend, "_LOGGER", None)
    return builds


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def _min_cosine(got, expected) -> float:
    return min(float(np.min(np.sum(got[n] * expected[n], 1))) for n in ("shape", "color"))


def test_engine_is_built_once_cached_and_run_in_chunks(stand_ins, tmp_path):
    options = trt_backend.TrtOptions(cache_dir=tmp_path, precision="fp16", batch_profile=(2, 4, 4))
    engine = trt_backend.TensorRTEngine(EMBEDDER, options)
    sha = trt_backend.file_sha256(EMBEDDER)
    assert engine.engine_path.name == f"embedder-{sha[:16]}-stand-in-gpu-80gb-trt10.99.0-fp16-b2-4-4.engine"
    assert (tmp_path / "timing-stand-in-gpu-80gb-trt10.99.0.cache").read_bytes() == b"timings"
    assert engine.batch_range == (2, 4)
    reference = OnnxModel(EMBEDDER, options=OrtOptions())
    for n in (1, 3, 9):  # 1 is padded to the minimum 2; 9 runs as 4 + 4 + 1 (padded to 2)
        pixels = _pixels(n, seed=n)
        got, expected = engine(pixels), reference(pixels)
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
        assert _min_cosine(got, expected) >= 0.99
    assert engine(_pixels(0))["shape"].shape == (0, 128)
    # a second engine for the same graph, GPU, TensorRT and options comes from the cache
    again = trt_backend.TensorRTEngine(EMBEDDER, options)
    assert again.engine_path == engine.engine_path and len(stand_ins) == 1
    # the graph built from takes float16 weights and casts the uint8 pixels first
    (built,) = stand_ins
    assert built.graph.node[0].op_type == "Cast" and built.graph.node[0].input[0] == "pixels"
    engine.close()


def test_static_shape_graphs_are_padded_to_their_batch(stand_ins, tmp_path):
    import onnx

    model = onnx.load(str(EMBEDDER))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 4
    static = tmp_path / "embedder-static4.onnx"
    onnx.save(model, static)
    engine = trt_backend.TensorRTEngine(static, trt_backend.TrtOptions(cache_dir=tmp_path, precision="fp32"))
    assert engine.batch_range == (4, 4)
    reference = OnnxModel(EMBEDDER, options=OrtOptions())
    pixels = _pixels(6)
    got, expected = engine(pixels), reference(pixels)
    assert got["shape"].shape == (6, 128)
    np.testing.assert_allclose(got["shape"], expected["shape"], atol=1e-5)


def test_int8_precision_asks_for_a_quantized_graph(stand_ins, tmp_path):
    with pytest.raises(ValueError, match="quantize"):
        trt_backend.TensorRTEngine(EMBEDDER, trt_backend.TrtOptions(cache_dir=tmp_path, precision="int8"))
