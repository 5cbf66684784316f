"""Keeping this process's catalogue and BM25 index in step with the store of record, which other processes
sharing it change too: the reconcile, when to run it, and the write lock every change holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mimir_mcp.config import StoreSettings
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import MemoryRecord
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.store.base import VectorStore
from mimir_mcp.store.catalogue import timestamp

logger = logging.getLogger(__name__)

# How far another machine's clock may run behind this one's when reading updates made since the last one
# seen (a Chroma server shared by several machines).
UPDATE_CLOCK_SKEW_S = 300.0


def reconcile(store: VectorStore, lexical: LexicalIndex) -> None:
    """Make the catalogue and the BM25 index hold exactly the store's memories, with the store's tags
    and metadata (after a crash, or changes by another process sharing the store). The store is the
    store of record. An update interrupted after storing its new text keeps the new memory and drops
    the one it supersedes, in the store too, so no memory is left half-replaced."""
    store_ids = store.all_ids()
    lexical_ids = lexical.ids()
    missing = sorted(store_ids - lexical_ids)
    extra = sorted(lexical_ids - store_ids)
    added = store.get(missing) if missing else []
    if added:
        lexical.add(added)
    if extra:
        lexical.remove(extra)
    superseded = interrupted_updates(added, lexical)
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

    def opened(self, store: VectorStore, lexical: LexicalIndex) -> None:
        """At open, under the write lock: the catalogue caught up with the store, and the generation noted."""
        reconcile(store, lexical)
        if lexical.catalogue.meta("chroma_created_ts") is None:
            # Stores written before time filters existed have no numeric creation time in the store.
            older = store.missing_created_ts()
            if older:
                store.set_created_ts(older)
                logger.info("store: creation times recorded for %d older memories (time filters)", len(older))
            lexical.catalogue.set_meta("chroma_created_ts", "1")
        self.generation = store.generation()

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
                reconcile(store, lexical)
                self.generation = generation
        else:
            self._board.recount(store, lexical, store_count=store_count)

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
