"""The store's backend-independent parts: filter checks, weight checks and the fused ranking."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.store import Filters, _check_weights, _merge_filters, _Point, _rank, _selective, point_id

ANY = {"shop": "alpha"}  # a payload; _rank does not read it


def point(name: str, shape: list[float], color: list[float]) -> _Point:
    return _Point(point_id("shop", name), payload=ANY, vectors={"shape": shape, "color": color})


def test_rank_is_the_weighted_mean_of_the_normalised_cosines() -> None:
    points = [point("a", [2.0, 0.0], [0.0, 5.0]), point("b", [1.0, 1.0], [3.0, 0.0])]
    query = {"shape": np.array([10.0, 0.0]), "color": np.array([0.0, 0.5])}
    ranked = _rank(points, query, {"shape": 0.2, "color": 0.6}, top_k=10)
    # a: shape 1, colour 1 -> 1; b: shape 1/sqrt(2), colour 0 -> 0.25 / sqrt(2)
    assert [(i, score) for i, score, *_ in ranked] == [
        (points[0].id, pytest.approx(1.0)),
        (points[1].id, pytest.approx(0.25 / np.sqrt(2))),
    ]
    assert ranked[1][2] == {"shape": pytest.approx(1 / np.sqrt(2)), "color": pytest.approx(0.0)}
    assert len(_rank(points, query, {"shape": 1.0, "color": 0.0}, top_k=1)) == 1
    assert _rank([], query, {"shape": 1.0, "color": 0.0}, top_k=3) == []


def test_rank_breaks_ties_by_point_id() -> None:
    twins = [point(name, [1.0, 0.0], [0.0, 1.0]) for name in "qwertyuiop"]
    query = {"shape": np.array([1.0, 1.0]), "color": np.array([1.0, 1.0])}
    ranked = _rank(twins, query, {"shape": 0.5, "color": 0.5}, top_k=4)
    assert [i for i, *_ in ranked] == sorted(p.id for p in twins)[:4]
    assert _rank(twins[::-1], query, {"shape": 0.5, "color": 0.5}, top_k=4) == ranked


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "above 0"),
        ({"shape": 0, "color": 0}, "above 0"),
        ({"shape": 1.01}, "between 0 and 1"),
        ({"color": -0.5}, "between 0 and 1"),
        ({"shape": float("nan")}, "between 0 and 1"),
        ({"shape": True}, "between 0 and 1"),
        ({"shape": "1"}, "between 0 and 1"),
        ({"texture": 0.5}, "may only name"),
    ],
)
def test_bad_weights_are_refused(weights: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _check_weights(weights, ("shape", "color"))


def test_missing_weights_are_zero() -> None:
    assert _check_weights({"color": np.float32(0.25)}, ("shape", "color")) == {"shape": 0.0, "color": 0.25}
    assert _check_weights({"detail": 1}, ("shape", "color", "detail")) == {"shape": 0.0, "color": 0.0, "detail": 1.0}


def test_weights_may_name_only_the_stores_vectors() -> None:
    with pytest.raises(ValueError, match="may only name this store's vectors"):
        _check_weights({"detail": 1.0}, ("shape", "color"))


def test_rank_covers_every_vector_of_the_query() -> None:
    points = [
        _Point(point_id("shop", n), payload=ANY, vectors={"shape": s, "color": c, "detail": d})
        for n, s, c, d in (("a", [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]), ("b", [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]))
    ]
    query = {"shape": np.array([1.0, 0.0]), "color": np.array([1.0, 0.0]), "detail": np.array([1.0, 0.0])}
    ranked = _rank(points, query, {"shape": 0.25, "color": 0.25, "detail": 0.5}, top_k=2)
    # a: 0.25 * 1 + 0.25 * 1 + 0.5 * 0 = 0.5; b: 0 + 0.25 + 0.5 = 0.75
    assert [(i, score) for i, score, _ in ranked] == [(points[1].id, 0.75), (points[0].id, 0.5)]
    assert ranked[0][2] == {"shape": 0.0, "color": 1.0, "detail": 1.0}


def test_bad_filters_are_refused() -> None:
    with pytest.raises(ValueError, match="above max_price"):
        Filters(min_price=10, max_price=5)
    with pytest.raises(ValueError, match="finite"):
        Filters(max_price=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        Filters(min_price="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="point ids"):
        Filters(exclude_ids=("sku-1",))
    with pytest.raises(TypeError, match="one string"):
        Filters(exclude_ids=point_id("alpha", "sku-1"))  # type: ignore[arg-type]
    assert Filters(exclude_ids=[point_id("a", "b")]).exclude_ids == (point_id("a", "b"),)  # type: ignore[arg-type]
    assert Filters(min_price=5, max_price=5).min_price == 5


def test_keyword_filters_become_filters() -> None:
    assert _merge_filters(None, category_id=3, shop=None) == Filters(category_id=3)
    assert _merge_filters(Filters(currency="EUR"), shop=None) == Filters(currency="EUR")
    with pytest.raises(ValueError, match="not both"):
        _merge_filters(Filters(currency="EUR"), shop="alpha")


def test_excluding_ids_alone_keeps_the_quantised_path() -> None:
    assert not _selective(Filters())
    assert not _selective(Filters(exclude_ids=(point_id("a", "b"),)))
    assert _selective(Filters(max_price=10))
    assert _selective(Filters(currency="EUR", exclude_ids=(point_id("a", "b"),)))
