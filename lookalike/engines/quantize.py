"""A static QDQ int8 variant of an exported model, calibrated on catalogue photos.

    python -m lookalike.engines quantize training/artifacts/embedder.onnx var/engines/embedder-int8.onnx

Calibration: `count` photos drawn (seeded, every class alike) from the catalogue's `train/`
folder, each through the model's own preprocessing (the card's preset: the embedder's centre
crop, the detector's letterbox), so activation ranges are those of served inputs. Weights int8
per output channel, activations uint8 (asymmetric, ONNX Runtime's fast path on VNNI CPUs) or, for
TensorRT (`symmetric=True`), int8 with zero point 0, which TensorRT's explicit quantization needs.
The sidecar card is copied with `weights.compute = "int8"` and the calibration recorded, so
`training.embedder.evaluate --onnx` and the model store take the file as they take the shipped one.

Needs `onnx` (the training extras); serving only runs the result.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lookalike.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)
# Ops quantized: the convolutions, which hold nearly all the work, with the ReLU6 (Clip), ReLU and
# residual Add around them so activations stay int8 between them. Convolutions alone, without
# their Clips, kept the wide pre-activation ranges and moved the unit vectors far more (mean
# cosine to float32 0.899 vs 0.994 on 154 validation crops).
QUANTIZED_OPS = ("Conv", "Clip", "Relu", "Add")
# Convolutions kept in float32, counted in graph order from the first and from the last: the stem
# and first two blocks work at 112 px, where int8 rounding did most of the damage (mean cosine
# 0.9943 -> 0.9991, minimum 0.972 -> 0.997, for 1.58x -> 1.54x float32's speed at batch 8); the
# last is the colour pooling's garment-attention map (into a softmax). loadtests/reports/engines/int8.md.
FLOAT_CONVS = (6, 1)


def calibration_photos(data_dir: Path, count: int = 200, seed: int = 0) -> list[Path]:
    """`count` photos from `data_dir`'s class folders, the same share from each, seeded."""
    folders = sorted(p for p in Path(data_dir).iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"no class folders in {data_dir}")
    rng = random.Random(seed)
    per_class = -(-count // len(folders))
    photos = []
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        photos += rng.sample(files, min(per_class, len(files)))
    rng.shuffle(photos)
    return photos[:count]


def preprocess_photos(photos: list[Path], card_metadata: dict) -> np.ndarray:
    """The photos as the model receives them: uint8 (n, h, w, 3) through the card's preset."""
    from PIL import Image

    from lookalike.modelcard import card_from_metadata

    card = card_from_metadata(card_metadata)
    rows = []
    for photo in photos:
        with Image.open(photo) as image:
            pixels = card.preset(image.convert("RGB"))
        rows.append(pixels[0] if isinstance(pixels, tuple) else pixels)  # the letterbox returns (pixels, box)
    return np.stack(rows)


class PixelBatches:
    """onnxruntime's `CalibrationDataReader`: the calibration pixels in batches of one size.

    The histogram calibrators (Percentile, Entropy) stack the batches' outputs, so every batch
    has `batch_size` rows and a remainder is left out.
    """

    def __init__(self, pixels: np.ndarray, input_name: str = "pixels", batch_size: int = 8):
        self.pixels, self.input_name, self.batch_size = pixels, input_name, batch_size
        self._batches: Iterator[dict[str, np.ndarray]] | None = None

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.pixels) - self.batch_size + 1, self.batch_size):
            yield {self.input_name: self.pixels[start : start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = iter(self)
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = None


def fold_weight_casts(model) -> int:
    """Turn the float16 weight storage (`NAME.fp16` -> Cast -> `NAME`) back into float32 initializers.

    The quantizer quantizes a Conv's weight only when it is an initializer; behind a Cast it would
    be treated as an activation. Returns the number of casts folded.
    """
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in initializers:
            to = next(a.i for a in node.attribute if a.name == "to")
            if to != TensorProto.FLOAT:
                continue
            source = initializers[node.input[0]]
            graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(source).astype(np.float32), node.output[0])
            )
            folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return len(folded)


def quantize_model(
    source: Path,
    target: Path,
    pixels: np.ndarray,
    *,
    symmetric: bool = False,
    ops: tuple[str, ...] = QUANTIZED_OPS,
    method: str = "MinMax",
    float_convs: tuple[int, int] = FLOAT_CONVS,
) -> Path:
    """Write `target`: `source` with its `ops` quantized to int8 (QDQ), calibrated on `pixels`.

    The first and last `float_convs` convolutions stay float32.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(source)
    fold_weight_casts(model)
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    first, last = float_convs
    kept_float = convs[:first] + (convs[len(convs) - last :] if last else [])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        float_path = Path(scratch) / "float32.onnx"
        onnx.save(model, float_path)
        quantize_static(
            float_path,
            target,
            PixelBatches(pixels, model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops) if ops else None,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=kept_float,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
    return target


def quantize_artifact(
    source: Path,
    target: Path,
    data_dir: Path,
    *,
    count: int = 200,
    seed: int = 0,
    symmetric: bool = False,
    method: str = "MinMax",
) -> Path:
    """`source` (.onnx with its .json card) -> `target` .onnx and .json: the int8 variant, calibrated on catalogue photos."""
    metadata = json.loads(source.with_suffix(".json").read_text())
    photos = calibration_photos(data_dir, count, seed)
    pixels = preprocess_photos(photos, metadata)
    log.info("calibrating on %d photos from %s", len(photos), data_dir)
    quantize_model(source, target.with_suffix(".onnx"), pixels, symmetric=symmetric, method=method)
    metadata["metrics"] = {}  # the float model's; the int8 variant's own come from evaluating it
    metadata["weights"] = {
        **metadata.get("weights", {}),
        "storage": "int8",
        "compute": "int8",
        "quantization": {
            "format": "QDQ",
            "ops": list(QUANTIZED_OPS),
            "float_convs": {"first": FLOAT_CONVS[0], "last": FLOAT_CONVS[1]},
            "weights": "int8 per channel, symmetric",
            "activations": "int8 symmetric" if symmetric else "uint8 asymmetric",
            "calibration": {"method": method, "photos": len(photos), "seed": seed, "from": str(data_dir)},
            "source": source.name,
        },
    }
    target.with_suffix(".json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return target.with_suffix(".onnx")
