"""Catalogue records: what the indexer writes to the vector store and what search returns."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Offer(BaseModel):
    """One product image of one shop, as stored in the payload next to its vectors."""

    shop: str = Field(min_length=1)
    offer_id: str = Field(min_length=1)
    title: str = ""
    url: str | None = None
    image_url: str
    price: float | None = None
    currency: str | None = None
    category_id: int | None = Field(None, description="Rubricator leaf (or broader) category.")
    category_ids: list[int] = Field(
        default_factory=list, description="category_id and all its ancestors, for roll-up filters."
    )
    gender: str | None = None
    color: str | None = Field(None, description="Colour/pattern class, when known.")
