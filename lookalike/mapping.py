"""Shop category paths -> rubricator ids, through a line-based mapping file.

The file format is described in ``lookalike/data/MAPPING.md``. In short: one rule a line,
``<pattern> => <category>``, where the pattern is an exact path, ``glob: ...`` or ``re: ...``,
and the first rule in file order that matches a path wins. `Categorizer` is what the indexer
files offers with: the mapping's rules, then the path's own names matched against the
rubricator, and an `UnmappedReport` of what neither placed.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lookalike.taxonomy import Rubricator, gender_of, load_rubricator, normalize

ShopPath = str | Sequence[str]
_SEPARATOR = re.compile(r"[/>]")
_ARROW = "=>"
_GLOB_PREFIX, _REGEX_PREFIX = "glob:", "re:"
# Distinct category paths a catalogue has are few, so results are cached per path seen.
_CACHED_PATHS = 1 << 16
NO_CATEGORY = "(no category)"  # how the unmapped report lists offers that came without a category path


def _segments(shop_path: ShopPath) -> list[str]:
    """A path's segments, whitespace collapsed; '/' or '>' inside a segment splits it too."""
    pieces = [shop_path] if isinstance(shop_path, str) else shop_path
    return [" ".join(part.split()) for piece in pieces for part in _SEPARATOR.split(piece) if part.strip()]


def canonical_path(shop_path: ShopPath) -> str:
    """The form rules match against: 'Женская одежда > Платья' -> 'женская одежда / платья'."""
    return " / ".join(normalize(segment) for segment in _segments(shop_path))


class MappingError(ValueError):
    """A mapping file line that cannot be used; the message names the file, the line and why."""

    def __init__(self, source: str, line_number: int, reason: str) -> None:
        super().__init__(f"{source}:{line_number}: {reason}")
        self.source, self.line_number, self.reason = source, line_number, reason


@dataclass(frozen=True)
class _PatternRule:
    line_number: int
    matches: Callable[[str], object]
    category_id: int


class CategoryMapping:
    """Maps a shop's category paths onto rubricator ids; the first matching rule in the file wins."""

    def __init__(self, exact: dict[str, tuple[int, int]], patterns: list[_PatternRule]) -> None:
        self._exact = exact  # canonical path -> (line number, category id)
        self._patterns = patterns  # in file order
        self._map_cached = lru_cache(maxsize=_CACHED_PATHS)(self._map_uncached)

    @classmethod
    def load(cls, path: str | Path, rubricator: Rubricator | None = None) -> CategoryMapping:
        return cls.parse(Path(path).read_text(encoding="utf-8"), rubricator, source=str(path))

    @classmethod
    def parse(cls, text: str, rubricator: Rubricator | None = None, *, source: str = "<mapping>") -> CategoryMapping:
        rubricator = load_rubricator() if rubricator is None else rubricator
        exact: dict[str, tuple[int, int]] = {}
        patterns: list[_PatternRule] = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                pattern, category_id = _parse_rule(line, rubricator)
            except ValueError as error:
                raise MappingError(source, line_number, str(error)) from None
            if isinstance(pattern, str):
                if pattern in exact:
                    reason = f"path {pattern!r} is already mapped on line {exact[pattern][0]}"
                    raise MappingError(source, line_number, reason)
                exact[pattern] = (line_number, category_id)
            else:
                patterns.append(_PatternRule(line_number, pattern, category_id))
        return cls(exact, patterns)

    def map(self, shop_path: ShopPath) -> int | None:
        """The rubricator id for a path such as 'Женщинам > Платья' or ['Женщинам', 'Платья'], or None."""
        return self._map_cached(shop_path if isinstance(shop_path, str) else tuple(shop_path))

    def _map_uncached(self, shop_path: ShopPath) -> int | None:
        path = canonical_path(shop_path)
        exact_line, exact_id = self._exact.get(path, (math.inf, None))
        # Patterns above the exact line (if any) still take precedence: first match in the file wins.
        for rule in self._patterns:
            if rule.line_number > exact_line:
                break
            if rule.matches(path):
                return rule.category_id
        return exact_id


def _parse_rule(line: str, rubricator: Rubricator) -> tuple[str | Callable[[str], object], int]:
    """A line's pattern (an exact canonical path, or a matcher) and target id; ValueError says why not."""
    if _ARROW not in line:
        raise ValueError(f"missing {_ARROW!r} between the shop category and the rubricator category")
    pattern_text, _, target = (part.strip() for part in line.rpartition(_ARROW))
    kind = next((p for p in (_GLOB_PREFIX, _REGEX_PREFIX) if pattern_text.startswith(p)), None)
    body = pattern_text.removeprefix(kind or "").strip()
    if not body:
        raise ValueError("empty pattern before '=>'")
    return _compile_pattern(kind, body), _resolve_target(target, rubricator)


def _compile_pattern(kind: str | None, body: str) -> str | Callable[[str], object]:
    if kind != _REGEX_PREFIX:
        if not (path := canonical_path(body)):
            raise ValueError(f"pattern {body!r} has no path segments")
        return path if kind is None else re.compile(fnmatch.translate(path)).match
    try:
        # Paths are matched in their canonical form, so fold the pattern's ё and case alike.
        return re.compile(body.replace("ё", "е").replace("Ё", "Е"), re.IGNORECASE).search
    except re.error as error:
        raise ValueError(f"bad regular expression {body!r}: {error}") from None


def _resolve_target(target: str, rubricator: Rubricator) -> int:
    if not target:
        raise ValueError("missing rubricator category after '=>'")
    try:
        category = rubricator.get(int(target) if target.isascii() and target.isdigit() else target)
    except KeyError as error:
        raise ValueError(f"unknown rubricator category: {error.args[0]}") from None
    if category.retired:
        raise ValueError(f"rubricator category {category.name!r} (id {category.id}) is retired; map to its successor")
    return category.id


class UnmappedReport:
    """Counts the shop category paths a mapping left unmapped, to show what the file still misses."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._shown: dict[str, str] = {}  # canonical path -> the spelling first seen

    def record(self, shop_path: ShopPath) -> None:
        path = canonical_path(shop_path)
        self._counts[path] += 1
        self._shown.setdefault(path, " / ".join(_segments(shop_path)))

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        return [(self._shown[path], count) for path, count in self._counts.most_common(n)]

    @property
    def total(self) -> int:
        return self._counts.total()

    def __len__(self) -> int:
        return len(self._counts)

    def to_markdown(self, limit: int | None = None) -> str:
        rows = ["| Shop category path | Offers |", "| --- | ---: |"]
        rows += [f"| {path.replace('|', '&#124;')} | {count} |" for path, count in self.most_common(limit)]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.to_markdown()


class Categorizer:
    """Shop category path -> rubricator id, as the indexer files offers; what it cannot place is counted.

    The mapping file's rules decide first. A path no rule matches, or every path when there is no
    mapping file, is matched by its own names (`Rubricator.match`: case, spacing, ё, dashes and
    apostrophes ignored), segment by segment from the leaf up; the first segment that names an
    active category decides. Each segment is tried joined with its parent ("Платья / Миди" is
    "платья миди"), then alone, and qualified by the offer's gender, or else by the gender the path
    itself names ("Женщинам / Обувь / Кроссовки" is "женские кроссовки"). Offers whose path neither
    places are counted in `unmapped`, most frequent path first; whether they are indexed without a
    category is the caller's choice.
    """

    def __init__(
        self,
        mapping: CategoryMapping | None = None,
        rubricator: Rubricator | None = None,
        *,
        unmapped: UnmappedReport | None = None,
    ) -> None:
        self.mapping = mapping
        self.rubricator = load_rubricator() if rubricator is None else rubricator
        self.unmapped = UnmappedReport() if unmapped is None else unmapped
        self._by_names = lru_cache(maxsize=_CACHED_PATHS)(self._by_names_uncached)

    @classmethod
    def load(cls, mapping_file: str | Path | None, rubricator: Rubricator | None = None) -> Categorizer:
        """With the rules of a mapping file (MappingError if it cannot be used), or by names alone without one."""
        rubricator = load_rubricator() if rubricator is None else rubricator
        return cls(CategoryMapping.load(mapping_file, rubricator) if mapping_file else None, rubricator)

    def __call__(self, shop_path: ShopPath | None, *, gender: str | None = None) -> int | None:
        """The rubricator id for an offer's category path (and its gender, when the feed gives one), or None."""
        segments = tuple(_segments(shop_path or ()))
        category_id = self._resolve(segments, gender)
        if category_id is None:
            self.unmapped.record(segments or NO_CATEGORY)
        return category_id

    def resolve(self, shop_path: ShopPath | None, *, gender: str | None = None) -> int | None:
        """As calling it, without counting an unmapped path."""
        return self._resolve(tuple(_segments(shop_path or ())), gender)

    def _resolve(self, segments: tuple[str, ...], gender: str | None) -> int | None:
        if not segments:
            return None
        if self.mapping is not None and (category_id := self.mapping.map(segments)) is not None:
            return category_id
        return self._by_names(segments, gender_of(gender))

    def _by_names_uncached(self, segments: tuple[str, ...], gender: str | None) -> int | None:
        match = self.rubricator.match
        gender = gender or next(filter(None, map(self._gender_named, reversed(segments))), None)
        for i in reversed(range(len(segments))):
            names = ([f"{segments[i - 1]} {segments[i]}"] if i else []) + [segments[i]]
            if found := next(filter(None, (match(name, gender=gender) for name in names)), None):
                return found.id
        return None

    def _gender_named(self, segment: str) -> str | None:
        """The gender a path segment names: a word ("Женщинам", "Men") or a gendered category ("Мужская обувь")."""
        category = self.rubricator.match(segment)
        return gender_of(segment) or (category.gender if category is not None and category.gender != "unisex" else None)
