"""Detection end to end, on `bentoml serve`: POST /detect, and /search over the several items of one photo."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import MAX_UPLOAD_BYTES, compose, pasted_paths

pytestmark = pytest.mark.slow


def post(url: str, route: str, image: bytes, **fields) -> httpx.Response:
    data = {key: str(value) for key, value in fields.items()}
    return httpx.post(f"{url}{route}", files={"image": ("photo.jpg", image, "image/jpeg")}, data=data, timeout=60)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def assert_inside(items: list[dict], width: int, height: int) -> None:
    for item in items:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, item


@pytest.fixture(scope="module")
def wide_photo(catalogue) -> bytes:
    """A catalogue photo off-centre on a wider canvas: boxes must come back in this photo's pixels."""
    canvas = Image.new("RGB", (480, 300), (225, 222, 215))
    canvas.paste(Image.open(catalogue / "dress" / "dress-0001.jpg"), (200, 30))
    return jpeg(canvas)


def test_detect_returns_boxes_inside_the_photo(server, wide_photo, detector_card):
    response = post(server, "/detect", wide_photo)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "width", "height", "took_ms"}
    assert (body["width"], body["height"]) == (480, 300) and body["took_ms"] > 0
    items = body["items"]
    assert len(items) <= detector_card.thresholds.max_detections
    assert_inside(items, 480, 300)
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(detector_card.thresholds.score <= score <= 1 for score in scores)
    for item in items:
        assert set(item) == {"box", "category_id", "category", "score"}
        assert item["category"] and (item["category_id"] is None or isinstance(item["category_id"], int))


def test_search_items_are_the_detections(server, wide_photo):
    detected = post(server, "/detect", wide_photo).json()["items"]
    response = post(server, "/search", wide_photo, top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (480, 300)
    if detected:
        assert [{key: item[key] for key in detected[0]} for item in body["items"]] == detected
        assert {item["source"] for item in body["items"]} == {"detected"}
    else:  # nothing detected: the whole photo is the one item, and the JSON says so
        (item,) = body["items"]
        assert item["source"] == "whole_image" and item["box"] == [0, 0, 480, 300]
        assert item["score"] is None and item["category"] is None
    assert all(len(item["products"]) == 3 for item in body["items"])


@pytest.mark.parametrize(
    "image, status, message",
    [
        (b"this is not an image", 415, "not a supported image"),
        (b"", 400, "empty"),
        (b"\x89PNG\r\n\x1a\n broken", 422, "damaged"),
    ],
)
def test_detect_refuses_bad_input_with_a_4xx(server, image, status, message):
    response = post(server, "/detect", image)
    assert response.status_code == status, response.text
    assert message in response.text


def test_detect_refuses_oversized_and_missing_uploads(server):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 600, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert len(buffer.getvalue()) > MAX_UPLOAD_BYTES
    assert post(server, "/detect", buffer.getvalue()).status_code == 413
    missing = httpx.post(f"{server}/detect", data={"top_k": "3"}, timeout=30)
    assert 400 <= missing.status_code < 500, missing.text


# --- several items in one photo: needs a detector that has learnt garments -----------------------


@pytest.mark.parametrize("background", ["plain", "cluttered"])
def test_each_item_of_a_photo_is_found(trained_detector, photo_server, photo_catalogue, background):
    paths = pasted_paths(photo_catalogue)
    photo = compose([Image.open(path).convert("RGB") for path in paths], background)
    response = post(photo_server, "/search", jpeg(photo), top_k=10)
    assert response.status_code == 200, response.text
    body = response.json()
    items = body["items"]
    assert sum(item["source"] == "detected" for item in items) >= 2, items
    assert all(len(item["products"]) == 10 for item in items)
    assert_inside(items, photo.width, photo.height)
    found = {product["offer_id"] for item in items for product in item["products"]}
    for path in paths:
        offer_id = f"{path.parent.name}/{path.stem}"
        assert offer_id in found, f"{offer_id} is in no item's top 10: {[item['box'] for item in items]}"
