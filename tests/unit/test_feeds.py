"""Catalogue feed parsers on the sample feeds in tests/data/feeds: exact records, and exact problems for broken ones."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from indexer.feeds import FeedError, FeedProblem, FeedRecord, detect_format, read_feed
from indexer.feeds.base import BadRecord, parse_price
from indexer.sources import iter_folder_offers
from lookalike.mapping import Categorizer
from lookalike.taxonomy import load_rubricator

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
LS = "https://cdn.lastochka-shop.ru"
NW = "https://img.northwind.example"
KS = "https://cdn.krasota.example"
JL = "https://img.shop.example"


def records(items: list) -> list[FeedRecord]:
    return [item for item in items if isinstance(item, FeedRecord)]


def problems(items: list) -> list[FeedProblem]:
    return [item for item in items if isinstance(item, FeedProblem)]


# Yandex Market YML.

YML_RECORDS = [
    FeedRecord(
        offer_id="LS-1001",
        title="Платье миди из вискозы, синее",
        image_urls=(f"{LS}/ls-1001/1.jpg", f"{LS}/ls-1001/2.jpg"),  # the repeated first picture once
        url="https://lastochka-shop.ru/catalog/platya/ls-1001/",
        price=4990.0,
        currency="RUB",
        category_path="Женская одежда / Платья / Миди",
        vendor="Ласточка",
        gender="women",
        color="синий",
        params=(("Цвет", "синий"), ("Пол", "Женский"), ("Размер", "44"), ("Материал", "вискоза")),
    ),
    FeedRecord(  # available="false" is "on order" in YML: still an offer
        offer_id="LS-1002",
        title='Юбка-карандаш "Офис"',
        image_urls=(f"{LS}/ls-1002/1.jpg",),
        url="https://lastochka-shop.ru/catalog/yubki/ls-1002/",
        price=2490.5,
        currency="RUB",
        category_path="Женская одежда / Юбки",
    ),
    FeedRecord(
        offer_id="LS-2001",
        title="Кроссовки Nike Air Max 90",  # vendor.model: typePrefix vendor model
        image_urls=(f"{LS}/ls-2001/1.jpg",),
        url="https://lastochka-shop.ru/catalog/obuv/ls-2001/",
        price=7990.0,
        currency="RUB",
        category_path="Обувь / Кроссовки",
        vendor="Nike",
        gender="unisex",
        params=(("Пол", "Унисекс"),),
    ),
    FeedRecord(  # categoryId 99 names no category
        offer_id="LS-3001",
        title="Сумка-шопер",
        image_urls=(f"{LS}/ls-3001/1.jpg",),
        price=1590.0,
        currency="RUB",
        gender="unisex",
        params=(("Пол", "для всех"),),
    ),
]
YML_PROBLEMS = [
    FeedProblem("shop.yml:18", "category without a name: id 12"),
    FeedProblem("shop.yml:19", "category id seen before: 1"),
    FeedProblem("shop.yml:58", "missing offer id"),
    FeedProblem("shop.yml:65 (id LS-1003)", "no picture"),
    FeedProblem("shop.yml:71 (id LS-1004)", "bad price: 'договорная'"),
    FeedProblem("shop.yml:78 (id LS-1005)", "no picture: not an http(s) URL: '/upload/ls-1005.jpg'"),
    FeedProblem("shop.yml:93 (id LS-3002)", "missing title"),
]


def test_yml_in_windows_1251_and_gzipped_reads_the_same(tmp_path):
    text = (FEEDS / "shop.yml").read_text("utf-8").replace('encoding="UTF-8"', 'encoding="windows-1251"')
    cp1251 = tmp_path / "shop.xml.gz"
    cp1251.write_bytes(gzip.compress(text.encode("cp1251")))
    assert detect_format(cp1251) == "yml"
    assert records(list(read_feed(cp1251))) == YML_RECORDS


def test_truncated_xml_keeps_the_records_before_the_break(tmp_path):
    text = (FEEDS / "shop.yml").read_text("utf-8")
    cut = tmp_path / "cut.yml"
    cut.write_text(text[: text.index('<offer id="LS-2001"') + 60], "utf-8")
    items = list(read_feed(cut, "yml"))
    assert records(items) == YML_RECORDS[:2]
    assert items[-1] == FeedProblem("cut.yml:48", "the XML breaks off here: no element found")


def test_xml_with_entity_declarations_is_refused(tmp_path):
    laughs = tmp_path / "laughs.xml"
    laughs.write_text(
        '<?xml version="1.0"?><!DOCTYPE yml_catalog [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<yml_catalog><shop><offers/></shop></yml_catalog>"
    )
    with pytest.raises(FeedError, match="entity declarations are refused"):
        list(read_feed(laughs, "yml"))


def test_wrong_root_element_is_a_feed_error(tmp_path):
    other = tmp_path / "other.xml"
    other.write_text("<catalog><offer/></catalog>")
    with pytest.raises(FeedError, match="cannot tell the format of other.xml: its root element is <catalog>"):
        read_feed(other)
    with pytest.raises(FeedError, match="the root element is <catalog>, expected <yml_catalog>"):
        list(read_feed(other, "yml"))


# Google Merchant Center.

GMC_RECORDS = [
    FeedRecord(
        offer_id="NW-DR-001",
        title="Linen Wrap Dress, Sage",
        image_urls=(f"{NW}/dr001/front.jpg", f"{NW}/dr001/back.jpg", f"{NW}/dr001/detail.jpg"),
        url="https://northwind.example/p/linen-wrap-dress-sage",
        price=1299.0,
        currency="RUB",
        category_path="Women / Dresses / Wrap",  # the shop's product_type before Google's category
        vendor="Northwind",
        gender="women",
        color="Sage",
        params=(
            ("item_group_id", "NW-DR-001"),
            ("size", "M"),
            ("age_group", "adult"),
            ("availability", "in_stock"),
            ("google_product_category", "Apparel & Accessories > Clothing > Dresses"),
        ),
    ),
    FeedRecord(
        offer_id="NW-SH-014",
        title="Leather Chelsea Boots",  # g:title and g:link
        image_urls=(f"{NW}/sh014/side.jpg", f"{NW}/sh014/top.jpg", f"{NW}/sh014/sole.jpg"),
        url="https://northwind.example/p/chelsea-boots",
        price=8990.0,
        currency="RUB",
        category_path="Apparel & Accessories / Shoes",
        gender="men",
        color="Brown",
        params=(("google_product_category", "Apparel & Accessories > Shoes"),),
    ),
    FeedRecord(
        offer_id="NW-BB-003",
        title="Organic Cotton Bodysuit",
        image_urls=(f"{NW}/bb003/front.jpg",),
        url="https://northwind.example/p/bodysuit",
        price=590.0,
        currency="RUB",
        category_path=None,  # a numeric Google category is an id, not a path
        gender="baby",  # age_group newborn
        params=(("age_group", "newborn"), ("google_product_category", "182")),
    ),
]
GMC_PROBLEMS = [
    FeedProblem("shop-gmc.xml:47", "missing offer id"),
    FeedProblem("shop-gmc.xml:52 (id NW-TS-020)", "no picture"),
    FeedProblem("shop-gmc.xml:57 (id NW-TS-021)", "bad price: 'free'"),
]


def test_gmc_atom_variant(tmp_path):
    atom = tmp_path / "feed.atom"
    atom.write_text(
        '<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">\n'
        "<title>Shop</title>\n<entry>\n<id>tag:shop,2024:1</id><g:id>A1</g:id><title>Skirt</title>\n"
        '<link rel="alternate" href="https://shop.example/a1"/><g:image_link>https://shop.example/a1.jpg</g:image_link>'
        "\n<g:price>10.50 EUR</g:price><g:gender>Female</g:gender></entry>\n"
        "<entry><g:id>A2</g:id><title>No picture</title></entry></feed>\n",
        "utf-8",
    )
    assert detect_format(atom) == "gmc"
    assert list(read_feed(atom)) == [
        FeedRecord(
            "A1", "Skirt", ("https://shop.example/a1.jpg",), "https://shop.example/a1", 10.5, "EUR", gender="women"
        ),
        FeedProblem("feed.atom:8 (id A2)", "no picture"),
    ]


# CSV and JSON Lines.

CSV_RECORDS = [
    FeedRecord(
        offer_id="KS-01",
        title="Кардиган оверсайз",
        image_urls=(f"{KS}/ks01/1.jpg", f"{KS}/ks01/2.jpg", f"{KS}/ks01/3.jpg"),
        url="https://krasota.example/ks-01",
        price=3590.0,
        currency="RUB",
        category_path="Женщинам / Трикотаж / Кардиганы",
        vendor="Krasota",
        gender="women",
        color="бежевый",
        params=(("Размер", "S-M"), ("Материал", "шерсть")),
    ),
    FeedRecord(
        offer_id="KS-02",
        title='Брюки "палаццо"',
        image_urls=(f"{KS}/ks02/1.jpg",),
        url="https://krasota.example/ks-02",
        price=4290.0,
        currency="RUB",
        category_path="Женщинам / Брюки",
        vendor="Krasota",
        gender="women",
        color="чёрный",
    ),
    FeedRecord(
        offer_id="KS-03",
        title="Футболка мужская",
        image_urls=(f"{KS}/ks03/1.jpg", f"{KS}/ks03/2.jpg"),
        price=1290.0,
        currency="RUB",  # from the price, "1290.00 RUB"
        category_path="Мужчинам / Футболки",
    ),
    FeedRecord(offer_id="KS-04", title="Рубашка без цены", image_urls=(f"{KS}/ks04/1.jpg",)),
    FeedRecord(  # a quoted value across two lines
        offer_id="KS-09",
        title="Пальто двубортное",
        image_urls=(f"{KS}/ks09/1.jpg",),
        price=12990.0,
        currency="EUR",
        category_path="Женщинам / Верхняя одежда / Пальто",
    ),
]
CSV_PROBLEMS = [
    FeedProblem("shop.csv:7 (id KS-05)", "wrong column count: 13 values, the header has 12 columns"),
    FeedProblem("shop.csv:8", "missing offer id"),
    FeedProblem("shop.csv:9 (id KS-06)", "bad price: 'дорого'"),
    FeedProblem("shop.csv:10 (id KS-07)", "no picture: not an http(s) URL: 'ftp://cdn.krasota.example/ks07/1.jpg'"),
    FeedProblem("shop.csv:11", "broken CSV row: ',' expected after '\"'"),
]


def test_csv_with_a_column_map_semicolons_and_windows_1251(tmp_path):
    export = tmp_path / "1c-export.csv"
    export.write_bytes(
        "Артикул;Наименование;Фото;Цена;Раздел;Пол\n"
        "A-1;Платье;https://s.example/a1.jpg, https://s.example/a1b.jpg;1 990;Женщинам > Платья;Ж\n"
        "A-2;Юбка;;990;Женщинам > Юбки;Ж\n".encode("cp1251")
    )
    column_map = {
        "offer_id": "Артикул",
        "title": "Наименование",
        "image_urls": "Фото",
        "price": "Цена",
        "category_path": "Раздел",
        "gender": "Пол",
    }
    assert list(read_feed(export, column_map=column_map)) == [
        FeedRecord(
            "A-1",
            "Платье",
            ("https://s.example/a1.jpg", "https://s.example/a1b.jpg"),
            price=1990.0,
            category_path="Женщинам / Платья",
            gender="women",
        ),
        FeedProblem("1c-export.csv:3 (id A-2)", "no picture"),
    ]


def test_csv_without_the_required_columns_is_refused(tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("sku,name,picture\n1,Dress,https://s.example/1.jpg\n", "utf-8")
    with pytest.raises(FeedError, match="the header has no 'offer_id', 'title', 'image_url or image_urls' column"):
        list(read_feed(export))
    mapped = read_feed(export, column_map={"offer_id": "sku", "title": "name", "image_url": "picture"})
    assert list(mapped) == [FeedRecord("1", "Dress", ("https://s.example/1.jpg",))]


def test_a_column_map_naming_an_unknown_field_or_for_xml_is_refused():
    with pytest.raises(FeedError, match="unknown fields \\['sku'\\]"):
        list(read_feed(FEEDS / "shop.csv", column_map={"sku": "offer_id"}))
    with pytest.raises(FeedError, match="applies to csv and jsonl feeds, not to yml"):
        read_feed(FEEDS / "shop.yml", column_map={"offer_id": "sku"})


JSONL_RECORDS = [
    FeedRecord(
        offer_id="JL-1",
        title="Худи с капюшоном",
        image_urls=(f"{JL}/jl1/a.jpg", f"{JL}/jl1/b.jpg"),
        url="https://shop.example/jl-1",
        price=3990.0,
        currency="RUB",
        category_path="Мужчинам / Толстовки",
        vendor="North",
        gender="men",
        color="серый",
        params=(("Размер", "L"), ("Состав", "хлопок 80%")),
    ),
    FeedRecord(
        offer_id="2",
        title="Сумка тоут",
        image_urls=(f"{JL}/jl2/a.jpg",),
        price=2490.0,
        currency="RUB",
        category_path="Сумки / Тоуты",
        params=(("Материал", "кожа"),),
    ),
    FeedRecord(
        offer_id="JL-3",
        title="Пижама",
        image_urls=(f"{JL}/jl3/a.jpg", f"{JL}/jl3/b.jpg"),
        gender="baby",
        params=(("Возраст", "0-3 мес"),),
    ),
]
JSONL_PROBLEMS = [
    FeedProblem("shop.jsonl:5", "invalid JSON: Expecting property name enclosed in double quotes at column 104"),
    FeedProblem("shop.jsonl:6", "not a JSON object: list"),
    FeedProblem("shop.jsonl:7 (id JL-5)", "missing title"),
    FeedProblem("shop.jsonl:8 (id JL-6)", "bad currency: 'рубли'"),
    FeedProblem("shop.jsonl:9 (id JL-7)", "bad params: 'Размер' has no value"),
    FeedProblem("shop.jsonl:10 (id JL-8)", "no picture"),
]


def test_jsonl_line_that_is_not_utf8(tmp_path):
    feed = tmp_path / "feed.ndjson"
    feed.write_bytes(b'{"offer_id": "\xff"}\n')
    assert list(read_feed(feed)) == [FeedProblem("feed.ndjson:1", "invalid JSON: not UTF-8")]


# The folder of images.


@pytest.fixture
def catalogue(tmp_path) -> Path:
    root = tmp_path / "catalogue"
    for name in ["dress/0001.jpg", "dress/0002.PNG", "dress/notes.txt", "women/skirt/a.webp", "b.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded here")
    return root


def test_folder_gives_one_record_per_image(catalogue):
    assert detect_format(catalogue) == "folder"
    assert list(read_feed(catalogue)) == [
        FeedRecord("b", "b", (str(catalogue / "b.jpg"),)),
        FeedRecord("dress/0001", "dress 0001", (str(catalogue / "dress/0001.jpg"),), category_path="dress"),
        FeedRecord("dress/0002", "dress 0002", (str(catalogue / "dress/0002.PNG"),), category_path="dress"),
        FeedRecord("women/skirt/a", "skirt a", (str(catalogue / "women/skirt/a.webp"),), category_path="women / skirt"),
    ]


def test_iter_folder_offers_keeps_its_offers(catalogue):
    seen = []
    offers = list(iter_folder_offers(catalogue, shop="demo", categorize=lambda path: seen.append(path) or 7))
    assert [(o.offer_id, o.title, o.image_url, o.category_id, p) for o, p in offers] == [
        ("b", "demo b", "/ui/catalog/b.jpg", None, catalogue / "b.jpg"),
        ("dress/0001", "dress 0001", "/ui/catalog/dress/0001.jpg", 7, catalogue / "dress/0001.jpg"),
        ("dress/0002", "dress 0002", "/ui/catalog/dress/0002.PNG", 7, catalogue / "dress/0002.PNG"),
        ("women/skirt/a", "skirt a", "/ui/catalog/women/skirt/a.webp", 7, catalogue / "women/skirt/a.webp"),
    ]
    assert seen == ["dress", "dress", "women/skirt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_folder_offers(catalogue / "missing", shop="demo", categorize=lambda path: None))


# Formats and fields.

# The sample feeds: file, the format it is detected as, its exact records and its exact problems.
SAMPLES = [
    ("shop.yml", "yml", YML_RECORDS, YML_PROBLEMS),
    ("shop-gmc.xml", "gmc", GMC_RECORDS, GMC_PROBLEMS),
    ("shop.csv", "csv", CSV_RECORDS, CSV_PROBLEMS),
    ("shop.jsonl", "jsonl", JSONL_RECORDS, JSONL_PROBLEMS),
]


@pytest.mark.parametrize(
    ("name", "expected_records", "expected_problems"),
    [(n, r, p) for n, _, r, p in SAMPLES],
    ids=[n for n, *_ in SAMPLES],
)
def test_sample_gives_exact_records_and_problems(name, expected_records, expected_problems):
    items = list(read_feed(FEEDS / name))
    assert records(items) == expected_records
    assert problems(items) == expected_problems


@pytest.mark.parametrize(("name", "expected"), [(name, fmt) for name, fmt, *_ in SAMPLES])
def test_detect_format(name, expected):
    assert detect_format(FEEDS / name) == expected


def test_a_missing_feed_or_format_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_feed(tmp_path / "missing.xml")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FeedError, match="cannot tell the format of notes.txt: it is not XML"):
        read_feed(tmp_path / "notes.txt")
    with pytest.raises(FeedError, match="unknown feed format 'xlsx'"):
        read_feed(FEEDS / "shop.csv", "xlsx")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2990", (2990.0, None)),
        ("2990.00", (2990.0, None)),
        ("1 299,50", (1299.5, None)),
        ("1\u00a0299", (1299.0, None)),
        ("1,299.50", (1299.5, None)),
        ("1.299,50", (1299.5, None)),
        ("1299.00 RUB", (1299.0, "RUB")),
        ("1299.00 RUR", (1299.0, "RUB")),
        ("2990 руб.", (2990.0, "RUB")),
        (12, (12.0, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_prices(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("text", ["договорная", "-5", "12.5.3", "5 XYZW", float("nan"), True])
def test_bad_prices(text):
    with pytest.raises(BadRecord, match="bad price"):
        parse_price(text)


def test_sample_feeds_meet_the_rubricator_by_name():
    # No mapping file: the Categorizer places what the shops' own names say, and lists the rest.
    rubricator, categorize = load_rubricator(), Categorizer()
    placed = {}
    for name, *_ in SAMPLES:
        for record in records(list(read_feed(FEEDS / name))):
            category_id = categorize(record.category_path, gender=record.gender)
            placed[record.offer_id] = rubricator.get(category_id).name if category_id else None
    assert placed == {
        "LS-1001": "midi-dress",
        "LS-1002": "skirt",
        "LS-2001": None,  # unisex sneakers: the tree has women's and men's
        "LS-3001": None,
        "NW-DR-001": "dress",
        "NW-SH-014": "mens-shoes",  # "Shoes" and g:gender male
        "NW-BB-003": None,
        "KS-01": "womens-knitwear",
        "KS-02": "womens-trousers",
        "KS-03": "mens-t-shirts",  # "Футболки" under "Мужчинам"
        "KS-04": None,
        "KS-09": "womens-coats",
        "JL-1": None,
        "2": "bags",
        "JL-3": None,
    }
    assert categorize.unmapped.most_common() == [
        ("(no category)", 4),
        ("Обувь / Кроссовки", 1),
        ("Мужчинам / Толстовки", 1),
    ]
