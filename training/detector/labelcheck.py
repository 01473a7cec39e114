"""A second look at every label of a COCO file: the annotations a detector disagrees with most, ranked.

    python -m training.detector.labelcheck --coco var/scenes/validation-seed1000-min1-max4/annotations.json \\
        --onnx training/artifacts/detector.onnx --out var/labelcheck
    python -m training.detector.labelcheck --coco shop/annotations.json --onnx training/artifacts/detector.onnx \\
        --out var/labelcheck-shop --top 96

Any COCO detection file will do (a shop's labelled photos as well as our scenes); categories are
matched to the detector's classes by name, and a category the detector does not know is only
checked for its box. The detector runs once per image, every detection down to score 0.05 kept;
"confident" means at or above the card's operating threshold. Three kinds of doubt, each in [0, 1]:

- **other class**: a confident detection of another class overlaps the label (IoU >= 0.5); doubt =
  its score minus the best score of a detection of the labelled class on the same box (0 if none).
- **not found**: no confident detection overlaps the label by IoU >= 0.5; doubt = (1 - the best IoU
  of a confident detection) x the best confident score elsewhere in the image (a model that finds
  nothing anywhere in an image says little about its labels).
- **missing label**: a confident detection overlaps no label by IoU >= 0.5; doubt = its score x
  (1 - its best IoU with a label).

Writes OUT/suspects.csv (every doubt, ranked), OUT/suspects.md (the top `--top` with the
contact sheet) and OUT/suspects.png: a tile per suspect, the image around it with the label's box
in green and the model's in orange (class and score), and the reason on top.
"""

from __future__ import annotations

import argparse
import csv
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.detection import Detection, box_iou
from training.datasets import load_image
from training.detector.coco import read_coco
from training.detector.evaluate import (
    LOOSE,
    MATCH_IOU,
    MODEL_COLOUR,
    TRUTH_COLOUR,
    contact_sheet,
    decode_batches,
    detect,
    draw_tile,
    load_detector,
)
from training.detector.metrics import GroundTruth

log = logging.getLogger("training.detector.labelcheck")
OTHER_CLASS, NOT_FOUND, MISSING_LABEL = "other class", "not found", "missing label"
CONTEXT = 0.3  # a tile shows the boxes grown by this share of their size on each side


@dataclass(frozen=True)
class Suspect:
    image: int
    annotation: int | None  # its place among the image's annotations; None for a missing label
    kind: str
    doubt: float
    label: int | None = None  # the annotation's class (index into the file's categories), None when missing
    box: tuple[float, ...] | None = None
    model_label: int | None = None  # the detector's class
    model_box: tuple[float, ...] | None = None
    model_score: float = 0.0
    iou: float = 0.0


def rank_suspects(
    truths: Sequence[GroundTruth],
    predictions: Sequence[Sequence[Detection]],
    *,
    score: float,
    iou: float = MATCH_IOU,
    same_class: np.ndarray | None = None,
) -> list[Suspect]:
    """Every doubtful label, most doubtful first.

    `truths[i]` are image i's labels, `predictions[i]` the detector's boxes (any score: those at or
    above `score` are the confident ones). `same_class[label]` is the detector's class of a label's
    class (-1: the detector has no such class, its class is not checked); None: the same indices.
    """
    suspects = []
    for image, (truth, found) in enumerate(zip(truths, predictions, strict=True)):
        boxes = np.asarray(truth.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(truth.labels, np.int64)
        detected = np.array([d.box for d in found], np.float32).reshape(-1, 4)
        scores = np.array([d.score for d in found], np.float32)
        confident = scores >= score
        overlaps = box_iou(boxes, detected)  # (labels, detections)
        for a, label in enumerate(labels):
            model_label = int(same_class[label]) if same_class is not None else int(label)
            suspects += _doubts_of_label(
                image, a, boxes[a], int(label), model_label, found, overlaps[a], confident, iou
            )
        for j in np.flatnonzero(confident):
            best = float(overlaps[:, j].max()) if len(boxes) else 0.0
            if best < iou:
                d = found[j]
                suspects.append(
                    Suspect(image, None, MISSING_LABEL, d.score * (1 - best), None, None, d.label, d.box, d.score, best)
                )
    return sorted(suspects, key=lambda s: (-s.doubt, s.image, -1 if s.annotation is None else s.annotation))


def _doubts_of_label(image, number, box, label, model_label, found, overlaps, confident, iou) -> list[Suspect]:
    """The doubts about one label: another class on its box, or nothing confident on it."""
    on_box = overlaps >= iou - 1e-6
    box = tuple(float(v) for v in box)
    if (on_box & confident).any():
        if model_label < 0:
            return []
        same = max((found[j].score for j in np.flatnonzero(on_box) if found[j].label == model_label), default=0.0)
        others = [j for j in np.flatnonzero(on_box & confident) if found[j].label != model_label]
        if not others:
            return []
        j = max(others, key=lambda j: found[j].score)
        doubt = found[j].score - same
        if doubt <= 0:
            return []
        d = found[j]
        return [Suspect(image, number, OTHER_CLASS, doubt, label, box, d.label, d.box, d.score, float(overlaps[j]))]
    elsewhere = confident & ~on_box
    if not elsewhere.any():
        return []
    best = int(np.flatnonzero(confident)[np.argmax(overlaps[confident])]) if confident.any() else None
    best_iou = float(overlaps[best]) if best is not None else 0.0
    doubt = (1 - best_iou) * max(found[j].score for j in np.flatnonzero(elsewhere))
    nearest = found[best] if best is not None and best_iou > 0 else None
    return [
        Suspect(
            image,
            number,
            NOT_FOUND,
            doubt,
            label,
            box,
            nearest.label if nearest else None,
            nearest.box if nearest else None,
            nearest.score if nearest else 0.0,
            best_iou,
        )
    ]


# ---------------------------------------------------------------------------------------------
# Writing the list and the sheet


def reason(suspect: Suspect, label_names: Sequence[str], model_names: Sequence[str]) -> str:
    label = label_names[suspect.label] if suspect.label is not None else ""
    model = f"{model_names[suspect.model_label]} {suspect.model_score:.2f}" if suspect.model_label is not None else ""
    if suspect.kind == OTHER_CLASS:
        return f"labelled {label}, the model says {model}"
    if suspect.kind == NOT_FOUND:
        return f"{label}: nothing confident on it" + (f" (nearest {model}, IoU {suspect.iou:.2f})" if model else "")
    return f"no label where the model sees {model}"


def write_csv(path: Path, suspects: Sequence[Suspect], coco, model_names: Sequence[str]) -> None:
    names = [name for _, name in coco.categories]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["rank", "doubt", "kind", "image", "annotation", "label", "box", "model class", "model box"])
        for rank, s in enumerate(suspects, start=1):
            writer.writerow(
                [
                    rank,
                    f"{s.doubt:.4f}",
                    s.kind,
                    coco.images[s.image].file_name,
                    "" if s.annotation is None else s.annotation,
                    "" if s.label is None else names[s.label],
                    _box_text(s.box),
                    "" if s.model_label is None else f"{model_names[s.model_label]} {s.model_score:.3f}",
                    _box_text(s.model_box),
                ]
            )


def _box_text(box) -> str:
    return "" if box is None else " ".join(f"{v:.1f}" for v in box)


def tile(suspect: Suspect, rank: int, coco, label_names, model_names, side: int = 240):
    image = load_image(coco.image_path(suspect.image))
    shown = np.array([b for b in (suspect.box, suspect.model_box) if b is not None], np.float32)
    x0, y0 = shown[:, :2].min(axis=0)
    x1, y1 = shown[:, 2:].max(axis=0)
    grow_x, grow_y = (x1 - x0) * CONTEXT + 8, (y1 - y0) * CONTEXT + 8
    region = (
        max(0, int(x0 - grow_x)),
        max(0, int(y0 - grow_y)),
        min(image.width, int(x1 + grow_x) + 1),
        min(image.height, int(y1 + grow_y) + 1),
    )
    boxes = []
    if suspect.box is not None:
        boxes.append((suspect.box, label_names[suspect.label], TRUTH_COLOUR))
    if suspect.model_box is not None:
        boxes.append((suspect.model_box, f"{model_names[suspect.model_label]} {suspect.model_score:.2f}", MODEL_COLOUR))
    caption = [f"#{rank} {suspect.kind} {suspect.doubt:.2f}", coco.images[suspect.image].file_name[-38:]]
    return draw_tile(image, boxes, side, region, caption + textwrap.wrap(reason(suspect, label_names, model_names), 38))


def write_markdown(path: Path, suspects: Sequence[Suspect], coco, label_names, model_names, args, sheet: str) -> None:
    kinds = {kind: sum(s.kind == kind for s in suspects) for kind in (OTHER_CLASS, NOT_FOUND, MISSING_LABEL)}
    lines = [
        f"# Label check of `{args.coco}`",
        "",
        f"Detector `{args.onnx}`; {len(coco.images)} images, {sum(map(len, coco.annotations))} labels; "
        + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        + f". The top {min(args.top, len(suspects))} (all in `suspects.csv`):",
        "",
        f"![the top suspects: the label in green, the model in orange]({sheet})",
        "",
        "| rank | doubt | kind | image | reason |",
        "|---:|---:|---|---|---|",
    ]
    for rank, s in enumerate(suspects[: args.top], start=1):
        file = coco.images[s.image].file_name
        lines.append(f"| {rank} | {s.doubt:.3f} | {s.kind} | `{file}` | {reason(s, label_names, model_names)} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> list[Suspect]:
    coco = read_coco(args.coco)
    model = load_detector(str(args.onnx), threads=args.threads)
    label_names, model_names = [name for _, name in coco.categories], model.card.class_names
    same_class = np.array([model_names.index(n) if n in model_names else -1 for n in label_names])
    if (same_class < 0).any():
        log.warning(
            "the detector has no class %s: their labels are checked for their boxes only",
            sorted(n for n, c in zip(label_names, same_class) if c < 0),
        )
    row = {name: i for i, name in enumerate(label_names)}
    truths = [
        GroundTruth(
            np.array([a.box for a in boxes], np.float32).reshape(-1, 4), np.array([row[a.category] for a in boxes])
        )
        for boxes in coco.annotations
    ]
    paths = [coco.image_path(i) for i in range(len(coco.images))]
    predictions = []
    for _, images in decode_batches(paths, args.batch_size, args.workers, "images"):
        predictions += detect(model, images, LOOSE)[0]
    suspects = rank_suspects(truths, predictions, score=model.card.thresholds.score, same_class=same_class)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "suspects.csv", suspects, coco, model_names)
    top = suspects[: args.top]
    if top:
        tiles = [tile(s, rank, coco, label_names, model_names) for rank, s in enumerate(top, start=1)]
        contact_sheet(tiles, 6).save(args.out / "suspects.png")
    write_markdown(args.out / "suspects.md", suspects, coco, label_names, model_names, args, "suspects.png")
    log.info("%d suspects; the top %d in %s", len(suspects), len(top), args.out / "suspects.md")
    return suspects


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, required=True, help="a COCO detection file (images relative to it)")
    parser.add_argument("--onnx", required=True, help="the detector: X.onnx with X.json, a checkpoint.pth or a tag")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top", type=int, default=48, help="suspects in the Markdown list and the sheet")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
