"""indexer.pipeline with stand-in models, a real HTTP image server and a real Qdrant Edge store:
what a run adds, re-embeds, refreshes, leaves alone, deletes and counts as failed."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from indexer.feeds import FeedError, FeedProblem, FeedRecord
from indexer.images import ImageCache, ImageLoader
from indexer.offers import OfferMaker
from indexer.pipeline import Engines, Models, Options, Summary, content_hash, index_feed
from loadtests.bench_indexer import ImageServer
from lookalike.fetch import ImageFetcher
from lookalike.mapping import Categorizer
from lookalike.preprocess import EvalPreset
from lookalike.store.edge import EdgeStore

DIMS = {"shape": 3, "color": 3}
MAX_BYTES = 100_000


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class StandIn:
    """Embeds a crop as its mean colour (+1, so never zero); counts calls and loads. `locate` boxes the
    left half of photos wider than tall, leaves the rest whole. `fail` makes every call raise."""

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False, on_call=None) -> None:
        self.loads = 0
        self.embedded: list[int] = []
        self.delay_s = delay_s
        self.fail = fail
        self.on_call = on_call

    def load(self) -> Engines:
        self.loads += 1
        return Engines(embed=self.embed, preset=EvalPreset(crop_size=8, resize_size=8), locate=self.locate)

    def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if self.on_call is not None:
            self.on_call()
        if self.fail:
            raise RuntimeError("the model broke")
        time.sleep(self.delay_s)
        self.embedded.append(len(pixels))
        means = pixels.reshape(len(pixels), -1, 3).mean(axis=1) + 1.0
        return {"shape": means, "color": means[:, ::-1]}

    def locate(self, images: list[Image.Image]):
        return [(0, 0, image.width // 2, image.height) if image.width > image.height else None for image in images]


@pytest.fixture
def server():
    with ImageServer() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with EdgeStore(tmp_path / "store", dims=DIMS) as store:
        yield store


def record(server: ImageServer, i: int, *, category: str = "dress", price: float = 100.0, path=None) -> FeedRecord:
    return FeedRecord(
        offer_id=f"o{i}",
        title=f"offer {i}",
        image_urls=(server.url(path or f"/{i}.jpg"),),
        price=price,
        currency="RUB",
        category_path=category,
    )


def index(
    records,
    store,
    tmp_path,
    models: StandIn,
    *,
    fingerprint: str = "models-1",
    keep_unmapped: bool = False,
    **options,
) -> Summary:
    fetcher = ImageFetcher(max_bytes=MAX_BYTES, allowed_hosts=["127.0.0.1"], timeout_s=2.0)
    loader = ImageLoader(fetcher, ImageCache(tmp_path / "cache"), max_bytes=MAX_BYTES, retries=0)
    return index_feed(
        records,
        shop="s",
        make_offer=OfferMaker("s", Categorizer.load(None), keep_unmapped=keep_unmapped),
        loader=loader,
        models=Models(fingerprint, models.load),
        store=store,
        options=Options(**{"batch_size": 4, **options}),
        max_bytes=MAX_BYTES,
        max_pixels=1_000_000,
    )


def counts(summary: Summary) -> dict:
    return {
        name: getattr(summary, name)
        for name in ("added", "reembedded", "refreshed", "unchanged", "deleted")
        if getattr(summary, name)
    }


def test_a_rerun_embeds_only_what_changed_and_deletes_what_left(server, store, tmp_path):
    for i in range(6):
        server.put(f"/{i}.jpg", jpeg((40 * i, 100, 200), (60, 30) if i % 2 else (30, 60)))
    feed = [record(server, i, category="dress" if i < 3 else "skirt") for i in range(6)]
    models = StandIn()
    first = index(feed, store, tmp_path, models)
    assert counts(first) == {"added": 6} and sum(models.embedded) == 6 and first.whole == 3 and first.complete
    assert store.count("s") == 6
    stored = store.vectors_of("s", "o1")
    assert stored.offer.category_id == 2 and stored.offer.category_ids and stored.offer.price == 100.0

    again = StandIn()
    second = index(feed, store, tmp_path, again)
    assert counts(second) == {"unchanged": 6} and again.loads == 0  # no model loaded, no picture embedded
    assert server.not_modified == 6  # every picture revalidated, none downloaded

    server.put("/0.jpg", jpeg((0, 0, 0)))  # a new picture
    changed = [record(server, 0), record(server, 1, price=90.0), *feed[2:5], record(server, 6)]
    server.put("/6.jpg", jpeg((9, 9, 9)))
    third_models = StandIn()
    third = index(changed, store, tmp_path, third_models)
    assert counts(third) == {"added": 1, "reembedded": 1, "refreshed": 1, "unchanged": 3, "deleted": 1}
    assert sum(third_models.embedded) == 2  # o0 and o6; o1's new price kept its vectors
    refreshed = store.vectors_of("s", "o1")
    assert refreshed.offer.price == 90.0
    np.testing.assert_allclose(refreshed.vectors["shape"], stored.vectors["shape"], atol=1e-6)
    assert store.vectors_of("s", "o5") is None and store.count("s") == 6
    hashes = store.content_hashes("s")
    assert hashes["o1"] == content_hash(refreshed.offer, _digest(server, "/1.jpg"), "models-1")

    other_models = StandIn()
    fourth = index(changed, store, tmp_path, other_models, fingerprint="models-2")
    assert counts(fourth) == {"reembedded": 6}  # other models: every vector is made again


def _digest(server: ImageServer, path: str) -> str:
    from indexer.images import sha256

    return sha256(server.images[path])


def test_problems_repeats_failures_and_unmapped_offers_are_counted(server, store, tmp_path):
    server.put("/1.jpg", jpeg((1, 2, 3)))
    server.put("/2.jpg", b"\xff\xd8\xff not a jpeg")
    server.put("/4.jpg", jpeg((4, 5, 6)))
    feed = [
        FeedProblem("feed.yml:3 (id x)", "missing title"),
        record(server, 1),
        record(server, 1, price=5.0),  # the same id again: the first one counts
        record(server, 2),  # damaged
        record(server, 3),  # 404
        FeedRecord("o9", "private", (f"http://10.0.0.9:{server.port}/1.jpg",), category_path="dress"),
        record(server, 4, category="Мебель / Стулья"),  # no such category
    ]
    summary = index(feed, store, tmp_path, StandIn())
    decode = [reason for reason in summary.failed if reason.startswith("decode: ")]  # damaged or unsupported,
    assert len(decode) == 1  # as Pillow's plugins tell
    assert dict(summary.failed) == {
        "feed: missing title": 1,
        "feed: repeated offer id": 1,
        decode[0]: 1,
        "fetch: HTTP 404": 1,
        "fetch: refused": 1,
    }
    assert summary.examples["fetch: refused"][0].startswith("o9: ")
    assert (summary.added, summary.unmapped_skipped, summary.records) == (1, 1, 7)
    assert set(store.content_hashes("s")) == {"o1"} and store.vectors_of("s", "o1").offer.price == 100.0

    kept = index(feed, store, tmp_path, StandIn(), keep_unmapped=True)
    assert (kept.added, kept.unmapped_kept) == (1, 1) and store.vectors_of("s", "o4").offer.category_id is None

    del server.images["/1.jpg"]  # o1's picture is gone this time: it fails, and its indexed version stays
    third = index(feed, store, tmp_path, StandIn(), keep_unmapped=True)
    assert third.failed["fetch: HTTP 404"] == 2 and third.deleted == 0 and store.vectors_of("s", "o1") is not None


def test_a_feed_that_lost_most_offers_deletes_none_unless_allowed(server, store, tmp_path):
    for i in range(6):
        server.put(f"/{i}.jpg", jpeg((i, i, i)))
    index([record(server, i) for i in range(6)], store, tmp_path, StandIn())
    held = index([record(server, i) for i in range(2)], store, tmp_path, StandIn())
    assert (held.deleted, held.deletions_held, store.count("s")) == (0, 4, 6)
    assert "NOT deleted: 4 offers" in str(held)
    allowed = index([record(server, i) for i in range(2)], store, tmp_path, StandIn(), max_delete_share=1.0)
    assert (allowed.deleted, store.count("s")) == (4, 2)


def test_a_feed_error_stops_the_run_after_writing_what_was_read_and_deletes_nothing(server, store, tmp_path):
    for i in range(6):
        server.put(f"/{i}.jpg", jpeg((i, 50, 50)))
    index([record(server, i) for i in (4, 5)], store, tmp_path, StandIn())

    def broken_feed():
        yield from (record(server, i) for i in range(3))
        raise FeedError("feed.yml:40: not well-formed (invalid token)")

    with pytest.raises(FeedError, match="not well-formed"):
        index(broken_feed(), store, tmp_path, StandIn())
    assert set(store.content_hashes("s")) == {"o0", "o1", "o2", "o4", "o5"}


def test_a_model_failure_stops_the_run_with_its_error(server, store, tmp_path):
    for i in range(40):
        server.put(f"/{i}.jpg", jpeg((i, i, 0)))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the model broke"):
        index([record(server, i) for i in range(40)], store, tmp_path, StandIn(fail=True), queued_batches=1)
    assert time.monotonic() - started < 20 and store.count("s") == 0


def test_pictures_are_fetched_while_the_models_work(store, tmp_path):
    with ImageServer(latency_s=0.05) as server:
        for i in range(40):
            server.put(f"/{i}.jpg", jpeg((i, 0, i)))
        requests_at_first_call: list[int] = []
        models = StandIn(delay_s=0.05, on_call=lambda: requests_at_first_call.append(server.requests.total()))
        summary = index([record(server, i) for i in range(40)], store, tmp_path, models)
    assert summary.added == 40 and sum(models.embedded) == 40
    assert requests_at_first_call[0] < 40  # the first batch was embedded while the rest were still fetched
    assert 0 < summary.model_busy_share <= 1
