"""The robustness protocol's images, framed the way the service frames them.

Catalogue: every validation and train photo, plus generated distractors (each train photo
repainted `--recolourings` times, and a close crop of its garment), each cropped to its main
item by `lookalike.detection.main_item_box`, the indexer's own rule. Queries: one per validation photo and
query family (`training.synth.families`), framed by `lookalike.detection.frame_items` as
`/search` frames a photo; of the items found, the one a shopper would tap (the best overlap
with the garment's true box) is searched, the whole picture when nothing is found. Two
diagnostic framings ride along: the whole picture (detection off) and the true box with the
service's margin (a perfect detector).

Detections are cached on disk by the digest of the detector's input pixels and the photo's size,
and the framed catalogue as one array, so a second run (another embedder) only makes the queries.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lookalike.detection import Detection, FramedItem, box_iou, expand_box, frame_items, main_item_box, postprocess
from lookalike.engines import OnnxDetector
from lookalike.modelcard import DetectorCard
from lookalike.preprocess import EvalPreset
from training.datasets import FolderDataset, data_fingerprint, load_image
from training.embedder.baselines import FeatureCache
from training.synth.colors import load_mask, random_label, recolor
from training.synth.families import FAMILIES
from training.synth.query import Other, mask_box

log = logging.getLogger(__name__)

FRAMINGS = ("served", "whole", "true_box")
DISTRACTOR_STREAM = 31  # keeps the distractors' random numbers apart from the families'
OTHERS_STREAM = 32
OTHERS_PER_QUERY = 5
MAX_DETECTIONS = 10


@dataclass(frozen=True)
class Framer:
    """The service's framing of photos: its detector, card and margin (no detector: every photo whole)."""

    detector: OnnxDetector | None
    card: DetectorCard | None
    cache: FeatureCache
    cache_key: str = ""

    @classmethod
    def from_files(cls, onnx_path: Path | None, cache_dir: Path | None) -> Framer:
        if onnx_path is None:
            return cls(None, None, FeatureCache(None))
        card = DetectorCard.model_validate_json(onnx_path.with_suffix(".json").read_text(encoding="utf-8"))
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:16]
        return cls(OnnxDetector(onnx_path), card, FeatureCache(cache_dir), f"detections-{digest}")

    def detect(self, images: Sequence[Image.Image], batch_size: int = 1) -> list[list[Detection]]:
        """Each image's detections, as `/search` computes them (letterbox, detector, postprocess)."""
        # One photo per call by default, as the service and the indexer detect: ONNX Runtime's results
        # move in the last bits with the batch size, enough to frame an item a pixel differently.
        if self.detector is None:
            return [[] for _ in images]
        images = list(images)
        return [
            found
            for start in range(0, len(images), batch_size)
            for found in self._detect(images[start : start + batch_size])
        ]

    def _detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        pixels, letterboxes = self.card.preset.batch(images)
        # The photo's size goes into the key: it decides where the boxes land in the photo.
        digests = np.array(
            [
                hashlib.blake2b(p.tobytes() + f"{i.width}x{i.height}".encode(), digest_size=16).digest()
                for p, i in zip(pixels, images)
            ],
            dtype="S16",
        )
        rows, hits = self.cache.lookup(self.cache_key, digests)
        if not hits.all():
            missing = np.flatnonzero(~hits)
            outputs = self.detector(pixels[missing])
            found = np.stack(
                [
                    pack(postprocess(boxes, scores, letterboxes[i], self.card.thresholds))
                    for i, boxes, scores in zip(missing, outputs["boxes"], outputs["scores"])
                ]
            )
            if rows is None:
                rows = np.zeros((len(images), MAX_DETECTIONS, 6), np.float32)
            rows[missing] = found
            self.cache.store(self.cache_key, digests[missing], found)
        return [unpack(row) for row in rows]

    @property
    def margin(self) -> float:
        return self.card.crop_margin if self.card is not None else 0.0


def pack(detections: list[Detection]) -> np.ndarray:
    """Up to MAX_DETECTIONS detections as a NaN-padded (MAX_DETECTIONS, 6) array: box, label, score."""
    rows = np.full((MAX_DETECTIONS, 6), np.nan, np.float32)
    for row, detection in zip(rows, detections[:MAX_DETECTIONS]):
        row[:] = (*detection.box, detection.label, detection.score)
    return rows


def unpack(rows: np.ndarray) -> list[Detection]:
    kept = rows[~np.isnan(rows[:, 5])]
    return [Detection(tuple(float(v) for v in row[:4]), int(row[4]), float(row[5])) for row in kept]


def tapped_item(framed: list[FramedItem], truth) -> tuple[FramedItem, float]:
    """The item a shopper looking for the garment at `truth` picks: the best-overlapping detection, and its IoU."""
    detected = [item for item in framed if item.detection is not None]
    if not detected:
        return framed[0], 0.0
    overlaps = box_iou(np.array([item.detection.box for item in detected]), np.array(truth))[:, 0]
    best = int(overlaps.argmax())
    return detected[best], float(overlaps[best])


@dataclass
class ServedData:
    """Preset pixels of the catalogue and of each family's queries in each framing."""

    classes: list[str]
    catalogue: np.ndarray  # (N, crop, crop, 3): targets (validation photos) first, in query order
    catalogue_kind: np.ndarray  # "photo" (validation and train) or "distractor"
    queries: dict[str, dict[str, np.ndarray]]  # family -> framing -> (Q, crop, crop, 3)
    found: dict[str, np.ndarray]  # family -> IoU of the searched item with the garment's true box
    query_labels: np.ndarray  # the class of each query's target
    num_targets: int
    fingerprint: str

    @property
    def num_photos(self) -> int:
        return int((self.catalogue_kind == "photo").sum())


def load_served_data(args, preset: EvalPreset, framer: Framer) -> ServedData:
    train = FolderDataset(args.data_dir / "train")
    val = FolderDataset(args.data_dir / "validation", classes=train.classes)
    rng = np.random.default_rng(args.seed)
    val_rows = _subset(len(val), args.limit, rng)
    train_rows = _subset(len(train), None if args.limit is None else args.limit * 9, rng)
    val_paths = [val.samples[i].path for i in val_rows]
    train_paths = [train.samples[i].path for i in train_rows]
    photos = _decode_with_masks(val_paths, args)
    key = hashlib.sha256(
        repr(
            (
                data_fingerprint(val_paths + train_paths),
                framer.cache_key,
                preset,
                args.seed,
                args.recolourings,
                args.garment_crops,
            )
        ).encode()
    ).hexdigest()[:16]
    catalogue, kinds = cached_catalogue(
        args.cache_dir, key, lambda: _catalogue(photos, train_paths, preset, framer, args)
    )
    queries, found = _family_queries(photos, val_rows, preset, framer, args)
    return ServedData(
        classes=train.classes,
        catalogue=catalogue,
        catalogue_kind=kinds,
        queries=queries,
        found=found,
        query_labels=np.array(val.targets)[val_rows],
        num_targets=len(val_rows),
        fingerprint=data_fingerprint(val_paths + train_paths),
    )


def cached_catalogue(folder: Path | None, key: str, build) -> tuple[np.ndarray, np.ndarray]:
    """The framed catalogue from `folder` (memory-mapped), built and saved on a miss: it takes minutes to make."""
    if folder is None:
        return build()
    pixels_path, kinds_path = folder / f"served-catalogue-{key}.npy", folder / f"served-catalogue-{key}-kinds.npy"
    if not (pixels_path.is_file() and kinds_path.is_file()):
        pixels, kinds = build()
        folder.mkdir(parents=True, exist_ok=True)
        for path, array in ((pixels_path, pixels), (kinds_path, kinds)):
            partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
            np.save(partial, array)
            partial.replace(path)  # atomic: an interrupted run leaves no half file behind
    return np.load(pixels_path, mmap_mode="r"), np.load(kinds_path)


def _subset(size: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def _decode_with_masks(paths: list[Path], args) -> list[Other]:
    def load(path: Path) -> Other:
        image = load_image(path)
        return Other(image, load_mask(args.mask_cache, args.data_dir, path, image=image))

    with ThreadPoolExecutor(args.workers) as pool:
        return list(tqdm(pool.map(load, paths), total=len(paths), desc="validation photos", unit="img"))


def catalogue_pixels(images: list[Image.Image], preset: EvalPreset, framer: Framer) -> np.ndarray:
    """Catalogue photos cropped as the indexer crops them (`main_item_box`), as preset pixels."""
    crops = []
    for image, detections in zip(images, framer.detect(images)):
        box = main_item_box(detections, image.width, image.height, framer.margin)
        crops.append(image if box is None else image.crop(box))
    return preset.batch(crops)


def _distractors(path: Path, index: int, args) -> list[Image.Image]:
    """A train photo's generated distractors: its garment repainted, and a close crop of it."""
    image = load_image(path)
    mask = load_mask(args.mask_cache, args.data_dir, path, image=image)
    rng = np.random.default_rng([args.seed, DISTRACTOR_STREAM, index])
    made = [recolor(image, mask, random_label(rng), rng) for _ in range(args.recolourings)]
    box = mask_box(mask)
    if args.garment_crops and box is not None:
        grow = rng.uniform(0.0, 0.08)
        made.append(image.crop(expand_box(box, image.width, image.height, grow)))
    return made


def _catalogue(photos: list[Other], train_paths: list[Path], preset: EvalPreset, framer: Framer, args):
    """Validation photos (the targets), train photos, then the distractors, framed; and each one's kind."""
    parts = [catalogue_pixels([photo.image for photo in photos], preset, framer)]
    batch = 32
    bar = tqdm(total=len(train_paths), desc="catalogue photos", unit="img", dynamic_ncols=True)
    with ThreadPoolExecutor(args.workers) as pool:
        for start in range(0, len(train_paths), batch):
            images = list(pool.map(load_image, train_paths[start : start + batch]))
            parts.append(catalogue_pixels(images, preset, framer))
            bar.update(len(images))
    bar.close()
    num_photos = len(photos) + len(train_paths)
    made = 0
    bar = tqdm(total=len(train_paths), desc="distractors", unit="photo", dynamic_ncols=True)
    with ThreadPoolExecutor(args.workers) as pool:
        for start in range(0, len(train_paths), batch):
            chunk = list(enumerate(train_paths[start : start + batch], start))
            images = [
                image for group in pool.map(lambda item: _distractors(item[1], item[0], args), chunk) for image in group
            ]
            parts.append(catalogue_pixels(images, preset, framer))
            made += len(images)
            bar.update(len(chunk))
    bar.close()
    kinds = np.array(["photo"] * num_photos + ["distractor"] * made)
    return np.concatenate(parts), kinds


def _family_queries(photos: list[Other], val_rows: np.ndarray, preset: EvalPreset, framer: Framer, args):
    """family -> framing -> pixels, and family -> IoU of the searched item with the true box."""
    queries, found = {}, {}
    for name in args.families:
        render = QueryRenderer(FAMILIES[name].build(args.seed), photos, val_rows, args.seed)
        with ThreadPoolExecutor(args.workers) as pool:
            made = list(
                tqdm(pool.map(render, range(len(photos))), total=len(photos), desc=f"queries: {name}", unit="img")
            )
        queries[name], found[name] = frame_queries(made, preset, framer)
    return queries, found


@dataclass(frozen=True)
class QueryRenderer:
    """The query of validation photo `position`, with other validation products to show beside or over it."""

    make: object
    photos: list[Other]
    val_rows: np.ndarray
    seed: int

    def __call__(self, position: int):
        index = int(self.val_rows[position])  # the dataset index seeds the query, as in the main report
        rng = np.random.default_rng([self.seed, OTHERS_STREAM, index])
        picked = rng.choice(len(self.photos) - 1, min(OTHERS_PER_QUERY, len(self.photos) - 1), replace=False)
        others = [self.photos[i if i < position else i + 1] for i in picked]  # never the target itself
        photo = self.photos[position]
        return self.make(photo.image, photo.mask, index, others)


def frame_queries(made, preset: EvalPreset, framer: Framer) -> tuple[dict[str, np.ndarray], np.ndarray]:
    images = [query.image for query in made]
    served, overlaps = [], []
    for query, detections in zip(made, framer.detect(images)):
        item, overlap = tapped_item(
            frame_items(detections, query.image.width, query.image.height, framer.margin), query.box
        )
        served.append(query.image.crop(item.box))
        overlaps.append(overlap)
    true_boxes = [
        query.image.crop(expand_box(query.box, query.image.width, query.image.height, framer.margin or 0.2))
        for query in made
    ]
    framings = {"served": preset.batch(served), "whole": preset.batch(images), "true_box": preset.batch(true_boxes)}
    return framings, np.array(overlaps)
