"""Export an embedder to ONNX, check parity with torch, and save it into the BentoML model store.

    python -m training.embedder.export --provisional                      # issue 2's untrained projection heads
    python -m training.embedder.export --checkpoint var/train/embedder/checkpoint.pth \
        --metrics reports/embedder/metrics.json --ship training/artifacts/embedder
    python -m training.embedder.export --provisional --onnx-only out.onnx   # write the file, skip the model store

The graph takes uint8 pixels (batch, h, w, 3) — what `lookalike.preprocess.EvalPreset` yields —
and returns L2-normalised `shape` and `color` vectors; the batch axis is dynamic and named `batch`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lookalike.engines import EMBEDDER_FILE, OnnxEmbedder
from lookalike.modelstore import save_embedder, write_artifact
from lookalike.preprocess import EvalPreset
from training.embedder.model import EmbedderConfig, build_embedder
from training.onnx_export import PixelInput, export_onnx, store_weights_fp16, versions

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4
# Weights stored in float16 moved the shipped model's unit vectors by at most 7e-4 (components
# ~0.09; 0.15% of bits flipped, all near zero) and left its category argmax unchanged.
FP16_STORAGE_TOLERANCE = 2e-3


def output_names(embedder: nn.Module) -> list[str]:
    return ["shape", "color"] + (["category_logits"] if getattr(embedder, "classifies", False) else [])


@torch.no_grad()
def max_parity_error(embedder: nn.Module, onnx_path: Path, crop_size: int, batch_size: int = 3) -> float:
    """Max absolute difference between torch and ONNX Runtime outputs on random pixels."""
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, crop_size, crop_size, 3), dtype=np.uint8)
    expected = PixelInput(embedder).eval()(torch.from_numpy(pixels))
    got = OnnxEmbedder(onnx_path)(pixels)
    return max(float(np.abs(got[name] - e.numpy()).max()) for name, e in zip(output_names(embedder), expected))


def max_embedding_difference(first: Path, second: Path, crop_size: int, batch_size: int = 3) -> float:
    """Max absolute difference of the unit `shape` and `color` vectors of two graphs on random pixels."""
    pixels = np.random.default_rng(1).integers(0, 256, (batch_size, crop_size, crop_size, 3), dtype=np.uint8)
    a, b = OnnxEmbedder(first)(pixels), OnnxEmbedder(second)(pixels)
    return max(float(np.abs(a[name] - b[name]).max()) for name in ("shape", "color"))


def export_embedder(
    embedder: nn.Module,
    config: EmbedderConfig,
    preset: EvalPreset,
    *,
    name: str,
    metrics: dict | None = None,
    data_fingerprint: str | None = None,
    onnx_path: Path | None = None,
    ship: Path | None = None,
    fp16_weights: bool = True,
):
    """Export, check parity, then save to the model store (and to `ship`.onnx/.json when given).

    With `onnx_path`, only writes that file (after the parity check). With `fp16_weights`, the
    saved file stores its weights in float16 (half the size), checked against the float32 one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(embedder, onnx_path or Path(tmp) / EMBEDDER_FILE, preset.crop_size, output_names(embedder))
        error = max_parity_error(embedder, path, preset.crop_size)
        log.info("parity: max abs difference torch vs ONNX Runtime = %.2e", error)
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX parity failed: max abs difference {error:.2e} > {PARITY_TOLERANCE}")
        if onnx_path is not None:
            return path
        weights = {"storage": "float32", "compute": "float32"}
        if fp16_weights:
            compact = store_weights_fp16(path, Path(tmp) / f"fp16-{EMBEDDER_FILE}")
            rounding = max_embedding_difference(path, compact, preset.crop_size)
            log.info(
                "float16 weights: %.1f MB -> %.1f MB, max abs difference %.2e",
                path.stat().st_size / 1e6,
                compact.stat().st_size / 1e6,
                rounding,
            )
            if rounding > FP16_STORAGE_TOLERANCE:
                raise RuntimeError(f"float16 weights moved outputs by {rounding:.2e} > {FP16_STORAGE_TOLERANCE}")
            path, weights = (
                compact,
                {"storage": "float16", "compute": "float32", "embedding_max_abs_diff_vs_float32": rounding},
            )
        metadata = {
            "preprocess": preset.to_dict(),
            "input": {"name": "pixels", "dtype": "uint8", "layout": "NHWC"},
            "outputs": output_names(embedder),
            "dims": {"shape": config.embed_dim, "color": config.embed_dim},
            "config": config.to_dict(),
            "metrics": metrics or {},
            "data_fingerprint": data_fingerprint or "none: no training data (provisional heads)",
            "parity_max_abs_diff": error,
            "weights": weights,
            "versions": versions(),
        }
        if ship is not None:
            write_artifact(ship, path, metadata)
        return save_embedder(name, path, metadata, labels={"heads": config.heads})


def load_checkpoint(path: Path) -> tuple[nn.Module, EmbedderConfig, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    config = EmbedderConfig.from_dict({**checkpoint["model_args"], "pretrained": False})
    embedder = build_embedder(config)
    embedder.load_state_dict(checkpoint["model"])
    return embedder, config, checkpoint


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--provisional", action="store_true", help="export the untrained provisional heads")
    source.add_argument("--checkpoint", type=Path, help="a training checkpoint (training.embedder.train)")
    parser.add_argument("--metrics", type=Path, help="metrics.json of training.embedder.evaluate, kept in the metadata")
    parser.add_argument("--ship", type=Path, help="also write STEM.onnx and STEM.json (the repository's copy)")
    parser.add_argument("--name", default="lookalike-embedder", help="model store name")
    parser.add_argument("--onnx-only", type=Path, help="write the .onnx here and skip the model store")
    parser.add_argument(
        "--fp32-weights", action="store_true", help="store weights in float32 (default: float16, computed in float32)"
    )
    return parser


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    if args.provisional:
        config = EmbedderConfig(heads="provisional")
        embedder, fingerprint = build_embedder(config), None
    else:
        embedder, config, checkpoint = load_checkpoint(args.checkpoint)
        fingerprint = checkpoint["data_fingerprint"]
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    preset = EvalPreset(mean=config.mean, std=config.std)
    export_embedder(
        embedder,
        config,
        preset,
        name=args.name,
        metrics=metrics,
        data_fingerprint=fingerprint,
        onnx_path=args.onnx_only,
        ship=args.ship,
        fp16_weights=not args.fp32_weights,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(get_args_parser().parse_args())
