"""Detection metrics: AP@0.5 and AP@[.5:.95] through pycocotools; one-to-one matching, precision, recall, confusion."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lookalike.detection import Detection, box_iou

MATCH_IOU = 0.5  # a detection finds a garment


@dataclass(frozen=True)
class GroundTruth:
    boxes: np.ndarray  # (n, 4) xyxy
    labels: np.ndarray  # (n,) class indices


@dataclass
class DetectionMetrics:
    map50: float
    map: float
    per_class_ap50: list[float]  # nan where a class has no ground truth
    per_class_ap: list[float]

    def to_dict(self, classes: Sequence[str]) -> dict:
        return {
            "mAP@0.5": self.map50,
            "mAP@[.5:.95]": self.map,
            "AP@0.5": dict(zip(classes, self.per_class_ap50)),
            "AP@[.5:.95]": dict(zip(classes, self.per_class_ap)),
        }


def _xywh(box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def coco_evaluate(
    truths: Sequence[GroundTruth], predictions: Sequence[Sequence[Detection]], num_classes: int
) -> DetectionMetrics:
    """COCO's AP of `predictions` (per image, any score) against `truths`; class ids are the indices."""
    images = [{"id": i + 1, "width": 1, "height": 1} for i in range(len(truths))]
    annotations = [
        {
            "image_id": i + 1,
            "category_id": int(label) + 1,
            "bbox": _xywh(box),
            "iscrowd": 0,
            "area": float((box[2] - box[0]) * (box[3] - box[1])),
        }
        for i, truth in enumerate(truths)
        for box, label in zip(truth.boxes, truth.labels)
    ]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    ground = COCO()
    ground.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground.createIndex()
        results = [
            {"image_id": i + 1, "category_id": d.label + 1, "bbox": _xywh(d.box), "score": d.score}
            for i, detections in enumerate(predictions)
            for d in detections
        ]
        if not results:
            return DetectionMetrics(0.0, 0.0, [0.0] * num_classes, [0.0] * num_classes)
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.params.maxDets = [1, 10, 100]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # (iou thresholds, recall points, classes, areas, max dets)
    per_class_ap, per_class_ap50 = [], []
    for c in range(num_classes):
        all_ious, at_50 = precision[:, :, c, 0, -1], precision[0, :, c, 0, -1]
        per_class_ap.append(float(all_ious[all_ious > -1].mean()) if (all_ious > -1).any() else float("nan"))
        per_class_ap50.append(float(at_50[at_50 > -1].mean()) if (at_50 > -1).any() else float("nan"))
    return DetectionMetrics(float(evaluation.stats[1]), float(evaluation.stats[0]), per_class_ap50, per_class_ap)


@dataclass(frozen=True)
class Matching:
    pairs: list[tuple[int, int]]  # (truth, detection), IoU >= the threshold
    missed: list[int]  # truths that no detection matched
    extra: list[int]  # detections that matched no truth: false positives, duplicates among them


def match(truth_boxes, truth_labels, detections: Sequence[Detection], iou: float = MATCH_IOU, by_class=True):
    """One-to-one matching as COCO's: detections best first, each taking the free truth it overlaps most.

    A truth is taken when the IoU is at least `iou` (and, with `by_class`, the classes agree); a
    second detection of a taken garment is left over, a false positive.
    """
    truth_boxes = np.asarray(truth_boxes, np.float32).reshape(-1, 4)
    truth_labels = np.asarray(truth_labels).reshape(-1)
    overlaps = box_iou(truth_boxes, np.array([d.box for d in detections], np.float32).reshape(-1, 4))
    taken = np.zeros(len(truth_boxes), bool)
    pairs, extra = [], []
    for j in sorted(range(len(detections)), key=lambda j: -detections[j].score):
        free = overlaps[:, j].astype(np.float64)
        free[taken] = -1
        if by_class:
            free[truth_labels != detections[j].label] = -1
        best = int(np.argmax(free)) if len(free) else -1
        if best >= 0 and free[best] >= iou - 1e-6:  # float32 IoU: exactly 0.5 may come out a hair below
            taken[best] = True
            pairs.append((best, j))
        else:
            extra.append(j)
    return Matching(sorted(pairs), np.flatnonzero(~taken).tolist(), sorted(extra))


@dataclass(frozen=True)
class Counts:
    """Per class: true positives (right class, IoU >= threshold), detections and garments."""

    hits: np.ndarray
    detections: np.ndarray
    truths: np.ndarray

    @property
    def precision(self) -> float:
        return float(self.hits.sum() / max(1, self.detections.sum()))

    @property
    def recall(self) -> float:
        return float(self.hits.sum() / max(1, self.truths.sum()))

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.hits / self.detections, self.hits / self.truths


def count_hits(
    truths: Sequence[GroundTruth],
    predictions: Sequence[Sequence[Detection]],
    classes: int,
    iou: float = MATCH_IOU,
    by_class: bool = True,
) -> Counts:
    """Hits, detections and garments per class; `by_class=False` counts a garment found under any class."""
    hits, detections, garments = np.zeros(classes, int), np.zeros(classes, int), np.zeros(classes, int)
    for truth, found in zip(truths, predictions, strict=True):
        matching = match(truth.boxes, truth.labels, found, iou, by_class)
        np.add.at(hits, [found[j].label for _, j in matching.pairs], 1)
        np.add.at(detections, [d.label for d in found], 1)
        np.add.at(garments, np.asarray(truth.labels, int), 1)
    return Counts(hits, detections, garments)


def confusion(truths: Sequence[GroundTruth], predictions: Sequence[Sequence[Detection]], classes: int, iou=MATCH_IOU):
    """(classes + 1)² counts from matching that ignores the class: rows the garment's class, columns the detection's.

    The last row ("none") holds the detections that match no garment (false positives, by their
    class); the last column ("none") the garments that no detection matches (missed).
    """
    matrix = np.zeros((classes + 1, classes + 1), np.int64)
    for truth, found in zip(truths, predictions, strict=True):
        matching = match(truth.boxes, truth.labels, found, iou, by_class=False)
        for i, j in matching.pairs:
            matrix[truth.labels[i], found[j].label] += 1
        for i in matching.missed:
            matrix[truth.labels[i], classes] += 1
        for j in matching.extra:
            matrix[classes, found[j].label] += 1
    return matrix
