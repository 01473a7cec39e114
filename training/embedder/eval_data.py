"""What the evaluation runs on: the models under test and the protocol's images.

`load_model` opens an embedder from the BentoML model store or an .onnx file with its sidecar;
`load_eval_data` decodes every image of the protocol once into preset pixels in one array:
the validation images, train images as catalogue distractors, a photo-like query per
validation image and its repaintings (see `training.embedder.evaluate` for the protocol).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lookalike.engines import EMBEDDER_FILE, OnnxEmbedder
from lookalike.preprocess import EvalPreset
from training.datasets import FolderDataset, data_fingerprint, load_image
from training.synth.colors import ColorLabel, load_mask, random_label, recolor
from training.synth.photo import PhotoLikeQuery

log = logging.getLogger(__name__)

RECOLOUR_STREAM = 1  # keeps the repainting's random numbers apart from PhotoLikeQuery's (seed, index)

# ---------------------------------------------------------------------------------------------
# Models


@dataclass
class ModelUnderTest:
    name: str
    embedder: OnnxEmbedder
    preset: EvalPreset
    shape_classes: list[str]
    heads: str


def load_model(tag: str, onnx_path: Path | None = None) -> ModelUnderTest:
    """The embedder `tag` from the BentoML model store, or the graph at `onnx_path`.

    The graph's metadata (preprocessing, class names) comes from its shipped sidecar
    (`X.onnx` -> `X.json`, see `lookalike.modelstore`) when there is one, else from `tag` in the
    model store, else the defaults.
    """
    if onnx_path is None:
        stored = _stored_model(tag)
        return _model(str(stored.tag), stored.path_of(EMBEDDER_FILE), dict(stored.info.metadata))
    sidecar = onnx_path.with_suffix(".json")
    if sidecar.is_file():
        return _model(str(onnx_path), onnx_path, json.loads(sidecar.read_text(encoding="utf-8")))
    try:
        metadata = dict(_stored_model(tag).info.metadata)
    except LookupError:
        log.warning("no %s and no %s in the model store: default preprocessing for %s", sidecar, tag, onnx_path)
        metadata = {}
    return _model(str(onnx_path), onnx_path, metadata)


def load_model_reference(reference: str) -> ModelUnderTest:
    """A model store tag, or an .onnx file with its sidecar (e.g. a shipped embedder from git history)."""
    if not reference.endswith(".onnx"):
        return load_model(reference)
    path = Path(reference)
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        raise LookupError(f"{reference}: no such graph with its metadata sidecar {path.with_suffix('.json').name}")
    return load_model(reference, path)


def _stored_model(tag: str):
    import bentoml

    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as error:
        raise LookupError(f"{tag} is not in the model store ({os.environ.get('BENTOML_HOME', '~/bentoml')})") from error


def _model(name: str, path: str | Path, metadata: dict) -> ModelUnderTest:
    config = metadata.get("config", {})
    return ModelUnderTest(
        name=name,
        embedder=OnnxEmbedder(path),
        preset=EvalPreset.from_dict(metadata["preprocess"]) if "preprocess" in metadata else EvalPreset(),
        shape_classes=list(config.get("shape_classes", [])),
        heads=config.get("heads", "unknown"),
    )


# ---------------------------------------------------------------------------------------------
# Data: every image of the protocol, decoded once, as preset pixels in one array


@dataclass
class EvalData:
    classes: list[str]
    pixels: np.ndarray  # (N, crop, crop, 3) uint8: the parts below, in this order
    parts: dict[str, slice]  # "centre" (validation), "catalogue" (train), "queries", "recoloured"
    val_labels: np.ndarray
    train_labels: np.ndarray
    recolour_source: np.ndarray  # validation position of each repainting
    recolour_labels: list[ColorLabel]
    fingerprint: str

    def count(self, part: str) -> int:
        return self.parts[part].stop - self.parts[part].start


@dataclass(frozen=True)
class ValidationViews:
    """Makes a validation image's preset crop, its photo-like query and its repaintings."""

    preset: EvalPreset
    mask_root: Path
    mask_cache: Path
    seed: int
    recolours: int

    def __call__(self, item: tuple[int, Path]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[ColorLabel]]:
        index, path = item
        image = load_image(path)
        mask = load_mask(self.mask_cache, self.mask_root, path, image=image)
        query = PhotoLikeQuery(self.seed)(image, mask, index)
        rng = np.random.default_rng([self.seed, RECOLOUR_STREAM, index])
        labels = distinct_colour_labels(rng, self.recolours)
        repainted = [self.preset(recolor(image, mask, label, rng)) for label in labels]
        return self.preset(image), self.preset(query), repainted, labels


def distinct_colour_labels(rng: np.random.Generator, count: int) -> list[ColorLabel]:
    """`count` random labels whose (first) colours differ, so each repainting is another colour."""
    labels: list[ColorLabel] = []
    while len(labels) < count:
        label = random_label(rng)
        if label.colour not in {other.colour for other in labels}:
            labels.append(label)
    return labels


def subset(size: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def threaded_map(function: Callable, items: Sequence, workers: int, desc: str):
    """`function` over `items` in threads (PIL and OpenCV release the GIL), in order, with a progress bar."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        yield from tqdm(pool.map(function, items), total=len(items), desc=desc, unit="img", dynamic_ncols=True)


def load_eval_data(args: argparse.Namespace, preset: EvalPreset) -> EvalData:
    train = FolderDataset(args.data_dir / "train")
    val = FolderDataset(args.data_dir / "validation", classes=train.classes)
    rng = np.random.default_rng(args.seed)
    val_rows = subset(len(val), args.limit, rng)
    train_limit = None if args.limit is None else round(args.limit * len(train) / len(val))
    train_rows = subset(len(train), train_limit, rng)
    n, m, r = len(val_rows), len(train_rows), args.recolours
    parts = {"centre": slice(0, n), "catalogue": slice(n, n + m), "queries": slice(n + m, 2 * n + m)}
    parts["recoloured"] = slice(2 * n + m, 2 * n + m + n * r)
    pixels = np.empty((2 * n + m + n * r, preset.crop_size, preset.crop_size, 3), np.uint8)
    labels: list[ColorLabel] = []
    views = ValidationViews(preset, args.data_dir, args.mask_cache, args.seed, r)
    items = [(int(i), val.samples[i].path) for i in val_rows]  # the dataset index seeds the query
    for row, (centre, query, repainted, drawn) in enumerate(threaded_map(views, items, args.workers, "queries")):
        pixels[row], pixels[n + m + row] = centre, query
        pixels[2 * n + m + row * r : 2 * n + m + (row + 1) * r] = repainted
        labels += drawn
    train_paths = [train.samples[i].path for i in train_rows]
    for row, crop in enumerate(threaded_map(lambda p: preset(load_image(p)), train_paths, args.workers, "catalogue")):
        pixels[n + row] = crop
    val_paths = [val.samples[i].path for i in val_rows]
    return EvalData(
        classes=train.classes,
        pixels=pixels,
        parts=parts,
        val_labels=np.array(val.targets)[val_rows],
        train_labels=np.array(train.targets)[train_rows],
        recolour_source=np.repeat(np.arange(n), r),
        recolour_labels=labels,
        fingerprint=data_fingerprint(val_paths + train_paths),
    )
