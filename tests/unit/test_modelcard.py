"""lookalike.modelcard: the typed cards of the embedder and the detector, and what the model store keeps of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lookalike.detection import LetterboxPreset, Thresholds
from lookalike.modelcard import DetectorCard, EmbedderCard, card_from_metadata, read_card
from lookalike.modelstore import _plain
from lookalike.preprocess import EvalPreset

SHIPPED_EMBEDDER = Path(__file__).resolve().parents[2] / "training" / "artifacts" / "embedder.json"

DETECTOR = {
    "kind": "detector",
    "outputs": ["boxes", "scores"],
    "preprocess": {"size": 320, "interpolation": "bilinear"},
    "classes": [{"name": "dress", "rubricator_id": 2}, {"name": "hat", "rubricator_id": None}],
    "thresholds": {"score": 0.4, "iou": 0.6, "max_detections": 5, "min_side": 8.0},
    "metrics": {"map50": 0.7},
    "config": {"backbone": "tf_efficientnet_lite0", "rubricator_ids": [2, None]},
}


def test_embedder_card_reads_embedder_metadata():
    metadata = {
        "outputs": ["shape", "color"],
        "preprocess": EvalPreset(crop_size=160, resize_size=182).to_dict(),
        "dims": {"shape": 128, "color": 64},
        "config": {"classes": ["dress", "hat"], "heads": "trained"},
    }
    card = card_from_metadata(metadata)  # embedders shipped before the card have no `kind`
    assert isinstance(card, EmbedderCard) and card.kind == "embedder"
    assert (card.shape_dim, card.color_dim) == (128, 64)
    assert card.preset == EvalPreset(crop_size=160, resize_size=182)
    assert card.classes == ["dress", "hat"]  # from the training config
    assert card.config["heads"] == "trained"  # the rest is carried along


@pytest.mark.skipif(not SHIPPED_EMBEDDER.is_file(), reason="no shipped embedder in training/artifacts")
def test_the_shipped_embedder_has_a_valid_card():
    card = read_card(SHIPPED_EMBEDDER)
    assert isinstance(card, EmbedderCard) and card.dims == {"shape": 128, "color": 128, "detail": 256}
    assert card.vector_names == ("shape", "color", "detail")  # the model service's column order
    assert card.preset.crop_size == 224
    columns = card.split_columns(np.arange(2 * 512, dtype=np.float32).reshape(2, 512))
    assert [block.shape for block in columns.values()] == [(2, 128), (2, 128), (2, 256)]
    assert columns["detail"][0, 0] == 256


def test_detector_card_types_what_consumers_read():
    card = card_from_metadata(DETECTOR)
    assert isinstance(card, DetectorCard)
    assert card.preset == LetterboxPreset(size=320)
    assert card.thresholds == Thresholds(score=0.4, iou=0.6, max_detections=5)
    assert [(c.name, c.rubricator_id) for c in card.classes] == [("dress", 2), ("hat", None)]
    assert card.class_names == ["dress", "hat"]
    assert card.crop_margin == 0.2 and not card.provisional  # the default


def test_detector_card_survives_the_model_store():
    stored = _plain(card_from_metadata(DETECTOR).to_metadata())
    # The model store takes no None: not even nested, in a class or a list of the training config.
    assert "None" not in repr(stored) and "null" not in json.dumps(stored).replace('"null"', "")
    assert stored["classes"][1] == {"name": "hat"}
    card = card_from_metadata(stored)
    assert card.classes[1].rubricator_id is None and card.thresholds.max_detections == 5
    assert card.to_metadata() == card_from_metadata(card.to_metadata()).to_metadata()


def test_a_card_with_a_missing_field_fails_with_its_name(tmp_path):
    with pytest.raises(ValidationError, match="classes"):
        card_from_metadata({key: value for key, value in DETECTOR.items() if key != "classes"})
    with pytest.raises(ValidationError, match="dims"):
        EmbedderCard.from_metadata({"outputs": ["shape", "color"], "preprocess": {}})
    with pytest.raises(ValueError, match="unknown model kind"):
        card_from_metadata({**DETECTOR, "kind": "segmenter"})
    path = tmp_path / "detector.json"
    path.write_text(json.dumps(DETECTOR))
    assert isinstance(read_card(path), DetectorCard)


def test_plain_makes_metadata_the_model_store_accepts():
    assert _plain({"a": (1, 2), "b": None, "c": {"d": None, "e": [None, 1]}}) == {"a": [1, 2], "c": {"e": ["null", 1]}}
