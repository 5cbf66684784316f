"""The pydantic types of ``status``: each part's state (the models, the store, the BM25 index, the rerank
queue and score cache) and the answer agents get, concise by default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from mimir_mcp.models import DETAIL

ModelState = Literal["disabled", "loading", "ready", "failed"]


class ScoreCacheStats(BaseModel):
    """What the reranker score cache holds and how often it answered."""

    entries: int = Field(description="Scores held now.")
    bytes: int = Field(description="Estimated memory the entries take (see ``ScoreCache.entry_bytes``).")
    max_entries: int = Field(description="Most entries held; 0: the cache is off.")
    max_bytes: int = Field(description="Most estimated bytes held.")
    hits: int = Field(description="Candidates whose score came from the cache, since start.")
    misses: int = Field(description="Candidates looked up and not found, since start.")
    evictions: int = Field(description="Entries dropped to stay within the bounds, since start.")
    hit_rate: float | None = Field(description="hits / (hits + misses); null before the first lookup.")


class RerankQueueStatus(BaseModel):
    """The cross-encoder's queue (admission control), shared by every search and ``rerank`` call."""

    queued: int = Field(description="Searches and rerank calls scoring now or waiting to.")
    pending_s: float = Field(description="Predicted seconds until everything queued now has been scored.")
    budget_s: float = Field(description="How long a reranked search may take, waiting included, before it is trimmed.")
    ms_per_1k_tokens: float = Field(description="Measured scoring cost now (a moving average), per 1,000 tokens.")
    fastest_ms_per_1k_tokens: float | None = Field(description="The fastest run measured: the cost on an idle CPU.")
    measured_runs: int
    full: int = Field(description="Searches since start whose candidates were all scored.")
    trimmed: int = Field(description="Searches since start that scored fewer candidates to stay within the budget.")
    skipped: int = Field(description="Searches since start answered in the hybrid's order because the queue was full.")


class RerankerStatus(BaseModel):
    available: bool
    enabled: bool
    model: str
    device: str
    state: ModelState
    error: str | None = None
    load_seconds: float | None = None
    backend: str = Field(description="What scores: onnx-int8, or torch (and why, while the int8 copy is not ready).")
    batch_size: int
    max_length: int | None
    blend: float = Field(
        default=1.0,
        description="Weight of the cross-encoder against the hybrid in the reranked order (1: cross-encoder alone).",
    )
    blend_source: str = Field(default="default", description="Where the blend weight came from.")
    queue: RerankQueueStatus | None = None
    cache: ScoreCacheStats | None = None
    counters: dict[str, Any] | None = Field(
        default=None, description="A remote reranker's calls, HTTP requests, failures, retries and last error."
    )


class EmbeddingStatus(BaseModel):
    model: str
    resolved_path: str | None = Field(description="Local folder the weights load from, when bundled or local.")
    device: str
    state: ModelState
    error: str | None = None
    dimension: int | None = None
    load_seconds: float | None = None
    query_backend: str = Field(
        default="torch", description="What embeds search queries: the exact fp32 ONNX graph once built, else torch."
    )


class RepairReport(BaseModel):
    """What a rebuild of the store from the record catalogue (or of the catalogue from the store) did, for
    the log and ``status``."""

    at: str = Field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        description="When it finished (UTC, ISO 8601).",
    )
    reason: str = Field(description="What was wrong: what Chroma or SQLite said, or that the store came back empty.")
    memories: int = Field(description="Memories in the rebuilt part.")
    kept_as: str | None = Field(
        default=None, description="Where the damaged part is kept (never deleted); unset where nothing was set aside."
    )
    seconds: float = Field(description="How long the rebuild took.")


class StoreStatus(BaseModel):
    kind: Literal["embedded", "server", "in-memory"]
    location: str
    collection: str
    embedding_model: str | None = Field(default=None, description="The model whose vectors the collection holds.")
    embedding_dimension: int | None = None
    state: ModelState
    error: str | None = None
    memories: int
    namespaces: dict[str, int]
    counted_s_ago: float | None = Field(
        default=None,
        description="How old the counts are. This process's own writes count at once; others' are counted again in "
        "the background when a status finds the counts over a second old, so status never waits for a count.",
    )
    repaired: RepairReport | None = Field(
        default=None,
        description="Set when this process found the collection unreadable (a process killed while Chroma wrote "
        "its files) and rebuilt it from the record catalogue: when, why, how many memories, and where the damaged "
        "collection is kept.",
    )
    catalogue_repaired: RepairReport | None = Field(
        default=None,
        description="Set when this process found the record catalogue damaged, kept it aside and filled a new one "
        "from the store.",
    )
    last_write_error: str | None = Field(
        default=None,
        description="Set when this process's last write failed for lack of disk space: when, and where; "
        "cleared by the next write that succeeds.",
    )


class LexicalStatus(BaseModel):
    backend: str
    path: str
    documents: int
    in_sync: bool = Field(description="True when the BM25 index holds exactly the store's memories.")


class SearchStats(BaseModel):
    searches: int
    reranked_searches: int
    last_timings_ms: dict[str, float] | None
    mean_total_ms: float | None


class StatusResponse(BaseModel):
    reranker: RerankerStatus
    remote_reranker: RerankerStatus | None = Field(
        default=None, description="The hosted rerank API tried before the local cross-encoder, when configured."
    )
    embedding: EmbeddingStatus
    store: StoreStatus
    bm25: LexicalStatus | None
    search: SearchStats | None = Field(
        default=None,
        description="Searches since start and their timings: the whole server's, so not shown to a "
        "token held to some namespaces.",
    )
    versions: dict[str, str]
    uptime_s: float

    def summary(self, *, detail: bool = False) -> StatusSummary:
        """What an agent needs to know by default: can it search, with which models, how many memories, and
        what is wrong and how to fix it; this whole report under ``detail`` when asked."""
        problems = [
            f"{name}: {part.error}"
            for name, part in (
                ("store", self.store),
                ("embedding", self.embedding),
                ("reranker", self.reranker),
                ("remote reranker", self.remote_reranker),
            )
            if part is not None and part.error
        ]
        for part, repaired in (("store", self.store.repaired), ("catalogue", self.store.catalogue_repaired)):
            if repaired is not None and repaired.kept_as is None:
                problems.append(f"{part}: repaired at {repaired.at} ({repaired.reason})")
            elif repaired is not None:
                problems.append(
                    f"{part}: rebuilt at start ({repaired.reason}); {repaired.memories} memories; the damaged part "
                    f"is kept as {repaired.kept_as}"
                )
        if self.store.last_write_error is not None:
            problems.append(f"writes: {self.store.last_write_error}")
        reranker = self.reranker
        return StatusSummary(
            ready=self.store.state == "ready" and self.embedding.state == "ready",
            memories=self.store.memories,
            namespaces=self.store.namespaces,
            store=f"{self.store.kind}: {self.store.location}",
            embedding=f"{self.embedding.model} ({self.embedding.state}, {self.embedding.query_backend})",
            reranker=f"{reranker.model} ({reranker.state}, {reranker.backend})" if reranker.enabled else "off",
            remote_reranker=None
            if self.remote_reranker is None
            else f"{self.remote_reranker.model} ({self.remote_reranker.state})",
            problems=problems,
            detail=self if detail else None,
        )


class StatusSummary(BaseModel):
    """``status`` by default: a few lines; the full report with ``detail: true``."""

    ready: bool = Field(description="Whether search and remember work: the store and the bi-encoder are loaded.")
    memories: int
    namespaces: dict[str, int]
    store: str
    embedding: str = Field(description="The bi-encoder, its state and what embeds queries.")
    reranker: str = Field(description="The cross-encoder, its state and backend; 'off' when disabled.")
    remote_reranker: str | None = None
    problems: list[str] = Field(default_factory=list, description="What failed, and what to do about it.")
    detail: Annotated[StatusResponse | None, DETAIL] = None
