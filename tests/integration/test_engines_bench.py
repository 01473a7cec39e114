"""The engines benchmark and the GPU check script run end to end (short: --quick), and say what they skip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHIPPED_EMBEDDER

pytest.importorskip("torch", reason="the benchmark's torch rows are a training extra: pip install -e '.[train]'")
if not SHIPPED_EMBEDDER.with_suffix(".onnx").is_file():
    pytest.skip("no shipped embedder to benchmark", allow_module_level=True)

# Not on the GPU machines (FINDINGS: torch, onnx, onnxruntime, numpy, pillow): the check must run without them.
NOT_ON_GPU_MACHINES = ("bentoml", "pydantic", "pydantic_settings", "qdrant_client", "qdrant_edge", "timm")
BLOCKING_LAUNCHER = """
import runpy, sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not on the GPU machines)")

sys.meta_path.insert(0, Missing())
sys.argv = ["scripts/gpu_check.py", *{args!r}]
runpy.run_path("scripts/gpu_check.py", run_name="__main__")
"""


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OUT"} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_bench_engines_quick_writes_its_table(tmp_path):
    out = tmp_path / "report"
    _run(
        [
            "-m",
            "loadtests.bench_engines",
            "--quick",
            "--models",
            "embedder",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path),
        ]
    )
    report = (out / "report.md").read_text()
    for backend in ("torch (ONNX graph)", "onnxruntime fp32"):
        assert f"| embedder | {backend} | 1 |" in report and f"| embedder | {backend} | 2 |" in report
    assert "2048^3 GEMM" in report and "GFLOP" in report
    assert "tensorrt fp16" in report  # measured on a GPU, else listed with its reason


@pytest.mark.slow
def test_gpu_check_dry_run_needs_only_torch_onnx_and_onnxruntime(tmp_path):
    out = tmp_path / "gpu-cpu.md"
    launcher = BLOCKING_LAUNCHER.format(
        blocked=NOT_ON_GPU_MACHINES, args=["--device", "cpu", "--quick", "--out", str(out)]
    )
    _run(["-c", launcher])
    report = out.read_text()
    assert (
        "| embedder | onnxruntime cpu fp32 | 1 |" in report and "| detector | torch fp32 (ONNX graph) | 2 |" in report
    )
    assert "## Parity against torch float32" in report
    # what it could not run is listed with the reason, not left out
    assert "tensorrt fp16: a GPU backend" in report
    assert "torch eager (training model): the training code does not import here" in report
