"""Evaluation reports: Markdown with tables, and PNG plots beside it.

`write_report(out_dir, title, sections)` renders `Section`s whose bodies mix Markdown
paragraphs, `Table`s and `Picture`s; the plot functions draw a PNG into the report folder and
return the `Picture` to place. Plots use matplotlib's object API (`Figure`), which needs no
display and touches no global pyplot state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageOps

log = logging.getLogger(__name__)
REPORT_FILE = "report.md"
MISSING = "–"


@dataclass
class Table:
    """Rows of cells under `columns`; floats print with `digits` decimals, None and NaN as a dash."""

    columns: list[str]
    rows: list[list]
    title: str = ""
    note: str = ""
    digits: int = 3

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|")
        lines += ["| " + " | ".join(self.format(cell) for cell in row) + " |" for row in self.rows]
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else []))

    def format(self, cell) -> str:
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            return MISSING
        if isinstance(cell, (float, np.floating)):
            return f"{cell:.{self.digits}f}"
        return str(cell).replace("|", "\\|")


@dataclass
class Picture:
    file: str
    caption: str

    def to_markdown(self) -> str:
        return f"![{self.caption}]({self.file})"


@dataclass
class Section:
    heading: str
    body: list[str | Table | Picture] = field(default_factory=list)

    def to_markdown(self) -> str:
        parts = [f"## {self.heading}"] + [item if isinstance(item, str) else item.to_markdown() for item in self.body]
        return "\n\n".join(parts)


def write_report(out_dir: Path, title: str, sections: Sequence[Section], intro: Sequence[str] = ()) -> Path:
    """Write OUT_DIR/report.md; the plots named in `sections` must already be in OUT_DIR."""
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [
        item.file
        for s in sections
        for item in s.body
        if isinstance(item, Picture) and not (out_dir / item.file).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"pictures {missing} are not in {out_dir}")
    text = "\n\n".join([f"# {title}", *intro, *(section.to_markdown() for section in sections)]) + "\n"
    path = out_dir / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    log.info("wrote %s", path)
    return path


def plot_recall_curves(
    curves: dict[str, np.ndarray],
    out_dir: Path,
    file: str = "recall_at_k.png",
    title: str = "",
    dashed: Sequence[str] = (),
) -> Picture:
    """Recall@k for k = 1..len(curve), one line per method; the `dashed` ones (baselines) thin and dashed."""
    figure = Figure(figsize=(10, 5), layout="constrained")
    axes = figure.add_subplot()
    for name, curve in curves.items():
        ks = np.arange(1, len(curve) + 1)
        thin = name in dashed
        axes.plot(ks, curve, label=name, linewidth=1.2 if thin else 2.2, linestyle="--" if thin else "-")
    axes.set(xlabel="k", ylabel="recall@k", ylim=(0, 1.01), xlim=(1, max(len(c) for c in curves.values())), title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, out_dir, file, title or "recall@k")


def plot_confusion_matrix(
    matrix: np.ndarray, labels: Sequence[str], out_dir: Path, file: str, title: str = ""
) -> Picture:
    """Counts with rows = true class, columns = predicted; colour = share of the true class."""
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if shares[row, column] > 0.6 else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize="small", color=colour)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=axes, label="share of the true class")
    return save_figure(figure, out_dir, file, title or "confusion matrix")


@dataclass
class ExampleRow:
    """A query and its top results; `correct[i]` frames result i green (True) or red (False)."""

    query: np.ndarray
    results: list[np.ndarray]
    correct: list[bool]
    label: str = ""


def example_sheet(rows: Sequence[ExampleRow], out_dir: Path, file: str, caption: str, side: int = 112) -> Picture:
    """A contact sheet: each row is a query (grey frame) then its results (green right, red wrong)."""
    columns = 1 + max(len(row.results) for row in rows)
    header = 14
    sheet = Image.new("RGB", (columns * (side + 6), len(rows) * (side + 6 + header)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * (side + 6 + header)
        draw.text((3, top + 1), row.label, fill="black")
        tiles = [(row.query, "grey")] + [
            (result, "green" if ok else "red") for result, ok in zip(row.results, row.correct)
        ]
        for c, (pixels, colour) in enumerate(tiles):
            tile = ImageOps.expand(Image.fromarray(pixels).resize((side, side)), border=3, fill=colour)
            sheet.paste(tile, (c * (side + 6), top + header))
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet.save(out_dir / file)
    return Picture(file, caption)


def save_figure(figure: Figure, out_dir: Path, file: str, caption: str) -> Picture:
    """Write `figure` as OUT_DIR/FILE (PNG) and return its Markdown picture."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_dir / file, dpi=110)
    return Picture(file, caption)
