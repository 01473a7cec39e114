"""`make report`'s robustness half end to end on a few real photos: every family, framed and ranked, in a report."""

from __future__ import annotations

import json

import pytest

from lookalike.settings import Settings
from tests.conftest import ROOT, SHIPPED_DETECTOR, SHIPPED_EMBEDDER, run_python
from training.synth.families import FAMILIES

pytestmark = pytest.mark.slow


def test_the_report_has_every_family_the_worst_first_and_the_size_curve(model_env, tmp_path):
    clothing = Settings(_env_file=None).clothing_dir
    clothing = clothing if clothing.is_absolute() else ROOT / clothing
    if not (clothing / "validation").is_dir():
        pytest.skip(f"no real photos at {clothing} (LOOKALIKE_CLOTHING_DIR)")
    if not SHIPPED_EMBEDDER.with_suffix(".onnx").is_file():
        pytest.skip("no shipped embedder in training/artifacts")
    args = ["-m", "training.embedder.robustness", "--onnx", str(SHIPPED_EMBEDDER.with_suffix(".onnx"))]
    args += ["--detector", str(SHIPPED_DETECTOR.with_suffix(".onnx")), "--data-dir", str(clothing)]
    args += ["--limit", "6", "--recolourings", "1", "--no-imagenet", "--cache-dir", ""]
    args += ["--mask-cache", str(tmp_path / "masks"), "--out", str(tmp_path / "report")]
    run_python(args, model_env, timeout=600)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["queries_per_family"] == 6
    assert metrics["catalogue"] == 6 + 54 + 54 * 2  # photos, one repainting and one crop per train photo
    recalls = {name: metrics[f"{name}_recall@1"] for name in FAMILIES}
    assert metrics["worst_recall@1"] == min(recalls.values())
    assert recalls[metrics["worst_family"]] == metrics["worst_recall@1"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.index("Headline: worst query family") < report.index("## Query families")
    assert (tmp_path / "report" / "catalogue_size.png").stat().st_size > 0
