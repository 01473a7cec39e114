"""Shared fixtures: the embedder and the detector, imported (or exported) once per session into a private store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.modelcard import DetectorCard, EmbedderCard

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_python(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


SHIPPED_EMBEDDER = ROOT / "training" / "artifacts" / "embedder"
SHIPPED_DETECTOR = ROOT / "training" / "artifacts" / "detector"
# The shipped model (STEM.onnx + STEM.json) when the repository has one, else its exporter's provisional one.
MODELS = ((SHIPPED_EMBEDDER, "training.embedder.export"), (SHIPPED_DETECTOR, "training.detector.export"))


@pytest.fixture(scope="session")
def model_env(tmp_path_factory) -> dict[str, str]:
    """Environment whose BENTOML_HOME holds the models the demo serves: the shipped ones, else the provisional."""
    home = tmp_path_factory.mktemp("bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(ROOT)}
    env = {key: value for key, value in env.items() if not key.startswith("LOOKALIKE_")}
    for stem, exporter in MODELS:
        if stem.with_suffix(".onnx").is_file():
            run_python(["-m", "lookalike.modelstore", "import", str(stem)], env)
        else:
            run_python(["-m", exporter, "--provisional"], env)
    return env


@pytest.fixture(scope="session")
def embedder_card(model_env) -> EmbedderCard:
    """The card of the embedder in `model_env`'s model store (shipped or provisional)."""
    script = "import bentoml, json; print(json.dumps(bentoml.models.get('lookalike-embedder:latest').info.metadata))"
    return EmbedderCard.from_metadata(json.loads(run_python(["-c", script], model_env).stdout))


@pytest.fixture(scope="session")
def detector_card(model_env) -> DetectorCard:
    """The card of the detector in `model_env`'s model store (shipped or provisional)."""
    script = "import bentoml, json; print(json.dumps(bentoml.models.get('lookalike-detector:latest').info.metadata))"
    return DetectorCard.from_metadata(json.loads(run_python(["-c", script], model_env).stdout))
