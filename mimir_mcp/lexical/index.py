"""The BM25 arm of search: the record catalogue and the BM25 index kept in step.

The catalogue (SQLite) holds the records and each one's analyzed terms and answers filters; the index
(``bm25.py``) holds postings in memory and scores. This module writes to both under one lock, saves the
index beside the catalogue at close and reads it at the next start (a million memories' postings are read
in seconds, built in half a minute), built from the catalogue when there is none (re-analyzing every text
once when the analyzer changed), and answers a query with the filter resolved by the catalogue and the
scoring done by the index.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimir_mcp.lexical.analysis import ANALYZER_VERSION, analyze, query_terms
from mimir_mcp.lexical.bm25 import BM25Index, Scope, still_current
from mimir_mcp.models import MemoryRecord, MetadataValue, RecordFilter
from mimir_mcp.store.catalogue import Catalogue
from mimir_mcp.store.probe import files_signature

logger = logging.getLogger(__name__)


def cosine_deviation(vectors: np.ndarray) -> float | None:
    """How far apart a set of memories lie for the bi-encoder: the standard deviation of the cosine
    similarity between every pair of ``vectors`` (rows); ``None`` for fewer than two.

    The dense arm's scores are cosines, on one scale for every query, but how far apart a namespace's
    memories lie depends on its text and on the model (chat turns spread 0.13-0.15 under all-MiniLM-L6-v2,
    Wikipedia sentences 0.08, dictionary glosses 0.09): measured on the namespace's own memories, a share
    of it is a unit in which a gap between a query's cosines means about as much in any namespace.
    """
    if len(vectors) < 2:
        return None
    rows = np.asarray(vectors, dtype=np.float64)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    pairs = (rows @ rows.T)[np.triu_indices(len(rows), 1)]
    return float(pairs.std())


def saved_index_path(catalogue: Path | str) -> Path:
    """Where the BM25 index of the catalogue at ``catalogue`` is saved between runs."""
    return Path(catalogue).with_suffix(".index.npz")


def catalogue_signature(catalogue: Path | str) -> list[list[object]]:
    """The catalogue's files (the database, and its WAL and shared memory while open), sizes and times."""
    path = Path(catalogue)
    return files_signature((p for p in path.parent.iterdir() if p.name.startswith(path.name)), path.parent)


# The memories whose vectors measure a namespace's cosine spread (``LexicalIndex.cosine_spread``): 200 evenly
# spaced give the deviation of 400 random ones within 4% on the collections measured; below 20 the
# fusion standardizes the dense arm instead.
SPREAD_SAMPLE = 200
SPREAD_MIN_MEMORIES = 20

# The postings (a gigabyte at a million memories): mapped from the saved file, not read into memory, so
# that only the pages of the terms searched are resident.
MAPPED = ("documents", "frequencies")


def read_saved_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved index (an uncompressed ``.npz``): the ``MAPPED`` ones as read-only maps of
    their bytes inside the file, the rest read."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as file:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in MAPPED or info.compress_type != zipfile.ZIP_STORED:
                arrays[name] = np.load(archive.open(info))
                continue
            # The member's data follows its local header (30 bytes, then its name and extra field).
            file.seek(info.header_offset + 26)
            name_length, extra_length = struct.unpack("<HH", file.read(4))
            file.seek(info.header_offset + 30 + name_length + extra_length)
            header = np.lib.format
            version = header.read_magic(file)
            read = header.read_array_header_1_0 if version == (1, 0) else header.read_array_header_2_0
            shape, fortran_order, dtype = read(file)
            if fortran_order or dtype.hasobject:
                raise ValueError(f"{name}: not a plain array")
            count = int(np.prod(shape))
            # A plain array over the map: a memmap's slices cost ten times a plain one's, once per term.
            arrays[name] = (
                np.memmap(path, dtype=dtype, mode="r", offset=file.tell(), shape=shape).view(np.ndarray)
                if count
                else np.zeros(shape, dtype=dtype)
            )
    return arrays


def closed_whole(catalogue: Path | str) -> bool:
    """Whether the catalogue's files are as the last clean close left them (recorded with the saved index):
    then SQLite's check, which reads the whole file (ten seconds at a million memories), is not needed. A
    process killed after writing leaves files the record does not match."""
    try:
        with np.load(saved_index_path(catalogue)) as saved:
            recorded = json.loads(bytes(saved["closed"]).decode())
        return recorded is not None and recorded == catalogue_signature(catalogue)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False


@dataclass(frozen=True)
class LexicalHit:
    id: str
    score: float


class LexicalIndex:
    """BM25 over the catalogue's memories; ``catalogue`` is the record store the tools read."""

    def __init__(self, path: Path | str | Catalogue) -> None:
        self.catalogue = path if isinstance(path, Catalogue) else Catalogue(path)
        self.path = self.catalogue.path
        # The index saved beside the catalogue, read at the next start instead of built (none in memory).
        self.saved_path = None if self.path == ":memory:" else saved_index_path(self.path)
        self._lock = threading.RLock()
        self._index = BM25Index()
        self._ids: dict[int, str] = {}
        self._rowids: dict[str, int] = {}
        self._changed = False  # since the index was last saved or read
        self._closed: list[list[object]] | None = None  # the catalogue's files as the saved index recorded them
        # The catalogue generation whose rows the postings hold exactly (None: not known, as when another
        # process wrote between two of this one's writes).
        self._generation: int | None = None
        # Per scope: the number of memories when its cosine spread was measured, and the spread.
        self._spreads: dict[tuple[str, ...] | None, tuple[int, float | None]] = {}
        self._load(saved=True)

    def _load(self, *, saved: bool = False) -> None:
        """Bring the postings level with the catalogue: from the index in memory, or (``saved``) the one
        saved at the last close, taking in the rows added and dropping the rows gone since; else built from
        every row. Terms stored by another analyzer version (or none, by the FTS5 version) would not match
        this version's query terms: every text is then analyzed again, once, and stored in one transaction."""
        stored_version = self.catalogue.meta("analyzer_version")
        if stored_version == str(ANALYZER_VERSION):
            base = self._read_saved() if saved else (self._index, self._ids, self._generation)
            if base is not None and self._catch_up(*base):
                return
        self._build(stored_version)
        self._save()

    def _build(self, stored_version: str | None) -> None:
        outdated = stored_version != str(ANALYZER_VERSION)
        ids: dict[int, str] = {}
        reanalyzed: list[tuple[int, list[str]]] = []

        def documents() -> Iterator[tuple[int, str, list[str]]]:
            for rowid, memory_id, namespace, text, tokens in self.catalogue.rows(texts=outdated):
                ids[rowid] = memory_id
                terms = analyze(text) if outdated else tokens.split()
                if outdated:
                    reanalyzed.append((rowid, terms))
                yield rowid, namespace, terms

        with self.catalogue.reading() as generation:
            self._index = BM25Index.built(documents())
        self._generation = generation
        self._ids = ids
        self._rowids = {memory_id: rowid for rowid, memory_id in ids.items()}
        rows = len(ids)
        if outdated:
            self.catalogue.set_terms(reanalyzed)
            self._wrote()
            self.catalogue.set_meta("analyzer_version", str(ANALYZER_VERSION))
            if rows:
                logger.info(
                    "BM25 index re-analyzed: %d memories from analyzer version %s to %d",
                    rows,
                    stored_version or "1",
                    ANALYZER_VERSION,
                )
        if rows:
            logger.info("BM25 index built: %d memories, %d terms", len(self._index), self._index.term_count())

    def _catch_up(self, index: BM25Index, held: dict[int, str], generation: int | None = None) -> bool:
        """Level ``index`` (holding ``held``: row number to memory id, of catalogue ``generation`` when known)
        with the catalogue's rows: those whose row is gone, or now holds another memory, are removed; rows it
        lacks are added in their order. False, leaving things as they were, when that would change more
        memories than it keeps (a build is then quicker)."""
        if generation is not None and self.catalogue.state() == (generation, len(held), max(held, default=0)):
            current = held  # no insert or delete since: the same rows (a million are not listed)
        else:
            generation, rows = self.catalogue.row_ids()
            current = dict(rows)
        gone = [rowid for rowid, memory_id in held.items() if current.get(rowid) != memory_id]
        replaced = set(gone)
        missing = [rowid for rowid in current if rowid not in held or rowid in replaced]
        if len(gone) + len(missing) > len(held) - len(gone):
            return False
        index.remove_unread(gone)
        added = 0
        for rowid, namespace, tokens in self.catalogue.row_terms(missing):
            index.add(rowid, namespace, tokens.split())
            added += 1
        self._index = index
        self._ids = current
        self._rowids = {memory_id: rowid for rowid, memory_id in current.items()}
        self._generation = generation
        self._changed = self._changed or bool(gone or added)
        if current:
            logger.info(
                "BM25 index read: %d memories, %d terms (%d added and %d removed since it was saved)",
                len(index),
                index.term_count(),
                added,
                len(gone),
            )
        return True

    def _read_saved(self) -> tuple[BM25Index, dict[int, str], int | None] | None:
        """The index saved at the last close, the memory id of each row it held and the catalogue generation
        it held them at (if known), or None when there is none (or it cannot be read: then it is built
        again)."""
        if self.saved_path is None or not self.saved_path.exists():
            return None
        try:
            arrays = read_saved_arrays(self.saved_path)
            header = json.loads(bytes(arrays.pop("header")).decode())
            self._closed = json.loads(bytes(arrays.pop("closed")).decode())
            if header["analyzer_version"] != ANALYZER_VERSION:
                return None
            index = BM25Index.from_arrays(arrays)
            held = dict(zip(header["rowids"], header["ids"], strict=True))
            generation = header["generation"]
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            logger.warning("BM25 index: the saved copy %s cannot be read (%s); building it again", self.saved_path, exc)
            return None
        return index, held, generation

    def _save(self, closed: list[list[object]] | None = None) -> None:
        """Write the index beside the catalogue (a new file renamed over the old, so a reader finds the old
        or the new one whole), with the catalogue's files as a clean close left them (``closed_whole``). A
        failure to write costs only the next start's build."""
        if self.saved_path is None:
            return
        header = {
            "analyzer_version": ANALYZER_VERSION,
            "generation": self._generation,
            "rowids": list(self._ids),
            "ids": list(self._ids.values()),
        }
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "closed": np.frombuffer(json.dumps(closed).encode(), dtype=np.uint8),
            **self._index.arrays(),
        }
        partial = self.saved_path.with_name(f"{self.saved_path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            with partial.open("wb") as file:
                np.savez(file, **arrays)
            os.replace(partial, self.saved_path)
            self._changed, self._closed = False, closed
        except OSError as exc:
            partial.unlink(missing_ok=True)
            logger.warning("BM25 index: cannot save it to %s (%s); the next start builds it", self.saved_path, exc)

    def level(self) -> None:
        """``reload`` only when another process sharing the catalogue inserted or deleted rows since this one
        last read or wrote it (one value read when none did)."""
        with self._lock:
            if self._generation is None or self.catalogue.generation() != self._generation:
                self._load()

    def reload(self) -> None:
        """Level the postings with the catalogue (after another process sharing it removed memories: their
        terms, which the postings would need to drop them, went with the rows)."""
        with self._lock:
            self._load()

    def _wrote(self) -> None:
        """After this process's insert or delete: the postings hold the new generation only if they held
        the one it followed (no other process wrote in between)."""
        before, after = self.catalogue.last_write
        self._generation = after if self._generation == before else None

    def _put(self, rowid: int, memory_id: str, namespace: str, terms: list[str]) -> None:
        self._index.add(rowid, namespace, terms)
        self._changed = True
        self._ids[rowid] = memory_id
        self._rowids[memory_id] = rowid

    def close(self) -> None:
        """Close the catalogue, then save the index when it, or the catalogue's files, changed since it was
        read or saved."""
        with self._lock:
            self.catalogue.close()
            if self.saved_path is not None:
                closed = catalogue_signature(self.path)
                if self._changed or closed != self._closed:
                    self._save(closed)

    def add(self, records: Iterable[MemoryRecord]) -> int:
        """Store and index new memories (one catalogue transaction, then the postings); ids already
        indexed are skipped. Returns how many this process indexed."""
        with self._lock:
            batch = {record.id: record for record in records if record.id not in self._rowids}
            analyzed = [(record, analyze(record.text)) for record in batch.values()]
            rowids = self.catalogue.insert(analyzed)
            if rowids:
                self._wrote()
            elsewhere = [record.id for record in batch.values() if record.id not in rowids]
            if elsewhere:
                # In the catalogue already, stored by another process sharing it: index them here too.
                rowids.update(self.catalogue.rowids(elsewhere))
                self._generation = None
            for record, terms in analyzed:
                if record.id in rowids:
                    self._put(rowids[record.id], record.id, record.namespace, terms)
            return len(rowids)

    def remove(self, ids: Sequence[str]) -> int:
        """Forget memories in the catalogue and the index; returns how many were there."""
        with self._lock:
            removed = self.catalogue.delete(ids)
            if removed:
                self._wrote()
            for gone in removed:
                self._index.remove(gone.rowid, gone.terms)
                self._changed = True
                self._ids.pop(gone.rowid, None)
                self._rowids.pop(gone.id, None)
            elsewhere = [memory_id for memory_id in dict.fromkeys(ids) if memory_id in self._rowids]
            if elsewhere:
                # Removed from the catalogue by another process sharing it: rebuild from what it holds.
                self.reload()
            return len(removed) + len(elsewhere)

    def set_fields(self, record: MemoryRecord) -> bool:
        """Replace a memory's tags, metadata, source and agent; its text and postings stay."""
        with self._lock:
            return self.catalogue.set_fields(record)

    def attainable_score(self, query: str, *, context: bool = False, scope: Scope = None) -> float:
        """What a document of average length holding each query term once would score: the sum of the
        terms' idf in the namespaces of ``scope`` (None: all). The BM25 arm's coverage is its best score
        over this (``fusion.coverage_factor``)."""
        with self._lock:
            return self._index.attainable(query_terms(query), context=context, scope=scope)

    def search(
        self,
        query: str,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
        where: RecordFilter | None = None,
        context: bool = False,
    ) -> list[LexicalHit]:
        """Top ``limit`` memories by BM25 (k1 = 1.2, b = 0.75), best first, filters applied exactly.

        With ``context``, each memory is scored as its own text plus the text of the memories stored just
        before and just after it in its namespace: in a conversation, a turn that answers ("yes, last May")
        is found by the words of the turn it answers, and one that states a fact by the reply that asks
        about it. Whether a namespace is stored that way is ``coherence``'s call.
        """
        return self.search_with_attainable(
            query, limit, namespace=namespace, tags=tags, metadata=metadata, where=where, context=context
        )[0]

    def search_with_attainable(
        self,
        query: str,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
        where: RecordFilter | None = None,
        context: bool = False,
    ) -> tuple[list[LexicalHit], float]:
        """``search`` and ``attainable_score`` from one pass over the query terms' statistics: what the
        search pipeline needs. ``where`` (when given) replaces ``namespace``, ``tags`` and ``metadata``;
        beyond the namespace, the catalogue resolves it to the memories allowed, before scoring, so a
        selective filter still gets the best of the few memories it leaves. Scores and the attainable
        score come from the statistics of the namespaces ``where`` reaches alone (``RecordFilter.scope``)."""
        if where is None:
            where = RecordFilter(namespace=namespace, tags=list(tags), metadata=metadata or {})
        terms = query_terms(query)
        if not terms or limit <= 0:
            return [], 0.0
        with self._lock:
            allowed = self.catalogue.matching_rowids(where) if where.selects_by_content else None
            hits, attainable = self._index.search(terms, limit, scope=where.scope, allowed=allowed, context=context)
            return [LexicalHit(id=self._ids[key], score=score) for key, score in hits], attainable

    def coherence(self, scope: Scope = None) -> float | None:
        """How much more alike neighbouring memories of the namespaces of ``scope`` (a name, names, or
        None: all) are than distant ones (``BM25Index.coherence``); ``None`` with too few to tell."""
        with self._lock:
            return self._index.coherence(scope, self.catalogue.terms)

    def cosine_spread(
        self, scope: Scope, vectors_of: Callable[[Sequence[str]], Mapping[str, np.ndarray]]
    ) -> float | None:
        """How far apart the memories of ``scope``'s namespaces lie for the bi-encoder
        (``cosine_deviation`` of ``SPREAD_SAMPLE`` of them, their vectors read by ``vectors_of``):
        the dense arm's unit in the fusion. Kept until the namespaces grow or shrink by a tenth; ``None``
        below ``SPREAD_MIN_MEMORIES``. The vectors are read outside the index's lock."""
        key = None if scope is None else (scope,) if isinstance(scope, str) else tuple(sorted(set(scope)))
        with self._lock:
            size = self._index.size(scope)
            cached = self._spreads.get(key)
            if cached is not None and still_current(cached[0], size):
                return cached[1]
            ids = (
                [self._ids[k] for k in self._index.sample(scope, SPREAD_SAMPLE)] if size >= SPREAD_MIN_MEMORIES else []
            )
        vectors = vectors_of(ids) if ids else {}
        value = cosine_deviation(np.array([vectors[i] for i in ids if i in vectors])) if vectors else None
        with self._lock:
            self._spreads[key] = (size, value)
        return value

    def mean_length(self, scope: Scope = None) -> float | None:
        """The mean number of terms a memory of the namespaces of ``scope`` holds (``BM25Index.mean_length``)."""
        with self._lock:
            return self._index.mean_length(scope)

    def get(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        return self.catalogue.get(ids)

    def namespaces_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The namespace of each indexed memory among ``ids``, from memory (no SQLite read)."""
        with self._lock:
            keys = [self._rowids[memory_id] for memory_id in ids if memory_id in self._rowids]
            return {self._ids[key]: group for key, group in self._index.groups_of(keys).items()}

    def holding(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the index holds, from memory (no SQLite read)."""
        with self._lock:
            return {memory_id for memory_id in ids if memory_id in self._rowids}

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._rowids)

    def count(self) -> int:
        return len(self._index)

    def namespace_counts(self) -> dict[str, int]:
        with self._lock:
            return self._index.group_counts()
