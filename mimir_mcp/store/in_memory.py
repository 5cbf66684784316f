"""A ``VectorStore`` in this process's memory: exact cosine over numpy arrays, for unit tests of the logic
above the store (the service, search, sync) without Chroma's start-up and files.

Single-process: ``writing`` is a thread lock, and ``change_token`` counts this object's writes. Two
services handed the same object see each other's writes through the token, the counts and the
generation, as two processes sharing a Chroma store do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from mimir_mcp.errors import StoreUnavailableError
from mimir_mcp.models import MemoryRecord, MetadataValue, RecordFilter
from mimir_mcp.status_models import RepairReport
from mimir_mcp.store.base import StoreKind, Tombstone
from mimir_mcp.store.catalogue import timestamp

if TYPE_CHECKING:
    from mimir_mcp.config import Settings
    from mimir_mcp.embedding import TextEmbedder
    from mimir_mcp.lexical.index import LexicalIndex


def open_in_memory(settings: Settings, embedder: TextEmbedder) -> InMemoryStore:
    """A ``StoreFactory``: a new, empty store named as configured."""
    return InMemoryStore(name=settings.store.collection, embedding_model=settings.embedding.model)


def matches(record: MemoryRecord, where: RecordFilter) -> bool:
    """The filter rule of ``catalogue.filter_sql`` over one record: every condition holds, metadata values
    equal numbers by value and strings and booleans only to their own kind, the creation time within
    ``[created_after, created_before)`` (a time that does not parse counts as 0)."""
    if where.namespace is not None and record.namespace != where.namespace:
        return False
    if where.namespaces is not None and record.namespace not in where.namespaces:
        return False
    if any(tag not in record.tags for tag in where.tags):
        return False
    if where.agent is not None and record.agent != where.agent:
        return False
    if any(not _same_value(record.metadata.get(key), value) for key, value in where.metadata.items()):
        return False
    created = _created_ts(record)
    if where.created_after is not None and created < where.created_after:
        return False
    return where.created_before is None or created < where.created_before


def _same_value(stored: MetadataValue | None, wanted: MetadataValue) -> bool:
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(wanted, bool) and isinstance(stored, bool) and stored == wanted
    if isinstance(wanted, str) or isinstance(stored, str):
        return isinstance(wanted, str) and isinstance(stored, str) and stored == wanted
    return isinstance(stored, int | float) and stored == wanted


def _created_ts(record: MemoryRecord) -> float:
    try:
        return timestamp(record.created_at)
    except ValueError:
        return 0.0


class InMemoryStore:
    """Memories and their vectors in dicts, kept in insertion order (a ``VectorStore``)."""

    kind: StoreKind = "in-memory"
    location = ":memory:"
    repairable = False
    found_whole = False

    def __init__(self, *, name: str = "memories", embedding_model: str | None = None) -> None:
        self.name = name
        self.embedding_model = embedding_model
        self.embedding_dimension: int | None = None
        self._records: dict[str, MemoryRecord] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._generation: str | None = None
        self._writes = 0  # the change token: every write moves it on
        self._lock = threading.RLock()

    # -- writes ------------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[bool]:
        with self._lock:
            yield False

    def add(self, records: Sequence[MemoryRecord], embeddings: np.ndarray) -> set[str]:
        stored: set[str] = set()
        with self._lock:
            for record, vector in zip(records, embeddings, strict=True):
                if record.id not in self._records:
                    self._records[record.id] = record
                    self._vectors[record.id] = np.asarray(vector, dtype=np.float32)
                    stored.add(record.id)
            self._writes += 1
        return stored

    def delete(self, ids: Sequence[str]) -> None:
        with self._lock:
            for memory_id in ids:
                self._records.pop(memory_id, None)
                self._vectors.pop(memory_id, None)
            self._writes += 1

    def add_tombstones(self, records: Sequence[MemoryRecord]) -> None:
        now = time.time()
        with self._lock:
            self._tombstones.update((record.id, Tombstone.of(record, now)) for record in records)
            self._writes += 1

    def clear_tombstones(self, ids: Sequence[str]) -> None:
        with self._lock:
            found = [memory_id for memory_id in ids if memory_id in self._tombstones]
            for memory_id in found:
                del self._tombstones[memory_id]
            if found:
                self._writes += 1

    def set_fields(self, record: MemoryRecord, previous: MemoryRecord) -> None:
        with self._lock:
            current = self._records.get(record.id)
            if current is not None:
                self._records[record.id] = record.model_copy(update={"text": current.text})
            self._writes += 1

    def record_dimension(self, dimension: int) -> None:
        if self.embedding_dimension is None:
            self.embedding_dimension = dimension
            self._writes += 1

    def bump_generation(self) -> None:
        with self._lock:
            self._generation = uuid.uuid4().hex
            self._writes += 1

    def set_created_ts(self, records: Sequence[MemoryRecord]) -> None:
        """Nothing to do: creation times are read from the records themselves."""

    # -- reads -------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        with self._lock:
            return [self._records[memory_id] for memory_id in dict.fromkeys(ids) if memory_id in self._records]

    def existing(self, ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {memory_id for memory_id in ids if memory_id in self._records}

    def all_ids(self) -> set[str]:
        with self._lock:
            return set(self._records)

    def count(self) -> int:
        return len(self._records)

    def query(self, embedding: np.ndarray, limit: int, *, where: RecordFilter | None = None) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        with self._lock:
            ids = [i for i, record in self._records.items() if where is None or matches(record, where)]
            if not ids:
                return []
            matrix = np.stack([self._vectors[i] for i in ids])
        query = np.asarray(embedding, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
        similarities = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        order = np.argsort(-similarities, kind="stable")[:limit]
        return [(ids[n], float(similarities[n])) for n in order]

    def warm(self) -> None:
        """Nothing to load: the vectors are in memory."""

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            return {memory_id: self._vectors[memory_id] for memory_id in ids if memory_id in self._vectors}

    def records(self, *, embeddings: bool = False, batch: int = 1000) -> Iterator[tuple[list[MemoryRecord], Any]]:
        with self._lock:
            ids = list(self._records)
        for start in range(0, len(ids), batch):
            page = self.get(ids[start : start + batch])
            if page:
                yield page, (np.stack([self._vectors[r.id] for r in page]) if embeddings else None)

    def updated_since(self, since: float) -> list[MemoryRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.updated_at is not None and _updated_ts(r) > since]

    def missing_created_ts(self) -> list[MemoryRecord]:
        return []

    def tombstones(self, ids: Sequence[str] | None = None) -> dict[str, Tombstone]:
        with self._lock:
            if ids is None:
                return dict(self._tombstones)
            return {memory_id: self._tombstones[memory_id] for memory_id in ids if memory_id in self._tombstones}

    # -- other writers -----------------------------------------------------------------------------

    def generation(self) -> str | None:
        return self._generation

    @property
    def set_aside(self) -> tuple[str, str] | None:
        return None

    def identity(self) -> str | None:
        return None  # nothing outlives the process: no catalogue can be left behind by a lost one

    def change_token(self) -> int:
        return self._writes

    def catch_up(self) -> int:
        return self._writes

    # -- repair ------------------------------------------------------------------------------------

    def damage(self) -> str | None:
        return None

    def close(self) -> None:
        return None

    def rebuild(
        self,
        lexical: LexicalIndex,
        encode: Callable[[list[str]], np.ndarray],
        model: str,
        reason: str,
        identity: str | None = None,
    ) -> RepairReport:
        raise StoreUnavailableError("an in-memory store has no files to repair")


def _updated_ts(record: MemoryRecord) -> float:
    assert record.updated_at is not None
    try:
        return timestamp(record.updated_at)
    except ValueError:
        return 0.0
