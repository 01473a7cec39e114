from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from lookalike.settings import get_settings
from training.datasets import FolderDataset
from training.synth import colors
from training.synth.colors import (
    COLOURS,
    PALETTE,
    PATTERNS,
    ColorFolderDataset,
    ColorLabel,
    RecoloredDataset,
    garment_mask,
    load_mask,
    pattern_weights,
    recolor,
)

# A t-shirt silhouette on the unit square, centred as in a garment photo.
T_SHIRT = [
    (.3, .15), (.42, .12), (.58, .12), (.7, .15), (.9, .32), (.8, .42),
    (.72, .35), (.72, .88), (.28, .88), (.28, .35), (.2, .42), (.1, .32),
]  # fmt: skip


def garment_photo(seed=0, size=(160, 200), colour=(40, 90, 200)):
    """A noisy household-ish background with a shaded garment polygon; returns (image, true mask)."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = rng.normal((170, 160, 140), 25, (height, width, 3))
    outline = Image.new("L", size, 0)
    ImageDraw.Draw(outline).polygon([(x * width, y * height) for x, y in T_SHIRT], fill=255)
    mask = np.asarray(outline) > 0
    shading = np.linspace(0.8, 1.1, width)[None, :, None]
    garment = np.asarray(colour, float) * shading + rng.normal(0, 6, (height, width, 3))
    pixels = np.where(mask[..., None], garment, background)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), mask


def lab(rgb):
    return cv2.cvtColor(np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def test_palette_and_patterns_are_large_enough_and_named_stably():
    assert len(PALETTE) >= 12 and len(PATTERNS) >= 5
    assert COLOURS[:3] == ("black", "white", "grey") and PATTERNS[0] == "plain"
    assert all("-" not in name or name == "light-blue" for name in COLOURS)


def test_every_label_name_round_trips():
    names = colors._labels_by_name()
    assert len(names) == len(COLOURS) + (len(PATTERNS) - 1) * len(COLOURS) * (len(COLOURS) - 1)
    for name, label in names.items():
        assert ColorLabel.parse(name) == label and label.name == name


def test_label_indices_and_aliases():
    label = ColorLabel.parse("Light-Blue-Gray-Stripes")
    assert label == ColorLabel("light-blue", "stripes", "grey")
    assert (label.colour_index, label.pattern_index, label.second_index) == (10, 1, 2)
    assert ColorLabel.parse("red").pattern_index == 0 and ColorLabel.parse("red").second_index is None


@pytest.mark.parametrize("name", ["magenta", "red-white", "red-red-stripes", "red-white-zigzag", "red-plain"])
def test_unknown_label_names_list_the_palette(name):
    with pytest.raises(ValueError, match="burgundy"):
        ColorLabel.parse(name)


def test_invalid_labels_are_refused():
    with pytest.raises(ValueError):
        ColorLabel("red", "stripes")
    with pytest.raises(ValueError):
        ColorLabel("red", "plain", "white")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_garment_mask_finds_a_garment_on_a_noisy_background(seed):
    image, truth = garment_photo(seed)
    mask = garment_mask(image)
    assert mask.shape == truth.shape and mask.dtype == bool
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8, iou


def test_garment_mask_is_deterministic_and_falls_back_to_an_ellipse():
    image, _ = garment_photo(0)
    assert np.array_equal(garment_mask(image), garment_mask(image))
    flat = garment_mask(Image.new("RGB", (60, 80), (128, 128, 128)))
    assert flat.shape == (80, 60) and flat[40, 30] and not flat[0, 0]
    assert 0.3 < flat.mean() < 0.6


def test_load_mask_caches_and_reuses(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    (root / "dress").mkdir(parents=True)
    image, _ = garment_photo(0)
    image.save(root / "dress" / "a.jpg")
    mask = load_mask(tmp_path / "cache", root, root / "dress" / "a.jpg")
    assert (tmp_path / "cache" / "dress" / "a.jpg.png").is_file()
    monkeypatch.setattr(colors, "garment_mask", lambda image: pytest.fail("cache miss"))
    assert np.array_equal(load_mask(tmp_path / "cache", root, root / "dress" / "a.jpg"), mask)


def test_cli_caches_every_image(tmp_path):
    image, _ = garment_photo(1, size=(64, 80))
    for name in ("dress/a.jpg", "shoes/b.png"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "photos" / name)
    command = ["masks", str(tmp_path / "photos"), "--out", str(tmp_path / "cache"), "--workers", "1"]
    args = colors.get_args_parser().parse_args(command)
    assert colors.main(args) == 0
    assert sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*.png")) == [
        "dress/a.jpg.png",
        "shoes/b.png.png",
    ]


@pytest.mark.parametrize("target", ["red", "black", "white", "yellow"])
def test_recolor_moves_the_garment_to_the_target_and_keeps_the_background(target):
    image, mask = garment_photo(0)
    result = recolor(image, mask, ColorLabel(target), np.random.default_rng(0))
    before, after = np.asarray(image), np.asarray(result)
    assert np.array_equal(after[~mask], before[~mask])
    goal = lab([PALETTE[target]])[0]
    distance_before = np.linalg.norm(lab(before[mask]).mean(0) - goal)
    distance_after = np.linalg.norm(lab(after[mask]).mean(0) - goal)
    assert distance_after < 15 < distance_before


def test_stripes_give_two_colour_clusters():
    image, mask = garment_photo(0)
    result = recolor(image, mask, ColorLabel.parse("navy-yellow-stripes"), np.random.default_rng(0))
    pixels = lab(np.asarray(result)[mask])
    targets = lab([PALETTE["navy"], PALETTE["yellow"]])
    nearest = np.linalg.norm(pixels[:, None] - targets[None], axis=2).argmin(1)
    yellow_share = nearest.mean()
    assert 0.15 < yellow_share < 0.5  # both present; the first colour covers more


@pytest.mark.parametrize("pattern", PATTERNS[1:])
def test_patterns_leave_the_first_colour_dominant(pattern):
    _, mask = garment_photo(0)
    for seed in range(3):
        share = pattern_weights(pattern, mask, np.random.default_rng(seed))[mask].mean()
        assert 0.08 < share < 0.55, (pattern, share)


def test_recolored_dataset_is_deterministic_per_seed_index_and_epoch(tmp_path):
    for i in range(3):
        (tmp_path / "photos" / "dress").mkdir(parents=True, exist_ok=True)
        garment_photo(i, size=(64, 80))[0].save(tmp_path / "photos" / "dress" / f"{i}.png")
    base = FolderDataset(tmp_path / "photos")
    dataset = RecoloredDataset(base, tmp_path / "cache", seed=3, transform=np.asarray)
    first = [dataset[i] for i in range(3)]
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 3
    again = RecoloredDataset(base, tmp_path / "cache", seed=3, transform=np.asarray)
    for (image, colour, pattern), (image2, colour2, pattern2) in zip(first, [again[i] for i in range(3)], strict=True):
        assert np.array_equal(image, image2) and (colour, pattern) == (colour2, pattern2)
    label = dataset.label(1)
    assert first[1][1:] == (label.colour_index, label.pattern_index)
    labels_by_epoch = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        labels_by_epoch.append([dataset.label(i) for i in range(3)])
    assert len({tuple(labels) for labels in labels_by_epoch}) > 1


def test_color_folder_dataset_reads_label_names(tmp_path):
    for name in ("red", "navy-white-stripes", "Grey"):
        (tmp_path / "labelled" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "labelled" / name / "a.png")
    dataset = ColorFolderDataset(tmp_path / "labelled")
    assert [dataset[i][1:] for i in range(3)] == [(2, 0), (12, 1), (3, 0)]  # folders sort as Grey, navy.., red


def test_color_folder_dataset_rejects_unknown_names(tmp_path):
    (tmp_path / "labelled" / "fuchsia").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "labelled" / "fuchsia" / "a.png")
    with pytest.raises(ValueError, match="'fuchsia'.*black"):
        ColorFolderDataset(tmp_path / "labelled")


def test_real_photos_get_a_plausible_mask_and_repainting():
    root = get_settings().clothing_dir
    if not root.is_absolute():
        root = (Path(__file__).resolve().parents[2] / root).resolve()  # settings paths are relative to the repo
    if not (root / "validation").is_dir():
        pytest.skip(f"no real photos at {root}/validation (LOOKALIKE_CLOTHING_DIR)")
    dataset = RecoloredDataset(FolderDataset(root / "validation", transform=None), None, seed=0)
    for index in (0, len(dataset) // 2):
        crop = dataset.base.load(index)
        mask = garment_mask(crop)
        assert 0.05 < mask.mean() < 0.95
        image, colour, pattern = dataset[index]
        assert image.size == crop.size and 0 <= colour < len(COLOURS) and 0 <= pattern < len(PATTERNS)
