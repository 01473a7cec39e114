"""ONNX export shared by the embedder and the detector: uint8 pixels in, weights stored compactly, versions recorded."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn


class PixelInput(nn.Module):
    """uint8 NHWC pixels -> the module's [0, 1] NCHW input; keeps the cast inside the graph."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return self.module(images)


def export_onnx(module: nn.Module, path: Path, crop_size: int, names: list[str]) -> Path:
    """Write a self-contained .onnx file (weights inside, no .onnx.data) taking uint8 pixels."""
    wrapper = PixelInput(module).eval()
    example = torch.randint(0, 256, (2, crop_size, crop_size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        opset_version=18,
        input_names=["pixels"],
        output_names=names,
        dynamic_shapes={"pixels": {0: batch}},
    )
    program.optimize()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(program.model_proto, path)
    return path


def store_weights_fp16(source: Path, target: Path, min_elements: int = 1024) -> Path:
    """Halve the file: large float32 weights stored as float16, each cast back by a Cast node.

    Compute stays float32 (ONNX Runtime and TensorRT fold the casts into constants when the
    session loads), so only the weights' rounding changes the outputs.
    """
    model = onnx.load(source)
    casts = []
    for weight in model.graph.initializer:
        if weight.data_type != TensorProto.FLOAT or np.prod(weight.dims) < min_elements:
            continue
        name = weight.name
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), f"{name}.fp16"))
        casts.append(helper.make_node("Cast", [weight.name], [name], to=TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)  # casts first: the graph stays topologically sorted
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, target)
    return target


def versions() -> dict[str, str]:
    import onnxruntime
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
