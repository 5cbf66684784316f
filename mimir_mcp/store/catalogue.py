"""The record catalogue: every memory's record in SQLite beside the Chroma folder, with its namespace,
its analyzed terms and the one implementation of the filter rule.

Chroma is the store of record; the catalogue follows it (``MemoryService`` reconciles the two) and
answers what Chroma answers slowly or not at all: records by id without a network hop, namespaces and
their counts, paged listing newest first, and which memories pass a filter, for ``list``, ``forget``
and the BM25 side of search alike. The BM25 index (``bm25.py``) knows only the row numbers and terms
this gives it.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mimir_mcp.config import StoreSettings
from mimir_mcp.models import MemoryRecord, MetadataValue, RecordFilter

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
    metadata TEXT NOT NULL,
    tokens TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first release, with their SQL type: added to an older file when it is opened.
_ADDED_COLUMNS = {
    "tokens": "TEXT NOT NULL DEFAULT ''",
    "created_ts": "REAL",
    "updated_at": "TEXT",
    "supersedes": "TEXT",
}
# The meta key of the count of inserts and deletes (``Catalogue.generation``).
GENERATION = "generation"
_RECORD_COLUMNS = "id, namespace, text, tags, source, agent, created_at, metadata, updated_at, supersedes"
_CHUNK = 500


def timestamp(iso: str) -> float:
    """Unix seconds of an ISO 8601 time; a time without an offset is taken as UTC."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _stored_timestamp(iso: str) -> float:
    """``timestamp`` for records already stored: one whose time does not parse (hand-edited, or from a
    foreign writer) sorts as the oldest rather than failing the whole catalogue."""
    try:
        return timestamp(iso)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Removed:
    """A memory the catalogue dropped: what the BM25 index needs to drop it too."""

    rowid: int
    id: str
    terms: list[str]


def server_suffix(settings: StoreSettings) -> str:
    """What tells a data dir's files for a Chroma server apart from those of its embedded store (and of
    another server): ``-host-port``, or nothing."""
    return f"-{settings.chroma_host}-{settings.chroma_port}" if settings.chroma_host else ""


def catalogue_path(settings: StoreSettings) -> Path:
    """The catalogue and BM25 file of the configured store: one per data dir, and one per Chroma server."""
    return Path(settings.data_dir).expanduser() / f"bm25-{settings.collection}{server_suffix(settings)}.sqlite3"


def sqlite_damage(path: Path) -> str | None:
    """What SQLite finds wrong with the database file at ``path`` (``PRAGMA quick_check``, or no database at
    all), or ``None`` when it reads whole (or is not there)."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(path)) as db:
            found = [str(row[0]) for row in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if found == ["ok"] else "; ".join(found)


def set_aside(path: Path) -> Path:
    """Move a damaged file or folder (with a database's WAL and shared-memory files) to a dated name beside
    it, never deleting it; returns the new name."""
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{kept}{suffix}"))
    return kept


def set_aside_if_damaged(path: Path) -> tuple[str, Path] | None:
    """Before a catalogue file is opened: when SQLite cannot read it whole, move it aside so that a fresh
    catalogue is filled from the store instead of serving the damage. What was wrong, and where it went."""
    problem = sqlite_damage(path)
    return None if problem is None else (problem, set_aside(path))


class Catalogue:
    """Memory records in one SQLite file (WAL, one writer at a time, each change one transaction)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        # The generation before and after this process's last insert or delete (``generation``).
        self.last_write: tuple[int, int] = (0, 0)

    def _migrate(self) -> None:
        """Files written by earlier versions lack some columns (and may hold the FTS5 table of the first)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(memories)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in columns:
                self._db.execute(f"ALTER TABLE memories ADD COLUMN {name} {kind}")
        self._db.execute("DROP TABLE IF EXISTS memories_fts")
        missing = self._db.execute("SELECT rowid, created_at FROM memories WHERE created_ts IS NULL").fetchall()
        if missing:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE memories SET created_ts = ? WHERE rowid = ?",
                    [(_stored_timestamp(created_at), rowid) for rowid, created_at in missing],
                )
        self._db.execute("CREATE INDEX IF NOT EXISTS memories_created ON memories(created_ts, rowid)")
        # A namespace's page, newest first, read in this index's order instead of sorting the whole namespace
        # (a page at 300k memories: 1.9 s); it serves lookups by namespace alone too.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS memories_namespace_created ON memories(namespace, created_ts, rowid)"
        )
        self._db.execute("DROP INDEX IF EXISTS memories_namespace")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time, all or nothing: a failed batch leaves the catalogue as it was."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta --------------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        """How many inserts and deletes (by any process) the catalogue has taken: a saved BM25 index that
        holds the rows of this generation, as many and up to the same row number, holds exactly its rows."""
        return int(self.meta(GENERATION) or 0)

    def state(self) -> tuple[int, int, int]:
        """The generation, the number of rows and the highest row number, read at one moment."""
        with self.reading() as generation:
            count, highest = self._db.execute("SELECT count(*), coalesce(max(rowid), 0) FROM memories").fetchone()
            return generation, int(count), int(highest)

    def _bump(self) -> None:
        """Move the generation on, inside the transaction of the insert or delete it counts."""
        before = self.generation()
        self.set_meta(GENERATION, str(before + 1))
        self.last_write = (before, before + 1)

    # -- writing -------------------------------------------------------------------------------------

    def insert(self, records: Iterable[tuple[MemoryRecord, list[str]]]) -> dict[str, int]:
        """Add records with their analyzed terms in one transaction; ids already present are skipped.
        Returns the new records' row numbers by id."""
        fresh: list[str] = []
        with self.transaction() as db:
            for record, terms in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO memories (id, namespace, text, tags, source, agent, created_at, metadata, "
                    "tokens, created_ts, updated_at, supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.namespace,
                        record.text,
                        json.dumps(record.tags),
                        record.source,
                        record.agent,
                        record.created_at,
                        json.dumps(record.metadata),
                        " ".join(terms),
                        _stored_timestamp(record.created_at),
                        record.updated_at,
                        record.supersedes,
                    ),
                )
                if cursor.rowcount:
                    fresh.append(record.id)
            if fresh:
                self._bump()
            return _rowids(db, fresh)

    def delete(self, ids: Sequence[str]) -> list[Removed]:
        """Remove records by id in one transaction; returns those that were there."""
        removed: list[Removed] = []
        with self.transaction() as db:
            for memory_id in dict.fromkeys(ids):
                row = db.execute("SELECT rowid, tokens FROM memories WHERE id = ?", (memory_id,)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM memories WHERE rowid = ?", (row[0],))
                    removed.append(Removed(rowid=row[0], id=memory_id, terms=row[1].split()))
            if removed:
                self._bump()
        return removed

    def set_fields(self, record: MemoryRecord) -> bool:
        """Replace a record's tags, metadata, source, agent and update time (its text and terms stay)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE memories SET tags = ?, metadata = ?, source = ?, agent = ?, updated_at = ? WHERE id = ?",
                (
                    json.dumps(record.tags),
                    json.dumps(record.metadata),
                    record.source,
                    record.agent,
                    record.updated_at,
                    record.id,
                ),
            )
            return cursor.rowcount > 0

    def set_terms(self, terms: Iterable[tuple[int, list[str]]]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE memories SET tokens = ? WHERE rowid = ?", [(" ".join(t), r) for r, t in terms])
            self._bump()

    # -- reading -------------------------------------------------------------------------------------

    def rows(self, *, texts: bool = True) -> Iterator[tuple[int, str, str, str, str]]:
        """Every record's ``(rowid, id, namespace, text, terms)`` in the order stored, for the BM25 index,
        read as they are consumed (a million are a gigabyte), under the lock until the last; without
        ``texts`` the text is left empty."""
        text = "text" if texts else "''"
        query = f"SELECT rowid, id, namespace, {text}, tokens FROM memories ORDER BY rowid"
        with self._lock:
            yield from self._db.execute(query)

    def row_ids(self) -> tuple[int, list[tuple[int, str]]]:
        """The generation and every record's ``(rowid, id)`` then, in the order stored: what a BM25 index is
        levelled against."""
        with self.reading() as generation:
            return generation, self._db.execute("SELECT rowid, id FROM memories ORDER BY rowid").fetchall()

    @contextmanager
    def reading(self) -> Iterator[int]:
        """One read transaction (what is read inside sees one moment), yielding the generation then."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self.generation()
            finally:
                self._db.execute("COMMIT")

    def row_terms(self, rowids: Sequence[int]) -> Iterator[tuple[int, str, str]]:
        """The ``(rowid, namespace, terms)`` of the given rows that are stored, in the order stored."""
        wanted = sorted(rowids)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            with self._lock:
                rows = self._db.execute(
                    f"SELECT rowid, namespace, tokens FROM memories WHERE rowid IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY rowid",
                    chunk,
                ).fetchall()
            yield from rows

    def terms(self, rowids: Sequence[int]) -> dict[int, set[str]]:
        """The analyzed terms of the given rows, as sets."""
        found: dict[int, set[str]] = {}
        wanted = list(rowids)
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for rowid, text in self._db.execute(
                    f"SELECT rowid, tokens FROM memories WHERE rowid IN ({','.join('?' * len(chunk))})", chunk
                ):
                    found[rowid] = set(text.split())
        return found

    def rowids(self, ids: Sequence[str]) -> dict[str, int]:
        """The row numbers of the records among ``ids`` that are stored."""
        with self._lock:
            return _rowids(self._db, list(dict.fromkeys(ids)))

    def get(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        found: dict[str, MemoryRecord] = {}
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = self._db.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM memories WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((row[0], _record(row)) for row in rows)
        return found

    def ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM memories")}

    def count(self, where: RecordFilter | None = None) -> int:
        clause, params = filter_sql(where) if where is not None else ("1", [])
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM memories m WHERE {clause}", params).fetchone()[0])

    def namespace_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT namespace, count(*) FROM memories GROUP BY namespace ORDER BY namespace")
            return dict(rows.fetchall())

    def namespace_activity(self) -> dict[str, tuple[int, str | None]]:
        """Per namespace: how many memories, and the latest time one was stored or updated (ISO 8601)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, count(*), max(created_ts), max(updated_at) FROM memories "
                "GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        activity: dict[str, tuple[int, str | None]] = {}
        for namespace, count, created_ts, updated_at in rows:
            times = [t for t in (created_ts, None if updated_at is None else timestamp(updated_at)) if t is not None]
            latest = datetime.fromtimestamp(max(times), UTC).isoformat(timespec="milliseconds") if times else None
            activity[namespace] = (int(count), latest)
        return activity

    def matching_rowids(self, where: RecordFilter) -> list[int]:
        """Row numbers of every record passing the filter (the BM25 arm's candidate mask)."""
        clause, params = filter_sql(where)
        with self._lock:
            return [row[0] for row in self._db.execute(f"SELECT rowid FROM memories m WHERE {clause}", params)]

    def matching_ids(self, where: RecordFilter, limit: int | None = None) -> list[str]:
        """Ids of records passing the filter, newest first (what ``forget`` by filter removes)."""
        clause, params = filter_sql(where)
        sql = f"SELECT id FROM memories m WHERE {clause} ORDER BY created_ts DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [row[0] for row in self._db.execute(sql, params)]

    def passing(self, ids: Sequence[str], where: RecordFilter) -> set[str]:
        """Which of ``ids`` pass the filter: the re-check both search arms' candidates go through."""
        clause, params = filter_sql(where)
        passed: set[str] = set()
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = self._db.execute(
                    f"SELECT id FROM memories m WHERE id IN ({','.join('?' * len(chunk))}) AND {clause}",
                    [*chunk, *params],
                )
                passed.update(row[0] for row in rows)
        return passed

    def page(
        self, where: RecordFilter, limit: int, cursor: str | None = None, *, newest_first: bool = True
    ) -> tuple[list[MemoryRecord], str | None]:
        """One page of records passing the filter, ordered by creation time then storage order, and the
        cursor of the next page. The cursor is the last record's position in that order, so memories
        stored while a client pages (which sort before it, newest first) never shift later pages."""
        clause, params = filter_sql(where)
        direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        if cursor is not None:
            after_ts, after_rowid = decode_cursor(cursor)
            clause += f" AND (m.created_ts, m.rowid) {compare} (?, ?)"
            params = [*params, after_ts, after_rowid]
        sql = (
            f"SELECT {_RECORD_COLUMNS}, created_ts, rowid FROM memories m WHERE {clause} "
            f"ORDER BY created_ts {direction}, rowid {direction} LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][-2], rows[-1][-1]) if more and rows else None
        return [_record(row) for row in rows], next_cursor


def encode_cursor(created_ts: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_ts, rowid]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Raises ``ValueError`` for anything ``encode_cursor`` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_ts, rowid = json.loads(raw)
    except Exception as exc:
        raise ValueError("not a cursor this server returned") from exc
    if not isinstance(created_ts, int | float) or not isinstance(rowid, int) or isinstance(rowid, bool):
        raise ValueError("not a cursor this server returned")
    return float(created_ts), rowid


def filter_sql(where: RecordFilter) -> tuple[str, list[object]]:
    """The filter rule as a SQL condition over ``memories m``: the namespace, every tag present, the
    agent, every metadata pair equal (numbers by value, strings and booleans only to their own kind,
    as JSON clients may send 2 or 2.0) and the creation time within ``[created_after, created_before)``."""
    sql = ["1"]
    params: list[object] = []
    if where.namespace is not None:
        sql.append("m.namespace = ?")
        params.append(where.namespace)
    if where.namespaces is not None:
        sql.append(f"m.namespace IN ({','.join('?' * len(where.namespaces))})" if where.namespaces else "0")
        params.extend(where.namespaces)
    for tag in where.tags:
        sql.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)")
        params.append(tag)
    if where.agent is not None:
        sql.append("m.agent = ?")
        params.append(where.agent)
    for key, value in where.metadata.items():
        path = "$." + json.dumps(key)
        if isinstance(value, bool):
            sql.append("json_type(m.metadata, ?) = ?")
            params.extend([path, "true" if value else "false"])
        else:
            kinds = "('text')" if isinstance(value, str) else "('integer', 'real')"
            sql.append(f"json_type(m.metadata, ?) IN {kinds} AND json_extract(m.metadata, ?) = ?")
            params.extend([path, path, value])
    if where.created_after is not None:
        sql.append("m.created_ts >= ?")
        params.append(where.created_after)
    if where.created_before is not None:
        sql.append("m.created_ts < ?")
        params.append(where.created_before)
    return " AND ".join(sql), params


def _record(row: Sequence[object]) -> MemoryRecord:
    metadata: dict[str, MetadataValue] = json.loads(str(row[7]))
    return MemoryRecord(
        id=str(row[0]),
        namespace=str(row[1]),
        text=str(row[2]),
        tags=json.loads(str(row[3])),
        source=row[4],  # type: ignore[arg-type]
        agent=row[5],  # type: ignore[arg-type]
        created_at=str(row[6]),
        metadata=metadata,
        updated_at=row[8],  # type: ignore[arg-type]
        supersedes=row[9],  # type: ignore[arg-type]
    )


def _rowids(db: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = db.execute(f"SELECT id, rowid FROM memories WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        found.update(rows.fetchall())
    return found
