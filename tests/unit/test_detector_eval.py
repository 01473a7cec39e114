"""training.detector.evaluate's matching and counting, and training.detector.labelcheck's ranking, on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.detection import Detection
from training.detector.evaluate import rank_of
from training.detector.labelcheck import MISSING_LABEL, NOT_FOUND, OTHER_CLASS, rank_suspects
from training.detector.metrics import GroundTruth, confusion, count_hits, match

DRESS, HAT, SHOES = 0, 1, 2


def truth(*items: tuple[tuple[float, float, float, float], int]) -> GroundTruth:
    return GroundTruth(np.array([box for box, _ in items], np.float32).reshape(-1, 4), np.array([c for _, c in items]))


def found(box, label: int, score: float) -> Detection:
    return Detection(tuple(float(v) for v in box), label, score)


def shifted(box, iou: float):
    """`box` (a 100 x 100 square) moved right so that it overlaps the original by exactly `iou`."""
    # Two 100 x 100 squares offset by d along x: IoU = (100 - d) / (100 + d).
    d = 100 * (1 - iou) / (1 + iou)
    return (box[0] + d, box[1], box[2] + d, box[3])


SQUARE = (0.0, 0.0, 100.0, 100.0)
FAR = (300.0, 300.0, 400.0, 400.0)


def test_match_pairs_best_score_first_and_a_duplicate_is_a_false_positive():
    garments = truth((SQUARE, DRESS))
    detections = [found(shifted(SQUARE, 0.8), DRESS, 0.6), found(SQUARE, DRESS, 0.9)]
    matching = match(garments.boxes, garments.labels, detections)
    assert matching.pairs == [(0, 1)]  # the better-scored one takes the garment
    assert matching.extra == [0] and matching.missed == []


def test_iou_below_the_threshold_is_a_miss_and_at_it_a_hit():
    garments = truth((SQUARE, DRESS))
    below = match(garments.boxes, garments.labels, [found(shifted(SQUARE, 0.49), DRESS, 0.9)])
    assert below.pairs == [] and below.missed == [0] and below.extra == [0]
    at = match(garments.boxes, garments.labels, [found(shifted(SQUARE, 0.5), DRESS, 0.9)])
    assert at.pairs == [(0, 0)]


def test_a_wrong_class_misses_when_matching_by_class_but_pairs_when_not():
    garments = truth((SQUARE, DRESS))
    detections = [found(SQUARE, SHOES, 0.9)]
    assert match(garments.boxes, garments.labels, detections).pairs == []
    assert match(garments.boxes, garments.labels, detections, by_class=False).pairs == [(0, 0)]


def test_counts_give_precision_and_recall():
    truths = [truth((SQUARE, DRESS), (FAR, HAT)), truth((SQUARE, SHOES))]
    predictions = [
        [found(SQUARE, DRESS, 0.9), found(SQUARE, DRESS, 0.8)],  # a hit and its duplicate; the hat missed
        [found(SQUARE, HAT, 0.7)],  # the right place, the wrong class
    ]
    counts = count_hits(truths, predictions, 3)
    assert counts.hits.tolist() == [1, 0, 0]
    assert counts.detections.tolist() == [2, 1, 0]
    assert counts.truths.tolist() == [1, 1, 1]
    assert counts.precision == pytest.approx(1 / 3)
    assert counts.recall == pytest.approx(1 / 3)
    precision, recall = counts.per_class()
    assert precision[0] == pytest.approx(0.5) and np.isnan(precision[2]) and recall[1] == 0


def test_confusion_counts_wrong_classes_misses_and_false_positives():
    truths = [truth((SQUARE, DRESS), (FAR, HAT)), truth((SQUARE, SHOES))]
    predictions = [
        [found(SQUARE, DRESS, 0.9), found(SQUARE, DRESS, 0.8)],
        [found(SQUARE, HAT, 0.7), found(FAR, SHOES, 0.5)],
    ]
    matrix = confusion(truths, predictions, 3)
    none = 3
    assert matrix[DRESS, DRESS] == 1
    assert matrix[SHOES, HAT] == 1  # a wrong class counts as a confusion, not as a miss
    assert matrix[HAT, none] == 1  # the hat was missed
    assert matrix[none, DRESS] == 1 and matrix[none, SHOES] == 1  # the duplicate and the box on nothing
    assert matrix.sum() == 5 and matrix[none, none] == 0


def test_rank_of_counts_better_scored_items():
    catalogue = np.eye(4, dtype=np.float32)
    queries = np.array([[0.9, 0.1, 0, 0], [0.6, 0.8, 0, 0]], np.float32)
    assert rank_of(queries, catalogue, np.array([0, 0])).tolist() == [0, 1]


def test_labelcheck_puts_the_wrong_label_first():
    truths = [
        truth((SQUARE, DRESS), (FAR, HAT)),  # the "dress" is really shoes
        truth((SQUARE, HAT)),
        truth((SQUARE, DRESS)),
    ]
    predictions = [
        [found(SQUARE, SHOES, 0.92), found(SQUARE, DRESS, 0.1), found(FAR, HAT, 0.8)],
        [found(SQUARE, HAT, 0.85), found(FAR, SHOES, 0.45)],  # right, and an unlabelled pair of shoes
        [found(FAR, SHOES, 0.6)],  # the dress not found while the model works elsewhere in the image
    ]
    suspects = rank_suspects(truths, predictions, score=0.3)
    first = suspects[0]
    assert (first.image, first.annotation, first.kind) == (0, 0, OTHER_CLASS)
    assert first.model_label == SHOES and first.doubt == pytest.approx(0.92 - 0.1)
    kinds = {(s.image, s.annotation, s.kind) for s in suspects}
    assert (2, 0, NOT_FOUND) in kinds and (1, None, MISSING_LABEL) in kinds and (2, None, MISSING_LABEL) in kinds
    assert all((s.image, s.annotation) not in {(0, 1), (1, 0)} for s in suspects)  # the right labels stay out
    assert [s.doubt for s in suspects] == sorted((s.doubt for s in suspects), reverse=True)


def test_labelcheck_skips_the_class_test_for_a_class_the_detector_lacks():
    truths = [truth((SQUARE, 0))]
    predictions = [[found(SQUARE, 0, 0.9)]]
    # The file's class 0 is unknown to the detector: a confident box on it confirms the box, not the class.
    assert rank_suspects(truths, predictions, score=0.3, same_class=np.array([-1])) == []
    assert rank_suspects(truths, predictions, score=0.3, same_class=np.array([1]))[0].kind == OTHER_CLASS
