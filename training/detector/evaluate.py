"""Evaluate the garment detector: held-out scenes, plain photos, search end to end, photo-like queries.

    python -m training.detector.evaluate --onnx training/artifacts/detector.onnx --out training/reports/detector
    python -m training.detector.evaluate --onnx training/artifacts/detector.onnx \\
        --compare var/previous/detector-abc1234.onnx --out training/reports/detector     # make report-detector
    python -m training.detector.evaluate --checkpoint var/train/detector/checkpoint.pth --out /tmp/report \\
        --scenes 40 --multi-scenes 20 --queries 40 --distractors 300                      # a quick look

Writes OUT/report.md with its PNGs, and OUT/metrics.json: a flat dict of the main numbers for the
model card (`training.detector.export --metrics`). `--onnx X.onnx` reads the card from the sidecar
X.json; `--checkpoint` exports a training checkpoint first (`export_detector`, parity-checked);
`--compare` takes either, or a model store tag, and puts that model beside the first in every table.

Everything is held out: scenes are composed from `validation/` photos only, with seeds training
never uses (it composes with seed 0), and the plain photos and photo-like queries are `validation/`'s.

1. Held-out scenes (`--scenes`, 1 to `--max-items` garments, seed `--scene-seed`): COCO AP per
   class (pycocotools, every detection down to score 0.05), and at the card's operating point
   precision, recall and a confusion matrix from one-to-one matching at IoU >= 0.5.
2. Plain photos: each validation photo shows one garment; its box is its GrabCut mask's
   (`training.synth.colors.load_mask`). The main item (`lookalike.detection.main_item`, what the
   indexer crops) should cover it: IoU >= 0.7.
3. End to end (`--multi-scenes` scenes of 2-3 garments, seed `--scene-seed` + 1): the catalogue is
   every photo (validation and train), each cropped to its main item as the indexer crops it and
   embedded with `--embedder` (`shape`, cosine); a garment counts when a detection matches it and
   that detection's crop finds the garment's source photo in the top 10.
4. Photo-like queries (the embedder report's: `PhotoLikeQuery(--seed)` of each validation photo):
   recall@1 and @10 of the source photo, whole picture against the uncropped catalogue (the
   service without a detector) and detected main item against the cropped catalogue (with one).

Catalogue vectors are cached in `--cache-dir` keyed by the models' file digests and the photos'
fingerprint, scenes in `--scenes-dir` by seed, so a second run mostly re-runs the detector.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from lookalike.detection import Detection, Thresholds, box_iou, expand_box, main_item, postprocess
from lookalike.engines import DETECTOR_FILE, EMBEDDER_FILE, OnnxDetector, OnnxEmbedder
from lookalike.modelcard import DetectorCard, EmbedderCard, read_card
from training.datasets import data_fingerprint, load_image
from training.detector.coco import read_coco
from training.detector.metrics import (
    MATCH_IOU,
    Counts,
    DetectionMetrics,
    GroundTruth,
    coco_evaluate,
    confusion,
    count_hits,
    match,
)
from training.report import Picture, Section, Table, plot_confusion_matrix, write_report

log = logging.getLogger("training.detector.evaluate")

COVER_IOU = 0.7  # the main item covers a plain photo's garment
TOP_K = 10
# Every detection down to a low score, for AP; the same as training's validation.
LOOSE = Thresholds(score=0.05, iou=0.5, max_detections=100, class_agnostic=False)  # what COCO AP ranks
TRUTH_COLOUR, MODEL_COLOUR = (60, 220, 90), (255, 140, 0)
NONE = "none"


def rank_of(queries: np.ndarray, catalogue: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each query's target among the catalogue by cosine (vectors are unit length)."""
    if len(queries) == 0:
        return np.zeros(0, int)
    scores = queries @ catalogue.T
    return (scores > scores[np.arange(len(queries)), targets][:, None]).sum(axis=1)


def share(flags) -> float:
    flags = np.asarray(flags, float)
    return float(flags.mean()) if flags.size else math.nan


# ---------------------------------------------------------------------------------------------
# Models


@dataclass
class DetectorUnderTest:
    role: str  # "candidate" or "previous": the tables' column names
    source: str  # what was asked for: a file or a model store tag
    engine: OnnxDetector
    card: DetectorCard
    path: Path  # the graph, whose digest keys the caches

    @cached_property
    def digest(self) -> str:
        return file_digest(self.path)


@dataclass
class EmbedderUnderTest:
    source: str
    engine: OnnxEmbedder
    card: EmbedderCard
    path: Path

    @cached_property
    def digest(self) -> str:
        return file_digest(self.path)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_detector(reference: str, role: str = "candidate", threads: int | None = None) -> DetectorUnderTest:
    """A detector from an .onnx with its .json card, a training checkpoint (.pth, exported now) or a model store tag."""
    path = Path(reference)
    if reference.endswith(".pth"):
        from training.detector.export import export_detector, from_checkpoint

        if not path.is_file():
            raise LookupError(f"{reference}: no such checkpoint")
        # The graph must outlive this call (the report hashes it); a checkpoint is a development input.
        detector, extra, thresholds = from_checkpoint(path)
        graph, card = export_detector(
            detector, Path(tempfile.mkdtemp(prefix="detector-eval-")), extra=extra, thresholds=thresholds
        )
        return DetectorUnderTest(role, f"{reference} (exported now)", OnnxDetector(graph, threads=threads), card, graph)
    if reference.endswith(".onnx"):
        card = _sidecar_card(path, "detector")
        return DetectorUnderTest(role, reference, OnnxDetector(path, threads=threads), card, path)
    stored = _stored(reference)
    graph = Path(stored.path_of(DETECTOR_FILE))
    card = DetectorCard.from_metadata(stored.info.metadata)
    return DetectorUnderTest(role, str(stored.tag), OnnxDetector(graph, threads=threads), card, graph)


def load_embedder(reference: str, threads: int | None = None) -> EmbedderUnderTest:
    """The embedder from an .onnx with its .json card or a model store tag."""
    if reference.endswith(".onnx"):
        path = Path(reference)
        card = _sidecar_card(path, "embedder")
        return EmbedderUnderTest(reference, OnnxEmbedder(path, threads=threads), card, path)
    stored = _stored(reference)
    graph = Path(stored.path_of(EMBEDDER_FILE))
    return EmbedderUnderTest(
        str(stored.tag), OnnxEmbedder(graph, threads=threads), EmbedderCard.from_metadata(stored.info.metadata), graph
    )


def _sidecar_card(path: Path, kind: str):
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        raise LookupError(f"{path}: no such graph with its card {sidecar.name}")
    card = read_card(sidecar)
    if card.kind != kind:
        raise LookupError(f"{sidecar} is the card of a {card.kind}, not of a {kind}")
    return card


def _stored(tag: str):
    import bentoml

    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as error:
        raise LookupError(f"{tag} is not in the model store ({os.environ.get('BENTOML_HOME', '~/bentoml')})") from error


# ---------------------------------------------------------------------------------------------
# Images through the models


def decode_batches(paths: Sequence[Path], batch_size: int, workers: int, desc: str, decode=load_image):
    """Batches of decoded images (decoded in threads), with a progress bar over the images."""
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
        for start in range(0, len(paths), batch_size):
            batch = list(pool.map(decode, paths[start : start + batch_size]))
            yield start, batch
            bar.update(len(batch))


def detect(model: DetectorUnderTest, images: Sequence[Image.Image], *thresholds: Thresholds):
    """One batched call; per thresholds given, each image's detections in its own pixels."""
    pixels, letterboxes = model.card.preset.batch(list(images))
    outputs = model.engine(pixels)
    return [
        [postprocess(b, s, box, threshold) for b, s, box in zip(outputs["boxes"], outputs["scores"], letterboxes)]
        for threshold in thresholds
    ]


def embed(embedder: EmbedderUnderTest, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    """`shape` vectors of the images, through the embedder's own preset."""
    vectors = [
        embedder.engine(embedder.card.preset.batch(list(images[start : start + batch_size])))["shape"]
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.card.shape_dim), np.float32)


def crop(image: Image.Image, box, margin: float) -> Image.Image:
    """The item's crop as the service and the indexer cut it."""
    return image.crop(expand_box(box, image.width, image.height, margin))


def relabel(detections: Sequence[Detection], mapping: np.ndarray) -> list[Detection]:
    """Detections in the evaluated classes' indices; those of a class not evaluated are dropped."""
    return [dataclasses.replace(d, label=int(mapping[d.label])) for d in detections if mapping[d.label] >= 0]


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class Photos:
    """The catalogue: every validation photo first, then the train photos (all, or a seeded subset)."""

    root: Path
    paths: list[Path]
    classes: list[str]  # each photo's folder
    validation: int  # how many of `paths` are validation photos
    fingerprint: str

    @cached_property
    def rows(self) -> dict[str, int]:
        return {path.relative_to(self.root).as_posix(): row for row, path in enumerate(self.paths)}


def load_photos(args) -> Photos:
    from training.synth.scenes import scene_items

    validation = scene_items(args.data_dir, "validation")
    train = scene_items(args.data_dir, "train")
    if args.distractors is not None and args.distractors < len(train):
        rows = np.sort(np.random.default_rng(args.seed).choice(len(train), args.distractors, replace=False))
        train = [train[i] for i in rows]
    items = validation + train
    paths = [Path(path).resolve() for path, _ in items]
    return Photos(args.data_dir.resolve(), paths, [name for _, name in items], len(validation), data_fingerprint(paths))


@dataclass
class Scenes:
    annotations: Path
    paths: list[Path]
    truths: list[GroundTruth]  # scene pixels; labels index the evaluated classes
    sources: list[list[str]]  # each garment's source photo, relative to the data folder

    @cached_property
    def digest(self) -> str:
        return file_digest(self.annotations)

    @property
    def garments(self) -> int:
        return sum(len(truth.labels) for truth in self.truths)


def held_out_scenes(args, classes: list[str], count: int, seed: int, min_items: int, max_items: int) -> Scenes:
    """`count` scenes composed from validation photos only (written once under --scenes-dir, reused after)."""
    from training.synth.scenes import SceneComposer, scene_items, write_scenes

    items = [(path, name) for path, name in scene_items(args.data_dir, "validation") if name in classes]
    composer = SceneComposer(
        items,
        root=args.data_dir,
        mask_dir=args.mask_dir / "validation",
        mask_root=args.data_dir / "validation",
        seed=seed,
        min_items=min_items,
        max_items=max_items,
    )
    folder = args.scenes_dir / f"validation-seed{seed}-min{min_items}-max{max_items}"
    annotations = write_scenes(composer, count, folder, workers=args.workers)
    coco = read_coco(annotations)
    index = {name: i for i, name in enumerate(classes)}
    truths = [
        GroundTruth(
            np.asarray([a.box for a in boxes], np.float32).reshape(-1, 4),
            np.asarray([index[a.category] for a in boxes], np.int64),
        )
        for boxes in coco.annotations
    ]
    paths = [coco.image_path(i) for i in range(len(coco.images))]
    return Scenes(annotations, paths, truths, [[a.source for a in boxes] for boxes in coco.annotations])


# ---------------------------------------------------------------------------------------------
# The evaluation: what every section reads


@dataclass
class Evaluation:
    args: argparse.Namespace
    models: list[DetectorUnderTest]
    embedder: EmbedderUnderTest
    photos: Photos
    classes: list[str]  # the candidate's
    unavailable: dict[str, str] = field(default_factory=dict)  # role -> why it could not be loaded
    fingerprints: dict[str, str] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)
    _catalogues: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def batches(self, paths, desc: str, decode=load_image) -> Iterator[tuple[int, list[Image.Image]]]:
        return decode_batches(paths, self.args.batch_size, self.args.workers, desc, decode)

    def cached(self, kind: str, key: list, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """`compute()`'s arrays, kept as CACHE_DIR/detector-eval-KIND-<digest of key>.npz."""
        if self.args.cache_dir is None:
            return compute()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = self.args.cache_dir / f"detector-eval-{kind}-{digest}.npz"
        if path.is_file():
            with np.load(path) as stored:
                log.info("%s from %s", kind, path)
                self.cache_hits.append(kind)
                return dict(stored)
        log.info("%s: computing, to be kept in %s", kind, path)
        arrays = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, **arrays)
        partial.replace(path)
        return arrays

    def whole_catalogue(self) -> np.ndarray:
        """Every photo embedded whole: the catalogue of a service without a detector."""
        if "whole" not in self._catalogues:
            key = ["whole", self.embedder.digest, self.embedder.card.preprocess, self.photos.fingerprint]

            def compute():
                parts = [embed(self.embedder, images) for _, images in self.batches(self.photos.paths, "catalogue")]
                return {"shape": np.concatenate(parts)}

            self._catalogues["whole"] = self.cached("whole", key, compute)
        return self._catalogues["whole"]["shape"]

    def item_catalogue(self, model: DetectorUnderTest) -> dict[str, np.ndarray]:
        """Every photo's main item as the indexer finds and crops it, and its vector.

        `boxes` (nan where nothing was detected: the whole photo is embedded), `labels` (-1 there),
        `scores`, `counts` (detections per photo) and `shape`.
        """
        if model.role not in self._catalogues:
            card, embedder = model.card, self.embedder
            key = ["items", model.digest, card.preprocess, card.thresholds, card.crop_margin, embedder.digest]
            key += [embedder.card.preprocess, self.photos.fingerprint]
            self._catalogues[model.role] = self.cached("items", key, lambda: self._items(model))
        return self._catalogues[model.role]

    def _items(self, model: DetectorUnderTest) -> dict[str, np.ndarray]:
        parts: dict[str, list] = {"boxes": [], "labels": [], "scores": [], "counts": [], "shape": []}
        for _, images in self.batches(self.photos.paths, f"catalogue, {model.role} main items"):
            (found,) = detect(model, images, model.card.thresholds)
            mains = [main_item(detections) for detections in found]
            crops = [
                image if m is None else crop(image, m.box, model.card.crop_margin) for image, m in zip(images, mains)
            ]
            parts["shape"].append(embed(self.embedder, crops))
            parts["boxes"] += [m.box if m else (math.nan,) * 4 for m in mains]
            parts["labels"] += [m.label if m else -1 for m in mains]
            parts["scores"] += [m.score if m else 0.0 for m in mains]
            parts["counts"] += [len(detections) for detections in found]
        return {
            "boxes": np.asarray(parts["boxes"], np.float32).reshape(-1, 4),
            "labels": np.asarray(parts["labels"], np.int64),
            "scores": np.asarray(parts["scores"], np.float32),
            "counts": np.asarray(parts["counts"], np.int64),
            "shape": np.concatenate(parts["shape"]),
        }

    def class_map(self, model: DetectorUnderTest) -> np.ndarray:
        """The model's class indices -> the evaluated classes' (-1: not evaluated)."""
        return np.array([self.classes.index(n) if n in self.classes else -1 for n in model.card.class_names])

    def missing_rows(self, width: int) -> list[list]:
        """A row per model that could not be loaded, saying why, for tables with a row per model."""
        return [[role, f"not computed: {why}", *([None] * (width - 2))] for role, why in self.unavailable.items()]

    def missing_note(self) -> str:
        return " ".join(
            f"The {role} model could not be loaded ({why}): its cells are empty."
            for role, why in self.unavailable.items()
        )


# ---------------------------------------------------------------------------------------------
# Sections: one function each, returning the section and its numbers for metrics.json


@dataclass
class SceneScores:
    """One model on the held-out scenes."""

    coco: DetectionMetrics  # AP over every detection down to LOOSE's score
    counts: Counts  # at the operating point, class-aware
    matrix: np.ndarray  # at the operating point, class-agnostic matching (`confusion`)
    operating: list[list[Detection]]

    def metrics(self, classes: list[str]) -> dict:
        found = self.matrix[:-1, :-1].sum()
        return {
            "mAP@0.5": self.coco.map50,
            "mAP@[.5:.95]": self.coco.map,
            **{f"AP@0.5/{c}": v for c, v in zip(classes, self.coco.per_class_ap50)},
            **{f"AP@[.5:.95]/{c}": v for c, v in zip(classes, self.coco.per_class_ap)},
            "precision": self.counts.precision,
            "recall": self.counts.recall,
            "precision_any_class": found / max(1, self.matrix[:, :-1].sum()),
            "recall_any_class": found / max(1, self.matrix[:-1].sum()),
            "false_positives_per_scene": self.matrix[-1].sum() / max(1, len(self.operating)),
        }


def score_scenes(ev: Evaluation, model: DetectorUnderTest, scenes: Scenes) -> SceneScores:
    loose, operating, mapping = [], [], ev.class_map(model)
    for _, images in ev.batches(scenes.paths, f"scenes, {model.role}"):
        low, high = detect(model, images, LOOSE, model.card.thresholds)
        loose += [relabel(found, mapping) for found in low]
        operating += [relabel(found, mapping) for found in high]
    classes = len(ev.classes)
    return SceneScores(
        coco_evaluate(scenes.truths, loose, classes),
        count_hits(scenes.truths, operating, classes),
        confusion(scenes.truths, operating, classes),
        operating,
    )


def per_class_table(ev: Evaluation, scenes: Scenes, scores: dict[str, SceneScores]) -> Table:
    garments = np.bincount(np.concatenate([t.labels for t in scenes.truths]), minlength=len(ev.classes))
    rows = [[name, int(n)] for name, n in zip(ev.classes, garments)] + [["all", int(garments.sum())]]
    columns = ["class", "garments"]
    for model in ev.models:
        score, known = scores[model.role], set(model.card.class_names)
        columns += [f"AP@0.5 {model.role}", f"AP@[.5:.95] {model.role}", f"P {model.role}", f"R {model.role}"]
        precision, recall = score.counts.per_class()
        for c, name in enumerate(ev.classes):
            cells = [score.coco.per_class_ap50[c], score.coco.per_class_ap[c], precision[c], recall[c]]
            rows[c] += cells if name in known else [None] * 4
        rows[-1] += [score.coco.map50, score.coco.map, score.counts.precision, score.counts.recall]
    for role in ev.unavailable:
        columns.append(f"AP@0.5 {role}")
        for row in rows:
            row.append(None)
    note = (
        "AP: pycocotools over every detection down to score 0.05 (row *all*: the mean over classes). P and R: "
        "at the card's operating point; a detection is right when its class is and it overlaps the garment by "
        f"IoU ≥ {MATCH_IOU}, one detection per garment (a second one is a false positive). A dash: no garment "
        "of the class, not a class of that model, or (P) no detection of it. " + ev.missing_note()
    )
    return Table(columns, rows, title=f"{len(scenes.paths)} scenes, {scenes.garments} garments", note=note.strip())


def operating_table(ev: Evaluation, scores: dict[str, SceneScores]) -> Table:
    columns = ["model", "score ≥", "detections", "precision", "recall", "P any class", "R any class"]
    columns.append("false positives / scene")
    rows = []
    for model in ev.models:
        numbers = scores[model.role].metrics(ev.classes)
        keys = ("precision", "recall", "precision_any_class", "recall_any_class", "false_positives_per_scene")
        detections = int(scores[model.role].counts.detections.sum())
        rows.append([model.role, model.card.thresholds.score, detections, *(numbers[key] for key in keys)])
    note = f"*any class*: a detection counts when it overlaps a garment by IoU ≥ {MATCH_IOU}, whatever its class."
    return Table(columns, rows + ev.missing_rows(len(columns)), title="At the operating point", note=note)


def scene_section(ev: Evaluation, scenes: Scenes) -> tuple[Section, dict]:
    """a. Held-out scenes: AP per class, precision and recall at the operating point, confusions, examples."""
    scores = {model.role: score_scenes(ev, model, scenes) for model in ev.models}
    body = [
        (
            f"{len(scenes.paths)} scenes of 1-{ev.args.max_items} garments composed from `validation/` photos only "
            f"(`{scenes.annotations}`, seed {ev.args.scene_seed}; training composes its scenes from `train/` with "
            "seed 0). Detections are mapped back to the scene's pixels, where the boxes are."
        ),
        per_class_table(ev, scenes, scores),
        operating_table(ev, scores),
    ]
    for model in ev.models:
        title = f"{model.role}, at its operating point"
        file = f"confusion_{model.role}.png"
        body.append(plot_confusion_matrix(scores[model.role].matrix, [*ev.classes, NONE], ev.args.out, file, title))
    body.append(
        f"Confusion matrices: one-to-one matching at IoU ≥ {MATCH_IOU} that ignores the class, at the operating "
        "point. Row *none*: detections that overlap no garment (false positives, by their class); column "
        "*none*: garments that no detection overlaps (missed)."
    )
    body.append(example_scenes(ev, scenes, scores[ev.models[0].role].operating))
    metrics = {role: score.metrics(ev.classes) for role, score in scores.items()}
    return Section("Held-out scenes", body), metrics


def plain_photo_section(ev: Evaluation) -> tuple[Section, dict]:
    """b. The real photos, one garment each: does the main item cover the garment's mask box?"""
    count, masks = ev.photos.validation, mask_boxes(ev)
    photo_classes = np.array(ev.photos.classes[:count])
    metrics, rows, per_class = {}, [], {}
    for model in ev.models:
        metrics[model.role], covers = main_item_scores(ev, model, masks, photo_classes)
        rows.append([model.role, count, *metrics[model.role].values()])
        per_class[model.role] = [share(covers[photo_classes == name]) for name in ev.classes]
    columns = ["model", "photos", f"main item IoU ≥ {COVER_IOU}", "median IoU", "its class right"]
    columns += ["no detection", "detections / photo"]
    rows += ev.missing_rows(len(columns))
    counts = [int((photo_classes == name).sum()) for name in ev.classes]
    class_rows = [
        [name, n, *(per_class[m.role][c] for m in ev.models)] for c, (name, n) in enumerate(zip(ev.classes, counts))
    ]
    body = [
        (
            f"The {count} `validation/` photos as they are (one garment each, mostly on a plain background). The "
            "garment's box is its GrabCut mask's (`training.synth.colors.load_mask`, the masks scenes are cut "
            "with; about 1% are a centred ellipse where GrabCut failed). The *main item* is what the indexer "
            "crops: `lookalike.detection.main_item`, the largest area × score at the card's thresholds. Median "
            "IoU and class over the photos with a detection."
        ),
        Table(columns, rows, note=ev.missing_note()),
        Table(
            ["class", "photos", *(m.role for m in ev.models)],
            class_rows,
            title=f"Main item IoU ≥ {COVER_IOU} per class",
        ),
    ]
    return Section("Plain validation photos", body), metrics


def main_item_scores(ev: Evaluation, model: DetectorUnderTest, masks: np.ndarray, photo_classes: np.ndarray):
    """The plain photos' numbers (a dict in the table's column order) and which main items cover their garment."""
    items = {name: values[: len(masks)] for name, values in ev.item_catalogue(model).items()}
    found = ~np.isnan(items["boxes"][:, 0])
    ious = np.array([box_iou(b, m)[0, 0] if ok else 0.0 for b, m, ok in zip(items["boxes"], masks, found)])
    names = np.array([model.card.class_names[i] if i >= 0 else "" for i in items["labels"]])
    covers = ious >= COVER_IOU - 1e-6
    numbers = {
        f"plain_main_item_iou>={COVER_IOU}": share(covers),
        "plain_main_item_median_iou": float(np.median(ious[found])) if found.any() else math.nan,
        "plain_main_item_class_right": share(names[found] == photo_classes[found]),
        "plain_no_detection": share(~found),
        "plain_detections_per_photo": float(items["counts"].mean()),
    }
    return numbers, covers


def end_to_end_section(ev: Evaluation, scenes: Scenes) -> tuple[Section, dict]:
    """c. Scenes of 2-3 garments: is each garment detected, and does its crop find its source photo?"""
    targets = np.array([ev.photos.rows[s] for sources in scenes.sources for s in sources])
    scene_of = np.repeat(np.arange(len(scenes.paths)), [len(t.labels) for t in scenes.truths])
    whole = np.concatenate([embed(ev.embedder, images) for _, images in ev.batches(scenes.paths, "scenes, whole")])
    whole_found = share(rank_of(whole[scene_of], ev.whole_catalogue(), targets) < TOP_K)
    metrics, table = {"e2e_whole_scene_found@10": whole_found}, {}
    for model in ev.models:
        table[model.role] = [*garments_found(ev, model, scenes, targets), whole_found]
        metrics[model.role] = dict(zip(("e2e_detected", "e2e_found@10", "e2e_true_box_found@10"), table[model.role]))
    labels = [
        f"garments detected (a detection with IoU ≥ {MATCH_IOU})",
        f"detected, and its crop finds the source photo in the top {TOP_K}",
        f"reference: the true box cropped the same way finds it in the top {TOP_K} (a perfect detector)",
        f"no detector (today's service): the whole scene finds it in the top {TOP_K}",
    ]
    roles = [m.role for m in ev.models] + list(ev.unavailable)
    rows = [[label, *(table.get(role, [None] * 4)[r] for role in roles)] for r, label in enumerate(labels)]
    body = [
        (
            f"{len(scenes.paths)} scenes of 2-3 garments from `validation/` photos (`{scenes.annotations}`, seed "
            f"{ev.args.scene_seed + 1}), {len(targets)} garments. Catalogue: {len(ev.photos.paths)} photos "
            f"({ev.photos.validation} validation, the garments' sources among them), each cropped to its main "
            "item as the indexer does (detect, `main_item`, `expand_box` by the card's `crop_margin`; the whole "
            "photo where nothing is detected) and embedded with the embedder's eval preset; search by the "
            f"`shape` vector, cosine, float. Each garment's detection is its one-to-one match at IoU ≥ {MATCH_IOU} "
            "(any class); the whole-scene row searches the uncropped catalogue, the service without a detector."
        ),
        Table(["garments", *roles], rows, note=ev.missing_note()),
    ]
    return Section("End to end: scenes of 2-3 garments", body), metrics


def garments_found(ev: Evaluation, model: DetectorUnderTest, scenes: Scenes, targets: np.ndarray) -> list[float]:
    """Shares of the garments detected, detected and found (top 10), and found by their true box's crop."""
    margin, numbers, detections, boxes = model.card.crop_margin, [], [], []
    first = np.cumsum([0] + [len(t.labels) for t in scenes.truths])
    for start, images in ev.batches(scenes.paths, f"scenes, {model.role}"):
        (found,) = detect(model, images, model.card.thresholds)
        crops_of_batch, truths_of_batch = [], []
        for k, (image, candidates) in enumerate(zip(images, found)):
            truth = scenes.truths[start + k]
            for i, j in match(truth.boxes, truth.labels, candidates, by_class=False).pairs:
                numbers.append(first[start + k] + i)
                crops_of_batch.append(crop(image, candidates[j].box, margin))
            truths_of_batch += [crop(image, box, margin) for box in truth.boxes]
        detections.append(embed(ev.embedder, crops_of_batch))
        boxes.append(embed(ev.embedder, truths_of_batch))
    catalogue, numbers = ev.item_catalogue(model)["shape"], np.array(numbers, int)
    found = np.zeros(len(targets), bool)
    found[numbers[rank_of(np.concatenate(detections), catalogue, targets[numbers]) < TOP_K]] = True
    by_true_box = rank_of(np.concatenate(boxes), catalogue, targets) < TOP_K
    return [len(numbers) / max(1, len(targets)), share(found), share(by_true_box)]


def query_section(ev: Evaluation) -> tuple[Section, dict]:
    """d. Photo-like queries among clutter: the whole picture vs the detected main item."""
    from training.synth.colors import load_mask
    from training.synth.photo import PhotoLikeQuery

    args, count = ev.args, ev.photos.validation
    picked = np.arange(count)
    if args.queries is not None and args.queries < count:
        picked = np.sort(np.random.default_rng(args.seed).choice(count, args.queries, replace=False))
    maker = PhotoLikeQuery(args.seed)

    def make(index: int) -> Image.Image:  # the validation photo's index seeds its query, as in the embedder report
        path = ev.photos.paths[index]
        image = load_image(path)
        return maker(image, load_mask(args.mask_dir, args.data_dir, path, image=image), int(index))

    whole, ranks = [], {m.role: {"main": [], "any": [], "detected": []} for m in ev.models}
    for start, images in ev.batches(list(picked), "photo-like queries", decode=make):
        whole.append(embed(ev.embedder, images))
        targets = picked[start : start + len(images)]
        for model in ev.models:
            found = ranks[model.role]
            main, best, detected = query_ranks(ev, model, images, targets)
            found["main"].append(main)
            found["any"].append(best)
            found["detected"].append(detected)
    whole_ranks = rank_of(np.concatenate(whole), ev.whole_catalogue(), picked)
    rows = [["whole picture, uncropped catalogue (today's service)", *recalls(whole_ranks), None]]
    metrics = dict(zip(("query_whole_recall@1", "query_whole_recall@10"), rows[0][1:3]))
    for model in ev.models:
        found = ranks[model.role]
        main, best = np.concatenate(found["main"]), np.concatenate(found["any"])
        detected = share(np.concatenate(found["detected"]))
        rows.append([f"{model.role}: main item's crop, cropped catalogue (the new service)", *recalls(main), detected])
        rows.append([f"{model.role}: best of its detected items (the shopper picks)", *recalls(best), detected])
        metrics[model.role] = {
            "query_main_item_recall@1": rows[-2][1],
            "query_main_item_recall@10": rows[-2][2],
            "query_any_item_recall@1": rows[-1][1],
            "query_any_item_recall@10": rows[-1][2],
            "query_detected": detected,
        }
    body = [
        (
            f"{len(picked)} photo-like queries (`training.synth.photo.PhotoLikeQuery({args.seed})` of validation "
            "photos, each seeded by its place in `validation/`: the embedder report's queries): the garment cut "
            "out, scaled, tilted, put on clutter, relit, blurred, JPEG-compressed. Its source photo is the one right "
            f"answer among the {len(ev.photos.paths)} catalogue photos. Where nothing is detected the whole picture "
            "is searched, as the service does; *best of its detected items* takes each query's best rank over the "
            "crops of all its detections."
        ),
        Table(["query", "R@1", f"R@{TOP_K}", "queries with a detection"], rows + ev.missing_rows(4)),
    ]
    return Section("Photo-like queries among clutter", body), metrics


def query_ranks(ev: Evaluation, model: DetectorUnderTest, images: list[Image.Image], targets: np.ndarray):
    """Ranks of each query's source by its main item's crop and the best over its detections' crops; detected or not."""
    (found,) = detect(model, images, model.card.thresholds)
    margin, catalogue = model.card.crop_margin, ev.item_catalogue(model)["shape"]
    mains = [main_item(d) for d in found]
    main = embed(ev.embedder, [im if m is None else crop(im, m.box, margin) for im, m in zip(images, mains)])
    owners, crops = [], []
    for k, (image, detections) in enumerate(zip(images, found)):
        pictures = [crop(image, d.box, margin) for d in detections] or [image]
        owners += [k] * len(pictures)
        crops += pictures
    owners = np.array(owners)
    every = rank_of(embed(ev.embedder, crops, ev.args.batch_size), catalogue, targets[owners])
    best = np.array([every[owners == k].min() for k in range(len(images))])
    return rank_of(main, catalogue, targets), best, np.array([m is not None for m in mains])


def recalls(ranks: np.ndarray) -> list[float]:
    return [share(ranks < 1), share(ranks < TOP_K)]


def run_section(ev: Evaluation, timings: dict[str, float], speeds: dict[str, dict]) -> Section:
    """e. How the report was made: command, data, models, timings, versions."""
    from importlib.metadata import version

    args = ev.args
    packages = ("onnxruntime", "numpy", "pycocotools", "opencv-python-headless", "pillow")
    models = [f"{m.role}: `{m.source}` (sha256 `{m.digest}`)" for m in ev.models]
    models.append(f"embedder: `{ev.embedder.source}` (sha256 `{ev.embedder.digest}`)")
    fingerprints = ", ".join(f"{name} `{value}`" for name, value in ev.fingerprints.items())
    timing = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    return Section(
        "Run",
        [
            f"`{shlex.join(['python', '-m', 'training.detector.evaluate', *sys.argv[1:]])}`",
            "Models: " + "; ".join(models) + ".",
            (
                f"Data `{args.data_dir}`: fingerprints {fingerprints}. Masks `{args.mask_dir}`, cache "
                f"`{args.cache_dir or 'off'}`, seeds {args.seed} (queries, subsets) and {args.scene_seed} (scenes)."
            ),
            f"Timings: {timing} ({'catalogue vectors from the cache' if ev.cache_hits else 'catalogue vectors computed'}). "
            f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end: other work slows every "
            f"timing here), {args.threads} ONNX Runtime threads, {args.workers} decoding threads; "
            + ", ".join(f"{name} {version(name)}" for name in packages)
            + ".",
            Table(
                ["detector", "latency, batch 1 (ms, median)", "throughput, batch 8 (images/s)"],
                [[role, *numbers.values()] for role, numbers in speeds.items()],
                title="Detector speed: ONNX Runtime on this machine, letterboxed scene pixels in, raw outputs out",
                digits=1,
            ),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Pictures and helpers of the sections


def draw_tile(
    image: Image.Image, boxes: Sequence[tuple], side: int, region=None, caption: Sequence[str] = ()
) -> Image.Image:
    """`image` (or its `region`) fitted into a `side` square, each (box, text, colour) drawn, caption lines on top."""
    left, top = (region[0], region[1]) if region is not None else (0, 0)
    picture = image.crop(region) if region is not None else image
    factor = min(side / picture.width, side / picture.height)
    picture = picture.convert("RGB").resize(
        (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
    )
    header = 12 * len(caption)
    tile = Image.new("RGB", (side, side + header), (40, 40, 40))
    tile.paste(picture, (0, header))
    draw = ImageDraw.Draw(tile)
    for line, text in enumerate(caption):
        draw.text((3, 12 * line), text, fill="white")
    for box, text, colour in boxes:
        x0, y0, x1, y1 = (
            (box[0] - left) * factor,
            (box[1] - top) * factor + header,
            (box[2] - left) * factor,
            (box[3] - top) * factor + header,
        )
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        if text:
            where = (x0 + 2, max(header, y0 + 1))
            draw.rectangle(draw.textbbox(where, text), fill=(0, 0, 0))
            draw.text(where, text, fill=colour)
    return tile


def contact_sheet(tiles: Sequence[Image.Image], columns: int) -> Image.Image:
    width, height = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * width, math.ceil(len(tiles) / columns) * height), "white")
    for number, tile in enumerate(tiles):
        sheet.paste(tile, ((number % columns) * width, (number // columns) * height))
    return sheet


def example_scenes(ev: Evaluation, scenes: Scenes, predictions: list[list[Detection]]) -> Picture:
    rng = np.random.default_rng(ev.args.seed)
    picked = np.sort(rng.choice(len(scenes.paths), min(ev.args.examples, len(scenes.paths)), replace=False))
    tiles = []
    for i in picked:
        truth = scenes.truths[i]
        boxes = [(box, ev.classes[label], TRUTH_COLOUR) for box, label in zip(truth.boxes, truth.labels)]
        boxes += [(d.box, f"{ev.classes[d.label]} {d.score:.2f}", MODEL_COLOUR) for d in predictions[i]]
        tiles.append(draw_tile(load_image(scenes.paths[i]), boxes, 320, caption=[f"scene {i}"]))
    file = "examples_scenes.png"
    ev.args.out.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, 4).save(ev.args.out / file)
    return Picture(file, f"{ev.models[0].role}'s detections at its operating point (orange) and the true boxes (green)")


def mask_boxes(ev: Evaluation) -> np.ndarray:
    """The box of each validation photo's garment mask (the whole photo where the mask is empty)."""
    from training.synth.colors import load_mask

    def box(path: Path) -> tuple[float, ...]:
        mask = load_mask(ev.args.mask_dir, ev.args.data_dir, path)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            return 0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])
        return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)

    with ThreadPoolExecutor(max(1, ev.args.workers)) as pool:
        return np.array(list(pool.map(box, ev.photos.paths[: ev.photos.validation])), np.float32)


def speed(model: DetectorUnderTest, paths: Sequence[Path], calls: int = 20, batch: int = 8) -> dict[str, float]:
    """ONNX Runtime latency at batch 1 (median of `calls`) and throughput at `batch`, on letterboxed scenes."""
    pixels, _ = model.card.preset.batch([load_image(p) for p in paths[:batch]])
    pixels = np.concatenate([pixels] * math.ceil(batch / len(pixels)))[:batch]
    model.engine(pixels[:1])
    model.engine(pixels)
    latencies = []
    for k in range(calls):
        started = time.perf_counter()
        model.engine(pixels[k % batch : k % batch + 1])
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(max(3, calls // 4)):
        model.engine(pixels)
    throughput = max(3, calls // 4) * batch / (time.perf_counter() - started)
    log.info(
        "%s: %.1f ms at batch 1, %.0f images/s at batch %d", model.role, 1000 * np.median(latencies), throughput, batch
    )
    return {"latency_ms_batch1": 1000 * float(np.median(latencies)), "throughput_batch8": throughput}


def flat_metrics(ev: Evaluation, per_section: list[dict]) -> dict:
    """One flat dict: the candidate's numbers as they are, the previous model's prefixed `compare_`."""
    args = ev.args
    flat: dict = {
        "eval_seed": args.seed,
        "eval_scene_seed": args.scene_seed,
        "eval_catalogue": len(ev.photos.paths),
        "eval_data_fingerprint": ev.photos.fingerprint,
    }
    prefixes = {"candidate": "", "previous": "compare_"}
    for numbers in per_section:
        for key, value in numbers.items():
            if isinstance(value, dict):
                flat |= {prefixes[key] + name: item for name, item in value.items()}
            else:
                flat[key] = value
    # JSON has no NaN and the model store no None: such numbers are left out.
    return {
        key: float(value) if isinstance(value, np.floating | float) else value
        for key, value in flat.items()
        if not (isinstance(value, float | np.floating) and not math.isfinite(value))
    }


# ---------------------------------------------------------------------------------------------
# Putting it together


def load_models(args) -> tuple[list[DetectorUnderTest], dict[str, str]]:
    try:
        models = [load_detector(str(args.onnx or args.checkpoint), "candidate", args.threads)]
    except LookupError as error:
        raise SystemExit(str(error)) from None
    unavailable = {}
    if args.compare:
        try:
            models.append(load_detector(args.compare, "previous", args.threads))
        except (LookupError, ValueError, OSError) as error:  # an older card, a missing file: the report says so
            log.warning("cannot load --compare %s: %s", args.compare, error)
            unavailable["previous"] = str(error)
    return models, unavailable


def main(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    models, unavailable = load_models(args)
    embedder = load_embedder(str(args.embedder), args.threads)
    photos = load_photos(args)
    ev = Evaluation(args, models, embedder, photos, models[0].card.class_names, unavailable)
    timings: dict[str, float] = {}

    def timed(name: str, function, *inputs):
        begun = time.perf_counter()
        result = function(ev, *inputs)
        timings[name] = time.perf_counter() - begun
        return result

    scenes = timed("composing scenes", held_out_scenes_of, "single")
    multi = timed("composing 2-3 garment scenes", held_out_scenes_of, "multi")
    ev.fingerprints = {"photos": photos.fingerprint, "scenes": scenes.digest, "2-3 garment scenes": multi.digest}
    timed("catalogue", lambda ev: [ev.whole_catalogue(), *(ev.item_catalogue(model) for model in models)])
    results = [
        timed("held-out scenes", scene_section, scenes),
        timed("plain photos", plain_photo_section),
        timed("end to end", end_to_end_section, multi),
        timed("photo-like queries", query_section),
    ]
    speeds = {model.role: speed(model, scenes.paths) for model in models}
    metrics = flat_metrics(ev, [numbers for _, numbers in results] + [speeds])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    timings["total"] = time.perf_counter() - started
    intro = [introduction(ev, timings["total"])]
    sections = [section for section, _ in results] + [run_section(ev, timings, speeds)]
    write_report(args.out, "Detector evaluation", sections, intro)
    log.info("wrote %s in %.1f min", args.out, timings["total"] / 60)
    return metrics


def held_out_scenes_of(ev: Evaluation, kind: str) -> Scenes:
    args = ev.args
    if kind == "single":
        return held_out_scenes(args, ev.classes, args.scenes, args.scene_seed, 1, args.max_items)
    return held_out_scenes(args, ev.classes, args.multi_scenes, args.scene_seed + 1, 2, 3)


def introduction(ev: Evaluation, seconds: float) -> str:
    models = "; ".join(
        f"{m.role} `{m.source}` ({len(m.card.classes)} classes, input {m.card.preset.size} px, score ≥ "
        f"{m.card.thresholds.score}, crop margin {m.card.crop_margin}{', provisional' if m.card.provisional else ''})"
        for m in ev.models
    )
    missing = "".join(f" The {role} model could not be loaded: {why}." for role, why in ev.unavailable.items())
    return (
        f"Detectors: {models}. Embedder `{ev.embedder.source}`. Held-out data: `validation/` of `{ev.args.data_dir}`; "
        f"{seconds / 60:.1f} min.{missing}"
    )


def get_args_parser() -> argparse.ArgumentParser:
    from lookalike.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", type=Path, help="the detector: X.onnx with its card X.json")
    model.add_argument("--checkpoint", type=Path, help="the detector: a training checkpoint.pth, exported first")
    parser.add_argument(
        "--compare", help="another detector (X.onnx with X.json, a .pth or a model store tag), e.g. the previous"
    )
    parser.add_argument(
        "--embedder", default="training/artifacts/embedder.onnx", help="X.onnx with X.json, or a model store tag"
    )
    parser.add_argument("--data-dir", type=Path, default=get_settings().clothing_dir, help="train/ and validation/")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--scenes", type=int, default=400, help="held-out scenes of 1 to --max-items garments")
    parser.add_argument("--multi-scenes", type=int, default=150, help="held-out scenes of 2-3 garments (end to end)")
    parser.add_argument("--queries", type=int, help="photo-like queries: a seeded subset of the validation photos")
    parser.add_argument("--distractors", type=int, help="train photos in the catalogue: a seeded subset (default all)")
    parser.add_argument("--max-items", type=int, default=4)
    parser.add_argument(
        "--scene-seed", type=int, default=1000, help="training composes with 0; the 2-3 garment set uses this + 1"
    )
    parser.add_argument("--seed", type=int, default=0, help="photo-like queries, subsets, examples")
    parser.add_argument("--scenes-dir", type=Path, default=Path("var/scenes"))
    parser.add_argument("--mask-dir", type=Path, default=Path("var/masks"), help="garment mask cache (SPLIT/...)")
    parser.add_argument(
        "--cache-dir", type=_optional_path, default=Path("var/eval-cache"), help="catalogue vectors ('' = off)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="threads decoding images, processes composing scenes")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--examples", type=int, default=12, help="scenes in the examples picture")
    return parser


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir"):  # the checkpoint's export logs every graph pass
        logging.getLogger(chatty).setLevel(logging.WARNING)
    main(get_args_parser().parse_args())
