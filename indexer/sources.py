"""Catalogue sources: each yields (offer, image location) pairs for the indexer to embed.

The parsers themselves live in `indexer.feeds`; this is the folder source as the current CLI
reads it, kept until the CLI reads every format through `indexer.feeds.read_feed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from indexer.feeds import FeedRecord, folder
from lookalike.catalog import Offer

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
    root = Path(root).absolute()
    for record in folder.read(root):
        assert isinstance(record, FeedRecord)  # the folder source reports no problems
        path = Path(record.image_urls[0])
        relative = path.relative_to(root)
        category_path = relative.parent.as_posix()
        offer = Offer(
            shop=shop,
            offer_id=record.offer_id,
            title=f"{relative.parent.name or shop} {path.stem}".strip(),
            image_url=image_base_url + quote(relative.as_posix()),
            category_id=categorize(category_path) if category_path != "." else None,
        )
        yield offer, path
