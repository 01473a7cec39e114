import numpy as np
import pytest

from lookalike import codec
from training.embedder.retrieval import (
    FACET_WEIGHTS,
    Features,
    facet_key,
    facet_label,
    fused_scores,
    hamming_scores,
    per_group_mean,
    rank_relevant,
    recall_curve,
    same_label,
    similarity,
)


def test_recall_at_k_on_a_hand_made_matrix():
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3], [0.7, 0.6, 0.5]])
    ranks = rank_relevant(scores, np.eye(3, dtype=bool))  # query i's source is item i: ranks 1, 1, 3
    assert np.allclose(ranks.recall(1), [1, 1, 0])
    assert np.allclose(ranks.recall(2), [1, 1, 0])
    assert np.allclose(ranks.recall(3), [1, 1, 1])
    assert np.allclose(recall_curve(ranks, np.arange(1, 4)), [2 / 3, 2 / 3, 1])


def test_precision_at_k_counts_relevant_items_in_the_top_k():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    relevant = np.array([[True, False, True, False, True]])
    ranks = rank_relevant(scores, relevant)
    assert np.allclose([ranks.precision(k)[0] for k in (1, 2, 3, 5)], [1, 1 / 2, 2 / 3, 3 / 5])
    assert np.allclose(ranks.recall(3), 2 / 3)


def test_ties_count_at_their_expected_rank():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])  # the relevant item ties with two others for first place
    ranks = rank_relevant(scores, np.array([[True, False, False, False]]))
    assert np.allclose([ranks.recall(k)[0] for k in (1, 2, 3, 4)], [1 / 3, 2 / 3, 1, 1])
    # One better item, then three tied for ranks 2-4 of which one is relevant: P@2 = (1/3) / 2.
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    ranks = rank_relevant(scores, np.array([[False, True, False, False, True]]))
    assert np.isclose(ranks.precision(2)[0], 1 / 6)


def test_tie_aware_hits_equal_the_mean_over_random_tie_breaks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (6, 30)).astype(float)  # few values: many ties
    relevant = rng.random((6, 30)) < 0.2
    ranks = rank_relevant(scores, relevant)
    trials = 4000
    found = np.zeros(6)
    for _ in range(trials):
        order = np.lexsort((rng.random(scores.shape), -scores), axis=1)  # by score, ties in random order
        found += np.take_along_axis(relevant, order[:, :5], axis=1).sum(axis=1)
    assert np.allclose(ranks.hits(5), found / trials, atol=0.06)


def test_excluded_items_are_neither_ranked_nor_counted():
    scores = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.95]])
    same_photo = np.array([[True, True, False], [True, True, False]])  # self-matches and a sibling
    relevant = np.array([[True, False, True], [True, False, True]])
    ranks = rank_relevant(scores, relevant, exclude=same_photo)
    assert np.array_equal(ranks.num_relevant, [1, 1])  # the excluded relevant item no longer counts
    assert np.allclose(ranks.recall(1), [1, 1])  # item 2 is first once 0 and 1 are out


def test_a_query_with_nothing_relevant_is_left_out_of_recall():
    ranks = rank_relevant(np.array([[0.5, 0.4], [0.3, 0.2]]), np.array([[True, False], [False, False]]))
    assert np.isnan(ranks.recall(1)[1]) and ranks.precision(1)[1] == 0
    assert recall_curve(ranks, np.array([1]))[0] == 1.0


def test_best_precision_is_short_of_one_for_small_classes():
    ranks = rank_relevant(np.zeros((2, 20)), np.arange(20)[None, :] < np.array([[3], [15]]))
    assert np.allclose(ranks.best_precision(10), [0.3, 1.0])


def test_hamming_scores_are_minus_the_hamming_distance():
    rng = np.random.default_rng(1)
    codes = codec.binarize(rng.normal(size=(7, 128)))
    assert np.array_equal(hamming_scores(codes, codes), -codec.hamming_distance(codes, codes))


def test_hamming_ranking_matches_the_cosine_ranking_of_the_sign_vectors():
    rng = np.random.default_rng(2)
    vectors = codec.l2_normalize(rng.normal(size=(40, 128)))
    codes = Features(codec.binarize(vectors), "hamming")
    signs = Features(codec.unpack(codes.vectors), "cosine")
    hamming, cosine = similarity(codes[:5], codes), similarity(signs[:5], signs)
    assert np.allclose(cosine, 1 + 2 * hamming / 128)  # cos = 1 - 2 d / bits: the same order


def test_hamming_and_float_rankings_agree_on_near_duplicates():
    rng = np.random.default_rng(3)
    catalogue = codec.l2_normalize(rng.normal(size=(200, 128)))
    queries = codec.l2_normalize(catalogue[:20] + 0.02 * rng.normal(size=(20, 128)))  # noise ~1/4 of the norm
    relevant = np.eye(20, 200, dtype=bool)
    float_ranks = rank_relevant(similarity(Features(queries, "cosine"), Features(catalogue, "cosine")), relevant)
    codes = Features(codec.binarize(queries), "hamming"), Features(codec.binarize(catalogue), "hamming")
    binary_ranks = rank_relevant(similarity(*codes), relevant)
    assert float_ranks.recall(1).mean() == 1.0
    assert binary_ranks.recall(1).mean() == 1.0


def test_similarity_refuses_mixed_metrics_and_unknown_ones():
    with pytest.raises(ValueError, match="cannot compare"):
        similarity(Features(np.ones((1, 8)), "cosine"), Features(np.ones((1, 1), np.uint8), "hamming"))
    with pytest.raises(ValueError, match="metric"):
        Features(np.ones((1, 8)), "euclidean")


def test_features_describe_and_concatenate():
    codes = Features(np.zeros((2, 16), np.uint8), "hamming")
    assert codes.describe() == "Hamming, 128 bits"
    joined = Features.concatenate([codes, codes[:1]])
    assert len(joined) == 3 and joined.metric == "hamming"
    assert Features(np.zeros((1, 1280)), "cosine").describe() == "cosine, 1280-d"


def test_same_label_and_per_group_mean():
    assert np.array_equal(same_label([0, 1], [1, 0, 1]), [[False, True, False], [True, False, True]])
    means = per_group_mean(np.array([1.0, 0.0, 0.5]), np.array([0, 0, 2]), 3)
    assert means[0] == 0.5 and np.isnan(means[1]) and means[2] == 0.5


def test_asymmetric_scores_compare_float_queries_with_catalogue_signs():
    rng = np.random.default_rng(0)
    queries, catalogue = rng.normal(size=(3, 16)), rng.normal(size=(5, 16))
    expected = codec.l2_normalize(queries) @ np.sign(catalogue).T
    scores = similarity(Features(queries, "asymmetric"), Features(catalogue, "asymmetric"))
    assert np.allclose(scores, expected, atol=1e-5)


def test_rescored_search_reranks_the_shortlist_by_cosine_and_puts_it_first():
    rng = np.random.default_rng(1)
    queries, catalogue = rng.normal(size=(4, 32)), rng.normal(size=(50, 32))
    exact = similarity(Features(queries, "cosine"), Features(catalogue, "cosine"))
    coarse = similarity(Features(queries, "asymmetric"), Features(catalogue, "asymmetric"))
    scores = similarity(Features(queries, "rescored", 5), Features(catalogue, "rescored", 5))
    for row in range(len(queries)):
        shortlist = set(np.argsort(-coarse[row])[:5])
        top = np.argsort(-scores[row])
        assert set(top[:5]) == shortlist  # the shortlist ranks first ...
        assert list(top[:5]) == sorted(shortlist, key=lambda i: -exact[row, i])  # ... in cosine order
    wide = similarity(Features(queries, "rescored", 50), Features(catalogue, "rescored", 50))
    assert np.allclose(wide, exact)  # a shortlist of everything is exact search


def test_index_features_describe_themselves_and_keep_their_shortlist():
    served = Features(np.zeros((2, 128)), "rescored", 80)
    assert served.describe() == "128-bit codes, top 80 rescored"
    assert served[:1].shortlist == 80 and Features.concatenate([served, served]).shortlist == 80
    assert Features(np.zeros((1, 128)), "asymmetric").describe() == "float query · 128-bit codes"
    with pytest.raises(ValueError, match="cannot compare"):
        similarity(served, Features(np.zeros((1, 128)), "rescored", 10))


def brute_force_fused(queries, catalogue, weights, shortlist, oversampling):
    """The store's fused search, one query and one item at a time: for each weighted vector, the
    best oversampling x shortlist by the unit query's dot with the item's signs, the best
    `shortlist` of those by cosine; their union by the weighted mean of cosines, above the rest."""
    used = {name: w for name, w in weights.items() if w > 0}
    n = len(next(iter(catalogue.values())))
    scores = np.empty((len(next(iter(queries.values()))), n))
    for row in range(len(scores)):
        union = set()
        cosines = {}
        for name in used:
            q = queries[name][row] / np.linalg.norm(queries[name][row])
            items = [c / np.linalg.norm(c) for c in catalogue[name]]
            coarse = sorted(range(n), key=lambda i: -float(q @ np.where(catalogue[name][i] >= 0, 1.0, -1.0)))
            cosines[name] = [float(q @ item) for item in items]
            rescored = sorted(coarse[: oversampling * shortlist], key=lambda i: -cosines[name][i])
            union |= set(rescored[:shortlist])
        for item in range(n):
            mean = sum(w * cosines[name][item] for name, w in used.items()) / sum(used.values())
            scores[row, item] = mean if item in union else mean - 4
    return scores


@pytest.mark.parametrize("weights", [*FACET_WEIGHTS, {"shape": 0.3, "color": 0.9}])
def test_fused_scores_equal_a_brute_force_store(weights):
    rng = np.random.default_rng(4)
    catalogue = {"shape": rng.normal(size=(60, 16)), "color": rng.normal(size=(60, 8))}
    queries = {name: vectors[:5] + 0.5 * rng.normal(size=(5, vectors.shape[1])) for name, vectors in catalogue.items()}
    queries = {name: v.astype(np.float32) for name, v in queries.items()}
    catalogue = {name: v.astype(np.float32) for name, v in catalogue.items()}
    scores = fused_scores(queries, catalogue, weights, shortlist=4, oversampling=3)
    expected = brute_force_fused(queries, catalogue, weights, 4, 3)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    union = (scores > -2).sum(axis=1)
    assert (union >= 4).all() and (union <= 4 * sum(w > 0 for w in weights.values())).all()


def test_fused_scores_of_one_vector_are_its_rescored_search_at_the_top():
    rng = np.random.default_rng(5)
    catalogue = {"shape": rng.normal(size=(80, 16)), "color": rng.normal(size=(80, 8))}
    queries = {name: vectors[:6] + 0.3 * rng.normal(size=vectors[:6].shape) for name, vectors in catalogue.items()}
    fused = fused_scores(queries, catalogue, {"shape": 1.0, "color": 0.0}, shortlist=5, oversampling=4)
    rescored = similarity(Features(queries["shape"], "rescored", 20), Features(catalogue["shape"], "rescored", 20))
    top = np.argsort(-fused, axis=1, kind="stable")[:, :5]
    assert np.array_equal(top, np.argsort(-rescored, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(np.take_along_axis(fused, top, 1), np.take_along_axis(rescored, top, 1))
    everything = fused_scores(queries, catalogue, {"shape": 0.5, "color": 0.5}, shortlist=80, oversampling=1)
    exact = [similarity(Features(queries[n], "cosine"), Features(catalogue[n], "cosine")) for n in ("shape", "color")]
    np.testing.assert_allclose(everything, (exact[0] + exact[1]) / 2)  # a shortlist of everything is exact
    with pytest.raises(ValueError, match="no positive weight"):
        fused_scores(queries, catalogue, {"shape": 0.0, "color": 0.0}, shortlist=5, oversampling=4)


def test_facet_weights_run_from_shape_to_color():
    assert [facet_label(w) for w in (FACET_WEIGHTS[0], FACET_WEIGHTS[1], FACET_WEIGHTS[-1])] == [
        "shape 1 · color 0",
        "shape 0.75 · color 0.25",
        "shape 0 · color 1",
    ]
    assert facet_key(FACET_WEIGHTS[1]) == "facet_shape0.75_color0.25"
