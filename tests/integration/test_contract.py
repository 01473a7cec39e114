"""The published contract (/docs.json) against the real service: real responses validate against it,
and a bounded schemathesis run finds no server error."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.integration.conftest import SHOP

pytestmark = pytest.mark.slow

QUERY = "dress/dress-0002"
# Bounded so that `make test` stays short: examples per operation, and the whole run's time.
MAX_EXAMPLES = 25
MAX_TIME_S = 60


@pytest.fixture(scope="module")
def spec(server) -> dict:
    response = httpx.get(f"{server}/docs.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def response_schema(spec: dict, path: str, method: str, status: int) -> dict:
    """The JSON schema of one documented response, its `$ref`s resolvable against the whole document."""
    operation = spec["paths"][path][method]
    assert str(status) in operation["responses"], f"{method.upper()} {path} does not document {status}"
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def check(spec: dict, path: str, method: str, response: httpx.Response) -> None:
    schema = response_schema(spec, path, method, response.status_code)
    jsonschema.validate(response.json(), schema)


def test_every_endpoint_is_documented_with_examples(spec):
    paths = spec["paths"]
    for path in ("/search", "/detect", "/products/{shop}/{offer_id}/similar", "/categories"):
        assert path in paths, path
    body = paths["/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["application/json"]["examples"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"


def test_real_responses_match_the_schema(server, spec, catalogue):
    photo = (catalogue / f"{QUERY}.jpg").read_bytes()
    b64 = base64.b64encode(photo).decode()
    files = {"image": ("photo.jpg", photo, "image/jpeg")}
    cases = [
        ("/search", "post", httpx.post(f"{server}/search", files=files, data={"top_k": "3"}, timeout=60)),
        ("/search", "post", httpx.post(f"{server}/search", json={"image_base64": b64, "top_k": 0}, timeout=60)),
        ("/search", "post", httpx.post(f"{server}/search", json={"image_base64": b64, "shop": "nope"}, timeout=60)),
        (
            "/search",
            "post",
            httpx.post(f"{server}/search", content=b"x", headers={"Content-Type": "text/plain"}, timeout=60),
        ),
        ("/detect", "post", httpx.post(f"{server}/detect", json={"image_base64": b64}, timeout=60)),
        (
            "/products/{shop}/{offer_id}/similar",
            "get",
            httpx.get(f"{server}/products/{SHOP}/{QUERY}/similar", timeout=10),
        ),
        ("/products/{shop}/{offer_id}/similar", "get", httpx.get(f"{server}/products/{SHOP}/nope/similar", timeout=10)),
        ("/categories", "get", httpx.get(f"{server}/categories", timeout=10)),
    ]
    assert [response.status_code for *_, response in cases] == [200, 422, 400, 415, 200, 200, 404, 200]
    for path, method, response in cases:
        check(spec, path, method, response)


def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Generated requests (valid and invalid) against every documented operation: never a 5xx, and every
    response matches its documented status, content type and schema."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{server}/docs.json",
        "--url",
        server,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "1",
        "--workers",
        "1",  # with 2, hypothesis' lambda-source cache raced ("AST constructor recursion depth mismatch")
        "--request-timeout",
        "30",
        "--exclude-path-regex",
        "^/(metrics|livez)$",  # BentoML's text endpoints
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=MAX_TIME_S * 3, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
