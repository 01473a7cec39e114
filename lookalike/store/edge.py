"""The embedded backend: Qdrant Edge (`qdrant-edge-py`, beta), the Qdrant engine in this process.

The store is a folder (WAL + segments + `edge_config.json`); it is created on first open and loaded
afterwards. Only one `EdgeStore` may have a folder open at a time, across processes too: a second
open raises `StoreBusyError`. So index while the API service is stopped, or use a Qdrant server.

Measured with qdrant-edge-py 0.9.0:
- Calls are thread-safe (concurrent search, upsert and optimize from several threads gave no errors),
  but each call holds the GIL until it returns: threads do not search in parallel, and `optimize()`
  freezes every other Python thread of the process (tens of seconds at 100K points). Never call it
  in the serving process while it serves.
- The HNSW graph is built only by `optimize()`, and only for segments above Qdrant's indexing
  threshold (10 MB of vectors per segment, ~20K points of this schema). Until then a segment is
  searched by brute force over its binary codes (already kept for appendable segments) and rescored,
  which is fast at that size. `exact=True` ignores the codes and scores every original vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qdrant_edge import (
    BinaryQuantizationConfig,
    BinaryQuantizationEncoding,
    BinaryQuantizationQueryEncoding,
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    MatchValue,
    PayloadSchemaType,
    PayloadSelector,
    Point,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeFloat,
    ScalarQuantizationConfig,
    ScalarType,
    ScrollRequest,
    SearchParams,
    TurboQuantBitSize,
    TurboQuantQuantizationConfig,
    UpdateOperation,
)

from lookalike.catalog import Offer
from lookalike.store import (
    CONTENT_HASH,
    FULL_SCAN_THRESHOLD_KB,
    HNSW_EF_CONSTRUCT,
    HNSW_M,
    PAYLOAD_INDEXES,
    QUANTIZATIONS,
    SCROLL_PAGE,
    Dims,
    Filters,
    Quantization,
    SchemaMismatchError,
    StoreBusyError,
    VectorName,
    _check_dims,
    _check_distinct,
    _describe_dims,
    _match_conditions,
    _Point,
    _price_range,
    _selective,
    _Store,
    _validate_settings,
    point_id,
)

if TYPE_CHECKING:
    from lookalike.settings import Settings

log = logging.getLogger(__name__)

_INDEX_TYPES = {
    "keyword": PayloadSchemaType.Keyword,
    "integer": PayloadSchemaType.Integer,
    "float": PayloadSchemaType.Float,
}
_CONFIG_FILE = "edge_config.json"


def quantization_config(name: Quantization):
    """Qdrant Edge's config for one of `QUANTIZATIONS`, its codes kept in RAM. Binary codes are searched
    with an 8-bit scalar encoding of the query (see `lookalike.store`)."""
    if name not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {name!r}; choose one of {QUANTIZATIONS}")
    if name.startswith("binary"):
        encoding = {
            "binary": BinaryQuantizationEncoding.OneBit,
            "binary-1.5bit": BinaryQuantizationEncoding.OneAndHalfBits,
            "binary-2bit": BinaryQuantizationEncoding.TwoBits,
        }[name]
        return BinaryQuantizationConfig(
            always_ram=True, encoding=encoding, query_encoding=BinaryQuantizationQueryEncoding.Scalar8Bits
        )
    if name == "turbo-4bit":
        return TurboQuantQuantizationConfig(always_ram=True, bits=TurboQuantBitSize.Bits4)
    if name == "scalar-int8":
        return ScalarQuantizationConfig(ScalarType.Int8, always_ram=True)
    raise AssertionError(f"no config for {name!r}")


class EdgeStore(_Store):
    """Offers in a Qdrant Edge shard at `path`.

    Searches with a filter (other than `exclude_ids` alone) score original vectors, not the binary
    codes, unless `quantize_filtered`: a selective filter makes Qdrant scan the matching points, and
    ranking those by 1-bit codes before rescoring lost up to a third of the true top 10 (recall@10
    0.66-0.82 for filters on 1-14% of 100K points; 1.0 without the codes, for 0-1 ms more per query).
    `quantization`, `indexing_threshold_kb` and `full_scan_threshold_kb` are used only when the store
    is created; `indexing_threshold_kb` lowers Qdrant's threshold for building HNSW, so tests can
    exercise it; `full_scan_threshold_kb` is the vector size below which a filtered search scans the
    matching points instead of walking HNSW (`FULL_SCAN_THRESHOLD_KB`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dims: Dims,
        hnsw_ef: int = 256,
        oversampling: float = 8.0,
        rescore: bool = True,
        quantize_filtered: bool = False,
        quantization: Quantization = "binary",
        upsert_batch_size: int = 1000,
        indexing_threshold_kb: int | None = None,
        full_scan_threshold_kb: int = FULL_SCAN_THRESHOLD_KB,
    ) -> None:
        _validate_settings(hnsw_ef, oversampling)
        codes = quantization_config(quantization)
        self.path = Path(path)
        self.dims = _check_dims(dims)
        self.upsert_batch_size = upsert_batch_size
        self._params = SearchParams(
            hnsw_ef=hnsw_ef, quantization=QuantizationSearchParams(rescore=rescore, oversampling=oversampling)
        )
        self._filtered_params = (
            self._params
            if quantize_filtered
            else SearchParams(hnsw_ef=hnsw_ef, quantization=QuantizationSearchParams(ignore=True))
        )
        self._exact_params = SearchParams(exact=True, quantization=QuantizationSearchParams(ignore=True))
        vectors = {name: EdgeVectorParams(size=self.dims[name], distance=Distance.Cosine) for name in self.dims}
        if (self.path / _CONFIG_FILE).exists():
            # Only the vectors are given: Edge checks them against the segments and keeps every other
            # setting (HNSW, quantisation) as persisted, so opening never rewrites the store's config.
            self._shard = self._open(lambda: EdgeShard.load(str(self.path), EdgeConfig(vectors=vectors)))
            action = "opened"
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            config = EdgeConfig(
                vectors=vectors,
                hnsw_config=HnswIndexConfig(
                    m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=full_scan_threshold_kb
                ),
                quantization_config=codes,
                optimizers=EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
                if indexing_threshold_kb is not None
                else None,
            )
            self._shard = self._open(lambda: EdgeShard.create(str(self.path), config))
            action = "created"
        try:
            self._ensure_payload_indexes()
            log.info("%s Qdrant Edge store at %s (%d points)", action, self.path, self.count())
        except BaseException:
            self.close()  # release the folder's lock
            raise

    @classmethod
    def from_settings(cls, settings: Settings, *, dims: Dims) -> EdgeStore:
        return cls(
            settings.store_path,
            dims=dims,
            hnsw_ef=settings.hnsw_ef,
            oversampling=settings.oversampling,
            quantization=settings.quantization,
        )

    def _open(self, opener) -> EdgeShard:
        try:
            return opener()
        except Exception as error:  # qdrant-edge raises bare Exception with the engine's message
            message = str(error)
            if "incompatible" in message:
                raise SchemaMismatchError(
                    f"the Qdrant Edge store at {self.path} does not hold the vectors this code expects "
                    f"({_describe_dims(self.dims)}, cosine): {message}. Nothing was changed; point "
                    "store_path at another folder, or delete this one to rebuild the index there."
                ) from error
            if "WouldBlock" in message:
                raise StoreBusyError(
                    f"the Qdrant Edge store at {self.path} is open elsewhere (another process, or another "
                    "EdgeStore in this one); Qdrant Edge allows one at a time"
                ) from error
            raise

    def _ensure_payload_indexes(self) -> None:
        existing = self._live().info().payload_schema
        for field, kind in PAYLOAD_INDEXES.items():
            if field not in existing:
                self._shard.update(UpdateOperation.create_field_index(field, _INDEX_TYPES[kind]))

    def _live(self) -> EdgeShard:
        if self._shard is None:
            raise RuntimeError(f"the store at {self.path} is closed")
        return self._shard

    def upsert(
        self,
        offers: Sequence[Offer],
        shape: np.ndarray,
        color: np.ndarray,
        *,
        detail: np.ndarray | None = None,
        content_hashes: Sequence[str | None] | None = None,
    ) -> None:
        vectors = self._vectors(offers, shape, color, detail)
        payloads = self._payloads(offers, content_hashes)
        shard = self._live()
        for start in range(0, len(offers), self.upsert_batch_size):
            stop = min(start + self.upsert_batch_size, len(offers))
            points = [
                Point(
                    point_id(offers[row].shop, offers[row].offer_id),
                    {name: matrix[row] for name, matrix in vectors.items()},
                    payloads[row],
                )
                for row in range(start, stop)
            ]
            shard.update(UpdateOperation.upsert_points(points))

    def optimize(self) -> None:
        """Build HNSW and the quantised vectors for what was upserted; blocks, and holds the GIL throughout."""
        shard = self._live()
        changed = shard.optimize()
        info = shard.info()
        log.info(
            "optimized %s: %s; %d points, %d indexed vectors, %d segments",
            self.path,
            "rebuilt" if changed else "already optimal",
            info.points_count,
            info.indexed_vectors_count,
            info.segments_count,
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
        query_filter = _filter(filters)
        params = self._exact_params if exact else self._filtered_params if _selective(filters) else self._params
        requests = [
            QueryRequest(
                limit=limit,
                query=Query.Nearest(query, using=using),
                filter=query_filter,
                params=params,
                with_payload=with_payload,
                with_vector=with_vectors,
            )
            for using, query in queries
        ]
        return [
            [_Point(str(point.id), float(point.score), point.payload, point.vector) for point in points]
            for points in self._live().query_batch(QueryBatchRequest(requests))
        ]

    def _records(self, ids: Sequence[str], *, with_vectors: bool) -> dict[str, _Point]:
        if not ids:
            return {}
        records = self._live().retrieve(list(dict.fromkeys(ids)), with_payload=True, with_vector=with_vectors)
        return {str(record.id): _Point(str(record.id), None, record.payload, record.vector) for record in records}

    def distinct(self, field: str, limit: int = 10_000) -> list[str]:
        _check_distinct(field, limit)
        response = self._live().facet(FacetRequest(key=field, limit=limit, exact=True))
        # An exact facet still lists a value whose points were all deleted, with a count of 0.
        return sorted(str(hit.value) for hit in response if hit.count > 0)

    def _scroll_shop(self, shop: str, offset: str | None) -> tuple[list[dict], str | None]:
        records, offset = self._live().scroll(
            ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                filter=_filter(Filters(shop=shop)),
                with_payload=PayloadSelector.Include(["offer_id", CONTENT_HASH]),
                with_vector=False,
            )
        )
        return [record.payload for record in records], offset

    def _delete_ids(self, ids: list[str]) -> None:
        self._live().update(UpdateOperation.delete_points(ids))

    def delete_shop(self, shop: str) -> int:
        shard = self._live()
        count = self.count(shop)
        log.warning("deleting the %d offers of shop %r from the Qdrant Edge store at %s", count, shop, self.path)
        shard.update(UpdateOperation.delete_points_by_filter(_filter(Filters(shop=shop))))
        return count

    def count(self, shop: str | None = None) -> int:
        query_filter = _filter(Filters(shop=shop)) if shop is not None else None
        return self._live().count(CountRequest(filter=query_filter, exact=True))

    def clear(self) -> None:
        """Delete every point (the folder, schema and indexes stay). Says how many first."""
        shard = self._live()
        log.warning("deleting all %d points of the Qdrant Edge store at %s", self.count(), self.path)
        shard.update(UpdateOperation.delete_points_by_filter(Filter()))

    def close(self) -> None:
        """Flush and release the folder; safe to call twice."""
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.close()


def _filter(filters: Filters) -> Filter | None:
    """`filters` as a Qdrant Edge filter (`lookalike.store.server._filter` builds the same for qdrant-client)."""
    must = [FieldCondition(key=key, match=MatchValue(value)) for key, value in _match_conditions(filters)]
    if (price := _price_range(filters)) is not None:
        must.append(FieldCondition(key="price", range=RangeFloat(gte=price[0], lte=price[1])))
    must_not = [HasIdCondition(set(filters.exclude_ids))] if filters.exclude_ids else []
    if not (must or must_not):
        return None
    return Filter(must=must or None, must_not=must_not or None)
