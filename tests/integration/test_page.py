"""The try-it page in a real browser (Debian's Chromium driven by Playwright) against `bentoml serve`."""

from __future__ import annotations

import shutil

import pytest

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
    page.click("button[type=submit]")
    page.wait_for_selector(".product")
    cards = page.locator(".product")
    assert cards.count() == 6
    assert "skirt-0001" in cards.first.inner_text()
    assert "products in" in page.inner_text("#status")
    # The product image is served and decodes in the browser.
    assert page.eval_on_selector(".product img", "img => img.decode().then(() => img.naturalWidth)") > 0
    page.screenshot(path=tmp_path / "page.png", full_page=True)


def test_bad_file_shows_the_error(page, server, tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("just text")
    page.goto(f"{server}/ui/")
    page.set_input_files("#image", str(not_an_image))
    page.click("button[type=submit]")
    page.wait_for_selector("#status.error")
    assert "400" in page.inner_text("#status") and "not a supported image" in page.inner_text("#status")
    assert page.locator(".product").count() == 0
