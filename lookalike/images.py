"""Decoding untrusted image bytes into upright RGB pictures: bounded in memory, with clear errors.

Formats: JPEG, PNG, WebP, GIF, BMP and TIFF (`FORMATS`); Pillow is not even asked to try its other
decoders. SVG, HEIC/HEIF, AVIF and the rest are refused by name ("unsupported"), and bytes that start
like a format we read but do not parse are "damaged", not "unsupported".

Bounds, all checked on the header before a pixel is decoded: the byte size (`max_bytes`), the declared
pixel count (`max_pixels`), the memory the decode will need (`max_memory`) and the shorter side
(`min_side`). With `max_side` (serving), a photo is decoded to what the models need, not to what it
declares: a JPEG through libjpeg's DCT scaling (`Image.draft`, 1/2, 1/4 or 1/8 while decoding: a 48 MP
phone photo allocates 12 MP), any image then scaled down (`Image.resize` with `reducing_gap`, which
box-reduces first) to `max_side` on its long side. Other formats have no reduced decoding in Pillow:
they allocate their declared size, several times over (`decode_memory`), for as long as the decode
lasts; `OpenedImage.memory` tells a caller that bounds how much decoding runs at once
(`lookalike.api.limits.DecodeGate`).

Conversions to RGB: 16-bit greyscale scaled to 8 bits (Pillow's own conversion clips it to white);
transparency (palette, LA, RGBA) composited on white, as shops show cut-out products; CMYK (Adobe's
inverted JPEGs too) and YCbCr converted; an animation's first frame; the EXIF orientation applied.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

# File suffixes that catalogue folders and training sets read as images.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
# The formats decoded at all (Pillow's names). A JPEG with a multi-picture extension (many phones) opens as "MPO".
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"

# The long side a photo is decoded to for the models (serving: `decode_image(max_side=MODEL_SIDE)`). The
# detector letterboxes the whole photo to 320 px (its card's preprocess.size); the embedder resizes an
# item's crop (box plus margin) to 256 and centre-crops 224. At 2048 px an item a ninth of the photo's
# long side still gives the embedder a crop of over 224 px, and nothing the detector can find at 320
# (8 px boxes, its min_side, are 51 px at 2048) is smaller. Boxes are in the decoded frame: the response's
# width and height say which.
MODEL_SIDE = 2048
# The shorter side a photo needs to be searched: below it the embedder sees a few blurred blocks scaled
# up to 224 px, and the results mean nothing (a 1x1 image got products at score 0.72).
MIN_PHOTO_SIDE = 32

ImageProblem = Literal["empty", "too_large", "too_small", "unsupported", "damaged"]

# What Pillow's decoders raise on malformed input (its fuzzers treat only these as expected).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)
# Signatures of the formats in FORMATS: bytes that start so but do not parse are damaged, not unsupported.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# EXIF orientation -> the transpose that shows the photo upright (as `PIL.ImageOps.exif_transpose`).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
_WHITE = (255, 255, 255, 255)
# Box-reduce to within this factor of the target before resampling (Pillow's speed/quality balance).
_REDUCING_GAP = 3.0


class ImageError(ValueError):
    """The bytes are not an image we accept; the message says why, for a 4xx response.

    `problem` tells the API which status to answer: empty 400, too_large 413, unsupported 415,
    damaged and too_small 422.
    """

    def __init__(self, message: str, problem: ImageProblem = "damaged") -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header was read and passed the limits; nothing is decoded yet.

    `memory`: the bytes `decode` needs at its peak, estimated from the header (`decode_memory`).
    """

    image: Image.Image
    max_side: int | None
    memory: int

    def decode(self) -> Image.Image:
        """The pixels, as an upright RGB image at most `max_side` on its long side."""
        image = self.image
        try:
            image.load()
            orientation = _orientation(image)
            image = _resized(_resizable(image), self.max_side)
            picture = _rgb(image)
        except ImageError:
            raise
        except Image.DecompressionBombError as error:
            raise ImageError(f"the image is too large: {error}", "too_large") from None
        except MemoryError:
            raise ImageError("the image is too large to decode", "too_large") from None
        except _DECODER_ERRORS as error:
            raise ImageError(f"the {self.image.format} image is damaged: {error}") from None
        transpose = _UPRIGHT.get(orientation)
        return picture.transpose(transpose) if transpose is not None else picture


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_side: int | None = None,
    min_side: int = 1,
    max_memory: int | None = None,
) -> Image.Image:
    """Decode `data` to an upright RGB image, refusing empty, oversized, tiny, unsupported or broken input
    (the limits: `open_image`'s)."""
    limits = {"max_side": max_side, "min_side": min_side, "max_memory": max_memory}
    return open_image(data, max_bytes=max_bytes, max_pixels=max_pixels, **limits).decode()


def open_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_side: int | None = None,
    min_side: int = 1,
    max_memory: int | None = None,
) -> OpenedImage:
    """Read and check `data`'s header (cheap: no pixels); `decode()` the result for the pixels.

    `max_side`: decode at most this long side (JPEGs scaled while decoding, others after); None: full size.
    `min_side`: refuse images whose shorter side is below it ("too_small").
    `max_memory`: refuse images whose decode would need more bytes than this ("too_large").
    """
    if not data:
        raise ImageError("the image is empty", "empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes; the limit is {max_bytes}", "too_large")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise _not_readable(data) from None
    except Image.DecompressionBombError:  # Pillow's own bound (twice Image.MAX_IMAGE_PIXELS), checked first
        raise ImageError(
            f"the image declares over {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels; the limit is {max_pixels} pixels",
            "too_large",
        ) from None
    except _DECODER_ERRORS as error:
        raise ImageError(f"the {_signature(data) or 'image'} image is damaged: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels", "too_large")
    if min(width, height) < 1:
        raise ImageError("the image has no pixels", "empty")
    if min(width, height) < min_side:
        raise ImageError(
            f"the image is {width}x{height} pixels; a photo must be at least {min_side} pixels on each side",
            "too_small",
        )
    if max_side is not None and isinstance(image, JpegImagePlugin.JpegImageFile):
        scale = max_side / max(width, height)
        if scale < 1:  # libjpeg picks the largest 1/2^k that keeps at least this size
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    memory = decode_memory(image, width * height)
    if max_memory is not None and memory > max_memory:
        raise ImageError(
            f"the image is {width}x{height} pixels: as {image.format} it needs about {memory >> 20} MB to decode, "
            f"over the {max_memory >> 20} MB a photo may use; send a smaller photo, or a JPEG",
            "too_large",
        )
    return OpenedImage(image, max_side, memory)


def decode_memory(image: Image.Image, declared_pixels: int) -> int:
    """The peak bytes decoding and scaling `image` (opened, draft set) needs, rounded up from measurements
    on 7000x7000 images with Pillow 13 (peak RSS over the bytes' own): RGB PNG 5.5 bytes a pixel, GIF 6.6,
    CMYK TIFF 5.6, 16-bit PNG 3.6; RGBA PNG 9.6 and palette PNG with transparency 10.6 (premultiplied and
    RGBA copies); WebP 16-18 (libwebp's canvas and Pillow's copies of it); baseline JPEG 7.5 per pixel
    decoded after DCT scaling, progressive JPEG 3.9 per declared pixel (libjpeg keeps its coefficients
    at full size, whatever the scale)."""
    decoded = image.size[0] * image.size[1]
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        return 8 * decoded + (4 * declared_pixels if image.info.get("progressive") else 0)
    if image.format == "WEBP":
        return 18 * decoded
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        return 11 * decoded
    return 7 * decoded


def _signature(data: bytes) -> str | None:
    """The format among FORMATS that `data` starts like, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES.items() if data.startswith(signature)), None)


def _not_readable(data: bytes) -> ImageError:
    """Why Pillow could not identify `data`: a damaged file of a format we read, or which format it is."""
    if (name := _signature(data)) is not None:
        return ImageError(f"the {name} image is damaged: its header does not parse")
    brands = _iso_brands(data)
    if brands & _AVIF_BRANDS:
        return ImageError(f"AVIF images are not supported; send {FORMAT_NAMES}", "unsupported")
    if brands & _HEIF_BRANDS:
        return ImageError(
            f"HEIC/HEIF images are not supported; send {FORMAT_NAMES} (phones send JPEG when the camera "
            "format is 'Most Compatible', or when the photo is shared or exported as JPEG)",
            "unsupported",
        )
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return ImageError(f"SVG (vector) images are not supported; send a photo as {FORMAT_NAMES}", "unsupported")
    return ImageError(f"not a supported image: expected {FORMAT_NAMES}", "unsupported")


def _iso_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF file (HEIF, AVIF, MP4), from its `ftyp` box."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return set()
    size = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return {data[8:12]} | {data[i : i + 4] for i in range(16, size - 3, 4)}


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: upright); a damaged EXIF block counts as upright, not as a damaged photo."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (*_DECODER_ERRORS, ArithmeticError):
        return 1


def _resizable(image: Image.Image) -> Image.Image:
    """`image` in a mode Pillow resamples properly (palette and bilevel images only resize by nearest)."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    return image


def _resized(image: Image.Image, max_side: int | None) -> Image.Image:
    """`image` scaled down to `max_side` on its long side, if it is longer."""
    width, height = image.size
    if max_side is None or max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    gap = None if image.mode.startswith("I;16") else _REDUCING_GAP  # Image.reduce has no 16-bit modes
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=gap)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        image = _eight_bit(image)
    if image.mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageError(
            f"images in colour mode {image.mode} are not supported; send an RGB or greyscale photo", "unsupported"
        ) from None


def _eight_bit(image: Image.Image) -> Image.Image:
    """A greyscale image of more than 8 bits (I;16*, I, F) as 8-bit L, scaled rather than clipped.

    16-bit modes are scaled from 0..65535. 32-bit integer and float images carry no declared range: they
    are scaled from the smallest of 0..1, 0..255 and 0..65535 that holds their largest value (else from it).
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode.startswith("I;16"):
        top = 65535.0
    else:
        largest = float(values.max(initial=0.0))
        top = next((full for full in (1.0, 255.0, 65535.0) if largest <= full), largest)
    return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8))
