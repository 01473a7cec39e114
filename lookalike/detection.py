"""Detector pre- and post-processing, shared by the service, the indexer, training and evaluation.

The exported detector takes a letterboxed square of uint8 pixels (`LetterboxPreset`) and returns,
for every anchor point, a box in input pixels and a score per class. `postprocess` is the one
place that turns those into detections: score threshold, class-aware non-maximum suppression,
and the mapping back to the photo's own pixels. Every caller uses it, so the served, indexed and
evaluated detections are the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

# Letterbox padding: mid-grey, the value the backbone's normalisation maps to zero.
PAD_VALUE = 128
_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True, kw_only=True)
class Letterbox:
    """Where a photo went inside the detector's square: input pixel = photo pixel * scale + (left, top)."""

    scale: float
    left: int
    top: int
    width: int  # the photo's own size
    height: int

    def to_photo(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) xyxy in input pixels -> the photo's pixels, clipped to the photo."""
        boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) - [self.left, self.top, self.left, self.top]) / self.scale
        return np.clip(boxes, 0, [self.width, self.height, self.width, self.height])

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) xyxy in the photo's pixels -> input pixels."""
        return np.asarray(boxes, np.float32).reshape(-1, 4) * self.scale + [self.left, self.top, self.left, self.top]


@dataclass(frozen=True, kw_only=True)
class LetterboxPreset:
    """Fit the whole photo into a `size` square keeping its aspect; pad the rest with grey."""

    size: int = 320
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLING)}, not {self.interpolation!r}")
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")

    def letterbox(self, width: int, height: int) -> Letterbox:
        """Where a photo of `width` x `height` goes in the square (no pixels needed: boxes use it too)."""
        scale = self.size / max(width, height)
        inside_width, inside_height = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (self.size - inside_width) // 2, (self.size - inside_height) // 2
        return Letterbox(scale=scale, left=left, top=top, width=width, height=height)

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, Letterbox]:
        image = image.convert("RGB")
        box = self.letterbox(image.width, image.height)
        width, height = max(1, round(image.width * box.scale)), max(1, round(image.height * box.scale))
        resized = np.asarray(image.resize((width, height), _RESAMPLING[self.interpolation]), np.uint8)
        canvas = np.full((self.size, self.size, 3), PAD_VALUE, np.uint8)
        canvas[box.top : box.top + height, box.left : box.left + width] = resized
        return canvas, box

    def batch(self, images: list[Image.Image]) -> tuple[np.ndarray, list[Letterbox]]:
        if not images:
            return np.zeros((0, self.size, self.size, 3), np.uint8), []
        pixels, letterboxes = zip(*(self(image) for image in images))
        return np.stack(pixels), list(letterboxes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LetterboxPreset:
        return cls(**values)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels
    label: int  # index into the detector's classes
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The operating point: what counts as a detection. Saved in the detector's model card."""

    score: float = 0.3
    iou: float = 0.6  # NMS: a box overlapping a better one by more than this is dropped
    max_detections: int = 10
    min_side: float = 8.0  # input pixels: smaller boxes are noise at this resolution
    # One garment is one item: NMS across classes, so a t-shirt also scored as a longsleeve comes
    # back once. A bag in front of a coat survives it, their boxes overlap by far less than `iou`.
    # Per-class NMS (False) keeps the second guesses, which is what COCO's AP ranks.
    class_agnostic: bool = True


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) xyxy -> (n, m) intersection over union."""
    boxes, others = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(others, np.float32).reshape(-1, 4)
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    other_area = np.prod(np.clip(others[:, 2:] - others[:, :2], 0, None), axis=1)
    union = area[:, None] + other_area[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        if order.size:
            order = order[box_iou(boxes[best], boxes[order])[0] <= iou_threshold]
    return np.asarray(keep, np.int64)


def postprocess(
    boxes: np.ndarray, scores: np.ndarray, letterbox: Letterbox | None = None, thresholds: Thresholds = Thresholds()
) -> list[Detection]:
    """One image's raw outputs -> detections, best first.

    boxes: (anchors, 4) xyxy in input pixels; scores: (anchors, classes) in [0, 1]. With
    class-agnostic NMS each anchor offers its best class (one garment, one item); per class, every
    class an anchor scores above the threshold is a candidate, as in torchvision's FCOS and COCO's AP.
    """
    if thresholds.class_agnostic:
        anchors = np.arange(len(scores))
        labels = scores.argmax(axis=1)
    else:
        anchors, labels = np.nonzero(scores >= thresholds.score)
    best = scores[anchors, labels]
    boxes = boxes[anchors]
    sides = boxes[:, 2:] - boxes[:, :2]
    candidates = np.flatnonzero((best >= thresholds.score) & (sides.min(axis=1) >= thresholds.min_side))
    candidates = candidates[np.argsort(-best[candidates], kind="stable")][: thresholds.max_detections * 20]
    groups = (
        [candidates]
        if thresholds.class_agnostic
        else [candidates[labels[candidates] == label] for label in np.unique(labels[candidates])]
    )
    kept = [index for group in groups for index in group[nms(boxes[group], best[group], thresholds.iou)]]
    kept = np.asarray(sorted(kept, key=lambda index: -best[index]), np.int64)
    photo_boxes = letterbox.to_photo(boxes[kept]) if letterbox is not None else boxes[kept].reshape(-1, 4)
    # A box in the letterbox's padding shrinks to nothing once clipped to the photo: not a detection.
    inside = np.flatnonzero((photo_boxes[:, 2:] - photo_boxes[:, :2]).min(axis=1) >= 1)[: thresholds.max_detections]
    return [
        Detection(box=tuple(float(v) for v in photo_boxes[j]), label=int(labels[kept[j]]), score=float(best[kept[j]]))
        for j in inside
    ]


def expand_box(box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The box grown by `margin` of its size on each side, clipped to the photo, as whole pixels.

    Crops get a margin because the embedder was trained on catalogue photos with some
    background around the garment: a tight crop is a partial view, which costs recall.
    """
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    # At least one pixel, and inside the photo even for a box on its edge.
    left, top = min(max(0, int(np.floor(x0 - dx))), width - 1), min(max(0, int(np.floor(y0 - dy))), height - 1)
    right, bottom = min(width, int(np.ceil(x1 + dx))), min(height, int(np.ceil(y1 + dy)))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def main_item(detections: list[Detection]) -> Detection | None:
    """The catalogue photo's product: the largest confident box (a shop photo shows one product, big)."""
    if not detections:
        return None
    return max(detections, key=lambda d: d.area * d.score)


@dataclass(frozen=True)
class FramedItem:
    """What the embedder sees of one item: the crop box, and the detection it frames (None: the whole photo)."""

    box: tuple[int, int, int, int]  # in the photo's pixels
    detection: Detection | None


def frame_items(detections: list[Detection], width: int, height: int, margin: float) -> list[FramedItem]:
    """Each detected item's crop (its box grown by `margin`); the whole photo as one item when nothing is found.

    The service frames a shopper's photo with this, and the evaluation frames its queries with
    it, so what is measured is what is served.
    """
    if not detections:
        return [FramedItem((0, 0, width, height), None)]
    return [FramedItem(expand_box(d.box, width, height, margin), d) for d in detections]


def main_item_box(
    detections: list[Detection], width: int, height: int, margin: float
) -> tuple[int, int, int, int] | None:
    """The crop the indexer embeds for a catalogue photo: its main item with `margin`, None for the whole photo."""
    item = main_item(detections)
    return None if item is None else expand_box(item.box, width, height, margin)
