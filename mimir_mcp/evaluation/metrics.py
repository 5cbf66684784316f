"""IR metrics as pure functions over one query's ranking and its relevance judgements.

nDCG uses linear gain (``rel / log2(rank + 1)``), as trec_eval and BEIR compute it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    ideal = dcg(sorted((rel for rel in relevance.values() if rel > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(relevance.get(doc, 0), 0) for doc in ranking[:k]]) / ideal


def recall_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 100) -> float:
    relevant = {doc for doc, rel in relevance.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranking[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def mean(values: Sequence[float]) -> float:
    """The average over queries; 0 for none (a split with no judged query)."""
    return math.fsum(values) / len(values) if values else 0.0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0
