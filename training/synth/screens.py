"""Two query families of pictures of pictures: a shop app's screenshot, and a photo of a screen or a print.

Shoppers often send not a photo of the garment but what they saw it on: a screenshot of a shop's
product page or of a grid of products, or a phone photo of a monitor, a phone or a printed
catalogue. Both keep the catalogue photo's pixels nearly intact but bury them in an interface
or in a photographing of a flat picture, which is what these families test. They are never used
to make training views and were written without reference to `training.synth.photo` (no code is
shared with it), so they owe nothing to the generator the model was trained on.

Each is a frozen dataclass called as `family(image, mask, index, others=())` and returns a
`Query`: the picture, and the box of the target garment's mask carried through every resize,
offset and perspective the family applied (then clipped to the picture). Query `index` of a
seed is the same on every machine: everything random comes from
`np.random.default_rng([seed, STREAM, index])`, with a stream per family (21 and 22).
`others` are other catalogue products (`Other`) shown beside the target; placeholders stand in
when there are none.

Screenshot
----------
1. Screen: portrait, 16:9 to 19.5:9, long side 900-1400 px (a phone's 1080 x 2340 as scaled by
   a messenger); laid out in density-independent units (a 360-unit-wide screen); light theme,
   15% dark.
2. Two times in three a product page: status bar (time, signal, Wi-Fi, battery as shapes),
   app bar (back, shop name, icons), the whole catalogue photo taking 35-60% of the screen's
   height on the shop's photo colour (letterboxed, or zoomed up to 15% and cropped around the
   garment), carousel dots, a price ("$39.99" or "2 990 ₽"; the default font has no ruble sign,
   so it is drawn), the product's name, maybe a rating, size chips, a coloured "Add to cart"
   button (or a sticky bar at the bottom) and a row of 2-4 other products with captions under
   "You may also like", cut by the screen's bottom as a real page is (when the photo is large,
   the row is hardly visible).
3. One time in three a shop's grid (2x2, 2x3 or 3x3 tiles): header, maybe search field and
   filter chips, tiles with a photo (letterboxed or cropped), a name and a price, the target in
   one fully visible tile, the others from `others` (cycled when too few, flat "loading"
   placeholders when none).
4. Maybe a bottom navigation bar and a home indicator; half are kept lossless (a PNG), half
   re-encoded as JPEG at quality 80-95 (messengers recompress).

Rephotographed
--------------
1. Frame: long side 480-900 px, 3:4 or 4:3 (portrait mostly for phones and prints, landscape
   mostly for monitors).
2. The flat picture (30% a phone, 35% a monitor, 35% a print), rendered at about the resolution
   it will have in the frame: a phone (the screenshot product page above, or a photo viewer;
   thin near-black bezel, rounded corners), a monitor or laptop (a desktop browser's product
   page or a viewer; dark or silver bezel and a chin), or a printed page (white paper margin,
   the photo, a caption and two columns of body text).
3. A camera view: the flat rectangle turned in 3-D (pitch or yaw 12-30 degrees, the other up to
   15, roll up to 10) and projected as a phone's 65-degree lens sees it at arm's length; the
   projection is scaled to fill 65-95% of the frame and placed off-centre. The corners then lie
   4-17% of the frame (median 9%) away from a square-on view of the same area.
4. Every output pixel is mapped back to the flat picture (the inverse homography), so the
   fine structure of the medium is sampled at the camera's pixels and aliases the way real
   sampling does: on a screen, the RGB sub-pixel stripes and the dark gaps between pixel rows
   (cosines at the screen's pixel pitch, 0.55-1.4 frame pixels, of amplitude 6-25% and 3-15%)
   beat against the frame's grid into coloured moire bands that bend with the perspective; on a
   print, rotated cyan, magenta and yellow halftone screens (1.3-3 frame pixels a period) make
   visible dots or moire of their own.
5. Screens: the display's gamma, black level and blue-ish cast, brighter than the dim room;
   prints: ink's lower saturation and contrast, a paper tint and fibre, warm room light. Around
   the picture, a wall or desk: flat, grainy, wood or a wall meeting a desk; a print casts a
   soft shadow on it. Light falls off across the frame.
6. Glare on the glass or gloss (two times in three): a soft elliptical highlight or a window's
   reflection with its cross bars, added, at most ~0.35 of full white.
7. A little defocus (Gaussian, 0.4-1.3 px), sensor noise (read and shot), JPEG at 55-85.

Limits
------
- The font is Pillow's built-in Aileron: Latin only, one weight (bold is faked by a stroke).
  Product names and shop names are made up and say nothing about the garment's class.
- Screens are flat and unlit by the room (no reflections of the photographer, no hand holding
  the phone); prints are flat (no curl or fold); the moire is a model of sampling, not optics.
- The box is the mask's box moved through the geometry, so when a tile or a photo region crops
  the catalogue photo, the box is clipped to the region, not recomputed from the visible mask.
- A shop grid's target tile is small (a third of a 3x3 grid on a ~450 px wide screenshot), as on
  a real phone; a phone photographed whole shows the garment small too.

Speed, one OpenCV thread, CPU time on the 400 x 533 validation photos: a screenshot ~20 ms
(95th percentile ~30, at most ~120), a rephotograph ~60 ms (95th percentile ~100, at most ~125).
"""

from __future__ import annotations

import colorsys
import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.synth.query import Box, Other, Query, clip_box, mask_box, others_of, warp_box

SCREENSHOT_STREAM = 21
REPHOTOGRAPHED_STREAM = 22

Color = tuple[int, int, int]

SCREEN_UNITS = 360  # layout units across a phone screen (Android's dp): sizes below are in these
SCREEN_LONG_SIDE = (900, 1400)  # px, a screenshot as a messenger delivers it
SCREEN_ASPECTS = (16 / 9, 18 / 9, 19.5 / 9, 20 / 9)  # height / width of phones
PHOTO_SHARE = (0.35, 0.60)  # of the screen's height, the product photo on a product page
GRIDS = ((2, 2), (2, 3), (3, 3))  # (columns, rows) of a shop's grid page

FRAME_LONG_SIDE = (480, 900)  # px, a rephotograph
FILL = (0.65, 0.95)  # of the frame, the picture's projected extent
TILT_DEGREES = (12.0, 30.0)  # pitch and yaw of the camera to the picture
ROLL_DEGREES = 10.0
HORIZONTAL_FIELD_OF_VIEW = math.radians(65)  # a phone's main camera
SCREEN_PIXEL_PITCH = (0.55, 1.4)  # frame px per screen px: near the sampling rate, where moire lives
HALFTONE_PERIOD = (1.3, 3.0)  # frame px per halftone cell
HALFTONE_ANGLES = (15.0, 75.0, 0.0)  # degrees, the cyan, magenta and yellow screens of offset printing
NOMINAL_ASPECTS = {"phone": 0.46, "monitor": 1.7, "print": 0.73}  # width / height, before the exact layout

SHOP_NAMES = ("MARLOW", "Nordwind", "atelier 9", "URBAN LINE", "Kasha", "basic&co", "VESNA", "Lumen Store", "OKTA")
ADJECTIVES = ("Relaxed", "Oversized", "Slim", "Cropped", "Classic", "Soft", "Everyday", "Essential", "Vintage")
MATERIALS = ("cotton", "linen", "wool blend", "jersey", "denim", "viscose", "knit", "twill", "organic cotton")
BUTTON_TEXTS = ("Add to cart", "Add to bag", "Buy now", "Add to basket")
PAGE_TITLES = ("New in", "Bestsellers", "Sale", "Recommended", "Trending now", "Just for you")
CHIPS = ("Sort", "Filter", "Size", "Colour", "Price", "Brand")
SIZES = ("XS", "S", "M", "L", "XL")


@dataclass(frozen=True)
class Screenshot:
    """`screenshot(image, mask, index, others)` -> a phone screenshot of a shop showing the catalogue photo."""

    seed: int = 0

    def __call__(self, image: Image.Image, mask: np.ndarray, index: int, others: Sequence[Other] = ()) -> Query:
        rng = np.random.default_rng([self.seed, SCREENSHOT_STREAM, index])
        rgb, box = _target(image, mask)
        size = _screen_size(rng)
        theme = _theme(rng)
        if rng.random() < 1 / 3:
            page, box = _shop_grid(rgb, box, others, size, theme, rng)
        else:
            page, box = _product_page(rgb, box, others, size, theme, rng)
        return Query(_messenger_finish(page, rng), clip_box(box, *size))


@dataclass(frozen=True)
class Rephotographed:
    """`rephoto(image, mask, index, others)` -> a phone photo of the catalogue photo on a screen or a print."""

    seed: int = 0

    def __call__(self, image: Image.Image, mask: np.ndarray, index: int, others: Sequence[Other] = ()) -> Query:
        rng = np.random.default_rng([self.seed, REPHOTOGRAPHED_STREAM, index])
        rgb, box = _target(image, mask)
        medium = str(rng.choice(["phone", "monitor", "print"], p=[0.3, 0.35, 0.35]))
        frame_size = _frame_size(medium, rng)
        fill = float(rng.uniform(*FILL))
        seen = _seen_long_side(frame_size, NOMINAL_ASPECTS[medium], fill)  # to render at about the seen resolution
        if medium == "print":
            picture = _printed_page(rgb, box, seen, rng)
        else:
            picture = _device(rgb, box, others, medium, seen, rng)
        matrix = _camera_view((picture.pixels.shape[1], picture.pixels.shape[0]), frame_size, fill, rng)
        photo = _photograph(picture, matrix, frame_size, rng)
        box = clip_box(warp_box(picture.box, matrix), *frame_size)
        quality = int(rng.integers(55, 86))
        return Query(_jpeg(photo, quality), box)


# ---------------------------------------------------------------------------------------------
# Inputs


def _target(image: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, Box]:
    """The catalogue photo as uint8 RGB and its garment's box (the whole photo when the mask is empty)."""
    rgb = np.asarray(image.convert("RGB"))
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {rgb.shape[:2]}")
    return rgb, mask_box(mask) or (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0]))


def _other_photos(others: Sequence[Other], count: int, rng: np.random.Generator) -> list[np.ndarray | None]:
    """`count` other products' photos, cycled when there are fewer; None (a placeholder) when there are none."""
    picked = [np.asarray(other.image.convert("RGB")) for other in others_of(others, count, rng)]
    if not picked:
        return [None] * count
    return [picked[i % len(picked)] for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Drawing an app's page (shared by screenshots and by the screens that are rephotographed)


@dataclass(frozen=True)
class _Theme:
    page_color: Color
    photo_color: Color  # the shop's backdrop behind product photos
    text_color: Color
    muted_color: Color  # secondary text and icons
    line_color: Color  # separators, outlines, placeholders
    accent_color: Color  # buttons


def _theme(rng: np.random.Generator) -> _Theme:
    accent = (20, 20, 20) if rng.random() < 0.35 else _hsv_color(rng.uniform(0, 1), rng.uniform(0.5, 0.9), 0.75)
    if rng.random() < 0.15:  # dark mode
        grey = int(rng.integers(10, 30))
        return _Theme((grey,) * 3, (grey + 14,) * 3, (236, 236, 236), (150, 150, 150), (64, 64, 64), accent)
    page = (255, 255, 255) if rng.random() < 0.7 else _grey(rng, 244, 252)
    photo = page if rng.random() < 0.3 else _grey(rng, 236, 248)
    return _Theme(page, photo, _grey(rng, 15, 45), _grey(rng, 110, 145), _grey(rng, 220, 235), accent)


def _grey(rng: np.random.Generator, low: int, high: int) -> Color:
    """A grey between `low` and `high`, a little warm or cool as shops' greys are."""
    level = int(rng.integers(low, high + 1))
    tint = int(rng.integers(-3, 4))
    return (int(np.clip(level + tint, 0, 255)), level, int(np.clip(level - tint, 0, 255)))


def _hsv_color(hue: float, saturation: float, value: float) -> Color:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(red * 255), round(green * 255), round(blue * 255))


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, size))


class _Canvas:
    """A page drawn in layout units (`unit` px each), so that a layout reads the same at any resolution.

    Every coordinate and size its methods take is in units; they return widths in units too.
    """

    def __init__(self, size: tuple[int, int], theme: _Theme, units_across: float = SCREEN_UNITS):
        self.image = Image.new("RGB", size, theme.page_color)
        self.draw = ImageDraw.Draw(self.image)
        self.theme = theme
        self.unit = size[0] / units_across
        self.units_across, self.units_high = units_across, size[1] / self.unit

    def px(self, units: float) -> int:
        return round(units * self.unit)

    def at(self, *units: float) -> list[float]:
        return [value * self.unit for value in units]

    def stroke(self, units: float) -> int:
        return max(1, round(units * self.unit))

    def rectangle(self, extent: Sequence[float], radius: float = 0.0, **style) -> None:
        if "width" in style:
            style["width"] = self.stroke(style["width"])
        self.draw.rounded_rectangle(self.at(*extent), radius=radius * self.unit, **style)

    def ellipse(self, extent: Sequence[float], **style) -> None:
        if "width" in style:
            style["width"] = self.stroke(style["width"])
        self.draw.ellipse(self.at(*extent), **style)

    def line(self, points: Sequence[tuple[float, float]], fill: Color, width: float) -> None:
        self.draw.line([tuple(self.at(*point)) for point in points], fill=fill, width=self.stroke(width))

    def arc(self, extent: Sequence[float], start: float, end: float, fill: Color, width: float) -> None:
        self.draw.arc(self.at(*extent), start, end, fill=fill, width=self.stroke(width))

    def text(self, x: float, y: float, text: str, size: float, fill: Color, *, bold: bool = False) -> float:
        """`text` with its top-left at (x, y); returns its width."""
        font = _font(self.px(size))
        stroke = max(1, self.px(size) // 24) if bold else 0  # the font has one weight: a stroke thickens it
        self.draw.text(tuple(self.at(x, y)), text, font=font, fill=fill, stroke_width=stroke, stroke_fill=fill)
        return (self.draw.textlength(text, font=font) + 2 * stroke) / self.unit

    def centred_text(self, centre: float, y: float, text: str, size: float, fill: Color, *, bold: bool = False) -> None:
        self.text(centre - self.text_width(text, size) / 2, y, text, size, fill, bold=bold)

    def text_width(self, text: str, size: float) -> float:
        return self.draw.textlength(text, font=_font(self.px(size))) / self.unit

    def fitted(self, text: str, size: float, width: float) -> str:
        """`text` cut with an ellipsis to fit `width`."""
        if self.text_width(text, size) <= width:
            return text
        while text and self.text_width(text + "…", size) > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def price(self, x: float, y: float, price: str, size: float, fill: Color, *, bold: bool = True) -> float:
        """A price; a trailing ruble sign is drawn by hand (the built-in font has none). Returns its width."""
        if not price.endswith("₽"):
            return self.text(x, y, price, size, fill, bold=bold)
        width = self.text(x, y, price[:-1], size, fill, bold=bold)
        self._ruble_sign(x + width, y, size, fill, size / (8 if bold else 11))
        return width + size * 0.62

    def _ruble_sign(self, x: float, y: float, size: float, fill: Color, stroke: float) -> None:
        """₽: a P whose stem is crossed by a bar under its bowl, as tall as the font's digits."""
        top, bottom = y + size * 0.26, y + size * 0.96  # Aileron's digits: 0.26-0.96 em below the text's top
        stem, bowl = x + size * 0.2, size * 0.2  # the bowl's radius
        middle = top + 2 * bowl
        self.line([(stem, bottom), (stem, top), (stem + bowl, top)], fill, stroke)
        self.arc((stem, top, stem + 2 * bowl, middle), -90, 90, fill, stroke)
        self.line([(x + size * 0.1, middle), (stem + bowl, middle)], fill, stroke)
        self.line([(x + size * 0.1, middle + size * 0.15), (stem + size * 0.26, middle + size * 0.15)], fill, stroke)

    def paste(self, pixels: np.ndarray, x: float, y: float) -> tuple[int, int]:
        """`pixels` with its top-left at (x, y); returns where that is in px, to move boxes by."""
        corner = (self.px(x), self.px(y))
        self.image.paste(Image.fromarray(pixels), corner)
        return corner

    def pixels(self) -> np.ndarray:
        return np.asarray(self.image)


def _screen_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) of a phone screenshot as a messenger delivers it."""
    height = int(rng.integers(SCREEN_LONG_SIDE[0], SCREEN_LONG_SIDE[1] + 1))
    return round(height / float(rng.choice(SCREEN_ASPECTS))), height


def _fit(rgb: np.ndarray, box: Box, size: tuple[int, int], zoom: float, background: Color) -> tuple[np.ndarray, Box]:
    """`rgb` scaled to fit `size` (w, h) and then by `zoom`, centred on `background`; `box` carried along.

    zoom 1 letterboxes; more crops what overflows, as shops crop photos to their tiles: around
    the box's centre as far as the photo reaches. The box comes back clipped to the tile.
    """
    width, height = size
    image_height, image_width = rgb.shape[:2]
    scale = min(width / image_width, height / image_height) * zoom
    new_width, new_height = max(1, round(image_width * scale)), max(1, round(image_height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_width, new_height), interpolation=interpolation)
    left = _crop_offset(width, new_width, (box[0] + box[2]) / 2 * new_width / image_width)
    top = _crop_offset(height, new_height, (box[1] + box[3]) / 2 * new_height / image_height)
    tile = np.empty((height, width, 3), np.uint8)
    tile[:] = background
    source_x, source_y, target_x, target_y = max(0, -left), max(0, -top), max(0, left), max(0, top)
    span_x, span_y = min(new_width - source_x, width - target_x), min(new_height - source_y, height - target_y)
    tile[target_y : target_y + span_y, target_x : target_x + span_x] = resized[
        source_y : source_y + span_y, source_x : source_x + span_x
    ]
    scale_x, scale_y = new_width / image_width, new_height / image_height
    x0, y0, x1, y1 = box
    moved = (x0 * scale_x + left, y0 * scale_y + top, x1 * scale_x + left, y1 * scale_y + top)
    return tile, clip_box(moved, width, height)


def _crop_offset(tile: int, scaled: int, centre: float) -> int:
    """Where a photo `scaled` px long starts in a tile `tile` px long: centred, or if it overflows,
    with `centre` as near the tile's middle as the photo's edges allow."""
    if scaled <= tile:
        return (tile - scaled) // 2
    return int(np.clip(round(tile / 2 - centre), tile - scaled, 0))


def _offset(box: Box, corner: tuple[float, float]) -> Box:
    return box[0] + corner[0], box[1] + corner[1], box[2] + corner[0], box[3] + corner[1]


def _cover_zoom(photo: np.ndarray, size: tuple[int, int]) -> float:
    """The zoom of `_fit` at which the photo covers the whole tile."""
    height, width = photo.shape[:2]
    return max(size[0] / width, size[1] / height) / min(size[0] / width, size[1] / height)


def _thumbnail(
    photo: np.ndarray | None, size: tuple[int, int], theme: _Theme, rng: np.random.Generator, *, crop: bool
) -> np.ndarray:
    """Another product's tile: its photo (cropped to fill, or letterboxed), or a flat 'still loading' block."""
    if photo is None:
        shade = theme.line_color if rng.random() < 0.6 else _hsv_color(rng.uniform(0, 1), 0.12, 0.9)
        return np.full((size[1], size[0], 3), shade, np.uint8)
    zoom = _cover_zoom(photo, size) if crop else 1.0
    whole = (0.0, 0.0, float(photo.shape[1]), float(photo.shape[0]))
    return _fit(photo, whole, size, zoom, theme.photo_color)[0]


def _product_name(rng: np.random.Generator) -> str:
    shop, adjective, material = rng.choice(SHOP_NAMES), rng.choice(ADJECTIVES), rng.choice(MATERIALS)
    return f"{shop} {adjective} {material} {rng.integers(1000, 9999)}"


def _price(rng: np.random.Generator) -> tuple[str, str]:
    """A price and a higher 'before' price, both in dollars or both in rubles ('2 990 ₽')."""
    if rng.random() < 0.5:
        dollars = float(rng.integers(9, 150)) + float(rng.choice([0.99, 0.95, 0.0]))
        return f"${dollars:.2f}", f"${dollars * rng.uniform(1.2, 1.8):.2f}"
    rubles = int(rng.integers(5, 150)) * 100 - int(rng.choice([0, 10, 1]))
    before = int(rubles * rng.uniform(1.2, 1.8)) // 100 * 100 - 10
    return f"{rubles:,} ₽".replace(",", " "), f"{before:,} ₽".replace(",", " ")


def _status_bar(canvas: _Canvas, height: float, rng: np.random.Generator) -> None:
    """The time on the left; signal bars, Wi-Fi and battery on the right, as simple shapes."""
    theme, middle, right = canvas.theme, height / 2, canvas.units_across - 16
    canvas.text(18, middle - 7.5, f"{rng.integers(7, 24)}:{rng.integers(0, 60):02d}", 12.5, theme.text_color, bold=True)
    canvas.rectangle((right - 22, middle - 5.5, right - 2, middle + 5.5), 3, outline=theme.muted_color, width=1)
    charge = float(rng.uniform(0.15, 1.0))
    canvas.rectangle((right - 20, middle - 3.5, right - 20 + 16 * charge, middle + 3.5), fill=theme.text_color)
    canvas.rectangle((right - 1.5, middle - 2, right, middle + 2), fill=theme.muted_color)
    wifi = right - 36
    for ring in (3.0, 6.0, 9.0):
        extent = canvas.at(wifi - ring, middle + 4 - ring * 1.3, wifi + ring, middle + 4)
        canvas.draw.pieslice(extent, 225, 315, fill=theme.text_color if ring == 3 else None, outline=theme.text_color)
    strength = int(rng.integers(2, 5))
    for bar in range(4):
        x = wifi - 28 + bar * 4.5
        color = theme.text_color if bar < strength else theme.line_color
        canvas.rectangle((x, middle + 5 - (bar + 1) * 2.6, x + 3, middle + 5), fill=color)


def _app_bar(canvas: _Canvas, top: float, height: float, title: str, rng: np.random.Generator) -> None:
    """Back chevron, a title and two icons (search, bag), with a hairline under them half the time."""
    color, middle, right = canvas.theme.text_color, top + height / 2, canvas.units_across
    canvas.line([(26, middle - 8), (20, middle), (26, middle + 8)], color, 2)
    size = float(rng.uniform(16, 19))
    if rng.random() < 0.6:
        canvas.centred_text(right / 2, middle - size * 0.62, title, size, color, bold=True)
    else:
        canvas.text(52, middle - size * 0.62, title, size, color, bold=True)
    canvas.ellipse((right - 71, middle - 8, right - 59, middle + 4), outline=color, width=2)
    canvas.line([(right - 60, middle + 3), (right - 55, middle + 8)], color, 2)
    canvas.rectangle((right - 36, middle - 5, right - 20, middle + 9), 2, outline=color, width=2)
    canvas.arc((right - 32.5, middle - 11, right - 23.5, middle - 1), 180, 360, color, 2)
    if rng.random() < 0.5:
        canvas.line([(0, top + height), (right, top + height)], canvas.theme.line_color, 0.5)


def _bottom_bar(canvas: _Canvas, kind: str, rng: np.random.Generator) -> None:
    """A tab bar (icons and labels), a sticky 'Add to cart' bar or nothing (`kind`); then maybe a home indicator."""
    theme, right, bottom = canvas.theme, canvas.units_across, canvas.units_high
    if kind in ("tabs", "sticky"):
        top = bottom - (58 if kind == "tabs" else 72)
        canvas.rectangle((0, top, right, bottom), fill=theme.page_color)
        canvas.line([(0, top), (right, top)], theme.line_color, 0.5)
    if kind == "tabs":
        labels = ("Home", "Catalog", "Saved", "Cart", "Profile")
        chosen = int(rng.integers(0, len(labels)))
        for slot, label in enumerate(labels):
            centre = (slot + 0.5) * right / len(labels)
            color = theme.accent_color if slot == chosen else theme.muted_color
            icon = (centre - 9, top + 8, centre + 9, top + 26)
            if slot % 2:
                canvas.rectangle(icon, 4, outline=color, width=1.6)
            else:
                canvas.ellipse(icon, outline=color, width=1.6)
            canvas.centred_text(centre, top + 30, label, 10, color)
    elif kind == "sticky":
        _button(canvas, (16, top + 10, right - 16, top + 58), str(rng.choice(BUTTON_TEXTS)), rng)
    if rng.random() < 0.5:  # the home indicator of a phone without buttons
        canvas.rectangle((right / 2 - 66, bottom - 10.5, right / 2 + 66, bottom - 5.5), 2.5, fill=theme.text_color)


def _button(canvas: _Canvas, extent: tuple[float, float, float, float], label: str, rng: np.random.Generator) -> None:
    """A filled button in the accent colour with its label centred in white."""
    x0, y0, x1, y1 = extent
    canvas.rectangle(extent, float(rng.choice([2, 6, 12, 24])), fill=canvas.theme.accent_color)
    canvas.centred_text((x0 + x1) / 2, (y0 + y1) / 2 - 9.5, label, 15, (255, 255, 255), bold=True)


def _stars(canvas: _Canvas, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    """Five rating stars, gold up to the rating, and '4.7 (123)' after them."""
    rating = float(rng.uniform(3.6, 5.0))
    for star in range(5):
        centre_x, centre_y = x + star * size * 1.15 + size / 2, y + size / 2
        radii = [size / 2 * (1 if tip % 2 == 0 else 0.45) for tip in range(10)]
        points = [
            tuple(canvas.at(centre_x + r * math.sin(math.pi * tip / 5), centre_y - r * math.cos(math.pi * tip / 5)))
            for tip, r in enumerate(radii)
        ]
        canvas.draw.polygon(points, fill=(245, 176, 30) if star + 0.5 <= rating else canvas.theme.line_color)
    label = f"{rating:.1f} ({rng.integers(3, 900)})"
    canvas.text(x + 6 * size * 1.15, y - 1.5, label, size * 0.95, canvas.theme.muted_color)


def _heart(canvas: _Canvas, x: float, y: float, size: float) -> None:
    """A heart outline ('save for later') in a white disc centred at (x, y), as shops put on photos' corners."""
    canvas.ellipse((x - size, y - size, x + size, y + size), fill=(255, 255, 255))
    lobe, color = size * 0.33, (40, 40, 40)
    canvas.arc((x - 2 * lobe, y - 1.6 * lobe, x, y + 0.4 * lobe), 140, 360, color, 1.3)
    canvas.arc((x, y - 1.6 * lobe, x + 2 * lobe, y + 0.4 * lobe), 180, 40, color, 1.3)
    canvas.line([(x - 1.75 * lobe, y + 0.1 * lobe), (x, y + 1.9 * lobe), (x + 1.75 * lobe, y + 0.1 * lobe)], color, 1.3)


def _product_page(
    rgb: np.ndarray, box: Box, others: Sequence[Other], size: tuple[int, int], theme: _Theme, rng: np.random.Generator
) -> tuple[np.ndarray, Box]:
    """A shop app's product page showing `rgb`, and the garment's box in its pixels."""
    canvas = _Canvas(size, theme)
    status, app_bar = float(rng.uniform(24, 40)), float(rng.uniform(48, 56))
    _status_bar(canvas, status, rng)
    _app_bar(canvas, status, app_bar, str(rng.choice(SHOP_NAMES)), rng)
    top, height = status + app_bar, float(rng.uniform(*PHOTO_SHARE)) * canvas.units_high
    margin = 0.0 if rng.random() < 0.7 else 12.0
    zoom = 1.0 if rng.random() < 0.6 else float(rng.uniform(1.03, 1.15))
    tile, box = _fit(rgb, box, (canvas.px(SCREEN_UNITS - 2 * margin), canvas.px(height)), zoom, theme.photo_color)
    box = _offset(box, canvas.paste(tile, margin, top))
    if rng.random() < 0.5:
        _heart(canvas, SCREEN_UNITS - margin - 26, top + 26, 15)
    _carousel_dots(canvas, top + height + 10, int(rng.integers(3, 7)))

    y = top + height + 22
    price, before = _price(rng)
    width = canvas.price(16, y, price, 21, theme.text_color)
    if rng.random() < 0.35:  # on sale: the old price struck through
        struck = canvas.price(26 + width, y + 5, before, 14, theme.muted_color, bold=False)
        canvas.line([(26 + width, y + 14), (26 + width + struck, y + 14)], theme.muted_color, 1)
    canvas.text(16, y + 32, canvas.fitted(_product_name(rng), 15, SCREEN_UNITS - 32), 15, theme.text_color)
    y += 58
    spare = canvas.units_high - y - 150  # room for optional blocks above the button and the related row
    if spare > 30 and rng.random() < 0.6:
        _stars(canvas, 16, y, 12, rng)
        y, spare = y + 18, spare - 18
    if spare > 50 and rng.random() < 0.5:
        _size_chips(canvas, y, rng)
        y += 46
    bottom = str(rng.choice(["tabs", "sticky", "none"], p=[0.45, 0.25, 0.3]))
    if bottom != "sticky":  # else the sticky bar at the bottom holds the button
        _button(canvas, (16, y + 4, SCREEN_UNITS - 16, y + 52), str(rng.choice(BUTTON_TEXTS)), rng)
        y += 64
    _related_row(canvas, y, others, rng)
    _bottom_bar(canvas, bottom, rng)  # last: it covers what ran under it
    return canvas.pixels(), box


def _carousel_dots(canvas: _Canvas, y: float, count: int) -> None:
    """Which of the product's photos is shown: the first."""
    for dot in range(count):
        x = SCREEN_UNITS / 2 + (dot - (count - 1) / 2) * 12
        color = canvas.theme.text_color if dot == 0 else canvas.theme.line_color
        canvas.ellipse((x - 3, y - 3, x + 3, y + 3), fill=color)


def _size_chips(canvas: _Canvas, y: float, rng: np.random.Generator) -> None:
    """XS-XL in outlined boxes, one of them maybe selected (filled with the text colour)."""
    theme = canvas.theme
    selected = int(rng.integers(-1, len(SIZES)))
    for slot, label in enumerate(SIZES):
        x = 16 + slot * 46
        if slot == selected:
            canvas.rectangle((x, y + 4, x + 38, y + 36), 4, fill=theme.text_color)
        else:
            canvas.rectangle((x, y + 4, x + 38, y + 36), 4, outline=theme.line_color, width=1)
        canvas.centred_text(x + 19, y + 12, label, 13, theme.page_color if slot == selected else theme.text_color)


def _related_row(canvas: _Canvas, y: float, others: Sequence[Other], rng: np.random.Generator) -> None:
    """'You may also like' and 2-4 other products' tiles with captions, cut by the screen's bottom if need be."""
    theme = canvas.theme
    canvas.text(16, y + 6, "You may also like", 16, theme.text_color, bold=True)
    y += 34
    count, gap = int(rng.integers(2, 5)), 8.0
    peek = rng.random() < 0.5  # a horizontally scrolling row shows part of one more tile at the edge
    if peek:
        width = (SCREEN_UNITS - 16 - gap * count) / (count + 0.4)
    else:
        width = (SCREEN_UNITS - 32 - gap * (count - 1)) / count
    height = width * float(rng.choice([1.0, 1.25, 4 / 3]))
    crop = rng.random() < 0.6
    for slot, photo in enumerate(_other_photos(others, count + peek, rng)):
        x = 16 + slot * (width + gap)
        canvas.paste(_thumbnail(photo, (canvas.px(width), canvas.px(height)), theme, rng, crop=crop), x, y)
        canvas.text(x, y + height + 6, canvas.fitted(_product_name(rng), 11, width), 11, theme.muted_color)
        canvas.price(x, y + height + 22, _price(rng)[0], 12.5, theme.text_color)


def _shop_grid(
    rgb: np.ndarray, box: Box, others: Sequence[Other], size: tuple[int, int], theme: _Theme, rng: np.random.Generator
) -> tuple[np.ndarray, Box]:
    """A shop's grid of product tiles with the target in a fully visible one, and the garment's box in its pixels."""
    canvas = _Canvas(size, theme)
    status = float(rng.uniform(24, 40))
    _status_bar(canvas, status, rng)
    _app_bar(canvas, status, 52, str(rng.choice(PAGE_TITLES)), rng)
    y = status + 52
    if rng.random() < 0.5:
        y = _search_field(canvas, y, rng)
    if rng.random() < 0.6:
        y = _filter_chips(canvas, y, rng)
    columns, rows = GRIDS[int(rng.integers(len(GRIDS)))]
    margin = float(rng.choice([0.0, 8.0, 12.0]))
    gap = 2.0 if margin == 0 else float(rng.uniform(6, 12))
    caption = 44.0 if columns == 2 else 38.0
    width = (SCREEN_UNITS - 2 * margin - gap * (columns - 1)) / columns
    room = (canvas.units_high - y - 58) / rows - caption - gap  # the grid fits above a tab bar if it can
    height = width * float(np.clip(room / width, 1.0, 1.4))
    pitch = height + caption + gap
    visible = [row for row in range(rows) if y + (row + 1) * pitch <= canvas.units_high - 58] or [0]
    target = (int(rng.integers(columns)), int(rng.choice(visible)))
    photos = iter(_other_photos(others, columns * rows - 1, rng))
    crop, tile_size = rng.random() < 0.5, (canvas.px(width), canvas.px(height))
    for row in range(rows):
        for column in range(columns):
            x, top = margin + column * (width + gap), y + row * pitch
            if (column, row) == target:
                zoom = float(rng.uniform(1.0, _cover_zoom(rgb, tile_size))) if crop else 1.0
                tile, box = _fit(rgb, box, tile_size, zoom, theme.photo_color)
                box = _offset(box, canvas.paste(tile, x, top))
            else:
                canvas.paste(_thumbnail(next(photos), tile_size, theme, rng, crop=crop), x, top)
            if columns == 2 and rng.random() < 0.7:
                _heart(canvas, x + width - 18, top + 18, 11)
            text_x = x + (4 if margin == 0 else 0)
            name = canvas.fitted(_product_name(rng), 11.5, width - 6)
            canvas.text(text_x, top + height + 5, name, 11.5, theme.muted_color)
            canvas.price(text_x, top + height + 21, _price(rng)[0], 13, theme.text_color)
    _bottom_bar(canvas, "tabs" if rng.random() < 0.6 else "none", rng)
    return canvas.pixels(), box


def _search_field(canvas: _Canvas, y: float, rng: np.random.Generator) -> float:
    """A rounded search field with a magnifier and its placeholder; returns the y under it."""
    theme = canvas.theme
    field = theme.line_color if theme.page_color[0] < 128 else _grey(rng, 238, 245)
    canvas.rectangle((16, y + 6, canvas.units_across - 16, y + 42), 18, fill=field)
    canvas.ellipse((30, y + 17, 40, y + 27), outline=theme.muted_color, width=1.5)
    canvas.text(50, y + 15, "Search", 14, theme.muted_color)
    return y + 50


def _filter_chips(canvas: _Canvas, y: float, rng: np.random.Generator) -> float:
    """A row of outlined filter chips and the number of items found; returns the y under them."""
    theme, x = canvas.theme, 16.0
    for label in rng.permutation(CHIPS)[: int(rng.integers(3, 6))]:
        width = canvas.text_width(str(label), 12.5) + 24
        canvas.rectangle((x, y + 4, x + width, y + 32), 14, outline=theme.line_color, width=1)
        canvas.text(x + 12, y + 10, str(label), 12.5, theme.text_color)
        x += width + 8
    canvas.text(16, y + 40, f"{rng.integers(12, 2400)} items", 11.5, theme.muted_color)
    return y + 62


def _messenger_finish(page: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Half the screenshots stay lossless (sent as a file); half are JPEG at 80-95, as messengers recompress."""
    if rng.random() < 0.5:
        return Image.fromarray(page)
    return _jpeg(page.astype(np.float32) / 255, int(rng.integers(80, 96)))


def _jpeg(photo: np.ndarray, quality: int) -> Image.Image:
    """A float RGB [0, 1] array through a JPEG encoder and back, as an RGB image."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# ---------------------------------------------------------------------------------------------
# Rephotographs: the flat picture (a device's front or a printed page)


@dataclass(frozen=True)
class _Picture:
    """A flat thing to photograph, in its own pixels: a device's front (screen px) or a printed page."""

    pixels: np.ndarray  # float32 RGB in [0, 1]
    alpha: np.ndarray  # float32 (h, w): where the thing is (a device's rounded corners)
    box: Box  # the garment
    screen: Box | None  # the lit area of a device; None for a print
    halftone_cell: float = 0.0  # a print's halftone period, in its pixels


def _frame_size(medium: str, rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): 3:4 or 4:3, turned the way one holds a phone to photograph this medium."""
    long_side = int(rng.integers(FRAME_LONG_SIDE[0], FRAME_LONG_SIDE[1] + 1))
    short_side = round(long_side * 3 / 4)
    portrait = rng.random() < {"phone": 0.8, "monitor": 0.3, "print": 0.8}[medium]
    return (short_side, long_side) if portrait else (long_side, short_side)


def _seen_long_side(frame_size: tuple[int, int], aspect: float, fill: float) -> float:
    """Frame px the picture's long side spans when a picture of `aspect` (w / h) fills `fill` of the frame."""
    width, height = frame_size
    return fill * min(width / aspect, height) * max(aspect, 1.0)


def _device(
    rgb: np.ndarray, box: Box, others: Sequence[Other], medium: str, seen_long_side: float, rng: np.random.Generator
) -> _Picture:
    """A phone (portrait) or a monitor (landscape) showing the catalogue photo, in screen pixels.

    The screen's resolution is chosen so that one of its pixels is 0.55-1.4 frame pixels once
    photographed: near the camera's sampling rate, where sub-pixels alias into moire.
    """
    long_side = seen_long_side / rng.uniform(*SCREEN_PIXEL_PITCH)
    theme = _theme(rng)
    if medium == "phone":
        aspect = float(rng.uniform(2.0, 2.2))  # height / width of the screen
        bezel_share = float(rng.uniform(0.025, 0.05))  # of the screen's width
        width = round(long_side / (aspect + 2 * bezel_share))
        screen_size, bezel, chin = (width, round(width * aspect)), round(bezel_share * width), 0
        radius = 0.13 * width
        page = _product_page if rng.random() < 0.65 else None
    else:
        aspect = float(rng.choice([16 / 9, 16 / 10]))  # width / height of the screen
        bezel_share = float(rng.uniform(0.012, 0.035))
        width = round(long_side / (1 + 2 * bezel_share))
        screen_size, bezel = (width, round(width / aspect)), round(bezel_share * width)
        chin = round(bezel * rng.uniform(0, 3))  # monitors' logos and laptops' hinges sit under the screen
        radius = bezel * 0.6
        page = _desktop_page if rng.random() < 0.5 else None
    if page is None:
        content, box = _viewer(rgb, box, screen_size, rng)
    else:
        content, box = page(rgb, box, others, screen_size, theme, rng)
    size = (screen_size[0] + 2 * bezel, screen_size[1] + 2 * bezel + chin)
    silver = medium == "monitor" and rng.random() < 0.2
    body = float(rng.uniform(0.55, 0.75) if silver else rng.uniform(0.02, 0.1))
    pixels = np.empty((size[1], size[0], 3), np.float32)
    pixels[:] = body * np.linspace(1.0, rng.uniform(0.7, 1.3), size[1], dtype=np.float32)[:, None, None]  # some form
    pixels[bezel : bezel + screen_size[1], bezel : bezel + screen_size[0]] = content.astype(np.float32) / 255
    alpha = Image.new("L", size, 0)
    ImageDraw.Draw(alpha).rounded_rectangle([0, 0, size[0] - 1, size[1] - 1], radius=radius, fill=255)
    screen = (float(bezel), float(bezel), float(bezel + screen_size[0]), float(bezel + screen_size[1]))
    return _Picture(pixels, np.asarray(alpha, np.float32) / 255, _offset(box, (bezel, bezel)), screen)


def _viewer(rgb: np.ndarray, box: Box, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """The photo opened full-screen in a gallery or an image viewer: letterboxed on black, grey or white."""
    background = (0, 0, 0) if rng.random() < 0.5 else (_grey(rng, 30, 60) if rng.random() < 0.5 else (255, 255, 255))
    return _fit(rgb, box, size, float(rng.uniform(0.85, 1.0)), background)


def _desktop_page(
    rgb: np.ndarray, box: Box, others: Sequence[Other], size: tuple[int, int], theme: _Theme, rng: np.random.Generator
) -> tuple[np.ndarray, Box]:
    """A shop's product page in a desktop browser: tab and address bar, header, photo left, details right."""
    canvas = _Canvas(size, theme, units_across=1280)  # a desktop page's CSS width
    right, shop = canvas.units_across, str(rng.choice(SHOP_NAMES))
    canvas.rectangle((0, 0, right, 78), fill=_grey(rng, 222, 236))
    canvas.rectangle((12, 8, 240, 40), 8, fill=theme.page_color)
    canvas.text(26, 15, canvas.fitted(f"{shop} | Online store", 14, 200), 14, theme.text_color)
    canvas.rectangle((110, 44, right - 110, 72), 14, fill=_grey(rng, 244, 250))
    host = shop.lower().replace(" ", "").replace("&", "")
    canvas.text(130, 50, f"www.{host}.com/product/{rng.integers(10000, 99999)}", 14, theme.muted_color)
    canvas.text(80, 100, shop, 30, theme.text_color, bold=True)
    for slot, word in enumerate(("Women", "Men", "New in", "Sale")):
        canvas.text(420 + slot * 110, 110, word, 16, theme.text_color)
    canvas.line([(0, 150), (right, 150)], theme.line_color, 1)

    width, height = float(rng.uniform(480, 600)), canvas.units_high - 190
    zoom = 1.0 if rng.random() < 0.6 else float(rng.uniform(1.03, 1.12))
    tile, box = _fit(rgb, box, (canvas.px(width), canvas.px(height)), zoom, theme.photo_color)
    box = _offset(box, canvas.paste(tile, 80, 170))

    x = 80 + width + 60
    canvas.text(x, 180, canvas.fitted(_product_name(rng), 26, right - x - 40), 26, theme.text_color)
    canvas.price(x, 228, _price(rng)[0], 28, theme.text_color)
    y = 290.0
    for _ in range(int(rng.integers(3, 7))):  # the description, too small to read: lines of grey
        canvas.rectangle((x, y, x + float(rng.uniform(0.5, 1.0)) * (right - x - 80), y + 8), fill=theme.line_color)
        y += 22
    _button(canvas, (x, y + 20, min(x + 360, right - 40), y + 76), str(rng.choice(BUTTON_TEXTS)).upper(), rng)
    if others and rng.random() < 0.5:  # other products under the details
        side = (right - x - 120) / 3
        for slot, photo in enumerate(_other_photos(others, 3, rng)):
            tile = _thumbnail(photo, (canvas.px(side), canvas.px(side * 1.25)), theme, rng, crop=True)
            canvas.paste(tile, x + slot * (side + 20), y + 110)
    return canvas.pixels(), box


def _printed_page(rgb: np.ndarray, box: Box, seen_long_side: float, rng: np.random.Generator) -> _Picture:
    """A catalogue or magazine page: the photo, a caption, two columns of body text; the ink comes later (`_print`)."""
    resolution = float(rng.uniform(1.0, 1.4))  # page px per frame px: printed detail is finer than the camera's
    height = round(seen_long_side * resolution)
    width = round(height / rng.uniform(1.29, 1.42))  # A4 to a magazine's proportions
    theme = _Theme((255,) * 3, (255,) * 3, (25,) * 3, (90,) * 3, (150,) * 3, _theme(rng).accent_color)
    canvas = _Canvas((width, height), theme, units_across=210)  # millimetres across an A4 page
    margin = float(rng.uniform(12, 24))
    photo_width, photo_height = 210 - 2 * margin, canvas.units_high * float(rng.uniform(0.5, 0.68))
    backdrop = (255, 255, 255) if rng.random() < 0.5 else _grey(rng, 225, 245)
    zoom = 1.0 if rng.random() < 0.6 else float(rng.uniform(1.03, 1.12))
    tile, box = _fit(rgb, box, (canvas.px(photo_width), canvas.px(photo_height)), zoom, backdrop)
    box = _offset(box, canvas.paste(tile, margin, margin))
    y = margin + photo_height + 6
    canvas.text(margin, y, canvas.fitted(_product_name(rng), 7, photo_width), 7, theme.text_color, bold=True)
    canvas.price(margin, y + 10, _price(rng)[0], 8, theme.accent_color)
    column = (photo_width - 6) / 2
    for line in np.arange(y + 24, canvas.units_high - margin, 5.0):  # body text in two columns: grey lines
        for left in (margin, margin + column + 6):
            length = column * (rng.uniform(0.3, 0.8) if rng.random() < 0.12 else rng.uniform(0.92, 1.0))
            canvas.rectangle((left, line, left + length, line + 2), fill=theme.muted_color)
    pixels = canvas.pixels().astype(np.float32) / 255
    cell = float(rng.uniform(*HALFTONE_PERIOD)) * resolution
    return _Picture(pixels, np.ones(pixels.shape[:2], np.float32), box, None, cell)


# ---------------------------------------------------------------------------------------------
# Rephotographs: the camera


def _camera_view(
    picture_size: tuple[int, int], frame_size: tuple[int, int], fill: float, rng: np.random.Generator
) -> np.ndarray:
    """The homography from the picture's pixels to the frame's, as a phone held at an angle sees it.

    The picture is a rectangle in 3-D turned by pitch, yaw and roll, at the distance where a
    wide lens sees it fill `fill` of its view, and projected; the projection is then scaled to
    span `fill` of the frame and placed at random.
    """
    width, height = picture_size
    half_x, half_y = np.array([width, height], np.float64) / max(width, height) / 2
    flat = np.array([[-half_x, -half_y, 0], [half_x, -half_y, 0], [half_x, half_y, 0], [-half_x, half_y, 0]])
    strong = math.radians(rng.uniform(*TILT_DEGREES)) * rng.choice([-1, 1])
    weak = math.radians(rng.uniform(-15, 15))
    pitch, yaw = (strong, weak) if rng.random() < 0.5 else (weak, strong)
    roll = math.radians(rng.uniform(-ROLL_DEGREES, ROLL_DEGREES))
    turned = flat @ (_rotation_z(roll) @ _rotation_x(pitch) @ _rotation_y(yaw)).T
    distance = 1 / (2 * fill * math.tan(HORIZONTAL_FIELD_OF_VIEW / 2))
    projected = turned[:, :2] / (turned[:, 2:] + distance)
    low, extent = projected.min(axis=0), np.ptp(projected, axis=0)
    scale = fill * min(frame_size[0] / extent[0], frame_size[1] / extent[1])
    quad = (projected - low) * scale + rng.uniform(0.15, 0.85, 2) * (np.array(frame_size) - extent * scale)
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.getPerspectiveTransform(corners, quad.astype(np.float32))


def _rotation_x(angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]])


def _rotation_y(angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]])


def _rotation_z(angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])


def _picture_coordinates(matrix: np.ndarray, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For the centre of every frame pixel in `window` (x0, y0, x1, y1), the picture point it sees (float32)."""
    x0, y0, x1, y1 = window
    inverse = np.linalg.inv(matrix).astype(np.float32)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    depth = inverse[2, 0] * xs + inverse[2, 1] * ys + inverse[2, 2]
    picture_x = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]) / depth
    picture_y = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]) / depth
    return picture_x, picture_y


def _photograph(
    picture: _Picture, matrix: np.ndarray, frame_size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """The picture photographed in a room: float RGB (h, w, 3) in [0, 1].

    Only the window of the frame the picture covers is mapped back to it, to save time.
    """
    height, width = picture.alpha.shape
    outline = clip_box(warp_box((0, 0, width, height), matrix), *frame_size)
    window = (int(outline[0]), int(outline[1]), math.ceil(outline[2]), math.ceil(outline[3]))
    picture_x, picture_y = _picture_coordinates(matrix, window)
    sample_x, sample_y = picture_x - 0.5, picture_y - 0.5  # remap samples at pixel centres
    alpha = cv2.remap(picture.alpha, sample_x, sample_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    colors = cv2.remap(picture.pixels, sample_x, sample_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    room = _room(frame_size, rng)
    light = _room_light(frame_size, warm=picture.screen is None, rng=rng)
    covered = np.zeros((frame_size[1], frame_size[0], 1), np.float32)
    covered[window[1] : window[3], window[0] : window[2]] = alpha
    inside = np.s_[window[1] : window[3], window[0] : window[2]]
    if picture.screen is None:
        room = _cast_shadow(room, covered, rng)
        colors = _print(colors, picture_x, picture_y, picture.halftone_cell, rng)
        photo = room * (1 - covered)
        photo[inside] += colors * alpha
        photo *= light  # the page is lit by the room
    else:
        colors = _display(colors, picture_x, picture_y, picture.screen, rng)
        photo = room * light * (1 - covered) * rng.uniform(0.35, 0.8)  # exposed for the screen, the room is dim
        photo[inside] += colors * alpha  # the screen gives its own light
    if rng.random() < 2 / 3:
        photo = _glare(photo, covered, 0.35 if picture.screen is not None else 0.2, rng)
    return _camera_finish(photo, rng)


def _display(
    colors: np.ndarray, picture_x: np.ndarray, picture_y: np.ndarray, screen: Box, rng: np.random.Generator
) -> np.ndarray:
    """What the camera records of a lit screen: its gamma, cast and black level, through its sub-pixel grid.

    Each screen pixel is three vertical stripes (red, green, blue) over a dark gap. As cosines at
    the screen's pixel pitch, sampled at the frame's pixels through the perspective, they alias
    into coloured bands that bend and change width across the screen: moire.
    """
    x0, y0, x1, y1 = screen
    lit = ((picture_x >= x0) & (picture_x < x1) & (picture_y >= y0) & (picture_y < y1))[..., None]
    gamma = float(rng.uniform(0.8, 1.15))
    cast = np.array([rng.uniform(0.86, 0.97), rng.uniform(0.95, 1.0), rng.uniform(1.0, 1.08)], np.float32)
    black = float(rng.uniform(0.02, 0.08))  # an LCD's black glows; a camera sees it grey-blue
    exposure = float(rng.uniform(0.95, 1.15))
    shown = black + (1 - black) * exposure * cv2.pow(np.clip(colors, 0, 1), gamma) * cast
    stripes, gaps = float(rng.uniform(0.06, 0.25)), float(rng.uniform(0.03, 0.15))
    phase = 2 * np.pi * (picture_x - x0)
    cos, sin = np.cos(phase), np.sin(phase)
    offsets = 2 * np.pi * (np.arange(3) + 0.5) / 3  # where in a pixel its red, green and blue stripes are
    grid = np.stack([cos * math.cos(offset) + sin * math.sin(offset) for offset in offsets], axis=-1)
    grid = (1 + stripes * grid) * (1 + gaps * np.cos(2 * np.pi * (picture_y - y0)))[..., None]
    return np.where(lit, shown * grid, colors)


def _print(
    colors: np.ndarray, picture_x: np.ndarray, picture_y: np.ndarray, cell: float, rng: np.random.Generator
) -> np.ndarray:
    """The page as printed: flatter colours, cyan, magenta and yellow halftone dots, paper's tint and fibre.

    Each ink is a screen of dots at its own angle whose size grows with the ink's coverage;
    evaluated at the frame pixels' positions on the page, so dots larger than a frame pixel
    show as dots and smaller ones alias into moire, as in a photo of a print.
    """
    grey = colors.mean(axis=2, keepdims=True)
    colors = grey + (colors - grey) * rng.uniform(0.65, 0.9)  # inks cover less of the gamut than a screen
    coverage = 1 - colors
    softness = float(np.clip(1.2 / max(cell, 1e-3), 0.2, 0.8))  # about a frame pixel of anti-aliasing
    inks = np.empty_like(colors)
    for channel, degrees in enumerate(HALFTONE_ANGLES):
        angle = math.radians(degrees + rng.uniform(-2, 2))
        along = (picture_x * math.cos(angle) + picture_y * math.sin(angle)) * (2 * np.pi / cell)
        across = (picture_y * math.cos(angle) - picture_x * math.sin(angle)) * (2 * np.pi / cell)
        threshold = 0.5 - (np.cos(along) + np.cos(across)) / 4  # lowest at a dot's centre, where ink starts
        inks[..., channel] = np.clip((coverage[..., channel] - threshold) / softness + 0.5, 0, 1)
    paper = np.array([rng.uniform(0.94, 0.98), rng.uniform(0.93, 0.97), rng.uniform(0.88, 0.94)], np.float32)
    printed = paper * (1 - rng.uniform(0.8, 0.9) * inks)  # the densest ink still reflects some light
    height, width = picture_x.shape
    fibre = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), 0.8)
    return printed * (1 + 0.025 * fibre + 0.02 * _blobs((width, height), 6, rng))[..., None]


def _blobs(size: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise of about unit variance over (w, h), varying over `cells` blobs across."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, size, interpolation=cv2.INTER_CUBIC)


def _room(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """What is around the picture: a wall or a desk, or both meeting at an edge; flat, grainy or wood."""
    width, height = size
    base = np.array(_hsv_color(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.3, 0.85)), np.float32)
    room = np.empty((height, width, 3), np.float32)
    room[:] = base / 255
    kind = rng.choice(["flat", "grainy", "wood", "wall_and_desk"])
    if kind == "grainy":  # plaster, a carpet, a fabric
        grain = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), rng.uniform(0.7, 2.5))
        room *= (1 + rng.uniform(0.08, 0.25) * grain)[..., None]
    elif kind == "wood":  # streaks along the boards: noise stretched along one axis
        streaks = cv2.resize(rng.standard_normal((height, 6)).astype(np.float32), (width, height))
        boards = np.repeat(rng.uniform(-0.08, 0.08, height // 40 + 1), 40)[:height, None]
        grain = 1 + 0.06 * streaks + boards
        room *= (grain if rng.random() < 0.5 else cv2.resize(grain.T.copy(), (width, height)))[..., None]
    elif kind == "wall_and_desk":
        xs, ys = np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]
        edge = height * rng.uniform(0.15, 0.6) + (xs - width / 2) * math.tan(math.radians(rng.uniform(-10, 10)))
        wall = np.array(_hsv_color(rng.uniform(0, 1), rng.uniform(0, 0.15), rng.uniform(0.55, 0.95)), np.float32)
        room = np.where((ys < edge)[..., None], wall / 255, room)
    return room * (1 + 0.08 * _blobs(size, 3, rng))[..., None]


def _room_light(size: tuple[int, int], *, warm: bool, rng: np.random.Generator) -> np.ndarray:
    """Light falling off across the frame (a lamp to one side) and, for prints, its warm colour; (h, w, 3)."""
    width, height = size
    angle = rng.uniform(0, 2 * np.pi)
    xs = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5) * math.cos(angle)
    ys = (np.arange(height, dtype=np.float32)[:, None] / height - 0.5) * math.sin(angle)
    falloff = (1 + rng.uniform(0.1, 0.4) * (xs + ys)) * rng.uniform(0.85, 1.05)
    color = np.array([1.0, rng.uniform(0.92, 0.98), rng.uniform(0.8, 0.92)] if warm else [1.0, 1.0, 1.0], np.float32)
    return falloff[..., None] * color


def _cast_shadow(room: np.ndarray, covered: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A page lying on a desk darkens the desk beside it, softly, away from the light."""
    height, width = covered.shape[:2]
    shift = np.float32([[1, 0, rng.uniform(-0.015, 0.015) * width], [0, 1, rng.uniform(0, 0.02) * height]])
    shadow = cv2.warpAffine(covered[..., 0], shift, (width, height))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.01 * max(width, height) + 1)
    return room * (1 - rng.uniform(0.15, 0.35) * shadow)[..., None]


def _glare(photo: np.ndarray, covered: np.ndarray, strongest: float, rng: np.random.Generator) -> np.ndarray:
    """A reflection on the glass or the gloss, added: a soft bright ellipse, or a window with its cross bars."""
    height, width = photo.shape[:2]
    small = (max(1, width // 4), max(1, height // 4))  # glare is soft: drawn at a quarter size, then enlarged
    inside = np.argwhere(covered[::4, ::4, 0] > 0.5)
    centre = inside[rng.integers(len(inside))][::-1] if len(inside) else np.array(small) // 2
    shape = np.zeros((small[1], small[0]), np.float32)
    extent = np.array(small) * rng.uniform(0.12, 0.4, 2)
    angle = float(rng.uniform(0, 180))
    if rng.random() < 0.6:
        axes = (int(extent[0] / 2) + 1, int(extent[1] / 2) + 1)
        cv2.ellipse(shape, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1)
        shape = cv2.GaussianBlur(shape, (0, 0), float(extent.mean() / 3 + 1))
    else:  # a window: four panes with dark bars between them
        corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(extent[0]), float(extent[1])), angle))
        cv2.fillConvexPoly(shape, corners.astype(np.int32), 1.0)
        middles = ((corners + np.roll(corners, -1, axis=0)) / 2).astype(int)  # of the four sides
        bar = max(1, int(extent.min() / 12))
        cv2.line(shape, tuple(map(int, middles[0])), tuple(map(int, middles[2])), 0.0, bar)
        cv2.line(shape, tuple(map(int, middles[1])), tuple(map(int, middles[3])), 0.0, bar)
        shape = cv2.GaussianBlur(shape, (0, 0), float(extent.min() / 10 + 0.7))
    shape = cv2.resize(shape / max(float(shape.max()), 1e-6), (width, height), interpolation=cv2.INTER_LINEAR)
    tint = np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.95, 1.03)], np.float32)
    return photo + rng.uniform(0.1, strongest) * shape[..., None] * covered * tint


def _camera_finish(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A little defocus, then sensor noise: a read floor plus shot noise growing with brightness.

    The noise is mostly in brightness; its colour part is coarser, as a phone's demosaicing and
    denoising leave it.
    """
    photo = cv2.GaussianBlur(np.clip(photo, 0, 1), (0, 0), rng.uniform(0.4, 1.3))
    height, width = photo.shape[:2]
    read, shot = rng.uniform(0.004, 0.015), rng.uniform(0.01, 0.03)
    chroma = rng.standard_normal((height // 2 + 1, width // 2 + 1, 3), np.float32) * 0.5
    noise = rng.standard_normal((height, width, 1), np.float32) + cv2.resize(chroma, (width, height))
    return photo + noise * (read + shot * np.sqrt(photo))
