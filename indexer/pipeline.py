"""Embed catalogue images in batches and upload them to the vector store."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lookalike.catalog import Offer
from lookalike.images import ImageError, decode_image
from lookalike.preprocess import EvalPreset

log = logging.getLogger(__name__)
Embed = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class IndexStats:
    indexed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # offer key -> reason

    def __str__(self) -> str:
        return f"indexed {self.indexed} offers, {len(self.failed)} failed"


def load_local_image(path: Path, *, max_bytes: int, max_pixels: int) -> Image.Image:
    return decode_image(Path(path).read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels)


def _batched(entries: Iterable, size: int) -> Iterator[list]:
    iterator = iter(entries)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def index_offers(
    entries: Iterable[tuple[Offer, Path]],
    *,
    embed: Embed,
    preset: EvalPreset,
    store,
    load_image: Callable[[Path], Image.Image],
    batch_size: int = 32,
    workers: int = 2,
    total: int | None = None,
) -> IndexStats:
    """Decode (in `workers` threads), embed and upsert `entries` in batches, then build the index.

    Images that fail to load are reported in the stats and skipped; the rest go on.
    """
    stats = IndexStats()

    def prepare(entry: tuple[Offer, Path]):
        offer, location = entry
        try:
            return offer, preset(load_image(location))
        except (ImageError, OSError) as error:
            return offer, error

    with ThreadPoolExecutor(workers) as pool, tqdm(total=total, unit="img", desc="indexing") as progress:
        for batch in _batched(entries, batch_size):
            offers, pixels = [], []
            for offer, result in pool.map(prepare, batch):
                if isinstance(result, Exception):
                    stats.failed[f"{offer.shop}/{offer.offer_id}"] = str(result)
                    log.warning("skipped %s/%s: %s", offer.shop, offer.offer_id, result)
                else:
                    offers.append(offer)
                    pixels.append(result)
            if offers:
                vectors = embed(np.stack(pixels))
                store.upsert(offers, vectors["shape"], vectors["color"])
                stats.indexed += len(offers)
            progress.update(len(batch))
    store.optimize()
    return stats
