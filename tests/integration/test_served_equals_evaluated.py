"""The robustness report's "as served" numbers are what `/search` returns.

The evaluation (`training.embedder.served_data`, `training.embedder.robustness`) frames the
catalogue and the queries and ranks in numpy; the service frames them in its own process and
ranks in Qdrant Edge. On a small catalogue of real photos, behind a real `bentoml serve`, both
must pick the same item of each query, return the same products in the same order and the
same scores: the fused score of the default facet weights, and the cosine of each vector. The
service runs with its defaults but a `fusion_shortlist` of top_k, so that each vector's 1-bit
shortlist (oversampling x top_k) is shorter than the catalogue and the shortlist stage is
compared too.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lookalike.detection import box_iou
from lookalike.engines import OnnxEmbedder
from lookalike.modelcard import EmbedderCard
from lookalike.schemas import default_weights_for
from lookalike.settings import Settings
from tests.conftest import SHIPPED_DETECTOR, SHIPPED_EMBEDDER
from tests.integration.conftest import serve
from training.embedder.retrieval import cosine_similarity
from training.embedder.robustness import served_scores
from training.embedder.served_data import Framer, QueryRenderer, catalogue_pixels, frame_queries
from training.synth.colors import load_mask
from training.synth.families import FAMILIES
from training.synth.query import Other

pytestmark = pytest.mark.slow

TOP_K = 3
FAMILIES_CHECKED = ("photo", "screenshot")
QUERIES_PER_FAMILY = 4
SERVED = {"fusion_shortlist": TOP_K}  # the service's settings that differ from the defaults


@pytest.fixture(scope="module")
def shortlisted_server(model_env, photo_catalogue, tmp_path_factory):
    """The photo catalogue served with SERVED; `model_env` passes no other LOOKALIKE_ setting."""
    settings = {f"LOOKALIKE_{name.upper()}": str(value) for name, value in SERVED.items()}
    with serve(model_env, photo_catalogue, tmp_path_factory.mktemp("shortlisted-service"), settings) as url:
        yield url


@pytest.fixture(scope="module")
def evaluated(trained_detector, photo_catalogue, tmp_path_factory):
    """The evaluation's side: the framed catalogue's vectors, in offer-id order, and the shipped models."""
    if not SHIPPED_EMBEDDER.with_suffix(".onnx").is_file():
        pytest.skip("no shipped embedder in training/artifacts: the served model is the provisional one")
    embedder = OnnxEmbedder(SHIPPED_EMBEDDER.with_suffix(".onnx"))
    card = EmbedderCard.model_validate_json(SHIPPED_EMBEDDER.with_suffix(".json").read_text(encoding="utf-8"))
    framer = Framer.from_files(SHIPPED_DETECTOR.with_suffix(".onnx"), None)
    paths = sorted(photo_catalogue.rglob("*.jpg"))
    images = [Image.open(path).convert("RGB") for path in paths]
    outputs = embedder(catalogue_pixels(images, card.preset, framer))
    vectors = {name: outputs[name] for name in card.vector_names}
    offer_ids = [path.relative_to(photo_catalogue).with_suffix("").as_posix() for path in paths]
    masks = tmp_path_factory.mktemp("masks")
    photos = [Other(image, load_mask(masks, photo_catalogue, path, image=image)) for image, path in zip(images, paths)]
    return embedder, card, framer, photos, vectors, offer_ids


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")  # lossless: the service decodes the very pixels the evaluation framed
    return buffer.getvalue()


@pytest.mark.parametrize("family", FAMILIES_CHECKED)
def test_search_returns_what_the_evaluation_ranks(shortlisted_server, evaluated, family):
    embedder, card, framer, photos, catalogue, offer_ids = evaluated
    render = QueryRenderer(FAMILIES[family].build(0), photos, np.arange(len(photos)), 0)
    positions = np.linspace(0, len(photos) - 1, QUERIES_PER_FAMILY).astype(int)
    made = [render(int(position)) for position in positions]
    framings, _ = frame_queries(made, card.preset, framer)
    outputs = embedder(framings["served"])
    queries = {name: outputs[name] for name in card.vector_names}
    served = Settings.model_construct(**SERVED)  # the defaults and SERVED, as the server reads them (no env)
    scores = served_scores(
        queries,
        catalogue,
        "served",
        default_weights_for(card.vector_names, served.default_weights),
        top_k=TOP_K,
        shortlist=served.fusion_shortlist,
        oversampling=int(served.oversampling),
    )
    cosines = {name: cosine_similarity(queries[name], catalogue[name]) for name in card.vector_names}
    for position, (query, row) in enumerate(zip(made, scores)):
        response = httpx.post(
            f"{shortlisted_server}/search",
            files={"image": ("query.png", png(query.image), "image/png")},
            data={"top_k": str(TOP_K)},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        item = tapped(response.json()["items"], query.box)
        expected = np.argsort(-row, kind="stable")[:TOP_K]
        assert [p["offer_id"] for p in item["products"]] == [offer_ids[i] for i in expected]
        np.testing.assert_allclose([p["score"] for p in item["products"]], row[expected], atol=2e-4)
        for name in card.vector_names:
            found = [p[f"{name}_score"] for p in item["products"]]
            np.testing.assert_allclose(found, cosines[name][position, expected], atol=2e-4)


def tapped(items: list[dict], truth) -> dict:
    """The response's item the evaluation searches: the best overlap with the true box (the only item if whole)."""
    detected = [item for item in items if item["source"] == "detected"]
    if not detected:
        (whole,) = items
        return whole
    overlaps = box_iou(np.array([item["box"] for item in detected], np.float32), np.array(truth))[:, 0]
    return detected[int(overlaps.argmax())]


def test_the_catalogue_is_framed_like_the_indexer(evaluated, photo_catalogue):
    """Guard for the test above: it compares offers by id, so every photo of the folder must be an offer."""
    *_, offer_ids = evaluated
    assert len(offer_ids) == len(set(offer_ids)) == len(list(Path(photo_catalogue).rglob("*.jpg")))
