"""The embedder: one forward pass of a shared backbone gives the `shape` and `color` vectors.

Inputs are float images in [0, 1] (n, 3, h, w); normalisation by the preset's mean/std is the
model's first op, so exported graphs carry it. Each head maps pooled features to `embed_dim` and
L2-normalises.

`heads="provisional"` (issue 2) has no training: each head is a fixed, seeded random orthonormal
projection of centred features — `shape` from the penultimate layer (1280-d), `color` from the
early stages, which keep colour and texture that the last layer abstracts away. Trained heads
replace it without changing the interface.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.backbone import efficientnet_lite0


@dataclass
class EmbedderConfig:
    """Constructor arguments, saved in every checkpoint and in the model store's metadata."""

    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    heads: str = "provisional"
    embed_dim: int = 128
    color_stages: tuple[int, ...] = (1, 2, 3)
    seed: int = 0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _orthonormal_rows(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    gaussian = torch.randn(cols, rows, generator=generator)
    q, _ = torch.linalg.qr(gaussian)  # (cols, rows), orthonormal columns
    return q.T.contiguous()


def _expected_relu6(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """E[clip(Z, 0, 6)] for Z ~ N(mean, std^2): the average activation after BN + ReLU6."""
    std = std.abs().clamp_min(1e-6)
    normal = torch.distributions.Normal(0.0, 1.0)
    a, b = (0 - mean) / std, (6 - mean) / std
    cdf_a, cdf_b = normal.cdf(a), normal.cdf(b)
    pdf = lambda t: torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)  # noqa: E731
    return mean * (cdf_b - cdf_a) + std * (pdf(a) - pdf(b)) + 6 * (1 - cdf_b)


class Embedder(nn.Module):
    def __init__(self, config: EmbedderConfig):
        super().__init__()
        if config.backbone != "tf_efficientnet_lite0":
            raise ValueError(f"unsupported backbone {config.backbone!r}")
        self.config = config
        self.backbone = efficientnet_lite0(pretrained=config.pretrained)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))
        color_dim = sum(self.backbone.blocks[s][-1].conv_pwl.out_channels for s in config.color_stages)
        self.shape_head = nn.Linear(self.backbone.num_features, config.embed_dim)
        self.color_head = nn.Linear(color_dim, config.embed_dim)
        if config.heads == "provisional":
            self._init_provisional_heads()
        else:
            raise ValueError(f"unknown heads {config.heads!r}")

    @torch.no_grad()
    def _init_provisional_heads(self) -> None:
        generator = torch.Generator().manual_seed(self.config.seed)
        bn = self.backbone.bn2
        shape_centre = _expected_relu6(bn.bias, bn.weight)
        # Stage outputs are linear BN outputs: centred near the last BN's shift.
        color_centre = torch.cat([self.backbone.blocks[s][-1].bn3.bias for s in self.config.color_stages])
        for head, centre in ((self.shape_head, shape_centre), (self.color_head, color_centre)):
            head.weight.copy_(_orthonormal_rows(head.out_features, head.in_features, generator))
            head.bias.copy_(-head.weight @ centre)
        self.requires_grad_(False)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images -> pooled (penultimate, early-stage) features."""
        x = (images - self.mean) / self.std
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        early = []
        for index, stage in enumerate(b.blocks):
            x = stage(x)
            if index in self.config.color_stages:
                early.append(x.mean(dim=(2, 3)))
        x = b.bn2(b.conv_head(x))
        return x.mean(dim=(2, 3)), torch.cat(early, dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        penultimate, early = self.features(images)
        shape = F.normalize(self.shape_head(penultimate), dim=1)
        color = F.normalize(self.color_head(early), dim=1)
        return shape, color


def build_embedder(config: EmbedderConfig) -> Embedder:
    return Embedder(config).eval()
