"""Feed records -> the offers the store keeps: the shop, the rubricator category, the picture shown."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from indexer.feeds import FeedRecord
from lookalike.catalog import Offer
from lookalike.mapping import Categorizer


class OfferMaker:
    """A record -> its `Offer` for `shop`, or None when its category is unmapped and `keep_unmapped` is off.

    The category comes from `categorizer` (the mapping file's rules, then the path's own names), with
    its ancestors in `category_ids` for roll-up filters; the gender is the feed's, else the
    category's. `image_url` is the record's main picture; for a folder catalogue (`folder_root`)
    it is the file's path below the folder after `image_base_url`, where the API's page serves it.
    """

    def __init__(
        self,
        shop: str,
        categorizer: Categorizer,
        *,
        keep_unmapped: bool = False,
        folder_root: Path | None = None,
        image_base_url: str = "/ui/catalog/",
    ) -> None:
        self.shop = shop
        self.categorizer = categorizer
        self.keep_unmapped = keep_unmapped
        self.folder_root = Path(folder_root).absolute() if folder_root is not None else None
        self.image_base_url = image_base_url

    def __call__(self, record: FeedRecord) -> Offer | None:
        category_id = self.categorizer(record.category_path, gender=record.gender)
        if category_id is None and not self.keep_unmapped:
            return None
        rubricator = self.categorizer.rubricator
        category = rubricator.get(category_id) if category_id is not None else None
        return Offer(
            shop=self.shop,
            offer_id=record.offer_id,
            title=record.title,
            url=record.url,
            image_url=self._image_url(record.image_urls[0]),
            price=record.price,
            currency=record.currency,
            category_id=category_id,
            category_ids=rubricator.self_and_ancestor_ids(category_id) if category_id is not None else [],
            gender=record.gender or (category.gender if category is not None else None),
            color=record.color.lower() if record.color else None,
        )

    def _image_url(self, picture: str) -> str:
        if self.folder_root is None:
            return picture
        return self.image_base_url + quote(Path(picture).relative_to(self.folder_root).as_posix())
