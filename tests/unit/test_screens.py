import functools

import cv2
import numpy as np
import pytest
from PIL import Image

from training.synth.query import Other
from training.synth.screens import Rephotographed, Screenshot

FAMILIES = {"screenshot": Screenshot, "rephoto": Rephotographed}
RED, RED_HUE = (200, 30, 40), 357  # the target garment; no other product is red
OTHER_COLORS = ((30, 90, 200), (40, 160, 60), (220, 180, 20))
INDICES = range(8)


def catalogue_photo(color=RED, size=(300, 400), garment=(80, 100, 220, 300), background=235):
    """A plain-background catalogue photo of a rectangular 'garment' of `color`, and its exact mask."""
    width, height = size
    x0, y0, x1, y1 = garment
    pixels = np.full((height, width, 3), background, np.uint8)
    pixels[y0:y1, x0:x1] = color
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return Image.fromarray(pixels), mask


def other_products(count):
    """Other products in other colours, sizes and image modes, as a shop's feed mixes them."""
    products = []
    for slot in range(count):
        image, mask = catalogue_photo(OTHER_COLORS[slot % 3], (240 + 40 * slot, 320), (50, 60, 190, 280))
        products.append(Other(image.convert("RGBA") if slot == 1 else image, mask))
    return products


@functools.cache
def query(family, index, others=3):
    image, mask = catalogue_photo()
    return FAMILIES[family](seed=0)(image, mask, index, other_products(others))


def hue_pixels(rgb, hue, tolerance=25):
    """Saturated pixels within `tolerance` degrees of `hue`."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV).astype(int)
    distance = np.abs(hsv[..., 0] * 2 - hue)
    return (np.minimum(distance, 360 - distance) <= tolerance) & (hsv[..., 1] > 90) & (hsv[..., 2] > 60)


def garment_extent(rgb, box):
    """The box of the red region under the box's centre (closed over moire and halftone gaps)."""
    red = cv2.morphologyEx(hue_pixels(rgb, RED_HUE).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(red)
    label = labels[int((box[1] + box[3]) / 2), int((box[0] + box[2]) / 2)]
    assert label != 0, "no garment-coloured pixels at the box's centre"
    left, top, width, height = stats[label, :4]
    return left, top, left + width, top + height


@pytest.mark.parametrize("family", FAMILIES)
def test_a_seed_and_an_index_always_make_the_same_query(family):
    image, mask = catalogue_photo()
    first = FAMILIES[family](seed=3)(image, mask, 5, other_products(2))
    second = FAMILIES[family](seed=3)(image, mask, 5, other_products(2))
    assert first.box == second.box
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))


@pytest.mark.parametrize("family", FAMILIES)
def test_another_index_or_seed_makes_another_picture(family):
    image, mask = catalogue_photo()
    base = query(family, 0)
    for other in (query(family, 1), FAMILIES[family](seed=1)(image, mask, 0, other_products(3))):
        assert base.image.size != other.image.size or not np.array_equal(
            np.asarray(base.image), np.asarray(other.image)
        )


def test_screenshots_are_phone_screens():
    for index in INDICES:
        width, height = query("screenshot", index).image.size
        assert 900 <= height <= 1400
        assert 16 / 9 - 0.01 <= height / width <= 20 / 9 + 0.01


def test_rephotographs_are_3_by_4_phone_photos():
    for index in INDICES:
        size = query("rephoto", index).image.size
        assert 480 <= max(size) <= 900
        assert max(size) / min(size) == pytest.approx(4 / 3, abs=0.01)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_box_is_the_garment(family):
    """The box lies in the picture and fits the red garment: the mapping through every placement is right."""
    slack = 2 if family == "screenshot" else 4  # a rephotograph's defocus spreads edges
    for index in INDICES:
        found = query(family, index)
        x0, y0, x1, y1 = found.box
        assert 0 <= x0 < x1 <= found.image.width and 0 <= y0 < y1 <= found.image.height
        assert (x1 - x0) * (y1 - y0) >= 400, f"query {index}: a garment too small to search with"
        left, top, right, bottom = garment_extent(np.asarray(found.image), found.box)
        assert left >= x0 - slack and top >= y0 - slack and right <= x1 + slack and bottom <= y1 + slack, index
        assert right - left >= 0.8 * (x1 - x0) and bottom - top >= 0.8 * (y1 - y0), index


@pytest.mark.parametrize("family", FAMILIES)
def test_moire_and_glare_leave_the_garment_its_colour(family):
    for index in range(12):
        found = query(family, index)
        x0, y0, x1, y1 = found.box
        width, height = x1 - x0, y1 - y0  # the middle half: inside even a strongly tilted garment
        middle = np.asarray(found.image)[
            int(y0 + height / 4) : int(y1 - height / 4), int(x0 + width / 4) : int(x1 - width / 4)
        ]
        mean = middle.reshape(-1, 3).mean(axis=0)
        assert hue_pixels(mean.astype(np.uint8)[None, None], RED_HUE, tolerance=20).all(), (index, mean)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("count", [0, 1, 5])
def test_any_number_of_other_products_will_do(family, count):
    for index in range(3):
        found = query(family, index, count)
        assert found.image.mode == "RGB"
        assert found.box[2] > found.box[0] and found.box[3] > found.box[1]


def test_screenshots_show_the_other_products():
    shown = [hue_pixels(np.asarray(query("screenshot", index).image), 220, tolerance=10).sum() for index in INDICES]
    assert sum(count > 500 for count in shown) >= 2  # the blue product, in a grid or a related row


@pytest.mark.parametrize("family", FAMILIES)
def test_an_empty_mask_boxes_the_whole_photo(family):
    image, mask = catalogue_photo()
    found = FAMILIES[family]()(image, np.zeros_like(mask), 0)
    x0, y0, x1, y1 = found.box
    assert 0 <= x0 < x1 <= found.image.width and 0 <= y0 < y1 <= found.image.height
    assert (x1 - x0) > (query(family, 0).box[2] - query(family, 0).box[0])  # wider than the garment alone


@pytest.mark.parametrize("family", FAMILIES)
def test_a_mask_of_another_size_is_refused(family):
    image, mask = catalogue_photo()
    with pytest.raises(ValueError, match="mask shape"):
        FAMILIES[family]()(image, mask[:-1], 0)
