"""Benchmark the inference engines: per model and backend, images/s and latency at batch 1-64, against the CPU's limit.

    python -m loadtests.bench_engines                    # full run (~6-10 min on 2 cores), writes loadtests/reports/engines/report.md
    python -m loadtests.bench_engines --quick --out /tmp/bench    # seconds: the test's smoke run
    python -m loadtests.bench_engines --tune             # instead: ONNX Runtime's session options (tuning.md, ~3 min)

Models: the shipped ONNX files (training/artifacts), so a clean clone needs no model store.
Backends, as available here (each missing one is listed with its reason):
- `torch eager (training model)`: the embedder's `nn.Module` from the training code with the
  shipped weights (`training.embedder.from_onnx`), batch norms unfolded: the baseline of the
  "x torch eager" column. The detector has no such loader (its GroupNorm weights lost their names
  in export), so its baseline is the next row.
- `torch (ONNX graph)`: `lookalike.engines.reference`, the reference backend.
- `onnxruntime fp32`: `lookalike.engines.ort` with the tuned options; `onnxruntime int8`: the
  static QDQ variant (`lookalike.engines.quantize`), quantized on first use into `--cache-dir`.
- `tensorrt fp16` and `onnxruntime cuda` where a GPU and the packages are present.

Per cell: `--rounds` rounds, the backends taking turns within a round so that load from other
processes on this shared machine falls on all of them alike; each round runs calls for
`--seconds` (at least `--min-calls`) after a warm-up call. Images/s = batch / median call time
of the best round (timeit's convention on a shared machine: the slower rounds measured other
processes' bursts, which hit torch's spinning threads hardest); p50/p99 are per call, all rounds.
FLOPs per image are counted by `torch.utils.flop_counter` on the torch reference at batch 1
(convolutions and matrix products, 2 FLOPs per multiply-add; elementwise ops not counted).
The CPU's limit, both printed: theory = cores x 2.3 GHz x 64 fp32 FLOP/cycle (AVX-512: two FMA
units x 16 lanes x 2; FINDINGS), and measured = a 2048^3 fp32 GEMM in torch on the same threads
at the end of the run; "% of peak" gives the share of each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_engines")
ROOT = Path(__file__).resolve().parents[1]
MODELS = {"embedder": ROOT / "training/artifacts/embedder.onnx", "detector": ROOT / "training/artifacts/detector.onnx"}
BATCHES = (1, 8, 32, 64)
FP32_FLOPS_PER_CYCLE = 64  # AVX-512: 2 FMA units x 16 float32 lanes x 2 FLOPs
NOMINAL_GHZ = 2.3  # this machine's clock (FINDINGS: 2 x 2.3 GHz x 64 = 294 GFLOP/s; GEMM measured 297)
BASELINE = "torch eager (training model)"
GRAPH_BASELINE = "torch (ONNX graph)"


@dataclass
class Result:
    model: str
    backend: str
    batch: int
    rounds: list[list[float]] = field(default_factory=list)  # seconds per call, per round

    def add_round(self, times: list[float]) -> None:
        self.rounds.append(times)

    @property
    def times(self) -> list[float]:
        return [t for times in self.rounds for t in times]

    @property
    def images_per_s(self) -> float:
        """The best round's rate at its median call (timeit's convention: slower rounds measured other processes)."""
        return max(self.batch / float(np.median(times)) for times in self.rounds)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.times, q)) * 1000


# ---------------------------------------------------------------------------------------------
# Measuring


def time_calls(run: Callable[[], object], seconds: float, min_calls: int) -> list[float]:
    """Seconds per call of `run`, for at least `seconds` and `min_calls` calls."""
    times, started = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return times


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a size^3 matrix product in torch (best of `repeats`), on torch's threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(time_calls(lambda: torch.mm(a, b), 0.0, repeats))
    return 2 * size**3 / best / 1e9


def cpu_clock_mhz() -> float | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    values = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
    return values[0] if values else None


def flops_per_image(onnx_path: Path) -> float | None:
    """FLOPs of one image through the torch reference (convolutions and matrix products)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        from lookalike.engines.reference import TorchEngine
    except ImportError:
        return None
    engine = TorchEngine(onnx_path)
    size = input_size(onnx_path)
    with FlopCounterMode(display=False) as counter:
        engine(np.zeros((1, size, size, 3), np.uint8))
    return float(counter.get_total_flops())


def input_size(onnx_path: Path) -> int:
    """The square input's side, from the graph's input shape (n, S, S, 3)."""
    import onnxruntime as ort

    shape = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    return int(shape[1])


# ---------------------------------------------------------------------------------------------
# Backends


def training_model_embedder(onnx_path: Path) -> Callable[[np.ndarray], object]:
    """The training code's embedder with the shipped weights, as torch eager runs it: pixels -> outputs."""
    import torch

    from training.embedder.from_onnx import embedder_from_onnx
    from training.onnx_export import PixelInput

    model = PixelInput(embedder_from_onnx(onnx_path)).eval()

    def run(pixels: np.ndarray):
        with torch.inference_mode():
            return [value.numpy() for value in model(torch.from_numpy(pixels))]

    return run


def int8_variant(onnx_path: Path, cache_dir: Path, data_dir: Path, count: int) -> Path:
    """The static QDQ int8 variant of `onnx_path`, from `cache_dir` when its source and calibration match."""
    from lookalike.engines import file_sha256
    from lookalike.engines.quantize import FLOAT_CONVS, quantize_artifact

    recipe = f"c{count}-f{FLOAT_CONVS[0]}-{FLOAT_CONVS[1]}"
    target = cache_dir / f"{onnx_path.stem}-int8-{file_sha256(onnx_path)[:12]}-{recipe}.onnx"
    if not target.exists():
        log.info("quantizing %s on %d photos from %s", onnx_path, count, data_dir)
        quantize_artifact(onnx_path, target, data_dir, count=count)
    return target


def cpu_backends(model: str, onnx_path: Path, args: argparse.Namespace) -> tuple[dict[str, Callable], dict[str, str]]:
    """(label -> run(pixels), label -> why it is missing) for this machine's backends."""
    from lookalike.engines import OnnxModel, OrtOptions, unavailable
    from lookalike.engines.reference import TorchEngine

    runs, missing = {}, {}
    if model == "embedder":
        try:
            runs[BASELINE] = training_model_embedder(onnx_path)
        except ImportError as error:
            missing[BASELINE] = f"the training code does not import: {error}"
    if unavailable("torch"):
        missing[GRAPH_BASELINE] = unavailable("torch")
    else:
        runs[GRAPH_BASELINE] = TorchEngine(onnx_path, threads=args.threads or None)
    options = OrtOptions(threads=args.threads)
    runs["onnxruntime fp32"] = OnnxModel(onnx_path, providers=["CPUExecutionProvider"], options=options)
    if model == "embedder":
        data_dir = args.data_dir / "train"
        if data_dir.is_dir():
            int8 = int8_variant(onnx_path, args.cache_dir, data_dir, args.int8_photos)
            runs["onnxruntime int8"] = OnnxModel(int8, providers=["CPUExecutionProvider"], options=options)
        else:
            missing["onnxruntime int8"] = f"no calibration photos at {data_dir}"
    for backend in ("tensorrt",):
        reason = unavailable(backend)
        missing[f"{backend} fp16"] = reason or "GPU backends run in scripts/gpu_check.py"
    return runs, missing


def measure(
    model: str, runs: dict[str, Callable], size: int, batches, seconds: float, min_calls: int, rounds: int
) -> list[Result]:
    """Every backend at every batch, the backends taking turns within each round."""
    rng = np.random.default_rng(0)
    results = []
    for batch in batches:
        pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        cells = {label: Result(model, label, batch) for label in runs}
        for run in runs.values():
            run(pixels)  # warm-up: lazy initialisation, memory arenas
        for _ in range(rounds):
            for label, run in runs.items():
                cells[label].add_round(time_calls(lambda run=run, pixels=pixels: run(pixels), seconds, min_calls))
        for result in cells.values():
            log.info("%s %-30s batch %2d: %7.1f images/s", model, result.backend, batch, result.images_per_s)
        results += cells.values()
    return results


# ---------------------------------------------------------------------------------------------
# The report


def baseline_of(results: list[Result], preferred: tuple[str, ...] = (BASELINE, GRAPH_BASELINE)) -> dict[str, str]:
    """model -> the backend its "x torch eager" column divides by: the first of `preferred` it has."""
    return {
        model: next(label for label in preferred if any(r.model == model and r.backend == label for r in results))
        for model in dict.fromkeys(r.model for r in results)
        if any(r.model == model and r.backend in preferred for r in results)
    }


def table(
    results: list[Result], flops: dict[str, float | None], peaks: tuple[float | None, ...], baselines: dict[str, str]
) -> str:
    """The Markdown table: one row per model, backend and batch; "x torch eager" against `baselines[model]`,
    "% of peak" against each of `peaks` (GFLOP/s: the theory, then the GEMM measured in the run)."""
    rates = {(r.model, r.backend, r.batch): r.images_per_s for r in results}
    lines = [
        "| model | backend | batch | images/s | p50 ms | p99 ms | calls | x torch eager | GFLOP/s | % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base = rates.get((r.model, baselines.get(r.model), r.batch))
        gflops = r.images_per_s * flops[r.model] / 1e9 if flops.get(r.model) else None
        shares = " / ".join(f"{100 * gflops / peak:.0f}%" for peak in peaks if peak) if gflops else ""
        lines.append(
            f"| {r.model} | {r.backend} | {r.batch} | {r.images_per_s:.1f} | {r.percentile_ms(50):.1f} | "
            f"{r.percentile_ms(99):.1f} | {len(r.times)} | {f'{r.images_per_s / base:.2f}' if base else '-'} | "
            f"{f'{gflops:.0f}' if gflops else '-'} | {shares or '-'} |"
        )
    return "\n".join(lines)


def cpu_peak() -> float:
    """Theoretical fp32 GFLOP/s: cores x clock x FLOPs per cycle."""
    return (os.cpu_count() or 1) * NOMINAL_GHZ * FP32_FLOPS_PER_CYCLE


def machine_lines(gemm: float | None, threads: int, load_at_start: float | None = None) -> list[str]:
    cores = os.cpu_count() or 1
    mhz = cpu_clock_mhz()
    theory = cpu_peak()
    start = f"{load_at_start:.1f} at the start, " if load_at_start is not None else ""
    end = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        (
            f"- Machine: {platform.processor() or platform.machine()}, {cores} cores, shared with other processes: "
            f"load average {start}{end} (1/5/15 min) at the end; {threads or 'all'} threads per engine."
        ),
        f"- fp32 peak, theory: {cores} cores x {NOMINAL_GHZ} GHz x {FP32_FLOPS_PER_CYCLE} FLOP/cycle = {theory:.0f} GFLOP/s"
        + (f" (/proc/cpuinfo says {mhz:.0f} MHz: {cores * mhz / 1000 * FP32_FLOPS_PER_CYCLE:.0f})." if mhz else "."),
    ]
    if gemm:
        lines.append(
            f"- fp32 peak, measured in this run: a 2048^3 GEMM in torch on the same threads = {gemm:.0f} GFLOP/s "
            "(FINDINGS: 297 on 2026-11-28; above the theory the cores ran faster than its clock, below it other "
            'processes had part of them). "% of peak" is against the theory / this GEMM; int8 rows count the '
            "same FLOPs as float32 (VNNI's int8 peak is 4x the fp32 one)."
        )
    return lines


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("numpy", "onnxruntime", "onnx", "torch", "tensorrt"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def report(
    results: list[Result],
    flops: dict,
    gemm: float | None,
    missing: dict,
    args: argparse.Namespace,
    seconds: float,
    load_at_start: float | None = None,
) -> str:
    lines = [
        "# Engines benchmark",
        "",
        (
            f"`python -m loadtests.bench_engines{' --quick' if args.quick else ''}` ({seconds / 60:.1f} min). "
            "Random uint8 pixels at each model's input size; see the module docstring for the method."
        ),
        "",
        *machine_lines(gemm, args.threads, load_at_start),
        "- FLOPs per image (torch.utils.flop_counter on the torch reference, convolutions and matrix products): "
        + ", ".join(f"{m} {f / 1e9:.3f} GFLOP" for m, f in flops.items() if f),
        f"- Versions: {json.dumps(versions())}",
        (
            "- The int8 variant's retrieval quality (instance Recall@1 against float32): [int8.md](int8.md); "
            "ONNX Runtime's session options: [tuning.md](tuning.md)."
        ),
        "",
        table(results, flops, (cpu_peak(), gemm), baseline_of(results)),
        "",
        "x torch eager: against " + "; ".join(f"{m}: {b}" for m, b in baseline_of(results).items()) + ", same batch.",
        "",
    ]
    if missing:
        lines += ["Not measured here:", ""] + [f"- {label}: {why}" for label, why in missing.items()] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# ONNX Runtime session options


def tuning_grid() -> dict[str, dict]:
    """Session-option variants around the chosen `OrtOptions()`, one change each."""
    return {
        "chosen (all, arena, pattern, sequential, spinning)": {},
        "1 thread": {"threads": 1},
        "optimisation basic": {"optimization": "basic"},
        "optimisation extended": {"optimization": "extended"},
        "no memory arena": {"arena": False},
        "no memory pattern": {"mem_pattern": False},
        "parallel executor (2 inter-op, 1 intra-op)": {"parallel": True, "threads": 1},
        "no spinning": {"spinning": False},
    }


def tune(args: argparse.Namespace) -> str:
    """The session-option grid on both models at batch 1 and 8: tuning.md's text."""
    from lookalike.engines import OnnxModel, OrtOptions

    load_at_start, rows = os.getloadavg()[0], []
    for model, path in MODELS.items():
        size = input_size(path)
        sessions = {
            name: OnnxModel(path, providers=["CPUExecutionProvider"], options=OrtOptions(**{"threads": 0, **change}))
            for name, change in tuning_grid().items()
        }
        rates: dict[tuple[str, int], list[float]] = {}
        for batch in (1, 8):
            pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            for session in sessions.values():
                session(pixels)
            for _ in range(args.rounds + 2):
                for name, session in sessions.items():
                    times = time_calls(lambda session=session, pixels=pixels: session(pixels), args.seconds / 2, 2)
                    rates.setdefault((name, batch), []).append(batch / float(np.median(times)))
        for name in sessions:
            cells = " | ".join(f"{max(rates[(name, b)]):.0f}" for b in (1, 8))
            rows.append(f"| {model} | {name} | {cells} |")
            log.info("%s %s: %s", model, name, cells)
    return "\n".join(
        [
            "# ONNX Runtime session options, measured",
            "",
            (
                "`python -m loadtests.bench_engines --tune`: images/s (at the median call) of each variant, one option "
                "changed from the chosen `OrtOptions()`; the variants take turns within each round; the best round."
            ),
            "",
            *machine_lines(None, args.threads, load_at_start),
            "",
            "| model | variant | batch 1 | batch 8 |",
            "|---|---|---:|---:|",
            *rows,
            "",
        ]
    )


# ---------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batches 1 and 2, short runs, 16 calibration photos")
    parser.add_argument(
        "--tune", action="store_true", help="measure ONNX Runtime's session options instead (tuning.md)"
    )
    parser.add_argument("--models", default="embedder,detector")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--seconds", type=float, default=1.5, help="per backend, batch and round")
    parser.add_argument("--min-calls", type=int, default=3, help="per backend, batch and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="threads per engine (0: all cores)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="catalogue photos (default: the clothing_dir setting)"
    )
    parser.add_argument("--int8-photos", type=int, default=200, help="calibration photos for the int8 variant")
    parser.add_argument("--cache-dir", type=Path, default=Path("var/engines"), help="int8 variants are kept here")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests/reports/engines")
    return parser


def main(args: argparse.Namespace) -> str:
    if args.quick:
        args.batches, args.seconds, args.min_calls, args.rounds, args.int8_photos = "1,2", 0.0, 2, 1, 16
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tune:
        text = tune(args)
        print(text)
        (args.out / "tuning.md").write_text(text)
        return text
    if args.data_dir is None:
        from lookalike.settings import get_settings

        args.data_dir = get_settings().clothing_dir
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    batches = [int(b) for b in args.batches.split(",")]
    results, flops, missing = [], {}, {}
    for model in args.models.split(","):
        path = MODELS[model]
        runs, model_missing = cpu_backends(model, path, args)
        missing |= {f"{model}, {label}": why for label, why in model_missing.items()}
        flops[model] = flops_per_image(path)
        results += measure(model, runs, input_size(path), batches, args.seconds, args.min_calls, args.rounds)
    gemm = gemm_gflops(repeats=3 if args.quick else 5)
    text = report(results, flops, gemm, missing, args, time.perf_counter() - started, load_at_start)
    print(text)
    (args.out / "report.md").write_text(text)
    return text


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(get_args_parser().parse_args())
