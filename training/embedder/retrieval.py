"""Retrieval metrics on similarity matrices: tie-aware recall@k and precision@k.

Scores are similarities, higher is nearer: cosine for float vectors, minus the Hamming distance
for binary codes; for float queries against a catalogue of codes (Qdrant's binary quantisation
with a scalar query encoding), the dot product of the unit query with the codes' +-1 signs; and
for the search the store runs on one vector, that score's shortlist of `shortlist` items rescored
by cosine; and for the search the service runs on several vectors (`fused_scores`), the union of
each weighted vector's rescored shortlist, scored by the weighted mean of their cosines.

Codes have few distinct distances (65 for a 64-bit hash), so many catalogue items tie, and a sort
would break ties by catalogue order, flattering or punishing a method by chance. Every metric here
is instead the exact expectation over a uniformly random order among tied items: an item with
`better` items scoring strictly higher and `tied` other items scoring the same lands on each of
the ranks better+1 .. better+tied+1 with equal probability, so it is in the top k with probability
clip((k - better) / (tied + 1), 0, 1). Excluded items (a query's own source image, for instance)
are neither ranked nor counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lookalike.codec import binarize, l2_normalize, unpack

METRICS = ("cosine", "hamming", "asymmetric", "rescored")
# The facet weights the reports compare, from "same cut in any colour" to "this colour on anything".
FACET_WEIGHTS = tuple({"shape": shape, "color": 1.0 - shape} for shape in (1.0, 0.75, 0.5, 0.25, 0.0))
BELOW = 4.0  # cosines lie in [-1, 1]: minus this, an item ranks below every item of a shortlist


@dataclass(frozen=True)
class Features:
    """Vectors of one method for a set of images and how they are compared.

    - "cosine": float vectors;
    - "hamming": packed uint8 codes, both sides;
    - "asymmetric": float vectors; the catalogue side is compared by its sign bits only, the query
      keeps its floats (what a 1-bit index with a scalar-quantised query sees);
    - "rescored": float vectors; the `shortlist` best by the asymmetric score, re-ranked by cosine,
      above everything else (Qdrant's binary quantisation with oversampling and rescoring).
    """

    vectors: np.ndarray
    metric: str
    shortlist: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {self.metric!r}")

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index) -> Features:
        return Features(self.vectors[index], self.metric, self.shortlist)

    def describe(self) -> str:
        dim = self.vectors.shape[-1]
        if self.metric == "hamming":
            return f"Hamming, {dim * 8} bits"
        if self.metric == "asymmetric":
            return f"float query · {dim}-bit codes"
        if self.metric == "rescored":
            return f"{dim}-bit codes, top {self.shortlist} rescored"
        return f"cosine, {dim}-d"

    @staticmethod
    def concatenate(parts: list[Features]) -> Features:
        ((metric, shortlist),) = {(part.metric, part.shortlist) for part in parts}
        return Features(np.concatenate([part.vectors for part in parts]), metric, shortlist)


def cosine_similarity(queries: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    return l2_normalize(queries) @ l2_normalize(catalogue).T


def hamming_scores(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Minus the Hamming distance of packed codes, from +-1 dot products: distance = (bits - dot) / 2.

    Exact in float32 (integers far below 2**24) and a BLAS product instead of an XOR per pair.
    """
    signs_q, signs_c = unpack(queries), unpack(codes)
    return -(signs_q.shape[1] - signs_q @ signs_c.T) / 2


def asymmetric_scores(queries: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Unit float queries against the +-1 sign codes of the catalogue (the codec's sign rule)."""
    return l2_normalize(queries) @ unpack(binarize(catalogue)).T


def code_shortlist(queries: np.ndarray, catalogue: np.ndarray, size: int) -> np.ndarray:
    """(q, size) catalogue rows: each query's best `size` items by the asymmetric (1-bit code) score."""
    size = min(size, catalogue.shape[0])
    return np.argpartition(-asymmetric_scores(queries, catalogue), size - 1, axis=1)[:, :size]


def shortlist_first(scores: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """`scores` with each row's `chosen` items kept and every other item moved below all of them."""
    ranked = scores - BELOW
    rows = np.arange(len(scores))[:, None]
    ranked[rows, chosen] = scores[rows, chosen]
    return ranked


def rescored_scores(queries: np.ndarray, catalogue: np.ndarray, shortlist: int) -> np.ndarray:
    """Cosine within each query's asymmetric-score shortlist; the rest rank below, still by cosine."""
    return shortlist_first(cosine_similarity(queries, catalogue), code_shortlist(queries, catalogue, shortlist))


def fused_scores(
    queries: Mapping[str, np.ndarray],
    catalogue: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    shortlist: int,
    oversampling: int,
) -> np.ndarray:
    """(q, n) scores of the store's search over several named vectors (`VectorStore.search_fused`).

    For each vector with a positive weight: its 1-bit search with limit `shortlist` (the best
    `oversampling * shortlist` items by the asymmetric score, rescored by cosine, the best
    `shortlist` kept). The union of those shortlists is scored by the weighted mean of the cosines,
    sum(w * cos) / sum(w); every other item ranks below it (by the same mean). The caller passes
    the store's limit, `max(fusion_shortlist, top_k)`.
    """
    used = {name: float(weight) for name, weight in weights.items() if weight > 0}
    if not used:
        raise ValueError(f"no positive weight in {dict(weights)}")
    fused, candidates = 0.0, None
    for name, weight in used.items():
        exact = cosine_similarity(queries[name], catalogue[name])
        rescored = shortlist_first(exact, code_shortlist(queries[name], catalogue[name], oversampling * shortlist))
        kept = min(shortlist, exact.shape[1])
        best = np.argpartition(-rescored, kept - 1, axis=1)[:, :kept]
        if candidates is None:
            candidates = np.zeros(exact.shape, bool)
        np.put_along_axis(candidates, best, True, axis=1)
        fused = fused + weight * exact
    fused = fused / sum(used.values())
    return np.where(candidates, fused, fused - BELOW)


def facet_label(weights: Mapping[str, float]) -> str:
    """'shape 0.75 · color 0.25': a row name for one set of weights."""
    return " · ".join(f"{name} {weight:g}" for name, weight in weights.items())


def facet_key(weights: Mapping[str, float]) -> str:
    """'facet_shape0.75_color0.25': the metrics.json prefix of one set of weights."""
    return "_".join(["facet", *(f"{name}{weight:g}" for name, weight in weights.items())])


def similarity(queries: Features, catalogue: Features) -> np.ndarray:
    """(q, n) scores, higher is nearer."""
    if (queries.metric, queries.shortlist) != (catalogue.metric, catalogue.shortlist):
        raise ValueError(f"cannot compare {queries.metric} queries with a {catalogue.metric} catalogue")
    if queries.metric == "hamming":
        return hamming_scores(queries.vectors, catalogue.vectors)
    if queries.metric == "asymmetric":
        return asymmetric_scores(queries.vectors, catalogue.vectors)
    if queries.metric == "rescored":
        return rescored_scores(queries.vectors, catalogue.vectors, queries.shortlist)
    return cosine_similarity(queries.vectors, catalogue.vectors)


@dataclass(frozen=True)
class Ranks:
    """Where each query's relevant items land: one entry per (query, relevant item) pair."""

    query: np.ndarray  # which query the pair belongs to
    better: np.ndarray  # items scoring strictly higher than the relevant item
    tied: np.ndarray  # other items scoring exactly the same
    num_relevant: np.ndarray  # per query

    @property
    def num_queries(self) -> int:
        return len(self.num_relevant)

    def hits(self, k: int) -> np.ndarray:
        """Expected number of relevant items in each query's top k."""
        found = np.clip((k - self.better) / (self.tied + 1), 0.0, 1.0)
        return np.bincount(self.query, weights=found, minlength=self.num_queries)

    def recall(self, k: int) -> np.ndarray:
        """Per query; NaN for a query with nothing relevant."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.num_relevant > 0, self.hits(k) / self.num_relevant, np.nan)

    def precision(self, k: int) -> np.ndarray:
        return self.hits(k) / k

    def best_precision(self, k: int) -> np.ndarray:
        """The precision@k a perfect ranking would get: short of 1 where fewer than k items are relevant."""
        return np.minimum(self.num_relevant, k) / k


def rank_relevant(scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray | None = None) -> Ranks:
    """Rank every relevant item among the not-excluded items of its query's row of `scores` (q, n)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != scores.shape:
        raise ValueError(f"relevant {relevant.shape} and scores {scores.shape} differ in shape")
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)  # below every real score, so never better or tied
        relevant = relevant & ~np.asarray(exclude, dtype=bool)
    rows, items = np.nonzero(relevant)  # row-major: pairs come sorted by query
    values = scores[rows, items]
    ordered = np.sort(scores, axis=1)
    starts = np.searchsorted(rows, np.arange(len(scores) + 1))
    better, tied = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    for row in np.flatnonzero(np.diff(starts)):
        part = slice(starts[row], starts[row + 1])
        low = np.searchsorted(ordered[row], values[part], side="left")
        high = np.searchsorted(ordered[row], values[part], side="right")
        better[part], tied[part] = scores.shape[1] - high, high - low - 1
    return Ranks(rows, better, tied, relevant.sum(axis=1))


def recall_curve(ranks: Ranks, ks: np.ndarray) -> np.ndarray:
    """Mean recall@k over the queries that have relevant items, for each k in `ks`."""
    return np.array([np.nanmean(ranks.recall(int(k))) for k in ks])


def same_label(query_labels: np.ndarray, catalogue_labels: np.ndarray) -> np.ndarray:
    """(q, n) bool: the catalogue item has the query's label."""
    return np.asarray(query_labels)[:, None] == np.asarray(catalogue_labels)[None, :]


def per_group_mean(values: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Mean of `values` per group index (NaN for an empty group), e.g. per-class precision."""
    counts = np.bincount(groups, minlength=num_groups)
    sums = np.bincount(groups, weights=values, minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
