"""What the service, search, reindex and repair need from a vector store: the seam between them and Chroma.

``ChromaStore`` (chroma.py) is the store of record, embedded or on a server; ``InMemoryStore``
(in_memory.py) is exact and single-process, for unit tests of the logic above it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from mimir_mcp.models import MemoryRecord, RecordFilter
from mimir_mcp.status_models import RepairReport

if TYPE_CHECKING:
    from mimir_mcp.config import Settings
    from mimir_mcp.embedding import TextEmbedder
    from mimir_mcp.lexical.index import LexicalIndex

StoreKind = Literal["embedded", "server", "in-memory"]


@dataclass(frozen=True)
class Tombstone:
    """The store's record that a memory was deleted, kept where every process sharing the store reads it:
    absence alone never says a memory was forgotten (a store can lose memories), a tombstone does.
    ``created_at`` and ``updated_at`` are those of the version the deletion removed."""

    deleted_at: float  # Unix seconds
    created_at: str
    updated_at: str | None = None

    @classmethod
    def of(cls, record: MemoryRecord, deleted_at: float) -> Tombstone:
        return cls(deleted_at, record.created_at, record.updated_at)

    def names(self, record: MemoryRecord) -> bool:
        """Whether this deletion removed exactly ``record``'s version (and not a later one stored again)."""
        return (self.created_at, self.updated_at) == (record.created_at, record.updated_at)


class VectorStore(Protocol):
    """Memories with their vectors: the store of record, which the catalogue and the BM25 index follow.

    Every write happens inside ``writing``, which every process sharing the store serializes. Writes by
    other processes show in ``change_token`` (cheaply, where the store can tell) and ``count``; removals and
    changes also in ``generation``, which each ``forget`` and ``update`` moves on with ``bump_generation``.
    Every deletion of a memory is recorded first as a tombstone (``add_tombstones``), and storing an id
    again clears its tombstone (``clear_tombstones``): a tombstone says the id is deleted now.
    """

    @property
    def kind(self) -> StoreKind:
        """What ``status`` calls the store."""
        ...

    @property
    def location(self) -> str: ...

    @property
    def name(self) -> str:
        """The collection's name."""
        ...

    @property
    def embedding_model(self) -> str | None:
        """The model whose vectors the store holds (``None``: not recorded yet)."""
        ...

    @property
    def embedding_dimension(self) -> int | None: ...

    @property
    def repairable(self) -> bool:
        """Whether this process can find a torn copy of the store's files (``damage``) and ``rebuild`` it
        from the catalogue. A store on a server, or in memory, has no files of its own here."""
        ...

    @property
    def found_whole(self) -> bool:
        """Whether the store's files were, at open, as the last write under the lock left them whole: no
        process died writing since (``probe.vouched``). Always False where this process cannot tell."""
        ...

    # -- writes: inside ``writing`` ----------------------------------------------------------------

    def writing(self) -> AbstractContextManager[bool]:
        """Hold the store's write lock, shared by every process using the store, with this process's view
        made current first; yields whether another process had written since this one last looked."""
        ...

    def add(self, records: Sequence[MemoryRecord], embeddings: np.ndarray) -> set[str]:
        """Store new memories (ids already stored are left as they are). Returns the ids this call stored:
        all of them under a lock every writer takes; on a Chroma server shared by machines, less those
        another node stored first, which no lock here could have kept out."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Remove memories; ids not stored are ignored. Of the store of record, only after
        ``add_tombstones`` (``sync.delete_recorded``)."""
        ...

    def add_tombstones(self, records: Sequence[MemoryRecord]) -> None:
        """Record that these memories (these versions) are being deleted, replacing an id's older tombstone."""
        ...

    def clear_tombstones(self, ids: Sequence[str]) -> None:
        """Drop the tombstones of ``ids``, stored again (one read when none has one)."""
        ...

    def set_fields(self, record: MemoryRecord, previous: MemoryRecord) -> None:
        """Replace a memory's tags, metadata, source, agent and times; its text and vector stay."""
        ...

    def record_dimension(self, dimension: int) -> None:
        """Remember the vectors' dimension, when it is not recorded yet."""
        ...

    def bump_generation(self) -> None:
        """Tell every process sharing the store that memories were removed or changed."""
        ...

    def set_created_ts(self, records: Sequence[MemoryRecord]) -> None:
        """Record numeric creation times for memories that lack them (``missing_created_ts``)."""
        ...

    # -- reads ------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        """The memories of ``ids`` that are stored."""
        ...

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        ...

    def all_ids(self) -> set[str]: ...

    def count(self) -> int: ...

    def query(self, embedding: np.ndarray, limit: int, *, where: RecordFilter | None = None) -> list[tuple[str, float]]:
        """Nearest memories passing ``where`` as ``(id, cosine similarity)``, best first."""
        ...

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of ``ids`` still stored."""
        ...

    def warm(self) -> None:
        """Blocking: make ``query`` ready to answer at once (load the vector index), right after opening."""
        ...

    def records(self, *, embeddings: bool = False, batch: int = 1000) -> Iterator[tuple[list[MemoryRecord], Any]]:
        """Every memory, a page at a time, with its vectors when asked (else ``None``)."""
        ...

    def updated_since(self, since: float) -> list[MemoryRecord]:
        """Memories whose fields ``update`` changed after ``since`` (Unix seconds)."""
        ...

    def missing_created_ts(self) -> list[MemoryRecord]:
        """Memories stored before creation times were recorded as numbers (time filters need them)."""
        ...

    def tombstones(self, ids: Sequence[str] | None = None) -> dict[str, Tombstone]:
        """The tombstones of those of ``ids`` that have one; every tombstone when ``ids`` is None."""
        ...

    # -- other processes' writes -------------------------------------------------------------------

    def generation(self) -> str | None:
        """Changes whenever any process removes or changes a memory."""
        ...

    def identity(self) -> str | None:
        """Which store this is: an id the store keeps from its creation on, through repair and reindex, so a
        catalogue can tell its store from one that was reset or replaced (deleted files come back as a new,
        empty store, not as a store whose memories were all forgotten). Made on first call; None where the
        store keeps nothing between processes (in memory). Under ``writing``."""
        ...

    @property
    def set_aside(self) -> tuple[str, str] | None:
        """What the store found unreadable when it opened, and where it moved it (never deleted), so that it
        opened empty and is rebuilt from the catalogue; ``None`` when nothing was."""
        ...

    def change_token(self) -> Hashable | None:
        """Something every write changes, whichever process makes it, and reads do not, cheap to take;
        ``None`` when the store cannot tell (then other processes' writes are looked for on a timer)."""
        ...

    def catch_up(self) -> Hashable | None:
        """Take in other processes' writes now (under the write lock); returns ``change_token`` as of
        that moment, the token that means "nothing new since"."""
        ...

    # -- repair: only where ``repairable`` ---------------------------------------------------------

    def damage(self) -> str | None:
        """Why the store's files cannot be read, or ``None`` when they can. Under ``writing``."""
        ...

    def rebuild(
        self,
        lexical: LexicalIndex,
        encode: Callable[[list[str]], np.ndarray],
        model: str,
        reason: str,
        identity: str | None = None,
    ) -> RepairReport:
        """Replace the unreadable (or lost) store with one holding every memory of the catalogue, embedded
        again with ``encode`` (``model``'s vectors), under ``identity`` when given (the catalogue's). Under
        ``writing``; the caller opens the store again afterwards."""
        ...

    def close(self) -> None:
        """Release what this handle holds open. Chroma keeps one set of bindings per data dir in a process,
        shared by every client on it until the last one closes: a handle left open keeps them, stale, for
        the next one the process opens, which then does not see what other processes wrote meanwhile."""
        ...


StoreFactory = Callable[["Settings", "TextEmbedder"], VectorStore]
"""Opens the configured store for a service, given the embedder its vectors come from (blocking)."""
