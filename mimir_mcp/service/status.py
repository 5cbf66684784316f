"""What ``status`` reports: the store's counts, kept where they change so that ``status`` never waits for
the store or the index lock behind a write or a search; the search counters; the response itself."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata

from mimir_mcp import __version__
from mimir_mcp.config import Settings
from mimir_mcp.embedding import TextEmbedder
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import SearchResponse
from mimir_mcp.rerank import Reranker
from mimir_mcp.rerank.admission import RerankQueue
from mimir_mcp.rerank.cache import ScoreCache
from mimir_mcp.status_models import LexicalStatus, ModelState, RepairReport, SearchStats, StatusResponse, StoreStatus
from mimir_mcp.store.base import VectorStore
from mimir_mcp.store.chroma import store_location

logger = logging.getLogger(__name__)

# How old the counts ``status`` shows may grow before it has them counted again in the background (they
# change at once with this process's own writes; this bounds how late other processes' writes show).
STATUS_RECOUNT_S = 1.0
LEXICAL_BACKEND = "in-memory BM25 (k1=1.2, b=0.75, Porter stemming, folded accents, CJK bigrams), persisted in SQLite"


@dataclass(frozen=True)
class Counts:
    """What ``status`` reports about the store and the index, as last counted."""

    store: int
    namespaces: dict[str, int]
    documents: int
    at: float  # time.monotonic() when counted


class StatusBoard:
    """The counts and the search counters ``status`` reads, updated by the writes, syncs and searches."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.counts: Counts | None = None
        self._recounting = threading.Lock()
        self.searches = 0
        self.reranked_searches = 0
        self.total_search_ms = 0.0
        self.last_timings: dict[str, float] | None = None
        # Why this process's last write failed for lack of space, with when; ``None`` once a write succeeds.
        self.write_error: str | None = None

    def recount(self, store: VectorStore, lexical: LexicalIndex, *, store_count: int | None = None) -> None:
        """Count the store and the index (blocking: a store count and the index lock); ``store_count``
        when the caller has just counted the store."""
        if store_count is None:
            store_count = store.count()
        self.counts = Counts(store_count, lexical.namespace_counts(), lexical.count(), time.monotonic())

    def recount_later(self, store: VectorStore, lexical: LexicalIndex) -> None:
        """Count again in a thread of its own, at most one at a time, without anyone waiting for it."""
        if not self._recounting.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.recount(store, lexical)
            except Exception:  # a store gone away shows in the next status as the old counts' age
                logger.exception("status: counting the store failed")
            finally:
                self._recounting.release()

        threading.Thread(target=run, name="mimir-status-count", daemon=True).start()

    def write_failed(self, reason: str) -> None:
        """A write failed for lack of disk space: ``status`` says so, and when, until ``wrote``."""
        self.write_error = f"failed at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {reason}"

    def wrote(self) -> None:
        """A write succeeded: the failure ``write_failed`` noted is over."""
        self.write_error = None

    def searched(self, response: SearchResponse) -> None:
        """Count a search as the pipeline answered it (with its candidates and timings)."""
        self.searches += 1
        self.reranked_searches += response.candidates is not None and response.candidates.reranked > 0
        if response.timings_ms is not None:
            self.total_search_ms += response.timings_ms["total_ms"]
            self.last_timings = response.timings_ms

    def store_status(
        self,
        settings: Settings,
        opened: tuple[VectorStore, LexicalIndex] | None,
        *,
        state: ModelState,
        error: BaseException | None,
        repair: RepairReport | None,
        catalogue_repair: RepairReport | None = None,
    ) -> tuple[StoreStatus, LexicalStatus | None]:
        """The store's and the index's part of ``status``: from the counts, which are counted again behind
        when older than ``STATUS_RECOUNT_S``; while the store is opening (``opened`` is ``None``), its state."""
        if opened is None:
            return (
                StoreStatus(
                    kind="server" if settings.store.chroma_host else "embedded",
                    location=store_location(settings.store),
                    collection=settings.store.collection,
                    state=state,
                    error=None if error is None else f"{type(error).__name__}: {error}",
                    memories=0,
                    namespaces={},
                    last_write_error=self.write_error,
                ),
                None,
            )
        store, lexical = opened
        counts = self.counts
        assert counts is not None  # counted when the store was opened, before it is handed out
        age = time.monotonic() - counts.at
        if age > STATUS_RECOUNT_S:
            self.recount_later(store, lexical)
        store_status = StoreStatus(
            kind=store.kind,
            location=store.location,
            collection=settings.store.collection,
            embedding_model=store.embedding_model,
            embedding_dimension=store.embedding_dimension,
            state="ready",
            memories=counts.store,
            namespaces=counts.namespaces,
            counted_s_ago=round(age, 3),
            repaired=repair,
            catalogue_repaired=catalogue_repair,
            last_write_error=self.write_error,
        )
        bm25 = LexicalStatus(
            backend=LEXICAL_BACKEND,
            path=lexical.path,
            documents=counts.documents,
            in_sync=counts.documents == counts.store,
        )
        return store_status, bm25

    def response(
        self,
        store: StoreStatus,
        bm25: LexicalStatus | None,
        *,
        embedder: TextEmbedder,
        reranker: Reranker,
        rerank_queue: RerankQueue,
        score_cache: ScoreCache,
        remote: Reranker | None,
    ) -> StatusResponse:
        reranker_status = reranker.status()
        reranker_status.queue = rerank_queue.status()
        reranker_status.cache = score_cache.stats()
        remote_status = None
        if remote is not None:
            remote_status = remote.status()
            remote_status.counters = remote.counters()  # type: ignore[attr-defined]
        return StatusResponse(
            reranker=reranker_status,
            remote_reranker=remote_status,
            embedding=embedder.status(),
            store=store,
            bm25=bm25,
            search=SearchStats(
                searches=self.searches,
                reranked_searches=self.reranked_searches,
                last_timings_ms=self.last_timings,
                mean_total_ms=round(self.total_search_ms / self.searches, 2) if self.searches else None,
            ),
            versions=versions(),
            uptime_s=round(time.monotonic() - self.started_at, 3),
        )


@functools.cache  # reading package metadata scans sys.path: not on every status call
def versions() -> dict[str, str]:
    found = {"mimir-mcp": __version__}
    for package in ("mcp", "chromadb", "sentence-transformers", "transformers", "torch"):
        try:
            found[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
