"""Every change to the memories: ``remember`` with deduplication and group commit, ``update``, ``forget``
and ``import``, each one transaction under the store's write lock, the store of record first. Every
deletion from the store writes its tombstone first (``sync.delete_recorded``), and every memory stored
clears its id's tombstone, so that a tombstone always means "deleted since last stored"."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import anyio.to_thread
import numpy as np

from mimir_mcp.background import freeze_heap
from mimir_mcp.config import Settings
from mimir_mcp.embedding import TextEmbedder
from mimir_mcp.errors import InvalidInputError, NotFoundError, full_disk
from mimir_mcp.models import (
    ForgetResponse,
    MemoryInput,
    MemoryRecord,
    MetadataValue,
    RecordFilter,
    RememberResponse,
    UpdateResponse,
)
from mimir_mcp.service.loading import Backend, StoreLoader
from mimir_mcp.service.records import memory_out
from mimir_mcp.service.scope import OWNER, Scope
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.service.sync import StoreSync, delete_recorded
from mimir_mcp.store.group_commit import GroupCommit

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")
# A Chroma add holds the GIL for its whole run (~5 ms idle, ~20 ms on a busy 2-core machine) however few
# rows it carries: one per remember stalled every search. So while a search is in flight, writes take at
# most this share of the time: after a write of d seconds the next starts d*(1/WRITE_DUTY - 1) later at
# the earliest, carrying every remember that arrived meanwhile. Chosen with `mimir-mcp stress`.
WRITE_DUTY = 0.2
# Most ids one ``forget`` answer lists (it counts them all).
MAX_FORGET_IDS_SHOWN = 1000
# Memories stored between two ``freeze_heap`` calls: the index's new objects join the frozen heap in
# steps, so full collections stay short as the store grows.
FREEZE_EVERY_STORED = 2000

Watcher = Callable[[list[tuple[str, str]]], Awaitable[None]]


def normalize_for_dedup(text: str) -> str:
    """What counts as "the same text": Unicode NFC, surrounding whitespace dropped, inner runs collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def dedup_key(namespace: str, text: str) -> str:
    """The memory id: a hash of namespace and normalized text, so a retried ``remember`` finds its own
    earlier write, even from another agent or another server process sharing the store."""
    digest = hashlib.sha256(f"{namespace}\x00{normalize_for_dedup(text)}".encode()).hexdigest()
    return f"mem_{digest[:32]}"


def stored_now() -> str:
    """Now, as a record holds its times (UTC, to the millisecond)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_record(memory: MemoryInput, created_at: str | None = None) -> MemoryRecord:
    """A memory as stored: its id the dedup key, created now (or at ``created_at``, for a replayed dataset)."""
    return MemoryRecord(
        id=dedup_key(memory.namespace, memory.text),
        text=memory.text,
        namespace=memory.namespace,
        tags=memory.tags,
        source=memory.source,
        agent=memory.agent,
        created_at=created_at or stored_now(),
        metadata=memory.metadata,
    )


class Writes:
    """The write transactions, and the watchers told of what each one changed."""

    def __init__(
        self, settings: Settings, embedder: TextEmbedder, loader: StoreLoader, sync: StoreSync, board: StatusBoard
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._loader = loader
        self._sync = sync
        self._board = board
        # Told of every memory this process adds, changes or removes (resources.MemoryResources listens).
        self._watchers: list[Watcher] = []
        self._stored_since_freeze = 0
        # Searches in flight: while any is, store writes are paced (``WRITE_DUTY``).
        self.searching = 0
        # Concurrent remembers share one store write (see ``_commit``).
        self.commits: GroupCommit[tuple[list[MemoryRecord], np.ndarray], set[str]] = GroupCommit(
            self._commit, duty=WRITE_DUTY, contended=lambda: self.searching > 0
        )

    def watch(self, callback: Watcher) -> None:
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

    # -- remember ----------------------------------------------------------------------------------

    async def remember(self, memories: list[MemoryInput]) -> RememberResponse:
        started = time.perf_counter()
        await self._loader.ready()  # the memories' time is when they can be stored, not when they came
        now = stored_now()
        records = [new_record(memory, now) for memory in memories]
        new_ids = await self.store_records(records)
        seen: set[str] = set()
        fresh, repeated = [], []
        for record in records:
            (fresh if record.id in new_ids and record.id not in seen else repeated).append(record)
            seen.add(record.id)
        logger.debug("remember: %d stored in %.1f ms", len(fresh), (time.perf_counter() - started) * 1000)
        return RememberResponse(
            ids=[record.id for record in records],
            stored=len(fresh),
            deduplicated=list(dict.fromkeys(record.id for record in repeated)),
        )

    async def store_records(self, records: list[MemoryRecord]) -> set[str]:
        """Store records as they are (a remember's, an import's), announce the new ones (each once, in
        order), and return their ids."""
        backend = await self._loader.ready()
        new_ids = await anyio.to_thread.run_sync(self.write, backend, records)
        await self._announce(list(dict.fromkeys((r.namespace, r.id) for r in records if r.id in new_ids)))
        return new_ids

    def write(self, backend: Backend, records: list[MemoryRecord]) -> set[str]:
        """Blocking. Embed outside the lock (the slow part), then check-and-add in a turn of the group
        commit (``_commit``), under the store lock. Returns the ids that were new."""
        unique = list({record.id: record for record in records}.values())
        # Only texts the index knows can be stored already (bar another process's write since the last
        # sync, which the commit's own check catches): the store is asked about those alone, so a new text
        # costs no store read, which holds the GIL, before it is embedded.
        known = backend.lexical.holding([r.id for r in unique])
        try:
            already = backend.store.existing(list(known)) if known else set()
        except Exception as exc:
            if full_disk(exc, self._settings.store.embedded_dir) is None:
                raise
            # Chroma applies the changes its log holds before it answers, and cannot while the disk is full:
            # the catalogue, which follows the store, tells which of these it holds (a text stored again
            # writes nothing, so it needs no space).
            already = set(known)
        candidates = [r for r in unique if r.id not in already]
        if not candidates:
            return set()
        total = len(candidates)
        vectors = []
        step = max(self._settings.embedding.batch_size * 8, 256)
        for start in range(0, total, step):
            vectors.append(self._embedder.encode([r.text for r in candidates[start : start + step]]))
            if total > step:
                logger.info("remember: embedded %d/%d memories", min(start + step, total), total)
        embeddings = np.concatenate(vectors)
        fresh = self.commits.submit((candidates, embeddings))
        self._stored_since_freeze += len(fresh)
        if self._stored_since_freeze >= FREEZE_EVERY_STORED:
            self._stored_since_freeze = 0
            freeze_heap()
        return fresh

    def _commit(self, writes: Sequence[tuple[list[MemoryRecord], np.ndarray]]) -> list[set[str]]:
        """One turn of the group commit (``group_commit.GroupCommit``): every write queued meanwhile, in
        one store ``add`` under one hold of the store lock. The lock is taken by every process on the
        data dir, so a text stored at once by several calls or processes is stored once and reported new
        to exactly one: here, the first write of the turn that holds it (across machines on one Chroma server,
        the store's ``add`` tells). The store first: it is the store of record; the index follows. Returns
        each write's new ids."""
        backend = self._loader.wait()  # loaded once per service: every queued write was embedded for it
        store, lexical = backend.store, backend.lexical
        results: list[set[str]] = []
        raced = False
        with store.writing() as reloaded:
            claimed = store.existing([record.id for candidates, _ in writes for record in candidates])
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
                stored = store.add(rows, stacked)
                store.record_dimension(int(stacked.shape[1]))
                # After the add: a crash before it would leave a forgotten memory without its tombstone.
                store.clear_tombstones([record.id for record in rows])
                if len(stored) < len(rows):
                    # Another node on the Chroma server stored these first: not new here, and the catalogue
                    # takes the stored version (its tags and times), as a sync would.
                    for fresh in results:
                        fresh &= stored
                    theirs = store.get([record.id for record in rows if record.id not in stored])
                    rows = [record for record in rows if record.id in stored] + theirs
                    raced = True
                lexical.add(rows)
                self._board.wrote()  # a write went through: a full disk ``status`` reported is over
            # The count status shows, by arithmetic: Chroma's count() takes ~5 ms of GIL under load, per
            # write. Counted for real when another process's writes were just taken in.
            counts = self._board.counts
            store_count = None if reloaded or raced or counts is None else counts.store + len(rows)
            self._board.recount(store, lexical, store_count=store_count)
        return results

    # -- forget ------------------------------------------------------------------------------------

    async def forget(
        self, ids: list[str] | None, where: RecordFilter | None, *, confirm: bool, dry_run: bool, scope: Scope = OWNER
    ) -> ForgetResponse:
        """``where`` is already confined to ``scope``; an id stored outside it reads as one never stored."""
        backend = await self._loader.synced()
        store, lexical = backend.store, backend.lexical
        limits = self._settings.limits
        removed: list[tuple[str, str]] = []

        def run() -> ForgetResponse:
            with self._sync.writing(store, lexical):
                not_found: list[str] = []
                present: dict[str, MemoryRecord] = {}
                if ids is not None:
                    wanted = list(dict.fromkeys(ids))
                    present = {
                        memory_id: record
                        for memory_id, record in lexical.get(wanted).items()
                        if scope.allows(record.namespace)
                    }
                    matched = [memory_id for memory_id in wanted if memory_id in present]
                    not_found = [memory_id for memory_id in wanted if memory_id not in present]
                else:
                    assert where is not None
                    matched = lexical.catalogue.matching_ids(where)
                    if len(matched) > limits.forget_confirm_threshold and not confirm and not dry_run:
                        raise InvalidInputError(
                            "confirm",
                            f"the filter matches {len(matched)} memories, more than "
                            f"{limits.forget_confirm_threshold}; pass confirm: true to remove them, or dry_run: "
                            "true to see which they are",
                        )
                if not dry_run and matched:
                    namespaces = lexical.namespaces_of(matched)
                    removed.extend(
                        (namespaces[memory_id], memory_id) for memory_id in matched if memory_id in namespaces
                    )
                    records = present or lexical.get(matched)
                    delete_recorded(store, [records[memory_id] for memory_id in matched if memory_id in records])
                    self._sync.changed(store)
                    lexical.remove(matched)
                    self._board.wrote()
                shown = matched[:MAX_FORGET_IDS_SHOWN]
                verb = "would remove" if dry_run else "removed"
                more = f" (the first {len(shown)} ids listed)" if len(shown) < len(matched) else ""
                return ForgetResponse(
                    dry_run=dry_run,
                    matched=len(matched),
                    removed_count=0 if dry_run else len(matched),
                    ids=shown,
                    not_found=not_found,
                    message=f"{verb} {len(matched)} {'memory' if len(matched) == 1 else 'memories'}{more}"
                    + (
                        f"; {len(not_found)} {'id was' if len(not_found) == 1 else 'ids were'} not stored"
                        if not_found
                        else ""
                    ),
                )

        response = await anyio.to_thread.run_sync(run)
        await self._announce(removed)
        return response

    # -- update ------------------------------------------------------------------------------------

    async def update(
        self,
        memory_id: str,
        *,
        text: str | None,
        tags: list[str] | None,
        metadata: dict[str, MetadataValue] | None,
        scope: Scope = OWNER,
    ) -> UpdateResponse:
        """A memory outside ``scope`` reads as one never stored; a token's change is signed with its name."""
        backend = await self._loader.synced()
        store, lexical = backend.store, backend.lexical

        def run() -> UpdateResponse:
            with self._sync.writing(store, lexical):
                old = lexical.get([memory_id]).get(memory_id)
                if old is None or not scope.allows(old.namespace):
                    raise NotFoundError(f"id: no memory {memory_id!r} is stored (it may have been forgotten)")
                wanted_metadata = metadata
                if scope.name is not None:
                    wanted_metadata = scope.signed(old.metadata if metadata is None else metadata)
                changes: dict[str, object] = {"updated_at": stored_now()}
                changed = []
                if tags is not None and tags != old.tags:
                    changes["tags"], changed = tags, [*changed, "tags"]
                if wanted_metadata is not None and wanted_metadata != old.metadata:
                    changes["metadata"], changed = wanted_metadata, [*changed, "metadata"]
                new_id = memory_id if text is None else dedup_key(old.namespace, text)
                if new_id == memory_id:
                    # A text differing only in whitespace or normalization is the same memory: its stored text
                    # stays (the id stays its hash), and it alone changes nothing, not even updated_at.
                    if not changed:
                        return UpdateResponse(
                            id=memory_id,
                            supersedes=None,
                            changed=[],
                            deduplicated=False,
                            memory=memory_out(old, None),
                        )
                    record = old.model_copy(update=changes)
                    store.set_fields(record, old)
                    self._sync.changed(store)
                    lexical.set_fields(record)
                    self._board.wrote()
                    return UpdateResponse(
                        id=memory_id,
                        supersedes=None,
                        changed=changed,
                        deduplicated=False,
                        memory=memory_out(record, None),
                    )
                assert text is not None
                existing = lexical.get([new_id]).get(new_id)
                record = old.model_copy(update={**changes, "id": new_id, "text": text, "supersedes": memory_id})
                if existing is None:
                    store.add([record], self._embedder.encode([text]))
                    store.clear_tombstones([new_id])
                else:
                    record = existing
                delete_recorded(store, [old])
                self._sync.changed(store)
                if existing is None:
                    lexical.add([record])
                lexical.remove([memory_id])
                self._board.wrote()
                return UpdateResponse(
                    id=new_id,
                    supersedes=memory_id,
                    changed=["text", *changed],
                    deduplicated=existing is not None,
                    memory=memory_out(record, None),
                )

        response = await anyio.to_thread.run_sync(run)
        if response.changed:
            namespace = response.memory.namespace
            await self._announce(list(dict.fromkeys([(namespace, memory_id), (namespace, response.id)])))
        return response
