import numpy as np
import pytest
from PIL import Image

from training.report import (
    ExampleRow,
    Section,
    Table,
    example_sheet,
    plot_confusion_matrix,
    plot_recall_curves,
    write_report,
)


def test_table_renders_markdown_with_dashes_for_missing_values():
    table = Table(["method", "R@1", "note"], [["model float", 0.91234, "a|b"], ["baseline phash", float("nan"), None]])
    lines = table.to_markdown().splitlines()
    assert lines[0] == "| method | R@1 | note |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2] == "| model float | 0.912 | a\\|b |"
    assert lines[3] == "| baseline phash | – | – |"


def test_write_report_writes_markdown_and_png_files(tmp_path):
    ks = np.arange(1, 51)
    curves = {"model float": 1 - 0.5 / ks, "baseline phash": 0.01 * ks / 2}
    curve = plot_recall_curves(curves, tmp_path, dashed=["baseline phash"])
    matrix = np.array([[5, 1], [0, 4]])
    confusion = plot_confusion_matrix(matrix, ["dress", "hat"], tmp_path, "confusion.png", "model")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    sheet = example_sheet(
        [ExampleRow(pixels[0], list(pixels[1:]), [True, False], "dress")], tmp_path, "ex.png", "examples"
    )
    results = Table(["method", "instance R@1"], [["model float", 0.75], ["baseline phash", 0.0]])
    path = write_report(
        tmp_path / "",
        "Embedder evaluation",
        [Section("Results", [results, curve]), Section("Classifier", ["No classifier.", confusion, sheet])],
        intro=["Model `m`."],
    )
    text = path.read_text()
    assert text.startswith("# Embedder evaluation\n\nModel `m`.\n\n## Results")
    assert "| model float | 0.750 |" in text and "![model](confusion.png)" in text
    for file in ("recall_at_k.png", "confusion.png", "ex.png"):
        with Image.open(tmp_path / file) as image:
            assert image.format == "PNG" and min(image.size) > 50
    with Image.open(tmp_path / "ex.png") as image:
        assert image.size == (3 * 118, 118 + 14)


def test_write_report_refuses_pictures_that_were_not_drawn(tmp_path):
    from training.report import Picture

    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(tmp_path, "t", [Section("s", [Picture("missing.png", "gone")])])
