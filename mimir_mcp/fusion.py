"""Pure rank-fusion functions."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

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
