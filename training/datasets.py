"""Labelled garment crops for training: folders, COCO boxes and a plain annotation file.

Every dataset yields `(crop, class_index)` with `crop` an RGB `PIL.Image` (or whatever
`transform` makes of it), has `classes` (index -> name) and `samples` (one `Sample` per item:
image path, class index, crop box or None), like torchvision's `ImageFolder`. Passing the
same `classes` list to the train and validation datasets gives both the same indices.

Annotation file
---------------
For boxes drawn with any tool, one text file (UTF-8) lists images and their objects::

    # comments start with '#'; blank lines separate images
    shop-a/0001.jpg
    dress 12 30 410 590
    shoes 300 500 398 600

    shop-a/0002.jpg
    t-shirt 0 0 399 533

The first line of a block is an image path, relative to the annotation file's folder; each
further line is one object: `class x0 y0 x1 y1`, the box corners in pixels of the stored
image (x to the right, y down; x1 > x0, y1 > y0; coordinates may be fractional and may
exceed the image, they are clipped). Class names may contain spaces (the last four fields
are the box). A block with no objects is allowed and yields nothing. Mistakes raise
`AnnotationError` with `FILE:LINE: reason`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from torch.utils.data import Dataset, Subset

from lookalike.images import IMAGE_SUFFIXES, decode_image

logger = logging.getLogger(__name__)

# Still-image formats Pillow decodes; animated GIFs are left out of training on purpose.
# Local training files are trusted more than uploads, but a corrupt giant should still fail fast.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


class Sample(NamedTuple):
    """One item of a dataset: the image file, its class index and the object's box (None: all of it)."""

    path: Path
    label: int
    box: Box | None = None


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode a local image file the way serving decodes uploads (EXIF-upright RGB)."""
    return decode_image(Path(path).read_bytes(), max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def pad_and_clip(box: Box, image_size: tuple[int, int], padding: float) -> tuple[int, int, int, int]:
    """Grow `box` by `padding` x its width/height on every side, clip to the image, round outwards."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = padding * (x1 - x0), padding * (y1 - y0)
    width, height = image_size
    left, top = max(0, math.floor(x0 - pad_x)), max(0, math.floor(y0 - pad_y))
    right, bottom = min(width, math.ceil(x1 + pad_x)), min(height, math.ceil(y1 + pad_y))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return left, top, right, bottom


def resolve_classes(found: Iterable[str], classes: Sequence[str] | None, where: str) -> list[str]:
    """The class list: `classes` when given (every found name must be in it), else the sorted names."""
    found = set(found)
    if classes is None:
        return sorted(found)
    unknown = sorted(found - set(classes))
    if unknown:
        raise ValueError(f"{where} has classes {unknown} that are not in the given class list {list(classes)}")
    return list(classes)


class LabelledImages(Dataset):
    """Shared behaviour: `samples`, `classes`, loading (and cropping) an item, the transform."""

    def __init__(self, samples: list[Sample], classes: list[str], transform: Callable | None, padding: float = 0.0):
        self.samples = samples
        self.classes = classes
        self.transform = transform
        self.padding = padding

    @property
    def targets(self) -> list[int]:
        return [sample.label for sample in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def crop_box(self, index: int, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The pixel box `load` cuts out of the stored image, or None for the whole image."""
        box = self.samples[index].box
        return None if box is None else pad_and_clip(box, image_size, self.padding)

    def load_with_box(self, index: int) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
        """The item's RGB crop before `transform`, and the pixel box it was cut from (None: whole image)."""
        image = load_image(self.samples[index].path)
        box = self.crop_box(index, image.size)
        return (image, None) if box is None else (image.crop(box), box)

    def load(self, index: int) -> Image.Image:
        return self.load_with_box(index)[0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index].label


class FolderDataset(LabelledImages):
    """One sub-folder per class (nested folders allowed), like torchvision's `ImageFolder`.

    Classes are the sorted sub-folder names unless `classes` fixes them (then a folder not in
    the list is an error, and a listed class may have no folder, e.g. in a small validation set).
    """

    def __init__(
        self, root: str | os.PathLike, transform: Callable | None = None, classes: Sequence[str] | None = None
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")
        folders = {path.name: path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(".")}
        class_list = resolve_classes(folders, classes, f"dataset folder {self.root}")
        samples = [
            Sample(path, label)
            for label, name in enumerate(class_list)
            if name in folders
            for path in sorted(folders[name].rglob("*"))
            if is_image_file(path)
        ]
        if not samples:
            raise ValueError(
                f"dataset folder {self.root} has no images in class sub-folders "
                f"(expected <class>/<image> with suffix in {sorted(IMAGE_SUFFIXES)})"
            )
        super().__init__(samples, class_list, transform)


def without_classes(dataset: LabelledImages, names: Iterable[str]) -> LabelledImages:
    """`dataset` with every image of the classes `names` dropped and the rest relabelled.

    For class-held-out training: the model never sees those garments, and its classifier has
    no output for them.
    """
    names = set(names)
    unknown = sorted(names - set(dataset.classes))
    if unknown:
        raise ValueError(f"cannot leave out {unknown}: the classes are {dataset.classes}")
    kept = [name for name in dataset.classes if name not in names]
    new_label = {dataset.classes.index(name): label for label, name in enumerate(kept)}
    dataset.samples = [
        sample._replace(label=new_label[sample.label]) for sample in dataset.samples if sample.label in new_label
    ]
    dataset.classes = kept
    return dataset


class ImageList(LabelledImages):
    """Plain image paths with no class (label 0, class "unknown"), e.g. a catalogue to recolour."""

    def __init__(self, paths: Iterable[str | os.PathLike], transform: Callable | None = None):
        samples = [Sample(Path(path), 0) for path in paths]
        if not samples:
            raise ValueError("no image paths given")
        super().__init__(samples, ["unknown"], transform)


class CocoCrops(LabelledImages):
    """One crop per box of a COCO-format annotation file (`bbox` is [x, y, width, height]).

    Crowd boxes (`iscrowd`) and boxes narrower or lower than `min_size` pixels after clipping
    to the image are skipped; each crop is grown by `padding` x the box size on every side.
    Classes are the `categories` names in id order, unless `classes` fixes the list.
    """

    def __init__(
        self,
        annotation_json: str | os.PathLike,
        images_root: str | os.PathLike,
        transform: Callable | None = None,
        padding: float = 0.05,
        min_size: int = 8,
        *,
        classes: Sequence[str] | None = None,
    ):
        coco = json.loads(Path(annotation_json).read_text(encoding="utf-8"))
        categories = {category["id"]: category["name"] for category in coco.get("categories", [])}
        if classes is None:  # the file's category order, so indices follow its ids
            class_list = [categories[key] for key in sorted(categories)]
        else:
            class_list = resolve_classes(categories.values(), classes, str(annotation_json))
        label_of = {key: class_list.index(name) for key, name in categories.items()}
        images = {image["id"]: image for image in coco.get("images", [])}
        samples, skipped = [], 0
        for annotation in coco.get("annotations", []):
            image = images.get(annotation["image_id"])
            if image is None or annotation["category_id"] not in label_of:
                raise ValueError(
                    f"{annotation_json}: annotation {annotation.get('id')} names an unknown image or category"
                )
            box = self._clipped_box(annotation["bbox"], image)
            if annotation.get("iscrowd") or box[2] - box[0] < min_size or box[3] - box[1] < min_size:
                skipped += 1
                continue
            samples.append(Sample(Path(images_root) / image["file_name"], label_of[annotation["category_id"]], box))
        logger.info("%s: %d crops, %d crowd or small boxes skipped", annotation_json, len(samples), skipped)
        super().__init__(samples, class_list, transform, padding)

    @staticmethod
    def _clipped_box(bbox: Sequence[float], image: dict) -> Box:
        x, y, width, height = (float(value) for value in bbox)
        right, bottom = x + width, y + height
        if "width" in image and "height" in image:  # else `load` clips against the decoded image
            right, bottom = min(right, image["width"]), min(bottom, image["height"])
        return max(0.0, x), max(0.0, y), right, bottom


class AnnotationError(ValueError):
    """A line of an annotation file is wrong; the message starts with FILE:LINE."""


@dataclass(frozen=True)
class BoxAnnotation:
    image: Path
    class_name: str
    box: Box
    line: int


def parse_annotation_file(path: str | os.PathLike) -> list[BoxAnnotation]:
    """Read the annotation file format of this module's docstring; raise `AnnotationError` on a bad line."""
    path = Path(path)
    annotations, image = [], None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            image = None
        elif image is None:
            image = _parse_image_line(path, number, line)
        else:
            name, box = _parse_object_line(path, number, line)
            annotations.append(BoxAnnotation(image, name, box, number))
    return annotations


def _parse_image_line(path: Path, number: int, line: str) -> Path:
    image = path.parent / line
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        raise AnnotationError(f"{path}:{number}: expected an image path, got {line!r}")
    if not image.is_file():
        raise AnnotationError(f"{path}:{number}: unknown image {line!r} (no file {image})")
    return image


def _parse_object_line(path: Path, number: int, line: str) -> tuple[str, Box]:
    fields = line.rsplit(maxsplit=4)
    if len(fields) < 5:
        raise AnnotationError(f"{path}:{number}: missing coordinates: expected 'class x0 y0 x1 y1', got {line!r}")
    try:
        x0, y0, x1, y1 = (float(value) for value in fields[1:])
    except ValueError:
        raise AnnotationError(f"{path}:{number}: coordinates must be numbers, got {' '.join(fields[1:])!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(f"{path}:{number}: empty box: need x1 > x0 and y1 > y0, got {x0:g} {y0:g} {x1:g} {y1:g}")
    return fields[0], (x0, y0, x1, y1)


class AnnotationFileCrops(LabelledImages):
    """One crop per object line of an annotation file (format in the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Callable | None = None,
        padding: float = 0.05,
        *,
        classes: Sequence[str] | None = None,
    ):
        annotations = parse_annotation_file(path)
        if not annotations:
            raise ValueError(f"{path} has no objects")
        class_list = resolve_classes((item.class_name for item in annotations), classes, str(path))
        index = {name: label for label, name in enumerate(class_list)}
        samples = [Sample(item.image, index[item.class_name], item.box) for item in annotations]
        super().__init__(samples, class_list, transform, padding)


def data_fingerprint(paths_or_dataset: LabelledImages | Iterable[str | os.PathLike]) -> str:
    """A short sha256 of what a model was trained on: relative paths, file sizes, labels and boxes.

    Cheap (one `stat` per file, no reading) and independent of where the data lies on disk. An
    edit that keeps a file's size is not seen; renaming, adding, removing or relabelling is.
    A folder among `paths` stands for the images under it.
    """
    rows = _fingerprint_rows(paths_or_dataset)
    if not rows:
        raise ValueError("nothing to fingerprint")
    base = os.path.commonpath([path for path, *_ in rows]) if len(rows) > 1 else os.path.dirname(rows[0][0])
    digest = hashlib.sha256()
    for path, label, box in sorted((os.path.relpath(path, base), label, box) for path, label, box in rows):
        size = os.path.getsize(os.path.join(base, path))
        digest.update(f"{Path(path).as_posix()}\t{size}\t{label}\t{box}\n".encode())
    return digest.hexdigest()[:16]


def _fingerprint_rows(paths_or_dataset) -> list[tuple[str, str, str]]:
    if isinstance(paths_or_dataset, LabelledImages):
        classes = paths_or_dataset.classes
        return [(str(Path(s.path).resolve()), classes[s.label], str(s.box)) for s in paths_or_dataset.samples]
    rows = []
    for path in map(Path, paths_or_dataset):
        files = sorted(p for p in path.rglob("*") if is_image_file(p)) if path.is_dir() else [path]
        rows.extend((str(file.resolve()), "", "None") for file in files)
    return rows


def split_by_fraction(dataset: LabelledImages, fraction: float, *, seed: int = 0) -> tuple[Subset, Subset]:
    """Deterministic (train, holdout) split: held out when a seeded hash of the image path is below `fraction`.

    Hashing the image path, not the index, keeps the split stable when files are added, and keeps
    every crop of one photo on the same side, so no photo leaks from training into the holdout.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    base = os.path.commonpath([str(Path(s.path).resolve().parent) for s in dataset.samples])
    train, holdout = [], []
    for index, sample in enumerate(dataset.samples):
        key = f"{seed}\t{Path(os.path.relpath(Path(sample.path).resolve(), base)).as_posix()}".encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        (holdout if draw < fraction else train).append(index)
    return Subset(dataset, train), Subset(dataset, holdout)
