"""What every feed parser yields, and the field rules they share (ids, pictures, prices, currencies, genders)."""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from lookalike.taxonomy import gender_of

FeedFormat = Literal["yml", "gmc", "csv", "jsonl", "folder"]
PATH_SEPARATOR = " / "  # between the segments of every category_path a parser yields

_GZIP_MAGIC = b"\x1f\x8b"
_HTTP_URL = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)  # a scheme and a host, at least
_URL_SEPARATORS = re.compile(r"[|\s]+|,(?=\s*https?://)")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CURRENCY_ALIASES = {"RUR": "RUB", "₽": "RUB", "РУБ": "RUB", "РУБ.": "RUB", "Р.": "RUB"}  # RUR: as Yandex allows
# 2990 | 2990.00 | 1 299,50 | 1,299.50 | 1.299,50 | 1299.00 RUB | 2990 руб.: digits in groups of three
# with any separator, then an optional decimal part, then an optional currency.
_PRICE = re.compile(
    r"(?P<whole>\d{1,3}(?:[\s\u00a0\u202f.,']\d{3})+|\d+)(?:[.,](?P<fraction>\d+))?\s*(?P<currency>[^\d\s.,]\S*)?"
)


@dataclass(frozen=True)
class FeedRecord:
    offer_id: str
    title: str
    image_urls: tuple[str, ...]  # the main picture first; http(s) URLs, or file paths for the folder source
    url: str | None = None  # the product page
    price: float | None = None
    currency: str | None = None  # ISO 4217, upper case (RUR -> RUB as Yandex allows)
    category_path: str | None = None  # the shop's category path, segments joined by " / "
    vendor: str | None = None
    gender: str | None = None  # women|men|unisex|baby when recognisable, else None
    color: str | None = None
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FeedProblem:
    location: str  # "<file>:<line>", with " (id <offer id>)" when the record had one
    reason: str  # what is wrong, for the run summary: a fixed phrase, then ": <details>" where there are any


class FeedError(ValueError):
    """A feed that cannot be read at all: its format is unknown, its root element or its header is wrong."""


class BadRecord(ValueError):
    """Why one record cannot be used; a parser reports it as a FeedProblem and goes on with the next."""


def location(source: Path, line: int, offer_id: str | None = None) -> str:
    return f"{source.name}:{line}" + (f" (id {offer_id})" if offer_id else "")


@contextmanager
def open_binary(source: Path) -> Iterator[IO[bytes]]:
    """The feed's bytes, gunzipped when the file is gzip (feeds are often served as feed.xml.gz)."""
    with open(source, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.open(raw) as unzipped:
            yield unzipped


def make_record(
    *,
    offer_id: object,
    title: str | None,
    image_urls: Iterable[str],
    url: str | None = None,
    price: object = None,
    currency: str | None = None,
    category_path: str | Iterable[str] | None = None,
    vendor: str | None = None,
    gender: str | None = None,
    color: str | None = None,
    params: Iterable[tuple[str, str]] = (),
    local_images: bool = False,
) -> FeedRecord:
    """A record from a parser's raw values, checked and normalised; BadRecord says why it cannot be one.

    `price` may be a number or text ("1 299,00", or "1299.00 RUB" with its currency); an offer
    needs an id, a title and a picture (an http(s) URL, or a file path when `local_images`).
    """
    offer_id = _text(
        str(offer_id) if isinstance(offer_id, int | float) and not isinstance(offer_id, bool) else offer_id
    )
    if offer_id is None:
        raise BadRecord("missing offer id")
    if (title := _text(title)) is None:
        raise BadRecord("missing title")
    pictures = [picture for url_ in image_urls if (picture := _text(url_))]
    usable = list(dict.fromkeys(pictures if local_images else filter(_is_http_url, pictures)))
    if not usable:
        raise BadRecord("no picture" + (f": not an http(s) URL: {pictures[0]!r}" if pictures else ""))
    amount, priced_currency = parse_price(price)
    return FeedRecord(
        offer_id=offer_id,
        title=title,
        image_urls=tuple(usable),
        url=url if (url := _text(url)) and _is_http_url(url) else None,
        price=amount,
        currency=parse_currency(currency) or priced_currency,
        category_path=join_path(category_path),
        vendor=_text(vendor),
        gender=gender_of(gender),
        color=_text(color),
        params=tuple((name, value) for name, value in ((_text(n), _text(v)) for n, v in params) if name and value),
    )


def parse_price(price: object) -> tuple[float | None, str | None]:
    """(amount, currency) from 2990, "2990.00", "1 299,50" or "1299.00 RUB"; BadRecord for anything else."""
    if price is None or (isinstance(price, str) and not price.strip()):
        return None, None
    if isinstance(price, bool) or not isinstance(price, int | float | str):
        raise BadRecord(f"bad price: {price!r}")
    currency = None
    if isinstance(price, str):
        if (match := _PRICE.fullmatch(price.strip())) is None:
            raise BadRecord(f"bad price: {price!r}")
        value = float(re.sub(r"\D", "", match["whole"]) + "." + (match["fraction"] or "0"))
        try:
            currency = parse_currency(match["currency"])
        except BadRecord:
            raise BadRecord(f"bad price: {price!r}") from None
    else:
        value = float(price)
    if not math.isfinite(value) or value < 0:
        raise BadRecord(f"bad price: {price!r}")
    return value, currency


def parse_currency(currency: str | None) -> str | None:
    """An ISO 4217 code in upper case (RUR, ₽ and "руб." read as RUB); BadRecord when it is not one."""
    if (text := _text(currency)) is None:
        return None
    code = _CURRENCY_ALIASES.get(text.upper(), text.upper())
    if not _CURRENCY.fullmatch(code):
        raise BadRecord(f"bad currency: {currency!r}")
    return code


def join_path(path: str | Iterable[str] | None) -> str | None:
    """A shop's category path as "A / B / C": from segments, or from text written with " > " or " / "."""
    if path is None:
        return None
    segments = re.split(r"\s*(?:>|\s/\s)\s*", path) if isinstance(path, str) else list(path)
    joined = PATH_SEPARATOR.join(s for segment in segments if (s := _text(segment)))
    return joined or None


def split_urls(text: str | None) -> list[str]:
    """Picture URLs written in one field, separated by "|", whitespace, or commas before "http"."""
    return [url for url in _URL_SEPARATORS.split(text or "") if url]


def _is_http_url(url: str) -> bool:
    return _HTTP_URL.match(url) is not None


def _text(value: object) -> str | None:
    """Stripped text with its whitespace runs collapsed, or None when there is none."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None
