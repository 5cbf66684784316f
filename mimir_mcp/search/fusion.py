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


def z_fusion(
    scored: Mapping[str, Sequence[tuple[K, float]]],
    *,
    weights: Mapping[str, float] | None = None,
    units: Mapping[str, float] | None = None,
) -> list[tuple[K, float]]:
    """Score fusion of standardized arm scores: ``score(d) = sum_arm weight_arm * (s_arm(d) - min_arm) /
    sd_arm``, where ``min_arm`` and ``sd_arm`` are the lowest score and the standard deviation of that
    arm's candidate list, so a document an arm did not return gets that arm's floor, 0. An arm named in
    ``units`` has scores on one scale for every query (cosine similarity): they are divided by that
    unit instead of their deviation, so how far apart the arm put its candidates counts as it is.

    Unlike RRF, the fused order keeps how far apart an arm put its candidates: an arm whose best hit
    stands far above the rest (a rare keyword, a close paraphrase) moves it further than an arm whose
    scores are flat moves anything, which is what lets a weak arm add little instead of dragging the
    strong one down. Standardizing needs no calibration between cosines and BM25 scores (Bruch et al.,
    "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023, found such score fusion more
    robust than RRF). An arm with one candidate, or equal scores, gives each candidate 1. Ties keep the
    order in which items were first seen, arm by arm.
    """
    scores: dict[K, float] = {}
    for arm, candidates in scored.items():
        weight = 1.0 if weights is None else weights.get(arm, 1.0)
        values = [score for _, score in candidates]
        if not values:
            continue
        floor = min(values)
        _, spread = _mean_and_spread(values)
        if spread and units is not None and arm in units:
            spread = units[arm]
        for item, score in candidates:
            standardized = 1.0 if spread == 0 else (score - floor) / spread
            scores[item] = scores.get(item, 0.0) + weight * standardized
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


def top_z_weight(
    scores: Sequence[float], *, power: float = 2.0, floor: float = 0.05, unit: float | None = None
) -> float | None:
    """How sure an arm is about this query: how many standard deviations its best score stands above the
    rest of its candidates, squared (``power``), floored so that no arm is silenced completely. With a
    ``unit`` (an arm whose scores have one scale for every query), how many units instead.

    An arm that singles out a document (a rare keyword, a close paraphrase) scores several deviations;
    an arm that cannot tell its candidates apart scores about one. Unlike the top-1/top-10 gap, the
    z-score does not depend on the arm's scale or on how many of its top ten happen to be close, so it
    separates a weak arm from a strong one more sharply (research/NOTES.md).
    ``None`` when there are fewer than three scores or the rest are all equal: no evidence either way.
    """
    values = list(scores)
    if len(values) < 3:
        return None
    mean, spread = _mean_and_spread(values[1:])
    if spread == 0:
        return None
    return max((values[0] - mean) / (unit or spread), floor) ** power


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


def arm_coverage(scores: Mapping[str, Sequence[float]], attainable: Mapping[str, float]) -> dict[str, float | None]:
    """Each arm's coverage from its ranked scores, for ``coverage_factor``: the dense arm's best cosine
    similarity; a BM25 arm's best score over its ``attainable`` score (``LexicalIndex.attainable_score``
    of the query); ``None`` for an arm without hits."""
    coverage: dict[str, float | None] = {}
    for arm, values in scores.items():
        if arm == "dense":
            coverage[arm] = values[0] if values else None
        else:
            reachable = attainable.get(arm, 0.0)
            coverage[arm] = values[0] / reachable if values and reachable > 0 else None
    return coverage


def arm_weights(
    arm_scores: Mapping[str, Sequence[float]],
    base: Mapping[str, float] | None = None,
    *,
    confidence: Literal["top_z", "score_gap"] = "top_z",
    z_power: float = 2.0,
    coverage: Mapping[str, float | None] | None = None,
    coverage_power: Mapping[str, float] | None = None,
    units: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per-query arm weights from each arm's own scores: ``confidence * base * coverage_factor(c, p)``.

    ``confidence`` is how sure the arm is about this query: ``top_z_weight`` (to ``z_power``; in the arm's
    unit where ``units`` names one) or ``score_gap_weight``. An arm without evidence takes the mean
    confidence of the arms that have it, so a one-result arm neither dominates nor disappears. ``base``
    multiplies per arm (1 for an arm not named); ``coverage_power`` is each arm's exponent of its
    ``coverage`` (0 for an arm not named: coverage ignored). Which of these a search uses is
    ``policy.FusionPolicy``'s decision.
    """
    if confidence == "score_gap":
        sure = {arm: score_gap_weight(scores) for arm, scores in arm_scores.items()}
    else:
        units = units or {}
        sure = {arm: top_z_weight(scores, power=z_power, unit=units.get(arm)) for arm, scores in arm_scores.items()}
    known = [value for value in sure.values() if value is not None]
    fallback = sum(known) / len(known) if known else 1.0
    powers = coverage_power or {}
    return {
        arm: (fallback if value is None else value)
        * (1.0 if base is None else base.get(arm, 1.0))
        * coverage_factor((coverage or {}).get(arm), powers.get(arm, 0.0))
        for arm, value in sure.items()
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
