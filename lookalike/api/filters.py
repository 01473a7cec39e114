"""Filter values checked against the catalogue, so that a typo gets a 400 listing what exists
instead of an empty 200 ("no products")."""

from __future__ import annotations

import threading
import time
from http import HTTPStatus

from lookalike.api.errors import ApiError

# Shops and currencies change only when the indexer runs; a minute's staleness costs nothing.
TTL_S = 60.0
_LISTED = 20


class CatalogueValues:
    """The distinct values of the store's keyword fields, re-read at most every `ttl_s` seconds."""

    def __init__(self, store, ttl_s: float = TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def values(self, field: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(field)
            if cached is not None and now - cached[0] < self.ttl_s:
                return cached[1]
        values = frozenset(self.store.distinct(field))
        with self._lock:
            self._cache[field] = (now, values)
        return values

    def forget(self) -> None:
        """Drop what was read: the catalogue changed in this process."""
        with self._lock:
            self._cache.clear()

    def check(self, field: str, value: str | None) -> str | None:
        """`value` if the catalogue has it (or it is None); else a 400 naming the field and what it accepts."""
        if value is None:
            return None
        known = self.values(field)
        if value in known:
            return value
        if not known:
            accepted = f"this catalogue records no {field} for any product"
        else:
            listed = sorted(known)
            accepted = (
                "accepted: "
                + ", ".join(listed[:_LISTED])
                + (f" and {len(listed) - _LISTED} more" if len(listed) > _LISTED else "")
            )
        raise ApiError(
            HTTPStatus.BAD_REQUEST, "unknown_value", f"{field}: no products with {value!r}; {accepted}", field=field
        )
