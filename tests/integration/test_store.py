"""The vector store against real Qdrant engines: Qdrant Edge in a temporary folder, and the server
backend's code on qdrant-client's local mode. Every behaviour test runs on both, so they cannot drift."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from lookalike.catalog import Offer
from lookalike.settings import Settings
from lookalike.store import (
    QUANTIZATIONS,
    Dims,
    Filters,
    SchemaMismatchError,
    StoreBusyError,
    VectorStore,
    open_store,
    point_id,
    server,
)
from lookalike.store.edge import EdgeStore
from lookalike.store.server import ServerStore

pytestmark = [
    # qdrant-client's local mode says, rightly, that it ignores these; the server backend still sends them.
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

N = 300
DIM = 128
DIMS: Dims = {"shape": DIM, "color": DIM}  # the shipped embedder's card
# category tree: 1 clothing > 10 dresses > {100 midi, 101 maxi}; 1 > 11 tops; 2 shoes > 20 sneakers
LEAVES = {100: [100, 10, 1], 101: [101, 10, 1], 11: [11, 1], 20: [20, 2]}
SHOPS = ("alpha", "beta", "gamma")
GENDERS = ("women", "men", None)
COLORS = ("red", "blue", "black")
CURRENCIES = ("EUR", "USD")


@dataclass
class Catalog:
    offers: list[Offer]
    shape: np.ndarray
    color: np.ndarray


def make_catalog(n: int = N, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    leaves = list(LEAVES)
    offers = []
    for i in range(n):
        leaf = leaves[i % len(leaves)]
        offers.append(
            Offer(
                shop=SHOPS[i % len(SHOPS)],
                offer_id=f"sku-{i}",
                title=f"item {i}",
                image_url=f"https://img.example/{i}.jpg",
                price=None if i % 25 == 24 else 10.0 + i,  # a few offers without a price
                currency=CURRENCIES[i % len(CURRENCIES)],
                category_id=leaf,
                category_ids=LEAVES[leaf],
                gender=GENDERS[i % len(GENDERS)],
                color=COLORS[(i // 3) % len(COLORS)],
            )
        )
    shape = rng.standard_normal((n, DIM)).astype(np.float32)
    color = rng.standard_normal((n, DIM)).astype(np.float32)
    return Catalog(offers, shape, color)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return make_catalog()


class Backend:
    name: str

    def open(self, folder: Path, *, persistent: bool = False, dims: Dims = DIMS, indexed: bool = False) -> VectorStore:
        """A store in `folder`; `persistent`: reopenable, `indexed`: Edge builds HNSW even for few points."""
        raise NotImplementedError


class Edge(Backend):
    name = "edge"

    def open(self, folder, *, persistent=False, dims=DIMS, indexed=False):
        return EdgeStore(folder / "edge", dims=dims, indexing_threshold_kb=1 if indexed else None)


class Server(Backend):
    name = "server"

    def open(self, folder, *, persistent=False, dims=DIMS, indexed=False):
        client = QdrantClient(path=str(folder / "qdrant")) if persistent else QdrantClient(":memory:")
        return ServerStore(client, "offers", dims=dims)


@pytest.fixture(params=[Edge(), Server()], ids=lambda backend: backend.name)
def backend(request) -> Backend:
    return request.param


@pytest.fixture
def store(backend: Backend, tmp_path: Path):
    with backend.open(tmp_path) as store:
        yield store


@pytest.fixture
def filled(store: VectorStore, catalog: Catalog) -> VectorStore:
    store.upsert(catalog.offers, catalog.shape, catalog.color)
    return store


def key(offer: Offer) -> tuple[str, str]:
    return offer.shop, offer.offer_id


def same_hits(a: list, b: list) -> bool:
    """Same offers in the same order with the same scores, up to float noise (which changes on reload)."""
    return [hit.id for hit in a] == [hit.id for hit in b] and np.allclose(
        [hit.score for hit in a], [hit.score for hit in b], atol=1e-5
    )


def test_point_id_is_stable_and_unambiguous() -> None:
    assert point_id("alpha", "sku-1") == point_id("alpha", "sku-1")
    # pinned: a different id for the same offer would duplicate the catalogue on the next indexing run
    assert point_id("alpha", "sku-1") == "c12fed91-4230-5d3a-a4c0-d6ebb9e7762c"
    assert point_id("a/b", "c") != point_id("a", "b/c")
    assert point_id("alpha", "1") != point_id("beta", "1")


def test_empty_store_returns_nothing(store: VectorStore) -> None:
    assert store.count() == 0
    assert store.search(np.ones(DIM, np.float32)) == []
    assert store.search(np.ones(DIM, np.float32), exact=True, category_id=1) == []


def test_upsert_then_exact_self_match(filled: VectorStore, catalog: Catalog) -> None:
    assert filled.count() == N
    for i in (0, 7, 123, N - 1):
        for exact in (False, True):
            hits = filled.search(catalog.shape[i], exact=exact)
            assert key(hits[0].offer) == key(catalog.offers[i])
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].id == point_id(*key(catalog.offers[i]))
            assert hits[0].offer == catalog.offers[i]
            assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_top_k_is_respected(filled: VectorStore, catalog: Catalog) -> None:
    assert len(filled.search(catalog.shape[0])) == 10
    assert len(filled.search(catalog.shape[0], top_k=3)) == 3
    assert len(filled.search(catalog.shape[0], top_k=N + 50)) == N
    with pytest.raises(ValueError, match="top_k"):
        filled.search(catalog.shape[0], top_k=0)


def test_reupsert_overwrites(filled: VectorStore, catalog: Catalog) -> None:
    changed = [offer.model_copy(update={"title": "renamed", "price": 1.0}) for offer in catalog.offers[:20]]
    new_shape = make_catalog(20, seed=99).shape
    filled.upsert(changed, new_shape, catalog.color[:20])
    assert filled.count() == N
    hit = filled.search(new_shape[5], top_k=1)[0]
    assert key(hit.offer) == key(catalog.offers[5])
    assert (hit.offer.title, hit.offer.price) == ("renamed", 1.0)
    # the old vector is gone: it no longer finds its offer as a near-perfect match
    assert all(h.score < 0.9 for h in filled.search(catalog.shape[5], top_k=3))


def test_category_filter_rolls_up(filled: VectorStore, catalog: Catalog) -> None:
    dresses = filled.search(catalog.shape[0], top_k=N, category_id=10)
    assert {hit.offer.category_id for hit in dresses} == {100, 101}
    assert len(dresses) == sum(10 in offer.category_ids for offer in catalog.offers)
    clothing = filled.search(catalog.shape[0], top_k=N, category_id=1)
    assert {hit.offer.category_id for hit in clothing} == {100, 101, 11}
    midi = filled.search(catalog.shape[0], top_k=N, category_id=100, exact=True)
    assert {hit.offer.category_id for hit in midi} == {100}
    assert filled.search(catalog.shape[0], category_id=999) == []


def test_shop_gender_and_colour_filters(filled: VectorStore, catalog: Catalog) -> None:
    target = catalog.offers[4]  # beta, men, leaf 100
    hits = filled.search(catalog.shape[4], top_k=N, shop="beta", gender="men")
    assert key(hits[0].offer) == key(target)
    assert {(hit.offer.shop, hit.offer.gender) for hit in hits} == {("beta", "men")}
    expected = sum(offer.shop == "beta" and offer.gender == "men" for offer in catalog.offers)
    assert len(hits) == expected
    both = filled.search(catalog.shape[4], top_k=N, shop="beta", gender="men", category_id=10, color=target.color)
    assert both and all(
        hit.offer.shop == "beta" and 10 in hit.offer.category_ids and hit.offer.color == target.color for hit in both
    )
    assert filled.search(catalog.shape[4], shop="nobody") == []


def test_using_colour_searches_the_colour_vector(filled: VectorStore, catalog: Catalog) -> None:
    by_colour = filled.search(catalog.color[42], using="color", top_k=1)[0]
    assert key(by_colour.offer) == key(catalog.offers[42])
    assert by_colour.score == pytest.approx(1.0, abs=1e-4)
    # the colour vector of offer 42 is not near any shape vector
    assert filled.search(catalog.color[42], using="shape", top_k=1)[0].score < 0.9


def test_search_batch_matches_single_searches(filled: VectorStore, catalog: Catalog) -> None:
    queries = catalog.shape[[3, 50, 77]]
    batch = filled.search_batch(queries, top_k=5, category_id=1)
    assert [[hit.id for hit in hits] for hits in batch] == [
        [hit.id for hit in filled.search(query, top_k=5, category_id=1)] for query in queries
    ]
    assert filled.search_batch(np.empty((0, DIM), np.float32)) == []


def test_bad_input_is_refused(filled: VectorStore, catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="shape"):
        filled.upsert(catalog.offers[:2], catalog.shape[:3], catalog.color[:2])
    with pytest.raises(ValueError, match="zero"):
        filled.upsert(catalog.offers[:1], np.zeros((1, DIM), np.float32), catalog.color[:1])
    with pytest.raises(ValueError, match="NaN"):
        filled.search(np.full(DIM, np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        filled.search(np.ones(DIM + 1, np.float32))
    with pytest.raises(ValueError, match="using"):
        filled.search(catalog.shape[0], using="texture")  # type: ignore[arg-type]
    assert filled.count() == N


def test_optimize_keeps_search_correct(backend: Backend, tmp_path: Path, catalog: Catalog) -> None:
    # On Edge, `indexed` lowers the indexing threshold so that optimize() really builds HNSW and the
    # binary-quantised vectors for these few hundred points, and search then goes through them.
    with backend.open(tmp_path, indexed=True) as store:
        store.upsert(catalog.offers, catalog.shape, catalog.color)
        before = store.search_batch(catalog.shape[:50], top_k=10, exact=True)
        store.optimize()
        store.optimize()  # idempotent
        assert store.count() == N
        after = store.search_batch(catalog.shape[:50], top_k=10)
        for i, hits in enumerate(after):
            assert key(hits[0].offer) == key(catalog.offers[i])
        # Binary quantisation of unclustered 128-d noise is its worst case (0.86 here); the benchmark
        # measures recall on clustered data. This checks the indexed path works, not how well.
        recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(after, before, strict=True)])
        assert recall >= 0.8, recall
        # rescored: the scores are the true cosines, not the quantised estimates
        for approximate, exact in zip(after, before, strict=True):
            exact_scores = {hit.id: hit.score for hit in exact}
            for hit in approximate:
                if hit.id in exact_scores:
                    assert hit.score == pytest.approx(exact_scores[hit.id], abs=1e-5)
        exact_after = store.search_batch(catalog.shape[:50], top_k=10, exact=True)
        assert all(same_hits(a, b) for a, b in zip(exact_after, before, strict=True))
        filtered = store.search(catalog.shape[1], top_k=N, category_id=10)
        assert key(filtered[0].offer) == key(catalog.offers[1])
        assert len(filtered) == sum(10 in offer.category_ids for offer in catalog.offers)
        # filtered searches score original vectors: the same top 10 as exact search
        for query in catalog.shape[:20]:
            assert same_hits(store.search(query, category_id=10), store.search(query, category_id=10, exact=True))


def test_persists_across_reopen(backend: Backend, tmp_path: Path, catalog: Catalog) -> None:
    with backend.open(tmp_path, persistent=True, indexed=True) as store:
        store.upsert(catalog.offers[:200], catalog.shape[:200], catalog.color[:200])
        store.optimize()
        store.upsert(catalog.offers[200:], catalog.shape[200:], catalog.color[200:])  # after optimize: WAL only
        expected = store.search(catalog.shape[250], top_k=5, category_id=1)
    with backend.open(tmp_path, persistent=True) as store:
        assert store.count() == N
        assert same_hits(store.search(catalog.shape[250], top_k=5, category_id=1), expected)
        assert key(store.search(catalog.shape[10], top_k=1)[0].offer) == key(catalog.offers[10])


def test_schema_mismatch_is_an_error_and_changes_nothing(backend: Backend, tmp_path: Path, catalog: Catalog) -> None:
    with backend.open(tmp_path, persistent=True) as store:
        store.upsert(catalog.offers[:10], catalog.shape[:10], catalog.color[:10])
    for other in ({"shape": 64, "color": 64}, {"shape": DIM, "color": 64}):
        with pytest.raises(SchemaMismatchError, match="expects"):
            backend.open(tmp_path, persistent=True, dims=other)
    with backend.open(tmp_path, persistent=True) as store:
        assert store.count() == 10


def test_vectors_take_their_sizes_from_dims(backend: Backend, tmp_path: Path, catalog: Catalog) -> None:
    # An embedder card may give its two vectors different sizes.
    with backend.open(tmp_path, dims={"shape": DIM, "color": 32}) as store:
        store.upsert(catalog.offers[:20], catalog.shape[:20], catalog.color[:20, :32])
        assert key(store.search(catalog.color[7, :32], using="color", top_k=1)[0].offer) == key(catalog.offers[7])
        with pytest.raises(ValueError, match=r"\(n, 32\)"):
            store.search_batch(catalog.color[:2], using="color")
        with pytest.raises(ValueError, match="color"):
            store.upsert(catalog.offers[:2], catalog.shape[:2], catalog.color[:2])


@pytest.mark.parametrize("dims", [{"shape": DIM}, {"shape": DIM, "color": 0}, {**DIMS, "texture": 8}])
def test_bad_dims_are_refused(tmp_path: Path, dims: dict) -> None:
    with pytest.raises(ValueError, match="dims"):
        EdgeStore(tmp_path / "edge", dims=dims)
    with pytest.raises(ValueError, match="dims"):
        ServerStore(QdrantClient(":memory:"), dims=dims)


def test_server_refuses_a_collection_with_other_vectors() -> None:
    client = QdrantClient(":memory:")
    client.create_collection("offers", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    with pytest.raises(SchemaMismatchError, match="<unnamed>"):
        ServerStore(client, "offers", dims=DIMS)
    assert client.collection_exists("offers")
    client.close()


def test_edge_folder_is_single_owner(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "edge", dims=DIMS) as store:
        with pytest.raises(StoreBusyError):
            EdgeStore(tmp_path / "edge", dims=DIMS)
        assert store.count() == 0
    with EdgeStore(tmp_path / "edge", dims=DIMS) as store:  # released on close
        assert store.count() == 0


def test_edge_serves_searches_from_threads_during_upserts(tmp_path: Path, catalog: Catalog) -> None:
    # qdrant-edge-py 0.9.0 calls are thread-safe (and hold the GIL); the service searches from a threadpool
    with EdgeStore(tmp_path / "edge", dims=DIMS) as store:
        store.upsert(catalog.offers[:100], catalog.shape[:100], catalog.color[:100])

        def search(i: int) -> tuple[str, str]:
            return key(store.search(catalog.shape[i % 100], top_k=1)[0].offer)

        def upsert(start: int) -> None:
            store.upsert(
                catalog.offers[start : start + 20], catalog.shape[start : start + 20], catalog.color[start : start + 20]
            )

        with ThreadPoolExecutor(4) as pool:
            writes = [pool.submit(upsert, start) for start in range(100, N, 20)]
            found = list(pool.map(search, range(400)))
            for write in writes:
                write.result()
        assert found == [key(catalog.offers[i % 100]) for i in range(400)]
        assert store.count() == N


def test_closed_store_refuses_calls(backend: Backend, tmp_path: Path) -> None:
    store = backend.open(tmp_path)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.count()


def test_clear_keeps_the_schema(filled: VectorStore, catalog: Catalog) -> None:
    filled.clear()
    assert filled.count() == 0
    filled.upsert(catalog.offers[:5], catalog.shape[:5], catalog.color[:5])
    assert filled.search(catalog.shape[2], top_k=1, shop=catalog.offers[2].shop)[0].offer == catalog.offers[2]


@pytest.mark.parametrize("url", [None, "http://qdrant.example:6333"])
def test_open_store_follows_settings(url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: dict = {}

    created: dict = {}

    def fake_client(**kwargs) -> QdrantClient:  # stands in for a server: records what it was given
        opened.update(kwargs)
        client = QdrantClient(":memory:")
        create = client.create_collection

        def recording_create(name, **options):
            created.update(options)
            return create(name, **options)

        client.create_collection = recording_create
        return client

    monkeypatch.setattr("lookalike.store.server.QdrantClient", fake_client)
    settings = Settings(
        _env_file=None,
        store_path=tmp_path / "store",
        qdrant_url=url,
        qdrant_api_key="secret",
        hnsw_ef=64,
        qdrant_shards=3,
        qdrant_replicas=2,
    )
    with open_store(settings, dims=DIMS) as store:
        if url is None:
            assert isinstance(store, EdgeStore) and store.path == tmp_path / "store"
        else:
            assert isinstance(store, ServerStore) and store.collection == settings.collection
            assert opened == {"url": url, "api_key": "secret"}
            assert (created["shard_number"], created["replication_factor"]) == (3, 2)
        assert store.count() == 0


# Each quantisation's key in Qdrant's persisted config.
CONFIG_KEYS = {"binary": "binary", "turbo": "turbo", "scalar": "scalar"}


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_each_quantization_indexes_searches_and_is_kept(tmp_path: Path, catalog: Catalog, quantization: str) -> None:
    folder = tmp_path / "edge"
    with EdgeStore(folder, dims=DIMS, quantization=quantization, indexing_threshold_kb=1) as store:
        store.upsert(catalog.offers, catalog.shape, catalog.color)
        store.optimize()
        exact = store.search_batch(catalog.shape[:50], top_k=10, exact=True)
        found = store.search_batch(catalog.shape[:50], top_k=10)
        assert [key(hits[0].offer) for hits in found] == [key(offer) for offer in catalog.offers[:50]]
        recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(found, exact, strict=True)])
        assert recall >= 0.8, (quantization, recall)  # unclustered noise: the codes' worst case (see above)
    config_file = folder / "edge_config.json"
    persisted = json.loads(config_file.read_text())["quantization_config"]
    assert set(persisted) == {CONFIG_KEYS[quantization.split("-")[0]]}
    if quantization.startswith("binary"):
        expected = {"binary": "one_bit", "binary-1.5bit": "one_and_half_bits", "binary-2bit": "two_bits"}
        assert persisted["binary"]["encoding"] == expected[quantization]
    # The setting chooses the codes of a new store only: reopening with another keeps the store's own.
    other = "scalar-int8" if quantization != "scalar-int8" else "binary"
    with EdgeStore(folder, dims=DIMS, quantization=other) as store:
        assert key(store.search(catalog.shape[7], top_k=1)[0].offer) == key(catalog.offers[7])
    assert json.loads(config_file.read_text())["quantization_config"] == persisted


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_server_collections_get_the_same_quantization(quantization: str) -> None:
    config = server.quantization_config(quantization)
    assert {
        "binary": models.BinaryQuantization,
        "turbo": models.TurboQuantization,
        "scalar": models.ScalarQuantization,
    }[quantization.split("-")[0]] is type(config)


def test_unknown_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        EdgeStore(tmp_path / "edge", dims=DIMS, quantization="binary-3bit")
    assert not (tmp_path / "edge").exists()
    with pytest.raises(ValueError):
        Settings(_env_file=None, quantization="binary-3bit")


def test_quantization_setting_reaches_a_new_store(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, store_path=tmp_path / "store", quantization="scalar-int8")
    with open_store(settings, dims=DIMS):
        pass
    assert "scalar" in json.loads((tmp_path / "store" / "edge_config.json").read_text())["quantization_config"]


# --- filters, fused search, stored vectors, distinct values ---------------------------------


def ids_where(catalog: Catalog, keep) -> set[str]:
    return {point_id(*key(offer)) for offer in catalog.offers if keep(offer)}


def unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def brute_fused(
    catalog: Catalog, shape: np.ndarray, color: np.ndarray, weights: dict, top_k: int, keep=lambda offer: True
) -> list[tuple[str, float, float, float]]:
    """The exact fused ranking by numpy over the whole catalogue: (id, score, shape cosine, colour cosine)."""
    cos_shape, cos_color = unit(catalog.shape) @ unit(shape), unit(catalog.color) @ unit(color)
    w_shape, w_color = weights.get("shape", 0.0), weights.get("color", 0.0)
    fused = (w_shape * cos_shape + w_color * cos_color) / (w_shape + w_color)
    ids = np.array([point_id(*key(offer)) for offer in catalog.offers])
    rows = np.array([i for i, offer in enumerate(catalog.offers) if keep(offer)])
    best = rows[np.lexsort((ids[rows], -fused[rows]))][:top_k]
    return [(ids[i], fused[i], cos_shape[i], cos_color[i]) for i in best]


def fused_queries(catalog: Catalog, rows: list[int], seed: int = 1) -> dict[str, np.ndarray]:
    """Shape queries near some offers, colour queries near others, so the two vectors disagree."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, len(rows), DIM)).astype(np.float32) * 0.3
    return {"shape": catalog.shape[rows] + noise[0], "color": catalog.color[[r + 1 for r in rows]] + noise[1]}


def test_price_range_is_inclusive_and_needs_a_price(filled: VectorStore, catalog: Catalog) -> None:
    def found(filters: Filters) -> set[str]:
        return {hit.id for hit in filled.search(catalog.shape[0], top_k=N, filters=filters)}

    # prices are 10 + i: [20, 30] holds i = 10..20 (i = 24 has no price and is never in a range)
    assert found(Filters(min_price=20, max_price=30)) == ids_where(catalog, lambda o: o.price and 20 <= o.price <= 30)
    assert len(found(Filters(min_price=20, max_price=30))) == 11
    assert found(Filters(min_price=300)) == ids_where(catalog, lambda o: o.price is not None and o.price >= 300)
    assert found(Filters(max_price=15.0)) == ids_where(catalog, lambda o: o.price is not None and o.price <= 15)
    assert found(Filters(min_price=30, max_price=30)) == ids_where(catalog, lambda o: o.price == 30)
    assert found(Filters(min_price=0)) == ids_where(catalog, lambda o: o.price is not None)


def test_currency_and_excluded_ids(filled: VectorStore, catalog: Catalog) -> None:
    usd = filled.search(catalog.shape[0], top_k=N, filters=Filters(currency="USD"))
    assert {hit.id for hit in usd} == ids_where(catalog, lambda o: o.currency == "USD")
    itself = point_id(*key(catalog.offers[5]))
    hits = filled.search(catalog.shape[5], top_k=N, filters=Filters(exclude_ids=(itself,)))
    assert len(hits) == N - 1 and itself not in {hit.id for hit in hits}
    # the excluded offer's nearest neighbour comes first instead, as without the filter
    assert same_hits(hits[:3], filled.search(catalog.shape[5], top_k=4)[1:])


def test_filters_combine_with_the_category_roll_up(filled: VectorStore, catalog: Catalog) -> None:
    excluded = (point_id(*key(catalog.offers[0])), point_id(*key(catalog.offers[4])))
    filters = Filters(category_id=10, currency="EUR", min_price=10, max_price=200, exclude_ids=excluded)
    hits = filled.search(catalog.shape[0], top_k=N, filters=filters)
    expected = ids_where(
        catalog, lambda o: 10 in o.category_ids and o.currency == "EUR" and o.price and 10 <= o.price <= 200
    ) - set(excluded)
    assert {hit.id for hit in hits} == expected and expected
    # the older keywords still work and mean the same as Filters
    assert same_hits(
        filled.search(catalog.shape[0], category_id=10, shop="beta"),
        filled.search(catalog.shape[0], filters=Filters(category_id=10, shop="beta")),
    )
    with pytest.raises(ValueError, match="not both"):
        filled.search(catalog.shape[0], shop="beta", filters=Filters(currency="EUR"))


@pytest.mark.parametrize("weights", [{"shape": 0.5, "color": 0.5}, {"shape": 0.2, "color": 0.8}, {"shape": 0.7}])
def test_fused_search_equals_brute_force(filled: VectorStore, catalog: Catalog, weights: dict) -> None:
    rows = [3, 50, 120]
    queries = fused_queries(catalog, rows)
    for filters, keep in (
        (None, lambda offer: True),
        (Filters(category_id=1, min_price=50), lambda o: 1 in o.category_ids and o.price and o.price >= 50),
    ):
        # a shortlist covering the catalogue: every offer is a candidate, so the ranking is exact
        found = filled.search_fused(queries, weights=weights, top_k=10, filters=filters, shortlist=N)
        for i, hits in enumerate(found):
            expected = brute_fused(catalog, queries["shape"][i], queries["color"][i], weights, 10, keep)
            assert [hit.id for hit in hits] == [row[0] for row in expected]
            got = [(hit.score, hit.shape_score, hit.color_score) for hit in hits]
            np.testing.assert_allclose(got, [row[1:] for row in expected], atol=1e-5)
            assert all(hit.offer.offer_id for hit in hits)


@pytest.mark.parametrize("using", ["shape", "color"])
def test_fusing_one_vector_is_single_vector_search(filled: VectorStore, catalog: Catalog, using: str) -> None:
    queries = fused_queries(catalog, [7, 77])
    other = "color" if using == "shape" else "shape"
    fused = filled.search_fused(queries, weights={using: 1.0, other: 0.0}, top_k=5, shortlist=30)
    single = filled.search_batch(queries[using], using=using, top_k=30)  # the same limit
    for hits, expected in zip(fused, single, strict=True):
        assert [hit.id for hit in hits] == [hit.id for hit in expected[:5]]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected[:5]], atol=1e-5)
        assert all(hit.score == getattr(hit, f"{using}_score") for hit in hits)
        assert all(getattr(hit, f"{other}_score") is not None for hit in hits)


def test_fused_search_refuses_bad_weights_and_queries(filled: VectorStore, catalog: Catalog) -> None:
    queries = fused_queries(catalog, [1])
    for weights, message in (({"shape": 0, "color": 0.0}, "above 0"), ({"shape": 1.5}, "between 0 and 1")):
        with pytest.raises(ValueError, match=message):  # every case: tests/unit/test_store_fusion.py
            filled.search_fused(queries, weights=weights)
    with pytest.raises(ValueError, match="each of"):
        filled.search_fused({"shape": queries["shape"]}, weights={"shape": 1})
    with pytest.raises(ValueError, match="as many rows"):
        filled.search_fused({"shape": queries["shape"], "color": catalog.color[:2]}, weights={"shape": 1})
    with pytest.raises(ValueError, match="shortlist"):
        filled.search_fused(queries, weights={"shape": 1}, shortlist=0)
    assert filled.search_fused({name: np.empty((0, DIM)) for name in DIMS}, weights={"shape": 1}) == []


def test_fused_search_on_the_indexed_path(tmp_path: Path, catalog: Catalog) -> None:
    # HNSW over binary codes with rescoring: the candidates are those of search_batch with the same limit
    with Edge().open(tmp_path, indexed=True) as store:
        store.upsert(catalog.offers, catalog.shape, catalog.color)
        store.optimize()
        queries = fused_queries(catalog, list(range(20)))
        fused = store.search_fused(queries, weights={"shape": 1.0}, top_k=10, shortlist=25)
        single = store.search_batch(queries["shape"], top_k=25)
        assert [[h.id for h in hits] for hits in fused] == [[h.id for h in hits[:10]] for hits in single]
        mixed = store.search_fused(queries, weights={"shape": 0.5, "color": 0.5}, top_k=10, shortlist=25)
        for i, hits in enumerate(mixed):
            expected = brute_fused(catalog, queries["shape"][i], queries["color"][i], {"shape": 0.5, "color": 0.5}, 10)
            assert len({hit.id for hit in hits} & {row[0] for row in expected}) >= 8


def test_vectors_of_reads_a_stored_offer(filled: VectorStore, catalog: Catalog) -> None:
    stored = filled.vectors_of("beta", "sku-4")
    assert stored is not None
    assert stored.id == point_id("beta", "sku-4") and stored.offer == catalog.offers[4]
    for name, vectors in (("shape", catalog.shape), ("color", catalog.color)):
        assert stored.vectors[name].shape == (DIM,)
        np.testing.assert_allclose(stored.vectors[name], unit(vectors[4]), atol=1e-6)  # stored normalised
    assert filled.vectors_of("alpha", "sku-4") is None  # sku-4 belongs to beta
    assert filled.vectors_of("beta", "no-such-offer") is None
    # "similar to this product": its own vectors, itself excluded
    similar = filled.search_fused(
        {name: vector[None, :] for name, vector in stored.vectors.items()},
        weights={"shape": 0.5, "color": 0.5},
        filters=Filters(exclude_ids=(stored.id,)),
    )[0]
    assert len(similar) == 10 and stored.id not in {hit.id for hit in similar}


def test_distinct_lists_keyword_values(filled: VectorStore) -> None:
    assert filled.distinct("shop") == sorted(SHOPS)
    assert filled.distinct("currency") == sorted(CURRENCIES)
    assert filled.distinct("gender") == ["men", "women"]  # offers without a gender add nothing
    assert filled.distinct("color") == sorted(COLORS)
    with pytest.raises(ValueError, match="distinct"):
        filled.distinct("price")


def test_distinct_on_an_empty_store(store: VectorStore) -> None:
    assert store.distinct("shop") == []


def test_edge_adds_new_payload_indexes_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a store made before `price` and `currency` were indexed gets those indexes when opened
    older = {"shop": "keyword", "category_ids": "integer", "gender": "keyword", "color": "keyword"}
    with monkeypatch.context() as patch:
        patch.setattr("lookalike.store.edge.PAYLOAD_INDEXES", older)
        with EdgeStore(tmp_path / "edge", dims=DIMS) as store:
            assert set(store._live().info().payload_schema) == set(older)
    with EdgeStore(tmp_path / "edge", dims=DIMS) as store:
        assert {"price", "currency"} <= set(store._live().info().payload_schema)


def test_content_hashes_are_kept_beside_the_offer_and_read_back_per_shop(
    store: VectorStore, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lookalike.store.edge.SCROLL_PAGE", 7)  # several pages per shop
    monkeypatch.setattr("lookalike.store.server.SCROLL_PAGE", 7)
    hashes = [None if i % 10 == 0 else f"hash-{i}" for i in range(N)]
    store.upsert(catalog.offers, catalog.shape, catalog.color, content_hashes=hashes)
    expected = {offer.offer_id: h for offer, h in zip(catalog.offers, hashes) if offer.shop == "alpha"}
    assert store.content_hashes("alpha") == expected and len(expected) == N // len(SHOPS)
    assert store.content_hashes("no-such-shop") == {}
    stored = store.vectors_of("beta", "sku-4")
    assert stored is not None and stored.offer == catalog.offers[4]  # the hash is not an Offer field
    store.upsert(catalog.offers[:3], catalog.shape[:3], catalog.color[:3])  # without hashes: none kept
    assert store.content_hashes("alpha")["sku-0"] is None
    with pytest.raises(ValueError, match="one hash per offer"):
        store.upsert(catalog.offers[:3], catalog.shape[:3], catalog.color[:3], content_hashes=["a"])


def test_offers_and_shops_are_deleted_and_counted(filled: VectorStore, catalog: Catalog) -> None:
    per_shop = N // len(SHOPS)
    assert [filled.count(shop) for shop in SHOPS] == [per_shop] * len(SHOPS)
    filled.delete_offers("alpha", ["sku-0", "sku-3", "sku-4", "no-such-offer"])  # sku-4 is beta's: kept
    assert filled.count("alpha") == per_shop - 2 and filled.count("beta") == per_shop
    assert filled.vectors_of("alpha", "sku-3") is None and filled.vectors_of("beta", "sku-4") is not None
    assert filled.delete_shop("beta") == per_shop
    assert filled.count("beta") == 0 and filled.count() == N - per_shop - 2
    assert filled.distinct("shop") == ["alpha", "gamma"]
    assert filled.delete_shop("beta") == 0


# --- the optional third vector: `detail` ----------------------------------------------------------

DETAIL_DIM = 48
DETAIL_DIMS: Dims = {**DIMS, "detail": DETAIL_DIM}


def test_a_store_with_detail_upserts_fuses_and_reads_all_three(
    backend: Backend, tmp_path: Path, catalog: Catalog
) -> None:
    detail = np.random.default_rng(5).standard_normal((N, DETAIL_DIM)).astype(np.float32)
    with backend.open(tmp_path, dims=DETAIL_DIMS) as store:
        with pytest.raises(ValueError, match="needs detail="):
            store.upsert(catalog.offers, catalog.shape, catalog.color)
        store.upsert(catalog.offers, catalog.shape, catalog.color, detail=detail)
        assert key(store.search(detail[9], using="detail", top_k=1)[0].offer) == key(catalog.offers[9])
        rows = [4, 77]
        queries = {**fused_queries(catalog, rows), "detail": detail[rows] + 0.1}
        weights = {"shape": 0.2, "color": 0.2, "detail": 0.6}
        found = store.search_fused(queries, weights=weights, top_k=5, shortlist=N)
        cosines = {
            name: unit(matrix) @ unit(queries[name]).T
            for name, matrix in (("shape", catalog.shape), ("color", catalog.color), ("detail", detail))
        }
        fused = sum(weights[name] * cosines[name] for name in weights)
        for column, hits in enumerate(found):
            best = np.lexsort((np.arange(N), -fused[:, column]))[:5]
            assert [hit.offer.offer_id for hit in hits] == [catalog.offers[i].offer_id for i in best]
            first = best[0]
            assert hits[0].score == pytest.approx(fused[first, column], abs=1e-5)
            assert hits[0].detail_score == pytest.approx(cosines["detail"][first, column], abs=1e-5)
        stored = store.vectors_of(*key(catalog.offers[3]))
        assert stored is not None and set(stored.vectors) == {"shape", "color", "detail"}
        np.testing.assert_allclose(stored.vectors["detail"], unit(detail[3]), atol=1e-6)


def test_detail_is_refused_where_the_store_has_none(filled: VectorStore, catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="holds no detail vector"):
        filled.upsert(catalog.offers[:2], catalog.shape[:2], catalog.color[:2], detail=catalog.shape[:2])
    with pytest.raises(ValueError, match="may only name this store's vectors"):
        filled.search_fused(fused_queries(catalog, [1]), weights={"detail": 1.0})
    with pytest.raises(ValueError, match="using must be one of"):
        filled.search(catalog.shape[0], using="detail")


def test_an_embedder_with_detail_does_not_open_a_store_without(
    backend: Backend, tmp_path: Path, catalog: Catalog
) -> None:
    with backend.open(tmp_path, persistent=True) as store:
        store.upsert(catalog.offers[:10], catalog.shape[:10], catalog.color[:10])
    with pytest.raises(SchemaMismatchError, match="expects"):
        backend.open(tmp_path, persistent=True, dims=DETAIL_DIMS)
    with backend.open(tmp_path, persistent=True) as store:
        assert store.count() == 10
