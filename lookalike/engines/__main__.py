"""Engine tools: build TensorRT engines for the served models, make an int8 variant, say what runs here.

    python -m lookalike.engines info                   # backends available here, and why not where not
    python -m lookalike.engines build                  # TensorRT engines for the models in the BentoML store
    python -m lookalike.engines build --onnx training/artifacts/embedder.onnx
    python -m lookalike.engines quantize training/artifacts/embedder.onnx var/engines/embedder-int8.onnx

An engine is tied to one GPU model and one TensorRT version, so `build` runs on the serving
machine (or at a service's start, which builds what the cache lacks) and engines are never committed.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from lookalike.engines import BACKENDS, DETECTOR_FILE, EMBEDDER_FILE, unavailable

log = logging.getLogger("lookalike.engines")


def info(args: argparse.Namespace) -> None:
    for backend in BACKENDS:
        reason = unavailable(backend)
        print(f"{backend:12s} {'available' if reason is None else 'unavailable: ' + reason}")


def build(args: argparse.Namespace) -> None:
    reason = unavailable("tensorrt")
    if reason:
        raise SystemExit(f"cannot build TensorRT engines here: {reason}")
    from lookalike.engines.trt import TrtOptions, build_engine

    options = TrtOptions.from_settings()
    if args.precision:
        options = replace(options, precision=args.precision)
    if args.onnx:
        paths = args.onnx
    else:
        import bentoml

        from lookalike.settings import get_settings

        settings = get_settings()
        tags = {settings.embedder_model: EMBEDDER_FILE, settings.detector_model: DETECTOR_FILE}
        paths = [Path(bentoml.models.get(tag).path_of(file)) for tag, file in tags.items()]
    for path in paths:
        engine_path = build_engine(path, options)
        log.info("%s -> %s", path, engine_path)


def quantize(args: argparse.Namespace) -> None:
    from lookalike.engines.quantize import quantize_artifact
    from lookalike.settings import get_settings

    data_dir = args.data_dir or get_settings().clothing_dir / "train"
    quantize_artifact(args.source, args.target, data_dir, count=args.count, seed=args.seed, symmetric=args.symmetric)
    log.info("wrote %s and its card %s", args.target.with_suffix(".onnx"), args.target.with_suffix(".json"))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="which backends run here").set_defaults(func=info)
    builder = commands.add_parser("build", help="build (or find in the cache) TensorRT engines")
    builder.add_argument("--onnx", type=Path, nargs="*", help="ONNX files (default: the settings' models in the store)")
    builder.add_argument("--precision", choices=["fp16", "fp32", "int8"], help="default: the trt_precision setting")
    builder.set_defaults(func=build)
    quantizer = commands.add_parser("quantize", help="a static QDQ int8 variant calibrated on catalogue photos")
    quantizer.add_argument("source", type=Path, help="X.onnx with its card X.json")
    quantizer.add_argument("target", type=Path, help="where the int8 .onnx and its .json go")
    quantizer.add_argument(
        "--data-dir", type=Path, help="class folders of catalogue photos (default: CLOTHING_DIR/train)"
    )
    quantizer.add_argument("--count", type=int, default=200, help="calibration photos")
    quantizer.add_argument("--seed", type=int, default=0)
    quantizer.add_argument("--symmetric", action="store_true", help="int8 activations with zero point 0 (TensorRT)")
    quantizer.set_defaults(func=quantize)
    return parser


def main(args: argparse.Namespace) -> None:
    args.func(args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(get_args_parser().parse_args())
