"""Admission control for the cross-encoder: the decision with exact figures, searches through a real MCP
client while the model is busy, and a short ``mimir-mcp stress`` run against a real HTTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from mcp import Client

from mimir_mcp.config import RerankerSettings, Settings
from mimir_mcp.rerank import LocalCrossEncoder, rerank_or_fallback
from mimir_mcp.rerank.admission import PAIR_OVERHEAD_TOKENS, Admission, RerankQueue
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService

from .conftest import call, call_error, run_cli

pytestmark = pytest.mark.anyio

QUERY = "q" * 40
TEXT = "x" * 360  # with the query: 400 characters, 100 tokens, plus the fixed share per pair
PAIR_TOKENS = 100 + PAIR_OVERHEAD_TOKENS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_queue(budget_s: float = 1.0, min_candidates: int = 3, clock: Clock | None = None) -> RerankQueue:
    queue = RerankQueue(RerankerSettings(budget_s=budget_s), min_candidates=min_candidates, clock=clock or Clock())
    queue.seconds_per_token = 1e-3  # 0.116 s per pair
    return queue


async def test_alone_a_search_reranks_everything_even_past_the_budget():
    queue = make_queue(budget_s=0.1)
    admission = queue.admit(QUERY, [TEXT] * 50)
    assert (admission.count, admission.queued, admission.trimmed, admission.skipped) == (50, 0, False, False)
    assert admission.note is None
    assert admission.full_s == pytest.approx(50 * PAIR_TOKENS * 1e-3)
    assert queue.queued == 1


async def test_behind_a_queue_a_search_is_trimmed_then_skipped_with_the_reason():
    queue = make_queue(budget_s=1.0, min_candidates=3)
    first = queue.admit(QUERY, [TEXT] * 4)  # 0.464 s of scoring
    assert first.count == 4
    # 0.536 s left in the budget: four pairs fit (0.464 s), a fifth would not.
    second = queue.admit(QUERY, [TEXT] * 10)
    assert (second.count, second.requested, second.queued, second.trimmed) == (4, 10, 1, True)
    assert second.wait_s == pytest.approx(0.464)
    assert second.note == (
        "Under load, only the top 4 of 10 candidates were reranked: 1 search was queued for the cross-encoder "
        "(about 0.5 s of scoring), and scoring all 10 would have ended after about 1.6 s, past reranker.budget_s (1 s)"
    )
    # 0.072 s left: not even the three worth reranking fit.
    third = queue.admit(QUERY, [TEXT] * 10)
    assert (third.count, third.skipped, third.ticket) == (0, True, None)
    assert third.note == (
        "the cross-encoder was busy: 2 searches were queued for the cross-encoder (about 0.9 s of scoring), so not "
        "even the top 3 could be scored within reranker.budget_s (1 s); this answer is in the hybrid's order"
    )
    assert queue.queued == 2  # a skipped search takes no place
    # The rerank tool takes every document and waits its turn.
    assert queue.admit(QUERY, [TEXT] * 10, trim=False).count == 10
    status = queue.status()  # what the status tool shows
    assert (status.queued, status.full, status.trimmed, status.skipped) == (3, 2, 1, 1)
    assert status.pending_s == pytest.approx(0.464 + 0.464 + 1.16)
    assert (status.ms_per_1k_tokens, status.budget_s, status.measured_runs) == (1000.0, 1.0, 0)


async def test_a_deadline_trims_or_skips_even_alone_and_says_it_was_the_deadline():
    queue = make_queue(budget_s=1.0, min_candidates=3)  # 0.116 s per pair
    # Alone, ten pairs (1.16 s) fit the budget's allowance; a 0.5 s deadline lets four of them through.
    trimmed = queue.admit(QUERY, [TEXT] * 10, deadline_s=0.5)
    assert (trimmed.count, trimmed.deadline_s) == (4, 0.5)
    assert trimmed.note == (
        "Only the top 4 of 10 candidates were reranked: scoring all 10 would have ended after about 1.2 s, past the "
        "search's deadline_ms (500 ms were left of it for reranking)"
    )
    assert trimmed.ticket is not None and trimmed.ticket.deadline == pytest.approx(0.5)
    queue.done(trimmed.ticket, completed=True)
    # Two pairs fit 0.3 s, fewer than the three worth scoring: none, even alone (without a deadline, alone
    # in the queue, it would score three).
    skipped = queue.admit(QUERY, [TEXT] * 10, deadline_s=0.3)
    assert (skipped.count, skipped.ticket) == (0, None)
    assert skipped.note == (
        "not even the top 3 candidates could be scored within the search's deadline_ms (300 ms were left of it for "
        "reranking), at about 116 ms per candidate; this answer is in the hybrid's order"
    )
    # A deadline longer than what the queue allows changes nothing.
    loose = queue.admit(QUERY, [TEXT] * 10, deadline_s=5.0)
    assert (loose.count, loose.deadline_s, loose.note) == (10, None, None)


async def test_a_timing_at_load_replaces_the_prior_guess_so_tight_deadlines_rerank_from_the_first_search():
    """Without a measured pace the queue plans with a pessimistic prior, and a tight deadline then skips
    reranking every time, so the pace would never be measured; the timing the model takes at load fixes that."""
    queue = RerankQueue(RerankerSettings(budget_s=1.0), min_candidates=3, clock=Clock())
    before = queue.admit(QUERY, [TEXT] * 10, deadline_s=0.05)  # prior: 11.6 ms per pair, 4 fit, then...
    assert before.count == 4 and before.ticket is not None
    queue.done(before.ticket, completed=False)
    assert queue.admit(QUERY, [TEXT] * 10, deadline_s=0.03).count == 0  # ...2 fit 30 ms: fewer than 3, none
    # The model scored eight pairs of PAIR_TOKENS tokens in 16 ms at load: 2 ms per pair.
    queue.calibrate(QUERY, [TEXT] * 8, 0.016, "onnx-int8")
    assert queue.seconds_per_token == pytest.approx(0.002 / PAIR_TOKENS)
    after = queue.admit(QUERY, [TEXT] * 10, deadline_s=0.03)
    assert after.count == 10 and after.ticket is not None  # 20 ms for all ten
    queue.done(after.ticket, completed=True)
    # Once per backend: the same timing again does not undo what real runs taught since.
    queue.observe(PAIR_TOKENS * 10, 0.05, "onnx-int8")
    learned = queue.seconds_per_token
    queue.calibrate(QUERY, [TEXT] * 8, 0.016, "onnx-int8")
    assert queue.seconds_per_token == learned and queue.measured_runs == 2


async def test_the_cross_encoder_times_itself_when_it_becomes_ready(cross_encoder_path: Path):
    reranker = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder_path), backend="torch"))
    reranker.start()
    await reranker.wait_ready(120)
    calibration = reranker.calibration
    assert calibration is not None and calibration.backend == "torch"
    assert len(calibration.texts) == 8 and 0 < calibration.seconds < 60


async def test_cached_candidates_cost_nothing_in_the_queue():
    queue = make_queue(budget_s=1.0, min_candidates=3)  # 0.116 s per pair
    admission = queue.admit(QUERY, [TEXT] * 4, cached=[True, True, False, False])
    assert admission.full_s == pytest.approx(2 * 0.116)  # only the two not in the score cache
    assert admission.ticket is not None and admission.ticket.tokens == 2 * PAIR_TOKENS
    # A head made only of cached pairs costs nothing: it is scored in one call (no division by zero).
    assert queue.chunk_size(0.0) == 1 << 30


async def test_a_search_whose_first_candidates_are_cached_scores_only_the_rest():
    from mimir_mcp.rerank.cache import CachedReranker, ScoreCache

    clock = Clock()
    queue = make_queue(budget_s=1.0, min_candidates=3, clock=clock)
    slow = SlowReranker(clock, seconds_per_pair=0.116)
    cached = CachedReranker(slow, ScoreCache())
    texts = [f"{TEXT[:-3]}{i:03d}" for i in range(6)]
    assert (await rerank_or_fallback(cached, QUERY, texts[:3], queue)).scores == [0.5] * 3  # type: ignore[arg-type]
    assert slow.calls == [3]
    # The next search's first three are cached and cost nothing. With 0.05 s left of its deadline only they
    # fit: they are its whole head, answered from the cache (a head of free pairs must not divide by zero).
    head = await rerank_or_fallback(cached, QUERY, texts, queue, deadline_s=0.05)  # type: ignore[arg-type]
    assert head.scores == [0.5] * 3 and head.admission is not None and head.admission.count == 3
    assert slow.calls == [3]
    # Without the deadline, only the other three reach the model.
    whole = await rerank_or_fallback(cached, QUERY, texts, queue)  # type: ignore[arg-type]
    assert whole.scores == [0.5] * 6
    assert sum(slow.calls[1:]) == 3
    assert cached.cache.stats().hits == 6


async def test_alone_on_a_busy_cpu_a_search_keeps_to_the_budget():
    queue = make_queue(budget_s=1.0, min_candidates=2)
    queue.fastest_seconds_per_token = 1e-3  # 0.116 s per pair when the CPU is not shared
    queue.seconds_per_token = 4e-3  # now four times slower: other work holds the CPU
    # 4.64 s for all ten is past 1.5 x their idle 1.16 s: the budget applies, and two pairs fit.
    admission = queue.admit(QUERY, [TEXT] * 10)
    assert (admission.count, admission.queued, admission.trimmed) == (2, 0, True)
    assert admission.note == (
        "Under load, only the top 2 of 10 candidates were reranked: the CPU is busy with other work (scoring runs "
        "4.0x slower than its best here), and scoring all 10 would have ended after about 4.6 s, past "
        "reranker.budget_s (1 s)"
    )
    queue.release(admission.ticket)  # type: ignore[arg-type]
    # With half the budget one pair fits, fewer than the two worth scoring: alone, it scores two anyway.
    queue.budget_s = 0.5
    admission = queue.admit(QUERY, [TEXT] * 10)
    assert (admission.count, admission.queued) == (2, 0)
    queue.release(admission.ticket)  # type: ignore[arg-type]
    queue.budget_s = 1.0
    # At 1.2x its best pace, the whole search (1.39 s) is within 1.5 x 1.16 s: admitted past the budget.
    queue.seconds_per_token = 1.2e-3
    admission = queue.admit(QUERY, [TEXT] * 10)
    assert admission.count == 10
    assert admission.ticket is not None and admission.ticket.deadline == pytest.approx(1.74)


async def test_fewer_candidates_than_the_minimum_are_all_or_nothing():
    queue = make_queue(budget_s=1.0, min_candidates=10)
    queue.admit(QUERY, [TEXT] * 4)
    assert queue.admit(QUERY, [TEXT] * 2).count == 2  # all fit: not trimmed
    assert queue.admit(QUERY, [TEXT] * 20).count == 0  # 3 fit, fewer than 10


async def test_the_queue_counts_running_work_down_and_learns_the_cost_of_scoring():
    clock = Clock()
    queue = make_queue(clock=clock)
    first = queue.admit(QUERY, [TEXT] * 4)
    second = queue.admit(QUERY, [TEXT] * 2)
    assert first.ticket is not None and second.ticket is not None
    assert (first.ticket.deadline, second.ticket.deadline) == (1.0, 1.0)
    await queue.wait_turn(first.ticket)
    clock.now = 0.3
    assert queue.pending_seconds() == pytest.approx(0.464 - 0.3 + 0.232)
    clock.now = 0.9  # the first is late (predicted done); the second ends by its deadline at the latest
    assert queue.pending_seconds() == pytest.approx(0.1)
    queue.observe(4 * PAIR_TOKENS, 0.58, "onnx-int8")  # 1.25 ms per token: the first run replaces the prior
    assert queue.seconds_per_token == pytest.approx(0.00125)
    queue.done(first.ticket, completed=True)
    assert second.ticket.ready.is_set()
    queue.observe(2 * PAIR_TOKENS, 0.116, "onnx-int8")  # 0.5 ms per token, faster: weight 0.2
    faster = 0.8 * 0.00125 + 0.2 * 0.0005
    assert queue.seconds_per_token == pytest.approx(faster)
    assert queue.fastest_seconds_per_token == pytest.approx(0.0005)
    queue.observe(2 * PAIR_TOKENS, 0.464, "onnx-int8")  # 2 ms per token, slower: weight 0.6
    assert queue.seconds_per_token == pytest.approx(0.4 * faster + 0.6 * 0.002)
    queue.observe(2 * PAIR_TOKENS, 0.0232, "torch")  # another backend starts over
    assert queue.seconds_per_token == queue.fastest_seconds_per_token == pytest.approx(0.0001)
    queue.done(second.ticket, completed=True)
    assert queue.queued == 0 and queue.pending_seconds() == 0


class SlowReranker:
    """A stand-in that advances a fake clock by a fixed time per pair (slower than the queue predicts)."""

    model = "slow"
    timeout_s = 30.0
    blend = 1.0

    def __init__(self, clock: Clock, seconds_per_pair: float) -> None:
        self.clock = clock
        self.seconds_per_pair = seconds_per_pair
        self.calls: list[int] = []

    def unavailable_reason(self) -> str | None:
        return None

    async def score(self, query: str, texts: list[str]) -> list[float]:
        self.calls.append(len(texts))
        self.clock.now += self.seconds_per_pair * len(texts)
        return [0.5] * len(texts)


async def test_scoring_stops_at_the_deadline_when_the_model_runs_slower_than_predicted():
    clock = Clock()
    queue = make_queue(budget_s=1.0, min_candidates=3, clock=clock)
    slow = SlowReranker(clock, seconds_per_pair=0.3)  # predicted: 0.116 s per pair
    # Alone and admitted whole, with 1.5 x 1.16 s = 1.74 s. The first three pairs take 0.9 s; at that
    # pace (now measured) one pair is a tenth of the budget or more, so it goes on one at a time: 1.2 s,
    # 1.5 s, and a sixth pair would end at 1.8 s: it stops with five.
    outcome = await rerank_or_fallback(slow, QUERY, [TEXT] * 10, queue)  # type: ignore[arg-type]
    assert slow.calls == [3, 1, 1]
    assert outcome.scores == [0.5] * 5
    assert outcome.note == (
        "Under load, only the top 5 of 10 candidates were reranked: the CPU is busy with other work (scoring runs "
        "1.0x slower than its best here), and the cross-encoder ran slower than predicted, so scoring stopped "
        "at the search's time limit, reranker.budget_s (1 s)"
    )
    assert queue.queued == 0
    # At the pace now measured, its best so far, the same search is admitted whole (3 s, within 1.5 x 3 s)
    # and scores every pair.
    slow.calls.clear()
    outcome = await rerank_or_fallback(slow, QUERY, [TEXT] * 10, queue)  # type: ignore[arg-type]
    assert slow.calls == [3] + [1] * 7 and outcome.scores == [0.5] * 10 and outcome.note is None


async def test_a_run_abandoned_by_its_caller_still_counts_until_it_would_end():
    clock = Clock()
    queue = make_queue(clock=clock)
    admission = queue.admit(QUERY, [TEXT] * 4)
    assert admission.ticket is not None
    await queue.wait_turn(admission.ticket)
    clock.now = 0.1
    queue.done(admission.ticket, completed=False)
    assert queue.queued == 0
    assert queue.pending_seconds() == pytest.approx(0.364)
    assert queue.seconds_per_token == 1e-3  # nothing learnt from a run that did not finish
    clock.now = 1.0
    assert queue.pending_seconds() == 0


async def test_searches_are_served_in_arrival_order_and_a_cancelled_wait_leaves_the_queue():
    queue = make_queue()
    tickets = [queue.admit(QUERY, [TEXT], trim=False).ticket for _ in range(4)]
    served: list[int] = []

    async def wait(index: int, scope: anyio.CancelScope | None = None) -> None:
        ticket = tickets[index]
        assert ticket is not None
        if scope is None:
            await queue.wait_turn(ticket)
            served.append(index)
            return
        with scope:
            await queue.wait_turn(ticket)
            served.append(index)
        if scope.cancel_called:
            queue.release(ticket)

    first = tickets[0]
    assert first is not None
    await queue.wait_turn(first)
    cancelled = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(wait, 3)  # asks first, but arrived last
        group.start_soon(wait, 2, cancelled)
        group.start_soon(wait, 1)
        await wait_all_tasks_blocked()
        assert served == []
        cancelled.cancel()
        await wait_all_tasks_blocked()
        assert queue.queued == 3
        queue.done(first, completed=True)
        await wait_all_tasks_blocked()
        assert served == [1]
        second = tickets[1]
        assert second is not None
        queue.done(second, completed=True)
    assert served == [1, 3]


# -- through a real MCP client --------------------------------------------------------------------

MEMORIES = [f"Memory {i:03d}: the deploy key for service {i:03d} rotates every week." for i in range(60)]


class GatedReranker:
    """The real cross-encoder, holding its first ``score`` call until the test opens the gate: the model
    stays busy exactly as long as the test needs, with no sleeps."""

    calibration = None  # the tests set the queue's pace themselves, not from the model's timing at load

    def __init__(self, inner: LocalCrossEncoder, timeout_s: float = 30.0) -> None:
        self.inner = inner
        self.timeout_s = timeout_s
        self.entered = anyio.Event()
        self.gate = anyio.Event()
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def blend(self) -> float:
        return self.inner.blend

    async def score(self, query: str, texts: list[str]) -> list[float]:
        self.calls.append(len(texts))
        if len(self.calls) == 1:
            self.entered.set()
            await self.gate.wait()
        return await self.inner.score(query, texts)


class WatchedQueue(RerankQueue):
    """The service's queue, telling the test when a search has asked for its place."""

    def __init__(self, settings: RerankerSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.asked = 0
        self.second = anyio.Event()

    def admit(self, query: str, texts: list[str], **options: Any) -> Admission:
        admission = super().admit(query, texts, **options)
        self.asked += 1
        if self.asked == 2:
            self.second.set()
        return admission


async def busy_server(
    settings: Settings, gated: GatedReranker, embedder: Any, **queue: Any
) -> tuple[MemoryService, WatchedQueue, Any]:
    service = MemoryService(settings, embedder=embedder, reranker=gated)  # type: ignore[arg-type]
    service.rerank_queue = watched = WatchedQueue(settings.reranker, **queue)
    await gated.inner.wait_ready(120)
    return service, watched, create_server(settings, service=service)


async def test_searches_behind_a_busy_cross_encoder_answer_at_once_in_the_hybrid_order(
    tmp_path: Path, cross_encoder_path: Path, embedder: Any, reranker: LocalCrossEncoder
):
    settings = Settings(
        store={"data_dir": tmp_path / "data"},
        reranker={"model": str(cross_encoder_path), "backend": "torch", "budget_s": 0.001},
    )
    gated = GatedReranker(reranker)
    service, queue, server = await busy_server(settings, gated, embedder)
    queue.seconds_per_token = 1.0  # the first search's deadline lies far beyond the gate's hold
    try:
        async with Client(server) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in MEMORIES]})
            first: dict[str, Any] = {}

            async def first_search() -> None:
                first.update(await call(client, "search", {"query": "deploy key rotation", "explain": True}))

            async with anyio.create_task_group() as group:
                group.start_soon(first_search)
                with anyio.fail_after(60):
                    await gated.entered.wait()
                # The model is busy with the first search: these answer without waiting for it (a search
                # that waited for the gate would fail here, not hang).
                with anyio.fail_after(60):
                    others = [
                        await call(client, "search", {"query": f"service {i:03d} key", "explain": True})
                        for i in range(3)
                    ]
                gated.gate.set()
        for answer in others:
            assert answer["search_method"] == "hybrid"
            assert answer["candidates"]["reranked"] == 0
            assert "rerank_ms" not in answer["timings_ms"]
            assert (
                "not reranked: the cross-encoder was busy: 1 search was queued for the cross-encoder"
                in (answer["message"])
            )
            assert "reranker.budget_s (0.001 s); this answer is in the hybrid's order" in answer["message"]
        assert first["search_method"] == "hybrid+rerank" and first["candidates"]["reranked"] == 50
        assert gated.calls[0] == 10 and sum(gated.calls) == 50  # MIN_CANDIDATES first, then a few at a time
        assert queue.queued == 0  # every place was given back
    finally:
        service.close()


async def test_a_search_behind_a_busy_cross_encoder_reranks_the_head_that_fits(
    tmp_path: Path, cross_encoder_path: Path, embedder: Any, reranker: LocalCrossEncoder
):
    settings = Settings(
        store={"data_dir": tmp_path / "data"},
        reranker={"model": str(cross_encoder_path), "backend": "torch", "budget_s": 70.5},
    )
    gated = GatedReranker(reranker, timeout_s=600)
    # A stopped clock and a known cost: every pair (all memories are as long) costs 1 s, so the first
    # search's 50 pairs are 50 s of work, and 20.5 s of the budget is left: 20 pairs. (Seconds this long
    # keep the second search's wait limit, 50.5 s, far beyond what the real first search takes.)
    service, queue, server = await busy_server(settings, gated, embedder, clock=lambda: 0.0)
    query = "deploy key rotation"
    queue.seconds_per_token = 1.0 / queue.tokens(query, MEMORIES[0])
    try:
        async with Client(server) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in MEMORIES]})
            second: dict[str, Any] = {}

            async def second_search() -> None:
                second.update(
                    await call(client, "search", {"query": query, "rerank_top_k": 60, "top_k": 30, "explain": True})
                )

            async with anyio.create_task_group() as group:
                group.start_soon(call, client, "search", {"query": query})
                with anyio.fail_after(60):
                    await gated.entered.wait()
                group.start_soon(second_search)
                with anyio.fail_after(60):
                    await queue.second.wait()
                gated.gate.set()
        assert second["search_method"] == "hybrid+rerank"
        assert second["candidates"]["reranked"] == 20
        assert "top 20 reranked by the cross-encoder" in second["message"]
        assert "Under load, only the top 20 of 60 candidates were reranked: 1 search was queued" in second["message"]
        # The reranked head comes first, with rerank scores; the rest follow in the hybrid's order, without
        # (a null score is left out of the answer).
        scores = [hit["scores"].get("rerank_score") for hit in second["hits"]]
        assert len(scores) == 30
        assert all(score is not None for score in scores[:20]) and all(score is None for score in scores[20:])
        # The first search (the same query) scored those 20 while the second waited: they came from the
        # score cache, and the model scored only the first search's 50.
        assert gated.calls[0] == 10 and sum(gated.calls) == 50
    finally:
        service.close()


async def test_a_search_stops_waiting_when_the_search_ahead_runs_past_its_prediction(
    tmp_path: Path, cross_encoder_path: Path, embedder: Any, reranker: LocalCrossEncoder
):
    settings = Settings(
        store={"data_dir": tmp_path / "data"},
        reranker={"model": str(cross_encoder_path), "backend": "torch", "budget_s": 0.5},
    )
    gated = GatedReranker(reranker)
    service, queue, server = await busy_server(settings, gated, embedder)
    queue.seconds_per_token = 1e-6  # both searches look instant: the second is admitted in full
    try:
        async with Client(server) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in MEMORIES]})
            async with anyio.create_task_group() as group:
                group.start_soon(call, client, "search", {"query": "deploy key"})
                with anyio.fail_after(60):
                    await gated.entered.wait()
                # The first search holds the model until this one has given up waiting for it.
                with anyio.fail_after(60):
                    second = await call(client, "search", {"query": "deploy key", "explain": True})
                gated.gate.set()
        assert second["search_method"] == "hybrid" and second["candidates"]["reranked"] == 0
        assert "the cross-encoder was busy: the searches ahead took longer than predicted" in second["message"]
        assert "reranker.budget_s (0.5 s); this answer is in the hybrid's order" in second["message"]
        assert gated.calls[0] == 10
        assert queue.queued == 0
    finally:
        service.close()


async def test_the_rerank_tool_refuses_at_once_when_the_queue_would_outlast_its_timeout(
    tmp_path: Path, cross_encoder_path: Path, embedder: Any, reranker: LocalCrossEncoder
):
    settings = Settings(store={"data_dir": tmp_path / "data"}, reranker={"model": str(cross_encoder_path)})
    gated = GatedReranker(reranker, timeout_s=5.0)
    service, queue, server = await busy_server(settings, gated, embedder)
    queue.seconds_per_token = 1.0  # the queued search looks like minutes of work
    try:
        async with Client(server) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in MEMORIES]})
            async with anyio.create_task_group() as group:
                group.start_soon(call, client, "search", {"query": "deploy key"})
                with anyio.fail_after(60):
                    await gated.entered.wait()
                with anyio.fail_after(60):
                    message = await call_error(client, "rerank", {"query": "deploy", "documents": ["a", "b"]})
                gated.gate.set()
        assert "The cross-encoder is busy: 1 search is queued for it" in message
        assert "more than reranker.timeout_s (5 s)" in message
        assert gated.calls[0] == 10  # the search ahead was scoring (the rest of it depends on this CPU's pace)
    finally:
        service.close()


async def test_a_search_deadline_reranks_what_fits_and_says_when_nothing_does(
    tmp_path: Path, cross_encoder_path: Path, embedder: Any, reranker: LocalCrossEncoder
):
    settings = Settings(store={"data_dir": tmp_path / "data"}, reranker={"model": str(cross_encoder_path)})
    service = MemoryService(settings, embedder=embedder, reranker=reranker)
    await reranker.wait_ready(120)
    try:
        async with Client(create_server(settings, service=service)) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in MEMORIES]})
            service.rerank_queue.budget_s = 600.0  # however busy this machine is, the queue trims nothing
            roomy = await call(
                client, "search", {"query": "deploy key rotation", "deadline_ms": 600_000, "explain": True}
            )
            assert roomy["search_method"] == "hybrid+rerank" and roomy["candidates"]["reranked"] == 50
            # The same search again: every score comes from the cache, whatever the model costs.
            service.rerank_queue.seconds_per_token = 1.0
            again = await call(client, "search", {"query": "deploy key rotation", "deadline_ms": 1000, "explain": True})
            assert again["search_method"] == "hybrid+rerank" and again["hits"] == roomy["hits"]
            # A new query at a second per token: not even the ten worth scoring fit in a second, none are scored.
            tight = await call(client, "search", {"query": "weekly key rotation", "deadline_ms": 1000, "explain": True})
            assert tight["search_method"] == "hybrid" and tight["candidates"]["reranked"] == 0
            assert "not even the top 10 candidates could be scored within the search's deadline_ms" in tight["message"]
            plain = await call(client, "search", {"query": "weekly key rotation", "rerank": False})
            assert [hit["id"] for hit in tight["hits"]] == [hit["id"] for hit in plain["hits"]]
            status = (await call(client, "status", {"detail": True}))["detail"]
            assert status["reranker"]["queue"]["skipped"] == 1 and status["reranker"]["queue"]["full"] == 1
            assert status["reranker"]["cache"]["hits"] == 50 and status["reranker"]["cache"]["entries"] == 50
            message = await call_error(client, "search", {"query": "deploy", "deadline_ms": 5})
            assert "deadline_ms" in message and "10" in message
    finally:
        service.close()


# -- the command ----------------------------------------------------------------------------------


def test_stress_command_reports_every_figure_with_no_errors_and_no_lost_writes(
    tmp_path: Path, cross_encoder_path: Path
):
    """Two nodes on a Chroma server it starts: the figures of one server, and the nodes' own rows."""
    out = tmp_path / "stress.json"
    result = run_cli(
        [
            "-m",
            "mimir_mcp",
            "stress",
            "--nodes",
            "2",
            "--clients",
            "4",
            "--duration",
            "4",
            "--memories",
            "100",
            "--dataset",
            str(tmp_path / "no-dataset"),
            "--reranker",
            str(cross_encoder_path),
            "--json",
            str(out),
        ],
        tmp_path,
        cross_encoder_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["errors"] == 0, report["error_samples"]
    assert report["writes"]["lost"] == 0 and report["writes"]["acknowledged"] > 0
    assert report["server_memories"] == 100 + report["writes"]["acknowledged"]
    operations = report["operations"]
    assert set(operations) == {"remember", "search", "search_no_rerank", "status"}
    assert all(operations[name]["count"] > 0 for name in operations)
    rerank = report["rerank"]
    assert rerank["asked"] == operations["search"]["count"] == rerank["full"] + rerank["trimmed"] + rerank["fell_back"]
    assert report["rss_mb"] > 0
    nodes = report["nodes"]
    assert [node["memories"] for node in nodes["per_node"]] == [report["server_memories"]] * 2
    assert [node["lost"] for node in nodes["per_node"]] == [0, 0]
    assert nodes["pairs"]["sent"] > 0 and nodes["pairs"]["new_to_exactly_one"] == nodes["pairs"]["sent"]
    assert nodes["visibility"]["seen"] > 0 and nodes["visibility"]["not_seen"] == 0
    printed = result.stdout
    for line in ("throughput:", "search_no_rerank", "p95", "p99", "reranked searches:", "errors: 0", "0 lost"):
        assert line in printed
    assert "2 nodes on one Chroma server" in printed and "new to exactly one node" in printed
    assert "measured after both were ready" in printed
