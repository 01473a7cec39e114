"""Lookalike's API: photo in, similar catalogue products out.

    bentoml serve              # http://127.0.0.1:3000 — POST /search, the page at /ui

Request path: upload -> decode (4xx on bad input) -> preset pixels -> Embedder (batched) ->
vector store -> JSON. The embedded store (Qdrant Edge) lives in this process, so this service
runs one worker; a Qdrant server (LOOKALIKE_QDRANT_URL) lifts that limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from pathlib import Path
from typing import Literal

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument

from bentos.embedder import Embedder
from lookalike.images import ImageError, decode_image
from lookalike.preprocess import EvalPreset
from lookalike.schemas import Item, Product, SearchResponse
from lookalike.settings import get_settings
from lookalike.web import build_ui_app

log = logging.getLogger(__name__)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@bentoml.service(name="lookalike", workers=1, traffic={"timeout": 60})
@bentoml.asgi_app(build_ui_app(get_settings()), path="/ui")
class Lookalike:
    embedder = bentoml.depends(Embedder)
    model = bentoml.models.BentoModel(get_settings().embedder_model)

    def __init__(self) -> None:
        from lookalike.store import open_store
        from lookalike.taxonomy import load_rubricator

        self.settings = get_settings()
        self.store = open_store(self.settings)
        self.rubricator = load_rubricator()
        metadata = self.model.info.metadata
        self.preset = EvalPreset.from_dict(metadata["preprocess"])
        self.shape_dim = metadata["dims"]["shape"]

    @bentoml.api(route="/search")
    async def search(
        self,
        image: Path,
        top_k: int = 10,
        category: str | None = None,
        shop: str | None = None,
        gender: str | None = None,
        using: Literal["shape", "color"] = "shape",
    ) -> SearchResponse:
        """Find catalogue products that look like the item in `image` (multipart upload)."""
        started = time.perf_counter()
        if not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}")
        category_id = self._category_id(category)
        picture = self._decode(image)
        vectors = await self.embedder.to_async.embed(self.preset.batch([picture]))
        query = vectors[0, : self.shape_dim] if using == "shape" else vectors[0, self.shape_dim :]
        hits = await asyncio.to_thread(
            self.store.search, query, using=using, top_k=top_k, category_id=category_id, shop=shop, gender=gender
        )
        item = Item(box=[0, 0, picture.width, picture.height], products=[self._product(hit) for hit in hits])
        return SearchResponse(items=[item], took_ms=round((time.perf_counter() - started) * 1000, 2))

    def _decode(self, upload: Path):
        size = upload.stat().st_size
        if size > self.settings.max_upload_bytes:
            raise PayloadTooLarge(f"the image is {size} bytes; the limit is {self.settings.max_upload_bytes}")
        try:
            return decode_image(
                upload.read_bytes(),
                max_bytes=self.settings.max_upload_bytes,
                max_pixels=self.settings.max_image_pixels,
            )
        except ImageError as error:
            raise InvalidArgument(str(error)) from None

    def _category_id(self, category: str | None) -> int | None:
        if not category:
            return None
        try:
            return self.rubricator.get(int(category) if category.isdigit() else category).id
        except KeyError:
            raise InvalidArgument(f"unknown category {category!r}") from None

    def _product(self, hit) -> Product:
        offer = hit.offer
        name = self.rubricator.get(offer.category_id).name if offer.category_id is not None else None
        return Product(score=hit.score, category=name, **offer.model_dump(exclude={"category_ids"}))
