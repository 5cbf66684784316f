"""Keeping this process's catalogue and BM25 index in step with the store of record, which other processes
sharing it change too: the reconcile, when to run it, and the write lock every change holds.

The catalogue and the store guard each other; neither erases the other. Deletions are taken from a record
of them, never inferred from absence: every deletion from the store writes a tombstone first
(``delete_recorded``), and storing an id again clears it. A memory the catalogue holds and the store does
not is removed from the catalogue where the store has a tombstone for it; without one the store lost it
(a torn or truncated file, an older copy of its folder put back) and it is stored again from the
catalogue, embedded anew, with a warning and a report in ``status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import numpy as np

from mimir_mcp.config import StoreSettings
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import MemoryRecord
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.status_models import RepairReport
from mimir_mcp.store.base import VectorStore
from mimir_mcp.store.catalogue import timestamp

logger = logging.getLogger(__name__)

# How far another machine's clock may run behind this one's when reading updates made since the last one
# seen (a Chroma server shared by several machines).
UPDATE_CLOCK_SKEW_S = 300.0
# The catalogue's record of when it was first reconciled with tombstones kept (``absent_memories``).
TOMBSTONES_SINCE = "tombstones_since"
# Memories embedded again at a time when the store had lost them.
RESTORE_BATCH = 256

Encode = Callable[[list[str]], np.ndarray]


def delete_recorded(store: VectorStore, records: Sequence[MemoryRecord]) -> None:
    """Delete memories from the store of record, each one's tombstone written first, so that every process
    sharing the store takes the deletion from its record (under ``writing``). A delete that fails takes
    its tombstones back where it can: the memories it left stay live, as the failed call said."""
    if not records:
        return
    ids = [record.id for record in records]
    store.add_tombstones(records)
    try:
        store.delete(ids)
    except Exception:
        with suppress(Exception):
            store.clear_tombstones(ids)
        raise


def reconcile(store: VectorStore, lexical: LexicalIndex, encode: Encode) -> RepairReport | None:
    """Make the catalogue and the BM25 index hold exactly the store's memories, with the store's tags
    and metadata (after a crash, or changes by another process sharing the store), and the store every
    memory of the catalogue that was not deleted (``absent_memories``). An update interrupted after
    storing its new text keeps the new memory and drops the one it supersedes, in the store too, so no
    memory is left half-replaced. Returns what was restored to the store, if anything was."""
    store_ids = store.all_ids()
    lexical_ids = lexical.ids()
    missing = sorted(store_ids - lexical_ids)
    deleted, lost = absent_memories(store, lexical, sorted(lexical_ids - store_ids))
    added = store.get(missing) if missing else []
    if added:
        lexical.add(added)
    if deleted:
        lexical.remove(deleted)
    restored = restore(store, lexical, lost, encode) if lost else None
    superseded = interrupted_updates(added, lexical)
    if superseded:
        delete_recorded(store, list(lexical.get(superseded).values()))
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
    if lexical.catalogue.meta(TOMBSTONES_SINCE) is None:
        lexical.catalogue.set_meta(TOMBSTONES_SINCE, repr(time.time()))
    if missing or deleted or superseded:
        logger.info(
            "catalogue reconciled with the store: %d added, %d removed, %d superseded",
            len(missing),
            len(deleted),
            len(superseded),
        )
    return restored


def absent_memories(store: VectorStore, lexical: LexicalIndex, absent: list[str]) -> tuple[list[str], list[str]]:
    """Of memories the catalogue holds and the store does not, those deleted (the store has a tombstone for
    each) and those the store lost (no tombstone). Reads the tombstones of these ids alone.

    A catalogue that was never reconciled with tombstones kept (no ``tombstones_since`` in its meta) may
    hold memories that versions before tombstones deleted without one: at that first reconcile absence
    means deletion, as it did then, and from then on every deletion has a tombstone. The mark is the
    catalogue's, not the store's: a store put back from a backup made before tombstones were kept has
    still lost what the catalogue holds. Processes of an older version must not share the store with
    newer ones: their forgets leave no tombstone, and would be taken for losses and undone."""
    if not absent:
        return [], []
    if lexical.catalogue.meta(TOMBSTONES_SINCE) is None:
        return absent, []
    tombstones = store.tombstones(absent)
    return [i for i in absent if i in tombstones], [i for i in absent if i not in tombstones]


def restore(store: VectorStore, lexical: LexicalIndex, lost: list[str], encode: Encode) -> RepairReport | None:
    """Store again, embedded anew, the memories the store lost (``absent_memories``) from the catalogue.
    Under ``writing``, like the rebuild of a store that cannot be read (``store/repair.py``)."""
    started = time.perf_counter()
    found = lexical.get(lost)
    records = [found[memory_id] for memory_id in lost if memory_id in found]
    gone = [memory_id for memory_id in lost if memory_id not in found]
    if gone:  # removed from a catalogue this process shares, by another process, since its index read it
        lexical.remove(gone)
    for start in range(0, len(records), RESTORE_BATCH):
        chunk = records[start : start + RESTORE_BATCH]
        vectors = encode([record.text for record in chunk])
        store.add(chunk, vectors)
        store.record_dimension(int(vectors.shape[1]))
    if not records:
        return None
    reason = (
        f"the store had lost {len(records)} memories the catalogue holds, with no record of their deletion: "
        "restored from the catalogue"
    )
    seconds = round(time.perf_counter() - started, 2)
    logger.warning("store: %s (%.1f s)", reason, seconds)
    return RepairReport(
        reason=reason,
        memories=len(records),
        seconds=seconds,
    )


def finish_interrupted_forgets(store: VectorStore) -> int:
    """Tombstones of memories the store still holds, at open. One that names the version stored is a
    deletion interrupted between its tombstone and its delete (a process killed, or a store that failed
    in between): the deletion is completed, as the forget or update that began it asked, and the next
    reconcile takes it from the catalogue. One that names another version is stale (the id was stored
    again and its tombstone not yet cleared): it is dropped, and the memory stays. Reads every tombstone,
    so it runs at open only: a process's own interrupted deletions are completed when it next opens the
    store, or when any other process does. Returns how many deletions it completed."""
    tombstones = store.tombstones()
    if not tombstones:
        return 0
    held = store.get(sorted(tombstones))  # those still stored: not a listing of every id (a million at times)
    interrupted = [record.id for record in held if tombstones[record.id].names(record)]
    stale = [record.id for record in held if not tombstones[record.id].names(record)]
    if stale:
        store.clear_tombstones(stale)
    if interrupted:
        store.delete(interrupted)
        logger.warning("store: completed %d deletions interrupted after their tombstone", len(interrupted))
    return len(interrupted)


def interrupted_updates(added: list[MemoryRecord], lexical: LexicalIndex) -> list[str]:
    """Memories an interrupted ``update`` left behind: among memories a reconcile found in the store but
    not in the catalogue (``update`` writes the new memory to the store, then removes the old one, and
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


class StoreSync:
    """When this process looks for other processes' writes, and what it last saw of them."""

    def __init__(self, settings: StoreSettings, board: StatusBoard) -> None:
        self._settings = settings
        self._board = board
        self._last_sync = -float("inf")
        self._last_token: object = None
        # The store's generation as of this process's last reconcile or own change.
        self.generation: str | None = None
        # What restores memories the store lost (``reconcile``): the service's embedder, given at open.
        self._encode: Encode | None = None
        # The last time a reconcile found memories the store had lost and restored them, for status.
        self.restored: RepairReport | None = None

    def opened(self, store: VectorStore, lexical: LexicalIndex, encode: Encode, *, whole: bool = False) -> int | None:
        """At open, under the write lock: deletions a crash interrupted completed, the catalogue and the
        store caught up with each other, and the generation noted. ``encode``: the embedder's, which
        restores memories the store lost. ``whole``: the store and the catalogue are as the last writes and
        the last clean close left them: every write reached both whole, so they hold the same memories and
        are neither listed nor counted to be compared (seconds each at a million). Returns the store's count
        when it is known without counting."""
        self._encode = encode
        # A deletion interrupted between its tombstone and its delete left the store unvouched.
        if not whole and finish_interrupted_forgets(store):
            store.bump_generation()
        if not whole:
            self._reconcile(store, lexical)
        if lexical.catalogue.meta("chroma_created_ts") is None:
            # Stores written before time filters existed have no numeric creation time in the store.
            older = store.missing_created_ts()
            if older:
                store.set_created_ts(older)
                logger.info("store: creation times recorded for %d older memories (time filters)", len(older))
            lexical.catalogue.set_meta("chroma_created_ts", "1")
        self.generation = store.generation()
        # Everything stored until now is taken in: the first read need not catch up (a count, at least).
        self._last_token, self._last_sync = store.change_token(), time.monotonic()
        return lexical.count() if whole else None

    def due(self, store: VectorStore) -> bool:
        """Whether to compare counts before this read. Where the store has a change token (the embedded
        store: a stat of its files, not a count), when it moved since the last comparison; otherwise (a
        Chroma server) at most once per ``sync_interval_s``."""
        now = time.monotonic()
        token = store.change_token()
        if token is not None:
            due = token != self._last_token
        else:
            due = now - self._last_sync >= self._settings.sync_interval_s
        if due:
            self._last_token, self._last_sync = token, now
        return due

    def missed(self) -> None:
        """The last catch-up failed: the next read tries again."""
        self._last_token, self._last_sync = None, -float("inf")

    def catch_up(self, store: VectorStore, lexical: LexicalIndex) -> None:
        """Blocking. A count comparison catches memories added through another process sharing the store;
        the generation, which every ``forget`` and ``update`` changes, catches the rest."""
        seen = store.catch_up()  # this process's view of the store, with the other processes' writes
        if seen is not None:
            # What this sync has taken in: a later write by anyone changes the token again, and only then is
            # the next sync due (taking the writes in may itself have touched the files, which must not count).
            self._last_token = seen
        generation = store.generation()
        store_count = store.count()
        if store_count != lexical.count() or generation != self.generation:
            with self.writing(store, lexical):
                self._reconcile(store, lexical)
                self.generation = generation
        else:
            self._board.recount(store, lexical, store_count=store_count)

    def _reconcile(self, store: VectorStore, lexical: LexicalIndex) -> None:
        if self._encode is None:
            raise RuntimeError("StoreSync.opened must run before a reconcile")
        restored = reconcile(store, lexical, self._encode)
        if restored is not None:
            self.restored = restored

    @contextmanager
    def writing(self, store: VectorStore, lexical: LexicalIndex) -> Iterator[None]:
        """The store's write lock, and the counts ``status`` shows taken again before it is released."""
        with store.writing():
            yield
            self._board.recount(store, lexical)

    def changed(self, store: VectorStore) -> None:
        """Tell every process sharing the store that memories were removed or changed (under the lock)."""
        store.bump_generation()
        self.generation = store.generation()
