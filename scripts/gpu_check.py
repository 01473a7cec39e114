"""GPU check: every engine this GPU machine can run, benchmarked and checked against torch, in one command.

    python scripts/gpu_check.py                    # on a GPU machine, from the repository root (< 8 min)
    python scripts/gpu_check.py --device cpu --quick    # the dry run (any machine)

Uses what the machine has and says why it skips the rest: torch with CUDA at least (float32 and
float16, channels-last), ONNX Runtime (its CUDA provider where onnxruntime-gpu is installed, its
CPU otherwise), TensorRT float16 where `tensorrt` and `cuda-python` are installed (the engine is
built into `--cache-dir`, minutes the first time), and the training code's embedder where its
dependencies import. Needs only torch, numpy, onnx and onnxruntime: it imports neither BentoML nor
Qdrant nor pydantic. Models: the shipped ONNX files in training/artifacts.

Prints, and writes to `--out` (default loadtests/reports/engines/gpu-DEVICE.md): the machine, a
parity table (each backend against torch float32 on the same pixels: max |difference| per output,
the embedder's minimum cosine), and the benchmark table (images/s, p50/p99 per call, x torch
float32, GFLOP/s) at batch 1, 8, 32 and 64; then the embedder's batch-64 throughput with torch
float16 and with the best backend, beside the anchor of ~6,000 ResNet-50 images/s (Triton +
TensorRT on an A100; 4.1 GFLOP each, ~25 TFLOP/s).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as a file (`python scripts/gpu_check.py`): the repository root holds the packages it uses.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests.bench_engines import (
    MODELS,
    Result,
    flops_per_image,
    input_size,
    table,
    time_calls,
    training_model_embedder,
)

log = logging.getLogger("gpu_check")
TORCH_FP32 = "torch fp32 (ONNX graph)"
TORCH_FP16 = "torch fp16 (ONNX graph, channels-last)"
RESNET50_ANCHOR = (6000, 4.1)  # images/s (Triton + TensorRT, A100), GFLOP per image


def torch_device(requested: str):
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA GPU: run with --device cpu for the dry run")
    if requested == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here: parity, not speed
        torch.backends.cudnn.allow_tf32 = False
    return requested


def machine(device: str) -> list[str]:
    import torch

    lines = [f"- Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU cores"]
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        lines.append(
            f"- GPU: {properties.name}, {properties.total_memory / 2**30:.0f} GiB, "
            f"compute capability {properties.major}.{properties.minor}, CUDA {torch.version.cuda}"
        )
    for name in ("onnx", "onnxruntime", "tensorrt"):
        try:
            lines.append(f"- {name} {__import__(name).__version__}")
        except (ImportError, OSError, AttributeError) as error:  # not installed, or a broken install
            lines.append(f"- {name}: not available ({type(error).__name__}: {error})")
    try:
        import onnxruntime as ort

        lines.append(f"- ONNX Runtime providers: {', '.join(ort.get_available_providers())}")
    except ImportError:
        pass
    return lines


def backends(model: str, path: Path, device: str, cache_dir: Path) -> tuple[dict[str, Callable], dict[str, str]]:
    """(label -> engine, label -> why skipped) for `model` on `device`."""
    from lookalike.engines.reference import TorchEngine

    runs: dict[str, Callable] = {TORCH_FP32: TorchEngine(path, device=device)}
    skipped: dict[str, str] = {}
    if device == "cuda":
        runs[TORCH_FP16] = TorchEngine(path, device=device, dtype="float16")
    else:
        skipped[TORCH_FP16] = "float16 is a GPU measurement (--device cuda)"
    if model == "embedder":
        label = "torch eager (training model)" + (" fp32" if device == "cuda" else "")
        if device == "cpu":
            try:
                runs[label] = training_model_embedder(path)
            except ImportError as error:  # timm, pydantic or the training code missing
                skipped[label] = f"the training code does not import here: {type(error).__name__}: {error}"
        else:
            skipped[label] = "compared on the CPU only (the ONNX-graph rows are torch on the same weights)"
    try:
        import onnxruntime as ort

        from lookalike.engines.ort import OnnxModel, OrtOptions

        if "CUDAExecutionProvider" in ort.get_available_providers():
            runs["onnxruntime cuda fp32"] = OnnxModel(path, providers=["CUDAExecutionProvider"], options=OrtOptions())
        else:
            skipped["onnxruntime cuda fp32"] = "onnxruntime has no CUDAExecutionProvider (a CPU build; onnxruntime-gpu)"
        runs["onnxruntime cpu fp32"] = OnnxModel(path, providers=["CPUExecutionProvider"], options=OrtOptions())
    except ImportError as error:
        skipped["onnxruntime"] = f"onnxruntime does not import: {error}"
    from lookalike.engines.trt import TrtOptions, tensorrt_unavailable

    reason = tensorrt_unavailable()
    if device == "cpu":
        reason = "a GPU backend (--device cuda)" + (f"; besides, {reason}" if reason else "")
    if reason:
        skipped["tensorrt fp16"] = reason
    else:
        from lookalike.engines.trt import TensorRTEngine

        started = time.perf_counter()
        try:
            runs["tensorrt fp16"] = TensorRTEngine(path, TrtOptions(cache_dir=cache_dir, precision="fp16"))
            log.info("TensorRT engine for %s ready in %.0f s", model, time.perf_counter() - started)
        except (RuntimeError, ValueError, TypeError, OSError) as error:  # a finding, not a crash of the check
            skipped["tensorrt fp16"] = f"the engine did not build or load: {type(error).__name__}: {error}"
    return runs, skipped


def parity(model: str, runs: dict[str, Callable], size: int) -> list[str]:
    """Rows of the parity table: each backend against torch float32 on the same 8 seeded images."""
    pixels = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    reference = runs[TORCH_FP32](pixels)
    rows = []
    for label, run in runs.items():
        if label == TORCH_FP32:
            continue
        got = run(pixels)
        got = got if isinstance(got, dict) else dict(zip(reference, got))
        errors = ", ".join(f"{name} {np.abs(got[name] - value).max():.2e}" for name, value in reference.items())
        cosine = "-"
        if model == "embedder":
            cosine = f"{min(float(np.min(np.sum(got[n] * reference[n], 1))) for n in ('shape', 'color')):.5f}"
        rows.append(f"| {model} | {label} | {errors} | {cosine} |")
    return rows


def measure_all(model, runs, size, batches, seconds, min_calls, rounds, deadline) -> tuple[list[Result], list[str]]:
    rng = np.random.default_rng(0)
    results, notes = [], []
    for batch in batches:
        if time.perf_counter() > deadline:
            notes.append(f"{model} batch {batch} and above: skipped, the time budget ran out")
            break
        pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        cells = {label: Result(model, label, batch) for label in runs}
        for run in runs.values():
            run(pixels)  # warm-up: cuDNN autotuning, allocator, TensorRT context
        for _ in range(rounds):
            for label, run in runs.items():
                cells[label].add_round(time_calls(lambda run=run, pixels=pixels: run(pixels), seconds, min_calls))
        for result in cells.values():
            log.info("%s %-40s batch %3d: %8.1f images/s", model, result.backend, batch, result.images_per_s)
        results += cells.values()
    return results, notes


def summary(results: list[Result], flops: dict) -> list[str]:
    at64 = {r.backend: r.images_per_s for r in results if r.model == "embedder" and r.batch == 64}
    if not at64:
        return ["- No embedder measurement at batch 64 (--quick or the time budget)."]
    best = max(at64, key=at64.get)
    anchor_rate, anchor_gflop = RESNET50_ANCHOR
    lines = []
    if TORCH_FP16 in at64:
        lines.append(f"- Embedder, batch 64, torch float16: {at64[TORCH_FP16]:.0f} images/s.")
    lines.append(f"- Embedder, batch 64, best backend: {best}, {at64[best]:.0f} images/s.")
    if flops.get("embedder"):
        ours = at64[best] * flops["embedder"] / 1e12
        lines.append(
            f"- Anchor: ~{anchor_rate} ResNet-50 images/s (Triton + TensorRT, A100) = {anchor_rate * anchor_gflop / 1e3:.1f} "
            f"TFLOP/s; the embedder ({flops['embedder'] / 1e9:.2f} GFLOP/image) at {at64[best]:.0f} images/s = {ours:.1f} TFLOP/s."
        )
    return lines


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 2, one short round")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=1.0, help="per backend, batch and round")
    parser.add_argument("--min-calls", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new measurements after this")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var/engines", help="TensorRT engines")
    parser.add_argument("--out", type=Path, help="the report's file (default loadtests/reports/engines/gpu-DEVICE.md)")
    return parser


def main(args: argparse.Namespace) -> str:
    if args.quick:
        args.batches, args.seconds, args.min_calls, args.rounds = "1,2", 0.0, 2, 1
    started = time.perf_counter()
    deadline = started + args.budget_s
    device = torch_device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    results, skipped, parity_rows, notes, flops = [], {}, [], [], {}
    for model, path in MODELS.items():
        size = input_size(path)
        flops[model] = flops_per_image(path)
        runs, model_skipped = backends(model, path, device, args.cache_dir)
        skipped |= {f"{model}, {label}": why for label, why in model_skipped.items()}
        parity_rows += parity(model, runs, size)
        model_results, model_notes = measure_all(
            model, runs, size, batches, args.seconds, args.min_calls, args.rounds, deadline
        )
        results += model_results
        notes += model_notes
    lines = [
        f"# GPU check ({device})",
        "",
        (
            f"`python scripts/gpu_check.py --device {device}{' --quick' if args.quick else ''}` "
            f"({(time.perf_counter() - started) / 60:.1f} min). Random uint8 pixels, seeded; per call: host pixels "
            "in, host outputs out."
        ),
        "",
        *machine(device),
        "",
        "## Parity against torch float32 (8 images)",
        "",
        "| model | backend | max abs difference | embedder min cosine |",
        "|---|---|---|---:|",
        *parity_rows,
        "",
        "## Throughput",
        "",
        table(results, flops, (), {model: TORCH_FP32 for model in MODELS}),
        "",
        "x torch eager: against torch float32 on the same device and batch.",
        "",
        *summary(results, flops),
        "",
        "Skipped:",
        "",
        *[f"- {label}: {why}" for label, why in skipped.items()],
        *[f"- {note}" for note in notes],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or ROOT / f"loadtests/reports/engines/gpu-{device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if os.environ.get("OUT") and Path(os.environ["OUT"]).is_dir():  # the device machine's collected folder
        (Path(os.environ["OUT"]) / out.name).write_text(text)
    return text


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("torch is not installed: the GPU check needs torch at least")
    main(get_args_parser().parse_args())
