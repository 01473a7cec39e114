import numpy as np
import pytest
from PIL import Image

from training.synth.hardphoto import HardPhoto, box_shares, occlude
from training.synth.partial import COVERAGE, PartialView, coverage, pick_window
from training.synth.photo import PhotoLikeQuery
from training.synth.query import Other

RED = (210, 25, 30)
GREEN = (30, 180, 60)


def catalogue_image(size=(300, 400), color=RED):
    """A garment (a body with sleeves) in `color` on a white catalogue background, and its mask."""
    width, height = size
    mask = np.zeros((height, width), bool)
    mask[int(0.15 * height) : int(0.85 * height), int(0.27 * width) : int(0.73 * width)] = True
    mask[int(0.15 * height) : int(0.35 * height), int(0.1 * width) : int(0.9 * width)] = True
    pixels = np.full((height, width, 3), 250, np.uint8)
    pixels[mask] = color
    return Image.fromarray(pixels), mask


def red_pixels(image):
    rgb = np.asarray(image).astype(int)
    return (rgb[..., 0] > 110) & (rgb[..., 0] > 1.8 * rgb[..., 1]) & (rgb[..., 0] > 1.8 * rgb[..., 2])


def box_pixels(query):
    x0, y0, x1, y1 = (round(v) for v in query.box)
    return slice(y0, y1), slice(x0, x1)


def assert_box_inside(query):
    width, height = query.image.size
    x0, y0, x1, y1 = query.box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def assert_phone_frame(image):
    assert image.mode == "RGB"
    assert 480 <= max(image.size) <= 800 and 0.7 < min(image.size) / max(image.size) < 0.8


FAMILIES = {
    "photo": lambda seed: lambda image, mask, index: PhotoLikeQuery(seed).render(image, mask, index),
    "partial": PartialView,
    "hard": HardPhoto,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_and_index_give_the_same_query(family):
    image, mask = catalogue_image()
    first = FAMILIES[family](3)(image, mask, 5)
    again = FAMILIES[family](3)(image, mask, 5)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image)) and first.box == again.box
    assert not np.array_equal(np.asarray(first.image), np.asarray(FAMILIES[family](3)(image, mask, 6).image))


@pytest.mark.parametrize("family", FAMILIES)
def test_query_is_a_phone_frame_with_its_box_inside(family):
    image, mask = catalogue_image()
    for index in range(2):
        query = FAMILIES[family](0)(image, mask, index)
        assert_phone_frame(query.image)
        assert_box_inside(query)


def test_render_gives_the_pixels_call_gives():
    image, mask = catalogue_image()
    for index in range(3):
        query = PhotoLikeQuery(4).render(image, mask, index)
        assert np.array_equal(np.asarray(query.image), np.asarray(PhotoLikeQuery(4)(image, mask, index)))


def test_render_box_holds_the_garment_and_little_else():
    image, mask = catalogue_image()
    for index in range(3):
        query = PhotoLikeQuery(0).render(image, mask, index)
        red = red_pixels(query.image)
        inside = red[box_pixels(query)]
        assert inside.mean() > 0.5  # the garment covers ~65% of its own box
        assert inside.sum() > 0.99 * red.sum()


def test_partial_window_shows_30_to_60_percent_of_the_garment():
    _, mask = catalogue_image()
    rng = np.random.default_rng(0)
    for aspect in (3 / 4, 4 / 3) * 5:
        window = pick_window(mask, aspect, rng)
        x0, y0, x1, y1 = window
        assert 0 <= x0 < x1 <= mask.shape[1] and 0 <= y0 < y1 <= mask.shape[0]
        assert abs((x1 - x0) / (y1 - y0) - aspect) < 0.05
        assert COVERAGE[0] <= coverage(mask, np.array([window]))[0] <= COVERAGE[1]


def test_partial_window_falls_back_to_the_closest_when_none_fits():
    mask = np.zeros((100, 100), bool)
    mask[50] = True  # a thin line: a window of under 90% of its box's area shows <10% of it
    window = pick_window(mask, 3 / 4, np.random.default_rng(0))
    assert 0.05 <= coverage(mask, np.array([window]))[0] < COVERAGE[0]


def test_partial_view_is_mostly_garment():
    image, mask = catalogue_image()
    for index in range(3):
        query = PartialView(0)(image, mask, index)
        x0, y0, x1, y1 = query.box
        assert (x1 - x0) * (y1 - y0) > 0.4 * query.image.size[0] * query.image.size[1]
        assert red_pixels(query.image)[box_pixels(query)].mean() > 0.6


def test_hard_photo_box_holds_the_garment():
    image, mask = catalogue_image()
    for index in range(3):
        query = HardPhoto(0)(image, mask, index)
        red = red_pixels(query.image)
        inside = red[box_pixels(query)]
        outside = (red.sum() - inside.sum()) / (red.size - inside.size)
        # A cast or the dark may hide red, or make a little of a warm floor's noise look red.
        assert inside.mean() > 5 * outside


def test_hard_photo_may_lay_another_garment_over_the_target():
    image, mask = catalogue_image()
    others = [Other(*catalogue_image((200, 200), GREEN))]
    plain = [HardPhoto(3)(image, mask, index) for index in range(4)]
    covered = [HardPhoto(3)(image, mask, index, others) for index in range(4)]
    assert all(a.box == b.box for a, b in zip(plain, covered))  # the box is the target's, occluded or not
    changed = [not np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(plain, covered)]
    assert any(changed) and not all(changed)  # seed 3: indices 1 and 3 are occluded by a garment


@pytest.mark.parametrize("with_others", [False, True])
def test_occluder_covers_15_to_35_percent_of_the_box(with_others):
    others = [Other(*catalogue_image((200, 200), GREEN))] if with_others else []
    box = (100.0, 80.0, 400.0, 480.0)
    for seed in range(4):
        photo = occlude(np.zeros((600, 480, 3), np.float32), box, others, np.random.default_rng(seed))
        covered = photo[80:480, 100:400].max(axis=2) > 0.05  # black stays black under a shadow
        assert 0.12 <= covered.mean() <= 0.4


def test_box_shares_counts_only_the_part_inside_the_box():
    alpha = np.ones((10, 20), np.float32)
    offsets = np.array([[0, 0], [-10, 0], [100, 100]])
    assert box_shares(alpha, offsets, (0, 0, 20, 20)).tolist() == [0.5, 0.25, 0.0]
