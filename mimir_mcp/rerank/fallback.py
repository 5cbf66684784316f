"""Running a reranker without ever letting it break search, and recording what happened."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import anyio

from mimir_mcp.errors import RerankerUnavailableError
from mimir_mcp.rerank.admission import Admission, RerankQueue
from mimir_mcp.rerank.base import Reranker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankOutcome:
    """Scores in input order when reranking ran; otherwise ``None`` and the reason it did not.

    Under load the queue may score only the first ``len(scores)`` texts, or none; ``note`` then says why.
    ``seconds`` counts the wait in the queue and the scoring.
    """

    scores: list[float] | None
    reason: str | None
    seconds: float
    attempted: bool = True
    admission: Admission | None = None
    note: str | None = None


async def rerank_or_fallback(
    reranker: Reranker,
    query: str,
    texts: list[str],
    queue: RerankQueue | None = None,
    *,
    trim: bool = True,
    deadline_s: float | None = None,
) -> RerankOutcome:
    """Score ``texts``; on any problem (not loaded, timeout, exception, bad output) return the reason instead.

    Search never waits for a model that is still loading: it answers now, in the hybrid's order, and says so.
    With a ``queue``, the search waits its turn for the model and scores as many of ``texts`` (best first)
    as the queue admits: ``queue.min_candidates`` first, then a few at a time, stopping at its deadline if
    the model runs slower than predicted. ``trim=False`` (the ``rerank`` tool) scores them all in one call.
    ``deadline_s``: seconds left of the search's own deadline (``deadline_ms``), which bounds waiting and
    scoring like ``reranker.budget_s`` does, and more tightly when it is shorter.
    """
    reason = reranker.unavailable_reason()
    if reason is not None:
        return RerankOutcome(scores=None, reason=reason, seconds=0.0, attempted=False)
    peek = getattr(reranker, "cached", None)  # a CachedReranker tells which scores it already holds
    cached = peek(query, texts) if peek is not None else [False] * len(texts)
    if queue is None or not texts or all(cached):
        # Every score is in the cache (nothing for the model to do), or there is no queue to wait in.
        timeout = reranker.timeout_s if deadline_s is None else max(min(reranker.timeout_s, deadline_s), 0.001)
        return await _score(reranker, query, texts, timeout=timeout)
    calibration = getattr(reranker, "calibration", None)  # the local model's timing at load, if any
    if calibration is not None:
        queue.calibrate(calibration.query, calibration.texts, calibration.seconds, calibration.backend)
    admission = queue.admit(query, texts, trim=trim, deadline_s=deadline_s, cached=cached)
    ticket = admission.ticket
    if ticket is None:
        note = admission.describe(0)
        return RerankOutcome(scores=None, reason=note, seconds=0.0, attempted=False, admission=admission, note=note)
    texts = texts[: admission.count]
    tokens = list(admission.pair_tokens[: admission.count])
    size = min(queue.min_candidates, len(texts)) if trim else len(texts)
    started = time.perf_counter()
    scores: list[float] = []
    stopped = completed = False
    try:
        with anyio.fail_after(reranker.timeout_s):
            with anyio.move_on_after(queue.wait_limit(ticket, sum(tokens[:size]))) as waiting:
                await queue.wait_turn(ticket)
            if waiting.cancelled_caught:
                reason = (
                    "the cross-encoder was busy: the searches ahead took longer than predicted, and this one "
                    f"stopped waiting after {time.perf_counter() - started:.1f} s to answer within {admission.limit}; "
                    "this answer is in the hybrid's order"
                )
                return RerankOutcome(
                    scores=None, reason=reason, seconds=time.perf_counter() - started, attempted=False, note=reason
                )
            while len(scores) < len(texts):
                part = slice(len(scores), len(scores) + size)
                if scores and not queue.fits(ticket, sum(tokens[part])):
                    stopped = True
                    break
                backend = getattr(reranker, "backend", None)
                began = queue.now()
                outcome = await _score(reranker, query, texts[part])
                if outcome.scores is None:
                    return RerankOutcome(
                        scores=None, reason=outcome.reason, seconds=time.perf_counter() - started, admission=admission
                    )
                queue.observe(sum(tokens[part]), queue.now() - began, backend)
                scores.extend(outcome.scores)
                if trim:
                    size = queue.chunk_size(sum(tokens) / len(tokens))
            completed = True
    except TimeoutError:
        reason = f"reranking took longer than {reranker.timeout_s:g} s (reranker.timeout_s) and was abandoned."
        return RerankOutcome(scores=None, reason=reason, seconds=time.perf_counter() - started, admission=admission)
    finally:
        queue.done(ticket, completed=completed)
    return RerankOutcome(
        scores=scores,
        reason=None,
        seconds=time.perf_counter() - started,
        admission=admission,
        note=admission.describe(len(scores), stopped=stopped),
    )


async def _score(reranker: Reranker, query: str, texts: list[str], *, timeout: float | None = None) -> RerankOutcome:
    """One call of the model, with every way it can fail turned into a reason."""
    started = time.perf_counter()
    limit = reranker.timeout_s if timeout is None else timeout
    try:
        with anyio.fail_after(limit):
            scores = await reranker.score(query, texts)
    except TimeoutError:
        reason = (
            f"reranking took longer than {limit:g} s ("
            + ("reranker.timeout_s" if limit == reranker.timeout_s else "what was left of the search's deadline_ms")
            + ") and was abandoned."
        )
    except Exception as exc:  # noqa: BLE001 - a reranker failure must degrade search, not break it
        logger.warning("%s failed during inference; falling back", reranker.model, exc_info=True)
        if getattr(reranker, "backend", None) == "remote":
            reason = str(exc)  # the remote reranker's errors say which API failed and how
        else:
            reason = f"the cross-encoder raised {type(exc).__name__} during inference: {exc}"
    else:
        if len(scores) != len(texts):
            reason = f"the cross-encoder returned {len(scores)} scores for {len(texts)} candidates."
        elif not all(math.isfinite(score) for score in scores):
            reason = "the cross-encoder returned non-finite scores."
        else:
            return RerankOutcome(scores=scores, reason=None, seconds=time.perf_counter() - started)
    return RerankOutcome(scores=None, reason=reason, seconds=time.perf_counter() - started)


async def rerank_or_raise(
    reranker: Reranker, query: str, texts: list[str], queue: RerankQueue | None = None
) -> RerankOutcome:
    """For the ``rerank`` tool, where scores are the whole point: wait for a loading model, then wait its turn
    for every document; raise when there is no model, or at once when the queue ahead would outlast
    ``reranker.timeout_s`` (an answer now beats a timeout later)."""
    await reranker.wait_ready(reranker.timeout_s)
    if queue is not None and reranker.unavailable_reason() is None and queue.queued:
        predicted = queue.pending_seconds()
        if predicted > reranker.timeout_s:
            raise RerankerUnavailableError(
                f"The cross-encoder is busy: {queue.queued} "
                f"{'search is' if queue.queued == 1 else 'searches are'} queued for it (about {predicted:.0f} s of "
                f"scoring), more than reranker.timeout_s ({reranker.timeout_s:g} s). Try again shortly, or send "
                "fewer documents."
            )
    outcome = await rerank_or_fallback(reranker, query, texts, queue, trim=False)
    if outcome.scores is None:
        raise RerankerUnavailableError(f"Cannot rerank: {outcome.reason}")
    return outcome
