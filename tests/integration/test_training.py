"""Train a tiny embedder on a generated data set, resume it, export it with parity, ship and import it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.engines import EMBEDDER_FILE, OnnxEmbedder
from lookalike.synthetic import write_catalogue
from tests.conftest import run_python

pytestmark = pytest.mark.slow
CATEGORIES = ["dress", "pants", "shoes", "t-shirt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_env):
    root = tmp_path_factory.mktemp("tiny")
    write_catalogue(root / "data" / "train", per_class=4, seed=1, size=160, categories=CATEGORIES)
    write_catalogue(root / "data" / "validation", per_class=1, seed=2, size=160, categories=CATEGORIES)
    args = [
        "-m",
        "training.embedder.train",
        "--data-dir",
        str(root / "data"),
        "--out",
        str(root / "run"),
        "--cache-dir",
        str(root / "cache"),
        "--mask-dir",
        str(root / "masks"),
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--embed-dim",
        "64",
        "--hidden-dim",
        "32",
    ]
    run_python([*args, "--epochs", "1"], model_env)
    run_python([*args, "--epochs", "2", "--resume"], model_env)
    return root


def test_training_saves_config_and_resumes(trained):
    history = json.loads((trained / "run" / "history.json").read_text())
    assert [record["epoch"] for record in history] == [0, 1]  # epoch 0 came from the checkpoint
    assert all(0.0 <= record["val_top1"] <= 1.0 for record in history)
    config = json.loads((trained / "run" / "config.json").read_text())
    assert config["model_args"]["shape_classes"] == CATEGORIES and config["data_fingerprint"]


def test_export_checks_parity_ships_and_imports(trained, model_env, tmp_path):
    stem = tmp_path / "artifact" / "embedder"
    run_python(
        [
            "-m",
            "training.embedder.export",
            "--checkpoint",
            str(trained / "run" / "checkpoint.pth"),
            "--ship",
            str(stem),
        ],
        model_env,
    )
    metadata = json.loads(stem.with_suffix(".json").read_text())
    assert metadata["outputs"] == ["shape", "color", "category_logits"]
    assert metadata["parity_max_abs_diff"] <= 1e-4
    # Shipped with float16 weights: half the file, embeddings within the stated tolerance.
    assert metadata["weights"]["storage"] == "float16"
    assert metadata["weights"]["embedding_max_abs_diff_vs_float32"] <= 2e-3
    assert metadata["dims"] == {"shape": 64, "color": 64}
    assert metadata["data_fingerprint"] == json.loads((trained / "run" / "config.json").read_text())["data_fingerprint"]

    home = tmp_path / "home"
    run_python(["-m", "lookalike.modelstore", "import", str(stem)], {**model_env, "BENTOML_HOME": str(home)})
    (onnx_file,) = home.glob(f"models/lookalike-embedder/*/{EMBEDDER_FILE}")
    outputs = OnnxEmbedder(onnx_file)(np.zeros((2, 224, 224, 3), np.uint8))
    assert outputs["shape"].shape == (2, 64) and outputs["category_logits"].shape == (2, len(CATEGORIES))
    assert np.allclose(np.linalg.norm(outputs["color"], axis=1), 1.0, atol=1e-5)


def test_evaluation_report_of_the_tiny_model(trained, model_env, tmp_path):
    stem = tmp_path / "artifact" / "embedder"
    run_python(
        [
            "-m",
            "training.embedder.export",
            "--checkpoint",
            str(trained / "run" / "checkpoint.pth"),
            "--ship",
            str(stem),
        ],
        model_env,
    )
    # --compare takes a shipped pair from a file, as `make report` does with the previous one from git.
    previous = tmp_path / "previous" / "embedder-old"
    previous.parent.mkdir()
    for suffix in (".onnx", ".json"):
        previous.with_suffix(suffix).write_bytes(stem.with_suffix(suffix).read_bytes())
    out = tmp_path / "report"
    run_python(
        [
            "-m", "training.embedder.evaluate", "--onnx", str(stem.with_suffix(".onnx")), "--data-dir", str(trained / "data"),
            "--compare", str(previous.with_suffix(".onnx")),
            "--out", str(out), "--baselines", "phash,hsv", "--cache-dir", "", "--mask-cache", str(tmp_path / "masks"),
            "--recolours", "2", "--examples", "2",
        ],
        model_env,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    for row in ("float", "binary", "asymmetric", "served"):
        assert 0.0 <= metrics[f"{row}_instance_recall@1"] <= metrics[f"{row}_instance_recall@10"] <= 1.0
    # The served search rescored a shortlist (8 x 10) longer than this tiny catalogue: it is exact.
    assert metrics["served_instance_recall@10"] == pytest.approx(metrics["float_instance_recall@10"])
    assert 0.0 <= metrics["classifier_top1"] <= 1.0 and "baseline_hsv_instance_recall@1" in metrics
    # The same graph under another name: the comparison's rows must repeat the model's own.
    for metric in ("float_instance_recall@1", "binary_category_precision@10", "classifier_top1"):
        assert metrics[f"compare_{metric}"] == pytest.approx(metrics[metric])
    report = (out / "report.md").read_text()
    assert "served: binary index, rescored" in report and (out / "recall_at_k.png").stat().st_size > 0
    assert f"compared with `{previous.with_suffix('.onnx')}`" in report


def test_end_to_end_training_fine_tunes_the_trunk(trained, model_env, tmp_path):
    """`--train-trunk` (the GPU recipe) caches pixels and trains the whole backbone; here on the CPU, with an EMA."""
    import torch

    from training.backbone import efficientnet_lite0

    run_python(
        [
            "-m", "training.embedder.train", "--data-dir", str(trained / "data"), "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--mask-dir", str(trained / "masks"), "--train-trunk",
            "--batch-size", "8", "--workers", "0", "--embed-dim", "32", "--hidden-dim", "32", "--epochs", "1",
            "--crop-views", "1", "--photo-views", "1", "--recolour-views", "1", "--ema-epochs", "1",
        ],
        model_env,
    )  # fmt: skip
    (cache,) = (tmp_path / "cache").glob("train-*.pt")
    assert torch.load(cache, weights_only=True)["pixels"].dtype == torch.uint8
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert checkpoint["model_args"]["train_trunk"] and checkpoint["color_codes_rotated_at"] == 0
    stem = checkpoint["model"]["backbone.conv_stem.weight"]
    assert not torch.equal(stem, efficientnet_lite0(pretrained=True).conv_stem.weight)
    # With --ema-epochs the export takes the weights' moving average; the trained ones stay for --resume.
    assert not torch.equal(stem, checkpoint["raw_model"]["backbone.conv_stem.weight"])
    assert "ema_val_top1" in checkpoint["history"][-1]
