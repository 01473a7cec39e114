"""Inference engines for exported models: ONNX Runtime, on TensorRT or CUDA when the machine has them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from lookalike.modelcard import DetectorCard, EmbedderCard

log = logging.getLogger(__name__)
# The file inside each model store entry.
EMBEDDER_FILE = "embedder.onnx"
DETECTOR_FILE = "detector.onnx"
_PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    return [p for p in _PREFERRED_PROVIDERS if p in available]


class OnnxModel:
    """An exported model: uint8 pixels (n, h, w, 3) -> its named outputs, float32, each (n, ...)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("LOOKALIKE_ORT_THREADS", "0"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=providers or available_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        log.info("loaded %s on %s", path, self.session.get_providers()[0])

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if len(pixels) == 0:
            return {name: np.zeros((0, *self.item_shape(name)), np.float32) for name in self.output_names}
        outputs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(pixels, np.uint8)})
        return dict(zip(self.output_names, outputs))

    def item_shape(self, name: str) -> tuple[int, ...]:
        """One image's output shape; an axis the graph leaves symbolic counts as 0."""
        (output,) = [o for o in self.session.get_outputs() if o.name == name]
        return tuple(size if isinstance(size, int) else 0 for size in output.shape[1:])


class OnnxEmbedder(OnnxModel):
    """uint8 pixels (n, h, w, 3) -> {"shape": (n, d), "color": (n, d)} float32, L2-normalised."""

    def dim(self, name: str) -> int:
        return self.item_shape(name)[-1]


class OnnxDetector(OnnxModel):
    """Letterboxed uint8 pixels (n, S, S, 3) -> {"boxes": (n, A, 4), "scores": (n, A, classes)} float32.

    Raw per-anchor outputs: `lookalike.detection.postprocess` turns one image's rows into detections.
    """


def load_embedder(tag: str) -> tuple[OnnxEmbedder, EmbedderCard]:
    """The embedder saved in the BentoML model store under `tag`, and its card."""
    import bentoml

    model = bentoml.models.get(tag)
    return OnnxEmbedder(model.path_of(EMBEDDER_FILE)), EmbedderCard.from_metadata(model.info.metadata)


def load_detector(tag: str) -> tuple[OnnxDetector, DetectorCard]:
    """The detector saved in the BentoML model store under `tag`, and its card."""
    import bentoml

    model = bentoml.models.get(tag)
    return OnnxDetector(model.path_of(DETECTOR_FILE)), DetectorCard.from_metadata(model.info.metadata)
