"""The JSON API's response models (the mobile apps' contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Product(BaseModel):
    score: float = Field(description="Cosine similarity of the query item and the product image, -1..1.")
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


class SearchResponse(BaseModel):
    items: list[Item] = Field(description="The detected items, best detection first, or one whole_image item.")
    width: int = Field(description="Photo width in pixels, after its EXIF rotation (the boxes' frame).")
    height: int = Field(description="Photo height in pixels, after its EXIF rotation.")
    took_ms: float
