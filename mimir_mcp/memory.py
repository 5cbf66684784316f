"""The memory service: remembering with deduplication, and keeping the Chroma store and the BM25 index
in step. Tools call this; it owns the models, the store and the index for the life of the process."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import unicodedata
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from mimir_mcp import __version__
from mimir_mcp.background import BackgroundLoad
from mimir_mcp.config import Settings
from mimir_mcp.embedding import Embedder
from mimir_mcp.errors import StoreUnavailableError
from mimir_mcp.lexical import LexicalIndex
from mimir_mcp.models import (
    LexicalStatus,
    MemoryInput,
    MemoryRecord,
    RememberedMemory,
    RememberResponse,
    SearchResponse,
    SearchStats,
    StatusResponse,
    StoreStatus,
)
from mimir_mcp.rerank import LocalCrossEncoder, Reranker
from mimir_mcp.search import SearchPipeline, SearchRequest
from mimir_mcp.store import MemoryStore, make_embedding_function

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


def normalize_for_dedup(text: str) -> str:
    """What counts as "the same text": Unicode NFC, surrounding whitespace dropped, inner runs collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def dedup_key(namespace: str, text: str) -> str:
    """The memory id: a hash of namespace and normalized text, so a retried ``remember`` finds its own
    earlier write, even from another agent or another server process sharing the store."""
    digest = hashlib.sha256(f"{namespace}\x00{normalize_for_dedup(text)}".encode()).hexdigest()
    return f"mem_{digest[:32]}"


class _Backend:
    """The opened store and index, created together in the background."""

    def __init__(self, store: MemoryStore, lexical: LexicalIndex) -> None:
        self.store = store
        self.lexical = lexical


class MemoryService:
    """Everything the tools need, created once per process and shared by every session and transport."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        onnx_cache_dir = Path(settings.store.data_dir).expanduser() / "onnx-cache"
        self.embedder = embedder or Embedder(
            settings.embedding, cache_dir=settings.model_cache_dir, onnx_cache_dir=onnx_cache_dir
        )
        self.reranker: Reranker = reranker or LocalCrossEncoder(
            settings.reranker, cache_dir=settings.model_cache_dir, onnx_cache_dir=onnx_cache_dir
        )
        self._backend: BackgroundLoad[_Backend] = BackgroundLoad("memory store", self._open_backend)
        self._write_lock = threading.Lock()
        self._started_at = time.monotonic()
        self._searches = 0
        self._reranked_searches = 0
        self._total_search_ms = 0.0
        self._last_timings: dict[str, float] | None = None
        self._last_sync = -float("inf")
        self._last_token: object = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start loading everything in the background; returns at once and may be called repeatedly."""
        self.embedder.start()
        self.reranker.start()
        self._backend.start()

    def storage(self) -> tuple[MemoryStore, LexicalIndex]:
        """Blocking: the opened store and index, for tools that fill them directly (the benchmark)."""
        self.start()
        backend = self._backend.wait()
        return backend.store, backend.lexical

    def close(self) -> None:
        backend = self._backend.result_now()
        if backend is not None:
            backend.lexical.close()

    def _open_backend(self) -> _Backend:
        store = MemoryStore(
            self.settings.store, make_embedding_function(self.embedder.encode, self.settings.embedding.model)
        )
        lexical = LexicalIndex(self._lexical_path(store))
        self._reconcile(store, lexical)
        return _Backend(store, lexical)

    def _lexical_path(self, store: MemoryStore) -> Path:
        data_dir = Path(self.settings.store.data_dir).expanduser()
        suffix = (
            "" if store.kind == "embedded" else f"-{self.settings.store.chroma_host}-{self.settings.store.chroma_port}"
        )
        return data_dir / f"bm25-{self.settings.store.collection}{suffix}.sqlite3"

    def _reconcile(self, store: MemoryStore, lexical: LexicalIndex) -> None:
        """Make the BM25 index hold exactly the store's memories (after a crash, or writes by another
        process sharing a Chroma server). Chroma is the store of record."""
        store_ids = store.all_ids()
        lexical_ids = lexical.ids()
        missing = sorted(store_ids - lexical_ids)
        extra = sorted(lexical_ids - store_ids)
        if missing:
            lexical.add(store.get(missing))
        if extra:
            lexical.remove(extra)
        if missing or extra:
            logger.info("BM25 index reconciled with the store: %d added, %d removed", len(missing), len(extra))

    async def _ready(self) -> _Backend:
        try:
            backend = await self._backend.wait_async()
            await self.embedder.ready()
        except Exception as exc:
            raise StoreUnavailableError(
                f"The memory store is unavailable: {type(exc).__name__}: {exc}. "
                "Check MIMIR_STORE_DATA_DIR (or the Chroma server settings) and the embedding model."
            ) from exc
        return backend

    # -- remember ----------------------------------------------------------------------------------

    async def remember(self, memories: list[MemoryInput]) -> RememberResponse:
        """Store validated memories. Texts already stored in the same namespace are not stored again."""
        started = time.perf_counter()
        backend = await self._ready()
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        records = [
            MemoryRecord(
                id=dedup_key(memory.namespace, memory.text),
                text=memory.text,
                namespace=memory.namespace,
                tags=memory.tags,
                source=memory.source,
                agent=memory.agent,
                created_at=now,
                metadata=memory.metadata,
            )
            for memory in memories
        ]
        new_ids = await anyio.to_thread.run_sync(self._write, backend, records)
        seen: set[str] = set()
        results = []
        for record in records:
            fresh = record.id in new_ids and record.id not in seen
            seen.add(record.id)
            results.append(RememberedMemory(id=record.id, namespace=record.namespace, deduplicated=not fresh))
        stored = sum(not result.deduplicated for result in results)
        return RememberResponse(
            ids=[result.id for result in results],
            results=results,
            stored_count=stored,
            deduplicated_count=len(results) - stored,
            deduplicated=stored == 0,
            timings_ms={"total_ms": round((time.perf_counter() - started) * 1000, 2)},
        )

    def _write(self, backend: _Backend, records: list[MemoryRecord]) -> set[str]:
        """Embed outside the lock (the slow part), then check-and-add under it so concurrent retries of
        the same memory store it once. Chroma first: it is the store of record; the index follows."""
        unique = list({record.id: record for record in records}.values())
        already = backend.store.existing([r.id for r in unique])
        candidates = [r for r in unique if r.id not in already]
        if not candidates:
            return set()
        total = len(candidates)
        vectors = []
        step = max(self.settings.embedding.batch_size * 8, 256)
        for start in range(0, total, step):
            vectors.append(self.embedder.encode([r.text for r in candidates[start : start + step]]))
            if total > step:
                logger.info("remember: embedded %d/%d memories", min(start + step, total), total)
        embeddings = np.concatenate(vectors)
        with self._write_lock:
            present = backend.store.existing([r.id for r in candidates])
            keep = [i for i, r in enumerate(candidates) if r.id not in present]
            fresh = [candidates[i] for i in keep]
            if fresh:
                backend.store.add(fresh, embeddings[keep])
                backend.lexical.add(fresh)
        return {record.id for record in fresh}

    # -- search ------------------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> SearchResponse:
        backend = await self._ready()
        if self._sync_due(backend):
            await anyio.to_thread.run_sync(self._sync_if_needed, backend)
        pipeline = SearchPipeline(self.settings.search, self.embedder, backend.store, backend.lexical, self.reranker)
        response = await pipeline.run(request)
        self._searches += 1
        self._reranked_searches += response.search_method == "rrf_hybrid+rerank"
        self._total_search_ms += response.timings_ms["total_ms"]
        self._last_timings = response.timings_ms
        return response

    def _sync_due(self, backend: _Backend) -> bool:
        """Whether to compare counts before this search. Embedded: when Chroma's files changed since
        the last comparison (a stat, not a count). Server: at most once per ``sync_interval_s``."""
        now = time.monotonic()
        token = backend.store.change_token()
        if token is not None:
            due = token != self._last_token
        else:
            due = now - self._last_sync >= self.settings.store.sync_interval_s
        if due:
            self._last_token, self._last_sync = token, now
        return due

    def _sync_if_needed(self, backend: _Backend) -> None:
        """A cheap count comparison catches writes made through another process sharing the store."""
        if backend.store.count() != backend.lexical.count():
            with self._write_lock:
                self._reconcile(backend.store, backend.lexical)

    # -- status ------------------------------------------------------------------------------------

    async def status(self) -> StatusResponse:
        backend = self._backend.result_now()
        store_status: StoreStatus
        bm25 = None
        if backend is None:
            error = self._backend.error
            store_status = StoreStatus(
                kind="server" if self.settings.store.chroma_host else "embedded",
                location=str(self.settings.store.chroma_host or Path(self.settings.store.data_dir) / "chroma"),
                collection=self.settings.store.collection,
                state=self._backend.state,
                error=None if error is None else f"{type(error).__name__}: {error}",
                memories=0,
                namespaces={},
            )
        else:
            store_count, namespaces, documents = await anyio.to_thread.run_sync(
                lambda: (backend.store.count(), backend.lexical.namespace_counts(), backend.lexical.count())
            )
            store_status = StoreStatus(
                kind=backend.store.kind,
                location=backend.store.location,
                collection=self.settings.store.collection,
                state="ready",
                memories=store_count,
                namespaces=namespaces,
            )
            bm25 = LexicalStatus(
                backend="in-memory BM25 (k1=1.2, b=0.75, Porter stemming, folded accents, CJK bigrams), "
                "persisted in SQLite",
                path=backend.lexical.path,
                documents=documents,
                in_sync=documents == store_count,
            )
        return StatusResponse(
            reranker=self.reranker.status(),
            embedding=self.embedder.status(),
            store=store_status,
            bm25=bm25,
            search=SearchStats(
                searches=self._searches,
                reranked_searches=self._reranked_searches,
                last_timings_ms=self._last_timings,
                mean_total_ms=round(self._total_search_ms / self._searches, 2) if self._searches else None,
            ),
            versions=_versions(),
            uptime_s=round(time.monotonic() - self._started_at, 3),
        )


def _versions() -> dict[str, str]:
    versions = {"mimir-mcp": __version__}
    for package in ("mcp", "chromadb", "sentence-transformers", "transformers", "torch"):
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
