"""Running a reranker without ever letting it break search, and recording what happened."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import anyio

from mimir_mcp.errors import RerankerUnavailableError
from mimir_mcp.rerank.base import Reranker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankOutcome:
    """Scores in input order when reranking ran; otherwise ``None`` and the reason it did not."""

    scores: list[float] | None
    reason: str | None
    seconds: float
    attempted: bool = True


async def rerank_or_fallback(reranker: Reranker, query: str, texts: list[str]) -> RerankOutcome:
    """Score ``texts``; on any problem (not loaded, timeout, exception, bad output) return the reason instead.

    Search never waits for a model that is still loading: it answers now, in the hybrid's order, and says so.
    """
    reason = reranker.unavailable_reason()
    if reason is not None:
        return RerankOutcome(scores=None, reason=reason, seconds=0.0, attempted=False)
    started = time.perf_counter()
    try:
        with anyio.fail_after(reranker.timeout_s):
            scores = await reranker.score(query, texts)
    except TimeoutError:
        reason = f"reranking took longer than {reranker.timeout_s:g} s (reranker.timeout_s) and was abandoned."
    except Exception as exc:  # noqa: BLE001 - a reranker failure must degrade search, not break it
        logger.warning("cross-encoder failed during inference; falling back to the hybrid's order", exc_info=True)
        reason = f"the cross-encoder raised {type(exc).__name__} during inference: {exc}"
    else:
        if len(scores) != len(texts):
            reason = f"the cross-encoder returned {len(scores)} scores for {len(texts)} candidates."
        elif not all(math.isfinite(score) for score in scores):
            reason = "the cross-encoder returned non-finite scores."
        else:
            return RerankOutcome(scores=scores, reason=None, seconds=time.perf_counter() - started)
    return RerankOutcome(scores=None, reason=reason, seconds=time.perf_counter() - started)


async def rerank_or_raise(reranker: Reranker, query: str, texts: list[str]) -> RerankOutcome:
    """For the ``rerank`` tool, where scores are the whole point: wait for a loading model, else raise."""
    await reranker.wait_ready(reranker.timeout_s)
    outcome = await rerank_or_fallback(reranker, query, texts)
    if outcome.scores is None:
        raise RerankerUnavailableError(f"No cross-encoder is available: {outcome.reason}")
    return outcome
