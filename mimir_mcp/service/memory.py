"""The memory service: what the tools, resources and commands call, composed here from its parts (loading,
sync, writes, status) and the models. Created once per process and shared by every session and transport.

Each call takes the caller's ``Scope`` (``OWNER`` when left out) and is held to it here: which namespaces
it may read and write, and the token name its writes are signed with."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator

import anyio.to_thread

from mimir_mcp.config import Settings
from mimir_mcp.embedding import Embedder, TextEmbedder
from mimir_mcp.errors import InvalidInputError, full_disk
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import (
    ForgetResponse,
    GetResponse,
    ListResponse,
    MemoryInput,
    MemoryRecord,
    MetadataValue,
    RecordFilter,
    RememberResponse,
    RerankDocument,
    RerankedDocument,
    RerankResponse,
    SearchResponse,
    UpdateResponse,
)
from mimir_mcp.rerank import LocalCrossEncoder, Reranker, rerank_or_raise
from mimir_mcp.rerank.admission import RerankQueue
from mimir_mcp.rerank.base import can_rerank
from mimir_mcp.rerank.cache import CachedReranker, ScoreCache
from mimir_mcp.search.pipeline import SearchPipeline
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.search.time_scope import time_scope
from mimir_mcp.service.loading import StoreLoader
from mimir_mcp.service.records import memory_out
from mimir_mcp.service.scope import OWNER, Scope
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.service.sync import StoreSync
from mimir_mcp.service.writes import Watcher, Writes, dedup_key, normalize_for_dedup
from mimir_mcp.status_models import RepairReport, StatusResponse
from mimir_mcp.store.base import StoreFactory, VectorStore
from mimir_mcp.store.chroma import open_chroma

logger = logging.getLogger(__name__)

__all__ = ["MemoryService", "dedup_key", "normalize_for_dedup"]


class MemoryService:
    """Everything the tools need. ``embedder``, ``reranker`` and ``open_store`` replace the configured
    models and Chroma (tests inject ``HashingEmbedder`` and ``open_in_memory``); nothing loads until
    ``start`` or the first call."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: TextEmbedder | None = None,
        reranker: Reranker | None = None,
        open_store: StoreFactory = open_chroma,
    ) -> None:
        self.settings = settings
        onnx_cache_dir = settings.store.onnx_cache_dir.expanduser()
        self.embedder: TextEmbedder = embedder or Embedder(
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
        self.remote: Reranker | None = None
        if settings.remote.url:
            # Imported only here: httpx (with its command line's rich and pygments) is a tenth of a second of
            # every start that would otherwise come before the handshake.
            from mimir_mcp.rerank.remote import RemoteReranker

            self.remote = CachedReranker(RemoteReranker(settings.remote), self.score_cache)
        # The cross-encoder's queue, shared by every search and `rerank` call of the process.
        self.rerank_queue = RerankQueue(settings.reranker)
        self.board = StatusBoard()
        self.sync = StoreSync(settings.store, self.board)
        self.loader = StoreLoader(settings, self.embedder, open_store, self.sync, self.board)
        self.writes = Writes(settings, self.embedder, self.loader, self.sync, self.board)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start loading everything in the background; returns at once and may be called repeatedly."""
        self.embedder.start()
        self.reranker.start()
        self.loader.start()

    def storage(self) -> tuple[VectorStore, LexicalIndex]:
        """Blocking: the opened store and index, for tools that fill them directly (the benchmark, export,
        import). Starts the store and the bi-encoder, not the reranker, which these never need."""
        self.embedder.start()
        self.loader.start()
        backend = self.loader.wait()
        return backend.store, backend.lexical

    @property
    def reranks(self) -> bool:
        """Whether a search here can be reranked at all (``can_rerank``)."""
        return can_rerank(self.reranker, self.remote)

    @property
    def repair(self) -> RepairReport | None:
        """Set when opening found a store it could not read and rebuilt it from the catalogue."""
        backend = self.loader.result_now()
        return None if backend is None else backend.repair

    def watch(self, callback: Watcher) -> None:
        """Call ``callback`` with the ``(namespace, id)`` of the memories each write through this service
        added, changed or removed, after the write."""
        self.writes.watch(callback)

    def close(self) -> None:
        """Close the catalogue and let go of the store (``VectorStore.close``), so that a service opened
        later in this process on the same data dir reads the files afresh."""
        lexical = self.loader.catalogue()
        if lexical is not None:
            lexical.close()
        backend = self.loader.result_now()
        if backend is not None:
            backend.store.close()

    # -- writes --------------------------------------------------------------------------------------

    async def remember(
        self, memories: list[MemoryInput], scope: Scope = OWNER, *, field: str = "memories"
    ) -> RememberResponse:
        """Store validated memories, each in a namespace of the scope (``field``: the argument they came in,
        for a refusal's name; '' for one ``text``). Texts already stored in the same namespace are not stored
        again."""
        scope.check_write("remember")
        return await self.writes.remember(scope.writable(memories, field))

    async def forget(
        self,
        ids: list[str] | None,
        where: RecordFilter | None,
        *,
        confirm: bool,
        dry_run: bool,
        scope: Scope = OWNER,
    ) -> ForgetResponse:
        """Remove memories by id, or every memory a filter matches (which past a threshold needs
        ``confirm``). The store first, then the catalogue and the index, under the write lock; a crash in
        between is repaired by the next reconcile, which follows the store. An id outside the scope reads as
        one never stored."""
        scope.check_write("forget")
        return await self.writes.forget(
            ids, None if where is None else scope.confine(where), confirm=confirm, dry_run=dry_run, scope=scope
        )

    async def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        scope: Scope = OWNER,
    ) -> UpdateResponse:
        """Change a memory. Tags or metadata only: the same id, changed in place. New text: the id is the
        new text's content hash (so remembering that text again deduplicates), the memory is embedded and
        indexed anew with ``supersedes`` naming the old id, and the old one is removed; the creation time
        stays the original one. The store first: the new memory, then the old one's removal, then the
        catalogue and the index; a crash between the two store writes leaves both, and the next
        reconcile, finding the new memory missing from the catalogue, drops the superseded one. A token's
        change is signed with its name; a memory outside its scope reads as one never stored."""
        scope.check_write("update")
        return await self.writes.update(memory_id, text=text, tags=tags, metadata=metadata, scope=scope)

    def import_records(self, records: list[MemoryRecord]) -> set[str]:
        """Store exported records as they are (ids, times and all); ids already stored are skipped.
        Blocking, for the CLI. Returns the ids that were new."""
        self.storage()
        return self.writes.write(self.loader.wait(), records)

    async def import_memories(self, records: list[MemoryRecord], scope: Scope = OWNER) -> set[str]:
        """``import_records`` for a caller with a scope (the web page's import): each record's namespace must
        be the scope's, a token's records are signed with its name, and the new ones are announced to the
        watchers. Returns the new ids."""
        scope.check_write("import")
        checked = []
        for record in records:
            scope.check("namespace", record.namespace)
            checked.append(record.model_copy(update={"metadata": scope.signed(record.metadata)}))
        return await self.writes.store_records(checked)

    # -- search ------------------------------------------------------------------------------------

    async def search(self, request: SearchRequest, scope: Scope = OWNER) -> SearchResponse:
        """The memories of the scope that best answer ``request``."""
        if scope.confined:
            where = scope.confine(request.where)
            request = dataclasses.replace(request, namespace=where.namespace, namespaces=where.namespaces)
        store, lexical, unready = await self._searchable(request)

        def pipeline(store: VectorStore | None, unready: str | None) -> SearchPipeline:
            return SearchPipeline(
                self.settings.search,
                self.embedder,
                store,
                lexical,
                self.reranker,
                self.rerank_queue,
                remote=self.remote,
                unready=unready,
            )

        self.writes.searching += 1
        try:
            try:
                response = await pipeline(store, unready).run(request)
            except Exception as exc:
                full = full_disk(exc, self.settings.store.embedded_dir)
                if full is None or store is None or not request.keywords_can_answer:
                    raise
                # Chroma applies the changes its log holds before a query, and cannot while the disk is full:
                # the keyword arms answer from the catalogue meanwhile, as while the store opens.
                logger.warning("search: the dense arm cannot run, the disk is full (%s)", full)
                why = "The memory store's disk is full, so its vectors cannot be read until space is freed"
                response = await pipeline(None, why).run(request)
        finally:
            self.writes.searching -= 1
        self.board.searched(response)
        return response

    async def _searchable(self, request: SearchRequest) -> tuple[VectorStore | None, LexicalIndex, str | None]:
        """What a search can read now: the store and the catalogue, or (while the store opens, where the
        catalogue opened first) the catalogue alone, with why the dense arm cannot run. A search with a
        keyword arm does not wait for the store then (nor, in the pipeline, for the embedder); one of the
        dense arm alone, or one that needs stored vectors (``diversity``), does."""
        early = await self.loader.keywords() if request.keywords_can_answer else None
        if early is not None:
            # Another process on this data dir may have written since it was read: a cheap check, then its rows.
            await anyio.to_thread.run_sync(early.level)
            return None, early, "The memory store is still opening"
        backend = await self.loader.synced(embedder=False)
        return backend.store, backend.lexical, None

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

    # -- reads ---------------------------------------------------------------------------------------

    async def list_memories(
        self,
        where: RecordFilter,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool,
        max_chars: int | None,
        scope: Scope = OWNER,
        when: str | None = None,
        tz: str | None = None,
    ) -> ListResponse:
        """A page of the memories ``where`` matches within the scope (and the time ``when`` reads as)."""
        timed = time_scope(
            when, tz, self.settings.search, created_after=where.created_after, created_before=where.created_before
        )
        where = scope.confine(
            where.model_copy(update={"created_after": timed.created_after, "created_before": timed.created_before})
        )
        backend = await self.loader.synced()
        catalogue = backend.lexical.catalogue

        def run() -> tuple[list[MemoryRecord], str | None, int]:
            records, next_cursor = catalogue.page(where, limit, cursor, newest_first=newest_first)
            return records, next_cursor, catalogue.count(where)

        try:
            records, next_cursor, total = await anyio.to_thread.run_sync(run)
        except ValueError as exc:
            raise InvalidInputError("cursor", str(exc)) from exc
        return ListResponse(
            memories=[memory_out(record, max_chars) for record in records],
            next_cursor=next_cursor,
            total=total,
            time_range=timed.shown,
        )

    async def namespace_counts(self, scope: Scope = OWNER) -> dict[str, int]:
        """Memories per namespace of the scope, as stored now (other processes' writes taken in first)."""
        backend = await self.loader.synced()
        return scope.counts(await anyio.to_thread.run_sync(backend.lexical.namespace_counts))

    async def namespace_activity(self, scope: Scope = OWNER) -> dict[str, tuple[int, str | None]]:
        """Per namespace of the scope: its count and when a memory was last stored or updated there."""
        backend = await self.loader.synced()
        activity = await anyio.to_thread.run_sync(backend.lexical.catalogue.namespace_activity)
        return {name: value for name, value in activity.items() if scope.allows(name)}

    async def get(self, ids: list[str], *, max_chars: int | None, scope: Scope = OWNER) -> GetResponse:
        """The memories asked for, in that order; those not stored, or stored outside the scope, are
        ``not_found``."""
        backend = await self.loader.synced()
        found = await anyio.to_thread.run_sync(backend.lexical.get, ids)
        shown = [memory_id for memory_id in ids if memory_id in found and scope.allows(found[memory_id].namespace)]
        return GetResponse(
            memories=[memory_out(found[memory_id], max_chars) for memory_id in shown],
            not_found=[memory_id for memory_id in ids if memory_id not in set(shown)],
        )

    def export_records(self, namespace: str | None = None, page: int = 1000) -> Iterator[MemoryRecord]:
        """Every memory (of ``namespace``, or all), oldest first, as stored: blocking, for the CLI."""
        for records in self.export_pages(namespace, page):
            yield from records

    def export_pages(self, namespace: str | None = None, page: int = 1000) -> Iterator[list[MemoryRecord]]:
        """``export_records`` a page at a time (each step blocking: the web page runs each in a thread)."""
        store, lexical = self.storage()
        self.sync.catch_up(store, lexical)
        cursor = None
        where = RecordFilter(namespace=namespace)
        while True:
            records, cursor = lexical.catalogue.page(where, page, cursor, newest_first=False)
            yield records
            if cursor is None:
                return

    # -- status ------------------------------------------------------------------------------------

    async def status(self, scope: Scope = OWNER) -> StatusResponse:
        """Models, store and index, counts (of the scope's namespaces only), timings."""
        backend = self.loader.result_now()
        store, bm25 = self.board.store_status(
            self.settings,
            None if backend is None else (backend.store, backend.lexical),
            state=self.loader.state,
            error=self.loader.error,
            repair=None if backend is None else backend.repair,
            catalogue_repair=None if backend is None else backend.catalogue_repair,
        )
        if scope.confined:
            store.namespaces = scope.counts(store.namespaces)
            store.memories = sum(store.namespaces.values())
            if bm25 is not None:
                bm25.documents = store.memories
        response = self.board.response(
            store,
            bm25,
            embedder=self.embedder,
            reranker=self.reranker,
            rerank_queue=self.rerank_queue,
            score_cache=self.score_cache,
            remote=self.remote,
        )
        if scope.confined:
            # Activity counters are the whole server's: a token held to some namespaces would read how much
            # the others search. It sees the models and its own namespaces' counts only.
            response.search = None
            for part in (response.reranker, response.remote_reranker):
                if part is not None:
                    part.queue = part.cache = part.counters = None
        return response
