"""Typed model cards: what every consumer of an exported model needs to know about it.

An exported model is an ONNX file plus its card (the `.json` sidecar in the repository, the
metadata in the BentoML model store). The services, the indexer, the store and evaluation read
the card instead of raw metadata dicts, so a missing or misspelt field fails at load time with
the field's name, not as a KeyError in a request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lookalike.detection import LetterboxPreset, Thresholds
from lookalike.preprocess import EvalPreset


class InputSpec(BaseModel):
    name: str = "pixels"
    dtype: Literal["uint8"] = "uint8"
    layout: Literal["NHWC"] = "NHWC"


class _Card(BaseModel):
    # Extra metadata (config, metrics, versions, parity…) is kept as it is: the card types what
    # consumers read and carries the rest along.
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    input: InputSpec = Field(default_factory=InputSpec)
    outputs: list[str]
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]):
        return cls.model_validate(dict(metadata))

    def to_metadata(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# The order of an embedder's vectors in the model service's columns and in the store.
VECTOR_ORDER = ("shape", "color", "detail")


class EmbedderCard(_Card):
    """An embedder: (n, crop, crop, 3) uint8 -> L2-normalised `shape` and `color` vectors, and for
    embedders shipped with one (`training.embedder.detail`) a `detail` vector: the same item."""

    kind: Literal["embedder"] = "embedder"
    preprocess: dict[str, Any]
    dims: dict[Literal["shape", "color", "detail"], int]
    classes: list[str] = Field(default_factory=list, description="Category classes of `category_logits`, if any.")

    @field_validator("dims")
    @classmethod
    def _shape_and_color_first(cls, dims: dict[str, int]) -> dict[str, int]:
        """In the order of the model service's columns (shape, color, detail), whatever order the JSON had."""
        if not {"shape", "color"} <= set(dims) or any(size < 1 for size in dims.values()):
            raise ValueError(f"dims must give positive sizes for shape, color and optionally detail; got {dims}")
        return {name: dims[name] for name in VECTOR_ORDER if name in dims}

    @property
    def vector_names(self) -> tuple[str, ...]:
        """The vectors this embedder makes, in the order of the model service's columns."""
        return tuple(self.dims)

    def split_columns(self, rows):
        """The model service's (n, sum of dims) rows -> {vector name: (n, dim) columns}, in card order."""
        columns, start = {}, 0
        for name, size in self.dims.items():
            columns[name] = rows[:, start : start + size]
            start += size
        return columns

    @property
    def preset(self) -> EvalPreset:
        return EvalPreset.from_dict(self.preprocess)

    @property
    def shape_dim(self) -> int:
        return self.dims["shape"]

    @property
    def color_dim(self) -> int:
        return self.dims["color"]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> EmbedderCard:
        metadata = dict(metadata)
        # Embedders shipped before the card kept their classes in the training config.
        metadata.setdefault("classes", (metadata.get("config") or {}).get("classes", []))
        return cls.model_validate(metadata)


class DetectorClass(BaseModel):
    name: str
    # Optional with a default: the model store keeps no None, so a card saved there has no key for it.
    rubricator_id: int | None = Field(None, description="The rubricator category this class stands for.")


class DetectorCard(_Card):
    """A detector: (n, size, size, 3) letterboxed uint8 -> `boxes` (n, anchors, 4), `scores` (n, anchors, classes)."""

    kind: Literal["detector"] = "detector"
    preprocess: dict[str, Any]
    classes: list[DetectorClass]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    # 0.2 searched best of 0, 0.1, 0.2, 0.3 and squared boxes (photo-like queries, README).
    crop_margin: float = Field(0.2, description="Each side of a box grows by this share before the item is cropped.")
    provisional: bool = Field(
        False, description="An untrained stand-in (`export --provisional`): the plumbing works, its boxes mean nothing."
    )

    @property
    def preset(self) -> LetterboxPreset:
        return LetterboxPreset.from_dict(self.preprocess)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


Card = EmbedderCard | DetectorCard
CARDS: dict[str, type[EmbedderCard | DetectorCard]] = {"embedder": EmbedderCard, "detector": DetectorCard}


def card_from_metadata(metadata: dict[str, Any]) -> Card:
    """The card of the kind `metadata` names (`kind`; embedders shipped before the card have none)."""
    kind = metadata.get("kind", "embedder")
    if kind not in CARDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(CARDS)}")
    return CARDS[kind].from_metadata(metadata)


def read_card(path: str | Path) -> Card:
    """The card in a shipped `.json` sidecar."""
    return card_from_metadata(json.loads(Path(path).read_text()))
