import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike.images import MIN_PHOTO_SIDE, ImageError, decode_image, open_image
from lookalike.preprocess import EvalPreset
from tests.integration.hostile_corpus import png_declaring

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 4_000_000}
SERVING = {**LIMITS, "max_side": 256, "min_side": MIN_PHOTO_SIDE}


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def pixel(image: Image.Image, x: int = 5, y: int = 5) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def close_to(found: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, expected, strict=True))


def test_decodes_jpeg_png_and_webp_to_rgb():
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB"), ("PNG", "L")):
        image = decode_image(encode(Image.new(mode, (30, 20)), fmt), **LIMITS)
        assert image.mode == "RGB" and image.size == (30, 20)


def test_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a phone held upright
    data = encode(Image.new("RGB", (40, 10)), exif=exif)
    assert decode_image(data, **LIMITS).size == (10, 40)


def test_exif_rotated_photo_decodes_to_the_upright_pixels():
    upright = Image.new("RGB", (64, 96), (240, 240, 240))
    upright.paste((200, 0, 0), (0, 0, 64, 20))  # a red band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise, to be shown turned clockwise
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)
    decoded = decode_image(data, **SERVING)
    assert decoded.size == upright.size
    assert np.array_equal(np.asarray(decoded), np.asarray(upright))
    # ...and so after scaling down too (the orientation is read before the scaled copy drops it)
    big = upright.resize((640, 960))
    scaled = decode_image(encode(big.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif), **SERVING)
    assert scaled.size == (171, 256) and close_to(pixel(scaled, 80, 5), (200, 0, 0), 20)


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


# --- bounded decoding -----------------------------------------------------------------------------


def test_a_declared_size_over_the_limit_is_refused_before_decoding():
    bomb = png_declaring(20_000, 20_000, rows=1)  # 400 MP declared in a few hundred bytes
    with pytest.raises(ImageError, match="pixels; the limit is 50000000 pixels") as refused:
        open_image(bomb, max_bytes=1_000_000, max_pixels=50_000_000)
    assert refused.value.problem == "too_large"


def test_a_large_png_is_decoded_then_scaled_to_max_side():
    opened = open_image(png_declaring(1500, 1000), **SERVING)
    assert opened.memory == 7 * 1500 * 1000  # no reduced decoding for PNG: its full size is what it costs
    assert opened.decode().size == (256, 171)


def test_a_large_jpeg_is_scaled_while_decoding():
    data = encode(Image.new("RGB", (1600, 1200), (30, 90, 200)), quality=80)
    opened = open_image(data, **SERVING)
    assert opened.image.size == (400, 300)  # libjpeg's 1/4 DCT scaling: the smallest that still covers 256x192
    assert opened.memory == 8 * 400 * 300
    picture = opened.decode()
    assert picture.size == (256, 192) and close_to(pixel(picture), (30, 90, 200))


def test_a_progressive_jpeg_costs_its_full_size():
    data = encode(Image.new("RGB", (1600, 1200), (30, 90, 200)), quality=80, progressive=True)
    opened = open_image(data, **SERVING)
    assert opened.image.size == (400, 300)
    assert opened.memory == 8 * 400 * 300 + 4 * 1600 * 1200  # libjpeg keeps every coefficient, full size
    assert opened.decode().size == (256, 192)


def test_a_jpeg_is_never_scaled_below_max_side():
    data = encode(Image.new("RGB", (1000, 600), (30, 90, 200)))
    assert decode_image(data, **SERVING).size == (256, 154)
    assert open_image(data, **SERVING).image.size == (500, 300)  # 1/2: 1/4 would be under 256


@pytest.mark.parametrize(
    "image, fmt, allowed",
    [
        (Image.new("RGB", (1000, 1000)), "PNG", True),  # ~7 bytes a pixel
        (Image.new("RGBA", (1000, 1000)), "PNG", False),  # ~11: premultiplied and RGBA copies
        (Image.new("RGB", (1000, 1000)), "WEBP", False),  # ~18: libwebp's canvas and Pillow's copies of it
    ],
)
def test_images_whose_decode_needs_too_much_memory_are_refused_by_name(image, fmt, allowed):
    data = encode(image, fmt)
    if allowed:
        assert open_image(data, **SERVING, max_memory=8_000_000).memory <= 8_000_000
        return
    with pytest.raises(ImageError, match=f"as {fmt} it needs about") as refused:
        open_image(data, **SERVING, max_memory=8_000_000)
    assert refused.value.problem == "too_large"


def test_without_max_side_the_full_size_is_kept():
    assert decode_image(encode(Image.new("RGB", (1500, 1000))), **LIMITS).size == (1500, 1000)


# --- conversions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped_to_white(fmt):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(ramp), fmt), **SERVING))
    assert decoded.shape == (64, 64, 3)
    assert np.abs(decoded[..., 0].astype(int) - np.round(ramp / 257)).max() <= 1
    assert decoded.min() == 0 and decoded.max() == 255


def test_16_bit_big_endian_and_32_bit_greyscale():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(">u2")
    big_endian = Image.frombuffer("I;16B", (64, 64), ramp.tobytes(), "raw", "I;16B", 0, 1)
    assert abs(pixel(decode_image(encode(big_endian, "TIFF"), **SERVING), 63, 63)[0] - 255) <= 1
    eight_bit_values = Image.fromarray(np.full((64, 64), 128, np.int32))  # "I" holding 0..255 stays 0..255
    assert pixel(decode_image(encode(eight_bit_values, "TIFF"), **SERVING)) == (128, 128, 128)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_the_right_colour(fmt):
    red = Image.new("CMYK", (64, 64), (0, 255, 255, 0))
    assert close_to(pixel(decode_image(encode(red, fmt), **SERVING)), (255, 0, 0))


def test_a_ycbcr_jpeg_becomes_rgb():
    colour = (200, 30, 30)
    data = encode(Image.new("RGB", (64, 64), colour).convert("YCbCr"))
    assert close_to(pixel(decode_image(data, **SERVING)), colour)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_white(fmt):
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(1, (0, 0, 32, 64))  # left half red, right half transparent black
    decoded = decode_image(encode(image, fmt, transparency=0), **SERVING)
    assert pixel(decoded, 5) == (255, 0, 0) and pixel(decoded, 50) == (255, 255, 255)


def test_alpha_is_composited_on_white():
    clear = decode_image(encode(Image.new("LA", (64, 64), (0, 0)), "PNG"), **SERVING)
    half = decode_image(encode(Image.new("RGBA", (64, 64), (255, 0, 0, 128)), "PNG"), **SERVING)
    assert pixel(clear) == (255, 255, 255)
    assert close_to(pixel(half), (255, 127, 127), 2)
    # ...and when scaled down (premultiplied, so no dark fringe from the transparent black)
    big = Image.new("RGBA", (1024, 1024), (0, 0, 0, 0))
    big.paste((0, 0, 255, 255), (0, 0, 512, 1024))
    scaled = decode_image(encode(big, "PNG"), **SERVING)
    assert pixel(scaled, 64) == (0, 0, 255) and pixel(scaled, 200) == (255, 255, 255)


@pytest.mark.parametrize("fmt, options", [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_animations_are_searched_by_their_first_frame(fmt, options):
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close_to(pixel(decode_image(data, **SERVING)), (255, 0, 0))


def test_bilevel_and_greyscale_become_rgb():
    assert pixel(decode_image(encode(Image.new("1", (64, 64), 1), "PNG"), **SERVING)) == (255, 255, 255)
    assert pixel(decode_image(encode(Image.new("L", (64, 64), 77), "PNG"), **SERVING)) == (77, 77, 77)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, problem, says",
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported", "SVG"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'/>", "unsupported", "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "unsupported", "send JPEG"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "unsupported", "HEIC"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "unsupported", "AVIF"),
        (b"%PDF-1.4\n", "unsupported", "JPEG, PNG, WebP, GIF, BMP or TIFF"),
        (
            encode(Image.new("RGB", (64, 64)), "ICO"),
            "unsupported",
            "not a supported image",
        ),  # Pillow reads it; we do not
        (encode(Image.new("RGB", (64, 64)), "PNG")[:40], "damaged", "PNG image is damaged"),
        (b"GIF89a\x00", "damaged", "GIF image is damaged"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "damaged", "WebP image is damaged"),
    ],
)
def test_refusals_say_what_the_file_is(data, problem, says):
    with pytest.raises(ImageError, match=says) as refused:
        decode_image(data, **SERVING)
    assert refused.value.problem == problem


def test_a_truncated_jpeg_is_damaged_not_padded_grey():
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # nothing imported so far turned Pillow's padding on
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), quality=90)
    with pytest.raises(ImageError, match="damaged") as refused:
        decode_image(data[: len(data) * 2 // 3], **SERVING)
    assert refused.value.problem == "damaged"


def test_a_png_with_a_corrupt_chunk_is_damaged():
    data = bytearray(encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG"))
    data[29] ^= 0xFF  # the IHDR checksum
    with pytest.raises(ImageError, match="PNG image is damaged") as refused:
        decode_image(bytes(data), **SERVING)
    assert refused.value.problem == "damaged"
    stored = bytearray(encode(Image.effect_noise((64, 64), 60), "PNG", compress_level=1))
    stored[60:64] = b"\xff\xff\xff\xff"  # inside the compressed pixels
    with pytest.raises(ImageError, match="damaged"):
        decode_image(bytes(stored), **SERVING)


@pytest.mark.parametrize("size", [(1, 1), (31, 400), (400, 31)])
def test_tiny_images_are_refused_with_the_minimum(size):
    with pytest.raises(ImageError, match=f"at least {MIN_PHOTO_SIDE} pixels") as refused:
        decode_image(encode(Image.new("RGB", size), "PNG"), **SERVING)
    assert refused.value.problem == "too_small"
    assert decode_image(encode(Image.new("RGB", (32, 32)), "PNG"), **SERVING).size == (32, 32)


# --- preprocessing --------------------------------------------------------------------------------


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
