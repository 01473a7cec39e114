"""Export a trained detector: ONNX (uint8 pixels in, dynamic batch), parity-checked, with its model card.

    python -m training.detector.export --checkpoint var/train/detector/checkpoint.pth --ship training/artifacts/detector
    python -m training.detector.export --checkpoint var/train/detector/checkpoint.pth --name lookalike-detector-candidate
    python -m training.detector.export --provisional   # untrained heads, for a checkout without the shipped detector

The graph ends before thresholds and NMS (`lookalike.detection.postprocess` does those for every
caller), so the torch.onnx dynamo exporter takes it with a dynamic `batch` axis. Parity with
torch is checked on random pixels, and again after the weights are stored in float16.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from lookalike.detection import LetterboxPreset, Thresholds
from lookalike.engines import DETECTOR_FILE, OnnxModel
from lookalike.modelcard import DetectorCard, DetectorClass
from training.detector.model import Detector, DetectorConfig, DetectorOutputs, build_detector
from training.onnx_export import PixelInput, export_onnx, store_weights_fp16, versions

log = logging.getLogger("training.detector.export")
OUTPUTS = ["boxes", "scores"]
BOX_TOLERANCE = 1e-2  # input pixels
SCORE_TOLERANCE = 1e-3  # scores in [0, 1]; ONNX Runtime's fused kernels differed by 1.2e-4 at most here
FP16_TOLERANCE = 1.0  # input pixels: float16 weights move a 320 px box by a pixel at most (0.56 seen)


@torch.no_grad()
def parity(detector: Detector, onnx_path: Path, batch_size: int = 3) -> dict[str, float]:
    """Max absolute differences of torch and ONNX Runtime `boxes` and `scores` on random pixels."""
    size = detector.config.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    expected = PixelInput(DetectorOutputs(detector).eval())(torch.from_numpy(pixels))
    got = OnnxModel(onnx_path)(pixels)
    return {name: float(np.abs(got[name] - e.numpy()).max()) for name, e in zip(OUTPUTS, expected)}


def make_card(config: DetectorConfig, metrics: dict, extra: dict, thresholds: Thresholds) -> DetectorCard:
    return DetectorCard(
        outputs=OUTPUTS,
        preprocess=LetterboxPreset(size=config.input_size).to_dict(),
        classes=[DetectorClass(name=n, rubricator_id=i) for n, i in zip(config.classes, config.rubricator_ids)],
        thresholds=thresholds,
        metrics=metrics,
        config=config.to_dict(),
        versions=versions(),
        **extra,
    )


def export_detector(
    detector: Detector,
    folder: Path,
    *,
    metrics: dict | None = None,
    extra: dict | None = None,
    thresholds: Thresholds | None = None,
    fp32_weights: bool = False,
) -> tuple[Path, DetectorCard]:
    """The detector as a self-contained ONNX file written into `folder`, and its card."""
    detector = detector.eval()
    float32 = export_onnx(
        DetectorOutputs(detector).eval(), folder / "float32.onnx", detector.config.input_size, OUTPUTS
    )
    differences = parity(detector, float32)
    if differences["boxes"] > BOX_TOLERANCE or differences["scores"] > SCORE_TOLERANCE:
        raise RuntimeError(f"ONNX and torch disagree: {differences}")
    path = float32
    weights = {"storage": "float32"}
    if not fp32_weights:
        path = store_weights_fp16(float32, folder / DETECTOR_FILE)
        stored = parity(detector, path)
        if stored["boxes"] > FP16_TOLERANCE:
            raise RuntimeError(f"float16 weights move boxes too far: {stored}")
        weights = {"storage": "float16", "compute": "float32", "max_abs_diff_vs_torch": stored}
    extra = {"parity_max_abs_diff": differences, "weights": weights, **(extra or {})}
    return path, make_card(detector.config, metrics or {}, extra, thresholds or Thresholds())


def load_checkpoint(path: Path) -> tuple[Detector, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    detector = build_detector(DetectorConfig.from_dict(state["config"]), pretrained=False)
    detector.load_state_dict(state["model"])
    return detector, state


def from_checkpoint(path: Path) -> tuple[Detector, dict, Thresholds]:
    """The trained detector, what its card keeps of the run, and the operating point training chose."""
    detector, state = load_checkpoint(path)
    extra, thresholds = {"history": state.get("history", [])}, Thresholds()
    summary_path = path.parent / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        extra["data_fingerprint"] = summary["data_fingerprint"]
        if "operating_point" in summary:  # chosen on the validation scenes by training
            extra["operating_point"] = summary["operating_point"]
            thresholds = Thresholds(score=summary["operating_point"]["score"])
    return detector, extra, thresholds


def provisional_detector(seed: int = 0) -> Detector:
    """Untrained heads on the ImageNet trunk: finds nothing confidently (every photo falls back to the whole image)."""
    from training.detector.coco import category_ids
    from training.detector.train import CLASSES, MAPPING_FILE

    torch.manual_seed(seed)
    ids = category_ids(CLASSES, MAPPING_FILE if MAPPING_FILE.is_file() else None)
    return build_detector(DetectorConfig(classes=CLASSES, rubricator_ids=[i if i < 10000 else None for i, _ in ids]))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint.pth of training.detector.train")
    source.add_argument("--provisional", action="store_true", help="untrained heads (no shipped detector)")
    parser.add_argument("--metrics", type=Path, help="metrics.json of training.detector.evaluate, kept in the card")
    parser.add_argument("--name", default="lookalike-detector", help="model store name")
    parser.add_argument("--ship", type=Path, help="also write STEM.onnx + STEM.json (the repository's artefact)")
    parser.add_argument("--fp32-weights", action="store_true", help="store weights in float32 (twice the file)")
    return parser


def main(args: argparse.Namespace) -> None:
    from lookalike.modelstore import save_model, write_artifact

    if args.provisional:
        detector, extra, thresholds = provisional_detector(), {"provisional": True}, Thresholds()
    else:
        detector, extra, thresholds = from_checkpoint(args.checkpoint)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    with tempfile.TemporaryDirectory(prefix="detector-export-") as folder:
        path, card = export_detector(
            detector, Path(folder), metrics=metrics, extra=extra, thresholds=thresholds, fp32_weights=args.fp32_weights
        )
        save_model(args.name, path, card.to_metadata(), DETECTOR_FILE)
        if args.ship:
            write_artifact(args.ship, path, card.to_metadata())
            log.info("shipped %s.onnx (%.1f MB) and %s.json", args.ship, path.stat().st_size / 1e6, args.ship)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
