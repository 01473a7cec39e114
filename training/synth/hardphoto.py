"""Hard photo queries: the photo-like query taken in bad conditions, two hardships at a time.

Shoppers photograph at night, under a kitchen's tungsten bulb, with a shaking hand, holding the
garment or with another one lying over it. `HardPhoto` stages the scene as `PhotoLikeQuery` does
(the garment placed on clutter or a background photo, the frame warped and cropped:
`PhotoLikeQuery.staged_scene`, with this family's own generator) and picks two of four
hardships, with strong settings:

- occlusion: 15-35% of the garment's box is hidden, either by a hand (the back of a skin-toned
  hand, four fingers and a thumb with nails and knuckle creases, and a forearm that leaves the
  frame, drawn with OpenCV primitives; each part is shaded darker towards its rim, so creases
  show where fingers meet; it is large, being nearer the phone than the garment) or, when
  `others` are given, half the time by another garment cut out by its mask and laid over the
  target, turned by up to 35 degrees. The
  occluder's position is the first of `CANDIDATES` drawn positions whose coverage of the box
  (read from one integral image) is in range, else the closest; it casts a soft shadow.
- colour cast: the white balance is off by 25-45% for tungsten (orange), fluorescent (green) or
  shade (blue) light: linear-light channel gains, normalised to keep the luminance.
- motion blur: a line kernel 9-25 px long in a random direction (the phone moved during exposure).
- low light: exposure x0.12-0.35 in linear light; shot and read noise are added to that weak
  signal, then the phone's gain brings it most of the way back up, amplifying them: fine
  luminance grain and blotchy chroma noise (phones' denoisers leave low-frequency colour
  blotches). The black level is crushed afterwards.

They act in the order light and camera impose: the occluder is in the scene, so it is lit with
it; `photo.relight` (the room's light), then the colour cast, the motion blur and `photo.degrade`
(focus, mild noise), then the low-light sensor noise and gain. JPEG at quality 35-70 last.

The box is the target garment's box from the staged alpha, before occlusion: the item is still
there, partly hidden, and the shopper would still point at it. Everything random comes from
`np.random.default_rng([seed, STREAM, index])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from training.synth.photo import PhotoLikeQuery, alpha_box, degrade, jpeg_roundtrip, relight
from training.synth.query import Box, Other, Query, others_of

STREAM = 12  # this family's generator stream: (seed, index) draws nothing another family draws
HARDSHIPS = ("occlusion", "color_cast", "motion_blur", "low_light")
JPEG_QUALITY = (35, 70)
CANDIDATES = 64
OCCLUDED_SHARE = (0.15, 0.35)  # of the garment's box
GAMMA = 2.2  # display <-> linear light, near enough to sRGB for light arithmetic

# Linear-light channel gain directions of a white balance set for daylight under other light.
COLOR_CASTS = {
    "tungsten": np.float32([1.0, 0.0, -1.0]),
    "fluorescent": np.float32([-0.5, 1.0, -0.5]),
    "shade": np.float32([-1.0, 0.0, 1.0]),
}
LUMINANCE = np.float32([0.2126, 0.7152, 0.0722])
SKIN_COLORS = np.float32(
    [[236, 194, 168], [224, 172, 140], [198, 136, 104], [168, 112, 80], [124, 82, 58], [88, 58, 42]]
)
SKIN_COLORS /= 255
# Index, middle, ring and little finger: x of the base and radius in palm widths, length in palm widths.
DRAWN_PALM = 64.0  # pixels a palm width, at most, in the hand's drawing
FINGERS = ((-0.36, 0.115, 0.74), (-0.12, 0.12, 0.84), (0.12, 0.11, 0.78), (0.35, 0.095, 0.6))


@dataclass(frozen=True)
class HardPhoto:
    """`hard(image, mask, index, others)` -> the `index`-th hard photo of the garment, with its box."""

    seed: int = 0
    backgrounds: Sequence[Image.Image] = field(default=(), repr=False)

    def __call__(self, image: Image.Image, mask: np.ndarray, index: int, others: Sequence[Other] = ()) -> Query:
        rng = np.random.default_rng([self.seed, STREAM, index])
        photo, alpha = PhotoLikeQuery(self.seed, backgrounds=self.backgrounds).staged_scene(image, mask, rng)
        box = alpha_box(alpha)
        hardships = {HARDSHIPS[i] for i in rng.choice(len(HARDSHIPS), 2, replace=False)}
        if "occlusion" in hardships:
            photo = occlude(photo, box, others, rng)
        photo = relight(photo, rng)
        if "color_cast" in hardships:
            photo = color_cast(photo, rng)
        if "motion_blur" in hardships:
            photo = motion_blur(photo, rng)
        photo = degrade(photo, rng)
        if "low_light" in hardships:
            photo = low_light(photo, rng)
        return Query(jpeg_roundtrip(photo, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))), box)


# ---------------------------------------------------------------------------------------------
# Light and camera


def to_linear(photo: np.ndarray) -> np.ndarray:
    return np.clip(photo, 0, 1) ** GAMMA


def to_display(linear: np.ndarray) -> np.ndarray:
    return np.clip(linear, 0, 1) ** (1 / GAMMA)


def color_cast(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White balance off by 25-45% towards tungsten, fluorescent or shade light."""
    direction = COLOR_CASTS[str(rng.choice(list(COLOR_CASTS)))]
    gains = 1 + rng.uniform(0.25, 0.45) * direction
    gains /= gains @ LUMINANCE  # a cast, not an exposure change
    return to_display(to_linear(photo) * gains)


def motion_blur(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A line kernel 9-25 px long in a random direction."""
    length = int(rng.integers(9, 26))
    angle = rng.uniform(0, np.pi)
    kernel = np.zeros((length, length), np.float32)
    reach = (length - 1) / 2  # the kernel's centre, and the line's half length
    along = np.array([np.cos(angle), np.sin(angle)]) * reach
    # Drawn with 4 fraction bits so short diagonal kernels stay straight and even.
    start, end = (tuple(int(v) for v in np.round((reach + sign * along) * 16)) for sign in (-1, 1))
    cv2.line(kernel, start, end, 1.0, 1, cv2.LINE_AA, shift=4)
    return cv2.filter2D(photo, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def low_light(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure x0.12-0.35, sensor noise on the weak signal, the phone's gain, crushed blacks."""
    height, width = photo.shape[:2]
    exposure = rng.uniform(0.12, 0.35)
    signal = to_linear(photo) * exposure
    shot, read = rng.uniform(0.0006, 0.0015), rng.uniform(0.0008, 0.002)
    sigma = np.sqrt(_grey(signal) * shot + read**2)[..., None]
    # The phone's denoiser smooths the grain a little and leaves colour noise as blotches
    # several pixels wide, grey-balanced (balanced before enlarging: enlarging is linear).
    grain = cv2.GaussianBlur(1.3 * rng.standard_normal((height, width), np.float32), (0, 0), 0.6)[..., None]
    blotches = rng.standard_normal((height // 6 + 2, width // 6 + 2, 3), np.float32)
    blotches = cv2.resize(blotches - _grey(blotches)[..., None], (width, height), interpolation=cv2.INTER_CUBIC)
    noisy = signal + sigma * (grain + rng.uniform(0.6, 1.1) * blotches)
    gain = rng.uniform(0.55, 0.85) / exposure  # auto exposure lands under: it is still a dark room
    display = to_display(noisy * gain)
    saturation = rng.uniform(0.7, 0.9)  # the denoiser also takes colour
    display = display * saturation + _grey(display)[..., None] * (1 - saturation)
    black = rng.uniform(0.06, 0.14)
    return np.clip((display - black) / (1 - black), 0, 1)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The channels' mean, (h, w) (a product: numpy's mean over the last axis is several times slower)."""
    return rgb @ np.full(3, 1 / 3, np.float32)


# ---------------------------------------------------------------------------------------------
# Occlusion


def occlude(photo: np.ndarray, box: Box, others: Sequence[Other], rng: np.random.Generator) -> np.ndarray:
    """A hand or another garment over 15-35% of `box`, with a soft shadow."""
    target = rng.uniform(*OCCLUDED_SHARE)
    use_garment = rng.random() < 0.5
    picked = others_of(others, 1, rng)
    if use_garment and picked:
        colors, alpha, anchor = _garment_layer(picked[0], box, target, rng)
    else:
        colors, alpha, anchor = _hand_layer(photo.shape, box, target, rng)
    offset = _placement(alpha, anchor, box, rng)
    return _paste(photo, colors, alpha, offset, rng)


def box_shares(alpha: np.ndarray, offsets: np.ndarray, box: Box) -> np.ndarray:
    """The share of `box` that `alpha` covers when its top-left corner is at each (x, y) of `offsets`."""
    integral = cv2.integral(alpha.astype(np.float32), sdepth=cv2.CV_64F)
    height, width = alpha.shape
    x0, y0, x1, y1 = (round(v) for v in box)
    left = np.clip(x0 - offsets[:, 0], 0, width)
    right = np.clip(x1 - offsets[:, 0], 0, width)
    top = np.clip(y0 - offsets[:, 1], 0, height)
    bottom = np.clip(y1 - offsets[:, 1], 0, height)
    covered = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    return covered / max((x1 - x0) * (y1 - y0), 1)


def _placement(alpha: np.ndarray, anchor: np.ndarray, box: Box, rng: np.random.Generator) -> tuple[int, int]:
    """The layer's top-left corner in the frame, its `anchor` pixel (the palm's centre, the
    garment's middle) at a random point of the box: the first candidate with an in-range share,
    else the closest."""
    x0, y0, x1, y1 = box
    points = np.stack([rng.uniform(x0, x1, CANDIDATES), rng.uniform(y0, y1, CANDIDATES)], axis=1)
    offsets = np.round(points - anchor).astype(int)
    shares = box_shares(alpha, offsets, box)
    miss = np.maximum(OCCLUDED_SHARE[0] - shares, shares - OCCLUDED_SHARE[1]).clip(0)
    return tuple(int(v) for v in offsets[int(np.argmin(miss))])  # argmin: the first of equals


def _paste(
    photo: np.ndarray, colors: np.ndarray, alpha: np.ndarray, offset: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """`colors` over `photo` through `alpha` at `offset`, clipped to the frame, after a soft shadow."""
    height, width = photo.shape[:2]
    size = max(height, width)
    shift = np.float32([[1, 0, rng.uniform(-0.02, 0.02) * size], [0, 1, rng.uniform(0.005, 0.03) * size]])
    softness, darkness = rng.uniform(0.01, 0.025) * size, rng.uniform(0.25, 0.5)
    layer = np.zeros((height, width), np.float32)
    painted = np.zeros((height, width, 3), np.float32)  # colours times alpha
    left, top = offset
    frame_cols = slice(max(left, 0), max(min(left + alpha.shape[1], width), 0))
    frame_rows = slice(max(top, 0), max(min(top + alpha.shape[0], height), 0))
    layer_cols = slice(frame_cols.start - left, frame_cols.stop - left)
    layer_rows = slice(frame_rows.start - top, frame_rows.stop - top)
    layer[frame_rows, frame_cols] = alpha[layer_rows, layer_cols]
    painted[frame_rows, frame_cols] = colors[layer_rows, layer_cols] * alpha[layer_rows, layer_cols, None]
    shadow = _soft_shadow(layer, shift, softness)
    return photo * ((1 - darkness * shadow) * (1 - layer))[..., None] + painted


def _soft_shadow(layer: np.ndarray, shift: np.ndarray, softness: float) -> np.ndarray:
    """`layer` moved by `shift` and blurred by `softness` px, at a quarter of the size: it is soft anyway."""
    height, width = layer.shape
    small = cv2.resize(layer, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    moved = cv2.warpAffine(small, shift * np.float32([[1, 1, 0.25], [1, 1, 0.25]]), small.shape[::-1])
    return cv2.resize(cv2.GaussianBlur(moved, (0, 0), softness / 4), (width, height), interpolation=cv2.INTER_LINEAR)


def _garment_layer(
    other: Other, box: Box, target: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Another garment cut out by its mask, scaled so it could cover `target` of the box, turned a little."""
    rgb = np.asarray(other.image.convert("RGB"), np.float32) / 255
    mask = np.asarray(other.mask, bool)
    if mask.shape != rgb.shape[:2] or not mask.any():
        mask = np.ones(rgb.shape[:2], bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    # Half of it or more lies outside the box at most placements, hence the extra area.
    wanted = target * rng.uniform(1.3, 2.0) * (box[2] - box[0]) * (box[3] - box[1])
    scale = np.sqrt(wanted / mask.sum())
    alpha = cv2.erode(mask[window].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    layer = np.dstack([rgb[window], alpha])
    size = (max(1, round(layer.shape[1] * scale)), max(1, round(layer.shape[0] * scale)))
    layer = cv2.resize(layer, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    layer, _ = _rotated(layer, rng.uniform(-35, 35))
    layer[..., 3] = cv2.GaussianBlur(layer[..., 3], (0, 0), 0.8)
    return layer[..., :3], layer[..., 3], np.float32([layer.shape[1] / 2, layer.shape[0] / 2])


def _rotated(layer: np.ndarray, degrees: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """`layer` turned (and scaled) about its centre on a canvas that holds all of it, and the 2x3 matrix."""
    height, width = layer.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, scale)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    matrix[:, 2] += np.array(size) / 2 - np.array([width / 2, height / 2])
    return cv2.warpAffine(layer, matrix, size, flags=cv2.INTER_LINEAR), matrix


# ---------------------------------------------------------------------------------------------
# The hand


def _hand_layer(
    shape: tuple[int, ...], box: Box, target: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The back of a hand reaching in from one side of the frame, sized to cover about `target` of the box.

    Drawn upright in palm widths (fingers up, forearm down), then turned so the forearm points
    out through the chosen side. A hand that covers a quarter of a shirt is large: it is nearer
    the phone than the shirt, as a hand holding a garment up to the camera is.
    """
    height, width = shape[:2]
    # Palm, fingers and the part of the forearm inside the box are ~2.5 palm widths squared.
    palm = max(8.0, float(np.sqrt(target * (box[2] - box[0]) * (box[3] - box[1]) / 2.5)))
    # Palm widths: at most 30 degrees off an axis, from anywhere in the frame, it still leaves it.
    forearm = 1.25 * max(height, width) / palm + 1
    # Drawn at up to 64 px a palm width and enlarged as it is turned: a big hand is smooth anyway,
    # and its long forearm would make the drawing most of the query's time.
    drawing = _HandDrawing(min(palm, DRAWN_PALM), forearm)
    parts, fingers = drawing.parts(rng)
    colors, alpha = _skin(drawing, parts, fingers, rng)
    layer = np.dstack([colors, cv2.GaussianBlur(alpha, (0, 0), 0.6 + 0.01 * drawing.palm)])

    side = rng.choice(4, p=[0.4, 0.25, 0.25, 0.1])  # the forearm leaves through bottom, left, right, top
    degrees = [0, -90, 90, 180][side] + rng.uniform(-30, 30)
    turned, matrix = _rotated(layer, degrees, palm / drawing.palm)
    palm_centre = np.float32([[drawing.pixel(0, 0)]]) / 16
    return turned[..., :3], turned[..., 3], cv2.transform(palm_centre, matrix)[0, 0]


@dataclass(frozen=True)
class _HandDrawing:
    """A canvas in palm widths: the palm's centre at (0, 0), fingers towards -y, the forearm to +y."""

    palm: float  # pixels per palm width
    forearm: float  # palm widths from the palm's centre to the forearm's end
    left: float = 1.2  # palm widths of canvas left of the palm's centre (and right of it)
    top: float = 1.7  # palm widths of canvas above it

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(np.ceil((self.top + self.forearm + 0.6) * self.palm)), int(np.ceil(2 * self.left * self.palm))

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Canvas pixel of a point in palm widths, with 4 fraction bits (OpenCV's `shift=4`)."""
        return round((self.left + x) * self.palm * 16), round((self.top + y) * self.palm * 16)

    def blob(self, circles: list[tuple[float, float, float]]) -> np.ndarray:
        """A uint8 mask of the convex hull of circles (x, y, radius): palm, tapered fingers, forearm."""
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        points = np.concatenate([[x, y] + radius * ring for x, y, radius in circles])
        pixels = np.array([self.pixel(x, y) for x, y in points], np.int32)
        mask = np.zeros(self.size, np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(pixels), 1, cv2.LINE_8, shift=4)
        return mask

    def parts(self, rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple]]:
        """Masks of palm, four fingers, thumb and forearm, and each finger's (base, tip, radius)."""
        mirror = 1 if rng.random() < 0.5 else -1  # a left or a right hand
        spread = rng.uniform(0.03, 0.14)  # radians between neighbouring fingers
        palm = self.blob([(-0.36, -0.36, 0.14), (0.36, -0.36, 0.14), (0.32, 0.36, 0.17), (-0.32, 0.4, 0.17)])
        fingers = []
        stretch = rng.uniform(0.9, 1.1)
        for finger, (x, radius, length) in enumerate(FINGERS):
            angle = (finger - 1.5) * spread * mirror + rng.uniform(-0.04, 0.04)
            base = np.array([x * mirror, -0.4])
            fingers.append((base, base + stretch * length * np.array([np.sin(angle), -np.cos(angle)]), radius))
        thumb_angle = rng.uniform(0.4, 0.9) * -mirror  # radians from upright, away from the fingers
        thumb_base = np.array([-0.5 * mirror, 0.02])
        thumb_tip = thumb_base + 0.5 * np.array([np.sin(thumb_angle), -np.cos(thumb_angle)])
        fingers.append((thumb_base, thumb_tip, 0.14))
        masks = [palm] + [self.blob([(*base, radius), (*tip, 0.8 * radius)]) for base, tip, radius in fingers]
        masks[-1] = self.blob([(-0.3 * mirror, 0.32, 0.2), (*thumb_base, 0.14), (*thumb_tip, 0.11)])  # with its root
        masks.append(self.blob([(0, 0.45, 0.36), (0, self.forearm + 0.5, 0.5)]))
        return masks, fingers


def _skin(
    drawing: _HandDrawing, parts: list[np.ndarray], fingers: list[tuple], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Colours and alpha of the hand: skin tone, rounded shading, knuckle creases, nails, light from one side."""
    palm = drawing.palm
    alpha = np.max(parts, axis=0).astype(np.float32)
    # Each part rounds off towards its own rim: creases where fingers meet the palm and each other.
    rim = 0.14 * palm
    rounded = np.max([np.sqrt(np.clip(cv2.distanceTransform(p, cv2.DIST_L2, 3) / rim, 0, 1)) for p in parts], axis=0)
    across = np.linspace(-1, 1, alpha.shape[1], dtype=np.float32)[None, :]
    along = np.linspace(-1, 1, alpha.shape[0], dtype=np.float32)[:, None]
    light = 0.6 + 0.4 * rounded + rng.uniform(-0.15, 0.15) * across + rng.uniform(-0.06, 0.06) * along
    marks = np.zeros(alpha.shape, np.float32)  # darker creases (+) and lighter nails (-)
    for base, tip, radius in fingers:
        direction, normal = tip - base, np.array([base[1] - tip[1], tip[0] - base[0]])
        for share in (0.42, 0.7):  # knuckle creases across the finger
            middle = base + share * direction
            ends = [drawing.pixel(*(middle + normal / np.linalg.norm(normal) * radius * side)) for side in (-0.8, 0.8)]
            cv2.line(marks, *ends, 0.12, max(1, round(0.02 * palm)), cv2.LINE_AA, 4)
        nail = tip - 0.16 * direction / np.linalg.norm(direction)
        axes = (round(0.55 * radius * palm * 16), round(0.95 * radius * palm * 16))
        degrees = float(np.degrees(np.arctan2(direction[0], -direction[1])))
        cv2.ellipse(marks, drawing.pixel(*nail), axes, degrees, 0, 360, -0.18, -1, cv2.LINE_AA, 4)
    marks = cv2.GaussianBlur(marks, (0, 0), 0.01 * palm + 0.5)
    texture = cv2.GaussianBlur(0.03 * rng.standard_normal(alpha.shape, np.float32), (0, 0), 0.8)
    skin = SKIN_COLORS[rng.integers(len(SKIN_COLORS))] * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    shade = (light * (1 - np.maximum(marks, 0)) * (1 + texture))[..., None]
    nails = np.maximum(-marks, 0)[..., None]  # pinker and paler than the skin around them
    colors = skin * shade * (1 - nails) + np.minimum(skin * 1.25 + [0.08, 0.02, 0.03], 1) * shade * nails
    return np.clip(colors, 0, 1).astype(np.float32), alpha
