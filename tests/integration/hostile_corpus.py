"""Hostile and broken requests to the photo endpoints, each with the answer it must get.

`CASES` are plain requests (httpx keyword arguments); `tests.integration.test_hostile` sends them to a
served Lookalike. Images are made here, small and seeded; the bombs are bytes that declare far more
pixels than they carry (`png_declaring`).
"""

from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

# The server the corpus expects: uploads up to this many bytes (the bombs fit; 1 MB text does not).
MAX_UPLOAD_BYTES = 1_000_000
BOMB_SIDE = 7000  # 49 MP: just under the 50 MP default limit


@dataclass(frozen=True)
class Case:
    """One request (`request`: httpx.Client.request's keyword arguments) and the answer it must get."""

    name: str
    request: dict = field(repr=False)
    status: int
    error: str | None = None  # the `error` code; None for a 200
    says: str = ""  # in `detail`
    field: str | None = None


# --- images ---------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@cache
def photo(size: tuple[int, int] = (300, 400), seed: int = 0) -> Image.Image:
    """A garment-ish drawing: a coloured shape on a light background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (236, 232, 226))
    colour = tuple(int(v) for v in rng.integers(30, 220, 3))
    width, height = size
    ImageDraw.Draw(image).polygon(
        [
            (width * 0.3, height * 0.1),
            (width * 0.7, height * 0.1),
            (width * 0.85, height * 0.9),
            (width * 0.15, height * 0.9),
        ],
        fill=colour,
    )
    return image


def png_declaring(width: int, height: int, rows: int | None = None) -> bytes:
    """A black RGB PNG of `width` x `height` (7000x7000: 143 KB on the wire, 147 MB decoded). With `rows`, only
    that many rows are compressed: Pillow pads the rest with black, so it is only good for a header."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is patched to declare `width` x `height`."""
    data = bytearray(encode(photo()))
    start = data.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    data[start + 5 : start + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A small lossless WebP whose VP8L header is patched to declare `width` x `height`."""
    data = bytearray(encode(photo((64, 64)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L"  # then the chunk size (4), the signature byte 0x2f, and 14 + 14 bits of size
    data[21:25] = ((width - 1) | ((height - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


@cache
def bomb_png() -> bytes:
    return png_declaring(BOMB_SIDE, BOMB_SIDE)


@cache
def bomb_jpeg() -> bytes:
    """A real 7000x7000 progressive JPEG of ~290 KB: decoded at 1/2 scale by libjpeg (draft)."""
    return encode(Image.new("RGB", (BOMB_SIDE, BOMB_SIDE), (200, 30, 30)), quality=50, progressive=True)


def truncated_jpeg() -> bytes:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), quality=90)
    return data[: len(data) * 2 // 3]


def corrupt_png() -> bytes:
    data = bytearray(encode(photo(), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's checksum
    return bytes(data)


def cmyk_jpeg() -> bytes:
    return encode(photo().convert("CMYK"))


def sixteen_bit_png() -> bytes:
    grey = np.asarray(photo().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def palette_png() -> bytes:
    image = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [photo(seed=seed) for seed in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated(image: Image.Image, fmt: str = "JPEG") -> bytes:
    """`image` stored turned 90 degrees anticlockwise, with EXIF orientation 6 to show it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image.transpose(Image.Transpose.ROTATE_90), fmt, exif=exif)


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect/></svg>'
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64)


# --- requests -------------------------------------------------------------------------------------


def upload(data: bytes, path: str = "/search", name: str = "image", filename: str = "photo.jpg", **fields) -> dict:
    return {
        "method": "POST",
        "url": path,
        "files": {name: (filename, data, "application/octet-stream")},
        "data": {key: str(value) for key, value in fields.items()},
    }


def as_json(body, path: str = "/search") -> dict:
    return {"method": "POST", "url": path, "json": body}


def raw(content: bytes, content_type: str | None, path: str = "/search") -> dict:
    return {"method": "POST", "url": path, "content": content, "headers": {"content-type": content_type or ""}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def multipart_body(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart body by hand: (name, filename or None, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def cases() -> list[Case]:
    good = encode(photo())
    image = upload(good)
    form_with_image = {"files": image["files"]}
    return [
        # --- the form ---
        Case("wrong field name (photo=@file)", upload(good, name="photo"), 400, "missing_image", "'photo'", "image"),
        Case(
            "a URL string in image (multipart)",
            {"method": "POST", "url": "/search", "files": {"image": (None, "https://shop.example/a.jpg")}},
            400,
            "invalid_field",
            "must be a file part",
            "image",
        ),
        Case(
            "a URL string in image (urlencoded form)",
            {"method": "POST", "url": "/search", "data": {"image": "https://shop.example/a.jpg"}},
            415,
            "unsupported_media_type",
            "multipart/form-data",
        ),
        Case(
            "multipart with a boundary the body does not use",
            raw(multipart_body("real", [("image", "a.jpg", good)]), "multipart/form-data; boundary=other"),
            400,
            "bad_request",
            "multipart",
        ),
        Case("multipart without a boundary", raw(good, "multipart/form-data"), 400, "bad_request", "boundary"),
        Case(
            "1,000 form fields",
            {**form_with_image, "method": "POST", "url": "/search", "data": {f"f{i}": "x" for i in range(1000)}},
            400,
            "bad_request",
            "Too many fields",
        ),
        Case(
            "1,000 files",
            {
                "method": "POST",
                "url": "/search",
                "files": [("image", ("a.jpg", good, "image/jpeg"))] + [(f"f{i}", ("f.bin", b"x")) for i in range(1000)],
            },
            400,
            "bad_request",
            "Too many files",
        ),
        Case("a text part over 1 MB", upload(good, shop="x" * 1_100_000), 413, "payload_too_large", "bytes"),
        Case("a text part over 16 KB", upload(good, shop="x" * 100_000), 400, "bad_request", "maximum size"),
        Case("a 5,000-character filename", upload(good, filename="a" * 5000 + ".jpg"), 400, "bad_request"),
        Case(
            "top_k sent as a file",
            {"method": "POST", "url": "/search", "files": [("image", ("a.jpg", good)), ("top_k", ("k.txt", b"3"))]},
            400,
            "invalid_field",
            "top_k must be a text field",
            "top_k",
        ),
        Case(
            "two photos",
            {"method": "POST", "url": "/search", "files": [("image", ("a.jpg", good)), ("image", ("b.jpg", good))]},
            400,
            "invalid_field",
            "one photo",
            "image",
        ),
        Case("no Content-Type", raw(good, None), 415, "unsupported_media_type", "multipart/form-data"),
        Case("text/plain", raw(b"hello", "text/plain"), 415, "unsupported_media_type", "text/plain"),
        # --- the photo ---
        Case("not an image", upload(b"this is not an image"), 415, "unsupported_image", "JPEG, PNG", "image"),
        Case("0 bytes", upload(b""), 400, "empty_image", "empty", "image"),
        Case("truncated JPEG", upload(truncated_jpeg()), 422, "damaged_image", "damaged", "image"),
        Case("corrupt PNG chunk", upload(corrupt_png()), 422, "damaged_image", "PNG image is damaged", "image"),
        Case(
            "PNG bomb 7000x7000 cut short",
            upload(bomb_png()[:50_000]),
            422,
            "damaged_image",
            "truncated",
            "image",
        ),
        Case(
            "PNG declaring 20000x20000", upload(png_declaring(20_000, 20_000, rows=1)), 413, "image_too_large", "limit"
        ),
        Case("JPEG declaring 60000x60000", upload(jpeg_declaring(60_000, 60_000)), 413, "image_too_large", "limit is"),
        Case("WebP declaring 7000x7000", upload(webp_declaring(7000, 7000)), 413, "image_too_large", "needs about"),
        Case("PNG bomb 7000x7000 (143 KB)", upload(bomb_png()), 200),
        Case("JPEG bomb 7000x7000 progressive", upload(bomb_jpeg()), 200),
        Case("CMYK JPEG", upload(cmyk_jpeg()), 200),
        Case("16-bit greyscale PNG", upload(sixteen_bit_png()), 200),
        Case("palette PNG with transparency", upload(palette_png()), 200),
        Case("animated GIF", upload(animated_gif()), 200),
        Case("EXIF-rotated JPEG", upload(exif_rotated(photo())), 200),
        Case("SVG", upload(SVG), 415, "unsupported_image", "SVG", "image"),
        Case("HEIC", upload(HEIC), 415, "unsupported_image", "send JPEG", "image"),
        Case("AVIF", upload(AVIF), 415, "unsupported_image", "AVIF", "image"),
        Case("1x1 image", upload(encode(Image.new("RGB", (1, 1)), "PNG")), 422, "image_too_small", "at least 32"),
        Case("31x400 image", upload(encode(photo((31, 400)))), 422, "image_too_small", "at least 32"),
        Case("SVG as base64", as_json({"image_base64": b64(SVG)}), 415, "unsupported_image", "SVG", "image"),
        Case("detect: not an image", upload(b"GIF89a broken", path="/detect"), 422, "damaged_image", "GIF"),
        # --- JSON ---
        Case("malformed JSON", raw(b'{"image_base64": ', "application/json"), 400, "invalid_json", "not valid JSON"),
        Case("JSON nested 100,000 deep", raw(b"[" * 100_000 + b"]" * 100_000, "application/json"), 400, "invalid_json"),
        Case("a JSON array", as_json([1, 2]), 400, "invalid_json", "JSON object"),
        Case("a 5,000-digit number", raw(b'{"top_k": ' + b"9" * 5000 + b"}", "application/json"), 400, "invalid_json"),
        Case("not UTF-8", raw(b'{"image_base64": "\xff\xfe"}', "application/json"), 400, "invalid_json"),
        Case("image_base64 a number", as_json({"image_base64": 123}), 422, "invalid_field", field="image_base64"),
        Case("image_base64 not base64", as_json({"image_base64": "%%%"}), 422, "invalid_field", "base64"),
        Case(
            "top_k a word", as_json({"image_base64": b64(good), "top_k": "many"}), 422, "invalid_field", field="top_k"
        ),
        Case("top_k a list", as_json({"image_base64": b64(good), "top_k": [3]}), 422, "invalid_field", field="top_k"),
        Case("top_k true (JSON)", as_json({"image_base64": b64(good), "top_k": True}), 422, "invalid_field", "true"),
        Case(
            "min_price NaN",
            raw(b'{"image_base64": "%s", "min_price": NaN}' % b64(good).encode(), "application/json"),
            422,
            "invalid_field",
            field="min_price",
        ),
        Case(
            "weights a word",
            as_json({"image_base64": b64(good), "weights": "heavy"}),
            422,
            "invalid_field",
            field="weights",
        ),
        Case(
            "empty shop (JSON)", as_json({"image_base64": b64(good), "shop": ""}), 400, "unknown_value", "shop", "shop"
        ),
        Case(
            "unknown field", as_json({"image_base64": b64(good), "photo": "x"}), 422, "invalid_field", "unknown field"
        ),
        # --- form options ---
        Case("top_k=true", upload(good, top_k="true"), 422, "invalid_field", field="top_k"),
        Case("top_k=10^30", upload(good, top_k=10**30), 422, "invalid_field", "100", "top_k"),
        Case("weights=shape:nan", upload(good, weights="shape:nan"), 422, "invalid_field", field="weights.shape"),
        Case("bogus gender", upload(good, gender="alien"), 400, "unknown_value", "women", "gender"),
        Case("upper-case gender", upload(good, gender="WOMEN"), 400, "unknown_value", "women", "gender"),
        Case("category=2 (an id)", upload(good, category="2"), 200),
        Case(
            "unknown category", upload(good, category="spacesuit"), 400, "unknown_value", "GET /categories", "category"
        ),
        # --- other endpoints ---
        Case("similar: top_k=true", {"method": "GET", "url": "/products/x/y/similar?top_k=true"}, 422, "invalid_field"),
        Case("GET /search", {"method": "GET", "url": "/search"}, 405, "method_not_allowed"),
        Case("unknown path", {"method": "GET", "url": "/" + "a" * 5000}, 404, "not_found"),
    ]
