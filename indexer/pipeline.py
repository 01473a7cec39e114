"""Detect each catalogue photo's product, embed its crop in batches and upload it to the vector store.

The service searches with crops of the items it detects in a shopper's photo; the catalogue side
is framed the same way (the photo's main item, `lookalike.detection.main_item`, with the same
margin), so an item photographed as the shop did comes back as itself.
"""

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
from lookalike.detection import main_item_box, postprocess
from lookalike.images import ImageError, decode_image
from lookalike.modelcard import DetectorCard
from lookalike.preprocess import EvalPreset

log = logging.getLogger(__name__)
Embed = Callable[[np.ndarray], dict[str, np.ndarray]]
Box = tuple[int, int, int, int]


@dataclass
class IndexStats:
    indexed: int = 0
    whole: int = 0  # indexed as the whole photo: detection off, or nothing detected
    failed: dict[str, str] = field(default_factory=dict)  # offer key -> reason

    def __str__(self) -> str:
        return f"indexed {self.indexed} offers, {len(self.failed)} failed; {self.whole} indexed as the whole photo"


class MainItems:
    """Catalogue photos -> the crop box of each one's product (its main item, with the card's margin), or None.

    `detect` is the detector's engine (`lookalike.engines.OnnxDetector`): one call per batch of photos.
    """

    def __init__(self, detect: Embed, card: DetectorCard) -> None:
        self.detect = detect
        self.card = card

    def __call__(self, images: list[Image.Image]) -> list[Box | None]:
        pixels, letterboxes = self.card.preset.batch(images)
        outputs = self.detect(pixels)
        boxes: list[Box | None] = []
        for image, letterbox, raw_boxes, scores in zip(images, letterboxes, outputs["boxes"], outputs["scores"]):
            detections = postprocess(raw_boxes, scores, letterbox, self.card.thresholds)
            boxes.append(main_item_box(detections, image.width, image.height, self.card.crop_margin))
        return boxes


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
    locate: Callable[[list[Image.Image]], list[Box | None]] | None = None,
    batch_size: int = 32,
    workers: int = 2,
    total: int | None = None,
) -> IndexStats:
    """Decode (in `workers` threads), locate, embed and upsert `entries` in batches, then build the index.

    `locate` (e.g. `MainItems`) gives each batch of photos the boxes to crop before embedding;
    a photo without one (or every photo, without `locate`) is embedded whole. Images that fail to
    load are reported in the stats and skipped; the rest go on.
    """
    stats = IndexStats()

    def load(entry: tuple[Offer, Path]):
        offer, location = entry
        try:
            return offer, load_image(location)
        except (ImageError, OSError) as error:
            return offer, error

    def crop(image: Image.Image, box: Box | None) -> np.ndarray:
        return preset(image if box is None else image.crop(box))

    with ThreadPoolExecutor(workers) as pool, tqdm(total=total, unit="img", desc="indexing") as progress:
        for batch in _batched(entries, batch_size):
            offers, images = [], []
            for offer, result in pool.map(load, batch):
                if isinstance(result, Exception):
                    stats.failed[f"{offer.shop}/{offer.offer_id}"] = str(result)
                    log.warning("skipped %s/%s: %s", offer.shop, offer.offer_id, result)
                else:
                    offers.append(offer)
                    images.append(result)
            if offers:
                boxes = locate(images) if locate is not None else [None] * len(images)
                vectors = embed(np.stack(list(pool.map(crop, images, boxes))))
                store.upsert(offers, vectors["shape"], vectors["color"])
                stats.indexed += len(offers)
                stats.whole += sum(box is None for box in boxes)
            progress.update(len(batch))
    store.optimize()
    return stats
