"""Catalogue sources: each yields (offer, image location) pairs for the indexer to embed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from lookalike.catalog import Offer
from lookalike.images import IMAGE_SUFFIXES

Categorize = Callable[[str], "int | None"]


def iter_folder_offers(
    root: Path,
    *,
    shop: str,
    categorize: Categorize,
    image_base_url: str = "/ui/catalog/",
) -> Iterator[tuple[Offer, Path]]:
    """A folder with one sub-folder per category; every image in it is one offer.

    The sub-folder path (e.g. "dress" or "women/dress") is the shop's category path that
    `categorize` maps onto the rubricator; the offer id is the image's path without suffix.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"catalogue folder {root} does not exist")
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(root)
        category_path = relative.parent.as_posix()
        offer = Offer(
            shop=shop,
            offer_id=relative.with_suffix("").as_posix(),
            title=f"{relative.parent.name or shop} {path.stem}".strip(),
            image_url=image_base_url + quote(relative.as_posix()),
            category_id=categorize(category_path) if category_path != "." else None,
        )
        yield offer, path
