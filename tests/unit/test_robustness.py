"""The robustness protocol's pieces: picking the tapped item, caching detections, worst family, class removal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.detection import Detection, frame_items
from training.datasets import FolderDataset, without_classes
from training.embedder.robustness import FamilyResult, facet_metrics, recommend, served_scores, worst
from training.embedder.served_data import pack, tapped_item, unpack
from training.synth.families import FAMILIES


def test_the_tapped_item_is_the_detection_over_the_garment():
    detections = [Detection((0, 0, 50, 50), 0, 0.9), Detection((100, 100, 200, 220), 1, 0.6)]
    framed = frame_items(detections, 300, 300, 0.2)
    item, overlap = tapped_item(framed, (105, 95, 195, 225))
    assert item.detection == detections[1]
    assert overlap > 0.8


def test_with_nothing_detected_the_whole_photo_is_searched():
    framed = frame_items([], 320, 240, 0.2)
    item, overlap = tapped_item(framed, (10, 10, 100, 100))
    assert item.box == (0, 0, 320, 240) and item.detection is None and overlap == 0.0


def test_detections_survive_the_cache_format():
    detections = [Detection((1.5, 2.25, 30.0, 40.75), 3, 0.875), Detection((5.0, 6.0, 7.0, 8.0), 0, 0.5)]
    assert unpack(pack(detections)) == detections
    assert unpack(pack([])) == []


def test_the_worst_family_is_the_lowest_recall_at_1():
    results = {"photo": FamilyResult(0.9, 1.0), "screenshot": FamilyResult(0.4, 0.8), "hard": FamilyResult(0.4, 0.9)}
    assert worst(results)[0] == "screenshot"  # ties on R@1 go to the lower R@10


def test_served_scores_rescore_only_the_shortlist():
    rng = np.random.default_rng(0)
    catalogue = {"shape": rng.normal(size=(200, 16)).astype(np.float32), "color": rng.normal(size=(200, 8))}
    queries = {name: vectors[:5] + 0.05 * rng.normal(size=vectors[:5].shape) for name, vectors in catalogue.items()}
    served = served_scores(queries, catalogue, "served", {"shape": 1.0, "color": 0.0}, shortlist=20, oversampling=2)
    exact = served_scores(queries, catalogue, "float", {"shape": 1.0, "color": 0.0})
    assert (served.argmax(axis=1) == np.arange(5)).all()
    assert ((served > -2).sum(axis=1) == 20).all()  # the rest rank below every shortlisted item
    shortlisted = served > -2
    np.testing.assert_allclose(served[shortlisted], exact[shortlisted], atol=1e-6)
    np.testing.assert_allclose(exact, served_scores(queries, catalogue, "cosine"), atol=1e-6)  # the shape cosine
    only_shape = {"shape": 1.0, "color": 0.0}
    assert ((served_scores(queries, catalogue, "served", only_shape, shortlist=1, top_k=7) > -2).sum(axis=1) == 7).all()


def test_served_scores_fuse_the_weighted_vectors():
    rng = np.random.default_rng(1)
    catalogue = {"shape": rng.normal(size=(50, 16)), "color": rng.normal(size=(50, 8))}
    queries = {name: vectors[:3] for name, vectors in catalogue.items()}
    weights = {"shape": 0.25, "color": 0.75}
    fused = served_scores(queries, catalogue, "float", weights)
    cosines = {
        name: served_scores({"shape": queries[name]}, {"shape": catalogue[name]}, "cosine") for name in catalogue
    }
    np.testing.assert_allclose(fused, 0.25 * cosines["shape"] + 0.75 * cosines["color"], atol=1e-6)
    served = served_scores(queries, catalogue, "served", weights, top_k=1, shortlist=5, oversampling=2)
    assert (((served > -2).sum(axis=1) >= 5) & ((served > -2).sum(axis=1) <= 10)).all()  # the union of two top 5s
    with pytest.raises(ValueError, match="metric"):
        served_scores(queries, catalogue, "rescored")


def test_the_recommended_weights_have_the_best_worst_family_then_the_best_mean():
    shape, mixed, color = {"shape": 1.0, "color": 0.0}, {"shape": 0.5, "color": 0.5}, {"shape": 0.0, "color": 1.0}
    facets = [
        (shape, {"photo": FamilyResult(0.9, 1.0), "rephoto": FamilyResult(0.2, 0.5)}),
        (mixed, {"photo": FamilyResult(0.95, 1.0), "rephoto": FamilyResult(0.2, 0.5)}),
        (color, {"photo": FamilyResult(0.99, 1.0), "rephoto": FamilyResult(0.1, 0.5)}),
    ]
    assert recommend(facets) == mixed  # ties with `shape` on the worst family, better on the mean
    assert facet_metrics(facets)["recommended_color_weight"] == 0.5
    assert facet_metrics(facets)["facet_shape1_color0_worst_family"] == "rephoto"


def test_families_say_which_make_training_views():
    assert {"photo", "partial", "hard", "screenshot", "rephoto"} <= set(FAMILIES)
    never = [name for name, family in FAMILIES.items() if not family.trained_on]
    assert len(never) >= 2 and {"screenshot", "rephoto"} <= set(never)


@pytest.fixture
def three_classes(tmp_path) -> Path:
    for name in ("dress", "hat", "shoes"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    return tmp_path


def test_left_out_classes_vanish_and_the_rest_are_relabelled(three_classes):
    dataset = without_classes(FolderDataset(three_classes), ["hat"])
    assert dataset.classes == ["dress", "shoes"]
    assert sorted({sample.label for sample in dataset.samples}) == [0, 1]
    assert all("hat" not in sample.path.parts for sample in dataset.samples)
    with pytest.raises(ValueError, match="cannot leave out"):
        without_classes(FolderDataset(three_classes), ["bag"])
