"""The BM25 arm: an incremental in-memory inverted index, persisted in SQLite beside the Chroma folder.

Why not a library: rank_bm25 scans every document per query (209 ms at 100k documents here), SQLite
FTS5 scores every matching row through SQL (about 60-120 ms at 100k on this CPU) and bm25s rebuilds
its matrix for every new document. Memories arrive one at a time, so the index here keeps a posting
array per term that new documents are appended to, and answers a query with a few numpy operations
over the postings of the query's terms. SQLite keeps the records and their analyzed tokens
(transactional, one file), and the in-memory index is rebuilt from it when the server starts.
Stemming is the Snowball project's Porter stemmer (``snowballstemmer``), the same algorithm FTS5 uses.
Accents are folded, and Chinese, Japanese and Korean text is indexed as overlapping character bigrams,
the analysis of Lucene's CJKAnalyzer, since those scripts do not separate words with spaces.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import snowballstemmer

from mimir_mcp.models import MemoryRecord, MetadataValue

logger = logging.getLogger(__name__)

# Lucene's English stop words: frequent enough to carry no ranking signal, rare enough not to hurt.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
# Han (with its iteration marks), Hiragana, Katakana and Hangul syllables. Chinese and Japanese put no
# spaces between words; Korean does, but fuses particles and endings onto them (서울에서, 서울은), so a
# whole Korean word would rarely match another sentence's. Without a dictionary, overlapping bigrams
# are the standard answer: most words are one or two characters, and a longer one is matched gram by gram.
_CJK_RUN = re.compile(
    "([\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]+)"
)
# The generic combining diacritics (acute, grave, diaeresis, cedilla, tilde, breve...) that Latin,
# Greek and Cyrillic letters decompose into. Marks that are letters of their own script (Devanagari
# vowel signs, Hebrew points, Arabic harakat) live in that script's block and are kept.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
MAX_TOKEN_CHARS = 64
# What ``analyze`` returns for a text, as stored with each memory: bump it whenever that changes, so an
# index written by the previous analyzer is analyzed again once when it is opened. 1: \w+ words, stop
# words, Porter. 2: accents folded, CJK bigrams.
ANALYZER_VERSION = 2
COHERENCE_SAMPLE = 200
# From this coherence on, search scores a namespace's memories with their context (README, "How the
# defaults were chosen").
CONTEXT_MIN_COHERENCE = 0.05
COHERENCE_MIN_MEMORIES = 20
_EMPTY_POSITIONS = np.zeros(0, dtype=np.int32)
_EMPTY_FREQUENCIES = np.zeros(0, dtype=np.float32)
K1 = 1.2
B = 0.75

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
CREATE INDEX IF NOT EXISTS memories_namespace ON memories(namespace);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@cache
def _word_pattern() -> re.Pattern[str]:
    """A word character, then word characters and combining marks: Python's ``\\w`` leaves out vowel
    signs and viramas (Devanagari, Bengali, Thai...), which would cut those words apart. Only the Basic
    Multilingual Plane's marks, those of nearly every script in use: a class reaching past it is matched
    range by range, several times slower. Built from the Unicode database on first use, not at import."""
    marks = "".join(chr(code_point) for code_point in range(0x10000) if unicodedata.category(chr(code_point))[0] == "M")
    return re.compile(rf"\w[\w{re.escape(marks)}]*")


def tokenize(text: str, *, drop_stop_words: bool = True) -> list[str]:
    """Lower-cased Unicode word tokens, NFKC-normalized and accent-folded, runs of CJK characters as
    bigrams, stop words dropped, over-long tokens cut."""
    text = unicodedata.normalize("NFKC", text).casefold()
    words = _word_pattern().findall(text)
    if not text.isascii():
        words = [token for word in words for token in ((word,) if word.isascii() else _non_ascii_word_tokens(word))]
    return [
        word[:MAX_TOKEN_CHARS] for word in words if word.strip("_") and not (drop_stop_words and word in STOP_WORDS)
    ]


@lru_cache(maxsize=200_000)
def _non_ascii_word_tokens(word: str) -> tuple[str, ...]:
    """A word's CJK runs as bigrams, the rest of it accent-folded (cached: words repeat, Unicode
    normalization is not free)."""
    tokens: list[str] = []
    for position, piece in enumerate(_CJK_RUN.split(word)):
        if position % 2:  # split() puts the captured CJK runs at odd positions
            tokens.extend(cjk_bigrams(piece))
        elif piece:
            tokens.append(fold_accents(piece))
    return tuple(tokens)


def fold_accents(word: str) -> str:
    """``café`` -> ``cafe``: NFKD, drop the generic combining diacritics, recompose. A word without
    them comes back unchanged, so other scripts (and precomposed Hangul) are never decomposed."""
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = _DIACRITICS.sub("", decomposed)
    return word if stripped == decomposed else unicodedata.normalize("NFC", stripped)


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character bigrams of a CJK run, as Lucene's CJKBigramFilter; one character stays itself."""
    if len(run) == 1:
        return [run]
    return [run[start : start + 2] for start in range(len(run) - 1)]


_STEMMER = snowballstemmer.stemmer("porter")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stemming; CJK grams are left as they are."""
    return word if _CJK_RUN.match(word) else _STEMMER.stemWord(word)


def analyze(text: str) -> list[str]:
    """The terms BM25 indexes and matches: ``tokenize`` then Porter stemming."""
    return [stem(word) for word in tokenize(text)]


def query_terms(query: str) -> list[str]:
    """Distinct query terms; a query made only of stop words keeps them rather than matching nothing."""
    words = tokenize(query) or tokenize(query, drop_stop_words=False)
    return list(dict.fromkeys(stem(word) for word in words))


def bm25_idf(document_frequency: int, documents: int) -> float:
    """Lucene's BM25 idf, ``ln(1 + (N - n + 0.5) / (n + 0.5))``: never negative, unlike Okapi's."""
    return math.log(1.0 + (documents - document_frequency + 0.5) / (document_frequency + 0.5))


@dataclass(frozen=True)
class LexicalHit:
    id: str
    score: float


class _Growable:
    """A numpy array that doubles when full, so appends are amortized O(1) and reads are views."""

    def __init__(self, dtype: type, capacity: int = 4) -> None:
        self.data = np.zeros(capacity, dtype=dtype)
        self.size = 0

    def append(self, value: float | int | bool) -> None:
        if self.size == len(self.data):
            self.data = np.resize(self.data, max(8, 2 * len(self.data)))
        self.data[self.size] = value
        self.size += 1

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class _Postings:
    __slots__ = ("documents", "frequencies", "document_frequency")

    def __init__(self) -> None:
        self.documents = _Growable(np.int32)
        self.frequencies = _Growable(np.float32)
        self.document_frequency = 0  # live documents only


class LexicalIndex:
    """BM25 over memories, with the records themselves so hits can be shown without a second store."""

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
        self._postings: dict[str, _Postings] = {}
        self._doc_ids: list[str] = []
        self._position: dict[str, int] = {}
        self._rowids = _Growable(np.int64)
        self._lengths = _Growable(np.float32)
        self._alive = _Growable(np.bool_)
        self._namespaces = _Growable(np.int32)
        self._namespace_codes: dict[str, int] = {}
        # Each memory's neighbours in its namespace, in the order they were stored (-1: none): a memory's
        # context is the one stored just before it (``search(context=True)``).
        self._previous = _Growable(np.int32)
        self._next = _Growable(np.int32)
        self._last_in_namespace: dict[int, int] = {}
        self._coherence: dict[str | None, tuple[int, float | None]] = {}
        self._live = 0
        self._total_length = 0.0
        self._load()

    def _migrate(self) -> None:
        """Indexes written by the FTS5 version have no tokens column; _load fills it in."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(memories)")}
        if "tokens" not in columns:
            self._db.execute("ALTER TABLE memories ADD COLUMN tokens TEXT NOT NULL DEFAULT ''")
        self._db.execute("DROP TABLE IF EXISTS memories_fts")

    def _load(self) -> None:
        """Rebuild the in-memory postings from SQLite. Tokens stored by another analyzer version (or none,
        by the FTS5 version) would not match this version's query terms: every memory's text is then
        analyzed again, once, and stored in one transaction."""
        stored_version = self._db.execute("SELECT value FROM meta WHERE key = 'analyzer_version'").fetchone()
        outdated = stored_version is None or stored_version[0] != str(ANALYZER_VERSION)
        rows = self._db.execute("SELECT rowid, id, namespace, text, tokens FROM memories ORDER BY rowid").fetchall()
        reanalyzed = []
        for rowid, memory_id, namespace, text, tokens in rows:
            terms = analyze(text) if outdated else tokens.split()
            if outdated:
                reanalyzed.append((" ".join(terms), rowid))
            self._index(rowid, memory_id, namespace, terms)
        if outdated:
            with self._transaction() as db:
                db.executemany("UPDATE memories SET tokens = ? WHERE rowid = ?", reanalyzed)
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('analyzer_version', ?)", (str(ANALYZER_VERSION),)
                )
            if rows:
                logger.info(
                    "BM25 index re-analyzed: %d memories from analyzer version %s to %d",
                    len(rows),
                    stored_version[0] if stored_version else "1",
                    ANALYZER_VERSION,
                )
        if rows:
            logger.info("BM25 index loaded: %d memories, %d terms", self._live, len(self._postings))

    def _index(self, rowid: int, memory_id: str, namespace: str, terms: list[str]) -> None:
        position = len(self._doc_ids)
        self._doc_ids.append(memory_id)
        self._position[memory_id] = position
        self._rowids.append(rowid)
        self._lengths.append(len(terms))
        self._alive.append(True)
        code = self._namespace_codes.setdefault(namespace, len(self._namespace_codes))
        self._namespaces.append(code)
        previous = self._last_in_namespace.get(code, -1)
        self._previous.append(previous)
        self._next.append(-1)
        if previous >= 0:
            self._next.data[previous] = position
        self._last_in_namespace[code] = position
        for term, frequency in Counter(terms).items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = _Postings()
            postings.documents.append(position)
            postings.frequencies.append(frequency)
            postings.document_frequency += 1
        self._live += 1
        self._total_length += len(terms)

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
        """Index new memories (one SQLite transaction, then the postings); ids already indexed are skipped.
        Returns how many were new to this index."""
        fresh: list[tuple[MemoryRecord, list[str]]] = []
        with self._lock:
            with self._transaction() as db:
                seen: set[str] = set()
                for record in records:
                    if record.id in self._position or record.id in seen:
                        continue
                    seen.add(record.id)
                    terms = analyze(record.text)
                    db.execute(
                        "INSERT OR IGNORE INTO memories "
                        "(id, namespace, text, tags, source, agent, created_at, metadata, tokens) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        ),
                    )
                    fresh.append((record, terms))
                rowids = (
                    dict(
                        db.execute(
                            f"SELECT id, rowid FROM memories WHERE id IN ({','.join('?' * len(fresh))})",
                            [record.id for record, _ in fresh],
                        ).fetchall()
                    )
                    if fresh
                    else {}
                )
            for record, terms in fresh:
                self._index(rowids[record.id], record.id, record.namespace, terms)
        return len(fresh)

    def remove(self, ids: Sequence[str]) -> int:
        """Forget memories; their postings stay but are masked out, and document frequencies drop."""
        gone: list[tuple[str, list[str]]] = []
        with self._lock:
            with self._transaction() as db:
                for memory_id in dict.fromkeys(ids):
                    row = db.execute("SELECT tokens FROM memories WHERE id = ?", (memory_id,)).fetchone()
                    db.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
                    if memory_id in self._position:
                        gone.append((memory_id, row[0].split() if row else []))
            for memory_id, terms in gone:
                self._alive.data[self._position.pop(memory_id)] = False
                for term in set(terms):
                    self._postings[term].document_frequency -= 1
                self._live -= 1
                self._total_length -= len(terms)
        return len(gone)

    def attainable_score(self, query: str, *, context: bool = False) -> float:
        """What a document of average length holding each query term once would score: the sum of the
        terms' idf (terms no memory holds count at the highest idf). The BM25 arm's coverage is its best
        score over this (``fusion.coverage_factor``). With ``context``, the idf of context documents."""
        with self._lock:
            return sum(self._term_statistics(term, context)[2] for term in query_terms(query))

    def _term_statistics(self, term: str, context: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """A term's live documents, their term frequencies and its idf. With ``context``, each memory's
        document is its own terms plus those of the memory stored just before it in its namespace, so
        a term also counts for the memory after each one that holds it."""
        postings = self._postings.get(term)
        if postings is None or postings.document_frequency == 0:
            return _EMPTY_POSITIONS, _EMPTY_FREQUENCIES, bm25_idf(0, self._live)
        documents = postings.documents.view
        frequencies = postings.frequencies.view
        if not context:
            return documents, frequencies, bm25_idf(postings.document_frequency, self._live)
        alive = self._alive.view
        documents, frequencies = documents[alive[documents]], frequencies[alive[documents]]
        following = self._next.view[documents]
        carried = following >= 0
        positions = np.concatenate([documents, following[carried]])
        counts = np.concatenate([frequencies, frequencies[carried]])
        positions, inverse = np.unique(positions, return_inverse=True)
        totals = np.bincount(inverse, weights=counts).astype(np.float32)
        keep = alive[positions]
        return positions[keep], totals[keep], bm25_idf(int(keep.sum()), self._live)

    def _context_lengths(self) -> np.ndarray:
        """Each memory's context document length: its own plus the live memory stored before it."""
        lengths = self._lengths.view
        previous = self._previous.view
        has_previous = previous >= 0
        carried = np.zeros_like(lengths)
        carried[has_previous] = np.where(self._alive.view[previous[has_previous]], lengths[previous[has_previous]], 0)
        return lengths + carried

    def search(
        self,
        query: str,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
        context: bool = False,
    ) -> list[LexicalHit]:
        """Top ``limit`` memories by BM25 (k1 = 1.2, b = 0.75), best first, filters applied exactly.

        With ``context``, each memory is scored as its own text plus the text of the memory stored just
        before it in its namespace: in a conversation, a turn that answers ("yes, last May") is found by
        the words of the turn it answers. Whether a namespace is stored that way is ``coherence``'s call.
        """
        return self.search_with_attainable(
            query, limit, namespace=namespace, tags=tags, metadata=metadata, context=context
        )[0]

    def search_with_attainable(
        self,
        query: str,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
        context: bool = False,
    ) -> tuple[list[LexicalHit], float]:
        """``search`` and ``attainable_score`` from one pass over the query terms' statistics (which, for
        the context arm, are computed rather than looked up): what the search pipeline needs. The
        attainable score is 0 when nothing could be searched."""
        terms = query_terms(query)
        if not terms or limit <= 0:
            return [], 0.0
        allowed = self._filter_positions(tags, metadata or {}) if (tags or metadata) else None
        with self._lock:
            if self._live == 0:
                return [], 0.0
            count = len(self._doc_ids)
            scores = np.zeros(count, dtype=np.float32)
            lengths = self._context_lengths() if context else self._lengths.view
            total_length = float(lengths[self._alive.view].sum()) if context else self._total_length
            average_length = total_length / self._live
            attainable = 0.0
            for term in terms:
                documents, frequencies, idf = self._term_statistics(term, context)
                attainable += idf
                if len(documents) == 0:
                    continue
                norm = K1 * (1.0 - B + B * lengths[documents] / average_length)
                scores[documents] += idf * frequencies * (K1 + 1.0) / (frequencies + norm)
            mask = self._alive.view.copy()
            if namespace is not None:
                code = self._namespace_codes.get(namespace)
                if code is None:
                    return [], attainable
                mask &= self._namespaces.view == code
            if allowed is not None:  # computed before the lock: documents added since then are not allowed
                padded = np.zeros(count, dtype=np.bool_)
                padded[: min(len(allowed), count)] = allowed[:count]
                mask &= padded
            scores[~mask] = 0.0
            candidates = np.flatnonzero(scores > 0.0)
            if len(candidates) > limit:
                candidates = candidates[np.argpartition(-scores[candidates], limit - 1)[:limit]]
            order = sorted(candidates.tolist(), key=lambda position: (-scores[position], position))
            hits = [LexicalHit(id=self._doc_ids[position], score=float(scores[position])) for position in order]
            return hits, attainable

    def coherence(self, namespace: str | None = None) -> float | None:
        """How much more alike a memory is to the one stored just before it than to one stored far from
        it, in ``namespace`` (``None``: all): the mean idf-weighted term overlap (cosine of binary idf
        vectors) of up to ``COHERENCE_SAMPLE`` adjacent pairs, minus that of as many distant pairs.

        Turns of a conversation, steps of a log or sections of one document score well above 0: their
        neighbours share names and topics. Unrelated facts, or a corpus stored in arbitrary order, score
        about 0. No labels are needed, so it calibrates to each user's own store; it is recomputed when
        the namespace has grown or shrunk by a tenth. ``None`` below ``COHERENCE_MIN_MEMORIES``.
        """
        with self._lock:
            alive = self._alive.view
            members = np.flatnonzero(
                alive
                if namespace is None
                else alive & (self._namespaces.view == self._namespace_codes.get(namespace, -1))
            )
            size = len(members)
            cached = self._coherence.get(namespace)
            if cached is not None and abs(size - cached[0]) * 10 < max(cached[0], 1):
                return cached[1]
            value = None
            if size >= COHERENCE_MIN_MEMORIES:
                previous = self._previous.view[members]
                paired = members[(previous >= 0) & alive[np.maximum(previous, 0)]]
                if len(paired) >= COHERENCE_MIN_MEMORIES // 2:
                    step = max(len(paired) // COHERENCE_SAMPLE, 1)
                    chosen = paired[::step][:COHERENCE_SAMPLE]
                    rank = np.searchsorted(members, chosen)
                    distant = members[(rank + size // 2) % size]
                    value = self._mean_overlap(chosen, self._previous.view[chosen]) - self._mean_overlap(
                        chosen, distant
                    )
            self._coherence[namespace] = (size, value)
            return value

    def _mean_overlap(self, left: np.ndarray, right: np.ndarray) -> float:
        """Mean cosine of the binary idf-weighted term vectors of memories paired position by position."""
        rowids = self._rowids.view
        wanted = sorted({int(rowids[p]) for p in np.concatenate([left, right])})
        tokens: dict[int, set[str]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for rowid, text in self._db.execute(
                f"SELECT rowid, tokens FROM memories WHERE rowid IN ({','.join('?' * len(chunk))})", chunk
            ):
                tokens[rowid] = set(text.split())

        def weight(term: str) -> float:
            postings = self._postings.get(term)
            return bm25_idf(postings.document_frequency if postings else 0, self._live) ** 2

        total = 0.0
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            first, second = tokens.get(int(rowids[a]), set()), tokens.get(int(rowids[b]), set())
            norm = math.sqrt(sum(map(weight, first)) * sum(map(weight, second)))
            total += sum(map(weight, first & second)) / norm if norm else 0.0
        return total / len(left)

    def _filter_positions(self, tags: Sequence[str], metadata: dict[str, MetadataValue]) -> np.ndarray:
        """Which documents pass the tag and metadata filters, as a mask over index positions."""
        sql = ["SELECT id FROM memories m WHERE 1"]
        params: list[object] = []
        for tag in tags:
            sql.append("AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)")
            params.append(tag)
        for key, value in metadata.items():
            path = "$." + json.dumps(key)
            if isinstance(value, bool):
                sql.append("AND json_type(m.metadata, ?) = ?")
                params.extend([path, "true" if value else "false"])
            else:
                kinds = "('text')" if isinstance(value, str) else "('integer', 'real')"
                sql.append(f"AND json_type(m.metadata, ?) IN {kinds} AND json_extract(m.metadata, ?) = ?")
                params.extend([path, path, value])
        with self._lock:
            rows = self._db.execute(" ".join(sql), params).fetchall()
            mask = np.zeros(len(self._doc_ids), dtype=np.bool_)
            for (memory_id,) in rows:
                position = self._position.get(memory_id)
                if position is not None:
                    mask[position] = True
        return mask

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

    def namespaces_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The namespace of each indexed memory among ``ids``, from memory (no SQLite read)."""
        with self._lock:
            names = {code: name for name, code in self._namespace_codes.items()}
            codes = self._namespaces.view
            found: dict[str, str] = {}
            for memory_id in ids:
                position = self._position.get(memory_id)
                if position is not None:
                    found[memory_id] = names[int(codes[position])]
            return found

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._position)

    def count(self) -> int:
        return self._live

    def namespace_counts(self) -> dict[str, int]:
        with self._lock:
            codes = np.bincount(self._namespaces.view[self._alive.view], minlength=len(self._namespace_codes))
            names = sorted(self._namespace_codes, key=self._namespace_codes.get)
        return {name: int(codes[code]) for code, name in enumerate(names) if codes[code]}
