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
    "t-shirt": [(.3, .15), (.42, .12), (.58, .12), (.7, .15), (.9, .32), (.8, .42), (.72, .35), (.72, .88), (.28, .88), (.28, .35), (.2, .42), (.1, .32)],
    "longsleeve": [(.3, .15), (.42, .12), (.58, .12), (.7, .15), (.95, .75), (.87, .8), (.72, .4), (.72, .88), (.28, .88), (.28, .4), (.13, .8), (.05, .75)],
    "dress": [(.38, .08), (.62, .08), (.64, .35), (.85, .92), (.15, .92), (.36, .35)],
    "skirt": [(.32, .2), (.68, .2), (.85, .8), (.15, .8)],
    "pants": [(.3, .08), (.7, .08), (.76, .92), (.56, .92), (.5, .35), (.44, .92), (.24, .92)],
    "shorts": [(.25, .25), (.75, .25), (.82, .7), (.56, .72), (.5, .5), (.44, .72), (.18, .7)],
    "shoes": [(.1, .45), (.3, .45), (.45, .58), (.88, .62), (.92, .75), (.1, .75)],
    "hat": [(.3, .35), (.7, .35), (.75, .62), (.95, .66), (.95, .72), (.05, .72), (.05, .66), (.25, .62)],
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
