"""The request mix of a shop's mobile app, shared by the scenario locustfiles (`locustfile_*.py`).

70% photo searches (`POST /search`, a photo of 1 to 3 items), 20% similar-by-product
(`GET /products/demo/{offer_id}/similar`), 10% detections (`POST /detect`). Query photos are the
validation photos (never in the demo catalogue); a 2- or 3-item photo is 2 or 3 of them pasted side
by side, made once, seeded. Offer ids are the demo catalogue's (`<class>/<file stem>` of the train
photos). Every response is checked (status, schema keys, non-empty results); anything else is a
failure, and a 503 is a failure named "shed" with its Retry-After, so the failure table counts them.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from urllib.parse import quote

from locust import HttpUser, between, task
from PIL import Image

from lookalike.settings import get_settings

SHOP = "demo"
# Share of photo searches by the number of items in the photo.
ITEMS_PER_PHOTO = {1: 0.5, 2: 0.3, 3: 0.2}
PHOTOS_PER_SIZE = 60
# Items the service found per photo search, by items pasted in the photo: {pasted: [searches, items found]}.
FOUND: dict[int, list[int]] = {items: [0, 0] for items in ITEMS_PER_PHOTO}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def compose(images: list[Image.Image], height: int = 480) -> Image.Image:
    """Photos side by side on white, each scaled to `height`: one photo of len(images) items."""
    scaled = [image.convert("RGB").resize((round(image.width * height / image.height), height)) for image in images]
    gap = height // 12
    canvas = Image.new(
        "RGB", (sum(image.width for image in scaled) + gap * (len(scaled) + 1), height + 2 * gap), "white"
    )
    x = gap
    for image in scaled:
        canvas.paste(image, (x, gap))
        x += image.width + gap
    return canvas


def query_photos(folder: Path, per_size: int = PHOTOS_PER_SIZE, seed: int = 0) -> dict[int, list[bytes]]:
    """{items: [JPEG bytes]}: single validation photos and 2- and 3-item compositions of them."""
    paths = sorted(folder.glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no query photos in {folder} (LOOKALIKE_CLOTHING_DIR/validation)")
    rng = random.Random(seed)
    photos: dict[int, list[bytes]] = {1: [path.read_bytes() for path in rng.sample(paths, min(per_size, len(paths)))]}
    for items in (2, 3):
        photos[items] = []
        for _ in range(per_size):
            chosen = rng.sample(paths, items)  # different photos; classes may repeat, as in a real look
            photos[items].append(_jpeg(compose([Image.open(path) for path in chosen])))
    return photos


def catalogue_offers(folder: Path) -> list[str]:
    """The demo catalogue's offer ids: `<class>/<file stem>` of the photos `make demo-catalog` indexed."""
    offers = [f"{path.parent.name}/{path.stem}" for path in sorted(folder.glob("*/*.jpg"))]
    if not offers:
        raise SystemExit(f"no catalogue photos in {folder} (LOOKALIKE_CLOTHING_DIR/train)")
    return offers


PHOTOS = query_photos(get_settings().clothing_dir / "validation")
OFFERS = catalogue_offers(get_settings().clothing_dir / "train")


def check(response, keys: tuple[str, ...], nonempty: str | None) -> None:
    """Mark a `catch_response` response a failure unless it is a 200 with `keys` and a non-empty `nonempty`."""
    if response.status_code == 503:
        response.failure(f"shed: 503 Retry-After={response.headers.get('Retry-After', 'missing')}")
        return
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {response.text[:120]}")
        return
    try:
        body = response.json()
    except ValueError:
        response.failure("not JSON")
        return
    missing = [key for key in keys if key not in body]
    if missing:
        response.failure(f"missing keys {missing}")
    elif nonempty is not None and not body[nonempty]:
        response.failure(f"empty {nonempty}")
    else:
        response.success()


class Shopper(HttpUser):
    """One app user: a request, then 0.5-1.5 s looking at the answer (so users ~ requests/s at low load)."""

    wait_time = between(0.5, 1.5)

    @task(70)
    def search_photo(self) -> None:
        items = random.choices(list(ITEMS_PER_PHOTO), weights=list(ITEMS_PER_PHOTO.values()))[0]
        with self.client.post(
            "/search",
            files={"image": ("photo.jpg", random.choice(PHOTOS[items]), "image/jpeg")},
            data={"top_k": "10"},
            name=f"/search {items} item(s)",
            catch_response=True,
        ) as response:
            check(response, ("items", "width", "height"), "items")
            if response.status_code == 200 and response.json().get("items"):
                found = response.json()["items"]
                FOUND[items][0] += 1
                FOUND[items][1] += len(found)
                if not all(item.get("products") for item in found):
                    response.failure("an item without products")

    @task(20)
    def similar_product(self) -> None:
        offer = random.choice(OFFERS)
        with self.client.get(
            f"/products/{SHOP}/{quote(offer, safe='')}/similar",
            params={"top_k": "10"},
            name="/products/{shop}/{offer_id}/similar",
            catch_response=True,
        ) as response:
            check(response, ("product", "products"), "products")

    @task(10)
    def detect(self) -> None:
        items = random.choices(list(ITEMS_PER_PHOTO), weights=list(ITEMS_PER_PHOTO.values()))[0]
        with self.client.post(
            "/detect",
            files={"image": ("photo.jpg", random.choice(PHOTOS[items]), "image/jpeg")},
            name="/detect",
            catch_response=True,
        ) as response:
            # An empty `items` is a valid answer (nothing found); the schema is what is checked.
            check(response, ("items", "width", "height"), None)
