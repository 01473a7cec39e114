"""Shared fixtures: a provisional embedder exported once per session into a private model store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def model_env(tmp_path_factory) -> dict[str, str]:
    """Environment whose BENTOML_HOME holds the embedder the demo serves: the shipped one, else the provisional."""
    home = tmp_path_factory.mktemp("bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(ROOT)}
    env = {key: value for key, value in env.items() if not key.startswith("LOOKALIKE_")}
    if SHIPPED_EMBEDDER.with_suffix(".onnx").is_file():
        run_python(["-m", "lookalike.modelstore", "import", str(SHIPPED_EMBEDDER)], env)
    else:
        run_python(["-m", "training.export", "--provisional"], env)
    return env
