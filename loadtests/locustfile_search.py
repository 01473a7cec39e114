"""Search under load: shoppers uploading photos to POST /search.

    make demo &                     # the service on http://127.0.0.1:3000
    .venv/bin/locust -f loadtests/locustfile_search.py --host http://127.0.0.1:3000 \\
        --headless -u 20 -r 10 -t 30s --csv var/loadtest/search --only-summary

Photos come from LOOKALIKE_CLOTHING_DIR/validation (the demo's queries; never in its catalogue),
or generated ones when that folder is missing. Locust exits 1 if any request failed.
"""

from __future__ import annotations

import io
import random

import numpy as np
from locust import HttpUser, between, task

from lookalike.settings import get_settings
from lookalike.synthetic import SILHOUETTES, draw_garment


def load_photos(limit: int = 200) -> list[bytes]:
    folder = get_settings().clothing_dir / "validation"
    paths = sorted(folder.glob("*/*.jpg"))[:limit] if folder.is_dir() else []
    if paths:
        return [path.read_bytes() for path in paths]
    rng = np.random.default_rng(0)
    photos = []
    for category in SILHOUETTES:
        buffer = io.BytesIO()
        draw_garment(category, rng).save(buffer, "JPEG", quality=85)
        photos.append(buffer.getvalue())
    return photos


PHOTOS = load_photos()


class Shopper(HttpUser):
    wait_time = between(0.5, 2.0)

    @task(8)
    def search_by_shape(self) -> None:
        self._search({"top_k": "20"})

    @task(2)
    def search_by_colour_in_a_category(self) -> None:
        self._search({"top_k": "10", "weights": "shape:0,color:1"})

    def _search(self, fields: dict[str, str]) -> None:
        photo = random.choice(PHOTOS)
        with self.client.post(
            "/search",
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            data=fields,
            name=f"/search using={fields.get('using', 'shape')}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif not response.json()["items"][0]["products"]:
                response.failure("no products")
