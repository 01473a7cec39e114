"""The try-it page in a real browser (Debian's Chromium driven by Playwright) against `bentoml serve`."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from tests.integration.conftest import compose, pasted_paths

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


@pytest.fixture(scope="module")
def page():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; `make test` does it as root)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1200, "height": 900})
        browser.close()


def test_upload_shows_the_same_product_first(page, server, catalogue, tmp_path):
    page.goto(f"{server}/ui/")
    page.set_input_files("#image", str(catalogue / "skirt" / "skirt-0001.jpg"))
    page.fill("#top_k", "6")
    with page.expect_response("**/search") as answer:
        page.click("button[type=submit]")
    body = answer.value.json()
    page.wait_for_selector(".product")
    # One section of products per item of the response, each with its top_k products.
    items = page.locator(".item")
    assert items.count() == len(body["items"])
    assert all(items.nth(i).locator(".product").count() == 6 for i in range(items.count()))
    assert any("skirt-0001" in items.nth(i).locator(".product").first.inner_text() for i in range(items.count()))
    assert "products in" in page.inner_text("#status")
    # A box with its label over the photo for every detected item; none for the whole-photo fallback.
    detected = [item for item in body["items"] if item["source"] == "detected"]
    boxes = page.locator("#photo .box")
    assert boxes.count() == len(detected)
    for i, item in enumerate(detected):
        assert item["category"] in boxes.nth(i).inner_text()
        assert boxes.nth(i).bounding_box()["width"] > 0
    # The product image is served and decodes in the browser.
    assert page.eval_on_selector(".product img", "img => img.decode().then(() => img.naturalWidth)") > 0
    page.screenshot(path=tmp_path / "page.png", full_page=True)


def test_detected_items_are_boxed_on_the_photo(trained_detector, page, photo_server, photo_catalogue, tmp_path):
    photo = tmp_path / "three-items.jpg"
    compose([Image.open(path).convert("RGB") for path in pasted_paths(photo_catalogue)], "plain").save(photo)
    page.goto(f"{photo_server}/ui/")
    page.set_input_files("#image", str(photo))
    with page.expect_response("**/search") as answer:
        page.click("button[type=submit]")
    body = answer.value.json()
    page.wait_for_selector(".product")
    detected = [item for item in body["items"] if item["source"] == "detected"]
    boxes = page.locator("#photo .box")
    assert boxes.count() == len(detected) >= 2
    assert page.locator(".item").count() == len(body["items"])
    shown = page.locator("#preview").bounding_box()
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        assert box["x"] >= shown["x"] - 1 and box["x"] + box["width"] <= shown["x"] + shown["width"] + 1
        assert box["y"] >= shown["y"] - 1 and box["y"] + box["height"] <= shown["y"] + shown["height"] + 1
    page.screenshot(path=tmp_path / "items.png", full_page=True)


def test_bad_file_shows_the_error(page, server, tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("just text")
    page.goto(f"{server}/ui/")
    page.set_input_files("#image", str(not_an_image))
    page.click("button[type=submit]")
    page.wait_for_selector("#status.error")
    assert "400" in page.inner_text("#status") and "not a supported image" in page.inner_text("#status")
    assert page.locator(".product").count() == 0
