"""The server backend: a Qdrant server or cluster through qdrant-client (`settings.qdrant_url`).

The collection is created when missing and checked when present; it is never dropped or recreated
as a side effect. The server builds HNSW and the quantised vectors in the background, so
`optimize()` only waits for the collection to turn green.

qdrant-client's local mode (`QdrantClient(":memory:")` or `path=`) runs this same code in tests; it
searches by brute force and ignores quantisation, search parameters and payload indexes (it warns).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from qdrant_client import QdrantClient, models

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
    VectorName,
    _check_dims,
    _check_distinct,
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
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
}


def quantization_config(name: Quantization) -> models.QuantizationConfig:
    """The collection's config for one of `QUANTIZATIONS`, as `lookalike.store.edge.quantization_config`."""
    if name not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {name!r}; choose one of {QUANTIZATIONS}")
    if name.startswith("binary"):
        encoding = {
            "binary": models.BinaryQuantizationEncoding.ONE_BIT,
            "binary-1.5bit": models.BinaryQuantizationEncoding.ONE_AND_HALF_BITS,
            "binary-2bit": models.BinaryQuantizationEncoding.TWO_BITS,
        }[name]
        return models.BinaryQuantization(
            binary=models.BinaryQuantizationConfig(
                always_ram=True, encoding=encoding, query_encoding=models.BinaryQuantizationQueryEncoding.SCALAR8BITS
            )
        )
    if name == "turbo-4bit":
        return models.TurboQuantization(
            turbo=models.TurboQuantQuantizationConfig(always_ram=True, bits=models.TurboQuantBitSize.BITS4)
        )
    if name == "scalar-int8":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
        )
    raise AssertionError(f"no config for {name!r}")


class ServerStore(_Store):
    """Offers in the collection `collection` of the Qdrant that `client` talks to. Closes `client` on close.

    Like `EdgeStore`, filtered searches score original vectors unless `quantize_filtered` (see there).
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str = "offers",
        *,
        dims: Dims,
        hnsw_ef: int = 256,
        oversampling: float = 8.0,
        rescore: bool = True,
        quantize_filtered: bool = False,
        quantization: Quantization = "binary",
        shards: int = 1,
        replicas: int = 1,
        upsert_batch_size: int = 256,
        max_retries: int = 3,
        optimize_timeout_s: float = 3600.0,
        poll_interval_s: float = 1.0,
    ) -> None:
        _validate_settings(hnsw_ef, oversampling)
        self._codes = quantization_config(quantization)
        if shards < 1 or replicas < 1:
            raise ValueError(f"shards and replicas must be at least 1, got {shards} and {replicas}")
        self.shards, self.replicas = shards, replicas
        self.client = client
        self.collection = collection
        self.dims = _check_dims(dims)
        self.upsert_batch_size = upsert_batch_size
        self.max_retries = max_retries
        self.optimize_timeout_s = optimize_timeout_s
        self.poll_interval_s = poll_interval_s
        self._params = models.SearchParams(
            hnsw_ef=hnsw_ef, quantization=models.QuantizationSearchParams(rescore=rescore, oversampling=oversampling)
        )
        self._filtered_params = (
            self._params
            if quantize_filtered
            else models.SearchParams(hnsw_ef=hnsw_ef, quantization=models.QuantizationSearchParams(ignore=True))
        )
        self._exact_params = models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
        self._closed = False
        self._ensure_collection()

    @classmethod
    def from_settings(cls, settings: Settings, *, dims: Dims) -> ServerStore:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(url=settings.qdrant_url, api_key=api_key)
        return cls(
            client,
            settings.collection,
            dims=dims,
            hnsw_ef=settings.hnsw_ef,
            oversampling=settings.oversampling,
            quantization=settings.quantization,
            shards=settings.qdrant_shards,
            replicas=settings.qdrant_replicas,
        )

    def _ensure_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            info = self.client.get_collection(self.collection)
            self._check_vectors(info.config.params.vectors)
            indexed = set(info.payload_schema)
            action = "opened"
        else:
            # Points go to shards by the hash of their id (Qdrant's automatic sharding), not by shop:
            # shops differ in size by orders of magnitude (one would make a hot shard), a search
            # without a shop filter reaches every shard either way, and a shop filter is served by
            # the payload index on each.
            self.client.create_collection(
                self.collection,
                shard_number=self.shards,
                replication_factor=self.replicas,
                vectors_config={
                    name: models.VectorParams(size=self.dims[name], distance=models.Distance.COSINE)
                    for name in self.dims
                },
                hnsw_config=models.HnswConfigDiff(
                    m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
                ),
                quantization_config=self._codes,
            )
            indexed = set()
            action = "created"
        for field, kind in PAYLOAD_INDEXES.items():
            if field not in indexed:
                self.client.create_payload_index(self.collection, field, _INDEX_TYPES[kind], wait=True)
        log.info("%s Qdrant collection %r (%d points)", action, self.collection, self.count())

    def _check_vectors(self, vectors) -> None:
        expected = {name: (self.dims[name], models.Distance.COSINE) for name in self.dims}
        found = (
            {name: (params.size, params.distance) for name, params in vectors.items()}
            if isinstance(vectors, dict)
            else {"": (vectors.size, vectors.distance)}  # one unnamed vector
        )
        if found != expected:
            raise SchemaMismatchError(
                f"the Qdrant collection {self.collection!r} has vectors {_describe(found)}, but this code expects "
                f"{_describe(expected)}. Nothing was changed; use another collection name, or delete this "
                "collection explicitly (ServerStore.delete_collection) and index again."
            )

    def _live(self) -> QdrantClient:
        if self._closed:
            raise RuntimeError(f"the store for collection {self.collection!r} is closed")
        return self.client

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
        points = (
            models.PointStruct(
                id=point_id(offer.shop, offer.offer_id),
                vector={name: matrix[row].tolist() for name, matrix in vectors.items()},
                payload=payload,
            )
            for row, (offer, payload) in enumerate(zip(offers, payloads, strict=True))
        )
        self._live().upload_points(
            self.collection, points, batch_size=self.upsert_batch_size, max_retries=self.max_retries, wait=True
        )

    def optimize(self) -> None:
        """Wait until the server has finished indexing (collection status green)."""
        deadline = time.monotonic() + self.optimize_timeout_s
        while (status := self._live().get_collection(self.collection).status) != models.CollectionStatus.GREEN:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"collection {self.collection!r} still {status} after {self.optimize_timeout_s} s of indexing"
                )
            time.sleep(self.poll_interval_s)

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
            models.QueryRequest(
                query=query.tolist(),
                using=using,
                limit=limit,
                filter=query_filter,
                params=params,
                with_payload=with_payload,
                with_vector=with_vectors,
            )
            for using, query in queries
        ]
        responses = self._live().query_batch_points(self.collection, requests)
        return [
            [_Point(str(point.id), float(point.score), point.payload, point.vector) for point in response.points]
            for response in responses
        ]

    def _records(self, ids: Sequence[str], *, with_vectors: bool) -> dict[str, _Point]:
        if not ids:
            return {}
        records = self._live().retrieve(
            self.collection, list(dict.fromkeys(ids)), with_payload=True, with_vectors=with_vectors
        )
        return {str(record.id): _Point(str(record.id), None, record.payload, record.vector) for record in records}

    def distinct(self, field: str, limit: int = 10_000) -> list[str]:
        _check_distinct(field, limit)
        response = self._live().facet(self.collection, key=field, limit=limit, exact=True)
        return sorted(str(hit.value) for hit in response.hits)

    def _scroll_shop(self, shop: str, offset: str | None) -> tuple[list[dict], str | None]:
        records, offset = self._live().scroll(
            self.collection,
            scroll_filter=_filter(Filters(shop=shop)),
            limit=SCROLL_PAGE,
            offset=offset,
            with_payload=["offer_id", CONTENT_HASH],
            with_vectors=False,
        )
        return [record.payload for record in records], offset

    def _delete_ids(self, ids: list[str]) -> None:
        self._live().delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def delete_shop(self, shop: str) -> int:
        client = self._live()
        count = self.count(shop)
        log.warning("deleting the %d offers of shop %r from Qdrant collection %r", count, shop, self.collection)
        client.delete(
            self.collection, points_selector=models.FilterSelector(filter=_filter(Filters(shop=shop))), wait=True
        )
        return count

    def count(self, shop: str | None = None) -> int:
        query_filter = _filter(Filters(shop=shop)) if shop is not None else None
        return self._live().count(self.collection, count_filter=query_filter, exact=True).count

    def clear(self) -> None:
        """Delete every point; the collection, its schema and indexes stay. Says how many first."""
        client = self._live()
        log.warning("deleting all %d points of Qdrant collection %r", self.count(), self.collection)
        client.delete(self.collection, points_selector=models.FilterSelector(filter=models.Filter()), wait=True)

    def delete_collection(self) -> None:
        """Drop the collection with its schema; the store is closed afterwards. Says what first."""
        client = self._live()
        log.warning("deleting Qdrant collection %r with its %d points", self.collection, self.count())
        client.delete_collection(self.collection)
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.close()


def _filter(filters: Filters) -> models.Filter | None:
    """`filters` as a qdrant-client filter (`lookalike.store.edge._filter` builds the same for Qdrant Edge)."""
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in _match_conditions(filters)
    ]
    if (price := _price_range(filters)) is not None:
        must.append(models.FieldCondition(key="price", range=models.Range(gte=price[0], lte=price[1])))
    must_not: list[models.Condition] = (
        [models.HasIdCondition(has_id=list(filters.exclude_ids))] if filters.exclude_ids else []
    )
    if not (must or must_not):
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _describe(vectors: dict[str, tuple[int, models.Distance]]) -> str:
    return ", ".join(f"{name or '<unnamed>'}: {size}-d {distance.value}" for name, (size, distance) in vectors.items())
