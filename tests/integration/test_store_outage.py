"""A Qdrant server that does not answer: the service still starts, says it is not ready, and answers
searches with 503 and Retry-After instead of failing or hanging (real `bentoml serve`, no store there)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.conftest import serve

pytestmark = pytest.mark.slow

QUERY = "dress/dress-0002"


@pytest.fixture(scope="module")
def storeless(model_env, catalogue, tmp_path_factory) -> Iterator[str]:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = {"LOOKALIKE_QDRANT_URL": nobody}
    # Not indexed (there is no store to index into), and live, not ready: /readyz is 503 here by design.
    workdir = tmp_path_factory.mktemp("storeless")
    with serve(model_env, catalogue, workdir, settings, index=False, ready="/healthz") as url:
        yield url


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
