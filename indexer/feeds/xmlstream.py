"""Streaming a large XML feed one record element at a time, with the line each record starts on.

Only the record elements (an offer, a category, an item) are ever built as trees, each one
dropped once the caller has read it, so a 2 GB feed takes the memory of its largest record.
expat reports where every element starts, which `xml.etree.ElementTree.iterparse` does not.
Entity declarations are refused (a feed has no need of them; they are how "billion laughs"
documents blow up); external DTDs, such as YML's ``shops.dtd``, are never fetched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import IO
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from indexer.feeds.base import FeedError

CHUNK_BYTES = 1 << 16  # the records of one chunk are held at once: keep it small
_SNIFF_BYTES = 1 << 16
TagPath = tuple[str, ...]  # element names from the root down, namespaced ones as "{uri}name" like ElementTree's


class XmlBroken(Exception):
    """The XML stops being well-formed (or stops, if it was cut short) at this line; what came before was yielded."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


class _Stop(Exception):
    pass


def root_tag(stream: IO[bytes]) -> str | None:
    """The name of the document's root element, read from the first bytes; None if they are not XML."""
    parser = _parser()
    found: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        found.append(_qualified(tag))
        raise _Stop

    parser.StartElementHandler = start
    try:
        parser.Parse(stream.read(_SNIFF_BYTES), False)
    except (_Stop, expat.ExpatError):
        pass
    return found[0] if found else None


def iter_records(
    stream: IO[bytes], *, roots: Collection[str], records: Collection[TagPath]
) -> Iterator[tuple[TagPath, Element, int]]:
    """(tag path, element, start line) for each element at one of the `records` paths, in document order.

    FeedError when the root element is not one of `roots`; XmlBroken, after every record that
    was complete before it, when the document breaks off or is malformed.
    """
    parser = _parser()
    path: list[str] = []  # the open elements outside records
    done: list[tuple[TagPath, Element, int]] = []
    builder = TreeBuilder()
    depth = record_line = 0  # depth: open elements inside the current record

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth, record_line
        tag = _qualified(tag)
        path.append(tag)
        if len(path) == 1 and tag not in roots:
            raise FeedError(f"the root element is <{tag}>, expected <{'> or <'.join(sorted(roots))}>")
        if tuple(path) in records:  # from here to its end, the record's own handlers build it
            depth, record_line = 1, parser.CurrentLineNumber
            builder.start(tag, attrs)
            parser.StartElementHandler, parser.EndElementHandler = record_start, record_end
            parser.CharacterDataHandler = builder.data

    def end(tag: str) -> None:
        path.pop()

    def record_start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        builder.start(_qualified(tag), attrs)

    def record_end(tag: str) -> None:
        nonlocal builder, depth
        element = builder.end(_qualified(tag))
        depth -= 1
        if not depth:
            done.append((tuple(path), element, record_line))
            path.pop()
            builder = TreeBuilder()
            parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, None

    def refuse_entities(name: str, *args: object) -> None:
        raise FeedError(f"the feed declares the entity {name!r}; entity declarations are refused")

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.EntityDeclHandler = refuse_entities
    while True:
        chunk = stream.read(CHUNK_BYTES)
        try:
            parser.Parse(chunk, not chunk)
        except expat.ExpatError as error:
            yield from done
            raise XmlBroken(error.lineno, expat.ErrorString(error.code)) from None
        yield from done
        done.clear()
        if not chunk:
            return


def child_text(element: Element, *tags: str) -> str | None:
    """The stripped text of the first of these children that has any."""
    for tag in tags:
        for child in element.iterfind(tag):
            if child.text and (text := child.text.strip()):
                return text
    return None


def _parser() -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True  # one data callback per text run, not one per line or entity
    return parser


def _qualified(tag: str) -> str:
    """expat writes a namespaced name as "uri}name"; ElementTree (and our paths) as "{uri}name"."""
    return "{" + tag if "}" in tag else tag
