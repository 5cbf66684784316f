"""Pure result-diversification functions: maximal marginal relevance over the candidates' own embeddings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mmr(relevance: Sequence[float], vectors: np.ndarray, *, top_k: int, diversity: float) -> list[int]:
    """Maximal Marginal Relevance (Carbonell & Goldstein, 1998): indices of ``min(top_k, n)`` candidates, in
    selection order. The first pick is the most relevant; each next one maximizes
    ``(1 - diversity) * rel(i) - diversity * max_{j selected} cos(v_i, v_j)``.

    Memories are often stored near-verbatim more than once; without this, an agent's top hits can all say
    the same thing. ``diversity`` is the weight of the redundancy penalty, so ``1 - diversity`` is the
    usual MMR lambda: 0 keeps the relevance order, 1 picks the most relevant and then whatever is least
    like what was already picked.

    ``relevance`` is rescaled to [0, 1] by min-max over the candidates (all equal: all 1) before it is
    combined with cosine similarities: it comes from different scorers (cross-encoder logits, fused
    scores), and without a common scale the same ``diversity`` would mean a different trade-off for each.
    Rows of ``vectors`` are normalized here, since stored embeddings may or may not be unit length; a zero
    row has similarity 0 to everything. Ties go to the earlier candidate, so the result is deterministic.
    Cost: ``O(top_k * n * dim)``.
    """
    if not 0.0 <= diversity <= 1.0:  # also refuses NaN
        raise ValueError(f"diversity must be between 0 and 1, got {diversity}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    scores = np.asarray(relevance, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError("relevance must be a flat sequence of numbers")
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != scores.shape[0]:
        raise ValueError(
            f"vectors must have one row per relevance score: {scores.shape[0]} scores, vectors of shape {matrix.shape}"
        )
    if not np.all(np.isfinite(scores)) or not np.all(np.isfinite(matrix)):
        raise ValueError("relevance scores and vectors must be finite")
    count = min(top_k, scores.shape[0])
    if count == 0:
        return []
    if diversity == 0.0:
        # The relevance order itself; a stable sort keeps tied candidates in input order.
        return [int(index) for index in np.argsort(-scores, kind="stable")[:count]]

    spread = float(scores.max() - scores.min())
    rescaled = np.ones_like(scores) if spread == 0 else (scores - scores.min()) / spread
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)

    gain = (1.0 - diversity) * rescaled
    chosen = np.zeros(scores.shape[0], dtype=bool)
    closest = np.full(scores.shape[0], -math.inf)  # max cosine to anything selected so far
    selected: list[int] = []
    pick = int(np.argmax(scores))  # argmax returns the first of equal maxima
    while True:
        selected.append(pick)
        if len(selected) == count:
            return selected
        chosen[pick] = True
        np.maximum(closest, unit @ unit[pick], out=closest)
        marginal = gain - diversity * closest
        marginal[chosen] = -math.inf
        pick = int(np.argmax(marginal))
