"""The detector: FCOS heads on an ImageNet-pretrained EfficientNet-Lite trunk with a small FPN.

Single-stage and anchor-free (torchvision's `FCOSHead`, `compute_loss` and box coder), chosen
over RetinaNet and SSDlite because it has no anchor shapes to tune for garments, whose boxes run
from a long dress to a pair of shoes, and its centre-ness score ranks a garment's middle above
its sleeve. The trunk is the embedder's backbone family (`training.backbone`): all its stages stay
frozen with their ImageNet weights, so their outputs can be cached, which is what makes training
on 2 CPU cores possible; the FPN (P4-P7, strides 16-128, or P3-P7 with `first_stride=8`) and the
heads train. (Fine-tuning stages 5-6 too made a training step 3x slower here.)

`DetectorOutputs` is what is exported: uint8 pixels (n, S, S, 3) in, per anchor point `boxes`
(n, A, 4) xyxy in input pixels and `scores` (n, A, classes) = sqrt(sigmoid(class) x
sigmoid(centre-ness)) out. Thresholding and NMS happen in `lookalike.detection.postprocess`,
the one post-processing every caller uses, so the graph keeps a dynamic batch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from training.backbone import efficientnet_lite

# FCOS assigns a garment to the level whose anchor size x (4..8) brackets its farthest edge from the
# point (torchvision's rule): anchor size = the level's stride. Lite0's stages 2, 4 and 6 end at
# strides 8, 16 and 32; the FPN adds 64 and 128.
STAGE_ENDS = {8: 3, 16: 5, 32: 7}  # stride -> number of Lite0 block stages up to it


@dataclass
class DetectorConfig:
    """Constructor arguments; saved in every checkpoint and read back by export."""

    classes: list[str]
    rubricator_ids: list[int | None] = field(default_factory=list)
    backbone: str = "tf_efficientnet_lite0"
    input_size: int = 320
    fpn_channels: int = 96
    head_convs: int = 3
    # 16 leaves out P3 (stride 8): garments worth a search are >= ~30 px at 320 px input, which
    # stride 16 resolves, and P3 holds 75% of the heads' work; 8 keeps it.
    first_stride: int = 16
    center_sampling_radius: float = 1.5
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DetectorConfig:
        values = dict(values)
        for key in ("mean", "std"):
            values[key] = tuple(values.get(key, (0.5, 0.5, 0.5)))
        return cls(**values)


class LiteFPN(nn.Module):
    """EfficientNet-Lite stages -> FPN levels. `trunk` (frozen) and `top` (the FPN) split where features are cached."""

    def __init__(self, config: DetectorConfig, pretrained: bool = True) -> None:
        super().__init__()
        lite = efficientnet_lite(config.backbone, pretrained=pretrained)
        self.stem = nn.Sequential(lite.conv_stem, lite.bn1)
        strides = [stride for stride in STAGE_ENDS if stride >= config.first_stride]
        starts = [0] + [STAGE_ENDS[stride] for stride in strides[:-1]]
        # stages[i] takes the previous level (the stem for the first) to level strides[i]
        self.stages = nn.ModuleList(
            nn.Sequential(*lite.blocks[start : STAGE_ENDS[stride]]) for start, stride in zip(starts, strides)
        )
        channels = [self._out_channels(stage) for stage in self.stages]
        self.fpn = FeaturePyramidNetwork(
            channels, config.fpn_channels, extra_blocks=LastLevelP6P7(config.fpn_channels, config.fpn_channels)
        )
        self.out_channels = config.fpn_channels
        self.strides = strides + [64, 128]

    @staticmethod
    def _out_channels(stages: nn.Sequential) -> int:
        last = stages[-1][-1]
        return (getattr(last, "conv_pwl", None) or last.conv_pw).out_channels

    def trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The frozen part: standardised images -> the stage outputs the FPN takes (strides 16, 32; or 8, 16, 32)."""
        levels, features = [], self.stem(images)
        for stage in self.stages:
            features = stage(features)
            levels.append(features)
        return tuple(levels)

    def top(self, *levels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((f"c{i}", level) for i, level in enumerate(levels)))

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.top(*self.trunk(images))

    def frozen_parameters(self):
        return [p for part in (self.stem, self.stages) for p in part.parameters()]


class Detector(FCOS):
    """torchvision's FCOS on `LiteFPN`, with the pieces training on cached trunk outputs needs."""

    def __init__(self, config: DetectorConfig, pretrained: bool = True) -> None:
        backbone = LiteFPN(config, pretrained)
        super().__init__(
            backbone,
            num_classes=len(config.classes),
            min_size=config.input_size,
            max_size=config.input_size,
            image_mean=list(config.mean),
            image_std=list(config.std),
            anchor_generator=AnchorGenerator(tuple((s,) for s in backbone.strides), ((1.0,),) * len(backbone.strides)),
            head=FCOSHead(config.fpn_channels, 1, len(config.classes), num_convs=config.head_convs),
            center_sampling_radius=config.center_sampling_radius,
        )
        self.config = config
        for parameter in backbone.frozen_parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        # The frozen trunk keeps its ImageNet batch statistics.
        for module in self.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def standardise(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (n, 3, S, S) -> the backbone's input."""
        mean = images.new_tensor(self.config.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.config.std).view(1, 3, 1, 1)
        return (images - mean) / std

    def anchors(self, features: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
        size = self.config.input_size
        images = ImageList(features[0].new_empty((batch, 3, size, size)), [(size, size)] * batch)
        return self.anchor_generator(images, features)

    def losses_from_trunk(self, trunk: tuple[torch.Tensor, ...], targets: list[dict]) -> dict[str, torch.Tensor]:
        """FCOS losses (classification, box GIoU, centre-ness) from cached trunk outputs."""
        features = list(self.backbone.top(*trunk).values())
        head_outputs = self.head(features)
        num_anchors_per_level = [f.size(2) * f.size(3) for f in features]
        return self.compute_loss(targets, head_outputs, self.anchors(features, len(targets)), num_anchors_per_level)

    def raw_outputs(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """FPN features -> boxes (n, A, 4) in input pixels, scores (n, A, classes)."""
        head_outputs = self.head(features)
        anchors = self.anchors(features, 1)[0]
        boxes = self.box_coder.decode(head_outputs["bbox_regression"], anchors)
        scores = torch.sqrt(torch.sigmoid(head_outputs["cls_logits"]) * torch.sigmoid(head_outputs["bbox_ctrness"]))
        return boxes, scores

    def outputs_from_trunk(self, trunk: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.raw_outputs(list(self.backbone.top(*trunk).values()))


class DetectorOutputs(nn.Module):
    """What is exported (behind `training.onnx_export.PixelInput`): [0, 1] images -> `boxes`, `scores`."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = list(self.detector.backbone(self.detector.standardise(images)).values())
        return self.detector.raw_outputs(features)


class TrunkOutputs(nn.Module):
    """The frozen trunk alone, run through ONNX Runtime to fill the training cache: [0, 1] images -> the FPN's inputs."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.detector.backbone.trunk(self.detector.standardise(images))


def build_detector(config: DetectorConfig, pretrained: bool = True) -> Detector:
    return Detector(config, pretrained)
