"""The JSON API's response models (the mobile apps' contract)."""

from __future__ import annotations

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


class Item(BaseModel):
    """One wardrobe item found in the photo and the products that look like it."""

    box: list[int] = Field(
        description="Item box in the photo: x0, y0, x1, y1 pixels (the whole photo until detection lands)."
    )
    category_id: int | None = Field(None, description="Rubricator category of the item, when classified.")
    products: list[Product]


class SearchResponse(BaseModel):
    items: list[Item]
    took_ms: float
