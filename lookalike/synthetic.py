"""Synthetic catalogue: simple garment silhouettes in random colours and patterns.

For tests and for a demo without real photos; a folder per category, like a shop export.

    python -m lookalike.synthetic var/synthetic --per-class 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Silhouettes as polygons on a unit square (x, y), roughly how each garment lies on a table.
SILHOUETTES: dict[str, list[tuple[float, float]]] = {
    "t-shirt": [
        (0.3, 0.15),
        (0.42, 0.12),
        (0.58, 0.12),
        (0.7, 0.15),
        (0.9, 0.32),
        (0.8, 0.42),
        (0.72, 0.35),
        (0.72, 0.88),
        (0.28, 0.88),
        (0.28, 0.35),
        (0.2, 0.42),
        (0.1, 0.32),
    ],
    "longsleeve": [
        (0.3, 0.15),
        (0.42, 0.12),
        (0.58, 0.12),
        (0.7, 0.15),
        (0.95, 0.75),
        (0.87, 0.8),
        (0.72, 0.4),
        (0.72, 0.88),
        (0.28, 0.88),
        (0.28, 0.4),
        (0.13, 0.8),
        (0.05, 0.75),
    ],
    "dress": [(0.38, 0.08), (0.62, 0.08), (0.64, 0.35), (0.85, 0.92), (0.15, 0.92), (0.36, 0.35)],
    "skirt": [(0.32, 0.2), (0.68, 0.2), (0.85, 0.8), (0.15, 0.8)],
    "pants": [(0.3, 0.08), (0.7, 0.08), (0.76, 0.92), (0.56, 0.92), (0.5, 0.35), (0.44, 0.92), (0.24, 0.92)],
    "shorts": [(0.25, 0.25), (0.75, 0.25), (0.82, 0.7), (0.56, 0.72), (0.5, 0.5), (0.44, 0.72), (0.18, 0.7)],
    "shoes": [(0.1, 0.45), (0.3, 0.45), (0.45, 0.58), (0.88, 0.62), (0.92, 0.75), (0.1, 0.75)],
    "hat": [
        (0.3, 0.35),
        (0.7, 0.35),
        (0.75, 0.62),
        (0.95, 0.66),
        (0.95, 0.72),
        (0.05, 0.72),
        (0.05, 0.66),
        (0.25, 0.62),
    ],
}
PATTERNS = ("plain", "stripes", "checks", "dots")


def draw_garment(category: str, rng: np.random.Generator, size: int = 256) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(200, 256, 3))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    second = tuple(int(v) for v in rng.integers(0, 256, 3))
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    scale, dx, dy = rng.uniform(0.8, 1.0), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    points = [((x - 0.5) * scale + 0.5 + dx, (y - 0.5) * scale + 0.5 + dy) for x, y in SILHOUETTES[category]]
    polygon = [(x * size, y * size) for x, y in points]

    fill = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(fill)
    step = int(rng.integers(8, 24))
    if pattern == "stripes":
        for y in range(0, size, step):
            draw.rectangle((0, y, size, y + step // 2), fill=second)
    elif pattern == "checks":
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step, y + step), fill=second)
    elif pattern == "dots":
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                draw.ellipse((x - step // 4, y - step // 4, x + step // 4, y + step // 4), fill=second)

    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    image = Image.new("RGB", (size, size), background)
    image.paste(fill, mask=mask)
    return image


def write_catalogue(root: Path, *, per_class: int, seed: int = 0, size: int = 256, categories=None) -> list[Path]:
    """Write `per_class` JPEGs per category under root/<category>/; returns their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for category in categories or SILHOUETTES:
        folder = Path(root) / category
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = folder / f"{category}-{index:04d}.jpg"
            draw_garment(category, rng, size).save(path, quality=90)
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Same layout as the real photos: train/ is the catalogue, validation/ holds queries.
    write_catalogue(args.root / "train", per_class=args.per_class, seed=args.seed)
    write_catalogue(args.root / "validation", per_class=max(1, args.per_class // 8), seed=args.seed + 1)


if __name__ == "__main__":
    main()
