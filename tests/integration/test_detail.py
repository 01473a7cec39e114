"""`training.embedder.detail` on the shipped embedder: a `detail` output fitted on a few real photos.

The fit here is small (64 train photos, 32 dims) so the test needs neither the served catalogue
nor minutes (about 5 s here, so not marked slow); the graph, its checks and its sidecar are the
ones the CLI makes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from lookalike.modelcard import EmbedderCard
from lookalike.settings import Settings
from tests.conftest import ROOT, SHIPPED_EMBEDDER
from training.embedder import detail

PHOTOS = 64
DIMS = 32
P = 3.0


@pytest.fixture(scope="module")
def shipped() -> onnx.ModelProto:
    if not SHIPPED_EMBEDDER.with_suffix(".onnx").is_file():
        pytest.skip("no shipped embedder in training/artifacts")
    return detail.without_detail(onnx.load(SHIPPED_EMBEDDER.with_suffix(".onnx")))  # it ships with one


@pytest.fixture(scope="module")
def sidecar(shipped) -> dict:
    """The shipped sidecar as it was before its detail head (the graph's `shipped` is stripped alike)."""
    card = json.loads(SHIPPED_EMBEDDER.with_suffix(".json").read_text())
    card.pop("detail", None)
    card["dims"] = {name: size for name, size in card["dims"].items() if name != "detail"}
    card["outputs"] = [name for name in card["outputs"] if name != "detail"]
    return card


@pytest.fixture(scope="module")
def photos(sidecar) -> np.ndarray:
    """PHOTOS real train photos through the embedder's preset (seeded)."""
    from lookalike.engines.quantize import calibration_photos, preprocess_photos

    clothing = Settings(_env_file=None).clothing_dir
    clothing = clothing if clothing.is_absolute() else ROOT / clothing
    if not (clothing / "train").is_dir():
        pytest.skip(f"no real photos at {clothing}/train (LOOKALIKE_CLOTHING_DIR) to fit the whitening on")
    return preprocess_photos(calibration_photos(clothing / "train", PHOTOS, seed=0), sidecar)


@pytest.fixture(scope="module")
def built(shipped, photos):
    source = detail.head_activation(shipped.graph)
    gem_model = detail.with_gem(shipped, source, P)
    with detail.session(gem_model) as engine:
        features = detail.gem_features(engine, photos)
    whitening = detail.fit_whitening(features, DIMS)
    return source, features, whitening, detail.with_detail(gem_model, whitening)


def test_detail_matches_numpy_leaves_the_other_outputs_alone_and_is_unit(shipped, built, photos, record_property):
    _, _, whitening, detailed = built
    numbers = detail.verify(shipped, detailed, photos[:32], whitening, P)  # raises on a failed check
    record_property("checks", numbers)
    assert numbers["parity_max_abs_diff"] <= detail.PARITY_TOLERANCE
    assert numbers["norm_max_abs_diff"] <= detail.NORM_TOLERANCE
    assert numbers["changed"] == []
    output = {o.name: o for o in detailed.graph.output}[detail.OUTPUT]
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", DIMS]
    added = {i.name for i in detailed.graph.initializer} - {i.name for i in shipped.graph.initializer}
    assert added and all(name.startswith(detail.PREFIX) for name in added)


def test_the_whitened_fit_rows_have_unit_variance(built):
    _, features, whitening, _ = built
    assert whitening.rows == PHOTOS and 0 < whitening.explained_variance < 1
    whitened = (features.astype(np.float64) - whitening.mean) @ whitening.projection
    np.testing.assert_allclose(whitened.var(axis=0), 1.0, atol=1e-3)


def test_the_sidecar_is_a_valid_card_with_detail(sidecar, built):
    source, _, whitening, _ = built
    card_metadata = detail.detail_sidecar(sidecar, whitening, P, source, f"{PHOTOS} test photos")
    card = EmbedderCard.from_metadata(card_metadata)
    assert card.dims == {"shape": 128, "color": 128, "detail": DIMS}
    assert card.vector_names == ("shape", "color", "detail")
    assert card_metadata["outputs"] == [*sidecar["outputs"], "detail"]
    assert card_metadata["detail"]["p"] == 3 and card_metadata["detail"]["source"] == source
    assert sidecar["dims"] == {"shape": 128, "color": 128}, "the input's sidecar is left as it was"


def test_a_graph_without_the_pooled_shape_head_is_refused(shipped):
    renamed = onnx.ModelProto()
    renamed.CopyFrom(shipped)
    for node in renamed.graph.node:
        if node.op_type == "Gemm" and node.input[1] == detail.SHAPE_HEAD_WEIGHT:
            node.input[1] = "something.else"
    with pytest.raises(ValueError, match="expected one Gemm"):
        detail.head_activation(renamed.graph)
