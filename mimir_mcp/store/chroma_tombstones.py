"""Tombstones in Chroma: a collection beside the live one, one row a deleted memory, read by every process
and node on the store, so that a memory missing from the store is taken for deleted only where a
tombstone records it (``VectorStore.add_tombstones``)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mimir_mcp.models import MemoryRecord
from mimir_mcp.store.base import Tombstone
from mimir_mcp.store.chroma_records import CHROMA_BATCH, DAMAGED_SUFFIX

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# The tombstone collection's name is the live one's plus this: its own, so that it survives ``reindex``
# and repair, which replace the live collection.
TOMBSTONE_SUFFIX = "-tombstones"


class ChromaTombstones:
    """The tombstone collection of one store: each row a deleted memory, with a 1-dimensional stand-in
    vector (Chroma wants one) and the deletion in its metadata (``deleted_at``, and the version it removed).
    Opened on first use: reindex and repair never use theirs."""

    def __init__(self, client: Any, name: str, kind: str) -> None:
        self._client = client
        self.name = name
        self.kind = kind
        self._opened: Any = None

    def _collection(self) -> Any:
        if self._opened is None:
            self._opened = self._client.get_or_create_collection(self.name + TOMBSTONE_SUFFIX, embedding_function=None)
        return self._opened

    def _on(self, action: Callable[[Any], _T]) -> _T:
        """``action`` on the tombstone collection. Embedded, one Chroma cannot read (its vector index torn,
        as the live collection's can be) is kept under a ``DAMAGED_SUFFIX`` name and a new, empty one
        started, rather than the store refused: every process on this data dir shares its catalogue, from
        which each forget removes its memories as it deletes them, so without the tombstones an absent
        memory the catalogue still holds is one whose forget was never acknowledged, and restoring it is
        right. A Chroma server's collections are the server's own: its error is the caller's."""
        from chromadb.errors import InternalError

        try:
            return action(self._collection())
        except InternalError as exc:
            if self.kind != "embedded":
                raise
            name = self.name + TOMBSTONE_SUFFIX
            kept = f"{name}{DAMAGED_SUFFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            self._client.get_collection(name).modify(name=kept)
            self._opened = None
            logger.warning("store: Chroma cannot read the tombstones (%s); kept as %r, new ones begun", exc, kept)
            return action(self._collection())

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """One small write: an upsert into the tombstone collection (an id forgotten again is replaced)."""
        now = time.time()

        def write(collection: Any) -> None:
            for start in range(0, len(records), CHROMA_BATCH):
                chunk = records[start : start + CHROMA_BATCH]
                collection.upsert(
                    ids=[record.id for record in chunk],
                    embeddings=[[_stand_in(record.id)] for record in chunk],
                    metadatas=[_tombstone_metadata(Tombstone.of(record, now)) for record in chunk],
                )

        self._on(write)

    def clear(self, ids: Sequence[str]) -> None:
        def clear(collection: Any) -> None:
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), CHROMA_BATCH):
                found = collection.get(ids=unique[start : start + CHROMA_BATCH], include=[])["ids"]
                if found:
                    collection.delete(ids=found)

        self._on(clear)

    def read(self, ids: Sequence[str] | None = None) -> dict[str, Tombstone]:
        def read(collection: Any) -> dict[str, Tombstone]:
            pages: list[Any] = []
            if ids is None:
                offset = 0
                while not pages or len(pages[-1]["ids"]) == 10_000:
                    pages.append(collection.get(include=["metadatas"], limit=10_000, offset=offset))
                    offset += len(pages[-1]["ids"])
            else:
                unique = list(dict.fromkeys(ids))
                pages = [
                    collection.get(ids=unique[start : start + CHROMA_BATCH], include=["metadatas"])
                    for start in range(0, len(unique), CHROMA_BATCH)
                ]
            return {
                memory_id: _tombstone(metadata or {})
                for page in pages
                for memory_id, metadata in zip(page["ids"], page["metadatas"], strict=True)
            }

        return self._on(read)


def _stand_in(memory_id: str) -> float:
    """A tombstone's 1-dimensional vector: spread by the id's hash, since an HNSW graph of identical points
    is slow to build."""
    return int.from_bytes(hashlib.blake2b(memory_id.encode(), digest_size=4).digest(), "big") / 2**32


def _tombstone_metadata(tombstone: Tombstone) -> dict[str, Any]:
    """A tombstone as the collection's metadata (Chroma keeps no None values); ``_tombstone`` reads it back."""
    stored = {"deleted_at": tombstone.deleted_at, "created_at": tombstone.created_at}
    return stored if tombstone.updated_at is None else {**stored, "updated_at": tombstone.updated_at}


def _tombstone(metadata: Any) -> Tombstone:
    updated = metadata.get("updated_at")
    return Tombstone(
        float(metadata.get("deleted_at") or 0.0),
        str(metadata.get("created_at", "")),
        None if updated is None else str(updated),
    )
