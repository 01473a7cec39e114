"""End to end with real parts: export -> index a generated catalogue -> `bentoml serve` -> HTTP."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import MAX_UPLOAD_BYTES

pytestmark = pytest.mark.slow


def search(url: str, image: bytes, **fields) -> httpx.Response:
    data = {key: str(value) for key, value in fields.items()}
    return httpx.post(f"{url}/search", files={"image": ("photo.jpg", image, "image/jpeg")}, data=data, timeout=60)


def firsts(body: dict) -> list[str]:
    """The best product's offer id of each item."""
    return [item["products"][0]["offer_id"] for item in body["items"] if item["products"]]


@pytest.mark.parametrize("category", ["dress", "pants", "shoes", "t-shirt"])
def test_exact_catalogue_item_comes_back_first(server, catalogue, category):
    # The indexer searched the photo's main item (or the whole photo when nothing was detected);
    # the service's items include that same crop, whatever else it detects.
    image_path = catalogue / category / f"{category}-0002.jpg"
    response = search(server, image_path.read_bytes(), top_k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"] and body["took_ms"] > 0 and (body["width"], body["height"]) == (256, 256)
    for item in body["items"]:
        products = item["products"]
        assert len(products) == 5
        assert [p["score"] for p in products] == sorted((p["score"] for p in products), reverse=True)
    sources = {item["source"] for item in body["items"]}
    assert sources in ({"detected"}, {"whole_image"}), sources
    best = max((item["products"][0] for item in body["items"]), key=lambda product: product["score"])
    assert best["offer_id"] == f"{category}/{category}-0002" and best["shop"] == "test-shop"
    assert best["score"] > 0.99
    assert best["image_url"] == f"/ui/catalog/{category}/{category}-0002.jpg"


def test_category_filter_rolls_up_to_broad_categories(server, catalogue):
    image = (catalogue / "skirt" / "skirt-0001.jpg").read_bytes()
    response = search(server, image, top_k=10, category="dress")
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        products = item["products"]
        assert products and all(p["category"] == "dress" for p in products)
        assert len(products) == 4  # the catalogue's dresses, no more


def test_color_vector_search(server, catalogue):
    image = (catalogue / "hat" / "hat-0003.jpg").read_bytes()
    response = search(server, image, top_k=3, weights="shape:0,color:1")
    assert response.status_code == 200, response.text
    assert "hat/hat-0003" in firsts(response.json())


@pytest.mark.parametrize(
    "image, fields, status, message",
    [
        (b"this is not an image", {}, 415, "not a supported image"),
        (b"", {}, 400, "empty"),
        (None, {"top_k": 0}, 422, "top_k"),
        (None, {"top_k": 1000}, 422, "top_k"),
        (None, {"category": "no-such-category"}, 400, "no category named"),
        (None, {"using": "texture"}, 422, "unknown field"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, catalogue, image, fields, status, message):
    if image is None:
        image = (catalogue / "dress" / "dress-0000.jpg").read_bytes()
    response = search(server, image, **fields)
    assert response.status_code == status, response.text
    assert message in response.text


def test_missing_image_field_is_a_4xx(server):
    response = httpx.post(f"{server}/search", data={"top_k": "3"}, timeout=30)
    assert 400 <= response.status_code < 500, response.text


def test_oversized_upload_is_refused_with_413(server):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert len(buffer.getvalue()) > MAX_UPLOAD_BYTES
    response = search(server, buffer.getvalue())
    assert response.status_code == 413, response.text


def test_service_still_answers_after_bad_input(server, catalogue):
    search(server, b"\x89PNG\r\n\x1a\n broken")
    image = (catalogue / "shorts" / "shorts-0000.jpg").read_bytes()
    response = search(server, image, top_k=1)
    assert response.status_code == 200
    assert "shorts/shorts-0000" in firsts(response.json())


def test_page_and_catalogue_images_are_served(server):
    page = httpx.get(f"{server}/ui/", timeout=10)
    assert page.status_code == 200 and "<title>Lookalike" in page.text
    assert '<form id="search"' in page.text
    image = httpx.get(f"{server}/ui/catalog/dress/dress-0000.jpg", timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
