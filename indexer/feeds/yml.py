"""Yandex Market YML, the catalogue format Russian shops publish.

    <yml_catalog date="...">
      <shop>
        <categories>
          <category id="1">Женская одежда</category>
          <category id="2" parentId="1">Платья</category>
        </categories>
        <offers>
          <offer id="1001" available="true">
            <url>https://shop.ru/p/1001</url> <price>2990</price> <currencyId>RUR</currencyId>
            <categoryId>2</categoryId> <picture>https://...</picture> <picture>...</picture>
            <vendor>Zarina</vendor> <name>Платье миди</name>
            <param name="Цвет">синий</param> <param name="Пол">Женский</param>
          </offer>
        </offers>
      </shop>
    </yml_catalog>

An offer's category path is its category's name under its parents' names, through the
``parentId`` chain ("Женская одежда / Платья"); categories come before offers in the file, so
the map is built while streaming. The title is ``name``, or ``typePrefix vendor model`` for
``type="vendor.model"`` offers. Gender and colour are read from the params named "Пол"/"Gender"
and "Цвет"/"Color"; every param is kept in `params`. ``available="false"`` means "on order" in
YML, not "out of stock" (such offers leave the feed), so those offers are read like any other.

Problems reported, each skipping one record: an offer without an id, a title or an http(s)
picture, with a bad price or currency; a category without an id or a name, or with an id seen
before. An offer whose categoryId names no category keeps a None category path. A feed cut short
or malformed keeps the offers before the break and reports where it broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import Element

from indexer.feeds.base import BadRecord, FeedProblem, FeedRecord, location, make_record, open_binary
from indexer.feeds.xmlstream import XmlBroken, iter_records
from lookalike.taxonomy import normalize

ROOT = "yml_catalog"
CATEGORY = (ROOT, "shop", "categories", "category")
OFFER = (ROOT, "shop", "offers", "offer")
_GENDER_PARAMS = frozenset({"пол", "gender"})
_COLOR_PARAMS = frozenset({"цвет", "color", "colour"})
_MAX_DEPTH = 64  # a parentId chain longer than this is a loop


def read(source: Path) -> Iterator[FeedRecord | FeedProblem]:
    categories = _Categories()
    with open_binary(source) as stream:
        try:
            for tag_path, element, line in iter_records(stream, roots={ROOT}, records={CATEGORY, OFFER}):
                if tag_path == CATEGORY:
                    if reason := categories.add(element):
                        yield FeedProblem(location(source, line), reason)
                    continue
                offer_id = element.get("id")
                try:
                    yield _offer(element, categories)
                except BadRecord as error:
                    yield FeedProblem(location(source, line, offer_id), str(error))
        except XmlBroken as error:
            yield FeedProblem(location(source, error.line), f"the XML breaks off here: {error.message}")


def _offer(offer: Element, categories: _Categories) -> FeedRecord:
    fields: dict[str, str] = {}  # the first text of each child; one pass, as offers are many
    pictures: list[str] = []
    params: list[tuple[str, str]] = []
    for child in offer:
        if child.tag == "picture":
            pictures.append(child.text or "")
        elif child.tag == "param":
            params.append((child.get("name", ""), child.text or ""))
        elif child.text and not child.text.isspace():
            fields.setdefault(child.tag, child.text)
    title = fields.get("name")
    if title is None and offer.get("type") == "vendor.model":
        title = " ".join(filter(None, (fields.get(tag) for tag in ("typePrefix", "vendor", "model"))))
    named = {normalize(name): value for name, value in reversed(params)}  # the first of a name wins
    category_id = fields.get("categoryId")
    return make_record(
        offer_id=offer.get("id"),
        title=title,
        image_urls=pictures,
        url=fields.get("url"),
        price=fields.get("price"),
        currency=fields.get("currencyId"),
        category_path=categories.path(category_id.strip() if category_id else None),
        vendor=fields.get("vendor"),
        gender=next((named[key] for key in _GENDER_PARAMS if key in named), None),
        color=next((named[key] for key in _COLOR_PARAMS if key in named), None),
        params=params,
    )


class _Categories:
    """The shop's category tree as it streams past: id -> (name, parent id), paths resolved on demand."""

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[str, str | None]] = {}
        self._paths: dict[str, list[str] | None] = {}

    def add(self, category: Element) -> str | None:
        """Remember a <category>; the reason it cannot be used, if so."""
        category_id, name = (category.get("id") or "").strip(), " ".join((category.text or "").split())
        if not category_id:
            return "category without an id"
        if not name:
            return f"category without a name: id {category_id}"
        if category_id in self._nodes:
            return f"category id seen before: {category_id}"
        self._nodes[category_id] = (name, (category.get("parentId") or "").strip() or None)
        self._paths.clear()  # a late category may complete a chain resolved before
        return None

    def path(self, category_id: str | None) -> list[str] | None:
        if category_id is None:
            return None
        if category_id not in self._paths:
            segments, seen, current = [], set(), category_id
            while current in self._nodes and current not in seen and len(seen) < _MAX_DEPTH:
                seen.add(current)
                name, current = self._nodes[current]
                segments.append(name)
            self._paths[category_id] = segments[::-1] or None
        return self._paths[category_id]
