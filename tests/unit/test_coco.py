import json

import pytest
from PIL import Image

from lookalike.taxonomy import load_rubricator
from training.datasets import parse_annotation_file
from training.detector.coco import (
    CocoDataset,
    CocoError,
    annotation_file_to_coco,
    category_ids,
    coco_to_annotation_file,
    read_coco,
    write_coco,
)
from training.synth.scenes import SceneAnnotation

CATEGORIES = [(2, "dress"), (10000, "hat"), (232, "mens-shoes")]
IMAGES = [("images/a.jpg", 64, 48), ("images/b.jpg", 40, 30), ("images/empty.jpg", 20, 20)]
ANNOTATIONS = [
    [
        SceneAnnotation((1.5, 2.25, 30.0, 40.125), "dress", "validation/dress/x.jpg", 0.75),
        SceneAnnotation((10.0, 0.0, 64.0, 48.0), "mens-shoes", "validation/shoes/y.jpg", 1.0),
    ],
    [SceneAnnotation((0.001, 3.0, 12.5, 29.999), "hat", "validation/hat/z.jpg", 0.5)],
    [],
]


def fields(annotation):
    return annotation.box, annotation.category, annotation.source, annotation.visible


def test_write_then_read_gives_the_same_dataset(tmp_path):
    path = write_coco(tmp_path / "coco.json", IMAGES, ANNOTATIONS, CATEGORIES)
    coco = read_coco(path)
    assert [(image.file_name, image.width, image.height) for image in coco.images] == IMAGES
    assert [image.id for image in coco.images] == [1, 2, 3]
    assert [[fields(item) for item in boxes] for boxes in coco.annotations] == [
        [fields(item) for item in boxes] for boxes in ANNOTATIONS
    ]
    assert coco.categories == CATEGORIES
    assert coco.image_path(0) == tmp_path / "images" / "a.jpg"

    raw = json.loads(path.read_text())
    first = raw["annotations"][0]
    assert first["id"] == 1 and first["image_id"] == 1 and first["category_id"] == 2 and first["iscrowd"] == 0
    assert first["bbox"] == [1.5, 2.25, 28.5, 37.875] and first["area"] == pytest.approx(28.5 * 37.875, abs=1e-3)
    assert [item["image_id"] for item in raw["annotations"]] == [1, 1, 2]

    again = read_coco(write_coco(tmp_path / "again.json", IMAGES, coco.annotations, coco.categories))
    assert again == coco


def test_unknown_class_is_refused_on_write(tmp_path):
    with pytest.raises(ValueError, match="'skirt'"):
        write_coco(tmp_path / "c.json", IMAGES[:1], [[SceneAnnotation((0, 0, 1, 1), "skirt", "", 1.0)]], CATEGORIES)


def broken(tmp_path, change):
    path = write_coco(tmp_path / "coco.json", IMAGES, ANNOTATIONS, CATEGORIES)
    coco = json.loads(path.read_text())
    change(coco["annotations"][1])
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda item: item.update(category_id=7), "annotation 2: unknown category id 7"),
        (lambda item: item.update(image_id=99), "annotation 2: unknown image id 99"),
        (lambda item: item.update(bbox=[1, 2, 3]), "annotation 2: bbox must be"),
        (lambda item: item.update(bbox=[1, 2, -3, 4]), "annotation 2: bbox needs"),
        (lambda item: item.update(bbox=[1, 2, "3", 4]), "annotation 2: bbox must be"),
        (lambda item: item.pop("bbox"), "annotation 2: bbox must be"),
        (lambda item: item.update(visible="most"), "annotation 2: visible must be a number"),
    ],
)
def test_bad_annotations_raise_coco_error_naming_them(tmp_path, change, message):
    with pytest.raises(CocoError, match=message):
        read_coco(broken(tmp_path, change))


def test_not_coco_raises_coco_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(CocoError, match="not a COCO detection file"):
        read_coco(path)


def test_annotation_file_round_trip(tmp_path):
    for file_name, width, height in IMAGES:
        (tmp_path / file_name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (width, height)).save(tmp_path / file_name)
    coco = read_coco(write_coco(tmp_path / "coco.json", IMAGES, ANNOTATIONS, CATEGORIES))

    text_file = coco_to_annotation_file(coco, tmp_path / "labels" / "boxes.txt")
    parsed = parse_annotation_file(text_file)
    assert [(item.image.resolve(), item.class_name, item.box) for item in parsed] == [
        ((tmp_path / IMAGES[row][0]).resolve(), item.category, item.box)
        for row, boxes in enumerate(ANNOTATIONS)
        for item in boxes
    ]

    back = read_coco(annotation_file_to_coco(text_file, tmp_path / "back" / "coco.json"))
    assert [(back.image_path(i).resolve(), image.width, image.height) for i, image in enumerate(back.images)] == [
        ((tmp_path / name).resolve(), width, height)
        for name, width, height in IMAGES[:2]  # no objects: not kept
    ]
    assert [[(item.box, item.category) for item in boxes] for boxes in back.annotations] == [
        [(item.box, item.category) for item in boxes] for boxes in ANNOTATIONS[:2]
    ]
    assert isinstance(back, CocoDataset)


def test_category_ids_use_the_rubricator_and_number_the_rest(tmp_path):
    rubricator = load_rubricator()
    ids = category_ids(["t-shirt", "hat", "dress", "scarf"])
    assert ids == [
        (rubricator.get("mens-t-shirts").id, "t-shirt"),
        (10000, "hat"),
        (rubricator.get("dress").id, "dress"),
        (10001, "scarf"),
    ]
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("dress => skirt\n")
    assert category_ids(["dress", "t-shirt"], mapping) == [(rubricator.get("skirt").id, "dress"), (10000, "t-shirt")]
    mapping.write_text("dress => skirt\nskirt => skirt\n")
    with pytest.raises(ValueError, match="both map"):
        category_ids(["dress", "skirt"], mapping)
