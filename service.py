"""Lookalike's API: photo in, the items in it and similar catalogue products out.

    bentoml serve              # http://127.0.0.1:3000 — POST /search, POST /detect, the page at /ui

Request path: upload -> decode (4xx on bad input) -> letterbox -> Detector (batched) ->
`lookalike.detection.postprocess` -> one crop per item (with the card's margin; the whole photo
when nothing is detected) -> Embedder (all crops in one batched call) -> vector store (one query
per item) -> JSON. The embedded store (Qdrant Edge) lives in this process, so this service runs
one worker; a Qdrant server (LOOKALIKE_QDRANT_URL) lifts that limit. With LOOKALIKE_DETECT=false
no detector runs: a photo is searched whole, as one item.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from pathlib import Path
from typing import Literal

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from PIL import Image

from bentos.detector import Detector, split
from bentos.embedder import Embedder
from lookalike.detection import Detection, frame_items, postprocess
from lookalike.images import ImageError, decode_image
from lookalike.modelcard import DetectorCard, EmbedderCard
from lookalike.schemas import DetectedItem, DetectResponse, Item, Product, SearchResponse
from lookalike.settings import get_settings
from lookalike.web import build_ui_app

log = logging.getLogger(__name__)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@bentoml.service(name="lookalike", workers=1, traffic={"timeout": 60})
@bentoml.asgi_app(build_ui_app(get_settings()), path="/ui")
class Lookalike:
    embedder = bentoml.depends(Embedder)
    embedder_model = bentoml.models.BentoModel(get_settings().embedder_model)
    if get_settings().detect:  # otherwise no detector process starts and no detector model is needed
        detector = bentoml.depends(Detector)
        detector_model = bentoml.models.BentoModel(get_settings().detector_model)

    def __init__(self) -> None:
        from lookalike.store import open_store
        from lookalike.taxonomy import load_rubricator

        self.settings = get_settings()
        self.rubricator = load_rubricator()
        self.embedder_card = EmbedderCard.from_metadata(self.embedder_model.info.metadata)
        self.detector_card = (
            DetectorCard.from_metadata(self.detector_model.info.metadata) if self.settings.detect else None
        )
        # Each detector class as the API names it; an id the rubricator lacks fails here, not in a request.
        self.labels = [
            (c.rubricator_id, self.rubricator.get(c.rubricator_id).name if c.rubricator_id is not None else c.name)
            for c in (self.detector_card.classes if self.detector_card else [])
        ]
        self.store = open_store(self.settings, dims=self.embedder_card.dims)

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
        """Find the items in `image` (multipart upload) and, for each, catalogue products that look like it."""
        started = time.perf_counter()
        if not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}")
        category_id = self._category_id(category)
        picture = self._decode(image)
        detections = await self._detect(picture) if self.detector_card is not None else []
        margin = self.detector_card.crop_margin if self.detector_card is not None else 0.0
        framed = frame_items(detections, picture.width, picture.height, margin)
        items = [
            {**self._describe(f.detection).model_dump(), "source": "detected"}
            if f.detection is not None
            else {"box": list(f.box), "source": "whole_image"}
            for f in framed
        ]
        crops = [picture.crop(f.box) for f in framed]
        pixels = await asyncio.to_thread(self.embedder_card.preset.batch, crops)
        vectors = await self.embedder.to_async.embed(pixels)  # every item of the photo in one call
        shape_dim = self.embedder_card.shape_dim
        queries = vectors[:, :shape_dim] if using == "shape" else vectors[:, shape_dim:]
        hits = await asyncio.to_thread(
            self.store.search_batch,
            queries,
            using=using,
            top_k=top_k,
            category_id=category_id,
            shop=shop,
            gender=gender,
        )
        return SearchResponse(
            items=[Item(**item, products=[self._product(hit) for hit in found]) for item, found in zip(items, hits)],
            width=picture.width,
            height=picture.height,
            took_ms=self._since(started),
        )

    @bentoml.api(route="/detect")
    async def detect(self, image: Path) -> DetectResponse:
        """The wardrobe items in `image` (multipart upload): boxes, categories and scores, best first."""
        started = time.perf_counter()
        if self.detector_card is None:
            raise NotFound("detection is switched off on this server (LOOKALIKE_DETECT=false)")
        picture = self._decode(image)
        detections = await self._detect(picture)
        return DetectResponse(
            items=[self._describe(d) for d in detections],
            width=picture.width,
            height=picture.height,
            took_ms=self._since(started),
        )

    async def _detect(self, picture: Image.Image) -> list[Detection]:
        pixels, letterbox = await asyncio.to_thread(self.detector_card.preset, picture)
        rows = await self.detector.to_async.detect(pixels[None])
        boxes, scores = split(rows[0])
        return postprocess(boxes, scores, letterbox, self.detector_card.thresholds)

    def _describe(self, detection: Detection) -> DetectedItem:
        category_id, name = self.labels[detection.label]
        return DetectedItem(
            box=[round(v) for v in detection.box], category_id=category_id, category=name, score=detection.score
        )

    def _decode(self, upload: Path) -> Image.Image:
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

    @staticmethod
    def _since(started: float) -> float:
        return round((time.perf_counter() - started) * 1000, 2)
