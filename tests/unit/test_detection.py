"""lookalike.detection: letterboxing, NMS, post-processing, crop boxes and the main item."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.detection import (
    PAD_VALUE,
    Detection,
    Letterbox,
    LetterboxPreset,
    Thresholds,
    box_iou,
    expand_box,
    main_item,
    nms,
    postprocess,
)


def test_box_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou(boxes, boxes)
    assert np.allclose(np.diag(iou), 1)
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 2] == 0
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0  # empty boxes overlap nothing


def test_nms_keeps_the_best_of_each_overlapping_group():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 1, 10, 11]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 3, 2]  # nothing overlaps that much
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def raw(rows: list[tuple[tuple[float, float, float, float], int, float]], classes: int = 3):
    """(box, label, score) rows -> one image's raw detector outputs."""
    boxes = np.array([box for box, _, _ in rows], np.float32).reshape(-1, 4)
    scores = np.zeros((len(rows), classes), np.float32)
    for i, (_, label, score) in enumerate(rows):
        scores[i, label] = score
        scores[i, (label + 1) % classes] = score / 4  # another class, less sure
    return boxes, scores


def test_postprocess_thresholds_and_suppresses_per_class():
    boxes, scores = raw(
        [
            ((10, 10, 110, 210), 0, 0.9),  # a dress
            ((12, 12, 112, 208), 0, 0.8),  # the same dress again: suppressed
            ((20, 20, 100, 120), 1, 0.7),  # a bag over the dress: another class, kept
            ((200, 200, 260, 260), 2, 0.2),  # below the score threshold
            ((200, 200, 204, 290), 2, 0.95),  # thinner than min_side
        ]
    )
    detections = postprocess(boxes, scores, thresholds=Thresholds(score=0.3, iou=0.5, min_side=8))
    assert [(d.label, round(d.score, 2)) for d in detections] == [(0, 0.9), (1, 0.7)]
    assert detections[0].box == (10, 10, 110, 210)
    assert postprocess(*raw([])) == []


def test_postprocess_keeps_at_most_max_detections_best_first():
    rows = [((i * 30.0, 0, i * 30.0 + 20, 20), 0, 0.3 + i / 100) for i in range(10)]
    detections = postprocess(*raw(rows), thresholds=Thresholds(max_detections=4))
    assert [round(d.score, 2) for d in detections] == [0.39, 0.38, 0.37, 0.36]


def test_postprocess_maps_boxes_back_to_the_photo_and_drops_those_in_the_padding():
    letterbox = Letterbox(scale=0.5, left=0, top=60, width=640, height=400)  # 640x400 into a 320 square
    boxes, scores = raw([((10, 70, 110, 170), 0, 0.9), ((100, 0, 200, 50), 1, 0.8)])  # the second: padding only
    (detection,) = postprocess(boxes, scores, letterbox)
    assert detection.box == pytest.approx((20, 20, 220, 220))
    assert detection.area == pytest.approx(200 * 200)


def test_letterbox_fits_the_photo_and_round_trips_boxes():
    photo = Image.new("RGB", (400, 200), (10, 200, 30))
    pixels, letterbox = LetterboxPreset(size=320)(photo)
    assert pixels.shape == (320, 320, 3) and pixels.dtype == np.uint8
    assert (letterbox.scale, letterbox.left, letterbox.top) == (0.8, 0, 80)
    assert (pixels[:80] == PAD_VALUE).all() and (pixels[240:] == PAD_VALUE).all()
    assert (pixels[80:240] == (10, 200, 30)).all()
    box = np.array([[50, 20, 300, 180]], np.float32)
    assert np.allclose(letterbox.to_photo(letterbox.to_input(box)), box)
    assert np.allclose(letterbox.to_photo([[-5, 0, 400, 400]]), [[0, 0, 400, 200]])  # clipped to the photo


def test_letterbox_preset_batches_and_checks_its_settings():
    pixels, letterboxes = LetterboxPreset(size=64).batch([Image.new("RGB", (30, 60)), Image.new("RGB", (64, 64))])
    assert pixels.shape == (2, 64, 64, 3) and [lb.left for lb in letterboxes] == [16, 0]
    empty, none = LetterboxPreset(size=64).batch([])
    assert empty.shape == (0, 64, 64, 3) and none == []
    assert LetterboxPreset.from_dict(LetterboxPreset(size=96).to_dict()) == LetterboxPreset(size=96)
    with pytest.raises(ValueError, match="interpolation"):
        LetterboxPreset(interpolation="lanczos")


def test_expand_box():
    assert expand_box((100, 100, 200, 300), 1000, 1000, 0.1) == (90, 80, 210, 320)
    assert expand_box((100.4, 100.6, 199.5, 299.2), 1000, 1000, 0.0) == (100, 100, 200, 300)
    assert expand_box((0, 0, 50, 50), 60, 55, 0.5) == (0, 0, 60, 55)  # clipped to the photo
    assert expand_box((30, 30, 30, 30), 60, 60, 0.1) == (30, 30, 31, 31)  # at least one pixel
    assert expand_box((60, 60, 60, 60), 60, 60, 0.1) == (59, 59, 60, 60)  # inside the photo, even on its edge


def test_main_item_is_the_largest_confident_box():
    small_sure = Detection(box=(0, 0, 10, 10), label=0, score=0.99)
    large = Detection(box=(0, 0, 100, 100), label=1, score=0.4)
    assert main_item([small_sure, large]) is large
    assert main_item([]) is None


def test_one_garment_scored_as_two_classes_comes_back_once_unless_nms_is_per_class():
    boxes, scores = raw([((10, 10, 110, 210), 0, 0.6), ((14, 12, 110, 206), 1, 0.5)])  # t-shirt or longsleeve
    assert [d.label for d in postprocess(boxes, scores)] == [0]
    per_class = postprocess(boxes, scores, thresholds=Thresholds(class_agnostic=False))
    assert [d.label for d in per_class] == [0, 1]


def test_per_class_nms_offers_every_class_an_anchor_scores_as_coco_ap_ranks():
    boxes = np.array([[10, 10, 110, 210]], np.float32)
    scores = np.array([[0.6, 0.5, 0.01]], np.float32)  # one anchor: t-shirt 0.6, longsleeve 0.5
    assert [(d.label, d.score) for d in postprocess(boxes, scores)] == [(0, pytest.approx(0.6))]
    per_class = postprocess(boxes, scores, thresholds=Thresholds(score=0.05, class_agnostic=False))
    assert [(d.label, d.score) for d in per_class] == [(0, pytest.approx(0.6)), (1, pytest.approx(0.5))]
