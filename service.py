"""Lookalike's API: photo in, the items in it and similar catalogue products out.

    bentoml serve              # http://127.0.0.1:3000 — the API (docs/api.md), the page at /ui

Endpoints (their contract is published at /docs.json):
    POST /search                              photo -> items -> similar products per item
    POST /search/item                         an item's `query` from /search -> products (other options)
    POST /detect                              photo -> items
    GET  /products/{shop}/{offer_id}/similar  a catalogue product -> similar products (stored vectors)
    GET  /categories                          the rubricator, for category filters
    GET  /shops, DELETE /shops/{shop}         the catalogue's shops; removing one needs a write key
    GET  /healthz, /readyz, /metrics          BentoML's probes (readyz asks the store too) and Prometheus

Request path: body (multipart or JSON; a URL fetched by `lookalike.fetch`) -> decode (4xx on bad
input) -> letterbox -> Detector (batched) -> `lookalike.detection.postprocess` -> one crop per item
(with the card's margin; the whole photo when nothing is detected) -> Embedder (all crops in one
batched call) -> vector store (`search_fused`: both facets, one batch per photo) -> JSON. The
endpoints are FastAPI routes on this service (so one route takes multipart or JSON, and errors
have one shape); the models stay BentoML services with adaptive batching. The embedded store (Qdrant
Edge) lives in this process, so this service runs one worker; a Qdrant server
(LOOKALIKE_QDRANT_URL) lifts that limit. With LOOKALIKE_DETECT=false no detector runs: a photo is
searched whole, as one item.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Annotated

import aiohttp
import bentoml
import numpy as np
from fastapi import Depends, FastAPI, Path, Query, Request
from PIL import Image

from bentos.detector import Detector, split
from bentos.embedder import Embedder
from lookalike.api import tokens
from lookalike.api.auth import api_key_header, read_access, write_access
from lookalike.api.errors import ApiError, JsonErrorMiddleware, install_error_handlers, overloaded, unavailable
from lookalike.api.filters import CatalogueValues
from lookalike.api.inputs import Photo, parse_weights, read_detect, read_json, read_search, validate
from lookalike.api.limits import DecodeGate, GateBusy, GateTimeout, return_large_blocks
from lookalike.api.metrics import stage
from lookalike.api.openapi import error_responses, json_body, photo_body
from lookalike.api.requestid import RequestIdMiddleware, install_log_filter
from lookalike.detection import Detection, frame_items, postprocess
from lookalike.fetch import FetchError, ImageFetcher
from lookalike.images import MIN_PHOTO_SIDE, MODEL_SIDE, ImageError, open_image
from lookalike.modelcard import DetectorCard, EmbedderCard
from lookalike.schemas import (
    CategoriesResponse,
    CategoryNode,
    DeletedShopResponse,
    DetectedItem,
    DetectRequest,
    DetectResponse,
    Item,
    ItemSearchRequest,
    ItemSearchResponse,
    Product,
    SearchOptions,
    SearchRequest,
    SearchResponse,
    ShopsResponse,
    ShopSummary,
    SimilarResponse,
    Weights,
    default_weights_for,
)
from lookalike.settings import get_settings
from lookalike.store import Filters, Hit, VectorStore, open_store
from lookalike.web import build_ui_app

log = logging.getLogger(__name__)

api = FastAPI(
    title="Lookalike",
    version="1",
    docs_url=None,  # BentoML serves the merged document at /docs.json and its viewer at /
    redoc_url=None,
    openapi_url=None,
)
install_error_handlers(api)

# How often a request may try to reach a store that was unreachable.
STORE_RETRY_S = 2.0
_IMAGE_STATUS = {
    "empty": (HTTPStatus.BAD_REQUEST, "empty_image"),
    "too_large": (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "image_too_large"),
    "unsupported": (HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_image"),
    "damaged": (HTTPStatus.UNPROCESSABLE_ENTITY, "damaged_image"),
    "too_small": (HTTPStatus.UNPROCESSABLE_ENTITY, "image_too_small"),
}
# Bounds decoding across the worker's requests: memory in flight, threads and time (lookalike.api.limits).
DECODES = DecodeGate.from_settings(get_settings())


def served_vector_names() -> tuple[str, ...] | None:
    """The vectors of the embedder in the model store (its card only, no model loaded); None without one."""
    try:
        metadata = bentoml.models.get(get_settings().embedder_model).info.metadata
    except bentoml.exceptions.NotFound:
        return None
    return EmbedderCard.from_metadata(metadata).vector_names


@bentoml.service(name="lookalike", workers=1, traffic={"timeout": 60})
@bentoml.asgi_app(api, path="/")
@bentoml.asgi_app(build_ui_app(get_settings(), served_vector_names()), path="/ui")
class Lookalike:
    embedder = bentoml.depends(Embedder)
    embedder_model = bentoml.models.BentoModel(get_settings().embedder_model)
    if get_settings().detect:  # otherwise no detector process starts and no detector model is needed
        detector = bentoml.depends(Detector)
        detector_model = bentoml.models.BentoModel(get_settings().detector_model)

    def __init__(self) -> None:
        from lookalike.taxonomy import load_rubricator

        install_log_filter()
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
        self._store: VectorStore | None = None
        self._store_tried = 0.0
        self._open_store()  # a Qdrant server that is down now is retried by later requests (503 meanwhile)
        self.fetcher = ImageFetcher.from_settings(self.settings)
        # An embedder without the vector a default weighs is served with the weights it was served with.
        self.default_weights = Weights.model_validate(
            default_weights_for(self.embedder_card.vector_names, self.settings.default_weights)
        )

    async def __is_ready__(self) -> bool:
        """Models loaded (BentoML asks the model services) and the store answering."""
        try:
            await self._store_call(lambda store: store.count())
        except ApiError:
            return False
        return True

    @api.post(
        "/search",
        response_model=SearchResponse,
        summary="Find the items in a photo and similar products for each",
        responses=error_responses(400, 408, 413, 415, 422, 503),
        openapi_extra=photo_body(SearchRequest, SearchOptions),
        dependencies=[Depends(read_access)],
    )
    async def search(self, request: Request) -> SearchResponse:
        """The photo as multipart (`image`) or JSON (`image_base64` or `image_url`), with the options."""
        started = time.perf_counter()
        photo, options = await read_search(request, self.settings.max_upload_bytes)
        top_k, weights, filters = await self._search_options(options)
        picture = await self._picture(photo)
        detections = await self._detect(picture) if self.detector_card is not None else []
        margin = self.detector_card.crop_margin if self.detector_card is not None else 0.0
        framed = frame_items(detections, picture.width, picture.height, margin)
        items = [
            {**self._describe(f.detection).model_dump(), "source": "detected"}
            if f.detection is not None
            else {"box": list(f.box), "source": "whole_image"}
            for f in framed
        ]
        vectors = await self._embed([picture.crop(f.box) for f in framed])
        hits = await self._search_store(vectors, weights, top_k, filters)
        queries = [tokens.encode([vectors[name][row] for name in vectors]) for row in range(len(framed))]
        return SearchResponse(
            items=[
                Item(**item, products=[self._product(hit) for hit in found], query=query)
                for item, found, query in zip(items, hits, queries)
            ],
            width=picture.width,
            height=picture.height,
            took_ms=_since(started),
        )

    @api.post(
        "/search/item",
        response_model=ItemSearchResponse,
        summary="Search an item of an earlier search again, with other weights, filters or top_k",
        responses=error_responses(400, 413, 415, 422, 503),
        openapi_extra=json_body(ItemSearchRequest),
        dependencies=[Depends(read_access)],
    )
    async def search_item(self, request: Request) -> ItemSearchResponse:
        """No photo and no model call: the item's vectors travel in its `query` token."""
        started = time.perf_counter()
        request = await read_json(request, ItemSearchRequest)
        top_k, weights, filters = await self._search_options(
            validate(SearchOptions, request.model_dump(exclude={"query"}))
        )
        queries = tokens.decode(request.query, self.embedder_card.dims)
        hits = await self._search_store(queries, weights, top_k, filters)
        return ItemSearchResponse(products=[self._product(hit) for hit in hits[0]], took_ms=_since(started))

    @api.post(
        "/detect",
        response_model=DetectResponse,
        summary="Find the wardrobe items in a photo",
        responses=error_responses(400, 404, 408, 413, 415, 422, 503),
        openapi_extra=photo_body(DetectRequest, None),
        dependencies=[Depends(read_access)],
    )
    async def detect(self, request: Request) -> DetectResponse:
        """The items in the photo (multipart `image`, or JSON): boxes, categories and scores, best first."""
        started = time.perf_counter()
        if self.detector_card is None:
            raise ApiError(
                HTTPStatus.NOT_FOUND, "not_found", "detection is off on this server (LOOKALIKE_DETECT=false)"
            )
        picture = await self._picture(await read_detect(request, self.settings.max_upload_bytes))
        detections = await self._detect(picture)
        return DetectResponse(
            items=[self._describe(d) for d in detections],
            width=picture.width,
            height=picture.height,
            took_ms=_since(started),
        )

    @api.get(
        "/products/{shop}/{offer_id:path}/similar",
        response_model=SimilarResponse,
        summary="Products similar to a catalogue product (no photo, no model call)",
        responses=error_responses(400, 404, 422, 503),
        dependencies=[Depends(read_access)],
    )
    async def similar(
        self,
        shop: Annotated[str, Path(description="The product's shop.")],
        offer_id: Annotated[str, Path(description="The product's offer id in its shop (may contain '/').")],
        top_k: Annotated[int, Query(ge=1, description="How many products, best first.")] = 10,
        weights: Annotated[
            str | None, Query(description='"shape:1,color:0.5" or JSON; server default if absent.')
        ] = None,
        category: Annotated[str | None, Query(description="Rubricator id or name, any depth.")] = None,
        in_shop: Annotated[str | None, Query(alias="shop", description="Only this shop's products.")] = None,
        gender: Annotated[str | None, Query(description="women, men, unisex or baby.")] = None,
        color: Annotated[str | None, Query(description="Colour class.")] = None,
        currency: Annotated[str | None, Query(description="ISO 4217 code.")] = None,
        min_price: Annotated[float | None, Query(ge=0)] = None,
        max_price: Annotated[float | None, Query(ge=0)] = None,
    ) -> SimilarResponse:
        started = time.perf_counter()
        given = {
            "top_k": top_k,
            "weights": parse_weights(weights) if weights else None,
            "category": category,
            "shop": in_shop,
            "gender": gender,
            "color": color,
            "currency": currency,
            "min_price": min_price,
            "max_price": max_price,
        }
        top_k, weights_, filters = await self._search_options(validate(SearchOptions, given))
        with stage("store"):
            stored = await self._store_call(lambda store: store.vectors_of(shop, offer_id))
        if stored is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no product {offer_id!r} in shop {shop!r}")
        queries = {name: vector[None, :] for name, vector in stored.vectors.items()}
        filters = Filters(**{**filters.__dict__, "exclude_ids": (stored.id,)})
        hits = await self._search_store(queries, weights_, top_k, filters)
        itself = Hit(id=stored.id, score=1.0, offer=stored.offer, **{f"{name}_score": 1.0 for name in stored.vectors})
        return SimilarResponse(
            product=self._product(itself), products=[self._product(hit) for hit in hits[0]], took_ms=_since(started)
        )

    @api.get(
        "/shops",
        response_model=ShopsResponse,
        summary="The shops in the catalogue and their product counts",
        responses=error_responses(401, 403, 503),
        dependencies=[Depends(read_access)],
    )
    async def shops(self) -> ShopsResponse:
        def summarise(store) -> list[ShopSummary]:
            return [ShopSummary(shop=shop, offers=store.count(shop)) for shop in store.distinct("shop")]

        return ShopsResponse(shops=await self._store_call(summarise))

    @api.delete(
        "/shops/{shop}",
        response_model=DeletedShopResponse,
        summary="Remove a shop and all its products from the catalogue (needs a write key)",
        responses=error_responses(401, 403, 404, 503),
        dependencies=[Depends(write_access), Depends(api_key_header)],
    )
    async def delete_shop(self, shop: Annotated[str, Path(description="The shop to remove.")]) -> DeletedShopResponse:
        deleted = await self._store_call(lambda store: store.delete_shop(shop))
        if not deleted:
            raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no products of shop {shop!r} in the catalogue")
        self.catalogue_values.forget()
        log.warning("deleted shop %r: %d products", shop, deleted)
        return DeletedShopResponse(shop=shop, deleted=deleted)

    @api.get("/categories", response_model=CategoriesResponse, summary="The rubricator: categories filters accept")
    async def categories(self) -> CategoriesResponse:
        return CategoriesResponse(categories=[self._category_node(c) for c in self.rubricator.roots()])

    # --- steps ---------------------------------------------------------------------------------------

    async def _search_options(self, options: SearchOptions) -> tuple[int, Weights, Filters]:
        if options.top_k > self.settings.max_top_k:
            raise ApiError(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                "invalid_field",
                f"top_k: must be between 1 and {self.settings.max_top_k}",
                field="top_k",
            )
        filters = Filters(
            category_id=self._category_id(options.category),
            shop=await self._store_call(lambda _: self.catalogue_values.check("shop", options.shop)),
            gender=options.gender,
            color=await self._store_call(lambda _: self.catalogue_values.check("color", options.color)),
            currency=await self._store_call(lambda _: self.catalogue_values.check("currency", options.currency)),
            min_price=options.min_price,
            max_price=options.max_price,
        )
        weights = options.weights or self.default_weights
        if weights.detail > 0 and "detail" not in self.embedder_card.dims:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "invalid_field",
                "weights.detail: this server's embedder makes no detail vector; weigh shape and color only",
                field="weights.detail",
            )
        return options.top_k, weights, filters

    def _category_id(self, category: str | None) -> int | None:
        if category is None:
            return None
        try:
            # isdecimal() and ASCII: "¹" and "٣" are digits to str.isdigit() but not to int().
            key = int(category) if category.isascii() and category.isdecimal() else category
            return self.rubricator.get(key).id
        except KeyError as error:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "unknown_value",
                f"category: {error.args[0]}; GET /categories lists the ids and names accepted",
                field="category",
            ) from None

    async def _picture(self, photo: Photo) -> Image.Image:
        data = photo.data
        if photo.url is not None:
            with stage("fetch"):
                try:
                    data = await self.fetcher.fetch(photo.url)
                except FetchError as error:
                    raise ApiError(error.status, "image_url", str(error), field="image_url") from None
        field = "image_url" if photo.url else "image"
        with stage("decode"):
            try:
                opened = await asyncio.to_thread(  # the header only: the limits are checked before any pixel
                    open_image,
                    data,
                    max_bytes=self.settings.max_upload_bytes,
                    max_pixels=self.settings.max_image_pixels,
                    max_side=MODEL_SIDE,
                    min_side=MIN_PHOTO_SIDE,
                    max_memory=DECODES.memory,
                )
                return await DECODES.run(opened.memory, opened.decode)
            except ImageError as error:
                status, code = _IMAGE_STATUS[error.problem]
                raise ApiError(status, code, str(error), field=field) from None
            except GateBusy:
                raise overloaded("the server is decoding too many photos") from None
            except GateTimeout:
                raise ApiError(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    "image_too_complex",
                    f"the image took over {DECODES.timeout_s:.0f} s to decode; send a baseline JPEG or a PNG",
                    field=field,
                ) from None

    async def _detect(self, picture: Image.Image) -> list[Detection]:
        with stage("detect"):
            pixels, letterbox = await asyncio.to_thread(self.detector_card.preset, picture)
            rows = await self._model_call("detector", self.detector.to_async.detect(pixels[None]))
            boxes, scores = split(rows[0])
            return postprocess(boxes, scores, letterbox, self.detector_card.thresholds)

    async def _embed(self, crops: list[Image.Image]) -> dict[str, np.ndarray]:
        with stage("embed"):
            pixels = await asyncio.to_thread(self.embedder_card.preset.batch, crops)
            vectors = await self._model_call("embedder", self.embedder.to_async.embed(pixels))  # one call per photo
        return self.embedder_card.split_columns(vectors)

    async def _search_store(
        self, queries: dict[str, np.ndarray], weights: Weights, top_k: int, filters: Filters
    ) -> list[list[Hit]]:
        with stage("store"):
            return await self._store_call(
                lambda store, *args, **kwargs: store.search_fused(*args, **kwargs),
                queries,
                weights={name: getattr(weights, name) for name in self.embedder_card.vector_names},
                top_k=top_k,
                filters=filters,
                shortlist=self.settings.fusion_shortlist,
            )

    def _open_store(self) -> VectorStore | None:
        """The store, opened now if it is not yet (at most every STORE_RETRY_S); None while unreachable."""
        if self._store is None and time.monotonic() - self._store_tried >= STORE_RETRY_S:
            self._store_tried = time.monotonic()
            try:
                self._store = open_store(self.settings, dims=self.embedder_card.dims)
                self.catalogue_values = CatalogueValues(self._store)
            except STORE_OUTAGES as error:
                log.warning("the vector store is unreachable: %s", error)
        return self._store

    async def _store_call(self, call, *args, **kwargs):
        """`call(store, *args, **kwargs)` in a thread; a 503 with Retry-After while the store is unreachable."""
        try:
            store = self._open_store()
            if store is None:
                raise ConnectionError("not open")
            return await asyncio.to_thread(call, store, *args, **kwargs)
        except STORE_OUTAGES as error:
            log.warning("the store failed: %s", error)
            raise unavailable("the catalogue store") from None

    @staticmethod
    async def _model_call(name: str, call):
        try:
            return await call
        except MODEL_OUTAGES as error:
            log.warning("the %s service failed: %s", name, error)
            raise unavailable(f"the {name}") from None

    def _describe(self, detection: Detection) -> DetectedItem:
        category_id, name = self.labels[detection.label]
        return DetectedItem(
            box=[round(v) for v in detection.box], category_id=category_id, category=name, score=detection.score
        )

    def _product(self, hit: Hit) -> Product:
        offer = hit.offer
        name = self.rubricator.get(offer.category_id).name if offer.category_id is not None else None
        return Product(
            score=hit.score,
            shape_score=hit.shape_score,
            color_score=hit.color_score,
            detail_score=hit.detail_score,
            category=name,
            **offer.model_dump(exclude={"category_ids"}),
        )

    def _category_node(self, category) -> CategoryNode:
        return CategoryNode(
            id=category.id,
            name=category.name,
            title=category.title,
            aliases=list(category.aliases),
            gender=category.gender,
            children=[self._category_node(child) for child in self.rubricator.children(category.id)],
        )


# Decoded photos are large, short-lived blocks: have them unmapped when freed, or the worker's RSS ratchets up.
return_large_blocks()
# Outermost first: the request id is set before anything logs, and every error leaves as JSON.
Lookalike.add_asgi_middleware(RequestIdMiddleware)
Lookalike.add_asgi_middleware(JsonErrorMiddleware)
if get_settings().cors_origins:
    from starlette.middleware.cors import CORSMiddleware

    Lookalike.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=get_settings().cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )


def _store_outages() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the store is unreachable (not that we called it wrongly)."""
    import httpx

    outages: list[type[BaseException]] = [ConnectionError, TimeoutError, OSError, httpx.TransportError]
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        outages += [ResponseHandlingException, UnexpectedResponse]
    except ImportError:
        pass
    return tuple(outages)


STORE_OUTAGES = _store_outages()
# A model service shedding load, restarting or gone: the client may retry (503), it is not the request's fault.
MODEL_OUTAGES = (bentoml.exceptions.ServiceUnavailable, aiohttp.ClientError, ConnectionError, TimeoutError, OSError)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
