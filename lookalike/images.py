"""Decoding untrusted image bytes into RGB pictures, with clear errors instead of crashes."""

from __future__ import annotations

import io
import warnings
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

# File suffixes that catalogue folders and training sets read as images.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})


ImageProblem = Literal["empty", "too_large", "unsupported", "damaged"]


class ImageError(ValueError):
    """The bytes are not an image we accept; the message says why, for a 4xx response.

    `problem` tells the API which status to answer: empty 400, too_large 413, unsupported 415, damaged 422.
    """

    def __init__(self, message: str, problem: ImageProblem = "damaged") -> None:
        super().__init__(message)
        self.problem = problem


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode `data` to an upright RGB image, refusing empty, oversized or broken input."""
    if not data:
        raise ImageError("the image is empty", "empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes; the limit is {max_bytes}", "too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels", "too_large")
            image.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a supported image: expected JPEG, PNG, WebP, GIF, BMP or TIFF", "unsupported") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"not a supported image: {error}", "too_large") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"the image is damaged: {error}") from None
    if min(image.size) < 1:
        raise ImageError("the image has no pixels", "empty")
    return ImageOps.exif_transpose(image).convert("RGB")
