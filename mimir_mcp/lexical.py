"""The BM25 arm: an SQLite FTS5 index over the same memories as the Chroma store.

Why FTS5: it ships with Python, ranks with BM25, takes each new memory as an incremental, transactional
write (no full rebuild, unlike rank_bm25 or bm25s), persists beside the Chroma folder, and answers
filtered queries (namespace, tags, metadata) in the same SQL statement. Text is tokenized here
(``tokenize``) and stemmed by FTS5's Porter tokenizer, so queries and documents are treated alike.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mimir_mcp.models import MemoryRecord, MetadataValue

logger = logging.getLogger(__name__)

# Lucene's English stop words: frequent enough to carry no ranking signal, rare enough not to hurt.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_WORD = re.compile(r"\w+")
MAX_TOKEN_CHARS = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    source TEXT,
    agent TEXT,
    created_at TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_namespace ON memories(namespace);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    tokens, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


def tokenize(text: str, *, drop_stop_words: bool = True) -> list[str]:
    """Lower-cased Unicode word tokens, NFKC-normalized, stop words dropped, over-long tokens cut.

    Stemming is left to FTS5's Porter stage so the stored text stays readable for debugging.
    """
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [
        word[:MAX_TOKEN_CHARS] for word in words if word.strip("_") and not (drop_stop_words and word in STOP_WORDS)
    ]


def match_expression(query: str) -> str | None:
    """An FTS5 ``MATCH`` string that ORs the query's distinct tokens; ``None`` when there are none.

    Each token is quoted, so FTS5 operators typed by a user (``NOT``, ``NEAR``, ``*``) are plain words.
    A query made only of stop words falls back to its stop words rather than matching nothing.
    """
    tokens = tokenize(query) or tokenize(query, drop_stop_words=False)
    if not tokens:
        return None
    return " OR ".join(f'"{token}"' for token in dict.fromkeys(tokens))


@dataclass(frozen=True)
class LexicalHit:
    id: str
    score: float


class LexicalIndex:
    """BM25 over memories, with the records themselves so hits can be shown without a second store."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Kept in memory: search compares it with the store's count before every query.
        self._count = self._db.execute("SELECT count(*) FROM memories").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time, all or nothing: a failed batch leaves the index as it was."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, records: Iterable[MemoryRecord]) -> int:
        """Index new memories in one transaction; ids already present are skipped. Returns how many were new."""
        added = 0
        with self._transaction() as db:
            for record in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO memories "
                    "(id, namespace, text, tags, source, agent, created_at, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.namespace,
                        record.text,
                        json.dumps(record.tags),
                        record.source,
                        record.agent,
                        record.created_at,
                        json.dumps(record.metadata),
                    ),
                )
                if cursor.rowcount:
                    db.execute(
                        "INSERT INTO memories_fts (rowid, tokens) VALUES (?, ?)",
                        (cursor.lastrowid, " ".join(tokenize(record.text))),
                    )
                    added += 1
        self._count += added
        return added

    def remove(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._transaction() as db:
            for memory_id in ids:
                row = db.execute("SELECT rowid FROM memories WHERE id = ?", (memory_id,)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM memories_fts WHERE rowid = ?", (row[0],))
                    db.execute("DELETE FROM memories WHERE rowid = ?", (row[0],))
                    removed += 1
        self._count -= removed
        return removed

    def search(
        self,
        query: str,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
    ) -> list[LexicalHit]:
        """Top ``limit`` memories by BM25 (higher score is better), filters applied inside the query."""
        expression = match_expression(query)
        if expression is None or limit <= 0:
            return []
        sql = [
            "SELECT m.id, bm25(memories_fts) AS rank FROM memories_fts "
            "JOIN memories m ON m.rowid = memories_fts.rowid WHERE memories_fts MATCH ?"
        ]
        params: list[object] = [expression]
        if namespace is not None:
            sql.append("AND m.namespace = ?")
            params.append(namespace)
        for tag in tags:
            sql.append("AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)")
            params.append(tag)
        for key, value in (metadata or {}).items():
            path = "$." + json.dumps(key)
            if isinstance(value, bool):
                sql.append("AND json_type(m.metadata, ?) = ?")
                params.extend([path, "true" if value else "false"])
            else:
                kinds = "('text')" if isinstance(value, str) else "('integer', 'real')"
                sql.append(f"AND json_type(m.metadata, ?) IN {kinds} AND json_extract(m.metadata, ?) = ?")
                params.extend([path, path, value])
        sql.append("ORDER BY rank LIMIT ?")
        params.append(limit)
        with self._lock:
            rows = self._db.execute(" ".join(sql), params).fetchall()
        # FTS5's bm25() is negated so that ascending order is best first; flip it back for callers.
        return [LexicalHit(id=row[0], score=-row[1]) for row in rows]

    def get(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        if not ids:
            return {}
        found: dict[str, MemoryRecord] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                placeholders = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT id, namespace, text, tags, source, agent, created_at, metadata "
                    f"FROM memories WHERE id IN ({placeholders})",
                    chunk,
                ).fetchall()
                for row in rows:
                    found[row[0]] = MemoryRecord(
                        id=row[0],
                        namespace=row[1],
                        text=row[2],
                        tags=json.loads(row[3]),
                        source=row[4],
                        agent=row[5],
                        created_at=row[6],
                        metadata=json.loads(row[7]),
                    )
        return found

    def ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM memories")}

    def count(self, *, fresh: bool = False) -> int:
        """Memories in the index; ``fresh`` re-reads it, for when another process may share the file."""
        if fresh:
            with self._lock:
                self._count = self._db.execute("SELECT count(*) FROM memories").fetchone()[0]
        return self._count

    def namespace_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, count(*) FROM memories GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {namespace: count for namespace, count in rows}
