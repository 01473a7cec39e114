"""CSV and JSON Lines catalogues, with a column map.

One offer a row (CSV, with a header row) or a line (JSON Lines, one object a line). By default
the columns, or the keys, are named as `FeedRecord`'s fields:

    offer_id, title, image_url, image_urls, url, price, currency, category_path, vendor, gender, color, params

- ``offer_id``, ``title`` and a picture are required (CSV: ``offer_id`` and ``title`` columns, and
  ``image_url`` or ``image_urls``; a file without them is refused whole with a FeedError).
- ``image_url`` is the main picture; ``image_urls`` more pictures (or all of them), separated by
  ``|``, whitespace, or commas before "http" (JSON: a list of strings, or such a string).
- ``price``: "2990", "1 299,50", "1299.00 RUB" (a currency written there is used when ``currency``
  is empty); ``currency``: ISO 4217, RUR read as RUB.
- ``category_path``: "Женская одежда > Платья" or "Женская одежда / Платья" (JSON: also a list).
- ``gender``: female/male/unisex, "Женский", "Мужской", ... read as women/men/unisex/baby.
- ``params``: "Размер=44|Материал=хлопок" (JSON: also an object, or a list of [name, value]).

``column_map`` renames: ``{our field: their column}``, e.g. ``{"offer_id": "sku", "title": "name",
"image_urls": "pictures", "category_path": "Категория"}``; fields it does not name keep their own
names, and columns nothing names are ignored.

CSV: the delimiter is ",", ";" or tab, whichever the header line has most of; the encoding is
UTF-8 (with or without a BOM) or, when the first 64 KB are not UTF-8, Windows-1251.

Problems reported, each skipping one row or line at its line number: a row with more or fewer
values than the header, broken quoting, a line that is not a JSON object, a missing id, title or
http(s) picture, a bad price, currency or params value.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from indexer.feeds.base import (
    BadRecord,
    FeedError,
    FeedProblem,
    FeedRecord,
    location,
    make_record,
    open_binary,
    split_urls,
)

FIELDS = (
    "offer_id",
    "title",
    "image_url",
    "image_urls",
    "url",
    "price",
    "currency",
    "category_path",
    "vendor",
    "gender",
    "color",
    "params",
)
REQUIRED = ("offer_id", "title")
_SNIFF_BYTES = 1 << 16
_DELIMITERS = (",", ";", "\t")


def columns(column_map: Mapping[str, str] | None) -> dict[str, str]:
    """Our field -> their column, for every field; FeedError for a map naming fields we do not have."""
    column_map = dict(column_map or {})
    if unknown := sorted(column_map.keys() - set(FIELDS)):
        raise FeedError(f"column_map names unknown fields {unknown}; the fields are {list(FIELDS)}")
    return {field: column_map.get(field, field) for field in FIELDS}


def read_csv(source: Path, *, column_map: Mapping[str, str] | None = None) -> Iterator[FeedRecord | FeedProblem]:
    names = columns(column_map)
    with open_binary(source) as stream:
        head = stream.read(_SNIFF_BYTES)
        stream.seek(0)
        text = io.TextIOWrapper(stream, encoding=_encoding(head), errors="replace", newline="")
        reader = csv.reader(text, delimiter=_delimiter(head, source), strict=True)
        header = [name.strip() for name in next(reader, [])]
        _check_header(header, names, source)
        line = reader.line_num
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield FeedProblem(location(source, start), f"broken CSV row: {error}")
                row = None
            line = reader.line_num
            if not row:  # a blank line, or one reported above
                continue
            values = dict(zip(header, row, strict=False))
            if len(row) != len(header):
                reason = f"wrong column count: {len(row)} values, the header has {len(header)} columns"
                yield FeedProblem(location(source, start, values.get(names["offer_id"])), reason)
                continue
            yield _record(values, names, source, start)


def read_jsonl(source: Path, *, column_map: Mapping[str, str] | None = None) -> Iterator[FeedRecord | FeedProblem]:
    names = columns(column_map)
    with open_binary(source) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line.strip())
            except json.JSONDecodeError as error:
                yield FeedProblem(location(source, number), f"invalid JSON: {error.msg} at column {error.colno}")
                continue
            except UnicodeDecodeError:
                yield FeedProblem(location(source, number), "invalid JSON: not UTF-8")
                continue
            if not isinstance(values, dict):
                yield FeedProblem(location(source, number), f"not a JSON object: {type(values).__name__}")
                continue
            yield _record(values, names, source, number)


def _record(
    values: Mapping[str, object], names: Mapping[str, str], source: Path, line: int
) -> FeedRecord | FeedProblem:
    def get(field: str) -> object:
        value = values.get(names[field])
        return None if value == "" else value

    try:
        return make_record(
            offer_id=_scalar(get("offer_id"), "offer_id"),
            title=_scalar(get("title"), "title"),
            image_urls=[*_urls(get("image_url"), "image_url"), *_urls(get("image_urls"), "image_urls")],
            url=_scalar(get("url"), "url"),
            price=get("price"),
            currency=_scalar(get("currency"), "currency"),
            category_path=_path(get("category_path")),
            vendor=_scalar(get("vendor"), "vendor"),
            gender=_scalar(get("gender"), "gender"),
            color=_scalar(get("color"), "color"),
            params=_params(get("params")),
        )
    except BadRecord as error:
        offer_id = get("offer_id")
        return FeedProblem(location(source, line, str(offer_id) if offer_id is not None else None), str(error))


def _check_header(header: list[str], names: Mapping[str, str], source: Path) -> None:
    mapped = {field: column for field, column in names.items() if column in header}
    missing = [names[field] for field in REQUIRED if field not in mapped]
    if not ({"image_url", "image_urls"} & mapped.keys()):
        missing.append(f"{names['image_url']} or {names['image_urls']}")
    if missing:
        raise FeedError(
            f"{source.name}: the header has no {', '.join(repr(m) for m in missing)} column; it has {header}."
            " Name yours with column_map {our field: your column}"
        )


def _encoding(head: bytes) -> str:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1251"
    return "utf-8-sig"


def _delimiter(head: bytes, source: Path) -> str:
    if source.suffix.lower() == ".tsv":
        return "\t"
    header = head.split(b"\n", 1)[0]
    return max(_DELIMITERS, key=lambda d: header.count(d.encode()))  # a tie keeps the comma


def _scalar(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str | int | float) and not isinstance(value, bool):
        return None if value is None else str(value)
    raise BadRecord(f"bad {field}: {value!r}")


def _urls(value: object, field: str) -> list[str]:
    if isinstance(value, list) and all(isinstance(url, str) for url in value):
        return value
    return split_urls(_scalar(value, field))


def _path(value: object) -> str | list[str] | None:
    if isinstance(value, list) and all(isinstance(segment, str) for segment in value):
        return value
    return _scalar(value, "category_path")


def _params(value: object) -> list[tuple[str, str]]:
    pairs: list[tuple[object, object]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(pair, list | tuple) and len(pair) == 2 for pair in value):
        pairs = [tuple(pair) for pair in value]
    elif isinstance(value, str):
        pairs = [tuple(p.split("=", 1)) if "=" in p else (p, None) for p in value.split("|") if p.strip()]
    elif value is None:
        pairs = []
    else:
        pairs = [(value, None)]
    if bad := [name for name, v in pairs if not isinstance(v, str | int | float) or isinstance(v, bool)]:
        raise BadRecord(f"bad params: {bad[0]!r} has no value")
    return [(str(name), str(v)) for name, v in pairs]
