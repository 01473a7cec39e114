"""Benchmark detection on this machine: the detector alone in ONNX Runtime, and `/search` end to end.

    python -m loadtests.bench_detect --onnx training/artifacts/detector.onnx          # engine only
    python -m loadtests.bench_detect --onnx training/artifacts/detector.onnx --url http://127.0.0.1:3000

1. Engine: the shipped detector graph at its input size, batch 1 latency (median and p90 of
   `--repeats` runs) and batch 8 throughput, next to the shipped embedder's at batch 1 and 3 (the
   crops of a 3-item photo), in the same run, so the ratio holds on a noisy machine.
2. Service (with `--url`, against a running `make demo`): `/search` on a 1024 px photo of three
   catalogue photos among clutter, one request at a time; client latency and the server's
   `took_ms`, median and p90, and how many items came back.

Prints a Markdown table; `--out FILE` also writes it. Timings are medians; this machine is shared.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.engines import OnnxModel
from lookalike.settings import get_settings

log = logging.getLogger("bench_detect")
WARMUP = 3


def timings(function, repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls after a warm-up."""
    for _ in range(WARMUP):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def engine_rows(onnx: Path, embedder: Path, repeats: int) -> list[tuple[str, float, float, float]]:
    """(what, median ms, p90 ms, images/s) for the detector at batch 1 and 8, the embedder at 1 and 3."""
    rows = []
    rng = np.random.default_rng(0)
    for name, path in (("detector", onnx), ("embedder", embedder)):
        engine = OnnxModel(path)
        size = engine.session.get_inputs()[0].shape[1]
        size = size if isinstance(size, int) else 320
        for batch in (1, 8) if name == "detector" else (1, 3):
            pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            times = timings(lambda engine=engine, pixels=pixels: engine(pixels), repeats)
            median = statistics.median(times)
            rows.append((f"{name} {size} px, batch {batch}", median, p90(times), batch * 1000 / median))
    return rows


def three_item_photo(data_dir: Path, seed: int = 0) -> bytes:
    """A 1024 px JPEG: three validation photos of different classes side by side on a cluttered floor."""
    from training.synth.photo import clutter

    rng = np.random.default_rng(seed)
    canvas = Image.fromarray((clutter((1024, 768), rng) * 255).astype(np.uint8))
    folders = sorted(p for p in (data_dir / "validation").iterdir() if p.is_dir())[:3]
    for slot, folder in enumerate(folders):
        photo = Image.open(min(folder.glob("*.jpg"))).convert("RGB")
        photo.thumbnail((300, 420))
        canvas.paste(photo, (30 + slot * 335, 150 + 60 * (slot % 2)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def service_rows(url: str, photo: bytes, repeats: int) -> list[tuple[str, float, float, float]]:
    import httpx

    took, items = [], []

    def call() -> None:
        response = httpx.post(f"{url}/search", files={"image": ("photo.jpg", photo, "image/jpeg")}, timeout=60)
        response.raise_for_status()
        body = response.json()
        took.append(body["took_ms"])
        items.append(len(body["items"]))

    client = timings(call, repeats)
    took = took[WARMUP:]
    return [
        (
            f"/search, 1024 px photo of 3 items (client, {statistics.median(items[WARMUP:]):.0f} items)",
            statistics.median(client),
            p90(client),
            1000 / statistics.median(client),
        ),
        ("/search, the same (server took_ms)", statistics.median(took), p90(took), 1000 / statistics.median(took)),
    ]


def table(rows) -> str:
    lines = ["| what | median ms | p90 ms | images or requests/s |", "|---|---|---|---|"]
    lines += [f"| {what} | {median:.1f} | {ninety:.1f} | {rate:.1f} |" for what, median, ninety, rate in rows]
    return "\n".join(lines) + "\n"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=Path("training/artifacts/detector.onnx"))
    parser.add_argument("--embedder", type=Path, default=Path("training/artifacts/embedder.onnx"))
    parser.add_argument("--url", help="a running service to time /search on (make demo)")
    parser.add_argument("--data-dir", type=Path, default=get_settings().clothing_dir)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    return parser


def main(args: argparse.Namespace) -> str:
    rows = engine_rows(args.onnx, args.embedder, args.repeats)
    if args.url:
        rows += service_rows(args.url, three_item_photo(args.data_dir), args.repeats)
    report = table(rows)
    print(report)
    if args.out:
        args.out.write_text(report)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(get_args_parser().parse_args())
