"""Train a tiny detector on scenes composed from a generated catalogue, resume it, export it with parity, ship it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.detection import postprocess
from lookalike.engines import OnnxEmbedder
from lookalike.modelcard import DetectorCard
from lookalike.synthetic import write_catalogue
from tests.conftest import run_python

pytestmark = pytest.mark.slow
CATEGORIES = ["dress", "pants", "shoes", "t-shirt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_env):
    root = tmp_path_factory.mktemp("tiny-detector")
    write_catalogue(root / "data" / "train", per_class=3, seed=1, size=160, categories=CATEGORIES)
    write_catalogue(root / "data" / "validation", per_class=1, seed=2, size=160, categories=CATEGORIES)
    args = ["-m", "training.detector.train", "--data-dir", str(root / "data"), "--out", str(root / "run")]
    for name in ("scenes-dir", "mask-dir", "cache-dir"):
        args += [f"--{name}", str(root / name)]
    args += ["--classes", ",".join(CATEGORIES), "--input-size", "128", "--train-scenes", "12", "--val-scenes", "4"]
    args += ["--batch-size", "4", "--fpn-channels", "32", "--eval-every", "1"]
    run_python([*args, "--epochs", "1"], model_env)
    run_python([*args, "--epochs", "2", "--resume"], model_env)
    return root


def test_scenes_come_from_their_own_split(trained):
    for split in ("train", "validation"):
        (folder,) = (trained / "scenes-dir").glob(f"{split}-*")
        sources = {a["source"] for a in json.loads((folder / "annotations.json").read_text())["annotations"]}
        assert sources and all(source.startswith(f"{split}/") for source in sources), sources


def test_training_resumes_and_evaluates(trained):
    summary = json.loads((trained / "run" / "summary.json").read_text())
    assert [record["epoch"] for record in summary["history"]] == [1, 2]  # epoch 1 came from the checkpoint
    assert all(0.0 <= record["mAP@0.5"] <= 1.0 for record in summary["history"])
    assert summary["config"]["classes"] == CATEGORIES and summary["data_fingerprint"]
    assert 0.15 <= summary["operating_point"]["score"] <= 0.65


def test_export_checks_parity_and_ships_a_card(trained, model_env, tmp_path):
    stem = tmp_path / "artifact" / "detector"
    checkpoint = trained / "run" / "checkpoint.pth"
    # Its own model store: exporting saves the tiny detector as lookalike-detector, which would become
    # the "latest" that every service started later in this session serves.
    own_store = {**model_env, "BENTOML_HOME": str(tmp_path / "bentoml")}
    run_python(["-m", "training.detector.export", "--checkpoint", str(checkpoint), "--ship", str(stem)], own_store)
    card = DetectorCard.model_validate_json(stem.with_suffix(".json").read_text())
    assert card.class_names == CATEGORIES and card.preset.size == 128
    assert card.parity_max_abs_diff["boxes"] <= 1e-2 and card.parity_max_abs_diff["scores"] <= 1e-3
    assert card.weights["storage"] == "float16"
    assert (
        card.thresholds.score == json.loads((trained / "run" / "summary.json").read_text())["operating_point"]["score"]
    )
    pixels = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    outputs = OnnxEmbedder(stem.with_suffix(".onnx"))(pixels)
    anchors = 8 * 8 + 4 * 4 + 2 * 2 + 1  # strides 16, 32, 64, 128 at 128 px
    assert outputs["boxes"].shape == (3, anchors, 4) and outputs["scores"].shape == (3, anchors, len(CATEGORIES))
    assert ((outputs["scores"] >= 0) & (outputs["scores"] <= 1)).all()
    detections = postprocess(outputs["boxes"][0], outputs["scores"][0], None, card.thresholds)
    assert all(0 <= d.label < len(CATEGORIES) for d in detections)
