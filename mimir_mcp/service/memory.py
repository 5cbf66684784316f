"""The memory service: remembering with deduplication, and keeping the Chroma store and the BM25 index
in step. Tools call this; it owns the models, the store and the index for the life of the process."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from mimir_mcp import __version__
from mimir_mcp.background import BackgroundLoad, freeze_heap
from mimir_mcp.store.catalogue import timestamp
from mimir_mcp.config import Settings
from mimir_mcp.embedding import Embedder
from mimir_mcp.errors import InvalidInputError, NotFoundError, StoreUnavailableError
from mimir_mcp.store.group_commit import GroupCommit
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import (
    ForgetResponse,
    GetResponse,
    LexicalStatus,
    ListResponse,
    MemoryInput,
    MemoryOut,
    MemoryRecord,
    MetadataValue,
    RecordFilter,
    RememberedMemory,
    RememberResponse,
    RepairReport,
    RerankDocument,
    RerankedDocument,
    RerankResponse,
    SearchResponse,
    SearchStats,
    StatusResponse,
    StoreStatus,
    UpdateResponse,
)
from mimir_mcp.store.repair import rebuild_from_catalogue
from mimir_mcp.rerank import LocalCrossEncoder, Reranker, rerank_or_raise
from mimir_mcp.rerank.admission import RerankQueue
from mimir_mcp.rerank.cache import CachedReranker, ScoreCache
from mimir_mcp.rerank.remote import RemoteReranker
from mimir_mcp.search.pipeline import SearchPipeline, SearchRequest
from mimir_mcp.store.chroma import MemoryStore, make_embedding_function

logger = logging.getLogger(__name__)

# How far another machine's clock may run behind this one's when reading updates made since the last one
# seen (a Chroma server shared by several machines).
UPDATE_CLOCK_SKEW_S = 300.0

_WHITESPACE = re.compile(r"\s+")
# How old the counts ``status`` shows may grow before it has them counted again in the background (they
# change at once with this process's own writes; this bounds how late other processes' writes show).
STATUS_RECOUNT_S = 1.0
# Memories stored between two ``freeze_heap`` calls: the index's new objects join the frozen heap in
# steps, so full collections stay short as the store grows.
FREEZE_EVERY_STORED = 2000


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


@dataclass(frozen=True)
class _Counts:
    """What ``status`` reports about the store, counted where it changes, so that ``status`` never waits
    for Chroma or the index lock behind a write or a search."""

    store: int
    namespaces: dict[str, int]
    documents: int
    at: float  # time.monotonic() when counted


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
        onnx_cache_dir = settings.store.onnx_cache_dir.expanduser()
        self.embedder = embedder or Embedder(
            settings.embedding, cache_dir=settings.model_cache_dir, onnx_cache_dir=onnx_cache_dir
        )
        # One score cache for both rerankers; each keys its scores by its own model and backend.
        self.score_cache = ScoreCache(
            max_entries=settings.reranker.cache_entries, max_bytes=settings.reranker.cache_bytes
        )
        local = reranker or LocalCrossEncoder(
            settings.reranker, cache_dir=settings.model_cache_dir, onnx_cache_dir=onnx_cache_dir
        )
        self.reranker: Reranker = CachedReranker(local, self.score_cache)
        # A hosted rerank API, tried first when configured (MIMIR_REMOTE_URL); the local model is its fallback.
        self.remote: Reranker | None = (
            CachedReranker(RemoteReranker(settings.remote), self.score_cache) if settings.remote.url else None
        )
        # Told of every memory this process adds, changes or removes (resources.MemoryResources listens).
        self._watchers: list[Callable[[list[tuple[str, str]]], Awaitable[None]]] = []
        # The cross-encoder's queue, shared by every search and `rerank` call of the process.
        self.rerank_queue = RerankQueue(settings.reranker)
        self._backend: BackgroundLoad[_Backend] = BackgroundLoad("memory store", self._open_backend)
        self._started_at = time.monotonic()
        self._searches = 0
        self._reranked_searches = 0
        self._total_search_ms = 0.0
        self._last_timings: dict[str, float] | None = None
        self._last_sync = -float("inf")
        self._last_token: object = None
        self._generation: str | None = None
        self._counts: _Counts | None = None
        self._recounting = threading.Lock()
        self._stored_since_freeze = 0
        self._searching = 0  # searches in flight: while any is, Chroma writes are paced (store.write_duty)
        # Set when opening found a collection Chroma could not read and rebuilt it (repair.py); for status.
        self.repair: RepairReport | None = None
        # Concurrent remembers share one store write (see _commit).
        self._commits: GroupCommit[tuple[list[MemoryRecord], np.ndarray], set[str]] = GroupCommit(
            self._commit, duty=settings.store.write_duty, contended=lambda: self._searching > 0
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start loading everything in the background; returns at once and may be called repeatedly."""
        self.embedder.start()
        self.reranker.start()
        self._backend.start()

    def storage(self) -> tuple[MemoryStore, LexicalIndex]:
        """Blocking: the opened store and index, for tools that fill them directly (the benchmark, export,
        import). Starts the store and the bi-encoder, not the reranker, which these never need."""
        self.embedder.start()
        self._backend.start()
        backend = self._backend.wait()
        return backend.store, backend.lexical

    def watch(self, callback: Callable[[list[tuple[str, str]]], Awaitable[None]]) -> None:
        """Call ``callback`` with the ``(namespace, id)`` of the memories each write through this service
        added, changed or removed, after the write."""
        self._watchers.append(callback)

    async def _announce(self, changed: list[tuple[str, str]]) -> None:
        """Tell the watchers; a watcher that fails is logged, never the caller's error (the write is done)."""
        if not changed:
            return
        for callback in self._watchers:
            try:
                await callback(changed)
            except Exception:  # noqa: BLE001 - the write succeeded; a listener's fault must not undo that
                logger.warning("a change listener failed", exc_info=True)

    def close(self) -> None:
        backend = self._backend.result_now()
        if backend is not None:
            backend.lexical.close()

    def _open_backend(self) -> _Backend:
        model = self.settings.embedding.model
        function = make_embedding_function(self.embedder.encode, model)
        store = MemoryStore(self.settings.store, function, model=model)
        with store.writing():
            catalogued = self._lexical_path(store).exists()
            lexical = LexicalIndex(self._lexical_path(store))
            damage = store.damage() if store.kind == "embedded" else None
            if damage is not None:
                if not catalogued:
                    raise StoreUnavailableError(
                        f"Chroma cannot read the collection {store.name!r} in {store.location} ({damage}), and "
                        "there is no record catalogue to rebuild it from (it was deleted). Restore the memories "
                        "from an export (`mimir-mcp import`) into a new data dir, or put the catalogue file back."
                    )
                self.repair = rebuild_from_catalogue(
                    self.settings.store, store, lexical, self.embedder.encode, model, damage
                )
                store = MemoryStore(self.settings.store, function, model=model)
            self._reconcile(store, lexical)
            if lexical.catalogue.meta("chroma_created_ts") is None:
                # Stores written before time filters existed have no numeric creation time in Chroma.
                older = store.missing_created_ts()
                if older:
                    store.set_created_ts(older)
                    logger.info("store: creation times recorded for %d older memories (time filters)", len(older))
                lexical.catalogue.set_meta("chroma_created_ts", "1")
            self._generation = store.generation()
        self._recount(store, lexical)
        return _Backend(store, lexical)

    def _lexical_path(self, store: MemoryStore) -> Path:
        data_dir = Path(self.settings.store.data_dir).expanduser()
        suffix = (
            "" if store.kind == "embedded" else f"-{self.settings.store.chroma_host}-{self.settings.store.chroma_port}"
        )
        return data_dir / f"bm25-{self.settings.store.collection}{suffix}.sqlite3"

    def _reconcile(self, store: MemoryStore, lexical: LexicalIndex) -> None:
        """Make the catalogue and the BM25 index hold exactly the store's memories, with the store's tags
        and metadata (after a crash, or changes by another process sharing the store). Chroma is the
        store of record. An update interrupted after storing its new text keeps the new memory and
        drops the one it supersedes, in Chroma too, so no memory is left half-replaced."""
        store_ids = store.all_ids()
        lexical_ids = lexical.ids()
        missing = sorted(store_ids - lexical_ids)
        extra = sorted(lexical_ids - store_ids)
        added = store.get(missing) if missing else []
        if added:
            lexical.add(added)
        if extra:
            lexical.remove(extra)
        superseded = _interrupted_updates(added, lexical)
        if superseded:
            store.delete(superseded)
            lexical.remove(superseded)
        watermark = float(lexical.catalogue.meta("updated_watermark") or 0.0)
        refreshed = store.updated_since(watermark - UPDATE_CLOCK_SKEW_S)
        for record in refreshed:
            current = lexical.get([record.id]).get(record.id)
            if current is not None and current.updated_at != record.updated_at:
                lexical.set_fields(record)
        if refreshed:
            newest = max(timestamp(r.updated_at) for r in refreshed if r.updated_at is not None)
            lexical.catalogue.set_meta("updated_watermark", repr(max(newest, watermark)))
        if missing or extra or superseded:
            logger.info(
                "catalogue reconciled with the store: %d added, %d removed, %d superseded",
                len(missing),
                len(extra),
                len(superseded),
            )

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
        await self._announce([(result.namespace, result.id) for result in results if not result.deduplicated])
        return RememberResponse(
            ids=[result.id for result in results],
            results=results,
            stored_count=stored,
            deduplicated_count=len(results) - stored,
            deduplicated=stored == 0,
            timings_ms={"total_ms": round((time.perf_counter() - started) * 1000, 2)},
        )

    def _write(self, backend: _Backend, records: list[MemoryRecord]) -> set[str]:
        """Embed outside the lock (the slow part), then check-and-add in a turn of the group commit
        (``_commit``), under the store lock. Returns the ids that were new."""
        unique = list({record.id: record for record in records}.values())
        # Only texts the index knows can be stored already (bar another process's write since the last
        # sync, which the commit's own check catches): Chroma is asked about those alone, so a new text
        # costs no Chroma read, which holds the GIL, before it is embedded.
        known = backend.lexical.holding([r.id for r in unique])
        already = backend.store.existing(list(known)) if known else set()
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
        fresh = self._commits.submit((candidates, embeddings))
        self._stored_since_freeze += len(fresh)
        if self._stored_since_freeze >= FREEZE_EVERY_STORED:
            self._stored_since_freeze = 0
            freeze_heap()
        return fresh

    def _commit(self, writes: Sequence[tuple[list[MemoryRecord], np.ndarray]]) -> list[set[str]]:
        """One turn of the group commit (``group_commit.GroupCommit``): every write queued meanwhile, in
        one Chroma ``add`` under one hold of the store lock. The lock is taken by every process on the
        data dir, so a text stored at once by several calls or processes is stored once and reported new
        to exactly one: here, the first write of the turn that holds it. Chroma first: it is the store of
        record; the index follows. Returns each write's new ids."""
        backend = self._backend.wait()  # loaded once per service: every queued write was embedded for it
        results: list[set[str]] = []
        with backend.store.writing() as reloaded:
            claimed = backend.store.existing([record.id for candidates, _ in writes for record in candidates])
            rows: list[MemoryRecord] = []
            vectors: list[np.ndarray] = []
            for candidates, embeddings in writes:
                keep = [n for n, record in enumerate(candidates) if record.id not in claimed]
                claimed.update(candidates[n].id for n in keep)
                rows.extend(candidates[n] for n in keep)
                vectors.append(embeddings[keep])
                results.append({candidates[n].id for n in keep})
            if rows:
                stacked = np.concatenate(vectors)
                backend.store.add(rows, stacked)
                backend.store.record_dimension(int(stacked.shape[1]))
                backend.lexical.add(rows)
            # The count status shows, by arithmetic: Chroma's count() takes ~5 ms of GIL under load, per
            # write. Counted for real when another process's writes were just taken in.
            counts = self._counts
            store_count = None if reloaded or counts is None else counts.store + len(rows)
            self._recount(backend.store, backend.lexical, store_count=store_count)
        return results

    # -- search ------------------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> SearchResponse:
        backend = await self._ready()
        if self._sync_due(backend):
            await anyio.to_thread.run_sync(self._sync_if_needed, backend)
        pipeline = SearchPipeline(
            self.settings.search,
            self.embedder,
            backend.store,
            backend.lexical,
            self.reranker,
            self.rerank_queue,
            remote=self.remote,
        )
        self._searching += 1
        try:
            response = await pipeline.run(request)
        finally:
            self._searching -= 1
        self._searches += 1
        self._reranked_searches += response.candidates.reranked > 0
        self._total_search_ms += response.timings_ms["total_ms"]
        self._last_timings = response.timings_ms
        return response

    async def rerank(
        self, query: str, documents: list[RerankDocument], *, top_k: int | None = None, min_score: float | None = None
    ) -> RerankResponse:
        """Any candidates scored for ``query`` by the local cross-encoder, best first, through the same queue
        as search's reranks; raises when it cannot score (there is no order to fall back to)."""
        started = time.perf_counter()
        outcome = await rerank_or_raise(self.reranker, query, [item.text for item in documents], self.rerank_queue)
        scores = outcome.scores
        assert scores is not None
        ranked = sorted(range(len(documents)), key=lambda i: -scores[i])
        results = [
            RerankedDocument(index=i, id=documents[i].id, text=documents[i].text, score=scores[i])
            for i in ranked
            if min_score is None or scores[i] >= min_score
        ][:top_k]
        return RerankResponse(
            query=query,
            results=results,
            model=self.reranker.model,
            timings_ms={
                "rerank_ms": round(outcome.seconds * 1000, 2),
                "total_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

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
        """A count comparison catches memories added through another process sharing the store; the
        collection's generation, which every ``forget`` and ``update`` changes, catches the rest."""
        with backend.store.lock:
            backend.store.refresh()  # this process's HNSW index, with the other processes' vectors
            seen = backend.store.fresh_token
        if seen is not None:
            # What this sync has taken in: a later write by anyone changes the files again, and only then is
            # the next sync due (the reload itself touched them, which must not count as a change).
            self._last_token = seen
        generation = backend.store.generation()
        store_count = backend.store.count()
        if store_count != backend.lexical.count() or generation != self._generation:
            with self._writing(backend):
                self._reconcile(backend.store, backend.lexical)
                self._generation = generation
        else:
            self._recount(backend.store, backend.lexical, store_count=store_count)

    async def _synced(self) -> _Backend:
        """The backend, with changes made by other processes applied: list, get, forget and update act on
        what the store holds now, not on what this process last saw."""
        backend = await self._ready()
        if self._sync_due(backend):
            await anyio.to_thread.run_sync(self._sync_if_needed, backend)
        return backend

    @contextmanager
    def _writing(self, backend: _Backend) -> Iterator[None]:
        """The store's write lock, and the counts ``status`` shows taken again before it is released."""
        with backend.store.writing():
            yield
            self._recount(backend.store, backend.lexical)

    def _recount(self, store: MemoryStore, lexical: LexicalIndex, *, store_count: int | None = None) -> None:
        """Count the store and the index for ``status`` (blocking: a Chroma count and the index lock);
        ``store_count`` when the caller has just counted the store."""
        if store_count is None:
            store_count = store.count()
        self._counts = _Counts(store_count, lexical.namespace_counts(), lexical.count(), time.monotonic())

    def _recount_later(self, backend: _Backend) -> None:
        """Count again in a thread of its own, at most one at a time, without anyone waiting for it."""
        if not self._recounting.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._recount(backend.store, backend.lexical)
            except Exception:  # a store gone away shows in the next status as the old counts' age
                logger.exception("status: counting the store failed")
            finally:
                self._recounting.release()

        threading.Thread(target=run, name="mimir-status-count", daemon=True).start()

    def _changed(self, backend: _Backend) -> None:
        """Tell every process sharing the store that memories were removed or changed (under the lock)."""
        backend.store.bump_generation()
        self._generation = backend.store.generation()

    # -- list and get ------------------------------------------------------------------------------

    async def list_memories(
        self, where: RecordFilter, *, limit: int, cursor: str | None, newest_first: bool, max_chars: int | None
    ) -> ListResponse:
        backend = await self._synced()
        catalogue = backend.lexical.catalogue

        def run() -> tuple[list[MemoryRecord], str | None, int]:
            records, next_cursor = catalogue.page(where, limit, cursor, newest_first=newest_first)
            return records, next_cursor, catalogue.count(where)

        try:
            records, next_cursor, total = await anyio.to_thread.run_sync(run)
        except ValueError as exc:
            raise InvalidInputError("cursor", str(exc)) from exc
        return ListResponse(
            memories=[memory_out(record, max_chars) for record in records], next_cursor=next_cursor, total=total
        )

    async def namespace_counts(self) -> dict[str, int]:
        """Memories per namespace, as stored now (other processes' writes taken in first)."""
        backend = await self._synced()
        return await anyio.to_thread.run_sync(backend.lexical.namespace_counts)

    async def get(self, ids: list[str], *, max_chars: int | None) -> GetResponse:
        backend = await self._synced()
        found = await anyio.to_thread.run_sync(backend.lexical.get, ids)
        return GetResponse(
            memories=[memory_out(found[memory_id], max_chars) for memory_id in ids if memory_id in found],
            not_found=[memory_id for memory_id in ids if memory_id not in found],
        )

    # -- forget ------------------------------------------------------------------------------------

    async def forget(
        self, ids: list[str] | None, where: RecordFilter | None, *, confirm: bool, dry_run: bool
    ) -> ForgetResponse:
        """Remove memories by id, or every memory a filter matches (which past a threshold needs
        ``confirm``). Chroma first, then the catalogue and the index, under the write lock; a crash in
        between is repaired by the next reconcile, which follows Chroma."""
        backend = await self._synced()
        limits = self.settings.limits

        removed: list[tuple[str, str]] = []

        def run() -> ForgetResponse:
            with self._writing(backend):
                not_found: list[str] = []
                if ids is not None:
                    wanted = list(dict.fromkeys(ids))
                    present = backend.lexical.get(wanted)
                    matched = [memory_id for memory_id in wanted if memory_id in present]
                    not_found = [memory_id for memory_id in wanted if memory_id not in present]
                else:
                    assert where is not None
                    matched = backend.lexical.catalogue.matching_ids(where)
                    if len(matched) > limits.forget_confirm_threshold and not confirm and not dry_run:
                        raise InvalidInputError(
                            "confirm",
                            f"the filter matches {len(matched)} memories, more than "
                            f"{limits.forget_confirm_threshold}; pass confirm: true to remove them, or dry_run: "
                            "true to see which they are",
                        )
                if not dry_run and matched:
                    namespaces = backend.lexical.namespaces_of(matched)
                    removed.extend(
                        (namespaces[memory_id], memory_id) for memory_id in matched if memory_id in namespaces
                    )
                    backend.store.delete(matched)
                    self._changed(backend)
                    backend.lexical.remove(matched)
                shown = matched[: limits.max_forget_ids_shown]
                verb = "would remove" if dry_run else "removed"
                more = f" (the first {len(shown)} ids listed)" if len(shown) < len(matched) else ""
                return ForgetResponse(
                    dry_run=dry_run,
                    matched=len(matched),
                    removed_count=0 if dry_run else len(matched),
                    ids=shown,
                    not_found=not_found,
                    message=f"{verb} {len(matched)} {'memory' if len(matched) == 1 else 'memories'}{more}"
                    + (f"; {len(not_found)} ids were not stored" if not_found else ""),
                )

        response = await anyio.to_thread.run_sync(run)
        await self._announce(removed)
        return response

    # -- update ------------------------------------------------------------------------------------

    async def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, MetadataValue] | None = None,
    ) -> UpdateResponse:
        """Change a memory. Tags or metadata only: the same id, changed in place. New text: the id is the
        new text's content hash (so remembering that text again deduplicates), the memory is embedded and
        indexed anew with ``supersedes`` naming the old id, and the old one is removed; the creation time
        stays the original one. Chroma first: the new memory, then the old one's removal, then the
        catalogue and the index; a crash between the two Chroma writes leaves both, and the next
        reconcile, finding the new memory missing from the catalogue, drops the superseded one."""
        backend = await self._synced()

        def run() -> UpdateResponse:
            with self._writing(backend):
                old = backend.lexical.get([memory_id]).get(memory_id)
                if old is None:
                    raise NotFoundError(f"id: no memory {memory_id!r} is stored (it may have been forgotten)")
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                changes: dict[str, object] = {"updated_at": now}
                changed = []
                if tags is not None and tags != old.tags:
                    changes["tags"], changed = tags, [*changed, "tags"]
                if metadata is not None and metadata != old.metadata:
                    changes["metadata"], changed = metadata, [*changed, "metadata"]
                new_id = memory_id if text is None else dedup_key(old.namespace, text)
                if new_id == memory_id:
                    if text is not None and text != old.text:
                        changed.append("text")  # only whitespace or normalization differs: same memory
                    if not changed:
                        return UpdateResponse(
                            id=memory_id,
                            previous_id=memory_id,
                            supersedes=None,
                            changed=[],
                            deduplicated=False,
                            memory=memory_out(old, None),
                        )
                    record = old.model_copy(update={**changes, **({"text": text} if text is not None else {})})
                    if record.text != old.text:
                        # The same normalized text: keep the stored text so the hash stays its hash.
                        record = record.model_copy(update={"text": old.text})
                        changed.remove("text")
                    backend.store.set_fields(record, old)
                    self._changed(backend)
                    backend.lexical.set_fields(record)
                    return UpdateResponse(
                        id=memory_id,
                        previous_id=memory_id,
                        supersedes=None,
                        changed=changed,
                        deduplicated=False,
                        memory=memory_out(record, None),
                    )
                assert text is not None
                existing = backend.lexical.get([new_id]).get(new_id)
                record = old.model_copy(update={**changes, "id": new_id, "text": text, "supersedes": memory_id})
                if existing is None:
                    backend.store.add([record], self.embedder.encode([text]))
                else:
                    record = existing
                backend.store.delete([memory_id])
                self._changed(backend)
                if existing is None:
                    backend.lexical.add([record])
                backend.lexical.remove([memory_id])
                return UpdateResponse(
                    id=new_id,
                    previous_id=memory_id,
                    supersedes=memory_id,
                    changed=["text", *changed],
                    deduplicated=existing is not None,
                    memory=memory_out(record, None),
                )

        response = await anyio.to_thread.run_sync(run)
        if response.changed:
            namespace = response.memory.namespace
            await self._announce(list(dict.fromkeys([(namespace, response.previous_id), (namespace, response.id)])))
        return response

    # -- export and import -------------------------------------------------------------------------

    def export_records(self, namespace: str | None = None, page: int = 1000) -> Iterator[MemoryRecord]:
        """Every memory (of ``namespace``, or all), oldest first, as stored: blocking, for the CLI."""
        store, lexical = self.storage()
        self._sync_if_needed(self._backend.wait())
        cursor = None
        where = RecordFilter(namespace=namespace)
        while True:
            records, cursor = lexical.catalogue.page(where, page, cursor, newest_first=False)
            yield from records
            if cursor is None:
                return

    def import_records(self, records: list[MemoryRecord]) -> set[str]:
        """Store exported records as they are (ids, times and all); ids already stored are skipped.
        Blocking, for the CLI. Returns the ids that were new."""
        self.storage()
        return self._write(self._backend.wait(), records)

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
            counts = self._counts
            assert counts is not None  # counted in _open_backend, before the store is handed out
            age = time.monotonic() - counts.at
            if age > STATUS_RECOUNT_S:
                self._recount_later(backend)
            store_count, namespaces, documents = counts.store, counts.namespaces, counts.documents
            store_status = StoreStatus(
                kind=backend.store.kind,
                location=backend.store.location,
                collection=self.settings.store.collection,
                embedding_model=backend.store.embedding_model,
                embedding_dimension=backend.store.embedding_dimension,
                state="ready",
                memories=store_count,
                namespaces=namespaces,
                counted_s_ago=round(age, 3),
                repaired=self.repair,
            )
            bm25 = LexicalStatus(
                backend="in-memory BM25 (k1=1.2, b=0.75, Porter stemming, folded accents, CJK bigrams), "
                "persisted in SQLite",
                path=backend.lexical.path,
                documents=documents,
                in_sync=documents == store_count,
            )
        reranker = self.reranker.status()
        reranker.queue = self.rerank_queue.status()
        reranker.cache = self.score_cache.stats()
        remote = None
        if self.remote is not None:
            remote = self.remote.status()
            remote.counters = self.remote.counters()  # type: ignore[attr-defined]
        return StatusResponse(
            reranker=reranker,
            remote_reranker=remote,
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


@functools.cache  # reading package metadata scans sys.path: not on every status call
def _versions() -> dict[str, str]:
    versions = {"mimir-mcp": __version__}
    for package in ("mcp", "chromadb", "sentence-transformers", "transformers", "torch"):
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _interrupted_updates(added: list[MemoryRecord], lexical: LexicalIndex) -> list[str]:
    """Memories an interrupted ``update`` left behind: among memories this reconcile found in Chroma but
    not in the catalogue (``update`` writes the new memory to Chroma, then removes the old one, and
    only then touches the catalogue), those that supersede a memory still stored which was created no
    later than the update. A memory stored again after an update replaced it (a new ``remember`` of the
    old text) is newer than the update and stays."""
    gone: list[str] = []
    for record in added:
        if record.supersedes is None or record.updated_at is None:
            continue
        old = lexical.get([record.supersedes]).get(record.supersedes)
        if old is not None and _seconds(old.created_at) <= _seconds(record.updated_at):
            gone.append(old.id)
    return gone


def _seconds(iso: str) -> float:
    try:
        return timestamp(iso)
    except ValueError:
        return 0.0


def memory_out(record: MemoryRecord, max_chars: int | None) -> MemoryOut:
    """A record as ``list`` and ``get`` show it; with ``max_chars``, a longer text is cut at a word."""
    text = record.text
    truncated = max_chars is not None and len(text) > max_chars
    if truncated:
        assert max_chars is not None
        cut = text[: max_chars - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip() + "…"
    return MemoryOut(
        id=record.id,
        text=text,
        truncated=truncated,
        text_chars=len(record.text),
        namespace=record.namespace,
        tags=record.tags,
        source=record.source,
        agent=record.agent,
        created_at=record.created_at,
        updated_at=record.updated_at,
        supersedes=record.supersedes,
        metadata=record.metadata,
    )
