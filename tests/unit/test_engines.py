"""The engines' pure parts: batch planning and padding, the TensorRT cache key, the backend choice,
the graph preparation for TensorRT, and the torch reference's ops against ONNX Runtime on small graphs."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike import engines
from lookalike.engines import Engine, pad_rows, plan_batches, run_in_batches
from lookalike.engines.trt import engine_file_name, slug, tensorrt_unavailable, timing_cache_name
from lookalike.settings import get_settings

SHA = "ab" * 32


# ---------------------------------------------------------------------------------------------
# Batches


@pytest.mark.parametrize(
    ("n", "low", "high", "expected"),
    [
        (0, 1, 64, []),
        (5, 1, 64, [(0, 5, 5)]),
        (5, 8, 8, [(0, 5, 8)]),  # static shape: the one short run is padded
        (20, 8, 8, [(0, 8, 8), (8, 16, 8), (16, 20, 8)]),
        (2, 4, 16, [(0, 2, 4)]),  # below the profile's minimum: padded up to it
        (70, 1, 32, [(0, 32, 32), (32, 64, 32), (64, 70, 6)]),
    ],
)
def test_plan_batches(n, low, high, expected):
    assert plan_batches(n, low, high) == expected


@pytest.mark.parametrize(("low", "high"), [(0, 4), (5, 4)])
def test_plan_batches_refuses_impossible_ranges(low, high):
    with pytest.raises(ValueError):
        plan_batches(3, low, high)


def test_pad_rows_appends_zero_rows_only_when_short():
    rows = np.full((3, 2, 2, 3), 7, np.uint8)
    padded = pad_rows(rows, 5)
    assert padded.shape == (5, 2, 2, 3) and (padded[:3] == 7).all() and (padded[3:] == 0).all()
    assert pad_rows(rows, 3) is rows
    with pytest.raises(ValueError):
        pad_rows(rows, 2)


@pytest.mark.parametrize(("n", "low", "high"), [(1, 4, 4), (9, 4, 4), (9, 1, 4), (3, 2, 8), (64, 1, 64)])
def test_run_in_batches_sends_allowed_sizes_and_drops_the_padding(n, low, high):
    seen = []

    def run(batch):
        seen.append(len(batch))
        return {"ids": batch[:, 0, 0, 0].astype(np.float32), "twice": batch[:, 0, 0, :1].astype(np.float32) * 2}

    pixels = np.zeros((n, 1, 1, 3), np.uint8)
    pixels[:, 0, 0, 0] = np.arange(1, n + 1)
    outputs = run_in_batches(run, pixels, low, high)
    assert all(low <= size <= high for size in seen)
    assert outputs["ids"].tolist() == list(range(1, n + 1))
    assert outputs["twice"].shape == (n, 1)


class _Echo(Engine):
    backend = "echo"

    def __init__(self):
        self.path, self.input_name, self.output_names = "echo.onnx", "pixels", ["mean"]
        self.item_shapes = {"mean": (4,)}

    def run(self, pixels):
        return {"mean": np.repeat(pixels.mean(axis=(1, 2, 3))[:, None], 4, 1).astype(np.float32)}


def test_engine_answers_an_empty_batch_without_running():
    outputs = _Echo()(np.zeros((0, 8, 8, 3), np.uint8))
    assert outputs["mean"].shape == (0, 4) and outputs["mean"].dtype == np.float32
    assert _Echo().dim("mean") == 4


def test_engine_refuses_pixels_that_are_not_nhwc_rgb():
    with pytest.raises(ValueError, match="n, h, w, 3"):
        _Echo()(np.zeros((8, 8, 3), np.uint8))


# ---------------------------------------------------------------------------------------------
# The TensorRT engine cache


def test_engine_file_name_names_what_built_it():
    name = engine_file_name("embedder", SHA, "NVIDIA H200", "11.4.0.106", "fp16", (1, 32, 64))
    assert name == f"embedder-{SHA[:16]}-nvidia-h200-trt11.4.0.106-fp16-b1-32-64.engine"


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"gpu": "NVIDIA A100-SXM4-80GB"},
        {"trt_version": "10.16.1.11"},
        {"precision": "int8"},
        {"batch_profile": (1, 16, 64)},
        {"stem": "detector"},
    ],
)
def test_engine_file_name_changes_with_each_part(change):
    parts = {
        "stem": "embedder",
        "onnx_sha256": SHA,
        "gpu": "NVIDIA H200",
        "trt_version": "11.4.0.106",
        "precision": "fp16",
        "batch_profile": (1, 32, 64),
    }
    assert engine_file_name(**parts) != engine_file_name(**{**parts, **change})


def test_engine_file_name_wants_a_sha256():
    with pytest.raises(ValueError, match="sha256"):
        engine_file_name("embedder", "abc", "NVIDIA H200", "11.4", "fp16", (1, 32, 64))


def test_cache_names_are_file_safe():
    assert slug("NVIDIA H100 80GB HBM3 (MIG 1g.10gb)") == "nvidia-h100-80gb-hbm3-mig-1g.10gb"
    assert timing_cache_name("NVIDIA H200", "11.4.0") == "timing-nvidia-h200-trt11.4.0.cache"


def test_trt_options_refuse_a_disordered_profile():
    from lookalike.engines.trt import TrtOptions

    with pytest.raises(ValueError):
        TrtOptions(batch_profile=(8, 4, 64))


# ---------------------------------------------------------------------------------------------
# Choosing the backend


@pytest.fixture
def settings_env(monkeypatch):
    """Set LOOKALIKE_* variables for `get_settings()` in one test; the cached settings are reset around it."""
    unavailable = engines.unavailable  # a test may replace it with a stand-in
    get_settings.cache_clear()
    unavailable.cache_clear()
    yield monkeypatch.setenv
    get_settings.cache_clear()
    unavailable.cache_clear()


def test_tensorrt_says_why_it_cannot_run_here():
    reason = tensorrt_unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present: nothing to explain")
    assert any(word in reason for word in ("tensorrt", "cuda", "GPU", "onnx"))


def test_auto_takes_tensorrt_where_it_runs_else_onnxruntime(settings_env, monkeypatch):
    settings_env("LOOKALIKE_ENGINE", "auto")
    monkeypatch.setattr(engines, "unavailable", lambda backend: "no GPU" if backend == "tensorrt" else None)
    assert engines.choose_backend() == "onnxruntime"
    monkeypatch.setattr(engines, "unavailable", lambda backend: None)
    assert engines.choose_backend() == "tensorrt"


def test_the_setting_overrides_the_choice(settings_env, monkeypatch):
    settings_env("LOOKALIKE_ENGINE", "torch")
    monkeypatch.setattr(engines, "unavailable", lambda backend: None)
    assert engines.choose_backend() == "torch"
    assert engines.choose_backend("onnxruntime") == "onnxruntime"


def test_a_backend_asked_for_but_missing_fails_with_its_reason(monkeypatch):
    monkeypatch.setattr(engines, "unavailable", lambda backend: "tensorrt is not installed")
    with pytest.raises(RuntimeError, match="tensorrt is not installed"):
        engines.choose_backend("tensorrt")
    with pytest.raises(ValueError, match="unknown engine"):
        engines.choose_backend("openvino")


def test_services_ask_for_a_gpu_only_when_the_setting_does(settings_env):
    assert engines.serving_device() == "cpu" and engines.service_resources() == {}
    settings_env("LOOKALIKE_GPU", "true")
    get_settings.cache_clear()
    assert engines.serving_device() == "gpu" and engines.service_resources() == {"resources": {"gpu": 1}}


# ---------------------------------------------------------------------------------------------
# Small graphs: the torch reference's ops and the TensorRT preparation against ONNX Runtime

onnx = pytest.importorskip("onnx", reason="onnx is a training extra: pip install -e '.[train]'")
pytest.importorskip("torch", reason="torch is a training extra: pip install -e '.[train]'")
from onnx import TensorProto, helper, numpy_helper

from lookalike.engines.reference import TorchGraph


def _graph(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _pixels_graph(extra_nodes, initializers, outputs):
    """uint8 pixels (n, 8, 8, 3) -> Transpose -> Cast float -> /255 -> `extra_nodes`, like the exports."""
    constants = [numpy_helper.from_array(np.array(255.0, np.float32), "scale"), *initializers]
    nodes = [
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], ["float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["float", "scale"], ["x"]),
        *extra_nodes,
    ]
    pixels = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 8, 8, 3])
    return _graph(nodes, [pixels], outputs, constants)


def _ort(model, pixels):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": pixels})))


def _torch(model, pixels, dtype="float32"):
    import torch

    with torch.inference_mode():
        return {k: v.float().numpy() for k, v in TorchGraph(model, "cpu", dtype)(torch.from_numpy(pixels)).items()}


def _conv_net():
    """A small net with every op of the exported models that has parameters or attributes worth testing."""
    rng = np.random.default_rng(0)
    weights = {
        "w_stem": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "b_stem": rng.normal(size=4).astype(np.float32),
        "w_dw": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "w_fc": rng.normal(size=(5, 4)).astype(np.float32),
        "b_fc": rng.normal(size=5).astype(np.float32),
        "in_scale": np.ones(2, np.float32),
        "in_bias": np.zeros(2, np.float32),
        "gn_shape": np.array([0, 2, -1], np.int64),
        "axes_hw": np.array([2, 3], np.int64),
        "axis1": np.array([1], np.int64),
        "axis0": np.array([0], np.int64),
        "low": np.array(0.0, np.float32),
        "high": np.array(6.0, np.float32),
        "index": np.array(1, np.int64),
        "start0": np.array([0], np.int64),
        "end2": np.array([2], np.int64),
        "hw8": np.array([8, 8], np.int64),
    }
    nodes = [
        # TF "same" padding: more after than before, as the exported stem has
        helper.make_node(
            "Conv", ["x", "w_stem", "b_stem"], ["c1"], pads=[0, 0, 1, 1], strides=[2, 2], kernel_shape=[3, 3]
        ),
        helper.make_node("Clip", ["c1", "low", "high"], ["r1"]),
        helper.make_node("Conv", ["r1", "w_dw"], ["c2"], pads=[1, 1, 1, 1], group=4, kernel_shape=[3, 3]),
        helper.make_node("Add", ["c2", "r1"], ["res"]),
        helper.make_node("Shape", ["res"], ["res_shape"]),
        helper.make_node("Gather", ["res_shape", "index"], ["channels"], axis=0),
        helper.make_node("Reshape", ["res", "gn_shape"], ["groups"]),  # GroupNorm as exported
        helper.make_node("InstanceNormalization", ["groups", "in_scale", "in_bias"], ["normed"], epsilon=1e-5),
        helper.make_node("Reshape", ["normed", "res_shape"], ["gn"]),
        helper.make_node("Slice", ["res_shape", "start0", "end2"], ["nc"]),  # Resize to (n, c, 8, 8)
        helper.make_node("Concat", ["nc", "hw8"], ["up_size"], axis=0),
        helper.make_node(
            "Resize",
            ["gn", "", "", "up_size"],
            ["up"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("ReduceMean", ["up", "axes_hw"], ["pooled"], keepdims=0),
        helper.make_node("AveragePool", ["gn"], ["avg"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ReduceSum", ["avg", "axes_hw"], ["avg_sum"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "w_fc", "b_fc"], ["fc"], transB=1),
        helper.make_node("ReduceL2", ["fc", "axis1"], ["norm"], keepdims=1),
        helper.make_node("Div", ["fc", "norm"], ["unit"]),
        helper.make_node("Softmax", ["fc"], ["soft"], axis=1),
        helper.make_node("Sigmoid", ["avg_sum"], ["sig"]),
        helper.make_node("Sqrt", ["sig"], ["root"]),
        helper.make_node("Unsqueeze", ["channels", "axis0"], ["channels_1d"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    outputs = [
        helper.make_tensor_value_info("unit", TensorProto.FLOAT, ["batch", 5]),
        helper.make_tensor_value_info("soft", TensorProto.FLOAT, ["batch", 5]),
        helper.make_tensor_value_info("root", TensorProto.FLOAT, ["batch", 4]),
        helper.make_tensor_value_info("channels_1d", TensorProto.INT64, [1]),
    ]
    return nodes, inits, outputs


@pytest.fixture(scope="module")
def conv_net():
    nodes, inits, outputs = _conv_net()
    return _pixels_graph(nodes, inits, outputs)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)


def test_torch_reference_computes_what_onnxruntime_computes(conv_net, pixels):
    expected, got = _ort(conv_net, pixels), _torch(conv_net, pixels)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-5, err_msg=name)


def test_torch_reference_refuses_an_op_it_does_not_know():
    model = _graph(
        [helper.make_node("Erf", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(NotImplementedError, match="Erf"):
        TorchGraph(model)


def test_prepared_graphs_compute_the_same(conv_net, pixels):
    """What TensorRT builds from: the uint8 input cast first (same numbers), float16 close."""
    from lookalike.engines.trt import prepare_for_tensorrt

    expected = _ort(conv_net, pixels)
    fp32 = prepare_for_tensorrt(onnx.ModelProto.FromString(conv_net.SerializeToString()), "fp32")
    onnx.checker.check_model(fp32, full_check=True)
    assert fp32.graph.node[0].op_type == "Cast" and fp32.graph.node[0].input[0] == "pixels"
    assert all("pixels" not in node.input for node in fp32.graph.node[1:])
    for name, value in _ort(fp32, pixels).items():
        np.testing.assert_allclose(value, expected[name], atol=1e-6, err_msg=name)
    fp16 = prepare_for_tensorrt(onnx.ModelProto.FromString(conv_net.SerializeToString()), "fp16")
    onnx.checker.check_model(fp16, full_check=True)
    types = {t.name: t.data_type for t in fp16.graph.initializer}
    assert types["w_stem"] == TensorProto.FLOAT16 and types["w_fc"] == TensorProto.FLOAT  # the tail stays float32
    assert [o.type.tensor_type.elem_type for o in fp16.graph.output][:3] == [TensorProto.FLOAT] * 3
    for name, value in _torch(fp16, pixels).items():
        np.testing.assert_allclose(value, expected[name], atol=2e-2, err_msg=name)


def test_int8_needs_a_qdq_graph(conv_net):
    from lookalike.engines.trt import prepare_for_tensorrt

    with pytest.raises(ValueError, match="quantize"):
        prepare_for_tensorrt(onnx.ModelProto.FromString(conv_net.SerializeToString()), "int8")


def test_sort_topologically_orders_nodes_after_their_inputs():
    from lookalike.engines.trt import sort_topologically

    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["b"], name="second"), helper.make_node("Relu", ["x"], ["a"], name="first")],
        "unsorted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    sort_topologically(model)
    assert [node.name for node in model.graph.node] == ["first", "second"]


def test_fold_weight_casts_restores_float32_initializers():
    from lookalike.engines.quantize import fold_weight_casts

    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _graph(
        [
            helper.make_node("Cast", ["w.fp16"], ["w"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight.astype(np.float16), "w.fp16")],
    )
    assert fold_weight_casts(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    (initializer,) = model.graph.initializer
    assert initializer.name == "w" and numpy_helper.to_array(initializer).dtype == np.float32
    np.testing.assert_array_equal(numpy_helper.to_array(initializer), weight)


def test_calibration_batches_are_all_one_size():
    from lookalike.engines.quantize import PixelBatches

    batches = PixelBatches(np.zeros((21, 2, 2, 3), np.uint8), batch_size=8)
    sizes = [len(batch["pixels"]) for batch in batches]
    assert sizes == [8, 8]
    assert len(batches.get_next()["pixels"]) == 8 and batches.get_next() is not None and batches.get_next() is None
    batches.rewind()
    assert batches.get_next() is not None
