"""The JSON API's request and response models: the mobile apps' contract (published at /docs.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# --- requests -------------------------------------------------------------------------------------


class Weights(BaseModel):
    """How much each facet counts, each 0..1: `shape` (the cut), `color` (colour and pattern) and
    `detail` (this very item: print, texture, hardware; for embedders that make it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"shape": 1.0, "color": 0.0}]})

    shape: float = Field(0.0, ge=0.0, le=1.0, description="Weight of the shape (cut) similarity.")
    color: float = Field(0.0, ge=0.0, le=1.0, description="Weight of the colour-and-pattern similarity.")
    detail: float = Field(
        0.0, ge=0.0, le=1.0, description="Weight of the same-item similarity (print, texture, hardware)."
    )

    @field_validator("shape", "color", "detail", mode="before")
    @classmethod
    def _no_booleans(cls, value):
        if isinstance(value, bool):
            raise ValueError("must be a number from 0 to 1, not true/false")  # noqa: TRY004 (pydantic reports only ValueError)
        return value

    @model_validator(mode="after")
    def _not_both_zero(self) -> Weights:
        if self.shape + self.color + self.detail <= 0:
            raise ValueError('at least one of "shape", "color" and "detail" must be above 0')
        return self


# The default weights for an embedder without a `detail` vector: the service's default before there
# was one (chosen then by the robustness report's Facets table).
WEIGHTS_WITHOUT_DETAIL: dict[str, float] = {"shape": 0.75, "color": 0.25}


def default_weights_for(vector_names: tuple[str, ...] | list[str], configured: dict[str, float]) -> dict[str, float]:
    """`configured` (the `default_weights` setting), unless it weighs a vector the embedder does not
    make: then `WEIGHTS_WITHOUT_DETAIL`, so an older embedder is served (and evaluated) as it was."""
    if all(name in vector_names for name, weight in configured.items() if weight > 0):
        return dict(configured)
    return dict(WEIGHTS_WITHOUT_DETAIL)


class Filters(BaseModel):
    """Which catalogue products may be returned; every filter given must match."""

    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(
        None,
        description="Rubricator category by id or name (English or Russian alias), at any depth: a broad "
        "category includes all narrower ones (GET /categories lists them).",
        examples=["dress"],
    )
    shop: str | None = Field(None, description="Only this shop's products.", examples=["test-shop"])
    gender: Literal["women", "men", "unisex", "baby"] | None = Field(None, description="Only products for them.")
    color: str | None = Field(None, description="Only products of this colour class.", examples=["black"])
    currency: str | None = Field(
        None, description="Only products priced in this currency (ISO 4217).", examples=["RUB"]
    )
    min_price: float | None = Field(None, ge=0, description="Lowest price, inclusive, in the products' currency.")
    max_price: float | None = Field(None, ge=0, description="Highest price, inclusive.")

    @field_validator("category", mode="before")
    @classmethod
    def _category_id_or_name(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _price_range(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price must not exceed max_price")
        return self


class SearchOptions(Filters):
    top_k: int = Field(10, ge=1, description="Products per item, best first (at most the server's max_top_k).")
    weights: Weights | None = Field(
        None, description="Facet weights; the server's default (GET /ui/config.json) when left out."
    )

    @field_validator("top_k", mode="before")
    @classmethod
    def _integer_not_boolean(cls, value):
        if isinstance(value, bool):
            raise ValueError("must be an integer, not true/false")  # noqa: TRY004 (pydantic reports only ValueError)
        return value


class ImageSource(BaseModel):
    """The photo, in a JSON body: exactly one of `image_base64` and `image_url`."""

    image_base64: str | None = Field(
        None, description="The photo's bytes (JPEG, PNG, WebP, GIF, BMP or TIFF), base64; a data: URL also works."
    )
    image_url: str | None = Field(
        None,
        description="An http(s) URL of the photo, fetched by the server (public addresses only).",
        examples=["https://images.example.com/look-42.jpg"],
    )

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_base64 and image_url")
        return self


class SearchRequest(SearchOptions, ImageSource):
    """`POST /search` as JSON."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image_url": "https://images.example.com/look-42.jpg",
                    "top_k": 5,
                    "weights": {"shape": 1, "color": 0},
                },
                {"image_base64": "/9j/4AAQSkZJRg...", "category": "dress", "max_price": 5000, "currency": "RUB"},
            ]
        },
    )


class ItemSearchRequest(SearchOptions):
    """`POST /search/item`: an item of an earlier search, searched again with other options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "v1.AAAgPwAAgL8...", "weights": {"shape": 0, "color": 1}, "top_k": 20}]
        },
    )

    query: str = Field(description="The item's `query` from a /search response of this server.", max_length=100_000)


class DetectRequest(ImageSource):
    """`POST /detect` as JSON."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"image_url": "https://images.example.com/look-42.jpg"}]}
    )


# --- responses ------------------------------------------------------------------------------------


class Product(BaseModel):
    score: float = Field(
        description="The ranking score: the weighted mean of the facets' scores by the request's weights."
    )
    shape_score: float = Field(description="Cosine similarity of the shapes (cut), -1..1.")
    color_score: float = Field(description="Cosine similarity of the colours and patterns, -1..1.")
    detail_score: float | None = Field(
        None,
        description="Cosine similarity of the items' details (the same item), -1..1; null without a detail vector.",
    )
    shop: str
    offer_id: str
    title: str
    url: str | None
    image_url: str
    price: float | None
    currency: str | None
    category_id: int | None
    category: str | None = Field(description="Rubricator name of category_id.")
    gender: str | None
    color: str | None


class DetectedItem(BaseModel):
    """One wardrobe item the detector found in the photo."""

    box: list[int] = Field(description="Item box in the photo: x0, y0, x1, y1, whole pixels from its top left.")
    category_id: int | None = Field(
        None, description="Rubricator category of the item's class; null for a class outside the rubricator."
    )
    category: str | None = Field(
        None, description="Rubricator name of category_id, else the detector's class name (e.g. hat)."
    )
    score: float | None = Field(None, description="Detector confidence, 0..1; null for the whole photo.")


class DetectResponse(BaseModel):
    items: list[DetectedItem] = Field(description="Detections, best first; empty when nothing was found.")
    width: int = Field(description="Photo width in pixels, after its EXIF rotation (the boxes' frame).")
    height: int = Field(description="Photo height in pixels, after its EXIF rotation.")
    took_ms: float


class Item(DetectedItem):
    """One item of the photo and the products that look like it."""

    source: Literal["detected", "whole_image"] = Field(
        description='"detected": a detector box, searched by its crop (with a margin). "whole_image": nothing '
        "was detected (or detection is off), so the whole photo was searched as one item; its box is the "
        "whole photo and category and score are null."
    )
    products: list[Product] = Field(description="Best first.")
    query: str = Field(
        description="A token of this item's vectors: POST /search/item searches it again with other weights, "
        "filters or top_k, with no photo and no model call."
    )


class ItemSearchResponse(BaseModel):
    products: list[Product] = Field(description="Best first.")
    took_ms: float


class SearchResponse(BaseModel):
    items: list[Item] = Field(description="The detected items, best detection first, or one whole_image item.")
    width: int = Field(description="Photo width in pixels, after its EXIF rotation (the boxes' frame).")
    height: int = Field(description="Photo height in pixels, after its EXIF rotation.")
    took_ms: float


class SimilarResponse(BaseModel):
    """`GET /products/{shop}/{offer_id}/similar`: the product itself and the products like it."""

    product: Product = Field(description="The product asked about (its scores are 1: itself).")
    products: list[Product] = Field(description="Similar products, best first, the product itself left out.")
    took_ms: float


class CategoryNode(BaseModel):
    id: int
    name: str = Field(description="The name filters accept (English slug).")
    title: str = Field(description="Human-readable English title.")
    aliases: list[str] = Field(description="Other names filters accept, Russian included.")
    gender: str | None
    children: list[CategoryNode]


class CategoriesResponse(BaseModel):
    categories: list[CategoryNode] = Field(description="The rubricator's top-level categories with their subtrees.")


class ShopSummary(BaseModel):
    shop: str
    offers: int = Field(description="Products of this shop in the catalogue.")


class ShopsResponse(BaseModel):
    shops: list[ShopSummary] = Field(description="Every shop in the catalogue, by name.")


class DeletedShopResponse(BaseModel):
    shop: str
    deleted: int = Field(description="Products removed from the catalogue.")


class ErrorResponse(BaseModel):
    """Every error has this shape, whatever the status."""

    error: str = Field(description="A stable code to branch on, e.g. unknown_value, image_too_large.")
    detail: str = Field(description="What went wrong and what to change, for people.")
    field: str | None = Field(None, description="The request field at fault, dotted (weights.shape); null if none.")
    request_id: str | None = Field(None, description="Also in the X-Request-ID header; quote it when reporting.")
