import numpy as np
import pytest
from PIL import Image

from training.synth.photo import PhotoLikeQuery

RED = (210, 25, 30)


def catalogue_image(size=(120, 160)):
    """A red garment (rectangle with sleeves) on a white catalogue background, and its mask."""
    width, height = size
    mask = np.zeros((height, width), bool)
    mask[30:140, 30:90] = True
    mask[30:60, 10:110] = True
    pixels = np.full((height, width, 3), 250, np.uint8)
    pixels[mask] = RED
    return Image.fromarray(pixels), mask


def red_share(image):
    rgb = np.asarray(image).astype(int)
    return ((rgb[..., 0] > 110) & (rgb[..., 0] > 1.8 * rgb[..., 1]) & (rgb[..., 0] > 1.8 * rgb[..., 2])).mean()


def test_same_seed_and_index_give_the_same_photo():
    image, mask = catalogue_image()
    first = np.asarray(PhotoLikeQuery(7)(image, mask, index=3))
    assert np.array_equal(first, np.asarray(PhotoLikeQuery(7)(image, mask, index=3)))
    assert not np.array_equal(first, np.asarray(PhotoLikeQuery(7)(image, mask, index=4)))
    assert not np.array_equal(first, np.asarray(PhotoLikeQuery(8)(image, mask, index=3)))


@pytest.mark.parametrize("index", range(4))
def test_photo_is_a_sane_size_and_keeps_the_garment(index):
    image, mask = catalogue_image()
    photo = PhotoLikeQuery(0)(image, mask, index)
    assert photo.mode == "RGB"
    assert 480 <= max(photo.size) <= 800 and 0.7 < min(photo.size) / max(photo.size) < 0.8
    # The garment fills much of the frame (its bounding box is ~55% red) and is still red.
    assert red_share(photo) > 0.15
    # The white catalogue background is gone.
    assert (np.asarray(photo).min(axis=2) > 240).mean() < 0.2


def test_photo_changes_the_image():
    image, mask = catalogue_image()
    photo = PhotoLikeQuery(0)(image, mask, 0).resize(image.size)
    assert np.abs(np.asarray(photo, float) - np.asarray(image, float)).mean() > 20


def test_mask_is_computed_when_missing_and_checked_when_given():
    image, mask = catalogue_image()
    assert red_share(PhotoLikeQuery(0)(image, None, 0)) > 0.15
    with pytest.raises(ValueError, match="mask shape"):
        PhotoLikeQuery(0)(image, mask[1:], 0)


def test_supplied_backgrounds_are_used():
    image, mask = catalogue_image()
    green = Image.new("RGB", (300, 300), (0, 200, 0))
    photos = [PhotoLikeQuery(0, backgrounds=[green])(image, mask, index) for index in range(6)]
    greenish = [(np.asarray(p)[..., 1] > 1.5 * np.asarray(p)[..., 0]).mean() for p in photos]
    assert max(greenish) > 0.2
