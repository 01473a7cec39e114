"""The page in a real browser (Debian's Chromium driven by Playwright) against `bentoml serve`.

A multi-item photo of real garments (`photo_server`, the shipped detector) for items, boxes, the
facet slider and "similar to this product"; the priced generated catalogue (`server`) for the
filters and the error states; at phone (375x812) and desktop (1280x900) sizes. Every page must
fetch from its own server only, and throw no JavaScript error.

Screenshots are kept in var/test-artifacts/page/ (overwritten by each run):
    desktop-items.png       the photo with a labelled box on each item, the second item picked, its products
    desktop-colour.png      the same item with the slider at "same colour and pattern": another order
    desktop-similar.png     "similar to this product": the product, then the products like it
    desktop-no-match.png    filters that no product matches, in words
    desktop-too-large.png   the server's 413 detail for a photo of too many pixels
    phone-photo.png         375 px: the photo, boxes and item buttons
    phone-results.png       375 px: an item tapped, its products
    phone-nothing-found.png 375 px: a photo with no item in it
"""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.integration.conftest import MAX_UPLOAD_BYTES, SHOP, compose, pasted_paths

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "page"
# Reduced motion: the page scrolls without animating, so a test need not wait for it.
DESKTOP = {"viewport": {"width": 1280, "height": 900}, "reduced_motion": "reduce"}
PHONE = {**DESKTOP, "viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True}
TOP_K = 12  # the page's default "Show"
CARDS = "#products .card"
OFFER_IDS = "cards => cards.map(card => card.dataset.offerId)"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; `make test` does it as root)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable]:
    """`open_page(server_url, PHONE or DESKTOP)`: the page, loaded and ready; on teardown, the page must
    have thrown or logged no error (a Content-Security-Policy violation included) and requested nothing
    but its own server."""
    opened = []

    def _open(url: str, device: dict):
        context = browser.new_context(**device)
        page = context.new_page()
        page.set_default_timeout(15_000)
        visit = {"origin": url, "requests": [], "errors": []}
        page.on("request", lambda request: visit["requests"].append(request.url))
        page.on("pageerror", lambda error: visit["errors"].append(str(error)))
        # Console errors but the browser's own line for each 4xx/5xx answer (the page words those).
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and not message.text.startswith("Failed to load resource")
                and visit["errors"].append(message.text)
            ),
        )
        opened.append((context, visit))
        page.goto(f"{url}/ui/")
        page.wait_for_selector("html[data-ready]")
        return page

    yield _open
    for context, visit in opened:
        context.close()
        assert visit["errors"] == [], visit["errors"]
        elsewhere = [url for url in visit["requests"] if not url.startswith((visit["origin"] + "/", "blob:", "data:"))]
        assert elsewhere == [], f"the page fetched from elsewhere: {elsewhere}"


@pytest.fixture(scope="module")
def look(photo_catalogue, tmp_path_factory):
    """Three real garments side by side on one photo (trousers, a t-shirt, shoes)."""
    path = tmp_path_factory.mktemp("look") / "three-items.jpg"
    compose([Image.open(photo).convert("RGB") for photo in pasted_paths(photo_catalogue)], "plain").save(path)
    return path


def upload(page, path, selector="#photo-input"):
    """Choose `path` as the photo; the /search answer's JSON once the page has shown it."""
    with page.expect_response(lambda r: urlsplit(r.url).path == "/search") as answer:
        page.set_input_files(selector, str(path))
    body = answer.value.json()
    page.wait_for_selector("#results:not([aria-busy])")
    return body


def shown(page) -> list[str]:
    return page.eval_on_selector_all(CARDS, OFFER_IDS)


def ids(products: list[dict]) -> list[str]:
    return [product["offer_id"] for product in products]


def wait_shown(page, expected: list[str]) -> None:
    page.wait_for_function(
        f"ids => JSON.stringify(({OFFER_IDS})([...document.querySelectorAll('{CARDS}')])) === JSON.stringify(ids)",
        arg=expected,
    )


def is_item_search(request) -> bool:
    return request.method == "POST" and urlsplit(request.url).path == "/search/item"


def page_weights(server: str, colour: float) -> dict[str, float]:
    """The weights the page sends with the slider at `colour` (0..1) and "This very item first" as it
    starts: on, with the default's detail share, when the server's default weighs `detail`."""
    defaults = httpx.get(f"{server}/ui/config.json", timeout=10).json()["default_weights"]
    total = defaults.get("shape", 0) + defaults.get("color", 0) + defaults.get("detail", 0)
    detail = defaults.get("detail", 0) / total
    weights = {"shape": js_round((1 - detail) * (1 - colour)), "color": js_round((1 - detail) * colour)}
    return {**weights, "detail": js_round(detail)} if detail > 0 else weights


def js_round(value: float) -> float:
    """The page's rounding to 0.01 (Math.round: halves up, where Python's round() goes to even)."""
    return math.floor(value * 100 + 0.5) / 100


def test_items_facet_and_similar(trained_detector, open_page, photo_server, look):
    page = open_page(photo_server, DESKTOP)
    body = upload(page, look)

    # A labelled box over the photo on every detected item, and a radio button per item.
    detected = [item for item in body["items"] if item["source"] == "detected"]
    assert len(detected) >= 2
    boxes = page.locator("#boxes .box")
    assert boxes.count() == len(detected)
    photo = page.locator("#preview").bounding_box()
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        assert box["width"] > 10 and box["height"] > 10
        assert photo["x"] - 1 <= box["x"] and box["x"] + box["width"] <= photo["x"] + photo["width"] + 1
        assert photo["y"] - 1 <= box["y"] and box["y"] + box["height"] <= photo["y"] + photo["height"] + 1
        assert boxes.nth(i).inner_text().startswith(f"{i + 1}. ")
    radios = page.locator("#items [role=radio]")
    assert radios.count() == len(body["items"])
    # The best item is picked at first: its products, in the API's order, with everything a card shows.
    assert radios.nth(0).get_attribute("aria-checked") == "true"
    assert shown(page) == ids(body["items"][0]["products"])
    card = page.locator(CARDS).first
    assert card.locator("img").get_attribute("loading") == "lazy"
    assert card.locator("img").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert SHOP in card.locator(".meta").inner_text()
    assert {"score", "shape", "colour"} <= set(card.locator(".scores dt").all_inner_texts())

    # Pick the second item by its box: its products, from the /search answer (no request).
    page.locator('#boxes .box[data-index="1"]').click()
    assert radios.nth(1).get_attribute("aria-checked") == "true"
    wait_shown(page, ids(body["items"][1]["products"]))
    # The keyboard moves through the items (a radio group: one tab stop, arrow keys).
    radios.nth(1).focus()
    page.keyboard.press("ArrowRight")
    wait_shown(page, ids(body["items"][2 % len(body["items"])]["products"]))
    page.keyboard.press("ArrowLeft")
    wait_shown(page, ids(body["items"][1]["products"]))
    assert page.evaluate("document.activeElement.dataset.index") == "1"
    page.screenshot(path=ARTIFACTS / "desktop-items.png", full_page=True)

    # The slider to "same colour and pattern": one POST /search/item with the item's token, a new order.
    before = shown(page)
    with page.expect_request(is_item_search) as sent:
        page.focus("#facet")
        page.keyboard.press("End")
    request = sent.value
    assert request.post_data_json == {
        "query": body["items"][1]["query"],
        "top_k": TOP_K,
        "weights": page_weights(photo_server, 1.0),
    }
    by_colour = ids(request.response().json()["products"])
    wait_shown(page, by_colour)
    assert by_colour != before
    colour_share = round(page_weights(photo_server, 1.0)["color"] * 100)
    assert f"colour and pattern {colour_share}%" in page.inner_text("#facet-value")
    page.screenshot(path=ARTIFACTS / "desktop-colour.png", full_page=True)
    # Quick moves are debounced: fewer requests than moves (one, unless the machine stalls), the last
    # for where the slider stopped.
    item_searches = []
    page.on("request", lambda r: is_item_search(r) and item_searches.append(r))
    expected = page_weights(photo_server, 0.75)
    with page.expect_request(lambda r: is_item_search(r) and r.post_data_json["weights"] == expected) as sent:
        for _ in range(5):
            page.keyboard.press("ArrowLeft")
    wait_shown(page, ids(sent.value.response().json()["products"]))
    assert 1 <= len(item_searches) < 5 and item_searches[-1].post_data_json == sent.value.post_data_json

    # "Similar to this product" on a result: GET /products/{shop}/{offer_id}/similar with the controls.
    product = page.locator(CARDS).first
    offer_id = product.get_attribute("data-offer-id")
    with page.expect_response(lambda r: "/similar" in r.url) as answer:
        product.locator("button.similar").click()
    url = urlsplit(answer.value.url)
    assert url.path == f"/products/{SHOP}/{quote(offer_id, safe='')}/similar"
    as_text = ",".join(f"{name}:{value:g}" for name, value in expected.items())
    assert f"weights={quote(as_text, safe='')}" in url.query and f"top_k={TOP_K}" in url.query
    similar = answer.value.json()
    wait_shown(page, ids(similar["products"]))
    assert page.locator("#anchor .card").get_attribute("data-offer-id") == offer_id
    assert offer_id not in shown(page)
    assert "Similar to" in page.inner_text("#results-heading")
    page.screenshot(path=ARTIFACTS / "desktop-similar.png", full_page=True)
    # A control changed now searches the product's similar ones again; "Back" returns to the item.
    with page.expect_response(lambda r: "/similar" in r.url and "top_k=24" in r.url) as answer:
        page.select_option("#top-k", "24")
    wait_shown(page, ids(answer.value.json()["products"]))
    with page.expect_request(is_item_search):
        page.click("#back")
    page.wait_for_selector("#anchor", state="hidden")
    # The photo went up once; every other search was by token or by product.
    assert sum(urlsplit(r).path == "/search" for r in page.evaluate("performance.getEntries().map(e => e.name)")) == 1


def test_phone(trained_detector, open_page, photo_server, look, tmp_path):
    page = open_page(photo_server, PHONE)
    assert page.locator("label.camera").is_visible()  # the camera input (capture) on a touch screen
    assert page.get_attribute("#camera-input", "capture") == "environment"
    body = upload(page, look, "#camera-input")
    assert page.locator("#boxes .box").count() >= 2
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375  # nothing wider than the phone
    for i in range(page.locator("#items [role=radio]").count()):
        assert page.locator("#items [role=radio]").nth(i).bounding_box()["height"] >= 44  # a finger's target
    page.screenshot(path=ARTIFACTS / "phone-photo.png")
    # Tapping an item shows its products, scrolled into view.
    page.locator("#items [role=radio]").nth(1).tap()
    wait_shown(page, ids(body["items"][1]["products"]))
    page.wait_for_function("() => document.getElementById('results').getBoundingClientRect().top < 100")
    assert page.locator(CARDS).first.is_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.screenshot(path=ARTIFACTS / "phone-results.png")

    # A photo with nothing in it: said in words, and the whole photo's products shown.
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 400), (200, 200, 200)).save(blank)
    body = upload(page, blank)
    assert [item["source"] for item in body["items"]] == ["whole_image"]
    assert "Nothing found in this photo" in page.inner_text("#status")
    assert page.inner_text("#photo-caption") == "Nothing found in this photo."
    assert page.locator("#boxes .box").count() == 0
    assert shown(page) == ids(body["items"][0]["products"]) != []
    assert page.locator("#photo-caption").is_visible()
    page.screenshot(path=ARTIFACTS / "phone-nothing-found.png")


def test_filters_search_again_without_the_photo(open_page, server, catalogue):
    page = open_page(server, DESKTOP)
    body = upload(page, catalogue / "skirt" / "skirt-0001.jpg")
    assert shown(page) == ids(body["items"][0]["products"])
    query = body["items"][0]["query"]

    # Price: every product shown within it. The slider starts at the server's default weights.
    with page.expect_request(is_item_search) as sent:
        page.fill("#max-price", "1500")
    defaults = httpx.get(f"{server}/ui/config.json", timeout=10).json()["default_weights"]
    split = defaults.get("shape", 0) + defaults.get("color", 0)
    colour = round(20 * defaults.get("color", 0) / split) / 20 if split else 0.25  # the slider's 5% steps
    assert sent.value.post_data_json == {
        "query": query,
        "top_k": TOP_K,
        "weights": page_weights(server, colour),
        "max_price": 1500,
    }
    products = sent.value.response().json()["products"]
    wait_shown(page, ids(products))
    prices = [float(p) for p in page.eval_on_selector_all(f"{CARDS} .price", "ps => ps.map(p => p.dataset.price)")]
    assert prices and max(prices) <= 1500

    # Category: found by its Russian name, the English title shown, sent by its rubricator name.
    everything = page.locator("#category option").count()
    page.fill("#category-find", "юбк")
    options = page.locator("#category option:not([value=''])")
    assert 0 < options.count() < everything - 1
    assert any("Skirts" in text for text in options.all_inner_texts())
    skirts = page.eval_on_selector("#category", "s => [...s.options].find(o => o.text.includes('Skirts')).value")
    with page.expect_request(is_item_search) as sent:
        page.select_option("#category", skirts)
    assert sent.value.post_data_json["category"] == skirts
    wait_shown(page, ids(sent.value.response().json()["products"]))

    # Filters no product matches: said in words.
    page.fill("#max-price", "")
    with page.expect_request(is_item_search):
        page.fill("#min-price", "999999")
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'empty'")
    assert "No products match these filters" in page.inner_text("#status")
    assert page.locator(CARDS).count() == 0
    page.screenshot(path=ARTIFACTS / "desktop-no-match.png", full_page=True)

    # An unknown shop: the API's detail, and the field marked.
    with page.expect_request(is_item_search):
        page.click("button[type=reset]")
    page.wait_for_selector(CARDS)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/search/item") as answer:
        page.fill("#shop", "no-such-shop")
    assert answer.value.status == 400
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'")
    assert answer.value.json()["detail"] in page.inner_text("#status")
    assert page.get_attribute("#shop", "aria-invalid") == "true"
    # The shop the results came from is offered.
    assert SHOP in page.eval_on_selector_all("#shops option", "os => os.map(o => o.value)")


def test_error_states(open_page, server, tmp_path):
    page = open_page(server, DESKTOP)
    status = page.locator("#status")

    # Not an image: the server's detail.
    notes = tmp_path / "notes.jpg"
    notes.write_text("just text")
    with page.expect_response(lambda r: urlsplit(r.url).path == "/search") as answer:
        page.set_input_files("#photo-input", str(notes))
    assert answer.value.status == 415
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'")
    assert answer.value.json()["detail"] in status.inner_text()
    assert page.locator(CARDS).count() == 0

    # Over the upload limit: refused in the page, before sending.
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(2 * MAX_UPLOAD_BYTES))
    sent = []
    page.on("request", lambda r: sent.append(r.url))
    page.set_input_files("#photo-input", str(big))
    page.wait_for_function("() => document.getElementById('status').innerText.includes('too large')")
    assert f"up to {-(-MAX_UPLOAD_BYTES // 1024)} KB" in status.inner_text()
    assert sent == []

    # Small to send but too many pixels: the server's 413 detail.
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/search") as answer:
        page.set_input_files("#photo-input", str(huge))
    assert answer.value.status == 413
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'")
    assert "too large" in status.inner_text() and "8000x7000 pixels" in status.inner_text()
    page.screenshot(path=ARTIFACTS / "desktop-too-large.png", full_page=True)

    # The service overloaded (503 with Retry-After), and no answer at all: said in words.
    small = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 30, 30)).save(small, "JPEG")
    photo = {"name": "red.jpg", "mimeType": "image/jpeg", "buffer": small.getvalue()}
    overloaded = {"error": "unavailable", "detail": "the embedder is unreachable", "field": None, "request_id": "r1"}
    page.route(
        "**/search",
        lambda route: route.fulfill(
            status=503, headers={"Retry-After": "3"}, content_type="application/json", body=json.dumps(overloaded)
        ),
    )
    page.set_input_files("#photo-input", files=[photo])
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'")
    assert "the embedder is unreachable" in status.inner_text() and "in 3 s" in status.inner_text()
    page.unroute("**/search")
    page.route("**/search", lambda route: route.abort())
    page.set_input_files("#photo-input", files=[photo])
    page.wait_for_function("() => document.getElementById('status').innerText.includes('did not answer')")


def test_drop_and_paste(open_page, server, catalogue):
    page = open_page(server, DESKTOP)
    for event, name in (("drop", "dress-0002"), ("paste", "shoes-0001")):
        photo = (catalogue / name.split("-")[0] / f"{name}.jpg").read_bytes()
        with page.expect_response(lambda r: urlsplit(r.url).path == "/search") as answer:
            page.evaluate(
                """([event, name, data]) => {
                    const transfer = new DataTransfer();
                    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                    transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
                    const init = { bubbles: true, cancelable: true };
                    document.body.dispatchEvent(event === "drop"
                        ? new DragEvent("drop", { ...init, dataTransfer: transfer })
                        : new ClipboardEvent("paste", { ...init, clipboardData: transfer }));
                }""",
                [event, f"{name}.jpg", base64.b64encode(photo).decode()],
            )
        assert answer.value.ok
        wait_shown(page, ids(answer.value.json()["items"][0]["products"]))
        assert page.locator("#preview").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
