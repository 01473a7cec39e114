import io

import numpy as np
import pytest
from PIL import Image

from lookalike.images import ImageError, decode_image
from lookalike.preprocess import EvalPreset

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 4_000_000}


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def test_decodes_jpeg_png_and_webp_to_rgb():
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB"), ("PNG", "L")):
        image = decode_image(encode(Image.new(mode, (30, 20)), fmt), **LIMITS)
        assert image.mode == "RGB" and image.size == (30, 20)


def test_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a phone held upright
    data = encode(Image.new("RGB", (40, 10)), exif=exif)
    assert decode_image(data, **LIMITS).size == (10, 40)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"definitely not an image", "not a supported image"),
        (encode(Image.new("RGB", (50, 50)))[:200], "damaged"),
    ],
)
def test_rejects_bad_bytes_with_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data, **LIMITS)


def test_rejects_oversized_bytes_and_pixels():
    data = encode(Image.new("RGB", (3000, 2000)))
    with pytest.raises(ImageError, match="pixels"):
        decode_image(data, max_bytes=10_000_000, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="bytes"):
        decode_image(data, max_bytes=100, max_pixels=10_000_000)


def test_eval_preset_resizes_short_side_and_centre_crops():
    preset = EvalPreset(crop_size=8, resize_size=10)
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # a blue left quarter, cut off by the centre crop
    pixels = preset(image)
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    assert np.all(pixels[..., 0] > 200) and np.all(pixels[..., 2] < 50)


def test_eval_preset_batches_and_round_trips_its_numbers():
    preset = EvalPreset(crop_size=16, resize_size=20, interpolation="bilinear", mean=(0.1, 0.2, 0.3))
    assert preset.batch([Image.new("RGB", (30, 50))] * 3).shape == (3, 16, 16, 3)
    assert preset.batch([]).shape == (0, 16, 16, 3)
    assert EvalPreset.from_dict(preset.to_dict()) == preset
    with pytest.raises(ValueError):
        EvalPreset(interpolation="lanczos-ish")
