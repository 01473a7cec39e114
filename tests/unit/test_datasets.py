import json

import numpy as np
import pytest
from PIL import Image

from training.datasets import (
    AnnotationError,
    AnnotationFileCrops,
    CocoCrops,
    FolderDataset,
    data_fingerprint,
    parse_annotation_file,
    split_by_fraction,
)


def save_image(path, size=(40, 30), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def folders(tmp_path):
    """root/<class>/<image>: two classes, a nested folder, and files that are not images."""
    root = tmp_path / "train"
    for name in ("b.jpg", "a.png", "nested/c.jpeg"):
        save_image(root / "shoes" / name)
    save_image(root / "dress" / "x.jpg")
    (root / "dress" / "notes.txt").write_text("not an image")
    (root / "readme.md").write_text("top-level files are ignored")
    return root


def test_folder_dataset_sorts_classes_and_files(folders):
    dataset = FolderDataset(folders)
    assert dataset.classes == ["dress", "shoes"]
    assert [path.relative_to(folders).as_posix() for path, _, _ in dataset.samples] == [
        "dress/x.jpg",
        "shoes/a.png",
        "shoes/b.jpg",
        "shoes/nested/c.jpeg",
    ]
    assert dataset.targets == [0, 1, 1, 1]
    image, label = dataset[1]
    assert image.mode == "RGB" and image.size == (40, 30) and label == 1


def test_folder_dataset_applies_transform(folders):
    dataset = FolderDataset(folders, transform=lambda image: np.asarray(image).shape)
    assert dataset[0] == ((30, 40, 3), 0)


def test_fixed_classes_share_indices_and_reject_unknown_folders(folders):
    dataset = FolderDataset(folders, classes=["hat", "shoes", "dress"])
    assert dataset.classes == ["hat", "shoes", "dress"]
    assert sorted(set(dataset.targets)) == [1, 2]
    with pytest.raises(ValueError, match=r"\['dress'\]"):
        FolderDataset(folders, classes=["shoes"])


def test_folder_dataset_errors_on_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "dress").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        FolderDataset(tmp_path / "empty")


def write_coco(tmp_path, annotations, with_sizes=True):
    save_image(tmp_path / "images" / "a.jpg", size=(100, 80))
    image = {"id": 7, "file_name": "a.jpg"}
    if with_sizes:
        image |= {"width": 100, "height": 80}
    coco = {
        "images": [image],
        "categories": [{"id": 3, "name": "shoes"}, {"id": 1, "name": "dress"}],
        "annotations": [{"id": i, "image_id": 7, **annotation} for i, annotation in enumerate(annotations)],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize("with_sizes", [True, False])
def test_coco_crops_clip_skip_crowd_and_small(tmp_path, with_sizes):
    path = write_coco(
        tmp_path,
        [
            {"category_id": 1, "bbox": [10, 20, 30, 40]},
            {"category_id": 3, "bbox": [80, 60, 50, 50]},  # runs over the right and bottom edges
            {"category_id": 3, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"category_id": 1, "bbox": [5, 5, 4, 30]},  # narrower than min_size
        ],
        with_sizes,
    )
    dataset = CocoCrops(path, tmp_path / "images", padding=0.0, min_size=8)
    assert dataset.classes == ["dress", "shoes"]  # category id order
    assert dataset.targets == [0, 1]
    assert dataset[0][0].size == (30, 40)
    assert dataset[1][0].size == (20, 20)


def test_coco_padding_grows_the_crop_within_the_image(tmp_path):
    boxes = [{"category_id": 1, "bbox": [10, 20, 30, 40]}, {"category_id": 1, "bbox": [0, 0, 20, 20]}]
    path = write_coco(tmp_path, boxes)
    dataset = CocoCrops(path, tmp_path / "images", padding=0.1)
    assert dataset[0][0].size == (36, 48)
    assert dataset[1][0].size == (22, 22)  # clipped at the top-left corner


def test_coco_unknown_category_is_an_error(tmp_path):
    path = write_coco(tmp_path, [{"category_id": 99, "bbox": [0, 0, 20, 20]}])
    with pytest.raises(ValueError, match="unknown image or category"):
        CocoCrops(path, tmp_path / "images")


ANNOTATIONS = """\
# two photos
photos/one.jpg
dress 10 5 50 25
t shirt 0 0 20.5 20

photos/two.jpg
# a comment inside a block
shoes 60 10 120 70
"""


def test_annotation_file_parses_blocks_comments_and_spaced_names(tmp_path):
    save_image(tmp_path / "photos" / "one.jpg", size=(80, 60))
    save_image(tmp_path / "photos" / "two.jpg", size=(80, 60))
    (tmp_path / "labels.txt").write_text(ANNOTATIONS)
    annotations = parse_annotation_file(tmp_path / "labels.txt")
    assert [(a.image.name, a.class_name, a.box, a.line) for a in annotations] == [
        ("one.jpg", "dress", (10, 5, 50, 25), 3),
        ("one.jpg", "t shirt", (0, 0, 20.5, 20), 4),
        ("two.jpg", "shoes", (60, 10, 120, 70), 8),
    ]
    dataset = AnnotationFileCrops(tmp_path / "labels.txt", padding=0.0)
    assert dataset.classes == ["dress", "shoes", "t shirt"]
    assert [dataset[i][0].size for i in range(3)] == [(40, 20), (21, 20), (20, 50)]


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("one.jpg\ndress 1 2 3\n", 2, "missing coordinates"),
        ("one.jpg\ndress 1 2 three 4\n", 2, "coordinates must be numbers"),
        ("one.jpg\n\n# note\ndress 5 2 5 4\n", 4, "expected an image path"),
        ("one.jpg\ndress 1 2 30 40\ndress 9 2 5 4\n", 3, "empty box"),
        ("one.jpg\ndress 1 9 5 4\n", 2, "empty box"),
        ("one.jpg\n\nmissing.jpg\ndress 1 2 3 4\n", 3, "unknown image"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path, text, line, reason):
    save_image(tmp_path / "one.jpg")
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=rf"labels\.txt:{line}: {reason}"):
        parse_annotation_file(path)


def test_fingerprint_follows_content_and_labels_not_location(tmp_path, folders):
    before = data_fingerprint(FolderDataset(folders))
    moved = folders.rename(tmp_path / "elsewhere")
    assert data_fingerprint(FolderDataset(moved)) == before
    assert len(before) == 16
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(moved / "shoes" / "b.jpg")  # same name, new content (and size)
    changed = data_fingerprint(FolderDataset(moved))
    assert changed != before
    assert data_fingerprint(FolderDataset(moved, classes=["shoes", "dress"])) == changed
    (moved / "shoes" / "a.png").rename(moved / "dress" / "a.png")  # relabelled
    assert data_fingerprint(FolderDataset(moved)) != changed
    assert data_fingerprint([moved]) == data_fingerprint(sorted(moved.rglob("*.*g")))


def test_split_is_deterministic_disjoint_and_keeps_crops_of_a_photo_together(tmp_path):
    lines = []
    for i in range(40):
        save_image(tmp_path / f"{i}.png", size=(20, 20))
        lines += [f"{i}.png", "dress 0 0 10 10", "shoes 5 5 15 15", ""]
    (tmp_path / "labels.txt").write_text("\n".join(lines))
    dataset = AnnotationFileCrops(tmp_path / "labels.txt")
    train, holdout = split_by_fraction(dataset, 0.25, seed=1)
    assert sorted(train.indices + holdout.indices) == list(range(80))
    assert 8 <= len(holdout) <= 32
    assert split_by_fraction(dataset, 0.25, seed=1)[1].indices == holdout.indices
    assert split_by_fraction(dataset, 0.25, seed=2)[1].indices != holdout.indices
    held_photos = {dataset.samples[i].path for i in holdout.indices}
    assert not held_photos & {dataset.samples[i].path for i in train.indices}
