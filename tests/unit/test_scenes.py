import json

import cv2
import numpy as np
import pytest
from PIL import Image

from training.detector.coco import read_coco
from training.synth.colors import mask_cache_path
from training.synth.scenes import Scene, SceneComposer, preview_sheet, scene_items, write_scenes

CLASSES = ("dress", "hat", "pants", "shirt", "shoes", "skirt")
HUES = (0, 60, 120, 180, 240, 300)  # one per source photo, so a garment can be found in a scene by its hue


def garment_photo(rng, hue, background=(250, 250, 250), size=(160, 200)):
    """A saturated garment-like blob (body and sleeves) of `hue` on a plain background, and its exact mask."""
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    centre = (width // 2 + int(rng.integers(-8, 9)), height // 2 + int(rng.integers(-8, 9)))
    cv2.ellipse(mask, centre, (int(rng.integers(25, 45)), int(rng.integers(40, 60))), 0, 0, 360, 1, -1)
    cv2.rectangle(mask, (centre[0] - 50, centre[1] - 35), (centre[0] + 50, centre[1] - 15), 1, -1)
    colour = cv2.cvtColor(np.uint8([[[hue // 2, 230, 220]]]), cv2.COLOR_HSV2RGB)[0, 0]
    pixels = np.full((height, width, 3), background, np.uint8)
    pixels[mask.astype(bool)] = colour
    return Image.fromarray(pixels), mask.astype(bool)


def make_split(data_dir, split, masks, seed, background=(250, 250, 250)):
    """DATA/SPLIT/<class>/<n>.png, one photo per class, with its exact mask already in the cache."""
    rng = np.random.default_rng(seed)
    for name, hue in zip(CLASSES, HUES, strict=True):
        folder = data_dir / split / name
        folder.mkdir(parents=True)
        image, mask = garment_photo(rng, hue, background)
        path = folder / f"{split}-{name}.png"  # PNG: exact colours for the test to find
        image.save(path)
        cached = mask_cache_path(masks, data_dir / split, path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(cached)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    for split, seed in (("train", 0), ("validation", 1)):
        make_split(root / "data", split, root / "masks" / split, seed)
    make_split(root / "green", "train", root / "green-masks", 2, background=(40, 190, 60))
    return root


def composer(data, split="train", **options):
    options = {"long_side": (320, 400), **options}
    return SceneComposer(
        scene_items(data / "data", split),
        root=data / "data",
        mask_dir=data / "masks" / split,
        mask_root=data / "data" / split,
        **{"catalogue_shot_fraction": 0.0, **options},
    )


def hue_of(source):
    return HUES[CLASSES.index(source.split("/")[1])]


def hue_pixels(image, hue, tolerance=20, opening=3):
    """Saturated pixels within `tolerance` degrees of `hue`, opened to drop fringes (and slivers, as the composer)."""
    hsv = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV).astype(int)
    distance = np.abs(hsv[..., 0] * 2 - hue)
    distance = np.minimum(distance, 360 - distance)
    found = (distance <= tolerance) & (hsv[..., 1] > 150) & (hsv[..., 2] > 60)
    return cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_OPEN, np.ones((opening, opening), np.uint8)) > 0


def assert_box_fits(image, hue, box, slack=3):
    """`box` holds (nearly) all the pixels of `hue`, and each of its sides touches some of them."""
    x0, y0, x1, y1 = (round(value) for value in box)
    solid = hue_pixels(image, hue, opening=5)
    assert solid.any(), f"no pixels of hue {hue} in the scene"
    inside = solid[max(0, y0 - slack) : y1 + slack, max(0, x0 - slack) : x1 + slack].sum()
    assert inside >= 0.99 * solid.sum(), f"{box} leaves pixels of hue {hue} out"
    found = hue_pixels(image, hue)[y0:y1, x0:x1]
    for side in (found[:, :slack], found[:slack], found[:, -slack:], found[-slack:]):
        assert side.any(), f"{box} is larger than the pixels of hue {hue}"


def box_of(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


@pytest.mark.parametrize("photo_mode_fraction", [0.0, 0.5])
def test_boxes_are_where_the_pasted_garments_show(data, photo_mode_fraction):
    scenes = composer(data, backgrounds=(("flat", 1.0),), photo_mode_fraction=photo_mode_fraction)
    checked = 0
    for index in range(8):
        scene = scenes(index)
        for item in scene.annotations:
            assert_box_fits(scene.image, hue_of(item.source), item.box)
            checked += 1
    assert checked >= 12


def test_visible_masks_match_the_boxes_and_never_overlap(data):
    scenes = composer(data, scale=(0.4, 0.8), min_items=3, keep_masks=True)
    shares = []
    for index in range(6):
        scene = scenes(index)
        width, height = scene.image.size
        assert len(scene.masks) == len(scene.annotations)
        claimed = np.zeros((height, width), int)
        for item, mask in zip(scene.annotations, scene.masks, strict=True):
            x0, y0, x1, y1 = item.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert box_of(mask) == item.box
            assert 0.4 <= item.visible <= 1.0
            claimed += mask
            shares.append(item.visible)
        assert claimed.max() <= 1, "a pixel is visible as two garments"
    assert min(shares) < 0.95, "large garments in threes should cover each other sometimes"


def test_photo_mode_box_is_the_garment_not_the_rectangle(data):
    def green_composer(fraction):
        return SceneComposer(
            [item for item in scene_items(data / "green", "train") if item[1] != "pants"],  # green, as the backdrop
            root=data / "green",
            mask_dir=data / "green-masks",
            mask_root=data / "green" / "train",
            long_side=(320, 400),
            max_items=1,
            photo_mode_fraction=fraction,
            catalogue_shot_fraction=0.0,
            backgrounds=(("flat", 1.0),),
        )

    for index in range(3):
        scene = green_composer(1.0)(index)
        (item,) = scene.annotations
        assert_box_fits(scene.image, hue_of(item.source), item.box)
        x0, y0, x1, y1 = box_of(hue_pixels(scene.image, 130, 25))
        assert (x1 - x0) * (y1 - y0) > 1.5 * (item.box[2] - item.box[0]) * (item.box[3] - item.box[1])

        cutout = green_composer(0.0)(index)
        assert hue_pixels(cutout.image, hue_of(cutout.annotations[0].source)).any()
        assert hue_pixels(cutout.image, 130, 25).mean() < 0.002, "a cut-out brings no background along"


def test_same_seed_and_index_give_the_same_scene(data):
    first = composer(data, seed=3)(5)
    again = composer(data, seed=3)(5)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.annotations == again.annotations and first.background == again.background
    assert not np.array_equal(np.asarray(composer(data, seed=3)(6).image), np.asarray(first.image))
    assert not np.array_equal(np.asarray(composer(data, seed=4)(5).image), np.asarray(first.image))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_scenes_take_garments_and_backgrounds_from_their_split_only(data, split):
    scenes = [composer(data, split, backgrounds=(("photo", 1.0), ("blurred", 1.0)))(index) for index in range(6)]
    sources = [item.source for scene in scenes for item in scene.annotations]
    backgrounds = [scene.background.split(":", 1)[1] for scene in scenes]
    assert sources and all(source.startswith(f"{split}/") for source in sources + backgrounds)
    assert all((data / "data" / source).is_file() for source in sources + backgrounds)


def test_write_scenes_writes_coco_and_resumes(tmp_path, data):
    scenes = composer(data, seed=1)
    path = write_scenes(scenes, 3, tmp_path / "out", workers=1)
    coco = read_coco(path)
    assert [image.file_name for image in coco.images] == ["images/000000.jpg", "images/000001.jpg", "images/000002.jpg"]
    for index, image in enumerate(coco.images):
        expected = scenes(index)
        assert Image.open(coco.image_path(index)).size == (image.width, image.height) == expected.image.size
        assert [(item.box, item.category, item.source) for item in coco.annotations[index]] == [
            (item.box, item.category, item.source) for item in expected.annotations
        ]
    names = dict(coco.categories)
    assert sorted(names.values()) == sorted(CLASSES) and names[10000] == "hat"  # hat has no rubricator id
    assert all(key < 10000 for key, name in names.items() if name != "hat")

    first = (tmp_path / "out" / "images" / "000000.jpg").stat().st_mtime_ns
    write_scenes(scenes, 4, tmp_path / "out", workers=1)
    assert (tmp_path / "out" / "images" / "000000.jpg").stat().st_mtime_ns == first, "an existing scene was redone"
    assert len(json.loads(path.read_text())["images"]) == 4
    with pytest.raises(ValueError, match="other settings"):
        write_scenes(composer(data, seed=2), 4, tmp_path / "out", workers=1)


def test_preview_sheet_draws_boxes(data):
    scene = composer(data, backgrounds=(("flat", 1.0),))(0)
    plain = preview_sheet([Scene(scene.image, [])], columns=1)
    boxed = preview_sheet([scene], columns=1)
    assert plain.size == boxed.size == (320, 320)
    assert np.abs(np.asarray(plain, int) - np.asarray(boxed, int)).sum() > 0


def test_catalogue_shot_is_one_photo_boxed_at_its_garment(data):
    scene = composer(data, "train", catalogue_shot_fraction=1.0)(3)
    assert scene.background == "catalogue" and len(scene.annotations) == 1
    (annotation,) = scene.annotations
    x0, y0, x1, y1 = annotation.box
    assert 0 <= x0 < x1 <= scene.image.width and 0 <= y0 < y1 <= scene.image.height
    # The source photo fills the frame (up to 8% cropped off each side), the garment box lies inside it.
    assert (x1 - x0) * (y1 - y0) < 0.95 * scene.image.width * scene.image.height
