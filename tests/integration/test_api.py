"""The mobile API end to end, behind a real `bentoml serve`: inputs, facets, filters, similar-by-product,
operations and errors. The catalogue is `server`'s (drawn garments, priced by `tests.integration.priced`)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import CORS_ORIGIN, SHOP, WRITE_KEY, serve
from tests.integration.priced import DOOMED_OFFERS, DOOMED_SHOP, color_of, currency_of, offer_ids, price_of

pytestmark = pytest.mark.slow

QUERY = "dress/dress-0002"
ERROR_KEYS = {"error", "detail", "field", "request_id"}


class _ImageHandler(BaseHTTPRequestHandler):
    """Serves the catalogue's files at /img/..., and redirects at /to?url=..."""

    catalogue: Path

    def do_GET(self) -> None:
        if self.path.startswith("/to?url="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to?url="))
            self.end_headers()
            return
        path = self.catalogue / self.path.removeprefix("/img/")
        if not self.path.startswith("/img/") or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def image_host(catalogue) -> Iterator[str]:
    """A loopback web server holding the catalogue's photos: where mobile apps' uploads would live."""
    handler = type("Handler", (_ImageHandler,), {"catalogue": catalogue})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def multipart(url: str, image: bytes, path: str = "/search", **fields) -> httpx.Response:
    data = {key: str(value) for key, value in fields.items()}
    return httpx.post(f"{url}{path}", files={"image": ("photo.jpg", image, "image/jpeg")}, data=data, timeout=60)


def as_json(url: str, body: dict, path: str = "/search", **headers) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)


def products(body: dict) -> list[list[tuple[str, float]]]:
    return [[(p["offer_id"], round(p["score"], 4)) for p in item["products"]] for item in body["items"]]


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None, says: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS and body["error"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert body["field"] == field, body
    assert says in body["detail"], body
    return body


@pytest.fixture(scope="module")
def photo(catalogue) -> bytes:
    return (catalogue / f"{QUERY}.jpg").read_bytes()


# --- inputs ---------------------------------------------------------------------------------------


def test_base64_and_url_find_what_multipart_finds(server, image_host, photo):
    by_upload = multipart(server, photo, top_k=5)
    by_base64 = as_json(server, {"image_base64": base64.b64encode(photo).decode(), "top_k": 5})
    data_url = as_json(
        server, {"image_base64": "data:image/jpeg;base64," + base64.b64encode(photo).decode(), "top_k": 5}
    )
    by_url = as_json(server, {"image_url": f"{image_host}/img/{QUERY}.jpg", "top_k": 5})
    for response in (by_upload, by_base64, data_url, by_url):
        assert response.status_code == 200, response.text
    expected = products(by_upload.json())
    assert expected and expected[0]
    assert products(by_base64.json()) == expected == products(data_url.json()) == products(by_url.json())


@pytest.fixture(scope="module")
def unbatched(model_env, catalogue, tmp_path_factory) -> Iterator[str]:
    """The service with the model services' batching off (LOOKALIKE_BATCHING=false: not batchable at all)."""
    with serve(model_env, catalogue, tmp_path_factory.mktemp("unbatched"), {"LOOKALIKE_BATCHING": "false"}) as url:
        yield url


def test_batching_off_gives_the_same_answers(server, unbatched, photo):
    # The load tests' batching-off arm must differ only in speed: same items, same products (of the
    # shop both catalogues hold: `server`'s has another shop besides).
    on, off = (multipart(url, photo, top_k=5, shop=SHOP) for url in (server, unbatched))
    assert on.status_code == off.status_code == 200, (on.text, off.text)
    for batched, single in zip(on.json()["items"], off.json()["items"], strict=True):
        assert [p["offer_id"] for p in batched["products"]] == [p["offer_id"] for p in single["products"]]
        assert np.allclose(
            [p["score"] for p in batched["products"]], [p["score"] for p in single["products"]], atol=1e-4
        )
    detected = [multipart(url, photo, path="/detect").json()["items"] for url in (server, unbatched)]
    assert len(detected[0]) == len(detected[1]) > 0
    assert np.allclose([item["box"] for item in detected[0]], [item["box"] for item in detected[1]], atol=1)


def test_detect_takes_json_too(server, photo):
    by_upload = multipart(server, photo, path="/detect")
    by_base64 = as_json(server, {"image_base64": base64.b64encode(photo).decode()}, path="/detect")
    assert by_upload.status_code == by_base64.status_code == 200, by_upload.text
    assert by_upload.json()["items"] == by_base64.json()["items"]


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/photo.jpg"])
def test_a_redirect_to_a_private_address_is_refused(server, image_host, target):
    response = as_json(server, {"image_url": f"{image_host}/to?url={target}"})
    assert_error(response, 400, "image_url", "image_url", says=target.split("/")[2])


def test_loopback_hosts_not_listed_are_refused(server, image_host):
    port = image_host.rsplit(":", 1)[1]
    response = as_json(server, {"image_url": f"http://localhost:{port}/img/{QUERY}.jpg"})
    assert_error(response, 400, "image_url", "image_url", says="loopback")


def test_a_missing_remote_photo_is_a_422(server, image_host):
    response = as_json(server, {"image_url": f"{image_host}/img/no-such.jpg"})
    assert_error(response, 422, "image_url", "image_url", says="404")


# --- facets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [{"shape": 1, "color": 0}, {"shape": 0, "color": 1}, {"shape": 0.3, "color": 0.7}])
def test_each_product_carries_both_scores_and_their_weighted_mean(server, photo, weights):
    response = multipart(server, photo, top_k=8, weights=f"shape:{weights['shape']},color:{weights['color']}")
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        ranked = item["products"]
        assert len(ranked) == 8
        for product in ranked:
            mean = (weights["shape"] * product["shape_score"] + weights["color"] * product["color_score"]) / sum(
                weights.values()
            )
            assert product["score"] == pytest.approx(mean, abs=1e-4)
        scores = [p["score"] for p in ranked]
        assert scores == sorted(scores, reverse=True)


def test_shape_and_color_facets_rank_differently(server, photo):
    by_shape = as_json(server, {"image_base64": base64.b64encode(photo).decode(), "top_k": 10, "weights": {"shape": 1}})
    by_color = multipart(server, photo, top_k=10, weights='{"shape": 0, "color": 1}')
    assert by_shape.status_code == by_color.status_code == 200, by_shape.text + by_color.text
    shape_item, color_item = by_shape.json()["items"][0], by_color.json()["items"][0]
    assert [p["offer_id"] for p in shape_item["products"]] != [p["offer_id"] for p in color_item["products"]]
    # Each facet ranks by its own score: the best shape match outscores the colour ranking's on shape.
    assert shape_item["products"][0]["shape_score"] >= max(p["shape_score"] for p in color_item["products"]) - 1e-6
    assert color_item["products"][0]["color_score"] >= max(p["color_score"] for p in shape_item["products"]) - 1e-6


# --- filters --------------------------------------------------------------------------------------


def test_price_currency_and_color_filters(server, catalogue, photo):
    prices = {oid: (price_of(i), currency_of(i), color_of(i)) for i, oid in enumerate(offer_ids(catalogue))}
    response = multipart(server, photo, top_k=100, min_price=1500, max_price=2500, currency="RUB", color="red")
    assert response.status_code == 200, response.text
    expected = {
        oid
        for oid, (price, currency, color) in prices.items()
        if 1500 <= price <= 2500 and currency == "RUB" and color == "red"
    }
    for item in response.json()["items"]:
        found = {p["offer_id"] for p in item["products"]}
        assert found == expected
        assert all(
            p["currency"] == "RUB" and 1500 <= p["price"] <= 2500 and p["color"] == "red" for p in item["products"]
        )


@pytest.mark.parametrize(
    "fields, field, accepted",
    [
        ({"shop": "no-such-shop"}, "shop", SHOP),
        ({"currency": "EUR"}, "currency", "RUB, USD"),
        ({"color": "mauve"}, "color", "black, blue, red"),
        ({"gender": "Women"}, "gender", "'women'"),
        ({"category": "no-such-category"}, "category", "GET /categories"),
    ],
)
def test_unknown_filter_values_are_a_400_listing_the_accepted(server, photo, fields, field, accepted):
    assert_error(multipart(server, photo, **fields), 400, "unknown_value", field, says=accepted)


def test_category_by_id_and_russian_alias_roll_up(server, photo):
    by_name = multipart(server, photo, top_k=20, category="dress")
    by_id = multipart(server, photo, top_k=20, category="2")
    by_alias = as_json(server, {"image_base64": base64.b64encode(photo).decode(), "top_k": 20, "category": "платья"})
    assert by_name.status_code == by_id.status_code == by_alias.status_code == 200, by_alias.text
    assert products(by_name.json()) == products(by_id.json()) == products(by_alias.json())
    assert all(p["category"] == "dress" for item in by_name.json()["items"] for p in item["products"])


def test_categories_lists_the_rubricator(server):
    response = httpx.get(f"{server}/categories", timeout=10)
    assert response.status_code == 200
    roots = response.json()["categories"]
    dress = next(child for root in roots for child in root["children"] if child["name"] == "dress")
    assert dress["id"] == 2 and "платья" in dress["aliases"]


# --- similar by product ---------------------------------------------------------------------------


def test_similar_by_product_uses_the_stored_vectors(server):
    url = f"{server}/products/{SHOP}/{QUERY}/similar"
    response = httpx.get(url, params={"top_k": 5}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product"]["offer_id"] == QUERY and body["product"]["score"] == 1.0
    ranked = body["products"]
    assert len(ranked) == 5 and QUERY not in {p["offer_id"] for p in ranked}
    assert [p["score"] for p in ranked] == sorted((p["score"] for p in ranked), reverse=True)
    by_color = httpx.get(url, params={"top_k": 5, "weights": "shape:0,color:1"}, timeout=10).json()["products"]
    assert all(p["score"] == pytest.approx(p["color_score"], abs=1e-5) for p in by_color)
    priced = httpx.get(url, params={"top_k": 50, "currency": "USD"}, timeout=10).json()["products"]
    assert priced and all(p["currency"] == "USD" for p in priced)


def test_similar_to_an_unknown_product_is_a_404(server):
    response = httpx.get(f"{server}/products/{SHOP}/no-such-offer/similar", timeout=10)
    assert_error(response, 404, "not_found", says="no-such-offer")


# --- operations -----------------------------------------------------------------------------------


def test_health_readiness_and_metrics(server, photo):
    assert httpx.get(f"{server}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    assert multipart(server, photo).status_code == 200
    metrics = httpx.get(f"{server}/metrics", timeout=10).text
    for stage in ("decode", "detect", "embed", "store"):
        assert f'lookalike_search_stage_seconds_count{{stage="{stage}"}}' in metrics, stage
    assert 'lookalike_model_queue_seconds_count{model="embedder"}' in metrics
    assert 'lookalike_model_batch_seconds_count{model="embedder"}' in metrics
    assert "bentoml_service_adaptive_batch_size" in metrics


def test_request_ids_are_echoed(server, photo):
    own = multipart(server, photo)
    assert len(own.headers["x-request-id"]) >= 16
    given = httpx.get(f"{server}/categories", headers={"X-Request-ID": "app-42.abc"}, timeout=10)
    assert given.headers["x-request-id"] == "app-42.abc"
    forged = httpx.get(f"{server}/categories", headers={"X-Request-ID": "x y<script>"}, timeout=10)
    assert forged.headers["x-request-id"] != "x y<script>"


def test_cors_allows_the_configured_origin_only(server):
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = httpx.options(f"{server}/search", headers={"Origin": CORS_ORIGIN, **preflight}, timeout=10)
    assert allowed.headers.get("access-control-allow-origin") == CORS_ORIGIN
    other = httpx.options(f"{server}/search", headers={"Origin": "https://evil.example", **preflight}, timeout=10)
    assert other.headers.get("access-control-allow-origin") is None


# --- errors ---------------------------------------------------------------------------------------


def _png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_errors_say_what_to_fix(server, photo):
    b64 = base64.b64encode(photo).decode()
    assert_error(multipart(server, b"this is not an image"), 415, "unsupported_image", "image")
    assert_error(multipart(server, b""), 400, "empty_image", "image")
    assert_error(multipart(server, photo, top_k=0), 422, "invalid_field", "top_k")
    assert_error(multipart(server, photo, top_k=1000), 422, "invalid_field", "top_k", says="100")
    assert_error(multipart(server, photo, top_k="abc"), 422, "invalid_field", "top_k")
    assert_error(multipart(server, photo, weights="shape:2"), 422, "invalid_field", "weights.shape")
    assert_error(multipart(server, photo, weights="shape:0,color:0"), 422, "invalid_field", "weights")
    assert_error(multipart(server, photo, using="color"), 422, "invalid_field", "using", says="unknown field")
    assert_error(as_json(server, {"image_base64": b64, "top_k": True}), 422, "invalid_field", "top_k")
    assert_error(as_json(server, {"image_base64": "%%%"}), 422, "invalid_field", "image_base64")
    assert_error(as_json(server, {"image_base64": b64, "image_url": "http://x.example/a.jpg"}), 422, "invalid_field")
    assert_error(as_json(server, {"top_k": 3}), 422, "invalid_field", says="image_base64")
    assert_error(as_json(server, {"image_base64": b64, "min_price": 10, "max_price": 5}), 422, "invalid_field")
    assert_error(as_json(server, {"image_base64": b64, "shop": ""}), 400, "unknown_value", "shop")


def test_wrong_fields_and_formats_are_4xx(server, photo):
    wrong_field = httpx.post(f"{server}/search", files={"photo": ("p.jpg", photo, "image/jpeg")}, timeout=30)
    assert_error(wrong_field, 400, "missing_image", "image", says="'photo'")
    text_image = httpx.post(
        f"{server}/search", data={"image": "https://x.example/a.jpg"}, files={"x": ("", b"")}, timeout=30
    )
    assert text_image.status_code == 400 and text_image.json()["field"] in {"image", None}, text_image.text
    bad_json = httpx.post(
        f"{server}/search", content=b"{not json", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert_error(bad_json, 400, "invalid_json")
    plain = httpx.post(f"{server}/search", content=photo, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert_error(plain, 415, "unsupported_media_type", says="multipart/form-data")
    no_boundary = httpx.post(
        f"{server}/search", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}, timeout=30
    )
    assert_error(no_boundary, 400, "bad_request")
    assert_error(httpx.get(f"{server}/no-such-endpoint", timeout=10), 404, "not_found")
    assert_error(httpx.get(f"{server}/search", timeout=10), 405, "method_not_allowed")


def test_oversized_bodies_are_413(server, photo):
    big = _png(600)
    assert_error(multipart(server, big), 413, "payload_too_large")
    assert_error(as_json(server, {"image_base64": base64.b64encode(big).decode()}), 413, "payload_too_large")
    # The service is unharmed.
    assert multipart(server, photo, top_k=1).status_code == 200


# --- an item searched again -----------------------------------------------------------------------


def test_an_items_query_searches_it_again_without_the_photo(server, photo):
    first = multipart(server, photo, top_k=5, weights="shape:1,color:0").json()["items"][0]
    again = httpx.post(
        f"{server}/search/item", json={"query": first["query"], "top_k": 5, "weights": {"shape": 1}}, timeout=30
    )
    assert again.status_code == 200, again.text
    assert [p["offer_id"] for p in again.json()["products"]] == [p["offer_id"] for p in first["products"]]
    np.testing.assert_allclose(
        [p["score"] for p in again.json()["products"]], [p["score"] for p in first["products"]], atol=1e-5
    )
    by_color = httpx.post(
        f"{server}/search/item", json={"query": first["query"], "top_k": 5, "weights": {"color": 1}}, timeout=30
    ).json()["products"]
    assert all(p["score"] == pytest.approx(p["color_score"], abs=1e-5) for p in by_color)
    red = httpx.post(f"{server}/search/item", json={"query": first["query"], "color": "red"}, timeout=30).json()
    assert red["products"] and all(p["color"] == "red" for p in red["products"])


@pytest.mark.parametrize("query", ["nonsense", "v1.", "v1.AAAA", "v1.%%%"])
def test_a_forged_query_is_a_422(server, query):
    response = httpx.post(f"{server}/search/item", json={"query": query}, timeout=30)
    assert_error(response, 422, "invalid_field", "query")


def test_item_search_validates_like_search(server):
    assert_error(httpx.post(f"{server}/search/item", json={"top_k": 3}, timeout=30), 422, "invalid_field", "query")
    response = httpx.post(f"{server}/search/item", json={"query": "v1.AAAA", "gender": "Women"}, timeout=30)
    assert_error(response, 400, "unknown_value", "gender")


# --- shops and keys -------------------------------------------------------------------------------


def test_shops_are_listed_and_deleting_one_needs_a_write_key(server):
    shops = {s["shop"]: s["offers"] for s in httpx.get(f"{server}/shops", timeout=10).json()["shops"]}
    assert shops[DOOMED_SHOP] == DOOMED_OFFERS and shops[SHOP] > DOOMED_OFFERS
    url = f"{server}/shops/{DOOMED_SHOP}"
    assert_error(httpx.delete(url, timeout=10), 401, "unauthorized", says="API key")
    assert_error(httpx.delete(url, headers={"X-API-Key": "guess"}, timeout=10), 403, "forbidden")
    assert_error(
        httpx.delete(f"{server}/shops/no-such-shop", headers={"X-API-Key": WRITE_KEY}, timeout=10), 404, "not_found"
    )
    deleted = httpx.delete(url, headers={"Authorization": f"Bearer {WRITE_KEY}"}, timeout=10)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"shop": DOOMED_SHOP, "deleted": DOOMED_OFFERS}
    shops = {s["shop"] for s in httpx.get(f"{server}/shops", timeout=10).json()["shops"]}
    assert DOOMED_SHOP not in shops and SHOP in shops
    response = as_json(server, {"image_url": "http://127.0.0.1:1/x.jpg", "shop": DOOMED_SHOP})
    assert_error(response, 400, "unknown_value", "shop")


def test_the_detail_facet_finds_the_same_item(server, photo, embedder_card):
    response = multipart(server, photo, top_k=5, weights="detail:1")
    if "detail" not in embedder_card.dims:
        assert_error(response, 400, "invalid_field", "weights.detail", "no detail vector")
        return
    assert response.status_code == 200, response.text
    products = response.json()["items"][0]["products"]
    assert products[0]["offer_id"] == QUERY  # the photo itself is in the catalogue
    for product in products:
        assert product["score"] == pytest.approx(product["detail_score"], abs=1e-6)
    ranked = [product["detail_score"] for product in products]
    assert ranked == sorted(ranked, reverse=True)
    # Every search carries all three scores, whatever it weighs.
    by_shape = multipart(server, photo, top_k=5, weights="shape:1,color:0").json()["items"][0]["products"]
    assert all(isinstance(product["detail_score"], float) for product in by_shape)
    assert_error(multipart(server, photo, weights="detail:2"), 422, "invalid_field", "weights.detail")
