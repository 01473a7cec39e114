"""The one writer to the BentoML model store, and the shipped models' import.

    python -m lookalike.modelstore import training/artifacts/embedder   # .onnx + .json -> model store
    python -m lookalike.modelstore import training/artifacts/detector   # the kind comes from the card

An exported model is a self-contained ONNX file plus its card (`lookalike.modelcard`: kind,
preprocessing, outputs, classes, metrics, data fingerprint, versions). Training writes both next
to each other so the repository can ship the pair; importing it needs neither torch nor training data.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lookalike.engines import DETECTOR_FILE, EMBEDDER_FILE
from lookalike.modelcard import Card, card_from_metadata

log = logging.getLogger(__name__)

# Per kind of model: the file inside its model store entry and its default name there.
FILES = {"embedder": EMBEDDER_FILE, "detector": DETECTOR_FILE}
NAMES = {"embedder": "lookalike-embedder", "detector": "lookalike-detector"}


def save_model(
    name: str,
    onnx_path: Path,
    card_metadata: dict[str, Any] | Card,
    file_name: str,
    labels: dict[str, str] | None = None,
):
    """Copy `onnx_path` into a new version of model `name` as `file_name`, with its card; returns the stored model.

    The card is validated first, so a model the services cannot read never reaches the store.
    """
    import bentoml

    card = card_from_metadata(card_metadata) if isinstance(card_metadata, dict) else card_metadata
    labels = {"kind": card.kind, **(labels or {})}
    with bentoml.models.create(name, labels=labels, metadata=_plain(card.to_metadata())) as model:
        shutil.copyfile(onnx_path, Path(model.path) / file_name)
    log.info("saved %s (%s)", model.tag, card.kind)
    return model


def save_embedder(name: str, onnx_path: Path, metadata: dict, labels: dict[str, str] | None = None):
    """`save_model` for an embedder (its file is `EMBEDDER_FILE`)."""
    return save_model(name, onnx_path, {"kind": "embedder", **metadata}, EMBEDDER_FILE, labels)


def write_artifact(stem: Path, onnx_path: Path, metadata: dict[str, Any] | Card) -> None:
    """`stem`.onnx and `stem`.json: what the repository ships."""
    if not isinstance(metadata, dict):
        metadata = metadata.to_metadata()
    stem.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, stem.with_suffix(".onnx"))
    stem.with_suffix(".json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def import_artifact(stem: Path, name: str | None = None):
    """Put `stem`.onnx with its card `stem`.json into the model store, as `name` (default: by the card's kind)."""
    metadata = json.loads(stem.with_suffix(".json").read_text())
    card = card_from_metadata(metadata)
    heads = (metadata.get("config") or {}).get("heads")
    labels = {"heads": heads} if heads else {}
    if metadata.get("provisional"):
        labels["provisional"] = "true"
    return save_model(name or NAMES[card.kind], stem.with_suffix(".onnx"), card, FILES[card.kind], labels)


def _plain(value: Any) -> Any:
    """The model store takes plain types only: lists, not tuples, and no None. A key whose value is
    None is left out (the cards default such fields to None); a None inside a list, whose position
    matters, is stored as the string "null"."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return ["null" if item is None else _plain(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser(
        "import", help="put a shipped model (STEM.onnx + its card STEM.json) into the model store"
    )
    importer.add_argument("stem", type=Path)
    importer.add_argument("--name", help=f"model store name (default by the card's kind: {NAMES})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import_artifact(args.stem, args.name)


if __name__ == "__main__":
    main()
