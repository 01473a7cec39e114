"""Index one shop's catalogue: feed records -> images -> main-item crops -> vectors -> the store.

Stages, overlapped so the models never wait for the network:

    feed records --(event loop: fetch, `indexer.images`)--> bytes --(decode threads)--> pictures
        --(bounded queue)--> model workers: detect the main item, crop, embed, a batch at a time
        --(queue)--> writer: batched upserts

The event loop reads the feed and keeps up to `in_flight` offers fetching and decoding at once
(fetches themselves are bounded overall and per host by the `ImageLoader`). Decoded pictures wait
in a queue of `queued_batches` batches for the model workers (threads: ONNX Runtime and the
remote client release the GIL), so the next batches are fetched while one is embedded; a full
queue holds the fetching back, so memory stays bounded whatever the feed's size. One writer
thread upserts what the workers made, `upsert_batch` offers at a time.

The service searches with crops of the items it detects in a shopper's photo; the catalogue side
is framed the same way (the photo's main item, `lookalike.detection.main_item`, with the card's
margin; the whole photo when nothing is detected), so an item photographed as the shop did comes
back as itself. Only an offer's main picture (its first) is indexed: one point per offer.

Incremental: every stored offer carries a `content_hash` (in the store's payload, `VectorStore.
upsert(content_hashes=...)`): the sha256 of its image bytes with the models that embedded them
(`Models.fingerprint`), then the sha256 of its payload fields. A run reads the shop's hashes
first (one scroll) and, per offer of the feed: same hash -> unchanged, nothing written; same
image, other fields (a new price or category) -> the payload is rewritten with the stored vectors;
otherwise the picture is decoded and embedded again. Image bytes come from `ImageLoader`'s cache
after a 304, so an unchanged feed costs one conditional request per offer and no model call.

Kill-safety: the store is the only record of what is indexed, and each upsert writes a point with
its vectors, payload and hash together (Qdrant's WAL); point ids are derived from (shop, offer_id).
So a run killed at any moment leaves every offer either as it was or as this run made it, never
twice, and the next run redoes exactly what is missing or stale. Offers that left the feed are
deleted only after the whole feed was read without a fatal error, from the ids the store held
minus those the feed still lists; a killed run deletes nothing or part of them, and its rerun the
rest. What counts as listed: every offer the run indexes or keeps, including those whose image
failed this time (their previous version stays). Offers skipped as unmapped, as malformed records
or as repeated ids are not listed, so a stored version of them is deleted. If more than
`max_delete_share` of the shop's stored offers would go, nothing is deleted and the summary says
so (a truncated feed should not empty a shop); run again with a higher share to confirm.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from indexer.feeds import FeedProblem, FeedRecord
from indexer.images import ImageBytes, ImageFailure, ImageLoader
from lookalike.catalog import Offer
from lookalike.detection import main_item_box, postprocess
from lookalike.images import ImageError, decode_image
from lookalike.modelcard import DetectorCard
from lookalike.preprocess import EvalPreset
from lookalike.store import VectorStore

log = logging.getLogger(__name__)
Embed = Callable[[np.ndarray], dict[str, np.ndarray]]
Box = tuple[int, int, int, int]
Locate = Callable[[list[Image.Image]], list[Box | None]]
# Bump when what a hash covers changes, so every offer is embedded again once.
HASH_VERSION = 1
EXAMPLES_PER_REASON = 5
_STOP = object()


class MainItems:
    """Catalogue photos -> the crop box of each one's product (its main item, with the card's margin), or None.

    `detect` is the detector's engine (`lookalike.engines.OnnxDetector`, or `indexer.remote.RemoteDetector`):
    one call per batch of photos.
    """

    def __init__(self, detect: Embed, card: DetectorCard) -> None:
        self.detect = detect
        self.card = card

    def __call__(self, images: list[Image.Image]) -> list[Box | None]:
        # One photo per detector call: ONNX Runtime's results move in the last bits with the batch's
        # size, and this pipeline's batches depend on timing, so batched detection framed a product a
        # pixel differently from run to run (and from the service, which detects one photo at a time).
        # On the CPU batching the detector buys nothing (92 photos/s at batch 1, 99 at 8).
        return [self._main_item(image) for image in images]

    def _main_item(self, image: Image.Image) -> Box | None:
        pixels, letterboxes = self.card.preset.batch([image])
        outputs = self.detect(pixels)
        detections = postprocess(outputs["boxes"][0], outputs["scores"][0], letterboxes[0], self.card.thresholds)
        return main_item_box(detections, image.width, image.height, self.card.crop_margin)


@dataclass(frozen=True)
class Engines:
    """What turns pictures into vectors: the detector's boxes (`locate`; None: whole photos), the
    embedder's preprocessing and the embedder."""

    embed: Embed
    preset: EvalPreset
    locate: Locate | None


class Models:
    """The engines, loaded by `load` when the first picture needs them (a run with nothing to embed
    loads no model). `fingerprint` names the models and options that make the vectors (e.g. both
    model tags); it is part of every content hash, so changing it re-embeds every offer."""

    def __init__(self, fingerprint: str, load: Callable[[], Engines]) -> None:
        self.fingerprint = fingerprint
        self._load = load
        self._engines: Engines | None = None
        self._lock = threading.Lock()
        self.load_s = 0.0

    def engines(self) -> Engines:
        with self._lock:
            if self._engines is None:
                started = time.perf_counter()
                self._engines = self._load()
                self.load_s = time.perf_counter() - started
            return self._engines


@dataclass(frozen=True)
class Options:
    batch_size: int = 32  # pictures per detector and embedder call
    model_workers: int = 1  # threads calling the models (1 for local ONNX Runtime, which uses every core)
    decode_workers: int = 2  # threads decoding images
    queued_batches: int = 4  # decoded batches waiting for the model workers
    in_flight: int = 128  # offers fetching or decoding at once
    upsert_batch: int = 256  # offers per store upsert, at most
    max_delete_share: float = 0.5  # of the shop's stored offers a run may delete

    def __post_init__(self) -> None:
        if min(self.batch_size, self.model_workers, self.decode_workers, self.queued_batches, self.in_flight) < 1:
            raise ValueError("batch sizes, worker counts and queue lengths must be at least 1")
        if not 0.0 <= self.max_delete_share <= 1.0:
            raise ValueError(f"max_delete_share must be between 0 and 1, got {self.max_delete_share}")


@dataclass
class Summary:
    """What a run did; `__str__` is the report the CLI logs."""

    shop: str
    records: int = 0  # offers and problems the feed yielded
    added: int = 0
    reembedded: int = 0  # stored before, image (or models) changed
    refreshed: int = 0  # stored before, fields changed only: vectors kept
    unchanged: int = 0
    deleted: int = 0
    deletions_held: int = 0  # offers that left the feed but were kept (over max_delete_share)
    whole: int = 0  # embedded as the whole photo: detection off, or nothing detected
    unmapped_skipped: int = 0
    unmapped_kept: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # reason -> offers
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few locations, with details
    complete: bool = False  # the feed was read to its end
    retries: int = 0  # fetches tried again
    embedded: int = 0  # pictures through the models
    wall_s: float = 0.0  # from reading the store's hashes to the last upsert, without loading the models
    model_busy_s: float = 0.0  # summed over the model workers: detect, crop, preprocess, embed
    detect_s: float = 0.0  # of which in the detector's calls
    embed_s: float = 0.0  # of which in the embedder's calls
    model_workers: int = 1

    @property
    def updated(self) -> int:
        return self.reembedded + self.refreshed

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.wall_s if self.wall_s else 0.0

    @property
    def model_busy_share(self) -> float:
        """The share of the run's wall time the model workers spent detecting, cropping and embedding."""
        return self._share(self.model_busy_s)

    def _share(self, seconds: float) -> float:
        return seconds / (self.wall_s * self.model_workers) if self.wall_s else 0.0

    def fail(self, reason: str, where: str) -> None:
        self.failed[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(where)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shop": self.shop,
            "records": self.records,
            "added": self.added,
            "updated": self.updated,
            "reembedded": self.reembedded,
            "refreshed": self.refreshed,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "deletions_held": self.deletions_held,
            "whole": self.whole,
            "unmapped_skipped": self.unmapped_skipped,
            "unmapped_kept": self.unmapped_kept,
            "failed": dict(self.failed.most_common()),
            "examples": self.examples,
            "complete": self.complete,
            "retries": self.retries,
            "embedded": self.embedded,
            "wall_s": round(self.wall_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "model_busy_share": round(self.model_busy_share, 3),
            "detect_share": round(self._share(self.detect_s), 3),
            "embed_share": round(self._share(self.embed_s), 3),
        }

    def __str__(self) -> str:
        lines = [
            f"shop {self.shop!r}: {self.records} feed records{'' if self.complete else ' (feed not read to its end)'}",
            (
                f"  added {self.added}, updated {self.updated} ({self.reembedded} re-embedded, {self.refreshed} "
                f"fields only), unchanged {self.unchanged}, deleted {self.deleted}, failed {self.failed.total()}"
            ),
            (
                f"  {self.embedded} pictures embedded in {self.wall_s:.1f} s ({self.images_per_s:.1f}/s), models "
                f"busy {self.model_busy_share:.0%}; {self.whole} as the whole photo; {self.retries} fetches retried"
            ),
        ]
        if self.unmapped_skipped or self.unmapped_kept:
            lines.append(
                f"  unmapped categories: {self.unmapped_skipped} offers skipped, {self.unmapped_kept} kept without one"
            )
        if self.deletions_held:
            lines.append(
                f"  NOT deleted: {self.deletions_held} offers that left the feed (more than the allowed share of the "
                "shop); check the feed, then run again with a higher --max-delete-share"
            )
        for reason, count in self.failed.most_common():
            lines.append(f"  failed {count}: {reason}, e.g. {'; '.join(self.examples.get(reason, [])[:2])}")
        return "\n".join(lines)


def content_hash(offer: Offer, image_digest: str, fingerprint: str) -> str:
    """`<image part>:<fields part>`, 32 hex digits each: the image's sha256 with the models that embed
    it, and the payload's fields (sorted JSON)."""
    image = hashlib.sha256(f"{HASH_VERSION}\n{fingerprint}\n{image_digest}".encode()).hexdigest()[:32]
    fields = json.dumps(offer.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return f"{image}:{hashlib.sha256(fields.encode()).hexdigest()[:32]}"


def image_part(content_hash: str | None) -> str | None:
    return content_hash.split(":", 1)[0] if content_hash else None


@dataclass
class _Job:
    """One offer on its way to the store."""

    offer: Offer
    content_hash: str
    outcome: Literal["added", "reembedded", "refreshed"]
    picture: Image.Image | None = None  # None for "refreshed": the stored vectors are kept


@dataclass
class _Embedded:
    jobs: list[_Job]
    vectors: dict[str, np.ndarray]  # vector name -> (len(jobs), dim), every vector the embedder makes
    whole: int


MakeOffer = Callable[[FeedRecord], "Offer | None"]


def index_feed(
    records: Iterable[FeedRecord | FeedProblem],
    *,
    shop: str,
    make_offer: MakeOffer,
    loader: ImageLoader,
    models: Models,
    store: VectorStore,
    options: Options = Options(),
    total: int | None = None,
    count_total: Callable[[], int] | None = None,
    progress_file=None,
    max_bytes: int,
    max_pixels: int,
) -> Summary:
    """Bring `shop`'s offers in the store in line with `records` (see the module docstring); returns the summary.

    `make_offer`: a record -> its Offer (shop, category...), or None to skip it (an unmapped category).
    `total`: the progress bar's expected number of records; `count_total`, if given, counts them in
    a background thread meanwhile (the bar's ETA appears when it is done). `max_bytes` and
    `max_pixels` bound each image. A FeedError raised by `records` stops the run (nothing is
    deleted) and is raised again after what was done is written.
    """
    run = _Run(shop, make_offer, loader, models, store, options, max_bytes=max_bytes, max_pixels=max_pixels)
    return asyncio.run(run.run(records, total=total, count_total=count_total, progress_file=progress_file))


class _Run:
    def __init__(
        self,
        shop: str,
        make_offer: MakeOffer,
        loader: ImageLoader,
        models: Models,
        store: VectorStore,
        options: Options,
        *,
        max_bytes: int,
        max_pixels: int,
    ) -> None:
        self.shop = shop
        self.make_offer = make_offer
        self.loader = loader
        self.models = models
        self.store = store
        self.options = options
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.summary = Summary(shop, model_workers=options.model_workers)
        self.lock = threading.Lock()  # guards the summary and the progress bar across threads
        self.models_queue: queue.Queue = queue.Queue()  # bounded by `model_slots`, not by its own size
        # Model workers wait here when the writer falls behind; refreshed offers come a batch at a time.
        self.writer_queue: queue.Queue = queue.Queue(maxsize=options.model_workers * 2 + 2)
        self.refreshed: list[_Job] = []
        self.error: BaseException | None = None
        self.progress: tqdm | None = None

    async def run(self, records, *, total, count_total, progress_file) -> Summary:
        started, loading_before = time.perf_counter(), self.models.load_s
        self.loop = asyncio.get_running_loop()
        self.failed = asyncio.Event()
        self.model_slots = asyncio.Semaphore(self.options.queued_batches * self.options.batch_size)
        self.in_flight = asyncio.Semaphore(self.options.in_flight)
        self.decoder = ThreadPoolExecutor(self.options.decode_workers, thread_name_prefix="decode")
        stored = await asyncio.to_thread(self.store.content_hashes, self.shop)
        self.stored = stored
        log.info("shop %r: %d offers in the store before this run", self.shop, len(stored))
        self.progress = tqdm(
            total=total or (len(stored) or None),
            unit="offer",
            desc=self.shop,
            file=progress_file,
            mininterval=0.5 if progress_file is None else 10.0,
            dynamic_ncols=True,
        )
        if count_total is not None:
            threading.Thread(target=self._count, args=(count_total,), daemon=True, name="count").start()
        workers = [
            threading.Thread(target=self._model_worker, daemon=True, name=f"model-{i}")
            for i in range(self.options.model_workers)
        ]
        writer = threading.Thread(target=self._writer, daemon=True, name="writer")
        for thread in (*workers, writer):
            thread.start()
        listed: set[str] = set()  # offer ids the feed still lists (see the module docstring)
        feed_error: Exception | None = None
        try:
            feed_error = await self._produce(records, listed)
            if self.refreshed:
                await self._put_refreshed()
        except _Stopped:
            pass  # a thread failed: its error is raised below
        finally:
            for _ in workers:
                self.models_queue.put(_STOP)
            for thread in workers:
                await asyncio.to_thread(thread.join)
            self.writer_queue.put(_STOP)
            await asyncio.to_thread(writer.join)
            self.decoder.shutdown()
            await self.loader.aclose()
            self.summary.retries = self.loader.retried
            self.progress.close()
        if self.error is not None:
            raise self.error
        if feed_error is not None:
            self.summary.wall_s = time.perf_counter() - started
            raise feed_error
        self.summary.complete = True
        await asyncio.to_thread(self._delete_gone, listed)
        self.summary.wall_s = time.perf_counter() - started - (self.models.load_s - loading_before)
        log.info("building the search index (optimize)")
        await asyncio.to_thread(self.store.optimize)
        return self.summary

    # --- the event loop: feed, fetch, decode ---------------------------------------------------

    async def _produce(self, records, listed: set[str]) -> Exception | None:
        """Reads `records` and starts a task per offer; returns the error that stopped the feed, if any."""
        tasks: set[asyncio.Task] = set()
        seen: set[str] = set()
        feed = iter(records)
        feed_error = None
        try:
            for n in itertools.count(1):
                try:
                    record = next(feed)
                except StopIteration:
                    break
                except Exception as error:  # noqa: BLE001 (run() raises it once what was started is written)
                    feed_error = error
                    break
                self.summary.records += 1
                if isinstance(record, FeedProblem):
                    self._finish(
                        fail=(f"feed: {record.reason.split(':', 1)[0]}", f"{record.location}: {record.reason}")
                    )
                    continue
                if record.offer_id in seen:
                    self._finish(fail=("feed: repeated offer id", f"{record.offer_id} (the first one is indexed)"))
                    continue
                seen.add(record.offer_id)
                offer = self.make_offer(record)
                if offer is None:
                    self.summary.unmapped_skipped += 1
                    self._finish()
                    continue
                if offer.category_id is None:
                    self.summary.unmapped_kept += 1
                listed.add(offer.offer_id)
                await self._acquire(self.in_flight)
                task = asyncio.create_task(self._handle(offer, record.image_urls[0]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if n % 64 == 0:
                    await asyncio.sleep(0)  # let fetches progress while a long run of records is read
                if self.failed.is_set():
                    raise _Stopped()
            if tasks:
                await asyncio.gather(*tasks)
            return feed_error
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _acquire(self, semaphore: asyncio.Semaphore) -> None:
        """Wait for `semaphore`, unless a thread failed meanwhile (then raise its error)."""
        if semaphore.locked():
            waiter = asyncio.ensure_future(semaphore.acquire())
            failure = asyncio.ensure_future(self.failed.wait())
            await asyncio.wait({waiter, failure}, return_when=asyncio.FIRST_COMPLETED)
            failure.cancel()
            if not waiter.done() or waiter.cancelled():
                waiter.cancel()
                raise _Stopped()
        else:
            await semaphore.acquire()
        if self.failed.is_set():
            semaphore.release()
            raise _Stopped()

    async def _handle(self, offer: Offer, location: str) -> None:
        try:
            try:
                image = await self.loader.load(location)
            except ImageFailure as failure:
                self._finish(fail=(failure.reason, f"{offer.offer_id}: {failure}"))
                return
            new_hash = content_hash(offer, image.digest, self.models.fingerprint)
            old_hash = self.stored.get(offer.offer_id)
            if new_hash == old_hash:
                self._finish(outcome="unchanged")
                return
            if old_hash is not None and image_part(old_hash) == image_part(new_hash):
                self.refreshed.append(_Job(offer, new_hash, "refreshed"))
                if len(self.refreshed) >= self.options.upsert_batch:
                    await self._put_refreshed()
                return
            picture = await self._decode(offer, image, location)
            if picture is None:
                return
            await self._acquire(self.model_slots)
            outcome = "added" if offer.offer_id not in self.stored else "reembedded"
            self.models_queue.put(_Job(offer, new_hash, outcome, picture))
        except _Stopped:
            pass
        finally:
            self.in_flight.release()

    async def _put_refreshed(self) -> None:
        batch, self.refreshed = self.refreshed, []
        try:
            self.writer_queue.put_nowait(batch)
        except queue.Full:
            await asyncio.to_thread(self.writer_queue.put, batch)

    async def _decode(self, offer: Offer, image: ImageBytes, location: str) -> Image.Image | None:
        try:
            data = await self.loader.content(image, location)
            return await self.loop.run_in_executor(
                self.decoder, lambda: decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
            )
        except ImageFailure as failure:
            self._finish(fail=(failure.reason, f"{offer.offer_id}: {failure}"))
        except ImageError as error:
            self._finish(fail=(f"decode: {error.problem}", f"{offer.offer_id}: {error}"))
        return None

    # --- threads: models and writer ------------------------------------------------------------

    def _next_batch(self) -> list[_Job] | None:
        """Up to `batch_size` jobs: blocks for the first, then takes what is queued (None: stop)."""
        first = self.models_queue.get()
        if first is _STOP:
            return None
        jobs = [first]
        while len(jobs) < self.options.batch_size:
            try:
                job = self.models_queue.get(timeout=0.02 if len(jobs) < self.options.batch_size // 2 else 0)
            except queue.Empty:
                break
            if job is _STOP:
                self.models_queue.put(_STOP)  # for the next round: stop once this batch is done
                break
            jobs.append(job)
        self.loop.call_soon_threadsafe(self._release_model_slots, len(jobs))
        return jobs

    def _release_model_slots(self, n: int) -> None:
        for _ in range(n):
            self.model_slots.release()

    def _model_worker(self) -> None:
        """Embeds batches until told to stop; after a failure (its own or another thread's) it only drains."""
        while (jobs := self._next_batch()) is not None:
            if self.error is not None:
                continue
            try:
                engines = self.models.engines()
                started = time.perf_counter()
                pictures = [job.picture for job in jobs]
                boxes = engines.locate(pictures) if engines.locate is not None else [None] * len(jobs)
                located = time.perf_counter()
                crops = engines.preset.batch(
                    [picture if box is None else picture.crop(box) for picture, box in zip(pictures, boxes)]
                )
                cropped = time.perf_counter()
                vectors = engines.embed(crops)
                done = time.perf_counter()
                with self.lock:
                    self.summary.model_busy_s += done - started
                    self.summary.detect_s += located - started if engines.locate is not None else 0.0
                    self.summary.embed_s += done - cropped
                for job in jobs:
                    job.picture = None
                whole = sum(box is None for box in boxes)
            except BaseException as error:  # noqa: BLE001 (any failure stops the run; run() raises it)
                self._fail(error)
                continue
            self.writer_queue.put(_Embedded(jobs, vectors, whole))

    def _writer(self) -> None:
        """Upserts what arrives, `upsert_batch` offers at most at a time, until told to stop; after a
        failure it only drains, so no model worker stays blocked on a full queue."""
        stop = False
        while not stop:
            items = [self.writer_queue.get()]
            while items[-1] is not _STOP and sum(map(_size, items)) < self.options.upsert_batch:
                try:
                    items.append(self.writer_queue.get_nowait())
                except queue.Empty:
                    break
            stop = items[-1] is _STOP
            items = [item for item in items if item is not _STOP]
            if items and self.error is None:
                try:
                    self._write(items)
                except BaseException as error:  # noqa: BLE001 (any failure stops the run; run() raises it)
                    self._fail(error)

    def _write(self, items: list) -> None:
        jobs: list[_Job] = []
        rows: dict[str, list[np.ndarray]] = {name: [] for name in self.store.dims}
        whole = 0
        for item in items:
            if isinstance(item, _Embedded):
                jobs += item.jobs
                for name, matrices in rows.items():
                    matrices.append(item.vectors[name])
                whole += item.whole
                continue
            for job in item:  # refreshed offers: their stored vectors, the new payload
                stored = self.store.vectors_of(self.shop, job.offer.offer_id)
                if stored is None:
                    self._finish(fail=("store: stored vectors gone", job.offer.offer_id))
                    continue
                jobs.append(job)
                for name, matrices in rows.items():
                    matrices.append(stored.vectors[name][None])
        if not jobs:
            return
        vectors = {name: np.concatenate(matrices) for name, matrices in rows.items()}
        self.store.upsert(
            [job.offer for job in jobs],
            vectors["shape"],
            vectors["color"],
            detail=vectors.get("detail"),
            content_hashes=[job.content_hash for job in jobs],
        )
        log.debug("upserted %d offers", len(jobs))
        outcomes = Counter(job.outcome for job in jobs)
        with self.lock:
            self.summary.whole += whole
            self.summary.embedded += sum(outcomes[o] for o in ("added", "reembedded"))
            for outcome, count in outcomes.items():
                setattr(self.summary, outcome, getattr(self.summary, outcome) + count)
            self.progress.update(len(jobs))

    def _fail(self, error: BaseException) -> None:
        """A thread failed: the run stops (tasks waiting for a model slot give up) and `run` raises `error`."""
        log.debug("stopping: %r", error)
        with self.lock:
            if self.error is None:
                self.error = error
        self.loop.call_soon_threadsafe(self.failed.set)

    # --- bookkeeping -----------------------------------------------------------------------------

    def _finish(self, *, outcome: str | None = None, fail: tuple[str, str] | None = None) -> None:
        """An offer (or record) is done without reaching the writer."""
        with self.lock:
            if outcome is not None:
                setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
            if fail is not None:
                self.summary.fail(*fail)
                log.debug("failed %s: %s", *fail)
            self.progress.update(1)

    def _count(self, count_total: Callable[[], int]) -> None:
        try:
            total = count_total()
        except Exception as error:  # noqa: BLE001 (the run itself reports a feed that cannot be read)
            log.debug("counting the feed failed: %s", error)
            return
        with self.lock:
            self.progress.total = total
            self.progress.refresh()

    def _delete_gone(self, listed: set[str]) -> None:
        gone = sorted(offer_id for offer_id in self.stored if offer_id not in listed)
        if not gone:
            return
        share = len(gone) / len(self.stored)
        if share > self.options.max_delete_share:
            self.summary.deletions_held = len(gone)
            log.error(
                "shop %r: %d of its %d stored offers left the feed (%.0f%%, over --max-delete-share %.0f%%): "
                "none deleted",
                self.shop,
                len(gone),
                len(self.stored),
                100 * share,
                100 * self.options.max_delete_share,
            )
            return
        log.info("shop %r: deleting %d offers that left the feed, e.g. %s", self.shop, len(gone), gone[:3])
        self.store.delete_offers(self.shop, gone)
        self.summary.deleted = len(gone)


class _Stopped(Exception):
    """A thread failed: the event loop's tasks stop (the thread's error is raised by `run`)."""


def _size(item) -> int:
    return len(item.jobs) if isinstance(item, _Embedded) else len(item)


def load_local_image(path: Path, *, max_bytes: int, max_pixels: int) -> Image.Image:
    return decode_image(Path(path).read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels)
