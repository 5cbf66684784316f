"""Pure rank-fusion functions."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(
    rankings: Mapping[str, Sequence[K]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[K, float]]:
    """Reciprocal Rank Fusion: ``score(d) = sum_arm weight_arm / (k + rank_arm(d))``, ranks from 1.

    RRF needs only ranks, so BM25 scores and cosine similarities never have to be put on one scale.
    Ties keep the order in which items were first seen, arm by arm, so results are deterministic.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    scores: dict[K, float] = {}
    for arm, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(arm, 1.0)
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: position for position, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))


def score_gap_weight(scores: Sequence[float], *, window: int = 10, floor: float = 0.05) -> float | None:
    """How sure an arm is about this query: the square root of the relative drop from its best score to
    its ``window``-th, ``sqrt((s_1 - s_n) / s_1)``, floored so that no arm is silenced completely.

    An arm that clearly separates a few documents from the rest (a rare keyword, a close paraphrase)
    gets a large weight; an arm whose scores are flat (the query's words are everywhere, or the
    embedding sees nothing special) gets a small one. This keeps a weak arm from dragging the fused
    ranking below the strong arm alone, which equal-weight RRF does. The square root damps the
    difference in scale between the arms' gaps (BM25's are typically twice the bi-encoder's).
    ``None`` when there are fewer than two scores or they are not positive: no evidence either way.
    """
    top = list(scores[:window])
    if len(top) < 2 or top[0] <= 0:
        return None
    return max(math.sqrt(max(top[0] - top[-1], 0.0) / top[0]), floor)


def top_z_weight(scores: Sequence[float], *, power: float = 2.0, floor: float = 0.05) -> float | None:
    """How sure an arm is about this query: how many standard deviations its best score stands above the
    rest of its candidates, squared (``power``), floored so that no arm is silenced completely.

    An arm that singles out a document (a rare keyword, a close paraphrase) scores several deviations;
    an arm that cannot tell its candidates apart scores about one. Unlike the top-1/top-10 gap, the
    z-score does not depend on the arm's scale or on how many of its top ten happen to be close, so it
    separates a weak arm from a strong one more sharply (README, "How the defaults were chosen").
    ``None`` when there are fewer than three scores or the rest are all equal: no evidence either way.
    """
    values = list(scores)
    if len(values) < 3:
        return None
    mean, spread = _mean_and_spread(values[1:])
    if spread == 0:
        return None
    return max((values[0] - mean) / spread, floor) ** power


# How strongly each arm's coverage counts (``coverage_factor``): chosen on SciFact, two WordNet sets
# and simulated weak arms, checked on a third WordNet set and a Debian package set (README, "How the
# defaults were chosen"). The settings' defaults (MIMIR_SEARCH_*_COVERAGE_POWER) are these.
COVERAGE_POWER = {"bm25": 4.0, "dense": 3.0}


def coverage_factor(coverage: float | None, power: float, *, floor: float = 0.05) -> float:
    """How fully an arm's best hit matches the query, on an absolute scale, clipped to ``[floor, 1]``
    and raised to ``power``; 1 when unknown.

    ``top_z_weight`` only sees how the best hit stands out from the arm's other candidates, so a BM25
    arm whose best hit shares one rare word with the query looks as sure as one whose best hit holds
    every query word. Coverage tells them apart: for BM25, the best score over the score a document
    of average length holding each query term once would get (the sum of the terms' idf); for the
    dense arm, the best hit's cosine similarity. Where an arm's words or embedding miss what the query
    asks for (a definition searched against entity names), its coverage falls and the other arm leads.
    """
    if coverage is None or power == 0:
        return 1.0
    return max(min(coverage, 1.0), floor) ** power


def arm_coverage(dense: Sequence[float], bm25: Sequence[float], attainable: float) -> dict[str, float | None]:
    """Each arm's coverage from its ranked scores, for ``coverage_factor``: the dense arm's best cosine
    similarity, and BM25's best score over ``attainable`` (``LexicalIndex.attainable_score`` of the
    query); ``None`` for an arm without hits."""
    return {
        "dense": dense[0] if dense else None,
        "bm25": bm25[0] / attainable if bm25 and attainable > 0 else None,
    }


def arm_weights(
    arm_scores: Mapping[str, Sequence[float]],
    base: Mapping[str, float] | None = None,
    *,
    method: Literal["coverage", "top_z", "score_gap"] = "coverage",
    coverage: Mapping[str, float | None] | None = None,
    coverage_power: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per-query RRF weights from each arm's own scores (``top_z``: ``top_z_weight``; ``score_gap``:
    ``score_gap_weight``; ``coverage``: ``top_z_weight`` times ``coverage_factor`` of the arm's
    ``coverage``, with ``coverage_power`` per arm, ``COVERAGE_POWER`` by default), times the configured
    per-arm weight.

    An arm without evidence takes the mean weight of the arms that have it, so a one-result arm neither
    dominates nor disappears.
    """
    weigh = {"coverage": top_z_weight, "top_z": top_z_weight, "score_gap": score_gap_weight}[method]
    confidence = {arm: weigh(scores) for arm, scores in arm_scores.items()}
    known = [value for value in confidence.values() if value is not None]
    fallback = sum(known) / len(known) if known else 1.0
    powers = {**COVERAGE_POWER, **(coverage_power or {})}
    return {
        arm: (fallback if value is None else value)
        * (1.0 if base is None else base.get(arm, 1.0))
        * (coverage_factor((coverage or {}).get(arm), powers.get(arm, 0.0)) if method == "coverage" else 1.0)
        for arm, value in confidence.items()
    }


def _mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation of a non-empty sequence."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def _standardized(values: Sequence[float]) -> list[float]:
    """Each value's distance from the mean in standard deviations; all zeros when the values are equal."""
    mean, spread = _mean_and_spread(values)
    return [0.0 if spread == 0 else (value - mean) / spread for value in values]


def blend_scores(rerank: Sequence[float], first_stage: Sequence[float], weight: float) -> list[float]:
    """Combine a cross-encoder's scores with the first stage's over the same candidates:
    ``weight * z(rerank) + (1 - weight) * z(first_stage)``, each standardized within the candidates.

    Standardizing puts a sigmoid score and an RRF score on one scale without calibration. A reranker
    weaker than the hybrid alone (one fine-tuned on a few hundred queries from a backbone never trained
    for relevance) still adds what the hybrid misses this way, instead of replacing its order.
    ``weight`` 1 is the reranker's own order; 0 the first stage's.
    """
    if len(rerank) != len(first_stage):
        raise ValueError("rerank and first_stage must score the same candidates")
    if not 0.0 <= weight <= 1.0:
        raise ValueError("weight must be between 0 and 1")
    if not rerank:
        return []
    return [
        weight * r + (1.0 - weight) * f for r, f in zip(_standardized(rerank), _standardized(first_stage), strict=True)
    ]
