"""COCO detection JSON: writing, reading, and conversion to and from the plain annotation file.

Only what a box detector needs: `images` (id, file_name, width, height), `annotations` (id,
image_id, category_id, bbox [x, y, width, height] in pixels, area, iscrowd 0) and `categories`
(id, name). Ids are numbered from 1. Two extra fields ride on each annotation when known:
`source`, the photo a synthetic garment was cut from (relative to the data root), and
`visible`, the share of its pixels left uncovered. A `file_name` is relative to the JSON
file's folder. Coordinates are kept to 1/1000 of a pixel.

Category ids are the rubricator's where the class maps to it (`category_ids`, through a
mapping file such as `indexer/mappings/clothing.txt`); classes that map to nothing (e.g.
`hat`) get ids from 10000 up, so the two never collide.

The plain annotation file (format in `training.datasets`) has neither sizes, `source` nor
`visible`, and images without objects do not survive its parser: converting a COCO file to it
and back keeps the boxes and class names only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from training.datasets import Box, load_image, parse_annotation_file

DEFAULT_MAPPING = Path(__file__).resolve().parents[2] / "indexer" / "mappings" / "clothing.txt"
UNMAPPED_FIRST_ID = 10000
DECIMALS = 3


class CocoError(ValueError):
    """A COCO file that cannot be used; the message names the file and the image or annotation id."""


class AnnotationLike(Protocol):
    box: Box  # x0, y0, x1, y1 in pixels
    category: str
    source: str
    visible: float


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str  # relative to the JSON file's folder
    width: int
    height: int


@dataclass(frozen=True)
class CocoAnnotation:
    """One box, xyxy in pixels; `source` is "" and `visible` 1.0 when the file does not say."""

    box: Box
    category: str
    source: str = ""
    visible: float = 1.0


@dataclass(frozen=True)
class CocoDataset:
    """A COCO file read back: `annotations[i]` are the boxes of `images[i]`; `root` is the JSON's folder."""

    images: list[CocoImage]
    annotations: list[list[CocoAnnotation]]
    categories: list[tuple[int, str]]
    root: Path = field(default=Path("."), compare=False)

    def image_path(self, index: int) -> Path:
        return self.root / self.images[index].file_name


def category_ids(class_names: Sequence[str], mapping_file: str | os.PathLike | None = None) -> list[tuple[int, str]]:
    """(COCO id, name) per class in the given order: the rubricator id when the mapping has one, else 10000 up."""
    from lookalike.mapping import CategoryMapping  # the rubricator loads only when ids are asked for
    from lookalike.taxonomy import load_rubricator

    mapping = CategoryMapping.load(DEFAULT_MAPPING if mapping_file is None else mapping_file, load_rubricator())
    categories, owner, unmapped = [], {}, UNMAPPED_FIRST_ID
    for name in class_names:
        category_id = mapping.map(name)
        if category_id is None:
            category_id, unmapped = unmapped, unmapped + 1
        if category_id in owner:
            raise ValueError(f"classes {owner[category_id]!r} and {name!r} both map to category {category_id}")
        owner[category_id] = name
        categories.append((category_id, name))
    return categories


def write_coco(
    path: str | os.PathLike,
    images: Sequence[tuple[str, int, int]],
    annotations: Sequence[Sequence[AnnotationLike]],
    categories: Sequence[tuple[int, str]],
) -> Path:
    """Write a COCO file: `images` as (file_name, width, height), `annotations[i]` the boxes of image i."""
    if len(images) != len(annotations):
        raise ValueError(f"{len(images)} images but {len(annotations)} annotation lists")
    category_of = {name: category_id for category_id, name in categories}
    coco_images, coco_annotations = [], []
    for image_id, ((file_name, width, height), boxes) in enumerate(zip(images, annotations, strict=True), start=1):
        coco_images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        for item in boxes:
            if item.category not in category_of:
                raise ValueError(f"{file_name}: class {item.category!r} is not among the categories")
            x0, y0, x1, y1 = (round(float(value), DECIMALS) for value in item.box)
            width_, height_ = round(x1 - x0, DECIMALS), round(y1 - y0, DECIMALS)
            coco_annotations.append(
                {
                    "id": len(coco_annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_of[item.category],
                    "bbox": [x0, y0, width_, height_],
                    "area": round(width_ * height_, DECIMALS),
                    "iscrowd": 0,
                    "source": item.source,
                    "visible": round(float(item.visible), DECIMALS),
                }
            )
    coco = {
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [{"id": category_id, "name": name} for category_id, name in categories],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(coco, indent=1, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)
    return path


def read_coco(path: str | os.PathLike) -> CocoDataset:
    """Read a COCO detection file; raise `CocoError` on unknown ids or malformed entries."""
    path = Path(path)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        categories = [(int(item["id"]), str(item["name"])) for item in coco["categories"]]
        images = [
            CocoImage(int(item["id"]), str(item["file_name"]), int(item["width"]), int(item["height"]))
            for item in coco["images"]
        ]
        raw_annotations = list(coco["annotations"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CocoError(f"{path}: not a COCO detection file ({type(error).__name__}: {error})") from None
    name_of = dict(categories)
    row_of = {image.id: row for row, image in enumerate(images)}
    if len(row_of) != len(images):
        raise CocoError(f"{path}: image ids are not unique")
    annotations: list[list[CocoAnnotation]] = [[] for _ in images]
    for item in raw_annotations:
        annotation_id = item.get("id") if isinstance(item, dict) else None
        where = f"{path}: annotation {annotation_id}"
        if not isinstance(item, dict):
            raise CocoError(f"{where}: expected an object, got {item!r}")
        if item.get("category_id") not in name_of:
            raise CocoError(f"{where}: unknown category id {item.get('category_id')!r}")
        if item.get("image_id") not in row_of:
            raise CocoError(f"{where}: unknown image id {item.get('image_id')!r}")
        box = _xyxy(item.get("bbox"), where)
        try:
            visible = float(item.get("visible", 1.0))
        except (TypeError, ValueError):
            raise CocoError(f"{where}: visible must be a number, got {item.get('visible')!r}") from None
        category = name_of[item["category_id"]]
        annotations[row_of[item["image_id"]]].append(
            CocoAnnotation(box, category, str(item.get("source", "")), visible)
        )
    return CocoDataset(images, annotations, categories, path.parent)


def _xyxy(bbox: Any, where: str) -> Box:
    numbers = isinstance(bbox, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    if not numbers or len(bbox) != 4:
        raise CocoError(f"{where}: bbox must be [x, y, width, height] numbers, got {bbox!r}")
    x, y, width, height = (float(value) for value in bbox)
    if not all(math.isfinite(value) for value in (x, y, width, height)) or width <= 0 or height <= 0:
        raise CocoError(f"{where}: bbox needs finite numbers and a positive width and height, got {bbox!r}")
    return x, y, round(x + width, DECIMALS), round(y + height, DECIMALS)


# ---------------------------------------------------------------------------------------------
# The plain annotation file


def coco_to_annotation_file(coco: CocoDataset, path: str | os.PathLike) -> Path:
    """Write `coco`'s boxes as an annotation file; image paths become relative to its folder."""
    path = Path(path)
    blocks = []
    for index, boxes in enumerate(coco.annotations):
        image = os.path.relpath(coco.image_path(index).resolve(), path.parent.resolve())
        lines = [Path(image).as_posix()]
        lines += [f"{item.category} {' '.join(_number(value) for value in item.box)}" for item in boxes]
        blocks.append("\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def annotation_file_to_coco(
    path: str | os.PathLike, out: str | os.PathLike, mapping_file: str | os.PathLike | None = None
) -> Path:
    """Write the annotation file's images and boxes as COCO at `out` (image sizes read from the images)."""
    out = Path(out)
    per_image: dict[Path, list[CocoAnnotation]] = {}
    for item in parse_annotation_file(path):
        per_image.setdefault(item.image, []).append(CocoAnnotation(item.box, item.class_name))
    images = []
    for image in per_image:
        width, height = load_image(image).size
        images.append((Path(os.path.relpath(image.resolve(), out.parent.resolve())).as_posix(), width, height))
    names = sorted({item.category for boxes in per_image.values() for item in boxes})
    return write_coco(out, images, list(per_image.values()), category_ids(names, mapping_file))


def _number(value: float) -> str:
    return f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
