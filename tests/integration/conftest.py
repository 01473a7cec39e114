"""A served Lookalike for the integration tests: a generated catalogue, indexed, behind `bentoml serve`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.synthetic import write_catalogue
from tests.conftest import ROOT, free_port, run_python

MAX_UPLOAD_BYTES = 300_000


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    write_catalogue(root, per_class=4, seed=0)
    return root


@pytest.fixture(scope="session")
def server(model_env, catalogue, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("service")
    env = {
        **model_env,
        "LOOKALIKE_STORE_PATH": str(workdir / "store"),
        "LOOKALIKE_CATALOG_IMAGES_DIR": str(catalogue),
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    }
    run_python(["-m", "indexer", "folder", str(catalogue), "--shop", "test-shop"], env)
    port = free_port()
    log_path = workdir / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "bentoml"),
                "serve",
                "service:Lookalike",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"bentoml serve was not ready within {timeout} s:\n{log_path.read_text()[-4000:]}")
