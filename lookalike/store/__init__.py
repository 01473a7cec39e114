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
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

import numpy as np

from lookalike.catalog import Offer

if TYPE_CHECKING:
    from lookalike.settings import Settings

__all__ = [
    "VECTORS",
    "Dims",
    "Hit",
    "SchemaMismatchError",
    "StoreBusyError",
    "VectorStore",
    "open_store",
    "point_id",
]

VectorName = Literal["shape", "color"]
VECTORS: tuple[VectorName, ...] = ("shape", "color")
# The size of each named vector, e.g. `EmbedderCard.dims`: a store holds what one embedder makes.
Dims = Mapping[VectorName, int]
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
# Qdrant's default: below this many kilobytes of vectors a filtered search scans the matching points.
FULL_SCAN_THRESHOLD_KB = 10_000
# Payload fields that searches filter on, and their index types (both backends map these names).
PAYLOAD_INDEXES: dict[str, Literal["keyword", "integer"]] = {
    "shop": "keyword",
    "category_ids": "integer",
    "gender": "keyword",
    "color": "keyword",
}

# Fixed forever: changing it would give every offer a new id and duplicate the whole catalogue.
_ID_NAMESPACE = uuid.UUID("6f0c3f7e-2b0e-5c55-9a51-1c2ad0f5e0b3")


class SchemaMismatchError(ValueError):
    """The existing store or collection was built with other vectors than this code expects."""


class StoreBusyError(RuntimeError):
    """Another process (or another open store in this one) holds the Qdrant Edge folder."""


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    offer: Offer


class VectorStore(Protocol):
    """What the indexer and the service use; `EdgeStore` and `ServerStore` implement it."""

    def upsert(self, offers: Sequence[Offer], shape: np.ndarray, color: np.ndarray) -> None:
        """Insert or overwrite `offers` with their (n, dims[...]) vectors; rows need not be normalised."""

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
    ) -> list[Hit]:
        """The `top_k` offers nearest to `vector`, best first, among those matching every filter given."""

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
    ) -> list[list[Hit]]:
        """`search` for each row of `vectors` (m, dims[using]), planned as one batch."""

    def count(self) -> int: ...

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

    def _vectors(self, offers: Sequence[Offer], shape: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            self._rows(shape, "shape", self.dims["shape"], len(offers)),
            self._rows(color, "color", self.dims["color"], len(offers)),
        )

    def _queries(self, vectors: np.ndarray, using: str, top_k: int) -> np.ndarray:
        if using not in VECTORS:
            raise ValueError(f"using must be one of {VECTORS}, got {using!r}")
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


def _payload(offer: Offer) -> dict:
    return offer.model_dump(mode="json")


def _match_conditions(
    category_id: int | None, shop: str | None, gender: str | None, color: str | None
) -> list[tuple[str, int | str]]:
    """Filters as (payload field, value) pairs that must all match. A category matches through
    `category_ids`, which holds an offer's category and all its ancestors."""
    conditions: list[tuple[str, int | str]] = []
    if category_id is not None:
        conditions.append(("category_ids", int(category_id)))
    for field, value in (("shop", shop), ("gender", gender), ("color", color)):
        if value is not None:
            conditions.append((field, value))
    return conditions


def _check_dims(dims: Dims) -> dict[VectorName, int]:
    """`dims` as a plain dict with a positive size for each of `VECTORS`, and nothing else."""
    if set(dims) != set(VECTORS) or not all(isinstance(dims[name], int) and dims[name] > 0 for name in VECTORS):
        raise ValueError(f"dims must give a positive size for each of {VECTORS} and nothing else, got {dict(dims)}")
    return {name: int(dims[name]) for name in VECTORS}


def _describe_dims(dims: Dims) -> str:
    return ", ".join(f"{name}: {size}-d" for name, size in dims.items())


def _validate_settings(hnsw_ef: int, oversampling: float) -> None:
    if hnsw_ef < 1:
        raise ValueError(f"hnsw_ef must be positive, got {hnsw_ef}")
    if not (math.isfinite(oversampling) and oversampling >= 1.0):
        raise ValueError(f"oversampling must be at least 1, got {oversampling}")
