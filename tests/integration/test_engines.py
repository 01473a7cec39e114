"""The engines on the shipped models: every backend here against the torch reference, the int8 and
float16 variants against float32, TensorRT and CUDA where a GPU is (skipped with the reason where not),
and the services' GPU declaration.

Measured bounds (fp32, 2026-11, 8 seeded random images):
- embedder, ONNX Runtime vs torch: unit vectors 3e-7, category logits 6e-6: within 1e-4.
- detector, ONNX Runtime vs torch: boxes 3.8e-4 px (coordinates up to 534 px; torch float32 itself is
  3.7e-4 from float64 there), so boxes are held to 1e-3 px; scores 1.7e-4, all of it at scores below
  1e-3 where ONNX Runtime's fast sigmoid rounds sigmoid(-17) to 0 and the square root of the product
  magnifies it; at scores >= 0.01 the difference is 2.7e-6, held to 1e-4, and 5e-4 elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lookalike.engines import OnnxModel, OrtOptions, unavailable
from tests.conftest import ROOT, SHIPPED_DETECTOR, SHIPPED_EMBEDDER

pytest.importorskip("torch", reason="the torch reference is a training extra: pip install -e '.[train]'")
pytest.importorskip("onnx", reason="the torch reference reads the graph with onnx: pip install -e '.[train]'")

from lookalike.engines.reference import TorchEngine

EMBEDDER = SHIPPED_EMBEDDER.with_suffix(".onnx")
DETECTOR = SHIPPED_DETECTOR.with_suffix(".onnx")
SIZES = {"embedder": 224, "detector": 320}
FP32_TOLERANCE = 1e-4
BOX_TOLERANCE_PX = 1e-3
SCORE_TOLERANCE_LOW = 5e-4  # scores below 0.01: ONNX Runtime's approximate sigmoid, magnified by the sqrt
REDUCED_COSINE = 0.99  # int8 and float16 embeddings against float32
FP16_BOX_TOLERANCE_PX = 2.0  # float16 box regression: 0.7-0.9 px seen at 320 px
FP16_SCORE_TOLERANCE = 1e-2


def _path(model: str):
    path = {"embedder": EMBEDDER, "detector": DETECTOR}[model]
    if not path.is_file():
        pytest.skip(f"no shipped {model} at {path}")
    return path


def _pixels(model: str, n: int = 8, seed: int = 0) -> np.ndarray:
    size = SIZES[model]
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference():
    """The torch reference's outputs for 8 seeded images, per model."""
    return {model: TorchEngine(_path(model))(_pixels(model)) for model in SIZES}


def assert_fp32_parity(model: str, got: dict, expected: dict) -> dict[str, float]:
    errors = {name: float(np.abs(got[name] - value).max()) for name, value in expected.items()}
    if model == "embedder":
        assert max(errors.values()) <= FP32_TOLERANCE, errors
    else:
        assert errors["boxes"] <= BOX_TOLERANCE_PX, errors
        high = expected["scores"] >= 0.01
        assert np.abs(got["scores"] - expected["scores"])[high].max() <= FP32_TOLERANCE, errors
        assert errors["scores"] <= SCORE_TOLERANCE_LOW, errors
    return errors


def min_cosine(got: dict, expected: dict) -> float:
    return min(float(np.min(np.sum(got[n] * expected[n], 1))) for n in ("shape", "color"))


def mean_cosine(got: dict, expected: dict) -> float:
    return min(float(np.mean(np.sum(got[n] * expected[n], 1))) for n in ("shape", "color"))


# ---------------------------------------------------------------------------------------------
# CPU


@pytest.mark.parametrize("model", ["embedder", "detector"])
def test_onnxruntime_matches_torch(model, reference, record_property):
    got = OnnxModel(_path(model), providers=["CPUExecutionProvider"], options=OrtOptions())(_pixels(model))
    record_property("max_abs_error", assert_fp32_parity(model, got, reference[model]))


def test_torch_reference_is_the_training_models_computation(reference):
    """The graph run by torch computes what the training code's embedder computes with the same weights."""
    pytest.importorskip("timm", reason="the training model needs timm")
    from loadtests.bench_engines import training_model_embedder

    shape, color, logits = training_model_embedder(EMBEDDER)(_pixels("embedder"))
    expected = reference["embedder"]
    assert np.abs(shape - expected["shape"]).max() <= 1e-5
    assert np.abs(color - expected["color"]).max() <= 1e-5
    # logits are 16 x a cosine (the classifier's scale): 9.4e-5 seen, i.e. 6e-6 on the cosine
    assert np.abs(logits - expected["category_logits"]).max() <= 16 * 1e-5


def test_engines_answer_batches_of_any_size_alike():
    """One image at a time or all at once, and an empty batch: the same rows."""
    engine = OnnxModel(_path("embedder"), options=OrtOptions())
    pixels = _pixels("embedder", 3)
    together = engine(pixels)
    alone = [engine(pixels[i : i + 1]) for i in range(3)]
    for name, value in together.items():
        np.testing.assert_allclose(np.concatenate([a[name] for a in alone]), value, atol=1e-5)
    assert engine(pixels[:0])["shape"].shape == (0, 128)


@pytest.fixture(scope="module")
def catalogue_crops():
    """24 calibration photos from train/ and 24 held-out ones from validation/, through the embedder's preset."""
    from lookalike.engines.quantize import calibration_photos, preprocess_photos
    from lookalike.settings import Settings

    clothing = Settings(_env_file=None).clothing_dir
    clothing = clothing if clothing.is_absolute() else ROOT / clothing
    if not (clothing / "train").is_dir():
        pytest.skip(f"no catalogue photos at {clothing} (LOOKALIKE_CLOTHING_DIR) to calibrate int8 on")
    card = json.loads(_path("embedder").with_suffix(".json").read_text())
    calibration = preprocess_photos(calibration_photos(clothing / "train", 24, seed=0), card)
    held_out = preprocess_photos(calibration_photos(clothing / "validation", 24, seed=1), card)
    return calibration, held_out


def test_int8_embedder_stays_close_to_float32(catalogue_crops, tmp_path, record_property):
    from lookalike.engines.quantize import quantize_model

    calibration, held_out = catalogue_crops
    int8 = quantize_model(_path("embedder"), tmp_path / "embedder-int8.onnx", calibration)
    expected = OnnxModel(_path("embedder"), options=OrtOptions())(held_out)
    got = OnnxModel(int8, options=OrtOptions())(held_out)
    record_property("cosine", {"mean": mean_cosine(got, expected), "min": min_cosine(got, expected)})
    assert mean_cosine(got, expected) >= REDUCED_COSINE
    assert any(node.op_type == "QLinearConv" for node in _optimized_nodes(int8)), "int8 convolutions expected"


def _optimized_nodes(path):
    """The nodes ONNX Runtime actually runs (after its Q/DQ fusions), from an optimised copy of the graph."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.optimized_model_filepath = os.path.join(scratch, "optimized.onnx")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return list(onnx.load(options.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("model", ["embedder", "detector"])
def test_float16_graph_for_tensorrt_stays_close(model, reference, record_property):
    """The float16 graph TensorRT builds from, run here by ONNX Runtime: what TensorRT's numbers should be near."""
    import onnx
    import onnxruntime as ort

    from lookalike.engines.trt import prepare_for_tensorrt

    prepared = prepare_for_tensorrt(onnx.load(str(_path(model))), "fp16")
    session = ort.InferenceSession(prepared.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": _pixels(model)})))
    expected = reference[model]
    if model == "embedder":
        record_property("min_cosine", min_cosine(got, expected))
        assert min_cosine(got, expected) >= REDUCED_COSINE
    else:
        errors = {name: float(np.abs(got[name] - value).max()) for name, value in expected.items()}
        record_property("max_abs_error", errors)
        assert errors["boxes"] <= FP16_BOX_TOLERANCE_PX and errors["scores"] <= FP16_SCORE_TOLERANCE, errors


def test_services_declare_a_gpu_and_batching_as_the_settings_ask():
    script = (
        "import json, bentos.embedder as e, bentos.detector as d; "
        "print(json.dumps([s.config.get('resources') for s in (e.Embedder, d.Detector)] + "
        "[e.MAX_BATCH_SIZE, e.MAX_LATENCY_MS, d.MAX_BATCH_SIZE] + "
        "[s.apis[a].batchable for s, a in ((e.Embedder, 'embed'), (d.Detector, 'detect'))]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")} | {"PYTHONPATH": str(ROOT)}
    answers = {}
    for gpu, batching in (("false", "true"), ("true", "true"), ("false", "false")):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**env, "LOOKALIKE_GPU": gpu, "LOOKALIKE_BATCHING": batching},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        answers[gpu, batching] = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["false", "true"] == [None, None, 32, 500, 16, True, True]
    assert answers["true", "true"] == [{"gpu": 1}, {"gpu": 1}, 64, 100, 64, True, True]
    assert answers["false", "false"][-2:] == [False, False]  # batching off: each caller's batch as it comes


# ---------------------------------------------------------------------------------------------
# GPU: TensorRT and CUDA (skipped, with the reason, where absent)


def _require_tensorrt():
    reason = unavailable("tensorrt")
    if reason:
        pytest.skip(f"TensorRT cannot run here: {reason}")


@pytest.mark.tensorrt
@pytest.mark.parametrize("model", ["embedder", "detector"])
def test_tensorrt_fp16_matches_torch(model, reference, tmp_path, record_property):
    _require_tensorrt()
    from lookalike.engines.trt import TensorRTEngine, TrtOptions

    engine = TensorRTEngine(_path(model), TrtOptions(cache_dir=tmp_path, precision="fp16", batch_profile=(1, 8, 16)))
    got, expected = engine(_pixels(model)), reference[model]
    if model == "embedder":
        record_property("min_cosine", min_cosine(got, expected))
        assert min_cosine(got, expected) >= REDUCED_COSINE
    else:
        errors = {name: float(np.abs(got[name] - value).max()) for name, value in expected.items()}
        record_property("max_abs_error", errors)
        assert errors["boxes"] <= FP16_BOX_TOLERANCE_PX and errors["scores"] <= FP16_SCORE_TOLERANCE, errors


@pytest.mark.tensorrt
def test_tensorrt_fp32_matches_torch(reference, tmp_path, record_property):
    _require_tensorrt()
    from lookalike.engines.trt import TensorRTEngine, TrtOptions

    engine = TensorRTEngine(EMBEDDER, TrtOptions(cache_dir=tmp_path, precision="fp32", batch_profile=(1, 8, 16)))
    got = engine(_pixels("embedder"))
    # TensorRT may pick TF32 kernels for float32 convolutions on Ampere and later: the cosine, not 1e-4
    record_property("max_abs_error", {n: float(np.abs(got[n] - v).max()) for n, v in reference["embedder"].items()})
    assert min_cosine(got, reference["embedder"]) >= 0.9999


@pytest.mark.tensorrt
def test_tensorrt_engine_is_built_once_and_cached(tmp_path):
    _require_tensorrt()
    from lookalike.engines.trt import TensorRTEngine, TrtOptions

    options = TrtOptions(cache_dir=tmp_path, precision="fp16", batch_profile=(1, 4, 8))
    first = TensorRTEngine(EMBEDDER, options)
    built = first.engine_path.stat().st_mtime_ns
    second = TensorRTEngine(EMBEDDER, options)
    assert second.engine_path == first.engine_path and second.engine_path.stat().st_mtime_ns == built
    assert len(list(tmp_path.glob("timing-*.cache"))) == 1


@pytest.mark.tensorrt
def test_tensorrt_static_batches_are_padded_and_long_calls_chunked(tmp_path):
    """A graph exported with a fixed batch of 4: 3 rows are padded to 4, 9 rows run as 4 + 4 + 1 padded."""
    _require_tensorrt()
    import onnx

    from lookalike.engines.trt import TensorRTEngine, TrtOptions

    model = onnx.load(str(EMBEDDER))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 4
    static = tmp_path / "embedder-static4.onnx"
    onnx.save(model, static)
    engine = TensorRTEngine(static, TrtOptions(cache_dir=tmp_path, precision="fp32"))
    assert engine.batch_range == (4, 4)
    reference = OnnxModel(EMBEDDER, options=OrtOptions())
    for n in (3, 9):
        pixels = _pixels("embedder", n, seed=n)
        got, expected = engine(pixels), reference(pixels)
        assert got["shape"].shape == (n, 128)
        assert min_cosine(got, expected) >= 0.9999


@pytest.mark.gpu
def test_torch_fp16_on_cuda_stays_close(reference):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    got = TorchEngine(EMBEDDER, device="cuda", dtype="float16")(_pixels("embedder"))
    assert min_cosine(got, reference["embedder"]) >= REDUCED_COSINE


@pytest.mark.gpu
def test_onnxruntime_cuda_matches_torch(reference):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (install onnxruntime-gpu on a CUDA machine)")
    got = OnnxModel(EMBEDDER, providers=["CUDAExecutionProvider"], options=OrtOptions())(_pixels("embedder"))
    assert min_cosine(got, reference["embedder"]) >= 0.9999
