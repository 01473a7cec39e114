"""The one writer to the BentoML model store, and the shipped embedder's import.

    python -m lookalike.modelstore import training/artifacts/embedder   # .onnx + .json -> model store

An exported embedder is a self-contained ONNX file plus its metadata (preprocessing, dims,
classes, metrics, data fingerprint, versions). Training writes both next to each other so the
repository can ship the pair; importing it needs neither torch nor training data.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from lookalike.engines import EMBEDDER_FILE

log = logging.getLogger(__name__)


def save_embedder(name: str, onnx_path: Path, metadata: dict, labels: dict[str, str] | None = None):
    """Copy `onnx_path` into a new version of model `name`; returns the stored model."""
    import bentoml

    # The model store takes plain types only (lists, not tuples; no None).
    metadata = json.loads(json.dumps(metadata))
    with bentoml.models.create(name, labels=labels or {}, metadata=metadata) as model:
        shutil.copyfile(onnx_path, Path(model.path) / EMBEDDER_FILE)
    log.info("saved %s", model.tag)
    return model


def write_artifact(stem: Path, onnx_path: Path, metadata: dict) -> None:
    """`stem`.onnx and `stem`.json: what the repository ships."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, stem.with_suffix(".onnx"))
    stem.with_suffix(".json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def import_artifact(stem: Path, name: str):
    metadata = json.loads(stem.with_suffix(".json").read_text())
    return save_embedder(name, stem.with_suffix(".onnx"), metadata, labels={"heads": metadata["config"]["heads"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import", help="put a shipped embedder (STEM.onnx + STEM.json) into the model store")
    importer.add_argument("stem", type=Path)
    importer.add_argument("--name", default="lookalike-embedder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import_artifact(args.stem, args.name)


if __name__ == "__main__":
    main()
