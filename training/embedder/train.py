"""Train the shape and colour embedders on one frozen-trunk backbone.

    python -m training.embedder.train --out var/train/embedder          # defaults: < 30 min on 2 CPU cores
    python -m training.embedder.train --out var/train/embedder --resume
    python -m training.embedder.export --checkpoint var/train/embedder/checkpoint.pth
    python -m training.embedder.train --out var/train/embedder-gpu --train-trunk \
        --crop-views 8 --photo-views 4 --recolour-views 4 --epochs 45 --workers 16   # on a GPU: shipped

How (and why) on 2 CPU cores: the trunk (EfficientNet-Lite0 stages 0-4, ImageNet weights) stays
frozen, so each training view goes through it once; its 14x14 feature maps are cached (fp16) and
every epoch trains only the top (stages 5-6, the 1280-d head conv) and the heads. Views per
image: 4 random resized crops, 2 photo-like shots (`training.synth.photo`: clutter, perspective, light,
JPEG) and 2 recolourings (`training.synth.colors`: garment mask, repainted colour/pattern, labelled).
The early stages' maps are cached too, averaged down to 14x14, for the colour head's
garment-weighted pooling (`training.embedder.model.GarmentAttention`).

Losses, per batch of B images with two views each:
- shape: cosine-classifier cross-entropy over categories, plus an instance term (NT-Xent: the
  two views of an image, e.g. a crop and its repainted or photographed copy, attract; other
  images repel) so the code finds *this* item, not just its category, whatever its colour;
- colour: cross-entropy over colour and over pattern classes on the repainted views, and a
  supervised contrastive term (NT-Xent with the views of one colour class as positives; also
  over colour+pattern classes with `--pattern-contrast-weight`): it lifted colour P@10 from
  0.727 to 0.865 (`var/reports/colour`);
- binarisation: each normalised component is pulled towards +-1/sqrt(d) (then sign(z)/sqrt(d)
  equals z and the 1-bit code loses nothing) and every bit towards a 50% firing rate, plus the
  instance term on straight-through sign codes. After the last epoch, an ITQ rotation of the
  colour embedding (`rotate_color_codes`) lowers its codes' loss further at no cost to float search.

The top trains in channels_last memory format (1.5x faster on this CPU), with stochastic depth
(0.1) and dropout (0.2) on the penultimate features: train accuracy was 0.98 against 0.87 on
validation. Against the model shipped before (5 views per image, mean-pooled colour, no
dropout; `var/reports/garment`, 15 epochs), eight views, garment pooling and the regularisers
together lifted colour P@10 from 0.865 to 0.924, instance recall@1 from 0.672 to 0.730 (float)
and 0.480 to 0.536 (codes), category P@10 from 0.783 to 0.798. Eight views cost 10 minutes of
rendering from cold, so the default is 12 epochs (about 24 minutes in all): top-1 0.894, instance
recall@1 0.716 / 0.504, colour P@10 0.923 (`make train`). 12 epochs with a quantisation weight of
3 reached 0.695 / 0.471 (`quant3`): it did not narrow the codes' gap.

Fine-tuning the shipped model on the CPU (its torch checkpoint is lost; it was trained on a GPU):

    python -m training.embedder.train --out var/train/finetune --init-onnx training/artifacts/embedder.onnx \
        --partial-views 1 --hard-views 1

`--init-onnx` loads the exported graph's weights (`training.embedder.from_onnx`; the sidecar's
config must build the same network) instead of ImageNet's; the trunk, frozen, is exported from
them for the cache, whose key holds the file's digest. The graph folded every BatchNorm into the
layer before it, so before the first step each BatchNorm of the top and heads is re-expressed with
statistics measured on training views (the same function in eval mode, and train mode's batch
statistics start near it), and the colour and pattern classifiers, which the export drops, are
imprinted from repainted views. `--partial-views` and `--hard-views` add shape views of the item
made by two query families: close-ups of part of the garment (`training.synth.partial`) and photos
in bad conditions (`training.synth.hardphoto`), occluded by a hand or by another training photo's
garment; like the photo-like views they pair with the others in the instance term.

On a GPU (`--train-trunk`, `make train-gpu`, the shipped model's recipe): views are cached as
pixels (uint8, 16 per photo: 8 crops, 4 photo-like shots, 4 repaintings; 7.4 GB, kept on the GPU)
and the whole backbone trains, the trunk at `--trunk-lr`. On one H200 with 16 cores: 2.1 min of
rendering, then 45 epochs of 2-4 s. Against the CPU recipe (`var/reports/e2e45`, the same
evaluation): top-1 0.894 -> 0.897, instance recall@1 0.716 -> 0.806 (float) and 0.504 -> 0.605
(codes), category P@10 0.791 -> 0.826, colour P@10 0.923 -> 0.976. 15 epochs (trunk at 3e-4)
and 30 epochs reached 0.762 and 0.783 (float recall@1); half the instance weight gave category P@10 0.840 and top-1
0.903 but recall@1 0.795 / 0.579 (`e2e45i05`).

Tried and left off by default: EfficientNet-Lite1 (`--backbone tf_efficientnet_lite1`), top-1
0.900, instance recall@1 0.718 / 0.501, category P@10 0.797 (`var/reports/lite1`), within noise
of Lite0 for 1.2x the encoding time and 29.7 min of training (warm masks). A moving average of
the weights over the last 2 epochs (`--ema-epochs 2`, timm's ModelEmaV3) on the CPU recipe ended
at top-1 0.889 against 0.894 for the trained weights of the same run, instance recall@1 0.689 /
0.517 against 0.698 / 0.530 (`var/reports/ema2`): the cosine schedule's end already averages. A
cross-batch memory of 1024 views as extra negatives (`--memory-size`), which with a second photo view per image lowered instance recall@1 from 0.695
to 0.601 (float) and 0.490 to 0.305 (codes) while category P@10 rose from 0.788 to 0.826
(`var/reports/xbm`). Doubling the instance and code weights at temperature 0.07 raised instance
recall@1 to 0.704 / 0.492 but lowered category P@10 from 0.783 to 0.750 and top-1 from 0.874 to
0.859 (`inst2`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lookalike.engines import OnnxEmbedder
from lookalike.settings import get_settings
from training.backbone import WEIGHT_PACKAGES
from training.datasets import FolderDataset, data_fingerprint, without_classes
from training.embedder.from_onnx import calibrate_batchnorm, check_config_matches, load_onnx_weights, sidecar_config
from training.embedder.model import Embedder, EmbedderConfig
from training.embedder.presets import EvalPreset, TrainPreset
from training.onnx_export import export_onnx
from training.synth.colors import COLOURS, PATTERNS, load_mask, random_label, recolor
from training.synth.hardphoto import HardPhoto
from training.synth.partial import PartialView
from training.synth.photo import PhotoLikeQuery
from training.synth.query import Other

log = logging.getLogger(__name__)
NO_LABEL = -1
WORKING_SIDE = 320  # long side of the photos that views are rendered from
# Query views (photo-like, partial, hard) of image i are queries i * QUERY_STRIDE + k, k counted
# over all three kinds: no two views share an index, so none repeats another's random draws.
QUERY_STRIDE = 100
OTHERS_STREAM = 13  # the generator stream that picks the other photos a hard view may show


# ---------------------------------------------------------------------------------------------
# Views: every training image rendered a fixed number of ways, reproducibly.


class TrainingViews(Dataset):
    """Item i -> (views uint8 (V, s, s, 3), colour labels (V,), pattern labels (V,)).

    Views 0..crops-1 are random resized crops, then `photos` photo-like shots, `partials`
    close-ups of part of the garment (`training.synth.partial`), `hards` photos in bad conditions
    (`training.synth.hardphoto`, occluded by a hand or by another training photo's garment), and
    last `recolours` repainted garments. All but the repainted ones are shape views of the same
    item; colour/pattern labels are NO_LABEL except on the repainted ones.
    """

    def __init__(
        self,
        dataset: FolderDataset,
        mask_dir: Path,
        *,
        crops: int,
        photos: int,
        recolours: int,
        seed: int,
        partials: int = 0,
        hards: int = 0,
    ):
        if photos + partials + hards > QUERY_STRIDE:
            raise ValueError(f"at most {QUERY_STRIDE} photo-like, partial and hard views per image")
        self.dataset, self.mask_dir, self.seed = dataset, mask_dir, seed
        self.crops, self.photos, self.recolours = crops, photos, recolours
        self.partials, self.hards = partials, hards
        self.preset = TrainPreset()
        # Shots a little above the crop size: the views end at 224 px, and masks, photos and
        # repainting cost in proportion to pixels.
        self.photo = PhotoLikeQuery(seed, long_side=(300, 400))
        self.partial, self.hard = PartialView(seed), HardPhoto(seed)

    @property
    def shape_views(self) -> int:
        """Views 0..shape_views-1 show the item as it is (the rest are repainted)."""
        return self.crops + self.photos + self.partials + self.hards

    @property
    def views_per_image(self) -> int:
        return self.shape_views + self.recolours

    def __len__(self) -> int:
        return len(self.dataset)

    def photo_and_mask(self, index: int, needs_mask: bool = True) -> tuple[Image.Image, np.ndarray | None]:
        image = self.dataset.load(index)
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BICUBIC)
        path = self.dataset.samples[index].path
        return image, load_mask(self.mask_dir, self.dataset.root, path, image=image) if needs_mask else None

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        image, mask = self.photo_and_mask(index, needs_mask=self.views_per_image > self.crops)
        views = [self.preset(image, rng) for _ in range(self.crops)]
        views += [self.preset(self.photo(image, mask, index * QUERY_STRIDE + k), rng) for k in range(self.photos)]
        repainted, colours, patterns = [], [], []
        for _ in range(self.recolours):
            label = random_label(rng)
            repainted.append(self.preset(recolor(image, mask, label, rng), rng))
            colours.append(label.colour_index)
            patterns.append(label.pattern_index)
        # Cropped after the repaintings: adding these views leaves every other view as it was.
        views += [self.preset(picture, rng) for picture in self.queries(image, mask, index)]
        unlabelled = [NO_LABEL] * len(views)
        return np.stack(views + repainted), np.array(unlabelled + colours), np.array(unlabelled + patterns)

    def queries(self, image: Image.Image, mask: np.ndarray, index: int) -> list[Image.Image]:
        """The partial and hard views' pictures, before the random resized crop."""
        first = index * QUERY_STRIDE + self.photos
        pictures = [self.partial(image, mask, first + k).image for k in range(self.partials)]
        others = self.others(index) if self.hards else []
        first += self.partials
        return pictures + [self.hard(image, mask, first + k, others).image for k in range(self.hards)]

    def others(self, index: int) -> list[Other]:
        """One or two other training photos with their masks: garments a hard view may lay over this one."""
        if len(self.dataset) < 2:
            return []
        rng = np.random.default_rng([self.seed, OTHERS_STREAM, index])
        count = min(int(rng.integers(1, 3)), len(self.dataset) - 1)
        picked = [int(i) for i in rng.choice(len(self.dataset) - 1, count, replace=False)]
        return [Other(*self.photo_and_mask(i + (i >= index))) for i in picked]  # skipping photo `index`


class EvalViews(Dataset):
    def __init__(self, dataset: FolderDataset, preset: EvalPreset):
        self.dataset, self.preset = dataset, preset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.preset(self.dataset.load(index))[None], np.array([NO_LABEL]), np.array([NO_LABEL])


@dataclasses.dataclass
class ViewCache:
    """Every view's trunk outputs, or its pixels when the trunk trains too (`--train-trunk`);
    view v of image i is row i * views_per_image + v."""

    colours: torch.Tensor  # (N,) long
    patterns: torch.Tensor  # (N,) long
    views_per_image: int
    trunk: torch.Tensor | None = None  # (N, C, H, W) float16
    early: torch.Tensor | None = None  # (N, E) or (N, E, H, W) float16
    pixels: torch.Tensor | None = None  # (N, S, S, 3) uint8

    def _fields(self) -> dict:
        # Not dataclasses.asdict: it deep-copies every tensor (gigabytes of views).
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def to(self, device: torch.device) -> ViewCache:
        return ViewCache(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._fields().items()})

    def save(self, path: Path) -> None:
        torch.save(self._fields(), path)

    @classmethod
    def load(cls, path: Path) -> ViewCache:
        return cls(**torch.load(path, weights_only=True))


class TrunkOutputs(nn.Module):
    def __init__(self, embedder: Embedder):
        super().__init__()
        self.embedder = embedder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embedder.trunk(images)


def render_cache(
    views: Dataset, views_per_image: int, trunk: OnnxEmbedder | None, *, workers: int, desc: str
) -> ViewCache:
    """Render all views (in `workers` processes) and push them through the trunk (ONNX Runtime),
    or keep their pixels when there is no (frozen) trunk."""
    loader = DataLoader(views, batch_size=8, num_workers=workers, collate_fn=lambda items: items)
    columns: dict[str, list[torch.Tensor]] = {"trunk": [], "early": [], "pixels": [], "colours": [], "patterns": []}
    with tqdm(total=len(views), unit="img", desc=desc) as progress:
        for items in loader:
            pixels = np.concatenate([item[0] for item in items])
            if trunk is None:
                columns["pixels"].append(torch.from_numpy(pixels))
            else:
                outputs = trunk(pixels)
                columns["trunk"].append(torch.from_numpy(outputs["trunk"]).half())
                columns["early"].append(torch.from_numpy(outputs["early"]).half())
            columns["colours"] += [torch.from_numpy(item[1]).long() for item in items]
            columns["patterns"] += [torch.from_numpy(item[2]).long() for item in items]
            progress.update(len(items))
    return ViewCache(views_per_image=views_per_image, **{k: torch.cat(v) for k, v in columns.items() if v})


def cached(path: Path, build) -> ViewCache:
    if path.is_file():
        log.info("reusing cached views %s", path)
        return ViewCache.load(path)
    cache = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.save(path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return cache


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Losses


def instance_loss(
    embeddings: torch.Tensor, image_ids: torch.Tensor, temperature: float, memory: CrossBatchMemory | None = None
) -> torch.Tensor:
    """NT-Xent over a batch where rows with the same image id are positives.

    With a `memory`, the views of recent batches join the candidates (as negatives, or positives
    where they show the same image): many more negatives than one batch holds, at no extra forward.
    """
    candidates, candidate_ids = embeddings, image_ids
    if memory is not None and len(memory):
        candidates = torch.cat([embeddings, memory.embeddings])
        candidate_ids = torch.cat([image_ids, memory.image_ids])
    similarity = embeddings @ candidates.T / temperature
    self_mask = torch.eye(len(embeddings), len(candidates), dtype=torch.bool, device=embeddings.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    positives = (image_ids[:, None] == candidate_ids[None, :]) & ~self_mask
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1).clamp_min(1)).mean()


class CrossBatchMemory:
    """The last `size` embeddings (detached) with their image ids: extra negatives for `instance_loss`.

    Embeddings drift slowly once training settles (Wang et al., "Cross-Batch Memory for Embedding
    Learning", 2020), so stale ones still make useful negatives; it starts empty after a resume.
    """

    def __init__(self, size: int):
        self.size = size
        self.embeddings, self.image_ids = torch.empty(0), torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.image_ids)

    def push(self, embeddings: torch.Tensor, image_ids: torch.Tensor) -> None:
        if not len(self):
            self.embeddings = embeddings.new_empty(0, embeddings.shape[1])
        self.embeddings = torch.cat([embeddings.detach(), self.embeddings])[: self.size]
        self.image_ids = torch.cat([image_ids, self.image_ids.to(image_ids.device)])[: self.size]


def quantization_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """Zero when every component of the unit vector is +-1/sqrt(d): then sign codes lose nothing."""
    return ((embeddings.abs() * math.sqrt(embeddings.shape[1]) - 1) ** 2).mean()


def bit_balance_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """Zero when each bit is set for half of the batch: balanced bits carry the most information."""
    soft_bits = torch.tanh(3 * embeddings * math.sqrt(embeddings.shape[1]))
    return (soft_bits.mean(0) ** 2).mean()


# ---------------------------------------------------------------------------------------------
# Training


def pick_views(image_ids: torch.Tensor, cache: ViewCache, shape_views: int, generator: torch.Generator) -> torch.Tensor:
    """Two views per image: a shape view (crop, photo-like, partial or hard), and another view (a
    repainted one half of the time)."""
    n, per_image = len(image_ids), cache.views_per_image
    first = torch.randint(0, shape_views, (n,), generator=generator)
    other = (first + torch.randint(1, shape_views, (n,), generator=generator)) % shape_views
    if per_image > shape_views:
        recoloured = torch.randint(shape_views, per_image, (n,), generator=generator)
        other = torch.where(torch.rand(n, generator=generator) < 0.5, recoloured, other)
    rows = image_ids * per_image
    return torch.cat([rows + first, rows + other])


def sign_codes(unit: torch.Tensor) -> torch.Tensor:
    """sign(z)/sqrt(d) forward, identity backward (straight-through): trains what search compares."""
    codes = torch.sign(unit) / math.sqrt(unit.shape[1])
    return unit + (codes - unit).detach()


def trunk_batch(model: Embedder, cache: ViewCache, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The trunk's outputs for these views: cached, or computed (with gradients) from their pixels."""
    if cache.pixels is not None:
        # (n, s, s, 3) uint8 permuted to (n, 3, s, s) is already channels_last.
        return model.trunk(cache.pixels[rows].permute(0, 3, 1, 2).float() / 255)
    # channels_last: the depthwise convolutions of the top run about 1.5x faster on CPU.
    return cache.trunk[rows].float().contiguous(memory_format=torch.channels_last), cache.early[rows].float()


def losses(
    model: Embedder,
    cache: ViewCache,
    rows: torch.Tensor,
    image_ids: torch.Tensor,
    labels: torch.Tensor,
    args,
    memories=None,
) -> dict:
    shape, color = model.embed_from_trunk(*trunk_batch(model, cache, rows))
    shape_unit, color_unit = F.normalize(shape, dim=1), F.normalize(color, dim=1)
    shape_codes = sign_codes(shape_unit)
    float_memory, code_memory = memories or (None, None)
    shape_logits = model.shape_classifier(shape)
    terms = {
        "category": F.cross_entropy(shape_logits, labels, label_smoothing=args.label_smoothing),
        "instance": args.instance_weight * instance_loss(shape_unit, image_ids, args.temperature, float_memory),
        "code_instance": args.code_weight * instance_loss(shape_codes, image_ids, args.temperature, code_memory),
        "binary": args.quant_weight * (quantization_loss(shape_unit) + quantization_loss(color_unit))
        + args.balance_weight * (bit_balance_loss(shape_unit) + bit_balance_loss(color_unit)),
    }
    painted = cache.colours[rows] != NO_LABEL
    if painted.any():
        colours, patterns = cache.colours[rows][painted], cache.patterns[rows][painted]
        terms["colour"] = F.cross_entropy(model.colour_classifier(color[painted]), colours) + F.cross_entropy(
            model.pattern_classifier(color[painted]), patterns
        )
        # Supervised contrast: repaintings of one colour (and pattern) attract whatever their
        # garment, which is what colour search ranks by; the classifiers alone leave shape in.
        if args.colour_contrast_weight:
            terms["colour"] = terms["colour"] + args.colour_contrast_weight * instance_loss(
                color_unit[painted], colours, args.temperature
            )
        if args.pattern_contrast_weight:
            terms["colour"] = terms["colour"] + args.pattern_contrast_weight * instance_loss(
                color_unit[painted], colours * len(PATTERNS) + patterns, args.temperature
            )
    terms["accuracy"] = (shape_logits.argmax(1) == labels).float().mean().detach()
    if memories:
        float_memory.push(shape_unit, image_ids)
        code_memory.push(shape_codes, image_ids)
    return terms


def train_one_epoch(model, cache, targets, optimizer, scheduler, epoch, args, memories=None, ema=None) -> dict:
    model.train()
    generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    order = torch.randperm(len(targets), generator=generator)
    batches = order.split(args.batch_size)
    totals: dict[str, float] = {}
    with tqdm(batches, desc=f"epoch {epoch}", unit="batch") as progress:
        for image_ids in progress:
            rows = pick_views(image_ids, cache, shape_views(args), generator).to(targets.device)
            ids = torch.cat([image_ids, image_ids]).to(targets.device)
            terms = losses(model, cache, rows, ids, targets[ids], args, memories)
            loss = sum(value for name, value in terms.items() if name != "accuracy")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{float(terms['accuracy']):.3f}")
    return {name: value / len(batches) for name, value in totals.items()}


@torch.no_grad()
def evaluate(model: Embedder, cache: ViewCache, targets: torch.Tensor) -> dict:
    model.eval()
    correct = 0
    for rows in torch.arange(len(targets), device=targets.device).split(256):
        shape, _ = model.embed_from_trunk(*trunk_batch(model, cache, rows))
        correct += int((model.shape_classifier(shape).argmax(1) == targets[rows]).sum())
    return {"val_top1": correct / len(targets)}


def save_checkpoint(
    path: Path, model, optimizer, scheduler, epoch: int, history: list, args, fingerprint: str, ema=None, **extra
) -> None:
    """`model` holds the weights export takes: the average's with `ema`, the trained ones in `raw_model`."""
    state = {
        "model_args": model.config.to_dict(),
        "model": (ema.module if ema is not None else model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "args": vars(args),
        "data_fingerprint": fingerprint,
    }
    if ema is not None:
        state["raw_model"] = model.state_dict()
    torch.save(state | extra, path)


def fit_itq_rotation(vectors: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Orthogonal R, from the identity, that lowers ||sign(VR) - VR||^2: iterative quantisation
    (Gong & Lazebnik, 2011). Rotating unit vectors keeps every cosine, so only the codes change."""
    v = vectors.double()
    rotation = torch.eye(v.shape[1], dtype=torch.float64, device=v.device)
    for _ in range(iterations):
        u, _, vt = torch.linalg.svd(v.T @ torch.sign(v @ rotation))
        rotation = u @ vt
    return rotation.float()


@torch.no_grad()
def rotate_color_codes(model: Embedder, cache: ViewCache, also: Embedder | None = None) -> tuple[float, float]:
    """Fold an ITQ rotation, fitted on one repainting per training image, into the colour head
    (and into `also`'s, the trained weights behind an average, so that a resume stays consistent).

    Measured on the shipped model: colour P@10 of the codes 0.923 -> 0.943, colour+pattern
    0.503 -> 0.590, float search unchanged. On the shape head it cost instance recall@1 of the
    codes (0.504 -> 0.459), so that head is left as trained.
    """
    model.eval()
    images = len(cache.colours) // cache.views_per_image
    rows = torch.arange(images, device=cache.colours.device) * cache.views_per_image + cache.views_per_image - 1
    unit = torch.cat(
        [F.normalize(model.embed_from_trunk(*trunk_batch(model, cache, batch))[1], dim=1) for batch in rows.split(256)]
    )
    rotation = fit_itq_rotation(unit)
    for rotated in (model, also) if also is not None else (model,):
        last = rotated.color_head[-1]  # embedding = unit(W h + b) -> unit(R^T (W h + b))
        last.weight.copy_(rotation.T @ last.weight)
        last.bias.copy_(rotation.T @ last.bias)
        for classifier in (rotated.colour_classifier, rotated.pattern_classifier):
            classifier.weight.copy_(classifier.weight @ rotation)  # cos(zR, wR) = cos(z, w)
    # quantization_loss is the mean of ||sign(z)/sqrt(d) - z||^2: ITQ's objective on unit vectors.
    return float(quantization_loss(unit)), float(quantization_loss(unit @ rotation))


def make_ema(model: Embedder, steps_per_epoch: int, args) -> ModelEmaV3 | None:
    """A moving average of the weights over about the last `--ema-epochs` epochs (0: none): the
    weights export takes, evaluated beside the trained ones every epoch."""
    if not args.ema_epochs:
        return None
    return ModelEmaV3(model, decay=1 - 1 / (args.ema_epochs * steps_per_epoch))


def build_model(classes: list[str], args) -> Embedder:
    config = EmbedderConfig(
        heads="trained",
        pretrained=args.init_onnx is None,  # ImageNet weights, unless an exported model's come next
        backbone=args.backbone,
        trunk_stages=args.trunk_stages,
        embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim,
        shape_classes=classes,
        color_pooling=args.color_pooling,
        drop_path_rate=args.drop_path,
        train_trunk=args.train_trunk,
        dropout=args.dropout,
        colour_classes=list(COLOURS),
        pattern_classes=list(PATTERNS),
        seed=args.seed,
    )
    return Embedder(config)


def make_optimizer(model: Embedder, steps: int, args):
    trunk_ids = {id(p) for p in model.trunk_modules().parameters()}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    trunk = [p for _, p in trainable if id(p) in trunk_ids]
    top = [p for name, p in trainable if name.startswith("backbone.") and id(p) not in trunk_ids]
    heads = [p for name, p in trainable if not name.startswith("backbone.")]
    groups = [{"params": top, "lr": args.top_lr}, {"params": heads, "lr": args.lr}]
    if trunk:
        groups.append({"params": trunk, "lr": args.trunk_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    warmup = max(1, int(steps * args.warmup_fraction))
    schedule = lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def start_from_onnx(model: Embedder, onnx_path: Path) -> None:
    """An exported embedder's weights (`training.embedder.from_onnx`), once its sidecar's config
    is checked to build the same network as `model`'s."""
    check_config_matches(model.config, sidecar_config(onnx_path))
    load_onnx_weights(model, onnx_path)
    log.info("weights from %s (sha256 %s)", onnx_path, file_digest(onnx_path))


@torch.no_grad()
def adapt_onnx_start(model: Embedder, cache: ViewCache, seed: int, views: int = 512) -> None:
    """Make a graph's folded weights trainable on `views` training views: BatchNorm statistics
    measured (`calibrate_batchnorm`), colour and pattern classifiers imprinted."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(cache.colours), generator=generator)[:views].to(cache.colours.device)
    forward = lambda batch: model.embed_from_trunk(*trunk_batch(model, cache, batch))
    calibrated = calibrate_batchnorm(model, forward, rows.split(128))
    log.info("BatchNorm statistics measured on %d views for %d layers", len(rows), len(calibrated))
    imprint_colour_classifiers(model, cache, generator, views)


@torch.no_grad()
def imprint_colour_classifiers(model: Embedder, cache: ViewCache, generator: torch.Generator, views: int) -> None:
    """Each colour (pattern) class's weight := the mean unit colour embedding of its repainted views.

    The export keeps no colour or pattern classifier; random ones would, in the first steps, pull
    the trained colour head towards random directions. Imprinting (Qi et al., "Low-Shot Learning
    with Imprinted Weights", 2018) starts them where the head already puts each class.
    """
    painted = torch.nonzero(cache.colours != NO_LABEL).squeeze(1)
    if not len(painted):
        return
    rows = painted[torch.randperm(len(painted), generator=generator)[:views].to(painted.device)]
    model.eval()
    unit = torch.cat(
        [F.normalize(model.embed_from_trunk(*trunk_batch(model, cache, batch))[1], dim=1) for batch in rows.split(128)]
    )
    for classifier, labels in ((model.colour_classifier, cache.colours), (model.pattern_classifier, cache.patterns)):
        labels = labels[rows]
        for label in labels.unique():
            classifier.weight[label] = F.normalize(unit[labels == label].mean(0), dim=0)
        log.info("imprinted %d of %d classes from %d views", len(labels.unique()), len(classifier.weight), len(rows))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def shape_views(args) -> int:
    """Training views per image that show the item as it is: every kind but the repainted ones."""
    return args.crop_views + args.photo_views + args.partial_views + args.hard_views


def view_cache_key(model: Embedder, args, fingerprint: str, val_fingerprint: str) -> str:
    """What the cached views depend on. Options added later join the key only when they are
    used, so that runs without them keep reusing the caches they made before."""
    view_args = (
        args.crop_views,
        args.photo_views,
        args.recolour_views,
        args.seed,
        model.config.trunk_stages,
        args.limit,
    )
    if model.pools_garment:  # early features cached as maps
        view_args += ("garment",)
    if model.config.backbone != "tf_efficientnet_lite0":  # another trunk (Lite0's key predates this)
        view_args += (model.config.backbone,)
    if model.config.train_trunk:  # pixels cached, the trunk runs in training
        view_args = (*view_args[:4], "pixels", args.limit)
    elif args.init_onnx:  # the trunk is the exported model's, not ImageNet's
        view_args += ("init", file_digest(args.init_onnx))
    if args.partial_views or args.hard_views:
        view_args += ("partial", args.partial_views, "hard", args.hard_views)
    return cache_key(fingerprint, view_args, val_fingerprint)


def prepare_caches(model: Embedder, train_set: FolderDataset, val_set: FolderDataset, fingerprint: str, args):
    key = view_cache_key(model, args, fingerprint, data_fingerprint(val_set))
    trunk = None if model.config.train_trunk else frozen_trunk(model, args.cache_dir / f"trunk-{key}.onnx")
    views = TrainingViews(
        train_set,
        args.mask_dir,
        crops=args.crop_views,
        photos=args.photo_views,
        recolours=args.recolour_views,
        seed=args.seed,
        partials=args.partial_views,
        hards=args.hard_views,
    )
    train_cache = cached(
        args.cache_dir / f"train-{key}.pt",
        lambda: render_cache(views, views.views_per_image, trunk, workers=args.workers, desc="rendering views"),
    )
    val_cache = cached(
        args.cache_dir / f"val-{key}.pt",
        lambda: render_cache(EvalViews(val_set, EvalPreset()), 1, trunk, workers=args.workers, desc="validation views"),
    )
    return train_cache, val_cache


def frozen_trunk(model: Embedder, path: Path) -> OnnxEmbedder:
    if not path.is_file():
        export_onnx(TrunkOutputs(model).eval(), path, EvalPreset().crop_size, names=["trunk", "early"])
    return OnnxEmbedder(path)


def limited(dataset: FolderDataset, limit: int | None, seed: int) -> FolderDataset:
    """Keep `limit` images, spread over classes (for quick runs and tests)."""
    if not limit or limit >= len(dataset):
        return dataset
    order = np.random.default_rng(seed).permutation(len(dataset))[:limit]
    dataset.samples = [dataset.samples[i] for i in sorted(order)]
    return dataset


def main(args: argparse.Namespace) -> dict:
    if args.init_onnx and args.train_trunk:
        raise SystemExit("--init-onnx fine-tunes the top on the exported model's frozen trunk: drop --train-trunk")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    train_set = limited(FolderDataset(args.data_dir / "train"), args.limit, args.seed)
    val_set = limited(FolderDataset(args.data_dir / "validation", classes=train_set.classes), args.limit, args.seed)
    if args.exclude_classes:  # class-held-out training: those garments are never seen
        train_set, val_set = (without_classes(split, args.exclude_classes) for split in (train_set, val_set))
    fingerprint = data_fingerprint(train_set)
    model = build_model(train_set.classes, args)
    if args.init_onnx:
        start_from_onnx(model, args.init_onnx)
    (args.out / "config.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "model_args": model.config.to_dict(),
                "data_fingerprint": fingerprint,
                "init_onnx_sha256": file_digest(args.init_onnx) if args.init_onnx else None,
            },
            indent=2,
            default=str,
        )
    )

    caches = prepare_caches(model, train_set, val_set, fingerprint, args)
    if not args.epochs:  # render the caches only (e.g. once, for several runs that share them)
        return {}
    train_cache, val_cache = (cache.to(device) for cache in caches)
    train_targets = torch.tensor([s.label for s in train_set.samples], device=device)
    val_targets = torch.tensor([s.label for s in val_set.samples], device=device)
    model.to(device)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    optimizer, scheduler = make_optimizer(model, args.epochs * steps_per_epoch, args)
    start_epoch, history, rotated_at, averaged_state = 0, [], None, None
    checkpoint_path = args.out / "checkpoint.pth"
    if args.resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint.get("raw_model", checkpoint["model"]))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]
        rotated_at = checkpoint.get("color_codes_rotated_at")
        averaged_state = checkpoint["model"] if "raw_model" in checkpoint else None
        log.info("resumed from epoch %d", checkpoint["epoch"])
    elif args.init_onnx:
        adapt_onnx_start(model, train_cache, args.seed)

    model.to(memory_format=torch.channels_last)
    ema = make_ema(model, steps_per_epoch, args)
    if ema is not None and averaged_state is not None:
        ema.module.load_state_dict(averaged_state)
    memories = (CrossBatchMemory(args.memory_size), CrossBatchMemory(args.memory_size)) if args.memory_size else None
    for epoch in range(start_epoch, args.epochs):
        started = time.perf_counter()
        # The memory joins after the first epoch, when embeddings have stopped moving fast.
        epoch_memories = memories if epoch >= 1 else None
        record = {
            "epoch": epoch,
            **train_one_epoch(
                model, train_cache, train_targets, optimizer, scheduler, epoch, args, epoch_memories, ema
            ),
        }
        record.update(evaluate(model, val_cache, val_targets), seconds=round(time.perf_counter() - started, 1))
        if ema is not None:
            record["ema_val_top1"] = evaluate(ema.module, val_cache, val_targets)["val_top1"]
        history.append(record)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, epoch, history, args, fingerprint, ema)
    last_epoch = len(history) - 1
    if args.rotate_color_codes and args.recolour_views and rotated_at != last_epoch:
        before, after = (
            rotate_color_codes(ema.module, train_cache, also=model) if ema else rotate_color_codes(model, train_cache)
        )
        log.info("colour codes rotated (ITQ): quantisation error %.3f -> %.3f", before, after)
        save_checkpoint(
            checkpoint_path,
            model,
            optimizer,
            scheduler,
            last_epoch,
            history,
            args,
            fingerprint,
            ema,
            color_codes_rotated_at=last_epoch,
        )
    (args.out / "history.json").write_text(json.dumps(history, indent=2))
    return history[-1] if history else {}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, default=get_settings().clothing_dir, help="folder with train/ and validation/"
    )
    parser.add_argument("--out", type=Path, default=Path("var/train/embedder"))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache"), help="trunk outputs of rendered views")
    parser.add_argument(
        "--mask-dir",
        type=Path,
        default=Path("var/masks-320"),
        help="garment masks of the working-size photos (computed on a miss)",
    )
    parser.add_argument("--epochs", type=int, default=12, help="0: render the view caches and stop")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (two views each)")
    parser.add_argument("--lr", type=float, default=2e-3, help="heads' learning rate")
    parser.add_argument("--top-lr", type=float, default=3e-4, help="fine-tuned backbone stages' learning rate")
    parser.add_argument("--trunk-lr", type=float, default=1e-4, help="the trunk's learning rate with --train-trunk")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-fraction", type=float, default=0.05)
    parser.add_argument(
        "--ema-epochs", type=float, default=0.0, help="average the weights over about this many epochs (0: off)"
    )
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--instance-weight", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument(
        "--memory-size", type=int, default=0, help="cross-batch memory of views for the instance terms (0: off)"
    )
    parser.add_argument("--code-weight", type=float, default=1.0, help="instance term on straight-through sign codes")
    parser.add_argument(
        "--colour-contrast-weight", type=float, default=1.0, help="supervised contrast of colour classes"
    )
    parser.add_argument(
        "--pattern-contrast-weight", type=float, default=0.0, help="the same over colour+pattern classes"
    )
    parser.add_argument("--quant-weight", type=float, default=1.0)
    parser.add_argument("--balance-weight", type=float, default=0.5)
    parser.add_argument("--backbone", choices=sorted(WEIGHT_PACKAGES), default="tf_efficientnet_lite0")
    parser.add_argument("--trunk-stages", type=int, default=5, help="frozen, cached backbone stages (of 7)")
    parser.add_argument(
        "--train-trunk", action="store_true",
        help="fine-tune the trunk too: views are cached as pixels and the whole backbone trains (GPU)",
    )  # fmt: skip
    parser.add_argument("--crop-views", type=int, default=4)
    parser.add_argument("--photo-views", type=int, default=2)
    parser.add_argument("--recolour-views", type=int, default=2)
    parser.add_argument(
        "--partial-views", type=int, default=0, help="close-ups of part of the garment (training.synth.partial)"
    )
    parser.add_argument(
        "--hard-views", type=int, default=0,
        help="photos in bad light, blurred or occluded by a hand or another garment (training.synth.hardphoto)",
    )  # fmt: skip
    parser.add_argument(
        "--init-onnx", type=Path,
        help="start from an exported embedder (STEM.onnx beside STEM.json) instead of ImageNet; its trunk is frozen",
    )  # fmt: skip
    parser.add_argument(
        "--color-pooling",
        choices=["mean", "garment"],
        default="garment",
        help="colour head's pooling of early features",
    )
    parser.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate of the backbone")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout on the penultimate features")
    parser.add_argument(
        "--no-rotate-color-codes", dest="rotate_color_codes", action="store_false",
        help="skip the ITQ rotation of the colour embedding after the last epoch",
    )  # fmt: skip
    parser.add_argument("--embed-dim", type=int, default=128, help="code length in bits")
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--limit", type=int, help="use this many images of each split (quick runs, tests)")
    parser.add_argument(
        "--exclude-classes",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=[],
        help="comma-separated classes left out of training entirely (the class-held-out run)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering views")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main(get_args_parser().parse_args())
