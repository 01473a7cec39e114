"""A Qdrant server that does not answer: the service still starts, says it is not ready, and answers
searches with 503 and Retry-After instead of failing or hanging (real `bentoml serve`, no store there)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

QUERY = "dress/dress-0002"


@pytest.fixture(scope="module")
def storeless(model_env, tmp_path_factory) -> Iterator[str]:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**model_env, "LOOKALIKE_QDRANT_URL": nobody}
    port = free_port()
    log_path = tmp_path_factory.mktemp("storeless") / "serve.log"
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
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-4000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(log_path.read_text()[-4000:])
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_live_but_not_ready(storeless):
    assert httpx.get(f"{storeless}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{storeless}/readyz", timeout=10).status_code == 503


def test_searches_get_503_with_retry_after(storeless, catalogue):
    photo = (catalogue / f"{QUERY}.jpg").read_bytes()
    responses = [
        httpx.post(f"{storeless}/search", files={"image": ("p.jpg", photo, "image/jpeg")}, timeout=60),
        httpx.get(f"{storeless}/products/test-shop/{QUERY}/similar", timeout=60),
    ]
    for response in responses:
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        body = response.json()
        assert body["error"] == "unavailable" and "store" in body["detail"]
