"""Google Merchant Center product feeds in XML: RSS 2.0 (``rss/channel/item``) or Atom (``feed/entry``).

    <rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>
      <item>
        <g:id>A-1001</g:id> <title>Платье миди</title> <link>https://shop.example/p/1001</link>
        <g:image_link>https://...</g:image_link> <g:additional_image_link>https://...</g:additional_image_link>
        <g:price>1299.00 RUB</g:price> <g:product_type>Женщинам &gt; Платья</g:product_type>
        <g:google_product_category>Apparel &amp; Accessories &gt; Clothing &gt; Dresses</g:google_product_category>
        <g:gender>female</g:gender> <g:color>синий</g:color> <g:brand>Zarina</g:brand>
      </item>
    </channel></rss>

Fields are read from the ``g:`` namespace, and the title and link also from the plain RSS or
Atom elements (an Atom ``<link href="..."/>``). The picture is ``g:image_link`` and then every
``g:additional_image_link`` (a repeated element; commas before "http" also separate). The price
is ``g:price`` with its currency ("1299.00 RUB"). The category path is the shop's own
``g:product_type`` ("Женщинам > Платья" becomes "Женщинам / Платья"), else a textual
``g:google_product_category`` (a numeric one is Google's id and no path); the Google category
is also kept in `params`, as are size, material, pattern, age group, availability and item
group. Gender is ``g:gender`` (female, male, unisex); an ``g:age_group`` of newborn or infant
makes it baby. ``g:brand`` is the vendor.

Problems reported, each skipping one item: no ``g:id``, no title, no http(s) image link, a bad
price or currency. A feed cut short or malformed keeps the items before the break and reports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import Element

from indexer.feeds.base import (
    BadRecord,
    FeedProblem,
    FeedRecord,
    location,
    make_record,
    open_binary,
    split_urls,
)
from indexer.feeds.xmlstream import XmlBroken, child_text, iter_records

G = "{http://base.google.com/ns/1.0}"
ATOM = "{http://www.w3.org/2005/Atom}"
ROOTS = frozenset({"rss", f"{ATOM}feed"})
ITEMS = frozenset({("rss", "channel", "item"), (f"{ATOM}feed", f"{ATOM}entry")})
_PARAMS = ("item_group_id", "size", "material", "pattern", "age_group", "availability", "google_product_category")
_BABY_AGE_GROUPS = frozenset({"newborn", "infant"})


def read(source: Path) -> Iterator[FeedRecord | FeedProblem]:
    with open_binary(source) as stream:
        try:
            for _, item, line in iter_records(stream, roots=ROOTS, records=ITEMS):
                try:
                    yield _item(item)
                except BadRecord as error:
                    yield FeedProblem(location(source, line, child_text(item, f"{G}id")), str(error))
        except XmlBroken as error:
            yield FeedProblem(location(source, error.line), f"the XML breaks off here: {error.message}")


def _item(item: Element) -> FeedRecord:
    category = child_text(item, f"{G}product_type")
    google_category = child_text(item, f"{G}google_product_category")
    if category is None and google_category is not None and not google_category.isdigit():
        category = google_category
    age_group = (child_text(item, f"{G}age_group") or "").lower()
    images = [child_text(item, f"{G}image_link") or ""]
    images += [url for extra in item.iterfind(f"{G}additional_image_link") for url in split_urls(extra.text)]
    return make_record(
        offer_id=child_text(item, f"{G}id"),
        title=child_text(item, f"{G}title", "title", f"{ATOM}title"),
        image_urls=images,
        url=child_text(item, f"{G}link", "link") or _atom_link(item),
        price=child_text(item, f"{G}price"),
        category_path=category,
        vendor=child_text(item, f"{G}brand"),
        gender="baby" if age_group in _BABY_AGE_GROUPS else child_text(item, f"{G}gender"),
        color=child_text(item, f"{G}color"),
        params=[(name, value) for name in _PARAMS if (value := child_text(item, G + name))],
    )


def _atom_link(entry: Element) -> str | None:
    links = [link for link in entry.iterfind(f"{ATOM}link") if link.get("rel", "alternate") == "alternate"]
    return links[0].get("href") if links else None
