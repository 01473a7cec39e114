"""indexer.pipeline: each catalogue photo's main item is cropped before it is embedded."""

from __future__ import annotations

import numpy as np
from PIL import Image

from indexer.pipeline import MainItems, index_offers
from lookalike.catalog import Offer
from lookalike.modelcard import DetectorCard
from lookalike.preprocess import EvalPreset

CARD = DetectorCard(
    outputs=["boxes", "scores"],
    preprocess={"size": 100},
    classes=[{"name": "dress", "rubricator_id": 2}, {"name": "bag"}],
    crop_margin=0.0,
)


def fake_detector(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Two candidates per image, in input pixels: a big dress, and a small surer bag; none on a black image."""
    boxes = np.tile(np.array([[10, 10, 90, 90], [0, 0, 20, 20]], np.float32), (len(pixels), 1, 1))
    sure = (pixels.reshape(len(pixels), -1).max(axis=1) > 0).astype(np.float32)[:, None]
    scores = np.stack([np.hstack([sure * 0.6, sure * 0]), np.hstack([sure * 0, sure * 0.9])], axis=1)
    return {"boxes": boxes, "scores": scores}


def test_main_items_are_the_largest_boxes_in_the_photos_pixels():
    photos = [Image.new("RGB", (200, 100), "white"), Image.new("RGB", (50, 50), "black")]
    boxes = MainItems(fake_detector, CARD)(photos)
    # 200x100 -> scale 0.5, top padding 25: input (10, 10, 90, 90) is photo (20, 0, 180, 130) clipped to 100 high
    assert boxes == [(20, 0, 180, 100), None]


class Store:
    def __init__(self):
        self.rows = []

    def upsert(self, offers, shape, color):
        self.rows.extend(zip(offers, shape))

    def optimize(self):
        pass


def test_index_offers_embeds_the_crops_and_counts_whole_photos():
    offers = [Offer(shop="s", offer_id=str(i), image_url=f"/{i}.jpg") for i in range(3)]
    photos = {"0": Image.new("RGB", (200, 100), "white"), "1": Image.new("RGB", (40, 40), "black")}
    seen = []

    def embed(pixels):
        seen.append(pixels.shape)
        return {"shape": pixels.mean(axis=(1, 2)), "color": pixels.mean(axis=(1, 2))}

    def load_image(location):
        if location not in photos:
            raise OSError("missing")
        return photos[location]

    store = Store()
    stats = index_offers(
        [(offer, offer.offer_id) for offer in offers],
        embed=embed,
        preset=EvalPreset(crop_size=32, resize_size=32),
        store=store,
        load_image=load_image,
        locate=MainItems(fake_detector, CARD),
        batch_size=8,
    )
    assert seen == [(2, 32, 32, 3)]  # one embedder call for the batch
    assert (stats.indexed, stats.whole, list(stats.failed)) == (2, 1, ["s/2"])
    assert str(stats) == "indexed 2 offers, 1 failed; 1 indexed as the whole photo"
