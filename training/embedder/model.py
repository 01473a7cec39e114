"""The embedder: one forward pass of a shared backbone gives the `shape` and `color` vectors.

Inputs are float images in [0, 1] (n, 3, h, w); normalisation by the preset's mean/std is the
model's first op, so exported graphs carry it. The backbone splits in two:

- the **trunk** (stem and stages < `trunk_stages`) stays frozen at its ImageNet weights, so its
  outputs can be computed once per training view and cached (on a GPU, `train_trunk` fine-tunes
  it too);
- the **top** (later stages and the 1280-d head conv) is fine-tuned.

Heads map pooled features to `embed_dim` and L2-normalise:

- `heads="trained"`: `shape` = MLP(penultimate 1280-d) trained as a category classifier (cosine
  classifier on the embedding) plus an instance term; `color` = MLP(early-stage features +
  penultimate) trained on colour and pattern classes. The embeddings are the layer before the
  classifiers — the "penultimate layer" of each task. With `color_pooling="garment"` the early
  stages' maps are pooled twice, over the whole image and weighted by a learned attention over
  the trunk map's positions (`GarmentAttention`), so the background's colour weighs less.
- `heads="provisional"` (issue 2, no training): fixed, seeded random orthonormal projections of
  centred features — `shape` from the penultimate layer, `color` from the early stages.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.backbone import efficientnet_lite


@dataclass
class EmbedderConfig:
    """Constructor arguments, saved in every checkpoint and in the model store's metadata."""

    backbone: str = "tf_efficientnet_lite0"  # or "tf_efficientnet_lite1"
    pretrained: bool = True
    heads: str = "provisional"
    embed_dim: int = 128
    hidden_dim: int = 512
    color_stages: tuple[int, ...] = (1, 2, 3)
    trunk_stages: int = 5
    shape_classes: list[str] = field(default_factory=list)
    colour_classes: list[str] = field(default_factory=list)
    pattern_classes: list[str] = field(default_factory=list)
    classifier_scale: float = 16.0
    # "mean": colour from whole-image means of the early stages; "garment": also their mean
    # weighted by a learned attention map over the trunk features (where the garment is).
    color_pooling: str = "mean"
    drop_path_rate: float = 0.0  # stochastic depth in the fine-tuned stages (training only)
    dropout: float = 0.0  # on the penultimate features before the heads (training only)
    train_trunk: bool = False  # fine-tune the trunk as well (end to end: a GPU's job)
    seed: int = 0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EmbedderConfig:
        values = dict(values)
        for key in ("color_stages", "mean", "std"):
            values[key] = tuple(values[key])
        return cls(**values)


class CosineClassifier(nn.Module):
    """Logits = scale * cos(embedding, class weight): classes become directions on the sphere."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embed_dim) / math.sqrt(embed_dim))
        self.scale = scale

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(embedding, dim=1) @ F.normalize(self.weight, dim=1).T


class ProjectionHead(nn.Sequential):
    def __init__(self, in_dim: int, hidden_dim: int, embed_dim: int):
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, embed_dim),
        )


class GarmentAttention(nn.Sequential):
    """Trunk feature map -> softmax weights over its positions, learned from the colour losses.

    Whole-image means mix the background's colour into the garment's; these weights let the
    colour head look where the garment is.
    """

    def __init__(self, in_channels: int, hidden: int = 32):
        super().__init__(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def forward(self, trunk_map: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(trunk_map).flatten(1), dim=1)


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
    pdf = lambda t: torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
    return mean * (cdf_b - cdf_a) + std * (pdf(a) - pdf(b)) + 6 * (1 - cdf_b)


class Embedder(nn.Module):
    def __init__(self, config: EmbedderConfig):
        super().__init__()
        if max(config.color_stages) >= config.trunk_stages:
            raise ValueError("color_stages must lie inside the trunk")
        self.config = config
        if config.color_pooling not in ("mean", "garment"):
            raise ValueError(f"unknown color_pooling {config.color_pooling!r}")
        self.backbone = efficientnet_lite(config.backbone, config.pretrained, config.drop_path_rate)
        self.backbone.classifier = nn.Identity()  # ImageNet's 1000 classes are not ours
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))
        self.early_dim = sum(self.backbone.blocks[s][-1].conv_pwl.out_channels for s in config.color_stages)
        penultimate_dim = self.backbone.num_features
        self.dropout = nn.Dropout(config.dropout)
        if config.heads == "provisional":
            self.shape_head = nn.Linear(penultimate_dim, config.embed_dim)
            self.color_head = nn.Linear(self.early_dim, config.embed_dim)
            self._init_provisional_heads()
        elif config.heads == "trained":
            self.shape_head = ProjectionHead(penultimate_dim, config.hidden_dim, config.embed_dim)
            color_dim = self.early_dim * (2 if self.pools_garment else 1) + penultimate_dim
            self.color_head = ProjectionHead(color_dim, config.hidden_dim, config.embed_dim)
            if self.pools_garment:
                trunk_dim = self.backbone.blocks[config.trunk_stages - 1][-1].conv_pwl.out_channels
                self.garment_attention = GarmentAttention(trunk_dim)
            scale = config.classifier_scale
            self.shape_classifier = CosineClassifier(config.embed_dim, len(config.shape_classes), scale)
            self.colour_classifier = CosineClassifier(config.embed_dim, len(config.colour_classes), scale)
            self.pattern_classifier = CosineClassifier(config.embed_dim, len(config.pattern_classes), scale)
            self.trunk_modules().requires_grad_(config.train_trunk)
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

    def trunk_modules(self) -> nn.ModuleList:
        b = self.backbone
        return nn.ModuleList([b.conv_stem, b.bn1, *b.blocks[: self.config.trunk_stages]])

    @property
    def pools_garment(self) -> bool:
        return self.config.heads == "trained" and self.config.color_pooling == "garment"

    def trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images -> (trunk feature map, early-stage features): the part cached when frozen.

        Early features are pooled over the whole image, (n, E), or with garment pooling kept as
        maps averaged down to the trunk map's size, (n, E, h, w), for the attention to weight.
        """
        x = (images - self.mean) / self.std
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        early = []
        for index in range(self.config.trunk_stages):
            x = b.blocks[index](x)
            if index in self.config.color_stages:
                early.append(x)
        if not self.pools_garment:
            return x, torch.cat([m.mean(dim=(2, 3)) for m in early], dim=1)
        return x, torch.cat([F.avg_pool2d(m, m.shape[-1] // x.shape[-1]) for m in early], dim=1)

    def top(self, trunk_map: torch.Tensor) -> torch.Tensor:
        """Trunk feature map -> pooled penultimate features (1280-d)."""
        b = self.backbone
        x = trunk_map
        for stage in b.blocks[self.config.trunk_stages :]:
            x = stage(x)
        return b.bn2(b.conv_head(x)).mean(dim=(2, 3))

    def embed_from_trunk(self, trunk_map: torch.Tensor, early: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised (shape, color) embeddings."""
        penultimate = self.top(trunk_map)
        if self.config.heads == "provisional":
            return self.shape_head(penultimate), self.color_head(early)
        penultimate = self.dropout(penultimate)
        if self.pools_garment:
            weights = self.garment_attention(trunk_map)  # (n, h*w), sums to 1
            garment = (early.flatten(2) * weights[:, None]).sum(-1)
            early = torch.cat([early.mean(dim=(2, 3)), garment], dim=1)
        return self.shape_head(penultimate), self.color_head(torch.cat([early, penultimate], dim=1))

    @property
    def classifies(self) -> bool:
        return self.config.heads == "trained"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """-> (shape, color) L2-normalised, plus category logits when the heads are trained."""
        shape, color = self.embed_from_trunk(*self.trunk(images))
        outputs = (F.normalize(shape, dim=1), F.normalize(color, dim=1))
        return outputs + (self.shape_classifier(shape),) if self.classifies else outputs


def build_embedder(config: EmbedderConfig) -> Embedder:
    return Embedder(config).eval()
