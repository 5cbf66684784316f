"""The search pipeline, in stages (``SearchPipeline.run``): retrieve (the dense arm, BM25, and BM25 with
each memory's neighbours where the fusion policy calls for it), fuse (the filter check, then the fusion
policy, ``policy.FusionPolicy``), rerank (a remote API, else the local cross-encoder; its order alone or
blended with the hybrid's), then ``min_score``, recency (``prefer_recent``), MMR and the hits shown; a
``when`` bounds it all in time first (``time_scope``).

It reports the method it actually used: ``hybrid+rerank`` only when the cross-encoder scored the
candidates, ``hybrid`` otherwise, with the reason in ``message``; ``keywords`` in place of
``hybrid`` when the dense arm did not run (the embedding model loading or failed).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from mimir_mcp.config import SearchSettings
from mimir_mcp.embedding import TextEmbedder
from mimir_mcp.errors import StoreUnavailableError
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import (
    Hit,
    HitScores,
    MemoryRecord,
    SearchCandidates,
    SearchResponse,
)
from mimir_mcp.rerank import Reranker, RerankOutcome, rerank_or_fallback
from mimir_mcp.rerank.admission import RerankQueue
from mimir_mcp.rerank.base import can_rerank
from mimir_mcp.search.diversity import mmr
from mimir_mcp.search.fusion import blend_scores
from mimir_mcp.search.policy import FusionPolicy
from mimir_mcp.search.recency import prefer_recent
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.search.snippet import snippet
from mimir_mcp.search.stages import Candidate, FirstStage, Ranked, Retrieved
from mimir_mcp.search.time_scope import clock, time_scope
from mimir_mcp.store.base import VectorStore

logger = logging.getLogger(__name__)

# Kept back from a deadline for what follows reranking (reading the shown hits, building the answer).
FINISH_RESERVE_S = 0.005
# What a search answers by default while the cross-encoder has failed to load (``explain`` gives the cause).
LOAD_FAILED = "Not reranked: the cross-encoder failed to load; `status` gives the cause and the fix."


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class SearchPipeline:
    def __init__(
        self,
        settings: SearchSettings,
        embedder: TextEmbedder,
        store: VectorStore | None,
        lexical: LexicalIndex,
        reranker: Reranker,
        rerank_queue: RerankQueue | None = None,
        *,
        remote: Reranker | None = None,
        unready: str | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        # None while the store opens: the keyword arms answer from the catalogue alone (``unready`` says why).
        self.store = store
        # Why the store cannot answer the dense arm yet (it is still opening), or None.
        self.unready = unready
        self.lexical = lexical
        self.reranker = reranker
        # Shared by every search of the process: under load it trims or skips reranking (admission.py).
        self.rerank_queue = rerank_queue
        # A hosted rerank API, tried before the local cross-encoder (None: not configured).
        self.remote = remote
        self.policy = FusionPolicy.from_settings(settings)

    def _dense(self, vector: Any, depth: int, request: SearchRequest) -> list[tuple[str, float]]:
        """Nearest memories for the request's filters.

        A Chroma ``where`` clause turns the HNSW search into a filtered scan (300 ms at 100k memories
        here, against a few ms without). When the namespace holds most of the memories and there is
        no other filter, it is cheaper to search unfiltered a little deeper and drop other namespaces
        afterwards (the pipeline re-checks every filter on the records anyway).
        """
        assert self.store is not None, "the dense arm runs once the store is open (_arms_ready)"
        where = request.where
        if not where.selects_by_content:
            total = self.lexical.count()
            share = (
                1.0
                if request.namespace is None or total == 0
                else (self.lexical.namespace_counts().get(request.namespace, 0) / total)
            )
            if share >= 0.5:
                return self.store.query(vector, min(math.ceil(depth / share), total or depth))
        return self.store.query(vector, depth, where=where)

    def _cosine_spread(self, request: SearchRequest) -> float | None:
        """The searched namespaces' cosine spread, the dense arm's unit in the fusion; measured once per
        tenth of growth (``LexicalIndex.cosine_spread``). A store that cannot hand its vectors back leaves
        the dense arm standardized, and says so in the log."""
        assert self.store is not None
        try:
            return self.lexical.cosine_spread(request.where.scope, self.store.vectors)
        except Exception as exc:  # a failing read must not fail the search: the fusion has a rule without it
            logger.warning("could not read stored vectors for the cosine spread: %s: %s", type(exc).__name__, exc)
            return None

    def _allowed(self, ids: list[str], request: SearchRequest) -> set[str]:
        """Which candidates pass the request's filters, re-checked here so both arms follow one rule.

        With only a namespace, the check needs no records (the index holds every memory's namespace),
        so only the hits shown are read from SQLite later: at 100k memories that skips reading ~200 rows
        per search. Other filters are checked by the catalogue's one SQL rule over the candidates.
        """
        where = request.where
        if where.selects_by_content:
            return self.lexical.catalogue.passing(ids, where)
        namespaces = self.lexical.namespaces_of(ids)
        return {
            memory_id
            for memory_id, namespace in namespaces.items()
            if request.namespace is None or namespace == request.namespace
        }

    async def _hydrate(self, records: dict[str, MemoryRecord], ids: list[str]) -> None:
        """Read the records of ``ids`` not read yet; a memory deleted meanwhile simply stays missing."""
        if any(memory_id not in records for memory_id in ids):
            await anyio.to_thread.run_sync(self._read_missing, records, ids)

    def _read_missing(self, records: dict[str, MemoryRecord], ids: list[str]) -> None:
        """Blocking ``_hydrate``."""
        missing = [memory_id for memory_id in ids if memory_id not in records]
        if missing:
            records.update(self.lexical.get(missing))

    async def run(self, request: SearchRequest) -> SearchResponse:
        """The search within the time its `when` reads as. A range 'auto' found in the query applies only
        where it narrows: one that holds none of the memories searched, or all of them, is left out, the
        query searched whole, and the answer says so."""
        scope = time_scope(
            request.when,
            request.tz,
            self.settings,
            query=request.query,
            created_after=request.created_after,
            created_before=request.created_before,
        )
        bounded = dataclasses.replace(
            request,
            query=scope.query or request.query,
            created_after=scope.created_after,
            created_before=scope.created_before,
            when=None,
        )
        shown = scope.shown
        if scope.guessed and shown is not None:
            count = self.lexical.catalogue.count  # the memories searched within the range, and without it
            held, searched = await anyio.to_thread.run_sync(lambda: (count(bounded.where), count(request.where)))
            if held in (0, searched):
                bounded = dataclasses.replace(request, when=None)
                note = "it holds no memory searched" if held == 0 else "it holds every memory searched"
                shown = shown.model_copy(update={"note": f"Not applied: {note}.", "query": None})
        response = await self._run(bounded)
        response.time_range = shown
        return response

    async def _run(self, request: SearchRequest) -> SearchResponse:
        """The search, stage by stage: retrieve, fuse (with the filter check), rerank, min_score, recency, MMR,
        present."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        request, without_meaning = await self._arms_ready(request)
        retrieved = await self._retrieve(request, timings)
        first = await self._fuse_stage(request, retrieved, timings)
        ranked = await self._rerank_stage(request, first, started, timings)
        ordered, notes, method = ranked.ordered, [], _first_stage_method(request.arms) + ranked.method
        caveats = [ranked.caveat] if ranked.caveat else []
        if without_meaning:
            notes.append(without_meaning)
            caveats.append(without_meaning)
        if request.min_score is not None:
            if ranked.reranked:
                ordered = [item for item in ordered if item.rerank is not None and item.rerank >= request.min_score]
            else:
                notes.append("min_score was not applied because it compares rerank scores and nothing was reranked.")
                caveats.append(notes[-1])
        if request.prefer_recent > 0 and ordered:
            ordered, note = await self._prefer_recent(request, first, ordered, ranked.reranked)
            method += "+recency"
            notes.append(note)
        if request.diversity > 0 and ordered:
            t0 = time.perf_counter()
            ordered, note = await self._diversify(ordered, ranked.reranked, request)
            timings["mmr_ms"] = _ms(time.perf_counter() - t0)
            method += "+mmr"
            notes.append(note)
        hits = await self._present(request, first, ordered[: request.top_k], timings)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        return SearchResponse(
            query=request.query,
            hits=hits,
            search_method=method,
            message=" ".join([ranked.message, *notes]),
            caveat=" ".join(caveats) or None,
            reranker_model=ranked.model,
            candidates=SearchCandidates(
                dense=len(first.arms.get("dense", [])),
                bm25=len(first.arms.get("bm25", [])),
                context=len(first.arms["context"]) if "context" in first.arms else None,
                fused=len(first.fused),
                reranked=ranked.reranked,
            ),
            fusion=self._policy(request).report(first.fusion, retrieved.decision),
            timings_ms=timings,
        )

    async def _arms_ready(self, request: SearchRequest) -> tuple[SearchRequest, str | None]:
        """The request without its dense arm while the embedding model is still loading (or failed to), and
        why, for the answer: a search on a first start answers at once from the keyword arms instead of
        waiting for the model. A request of the dense arm alone waits for it."""
        status = self.embedder.status()
        if "dense" not in request.arms or (status.state == "ready" and self.unready is None):
            return request, None
        keywords = tuple(arm for arm in request.arms if arm != "dense")
        if not keywords:  # the caller waited for the store; the embedder is waited for here
            try:
                await self.embedder.ready()
            except Exception as exc:
                raise StoreUnavailableError(f"The embedding model failed to load: {type(exc).__name__}: {exc}") from exc
            return request, None
        loading = "is still loading" if status.state == "loading" else f"failed to load ({status.error})"
        why = self.unready or f"The embedding model {loading}"
        note = (
            f"{why}: these hits are from keywords alone (BM25), without the meaning of the query; search again "
            "once it is ready."
        )
        return dataclasses.replace(request, arms=keywords), note

    async def _retrieve(self, request: SearchRequest, timings: dict[str, float]) -> Retrieved:
        """Stage 1: the dense arm and the BM25 arms (own text; with its neighbours where the fusion policy
        calls for it), side by side in worker threads."""
        depth = self._depth(request)
        policy = self._policy(request)
        found = Retrieved(decision=policy.decide_context(request.query, request.where.scope, None))

        def dense_arm() -> None:
            # One trip to a worker thread for both steps: under load each trip waits for a core.
            t0 = time.perf_counter()
            vector = self.embedder.encode_query(request.query)
            t1 = time.perf_counter()
            found.dense = self._dense(vector, depth, request)
            t2 = time.perf_counter()
            timings["embed_ms"], timings["dense_ms"] = _ms(t1 - t0), _ms(t2 - t1)
            if len(request.arms) > 1:  # a read of stored vectors the first time, and once per tenth of growth
                found.cosine_spread = self._cosine_spread(request)
                timings["spread_ms"] = _ms(time.perf_counter() - t2)

        def lexical_arms() -> None:
            found.decision = policy.decide_context(request.query, request.where.scope, self.lexical)
            for arm in [arm for arm in policy.arms(request.arms, found.decision.runs) if arm != "dense"]:
                hits, found.attainable[arm] = self.lexical.search_with_attainable(
                    request.query, depth, where=request.where, context=arm == "context"
                )
                found.lexical[arm] = [(hit.id, hit.score) for hit in hits]

        async def run_dense() -> None:
            await anyio.to_thread.run_sync(dense_arm)

        async def run_lexical() -> None:
            t0 = time.perf_counter()
            await anyio.to_thread.run_sync(lexical_arms)
            timings["bm25_ms"] = _ms(time.perf_counter() - t0)

        async with anyio.create_task_group() as group:
            if "dense" in request.arms:
                group.start_soon(run_dense)
            if "bm25" in request.arms or "context" in request.arms:
                group.start_soon(run_lexical)
        return found

    async def _fuse_stage(self, request: SearchRequest, found: Retrieved, timings: dict[str, float]) -> FirstStage:
        """Stage 2: the filter check, the fusion and reading the records that will be needed, in one trip
        to a worker thread."""
        depth = self._depth(request)

        def first_stage() -> FirstStage:
            candidates = [i for i, _ in found.dense] + [i for hits in found.lexical.values() for i, _ in hits]
            allowed = self._allowed(list(dict.fromkeys(candidates)), request)
            arms = (
                {"dense": [(i, s) for i, s in found.dense if i in allowed][:depth]} if "dense" in request.arms else {}
            )
            arms.update({arm: [(i, s) for i, s in hits if i in allowed] for arm, hits in found.lexical.items()})
            fusion = self._policy(request).fuse(arms, found.attainable, found.cosine_spread)
            wanted = request.rerank_top_k if request.rerank else request.top_k
            records: dict[str, MemoryRecord] = {}
            self._read_missing(records, [memory_id for memory_id, _ in fusion.order[:wanted]])
            return FirstStage(arms, fusion, records)

        t0 = time.perf_counter()
        first = await anyio.to_thread.run_sync(first_stage)
        timings["fusion_ms"] = _ms(time.perf_counter() - t0)
        return first

    async def _rerank_stage(
        self, request: SearchRequest, first: FirstStage, started: float, timings: dict[str, float]
    ) -> Ranked:
        """Stage 3: the fused head scored by a reranker when one can (remote, then local), or the hybrid's
        order with the reason it stands, in ``message``."""
        ordered = [Candidate(memory_id, score) for memory_id, score in first.fused]
        hybrid = self._describe(first.arms, self._policy(request))
        if not request.rerank:
            if not can_rerank(self.reranker, self.remote):
                return Ranked(ordered, f"{hybrid}; reranking is switched off here (MIMIR_RERANKER_ENABLED=false).")
            return Ranked(ordered, f"{hybrid}; reranking was not requested (rerank=false).")
        if not first.fused:
            return Ranked(ordered, f"{hybrid}; no memory matched, so there was nothing to rerank.")
        if request.deadline_ms is not None and self._time_left(started, request) <= 0:
            spent = _ms(time.perf_counter() - started)
            why = (
                f"not reranked: the first stage took {spent:g} ms of the search's deadline_ms "
                f"({request.deadline_ms} ms), which left no time for the cross-encoder."
            )
            return Ranked(ordered, f"{hybrid}, {why}", caveat=why[0].upper() + why[1:])
        window = ordered[: request.rerank_top_k]  # its records were read in the fusion stage
        head = [item for item in window if item.id in first.records]
        texts = [first.records[item.id].text for item in head]
        outcome, used, remote_failure, remote_seconds = await self._rerank(request, started, texts)
        if outcome.attempted or remote_seconds:
            timings["rerank_ms"] = _ms(outcome.seconds + remote_seconds)
        if outcome.scores is None:
            why = outcome.reason
            if remote_failure:
                why = f"{remote_failure.rstrip('.')}; the local cross-encoder: {outcome.reason}"
            # A model that failed to load stays failed for minutes at least (until a restart, or the next try
            # when the hub could not be reached): the default answer of every search would repeat its cause
            # and fix, which the agent cannot act on and `status` already gives.
            failed = not remote_failure and not outcome.attempted and self.reranker.status().state == "failed"
            caveat = LOAD_FAILED if failed else f"Not reranked: {why}"
            return Ranked(ordered, f"{hybrid}, not reranked: {why}", caveat=caveat)
        # Under load the queue may admit only the best-fused part of the head; the rest keeps its order.
        count = len(outcome.scores)
        reranked, how = self._reorder(head[:count], outcome.scores, used)
        by = (
            f"the remote reranker {self._model_name(used)}"
            if used is self.remote
            else f"the cross-encoder {used.model!r}"
        )
        message = f"{hybrid}, top {count} reranked by {by}{how}."
        caveats = []
        if remote_failure:
            caveats.append(f"The local cross-encoder stood in because {remote_failure.rstrip('.')}.")
        if outcome.note:
            caveats.append(f"{outcome.note}.")
        message = " ".join([message, *caveats])
        return Ranked(
            reranked + head[count:] + ordered[len(window) :],
            message,
            method="+remote_rerank" if used is self.remote else "+rerank",
            reranked=count,
            model=self._model_name(used),
            caveat=" ".join(caveats) or None,
        )

    async def _present(
        self, request: SearchRequest, first: FirstStage, shown: list[Candidate], timings: dict[str, float]
    ) -> list[Hit]:
        """Stage 4: the hits as the caller sees them, each with every arm's rank and score."""
        records = first.records
        t0 = time.perf_counter()
        await self._hydrate(records, [item.id for item in shown])
        timings["hydrate_ms"] = _ms(time.perf_counter() - t0)
        ranks = {
            arm: {memory_id: (rank, score) for rank, (memory_id, score) in enumerate(hits, start=1)}
            for arm, hits in first.arms.items()
        }

        def scores_for(item: Candidate) -> HitScores:
            dense_rank, dense_score = ranks.get("dense", {}).get(item.id, (None, None))
            bm25_rank, bm25_score = ranks.get("bm25", {}).get(item.id, (None, None))
            context_rank, context_score = ranks.get("context", {}).get(item.id, (None, None))
            return HitScores(
                dense_rank=dense_rank,
                dense_similarity=None if dense_score is None else round(dense_score, 6),
                bm25_rank=bm25_rank,
                bm25_score=None if bm25_score is None else round(bm25_score, 6),
                context_rank=context_rank,
                context_score=None if context_score is None else round(context_score, 6),
                fused_score=round(item.fused, 8),
                rerank_score=item.rerank,
                blended_score=item.blended,
                age_days=None if item.age_days is None else round(item.age_days, 2),
                recency=None if item.recency is None else round(item.recency, 4),
            )

        def build_hits() -> list[Hit]:
            return [_hit(records[item.id], item, scores_for(item), request) for item in shown if item.id in records]

        # A snippet scans every word of its memory: off the event loop when there is one to make.
        long_texts = request.max_chars is not None and any(
            len(records[item.id].text) > request.max_chars for item in shown if item.id in records
        )
        return await anyio.to_thread.run_sync(build_hits) if long_texts else build_hits()

    async def _prefer_recent(
        self, request: SearchRequest, first: FirstStage, ordered: list[Candidate], reranked: int
    ) -> tuple[list[Candidate], str]:
        """The reranked candidates (the top ``rerank_top_k`` fused ones when nothing was reranked) reordered
        with recency (``recency.prefer_recent``); the rest follow in their order."""
        pool = ordered[: reranked or max(request.rerank_top_k, request.top_k)]
        await self._hydrate(first.records, [item.id for item in pool])
        half_life = self.settings.recency_half_life_days
        blended = prefer_recent(
            pool, first.records, clock(self.settings), weight=request.prefer_recent, half_life_days=half_life
        )
        note = (
            f"The top {len(pool)} were reordered with recency (prefer_recent {request.prefer_recent:g}, half-life "
            f"{half_life:g} days)."
        )
        return blended + ordered[len(pool) :], note

    def _policy(self, request: SearchRequest) -> FusionPolicy:
        """The fusion policy of this search: the request's own (evaluation, the lab), else the configured one."""
        return request.policy or self.policy

    def _depth(self, request: SearchRequest) -> int:
        """Candidates per arm: the configured depth, or more when the caller shows or reranks more."""
        return max(self.settings.candidate_depth, request.top_k, request.rerank_top_k)

    async def _rerank(
        self, request: SearchRequest, started: float, texts: list[str]
    ) -> tuple[RerankOutcome, Reranker, str | None, float]:
        """Score ``texts`` with the first reranker that can: the remote API when configured, then the local
        cross-encoder. Returns the outcome (scores, or why there are none), the reranker it came from, why
        the remote API did not score (``None`` when it did or is not configured) and the seconds it cost."""

        def time_left() -> float | None:
            return None if request.deadline_ms is None else self._time_left(started, request)

        remote_failure, remote_seconds = None, 0.0
        if self.remote is not None:
            outcome = await rerank_or_fallback(self.remote, request.query, texts, None, deadline_s=time_left())
            if outcome.scores is not None:
                return outcome, self.remote, None, 0.0
            remote_failure = f"the remote reranker {self._model_name(self.remote)} did not score: {outcome.reason}"
            remote_seconds = outcome.seconds
            left = time_left()
            if left is not None and left <= 0:
                nothing = RerankOutcome(
                    scores=None, reason="no time was left of the search's deadline_ms", seconds=0.0, attempted=False
                )
                return nothing, self.reranker, remote_failure, remote_seconds
        outcome = await rerank_or_fallback(
            self.reranker, request.query, texts, self.rerank_queue, deadline_s=time_left()
        )
        return outcome, self.reranker, remote_failure, remote_seconds

    def _model_name(self, reranker: Reranker) -> str:
        """How the response names a reranker: the local model's name, or ``remote:provider:model``."""
        if reranker is self.remote:
            settings = getattr(reranker, "settings", None)
            provider = getattr(settings, "provider", "remote")
            return f"remote:{provider}:{reranker.model}"
        return reranker.model

    async def _diversify(
        self, ordered: list[Candidate], reranked: int, request: SearchRequest
    ) -> tuple[list[Candidate], str]:
        """The hits picked by maximal marginal relevance (``diversity.mmr``) from the reranked candidates
        (the top ``rerank_top_k`` fused ones when nothing was reranked), by their final scores; the rest
        follow in their order. Each memory's own stored vector measures how alike two hits are."""
        pool = ordered[: reranked or request.rerank_top_k]
        store = self.store
        assert store is not None, "a search with diversity waits for the store (MemoryService._searchable)"
        vectors = await anyio.to_thread.run_sync(store.vectors, [item.id for item in pool])
        dimension = len(next(iter(vectors.values()))) if vectors else 1
        matrix = np.stack([vectors.get(item.id, np.zeros(dimension, dtype=np.float32)) for item in pool])
        relevance = [item.score for item in pool]
        picked = mmr(relevance, matrix, top_k=min(request.top_k, len(pool)), diversity=request.diversity)
        chosen = set(picked)
        rest = [item for i, item in enumerate(pool) if i not in chosen]
        note = (
            f"The hits were picked by maximal marginal relevance (diversity {request.diversity:g}) from the top "
            f"{len(pool)} {'reranked' if reranked else 'fused'} candidates."
        )
        return [pool[i] for i in picked] + rest + ordered[len(pool) :], note

    @staticmethod
    def _time_left(started: float, request: SearchRequest) -> float:
        """Seconds of the request's deadline left for reranking, after the reserve for finishing."""
        assert request.deadline_ms is not None
        return started + request.deadline_ms / 1000 - time.perf_counter() - FINISH_RESERVE_S

    @staticmethod
    def _describe(arms: dict[str, list[tuple[str, float]]], policy: FusionPolicy) -> str:
        """The first stage in words, for the message: which arms ran and how they were fused."""
        names = {"dense": "dense", "bm25": "BM25", "context": "BM25 with each memory's neighbours"}
        return f"Hybrid ({' + '.join(names[arm] for arm in arms)}; fused by {policy.describe()})"

    def _reorder(self, head: list[Candidate], scores: list[float], reranker: Reranker) -> tuple[list[Candidate], str]:
        """The reranked head in its final order, and how that order was made (for the message).

        With the reranker's blend weight below 1, the order follows its scores blended with the hybrid's
        (``fusion.blend_scores``); at 1 it follows the cross-encoder alone.
        """
        weight = reranker.blend
        blended: list[float | None]
        if weight >= 1.0:
            keys, how = scores, ""
            blended = [None] * len(head)
        else:
            keys = blend_scores(scores, [item.fused for item in head], weight)
            blended = [round(key, 6) for key in keys]
            how = f", blended with the hybrid order (cross-encoder weight {weight:g}, standardized scores)"
        order = sorted(range(len(head)), key=lambda i: -keys[i])
        return [Candidate(head[i].id, head[i].fused, scores[i], blended[i]) for i in order], how


def _first_stage_method(arms: tuple[str, ...]) -> str:
    """The first stage's name in ``search_method``: ``hybrid`` when the dense arm ran beside a keyword
    arm, ``keywords`` without it, ``dense`` alone (evaluation's single arms)."""
    if "dense" not in arms:
        return "keywords"
    return "hybrid" if len(arms) > 1 else "dense"


def _hit(record: MemoryRecord, item: Candidate, scores: HitScores, request: SearchRequest) -> Hit:
    """The hit as the caller sees it: scores and order were settled on the whole text; only what is
    shown of a long memory is cut to ``request.max_chars``."""
    text = record.text
    if request.max_chars is not None and len(text) > request.max_chars:
        text = snippet(text, request.query, request.max_chars)
    score = round(item.fused, 8) if item.rerank is None and item.final is None else item.score
    return Hit.shown(record, text, score=score, scores=scores)
