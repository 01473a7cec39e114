"""indexer.pipeline: each catalogue photo's main item is cropped before it is embedded."""

from __future__ import annotations

import numpy as np
from PIL import Image

from indexer.pipeline import MainItems
from lookalike.modelcard import DetectorCard

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
