"""The vector store: catalogue offers with a `shape` and a `color` vector each, searched by similarity.

One API, two backends that share the collection schema defined here:

- `EdgeStore` (`lookalike.store.edge`): Qdrant Edge, the Qdrant engine inside this process, in the
  folder `settings.store_path`. The default. Single process: one open store per folder.
- `ServerStore` (`lookalike.store.server`): a Qdrant server or cluster through qdrant-client, used
  when `settings.qdrant_url` is set. Tests run it against qdrant-client's local mode.

Schema: two named cosine vectors, their sizes from the embedder's card (`EmbedderCard.dims`, 128 each
for the shipped one), binary quantisation kept in RAM with an 8-bit scalar query
encoding (the query keeps its magnitudes against the 1-bit codes: instance recall@1 of the codes'
ranking 0.543 against 0.490 for 1-bit queries, `training.embedder.evaluate`), rescored with the original
vectors (oversampling and `hnsw_ef` from the settings), HNSW m=16, ef_construct=100;
payload = `Offer.model_dump()`, with indexes on the filtered fields. A point's id is derived from
(shop, offer_id), so indexing an offer again overwrites it.

Searches without a filter go through HNSW over the binary codes and rescore the candidates with the
original vectors. Searches with a filter score the original vectors (see `EdgeStore` for why);
`exact=True` scores every matching point's original vector.

Bulk loading: `upsert` in batches, then call `optimize()` once. Qdrant Edge builds its HNSW graph
only in `optimize()`; until then new points are searched by brute force over their binary codes.

Filters (`Filters`): exact matches on category (with roll-up), shop, gender, colour and currency,
an inclusive price range, and point ids to leave out. Excluding ids alone keeps the unfiltered path.

Fused search (`search_fused`): each weighted vector draws a shortlist as `search_batch` would; the
union is ranked here by the weighted mean of both cosines, computed in numpy from the stored vectors
(payloads are read for the winners only). `python -m loadtests.bench_store --fusion` on 100K clustered
points (shape and colour clusters independent: the hard case for equal weights), Qdrant Edge, 2 busy
CPUs; recall@10 against the exact fused top 10, p50 ms per query:

| weights shape/colour | shortlist 25 | 50 | 100 | 200 |
|---|---|---|---|---|
| 1 / 0     | 1.000, 2.3 ms | 1.000, 1.7 | 1.000, 2.5 | 1.000, 3.8 |
| 0.5 / 0.5 | 0.409, 2.0 ms | 0.569, 3.1 | 0.740, 6.3 | 0.919, 14.2 |
| 0.2 / 0.8 | 0.779, 2.0 ms | 0.942, 3.2 | 0.995, 6.5 | 1.000, 14.5 |

Qdrant's own alternatives on Edge: prefetches + a Formula of their scores is 2x faster but gives a
candidate missing from one prefetch a score of 0 there (recall 0.30 / 0.74 at 100); rescoring the
union of the prefetches by each vector inside Qdrant before the Formula ranks exactly as this does,
8-20% faster at 100K, but runs every shortlist search twice and needs Formula and nested prefetches
on every backend. Reading every candidate's payload made shortlist 200 at one weight 2x slower.
`vectors_of` (a retrieve, no search): 0.03-0.05 ms.

Change detection (the indexer's): `upsert` may keep an opaque `content_hash` string with each offer,
outside the `Offer` fields; `content_hashes(shop)` reads every offer id of a shop with its hash back
(a scroll, no vectors), `delete_offers` and `delete_shop` remove offers, `count(shop)` counts them.
"""

from __future__ import annotations

import json
import math
import numbers
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, get_args

import numpy as np

from lookalike.catalog import Offer

if TYPE_CHECKING:
    from lookalike.settings import Settings

__all__ = [
    "CONTENT_HASH",
    "QUANTIZATIONS",
    "VECTORS",
    "Dims",
    "Filters",
    "Hit",
    "Quantization",
    "SchemaMismatchError",
    "StoreBusyError",
    "StoredOffer",
    "VectorName",
    "VectorStore",
    "open_store",
    "point_id",
]

VectorName = Literal["shape", "color", "detail"]
# Every vector a store may hold, in this order: `shape` and `color` always, `detail` (the same item,
# `training.embedder.detail`) for embedders that make it.
VECTORS: tuple[VectorName, ...] = ("shape", "color", "detail")
REQUIRED_VECTORS: tuple[VectorName, ...] = ("shape", "color")
# The size of each named vector, e.g. `EmbedderCard.dims`: a store holds what one embedder makes.
Dims = Mapping[VectorName, int]
# The vector codes Qdrant searches before rescoring with the original vectors; chosen when a store is
# created (`settings.quantization`), kept by the store afterwards. `python -m loadtests.bench_store
# --quantizations ...` compares them at 1M points (loadtests/reports/store/quantization.md).
Quantization = Literal["binary", "binary-1.5bit", "binary-2bit", "turbo-4bit", "scalar-int8"]
QUANTIZATIONS: tuple[Quantization, ...] = get_args(Quantization)
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
# Below this many kilobytes of matching vectors a filtered search scans them (exact) instead of
# walking HNSW with the filter. Qdrant's default, 10 MB (~20K points of a 128-d vector), left a
# category filter on 10% of the points at recall@10 0.776 at 1M points and 0.959 at 200K; 100 MB
# (~200K points) scans them: recall 1.000 at p50 4.0 ms at 200K (loadtests/reports/store/). Used when
# a store is created; existing stores keep theirs.
FULL_SCAN_THRESHOLD_KB = 100_000
# Payload fields that searches filter on, and their index types (both backends map these names).
# A store opened without some of them gets them then.
PAYLOAD_INDEXES: dict[str, Literal["keyword", "integer", "float"]] = {
    "shop": "keyword",
    "category_ids": "integer",
    "gender": "keyword",
    "color": "keyword",
    "currency": "keyword",
    "price": "float",
}
# The payload key of the indexer's change-detection hash (`upsert(content_hashes=...)`); not an `Offer` field.
CONTENT_HASH = "content_hash"
# Points read per page when scrolling a shop's offers.
SCROLL_PAGE = 1000
# The fields `distinct` lists the values of.
KEYWORD_FIELDS = tuple(field for field, kind in PAYLOAD_INDEXES.items() if kind == "keyword")

# Fixed forever: changing it would give every offer a new id and duplicate the whole catalogue.
_ID_NAMESPACE = uuid.UUID("6f0c3f7e-2b0e-5c55-9a51-1c2ad0f5e0b3")


class SchemaMismatchError(ValueError):
    """The existing store or collection was built with other vectors than this code expects."""


class StoreBusyError(RuntimeError):
    """Another process (or another open store in this one) holds the Qdrant Edge folder."""


@dataclass(frozen=True)
class Filters:
    """The offers a search may return: those matching every field given (None: any value).

    `category_id` matches through `category_ids`, so a category includes its subcategories. The price
    bounds are inclusive and leave out offers without a price. `exclude_ids` are point ids
    (`point_id`) never returned, e.g. the product itself in "similar to this product".
    """

    category_id: int | None = None
    shop: str | None = None
    gender: str | None = None
    color: str | None = None
    currency: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) is above max_price ({self.max_price})")
        if isinstance(self.exclude_ids, str):
            raise TypeError("exclude_ids must be a sequence of point ids, not one string")
        for value in self.exclude_ids:
            try:
                uuid.UUID(str(value))
            except ValueError:
                raise ValueError(f"exclude_ids must hold point ids (see point_id), got {value!r}") from None
        object.__setattr__(self, "exclude_ids", tuple(str(value) for value in self.exclude_ids))  # a list is fine too


@dataclass(frozen=True)
class Hit:
    """One offer found. `score` ranks the hits: the cosine of the vector searched, or for `search_fused`
    the weighted mean of `shape_score`, `color_score` and `detail_score`, the cosines of each vector
    (None when not computed, or not in the store)."""

    id: str
    score: float
    offer: Offer
    shape_score: float | None = None
    color_score: float | None = None
    detail_score: float | None = None


@dataclass(frozen=True)
class StoredOffer:
    """An offer as stored: its point id, payload and vectors (L2-normalised, as Qdrant keeps cosine vectors)."""

    id: str
    offer: Offer
    vectors: dict[VectorName, np.ndarray]


class VectorStore(Protocol):
    """What the indexer and the service use; `EdgeStore` and `ServerStore` implement it."""

    def upsert(
        self,
        offers: Sequence[Offer],
        shape: np.ndarray,
        color: np.ndarray,
        *,
        detail: np.ndarray | None = None,
        content_hashes: Sequence[str | None] | None = None,
    ) -> None:
        """Insert or overwrite `offers` with their (n, dims[...]) vectors; rows need not be normalised.
        `detail` is required by a store that holds it (`dims`), and refused by one that does not.

        `content_hashes`: one opaque string per offer (or None), stored in the payload as `CONTENT_HASH`
        and read back by `content_hashes`; an offer upserted without one has none afterwards.
        """

    def optimize(self) -> None:
        """Build the search index after a bulk load; blocks until done."""

    def search(
        self,
        vector: np.ndarray,
        *,
        using: VectorName = "shape",
        top_k: int = 10,
        category_id: int | None = None,
        shop: str | None = None,
        gender: str | None = None,
        color: str | None = None,
        exact: bool = False,
        filters: Filters | None = None,
    ) -> list[Hit]:
        """The `top_k` offers nearest to `vector`, best first, among those matching every filter given.

        Filters come either as `filters` or as the keywords `category_id`, `shop`, `gender` and `color`
        (kept for older callers), not both.
        """

    def search_batch(
        self,
        vectors: np.ndarray,
        *,
        using: VectorName = "shape",
        top_k: int = 10,
        category_id: int | None = None,
        shop: str | None = None,
        gender: str | None = None,
        color: str | None = None,
        exact: bool = False,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        """`search` for each row of `vectors` (m, dims[using]), planned as one batch."""

    def search_fused(
        self,
        queries: Mapping[VectorName, np.ndarray],
        *,
        weights: Mapping[VectorName, float],
        top_k: int = 10,
        filters: Filters | None = None,
        shortlist: int = 100,
    ) -> list[list[Hit]]:
        """For each query row, the `top_k` offers with the highest weighted mean of the vectors' cosines.

        `queries[name]`: (m, dims[name]) for each vector of the store (`dims`). `weights[name]` in
        [0, 1], missing = 0, not all 0, naming only the store's vectors. Each vector with a positive
        weight draws `max(shortlist, top_k)` candidates as `search_batch` would (same parameters and
        filters); on their union, score = sum(w * cosine) / sum(w) over the vectors, the cosines
        computed from the stored vectors.
        Best first, ties by point id. With one positive weight this is `search_batch` with limit
        `max(shortlist, top_k)`, cut to `top_k`: more candidates (oversampling x the limit) than a
        search for `top_k` draws, so its top `top_k` can be better, never worse.
        """

    def vectors_of(self, shop: str, offer_id: str) -> StoredOffer | None:
        """The stored offer (shop, offer_id) with its vectors, or None when not in the store. No search."""

    def distinct(self, field: str, limit: int = 10_000) -> list[str]:
        """The values of the keyword field `field` (one of `KEYWORD_FIELDS`) in the store, sorted; at most
        `limit`, the most frequent ones when there are more."""

    def content_hashes(self, shop: str) -> dict[str, str | None]:
        """Every offer id of `shop` in the store, with the content hash it was upserted with (or None)."""

    def delete_offers(self, shop: str, offer_ids: Sequence[str]) -> None:
        """Delete these offers of `shop`; ids not in the store are ignored."""

    def delete_shop(self, shop: str) -> int:
        """Delete every offer of `shop`; returns how many there were (logged before deleting)."""

    def count(self, shop: str | None = None) -> int:
        """The number of offers in the store, or of `shop`'s offers."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def point_id(shop: str, offer_id: str) -> str:
    """The point id of an offer: a UUID5 of (shop, offer_id), the same in every backend and every run."""
    return str(uuid.uuid5(_ID_NAMESPACE, json.dumps([shop, offer_id], ensure_ascii=False)))


def open_store(settings: Settings | None = None, *, dims: Dims) -> VectorStore:
    """The store the settings name: a Qdrant server when `qdrant_url` is set, else Qdrant Edge at `store_path`.

    `dims`: the embedder's vector sizes (`EmbedderCard.dims`); a store built for other sizes raises
    `SchemaMismatchError` and is left as it is.
    """
    if settings is None:
        from lookalike.settings import get_settings

        settings = get_settings()
    # Imported here so that using one backend never imports (or needs) the other's client.
    if settings.qdrant_url:
        from lookalike.store.server import ServerStore

        return ServerStore.from_settings(settings, dims=dims)
    from lookalike.store.edge import EdgeStore

    return EdgeStore.from_settings(settings, dims=dims)


# --- shared by the backends ------------------------------------------------------------------


class _Store:
    """Context-manager support and argument checks common to both backends."""

    dims: dict[VectorName, int]

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _rows(self, array: np.ndarray, what: str, dim: int, n: int | None = None) -> np.ndarray:
        """`array` as a C-contiguous float32 (n, dim) matrix of finite, non-zero rows."""
        matrix = np.ascontiguousarray(array, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != dim or (n is not None and matrix.shape[0] != n):
            expected = f"({n if n is not None else 'n'}, {dim})"
            raise ValueError(f"{what} must have shape {expected}, got {np.shape(array)}")
        if not np.isfinite(matrix).all():
            raise ValueError(f"{what} contains NaN or infinite values")
        if matrix.shape[0] and not (np.linalg.norm(matrix, axis=1) > 0).all():
            raise ValueError(f"{what} contains an all-zero vector, which has no cosine similarity")
        return matrix

    def _vectors(
        self, offers: Sequence[Offer], shape: np.ndarray, color: np.ndarray, detail: np.ndarray | None
    ) -> dict[VectorName, np.ndarray]:
        """The upserted vectors by name, checked: one row per offer, and `detail` exactly when the store holds it."""
        given = {"shape": shape, "color": color, "detail": detail}
        if (detail is None) == ("detail" in self.dims):
            raise ValueError(
                "this store holds a detail vector: upsert needs detail="
                if detail is None
                else "this store holds no detail vector (its embedder makes none): upsert without detail="
            )
        return {name: self._rows(given[name], name, self.dims[name], len(offers)) for name in self.dims}

    @staticmethod
    def _payloads(offers: Sequence[Offer], content_hashes: Sequence[str | None] | None) -> list[dict]:
        """Each offer's payload, with its content hash when one is given."""
        if content_hashes is None:
            return [_payload(offer) for offer in offers]
        if isinstance(content_hashes, str) or len(content_hashes) != len(offers):
            raise ValueError(f"content_hashes must give one hash per offer ({len(offers)})")
        return [_payload(offer, content_hash) for offer, content_hash in zip(offers, content_hashes, strict=True)]

    def _queries(self, vectors: np.ndarray, using: str, top_k: int) -> np.ndarray:
        if using not in self.dims:
            raise ValueError(f"using must be one of this store's vectors {tuple(self.dims)}, got {using!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        return self._rows(vectors, "query vectors", self.dims[using])

    def search(self, vector: np.ndarray, **options) -> list[Hit]:
        """One query: a batch of one (see `VectorStore.search`)."""
        vector = np.asarray(vector)
        if vector.ndim != 1:
            dim = self.dims.get(options.get("using", "shape"), "dim")
            raise ValueError(f"vector must have shape ({dim},), got {vector.shape}")
        return self.search_batch(vector[None, :], **options)[0]

    def search_batch(
        self,
        vectors: np.ndarray,
        *,
        using: VectorName = "shape",
        top_k: int = 10,
        category_id: int | None = None,
        shop: str | None = None,
        gender: str | None = None,
        color: str | None = None,
        exact: bool = False,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        """See `VectorStore.search_batch`."""
        queries = self._queries(vectors, using, top_k)
        filters = _merge_filters(filters, category_id=category_id, shop=shop, gender=gender, color=color)
        if not len(queries):
            return []
        found = self._nearest([(using, query) for query in queries], top_k, filters, exact=exact, with_vectors=False)
        return [
            [
                Hit(
                    id=point.id,
                    score=point.score,
                    offer=Offer.model_validate(point.payload),
                    **{f"{using}_score": point.score},
                )
                for point in points
            ]
            for points in found
        ]

    def search_fused(
        self,
        queries: Mapping[VectorName, np.ndarray],
        *,
        weights: Mapping[VectorName, float],
        top_k: int = 10,
        filters: Filters | None = None,
        shortlist: int = 100,
    ) -> list[list[Hit]]:
        """See `VectorStore.search_fused`."""
        weight = _check_weights(weights, tuple(self.dims))
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if shortlist < 1:
            raise ValueError(f"shortlist must be at least 1, got {shortlist}")
        if not isinstance(queries, Mapping) or set(queries) != set(self.dims):
            got = sorted(queries) if isinstance(queries, Mapping) else type(queries).__name__
            raise ValueError(f"queries must give a query matrix for each of {tuple(self.dims)}, got {got}")
        rows = {name: self._rows(queries[name], f"queries[{name!r}]", self.dims[name]) for name in self.dims}
        if len({len(matrix) for matrix in rows.values()}) != 1:
            raise ValueError(f"queries must have as many rows each, got { {n: len(m) for n, m in rows.items()} }")
        filters = filters if filters is not None else Filters()
        m = len(rows["shape"])
        if not m:
            return []
        weighted = [name for name in self.dims if weight[name] > 0]
        single = len(weighted) == 1
        jobs = [(name, row) for name in weighted for row in range(m)]
        # Payloads are read for the winners only, vectors (for one weight) for the head only: converting
        # them for every candidate cost more than the search (see the module docstring).
        found = self._nearest(
            [(name, rows[name][row]) for name, row in jobs],
            max(shortlist, top_k),
            filters,
            with_payload=False,
            with_vectors=not single,
        )
        candidates: list[dict[str, _Point]] = [{} for _ in range(m)]
        for (_, row), points in zip(jobs, found, strict=True):
            for point in points:
                candidates[row].setdefault(point.id, point)
        records: dict[str, _Point] = {}
        if single:
            # Qdrant ranked them by that one cosine already: only the head needs its vectors. Twice
            # `top_k` leaves room for the float64 cosines to reorder near-ties at the cut.
            heads = [list(by_id)[: 2 * top_k] for by_id in candidates]
            records = self._records([i for head in heads for i in head], with_vectors=True)
            candidates = [{i: records[i] for i in head if i in records} for head in heads]
        ranked = [
            _rank(list(candidates[row].values()), {name: rows[name][row] for name in self.dims}, weight, top_k)
            for row in range(m)
        ]
        if not single:
            records = self._records([hit[0] for hits in ranked for hit in hits], with_vectors=False)
        # An offer deleted between the two reads is left out.
        return [
            [
                Hit(
                    id=i,
                    score=score,
                    offer=Offer.model_validate(records[i].payload),
                    **{f"{name}_score": cosine for name, cosine in cosines.items()},
                )
                for i, score, cosines in hits
                if i in records
            ]
            for hits in ranked
        ]

    def vectors_of(self, shop: str, offer_id: str) -> StoredOffer | None:
        """See `VectorStore.vectors_of`."""
        found = self._records([point_id(shop, offer_id)], with_vectors=True)
        if not found:
            return None
        (record,) = found.values()
        return StoredOffer(
            id=record.id,
            offer=Offer.model_validate(record.payload),
            vectors={name: np.asarray(record.vectors[name], dtype=np.float32) for name in self.dims},
        )

    def _nearest(
        self,
        queries: Sequence[tuple[VectorName, np.ndarray]],
        limit: int,
        filters: Filters,
        *,
        exact: bool = False,
        with_payload: bool = True,
        with_vectors: bool = False,
    ) -> list[list[_Point]]:
        """One nearest-neighbour query per (vector name, query) with `limit`, as one batch: best first,
        with their payloads and both stored vectors if asked. Unfiltered searches go through the binary
        codes with rescoring; `_selective(filters)` ones score original vectors (see `EdgeStore`)."""
        raise NotImplementedError

    def _records(self, ids: Sequence[str], *, with_vectors: bool) -> dict[str, _Point]:
        """The points with these ids that exist, by id, with payloads and (if asked) both vectors. No search."""
        raise NotImplementedError

    def content_hashes(self, shop: str) -> dict[str, str | None]:
        """Every offer id of `shop` with the content hash it was upserted with (None: none was given)."""
        found: dict[str, str | None] = {}
        offset = None
        while True:
            payloads, offset = self._scroll_shop(shop, offset)
            found.update((payload["offer_id"], payload.get(CONTENT_HASH)) for payload in payloads)
            if offset is None:
                return found

    def delete_offers(self, shop: str, offer_ids: Sequence[str]) -> None:
        """Delete these offers of `shop` (ids that are not there are no error), in upsert-sized batches."""
        for start in range(0, len(offer_ids), self.upsert_batch_size):
            self._delete_ids(
                [point_id(shop, offer_id) for offer_id in offer_ids[start : start + self.upsert_batch_size]]
            )

    def _scroll_shop(self, shop: str, offset: str | None) -> tuple[list[dict], str | None]:
        """One page (`SCROLL_PAGE`) of `shop`'s points from `offset`: their `offer_id` and `CONTENT_HASH`
        payload fields only, and the offset of the next page (None after the last)."""
        raise NotImplementedError

    def _delete_ids(self, ids: list[str]) -> None:
        """Delete the points with these ids, waiting until it is done."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Point:
    """A point as the backends return it, before the payload is parsed into an `Offer`."""

    id: str
    score: float | None = None
    payload: dict | None = None
    vectors: Mapping[str, Sequence[float]] | None = None


def _payload(offer: Offer, content_hash: str | None = None) -> dict:
    payload = offer.model_dump(mode="json")
    if content_hash is not None:
        payload[CONTENT_HASH] = content_hash
    return payload


def _merge_filters(filters: Filters | None, **keywords: int | str | None) -> Filters:
    """`filters`, or the older keyword filters as `Filters`; both at once is an error."""
    given = {name: value for name, value in keywords.items() if value is not None}
    if filters is None:
        return Filters(**given)
    if given:
        raise ValueError(
            f"give the filters either as filters= or as keywords, not both (got filters and {sorted(given)})"
        )
    return filters


def _match_conditions(filters: Filters) -> list[tuple[str, int | str]]:
    """The exact-match filters as (payload field, value) pairs that must all match. A category matches
    through `category_ids`, which holds an offer's category and all its ancestors."""
    conditions: list[tuple[str, int | str]] = []
    if filters.category_id is not None:
        conditions.append(("category_ids", int(filters.category_id)))
    for field in ("shop", "gender", "color", "currency"):
        if (value := getattr(filters, field)) is not None:
            conditions.append((field, value))
    return conditions


def _price_range(filters: Filters) -> tuple[float | None, float | None] | None:
    """The inclusive (min, max) price bounds, or None when the price is not filtered."""
    if filters.min_price is None and filters.max_price is None:
        return None
    return (
        None if filters.min_price is None else float(filters.min_price),
        None if filters.max_price is None else float(filters.max_price),
    )


def _selective(filters: Filters) -> bool:
    """Whether a filter may leave only a small share of the points, which Qdrant then scans (so the
    search scores original vectors). Excluding a few ids is not: it keeps the quantised HNSW path."""
    return bool(_match_conditions(filters)) or _price_range(filters) is not None


def _check_weights(weights: Mapping[str, float], vectors: tuple[VectorName, ...]) -> dict[VectorName, float]:
    """`weights` for each of the store's `vectors` (missing: 0), each in [0, 1] and not all 0."""
    unknown = set(weights) - set(vectors)
    if unknown:
        raise ValueError(f"weights may only name this store's vectors {vectors}, got {sorted(unknown)}")
    checked: dict[VectorName, float] = {}
    for name in vectors:
        value = weights.get(name, 0.0)
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"weights[{name!r}] must be a number between 0 and 1, got {value!r}")
        checked[name] = float(value)
    if not sum(checked.values()) > 0:
        raise ValueError(f"at least one weight must be above 0, got {dict(weights)}")
    return checked


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_distinct(field: str, limit: int) -> None:
    if field not in KEYWORD_FIELDS:
        raise ValueError(f"distinct lists the values of {KEYWORD_FIELDS}, not {field!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def _rank(
    points: Sequence[_Point], query: Mapping[VectorName, np.ndarray], weight: Mapping[VectorName, float], top_k: int
) -> list[tuple[str, float, dict[VectorName, float]]]:
    """The `top_k` of `points` by the weighted mean of their cosines to `query` (one row per vector
    name), best first, ties by id: (id, fused score, {name: cosine}), the cosines of the normalised
    vectors in float64."""
    if not points:
        return []
    cosines = {name: _unit([point.vectors[name] for point in points]) @ _unit(query[name]) for name in query}
    fused = sum(weight[name] * cosines[name] for name in query) / sum(weight.values())
    ids = np.array([point.id for point in points])
    best = np.lexsort((ids, -fused))[:top_k]
    return [(points[i].id, float(fused[i]), {name: float(cosines[name][i]) for name in query}) for i in best]


def _check_dims(dims: Dims) -> dict[VectorName, int]:
    """`dims` as a plain dict in `VECTORS` order: a positive size for `shape` and `color`, optionally
    for `detail`, and nothing else."""
    known = set(REQUIRED_VECTORS) <= set(dims) <= set(VECTORS)
    if not known or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in dims.values()
    ):
        raise ValueError(
            f"dims must give a positive size for each of {REQUIRED_VECTORS}, optionally for detail, and nothing "
            f"else, got {dict(dims)}"
        )
    return {name: int(dims[name]) for name in VECTORS if name in dims}


def _describe_dims(dims: Dims) -> str:
    return ", ".join(f"{name}: {size}-d" for name, size in dims.items())


def _validate_settings(hnsw_ef: int, oversampling: float) -> None:
    if hnsw_ef < 1:
        raise ValueError(f"hnsw_ef must be positive, got {hnsw_ef}")
    if not (math.isfinite(oversampling) and oversampling >= 1.0):
        raise ValueError(f"oversampling must be at least 1, got {oversampling}")
