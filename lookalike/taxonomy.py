"""The rubricator: Lookalike's category tree, kept in ``lookalike/data/rubricator.yaml``.

Narrow categories roll up into broad ones (midi-dress -> dress -> womens-clothing), so an offer
filed under a leaf is found by a filter on any of its ancestors. The rules for editing the tree
(ids are never renumbered or reused) are written at the top of the data file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

GENDERS = frozenset({"women", "men", "unisex", "baby"})
_NODE_KEYS = frozenset({"id", "name", "title", "aliases", "gender", "retired", "children"})
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_DASHES = re.compile(r"[-_\u2010-\u2015]")
_APOSTROPHES = re.compile(r"['\u2019`]")

# How feeds and shop category trees say whose garment it is (compared after `loose`), and the
# words that make a name gendered, as the rubricator's aliases write them ("женские кроссовки",
# "women's shoes", "пижама для малыша"). "Детский" means kids', which the rubricator has no
# tree for, so it is no gender here.
_GENDER_WORDS = {
    "women": ("ж", "жен", "женский", "женская", "женское", "женские", "женщинам", "женщины", "для женщин")
    + ("female", "woman", "women", "women's", "ladies"),
    "men": ("м", "муж", "мужской", "мужская", "мужское", "мужские", "мужчинам", "мужчины", "для мужчин")
    + ("male", "man", "men", "men's"),
    "unisex": ("унисекс", "для всех", "unisex"),
    "baby": ("новорожденным", "для новорожденных", "малышам", "для малышей", "младенцам")
    + ("newborn", "newborns", "infant", "infants", "baby", "babies"),
}
_QUALIFIERS = {
    "women": ("женские", "женская", "женский", "женское", "women's", "women"),
    "men": ("мужские", "мужская", "мужской", "мужское", "men's", "men"),
    "baby": ("для малыша", "для новорожденных", "детские", "детская", "детский", "детское", "baby"),
}


def normalize(text: str) -> str:
    """Fold case, ё to е and runs of whitespace, so that shops' spellings of one name compare equal."""
    return " ".join(text.casefold().replace("ё", "е").split())


def loose(text: str) -> str:
    """`normalize`, and dashes and underscores read as spaces, apostrophes dropped: "Men's T-Shirts" ~ "mens t shirts"."""
    return " ".join(_APOSTROPHES.sub("", _DASHES.sub(" ", normalize(text))).split())


_GENDER_OF = {loose(word): gender for gender, words in _GENDER_WORDS.items() for word in words}


def gender_of(text: str | None) -> str | None:
    """women, men, unisex or baby when the text names one ("Женский", "female", "Для новорожденных"), else None."""
    return _GENDER_OF.get(loose(text)) if text else None


class RubricatorError(ValueError):
    """The rubricator data breaks one of the rules written at the top of the data file."""


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    title: str
    parent_id: int | None
    aliases: tuple[str, ...] = ()
    gender: str | None = None
    retired: bool = False
    depth: int = 0


class Rubricator:
    """The category tree, looked up by id, name or alias; retired nodes keep their id and name."""

    def __init__(self, categories: Iterable[Category], *, source: str = "<rubricator>") -> None:
        self._by_id: dict[int, Category] = {}
        self._children: dict[int | None, list[int]] = {}
        self._by_key: dict[str, int] = {}
        self._by_loose_key: dict[str, int | None] = {}  # None: the loose form names two categories
        for category in categories:
            self._add(category, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Rubricator:
        """Read a rubricator file; without a path, the one packaged with Lookalike."""
        file = resources.files("lookalike").joinpath("data/rubricator.yaml") if path is None else Path(path)
        source = "rubricator.yaml" if path is None else str(path)
        return cls.from_document(yaml.safe_load(file.read_text(encoding="utf-8")), source=source)

    @classmethod
    def from_document(cls, document: Any, *, source: str = "<rubricator>") -> Rubricator:
        if not isinstance(document, dict) or not isinstance(document.get("categories"), list):
            raise RubricatorError(f"{source}: expected a mapping with a 'categories' list")
        next_id = document.get("next_id")
        if type(next_id) is not int:
            raise RubricatorError(f"{source}: 'next_id' must be an integer (the id the next new node takes)")
        categories = list(_read_nodes(document["categories"], None, source))
        if too_high := [c.id for c in categories if c.id >= next_id]:
            raise RubricatorError(f"{source}: ids {too_high} are not below next_id {next_id}; raise next_id past them")
        return cls(categories, source=source)

    def _add(self, category: Category, source: str) -> None:
        if (taken := self._by_id.get(category.id)) is not None:
            raise RubricatorError(
                f"{source}: id {category.id} of {category.name!r} is taken by {taken.name!r}; ids are never reused"
            )
        if category.parent_id is not None and category.parent_id not in self._by_id:
            raise RubricatorError(f"{source}: {category.name!r} names an unknown parent id {category.parent_id}")
        self._by_id[category.id] = category
        self._children.setdefault(category.parent_id, []).append(category.id)
        # A retired node keeps its name reserved but frees its aliases for a successor.
        for key in (category.name, *(() if category.retired else category.aliases)):
            normalized = normalize(key)
            if (other := self._by_key.get(normalized, category.id)) != category.id:
                other_name = self._by_id[other].name
                raise RubricatorError(f"{source}: {key!r} of {category.name!r} already names {other_name!r}")
            self._by_key[normalized] = category.id
            loose_key = loose(key)
            known = self._by_loose_key.get(loose_key, category.id)
            self._by_loose_key[loose_key] = category.id if known == category.id else None

    def get(self, key: int | str) -> Category:
        """The category with this id, or with this name or alias.

        Case, spacing and ё/е are ignored; so are dashes, underscores and apostrophes where that
        still names one category ("Mens T-Shirts" is `mens-t-shirts`).
        """
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"look categories up by integer id or by name, not by {key!r}")
        if isinstance(key, int):
            if key in self._by_id:
                return self._by_id[key]
            raise KeyError(f"no category with id {key}")
        normalized = normalize(key)
        if normalized in self._by_key:
            return self._by_id[self._by_key[normalized]]
        if (loose_id := self._by_loose_key.get(loose(key))) is not None:
            return self._by_id[loose_id]
        close = difflib.get_close_matches(normalized, self._by_key, n=3)
        raise KeyError(f"no category named {key!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))

    def match(self, name: str, *, gender: str | None = None) -> Category | None:
        """The active category a shop's category name means, or None; never raises.

        A name as `get` reads it. With a `gender` (women, men or baby), the name qualified by it
        as the aliases are written wins over a category of another gender: "Кроссовки" for women
        is "женские кроссовки", "Shoes" for men is "men's shoes". A bare "Shoes" names nothing:
        the tree has women's shoes and men's shoes, and no shoes of nobody's.
        """
        plain = self._find(name)
        if gender not in _QUALIFIERS or (plain is not None and plain.gender == gender):
            return plain
        forms = (*(f"{q} {name}" for q in _QUALIFIERS[gender]), *(f"{name} {q}" for q in _QUALIFIERS[gender]))
        return next((c for c in map(self._find, forms) if c is not None and c.gender == gender), plain)

    def _find(self, name: str) -> Category | None:
        category_id = self._by_key.get(normalize(name), self._by_loose_key.get(loose(name)))
        category = self._by_id.get(category_id) if category_id is not None else None
        return category if category is not None and not category.retired else None

    def __contains__(self, key: object) -> bool:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            return False
        try:
            self.get(key)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def roots(self) -> list[Category]:
        return self._active(self._children.get(None, []))

    def children(self, key: int | str, *, include_retired: bool = False) -> list[Category]:
        ids = self._children.get(self.get(key).id, [])
        return [self._by_id[i] for i in ids] if include_retired else self._active(ids)

    def descendants(self, key: int | str) -> list[Category]:
        """Every active node below this one, depth first in file order."""
        found = []
        for child in self.children(key):
            found += [child, *self.descendants(child.id)]
        return found

    def is_leaf(self, key: int | str) -> bool:
        return not self.children(key)

    def leaves(self) -> list[Category]:
        """The active categories with no active children: what offers are filed under."""
        return [c for c in self if not c.retired and self.is_leaf(c.id)]

    def ancestors(self, key: int | str) -> list[Category]:
        """From the parent up to the root."""
        found, parent_id = [], self.get(key).parent_id
        while parent_id is not None:
            found.append(self._by_id[parent_id])
            parent_id = found[-1].parent_id
        return found

    def path(self, key: int | str) -> list[Category]:
        """From the root down to the node itself."""
        return [*reversed(self.ancestors(key)), self.get(key)]

    def roll_up(self, key: int | str, depth: int) -> Category:
        """The node's ancestor at `depth` (0 is the root); a node no deeper than that is its own answer."""
        if depth < 0:
            raise ValueError(f"depth must be 0 or more, got {depth}")
        path = self.path(key)
        return path[min(depth, len(path) - 1)]

    def self_and_ancestor_ids(self, key: int | str) -> list[int]:
        """The node's id and its ancestors' ids: stored with an offer, a filter on 'dress' finds midi dresses."""
        return [c.id for c in reversed(self.path(key))]

    def _active(self, ids: Iterable[int]) -> list[Category]:
        return [self._by_id[i] for i in ids if not self._by_id[i].retired]


@cache
def load_rubricator() -> Rubricator:
    """The packaged rubricator, read once per process."""
    return Rubricator.load()


def _read_nodes(nodes: Any, parent: Category | None, source: str) -> Iterator[Category]:
    if not isinstance(nodes, list):
        raise RubricatorError(f"{source}: 'children' of {parent.name if parent else 'the root'!r} must be a list")
    for node in nodes:
        category = _read_node(node, parent, source)
        yield category
        yield from _read_nodes(node.get("children", []), category, source)


def _read_node(node: Any, parent: Category | None, source: str) -> Category:
    if not isinstance(node, dict):
        raise RubricatorError(f"{source}: every node must be a mapping, got {node!r}")
    label = f"{source}: node {node.get('name', node.get('id'))!r}"
    if unknown := sorted(node.keys() - _NODE_KEYS):
        raise RubricatorError(f"{label}: unknown keys {unknown}; allowed are {sorted(_NODE_KEYS)}")
    node_id, name, title = node.get("id"), node.get("name"), node.get("title")
    aliases, gender, retired = node.get("aliases", []), node.get("gender"), node.get("retired", False)
    if type(node_id) is not int or node_id <= 0:
        raise RubricatorError(f"{label}: 'id' must be a positive integer, got {node_id!r}")
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise RubricatorError(f"{label}: 'name' must be a lower-case slug like 'midi-dress', got {name!r}")
    if not isinstance(title, str) or not title.strip():
        raise RubricatorError(f"{label}: 'title' must be a non-empty string")
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise RubricatorError(f"{label}: 'aliases' must be a list of non-empty strings")
    if gender is not None and gender not in GENDERS:
        raise RubricatorError(f"{label}: 'gender' must be one of {sorted(GENDERS)}, got {gender!r}")
    if not isinstance(retired, bool):
        raise RubricatorError(f"{label}: 'retired' must be true or false")
    if parent is not None and parent.retired and not retired:
        raise RubricatorError(f"{label}: its parent {parent.name!r} is retired, so it must be retired too")
    return Category(
        id=node_id,
        name=name,
        title=title.strip(),
        parent_id=parent.id if parent else None,
        aliases=tuple(aliases),
        gender=gender or (parent.gender if parent else None),
        retired=retired,
        depth=parent.depth + 1 if parent else 0,
    )
