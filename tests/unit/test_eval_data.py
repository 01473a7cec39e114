"""How the evaluation finds the models it compares."""

from __future__ import annotations

import pytest

from training.embedder.eval_data import load_model_reference


def test_a_graph_file_without_its_metadata_sidecar_is_refused(tmp_path):
    graph = tmp_path / "embedder-old.onnx"
    graph.write_bytes(b"not read")
    with pytest.raises(LookupError, match="embedder-old.json"):
        load_model_reference(str(graph))


def test_a_missing_graph_file_is_refused(tmp_path):
    with pytest.raises(LookupError, match="no such graph"):
        load_model_reference(str(tmp_path / "gone.onnx"))
