"""Catalogue feeds: one streaming parser per format, each yielding records and the problems it skipped.

    for item in read_feed(Path("shop.xml")):          # the format told by suffix and root element
        if isinstance(item, FeedProblem):
            log.warning("%s: %s", item.location, item.reason)
        else:
            ...                                        # a FeedRecord

Formats, each described in its module's docstring: Yandex Market YML (`yml`), Google Merchant
Center RSS/Atom XML (`gmc`), CSV and JSON Lines with a column map (`tabular`), and a folder of
images with one sub-folder per category (`folder`). Files may be gzipped. A malformed record
is reported as a `FeedProblem` with its location and skipped, never the whole feed. A feed that
cannot be read at all raises `FeedError` (a ValueError): when `read_feed` is called, for a format
it cannot tell or a column map a format does not take; at the first record, for a wrong XML root
element or a CSV header without the required columns. A missing feed raises FileNotFoundError.
The parsers do not drop repeated offer ids: the pipeline decides what a second one means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from indexer.feeds import folder, gmc, tabular, yml
from indexer.feeds.base import FeedError, FeedFormat, FeedProblem, FeedRecord, open_binary
from indexer.feeds.xmlstream import root_tag

__all__ = ["FeedError", "FeedFormat", "FeedProblem", "FeedRecord", "detect_format", "read_feed"]

_READERS: dict[str, Callable[..., Iterator[FeedRecord | FeedProblem]]] = {
    "yml": yml.read,
    "gmc": gmc.read,
    "csv": tabular.read_csv,
    "jsonl": tabular.read_jsonl,
    "folder": folder.read,
}
_TABULAR = frozenset({"csv", "jsonl"})
_BY_SUFFIX: dict[str, FeedFormat] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BY_ROOT: dict[str, FeedFormat] = {yml.ROOT: "yml", **dict.fromkeys(gmc.ROOTS, "gmc")}


def read_feed(
    source: Path, format: FeedFormat | None = None, *, column_map: Mapping[str, str] | None = None
) -> Iterator[FeedRecord | FeedProblem]:
    """The feed's records in file order, and a FeedProblem where a record was skipped; see the module docstring.

    `format` is detected when not given (`detect_format`); `column_map` ({our field: their
    column}) applies to csv and jsonl only (indexer/feeds/tabular.py).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"feed {source} does not exist")
    format = format or detect_format(source)
    if format not in _READERS:
        raise FeedError(f"unknown feed format {format!r}; the formats are {sorted(_READERS)}")
    if column_map and format not in _TABULAR:
        raise FeedError(f"a column map applies to csv and jsonl feeds, not to {format}")
    if format in _TABULAR:
        return _READERS[format](source, column_map=column_map)
    return _READERS[format](source)


def detect_format(source: Path) -> FeedFormat:
    """folder for a directory; csv or jsonl by suffix (.csv, .tsv, .jsonl, .ndjson, also gzipped); else
    yml or gmc by the XML root element (<yml_catalog>, <rss> or Atom <feed>); FeedError if none fits."""
    source = Path(source)
    if source.is_dir():
        return "folder"
    suffixes = [suffix.lower() for suffix in source.suffixes if suffix.lower() != ".gz"]
    if suffixes and suffixes[-1] in _BY_SUFFIX:
        return _BY_SUFFIX[suffixes[-1]]
    with open_binary(source) as stream:
        root = root_tag(stream)
    if root in _BY_ROOT:
        return _BY_ROOT[root]
    found = f"its root element is <{root}>" if root else "it is not XML"
    raise FeedError(f"cannot tell the format of {source.name}: {found}; give the format (yml, gmc, csv, jsonl)")
