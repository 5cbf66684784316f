"""A pure BM25 index: postings and scoring over documents known by an integer key and a group, in memory.

Why not a library: rank_bm25 scans every document per query (209 ms at 100k documents here), SQLite
FTS5 scores every matching row through SQL (about 60-120 ms at 100k on this CPU) and bm25s rebuilds
its matrix for every new document. Memories arrive one at a time, so this keeps a posting array per
term that new documents are appended to, and answers a query with a few numpy operations over the
postings of the query's terms. Removal masks a document out and lowers its terms' document
frequencies. It knows nothing of records: the catalogue gives it keys (row numbers), groups
(namespaces) and analyzed terms, and persists them.

Every statistic (document frequencies, the number of documents, the mean length, coherence) is taken
over the groups a query may reach (its ``scope``), never over the others: namespaces are a boundary,
and no score or coverage a caller sees tells it which words another namespace holds. With the scope
covering every group (one namespace, or a search of all) the figures are the whole index's.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

import numpy as np

# How many adjacent pairs ``coherence`` samples, and the fewest live documents it measures (statistics
# for search's context rule, ``policy.FusionPolicy.context_runs``).
COHERENCE_SAMPLE = 200
COHERENCE_MIN_MEMORIES = 20

# Terms per chunk of a bulk build (``BM25Index.built``): its arrays' size, before they are counted.
BUILD_CHUNK_TERMS = 2_000_000
_EMPTY_POSITIONS = np.zeros(0, dtype=np.int32)
_EMPTY_FREQUENCIES = np.zeros(0, dtype=np.float32)
_EMPTY_MASK = np.zeros(0, dtype=np.bool_)
K1 = 1.2
B = 0.75
# A term's most per document, idf × (k1 + 1), made a little larger so that float32 sums never exceed it.
PRUNE_SLACK = 1.0001

# The groups a query may reach: names (unknown ones reach nothing), or None for every group.
Scope: TypeAlias = Sequence[str] | None


def still_current(measured: int, size: int) -> bool:
    """Whether a statistic of some namespaces measured when they held ``measured`` documents still stands
    now that they hold ``size``: until they grow or shrink by a tenth (coherence, the cosine spread)."""
    return abs(size - measured) * 10 < max(measured, 1)


def bm25_idf(document_frequency: int, documents: int) -> float:
    """Lucene's BM25 idf, ``ln(1 + (N - n + 0.5) / (n + 0.5))``: never negative, unlike Okapi's."""
    return math.log(1.0 + (documents - document_frequency + 0.5) / (document_frequency + 0.5))


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


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal values in ``values`` starts and ends (exclusive)."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)
    return starts, np.append(starts[1:], len(values)).astype(np.int64) if len(values) else starts


class _Postings:
    __slots__ = ("documents", "frequencies", "document_frequency", "by_group")

    def __init__(self) -> None:
        self.documents = _Growable(np.int32)
        self.frequencies = _Growable(np.float32)
        self.document_frequency = 0  # live documents only
        self.by_group: dict[int, int] = {}  # live documents per group code


class BM25Index:
    """BM25 (k1 = 1.2, b = 0.75) over documents added in order; not thread-safe (callers lock)."""

    def __init__(self) -> None:
        self._postings: dict[str, _Postings] = {}
        self._keys = _Growable(np.int64)
        self._position: dict[int, int] = {}
        self._lengths = _Growable(np.float32)
        self._alive = _Growable(np.bool_)
        self._groups = _Growable(np.int32)
        self._group_codes: dict[str, int] = {}
        # Each document's neighbours in its group, in the order they were added (-1: none): a document's
        # context is the ones added just before and just after it (``search(context=True)``).
        self._previous = _Growable(np.int32)
        self._next = _Growable(np.int32)
        self._last_in_group: dict[int, int] = {}
        self._coherence: dict[tuple[int, ...] | None, tuple[int, float | None]] = {}
        self._norm_cache: tuple[tuple[bool, float, int], np.ndarray] | None = None  # ``_norms``
        self._live = 0
        self._total_length = 0.0
        # per group: [live documents, their summed length], so that ``mean_length`` and ``group_counts`` cost
        # nothing per search
        self._group_totals: dict[int, list[float]] = {}

    def add(self, key: int, group: str, terms: Sequence[str]) -> None:
        """Index one document; a key already live is left as it is."""
        if key in self._position:
            return
        position = self._keys.size
        self._keys.append(key)
        self._position[key] = position
        self._lengths.append(len(terms))
        self._alive.append(True)
        code = self._group_codes.setdefault(group, len(self._group_codes))
        self._groups.append(code)
        previous = self._last_in_group.get(code, -1)
        self._previous.append(previous)
        self._next.append(-1)
        if previous >= 0:
            self._next.data[previous] = position
        self._last_in_group[code] = position
        for term, frequency in Counter(terms).items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = _Postings()
            postings.documents.append(position)
            postings.frequencies.append(frequency)
            postings.document_frequency += 1
            postings.by_group[code] = postings.by_group.get(code, 0) + 1
        self._live += 1
        self._total_length += len(terms)
        totals = self._group_totals.setdefault(code, [0, 0.0])
        totals[0] += 1
        totals[1] += len(terms)

    @classmethod
    def built(cls, documents: Iterable[tuple[int, str, Sequence[str]]]) -> BM25Index:
        """An index of ``(key, group, terms)`` documents, as ``add`` one by one in that order would leave it,
        built in bulk: numpy sorts the postings out a chunk of documents at a time, where ``add`` appends
        one posting at a time (a fifth of the time at 200k documents, in a bounded amount of memory).
        Keys must be distinct."""
        index = cls()
        keys: list[int] = []
        groups: list[int] = []
        lengths: list[int] = []
        # Each chunk's entries, one per (term, document): the term, the document's position, the frequency.
        term_parts: list[np.ndarray] = []
        position_parts: list[np.ndarray] = []
        frequency_parts: list[np.ndarray] = []
        batch: list[str] = []  # the terms of the documents not yet in a chunk
        vocabulary: dict[str, int] = {}  # a term's first place among all the terms read
        numbers: dict[int, int] = {}  # that place, to the term's number (its order of first appearance)
        names: list[str] = []
        terms_read = documents_read = 0  # before ``batch``

        def flush() -> None:
            nonlocal terms_read, documents_read
            count = len(lengths) - documents_read
            if not count:
                return
            first = map(vocabulary.setdefault, batch, itertools.count(terms_read))  # at C speed
            places = np.fromiter(first, dtype=np.int64, count=len(batch))
            local = np.repeat(np.arange(count, dtype=np.int64), np.asarray(lengths[documents_read:], dtype=np.int64))
            # One entry per (term, document) of the chunk, with the term's frequency in it.
            pairs, frequencies = np.unique(places * count + local, return_counts=True)
            places, local = np.divmod(pairs, count)
            for term in itertools.islice(vocabulary, len(names), None):
                numbers[vocabulary[term]] = len(names)
                names.append(term)
            starts, ends = _runs(places)
            numbered = np.fromiter((numbers[place] for place in places[starts].tolist()), dtype=np.int32)
            term_parts.append(np.repeat(numbered, ends - starts))
            position_parts.append((local + documents_read).astype(np.int32))
            frequency_parts.append(frequencies.astype(np.float32))
            terms_read += len(batch)
            documents_read += count
            batch.clear()

        for key, group, terms in documents:
            keys.append(key)
            groups.append(index._group_codes.setdefault(group, len(index._group_codes)))
            lengths.append(len(terms))
            batch.extend(terms)
            if len(batch) >= BUILD_CHUNK_TERMS:
                flush()
        flush()
        count = len(keys)
        if not count:
            return index
        # By term; within a term, by position (each chunk's entries are, and the chunks come in order). Each
        # part let go once joined: a million documents hold ~50M entries.
        terms = np.concatenate(term_parts)
        term_parts.clear()
        order = np.argsort(terms, kind="stable")
        terms = terms[order]
        positions = np.concatenate(position_parts)[order]
        position_parts.clear()
        frequencies = np.concatenate(frequency_parts)[order]
        frequency_parts.clear()
        del order
        group_codes = np.asarray(groups, dtype=np.int32)
        group_total = len(index._group_codes)
        starts, ends = _runs(terms)
        # Documents per (term, group), for the scoped document frequencies.
        term_groups, group_counts = np.unique(
            terms.astype(np.int64) * group_total + group_codes[positions], return_counts=True
        )
        group_terms, group_of = np.divmod(term_groups, group_total)
        low = np.searchsorted(group_terms, terms[starts]).tolist()
        high = np.searchsorted(group_terms, terms[starts], side="right").tolist()
        group_of, group_counts = group_of.tolist(), group_counts.tolist()
        for number, start, end, first, last in zip(
            terms[starts].tolist(), starts.tolist(), ends.tolist(), low, high, strict=True
        ):
            postings = _Postings()
            # Views of the whole: an append to a full array copies it first (``_Growable``).
            postings.documents.data, postings.documents.size = positions[start:end], end - start
            postings.frequencies.data, postings.frequencies.size = frequencies[start:end], end - start
            postings.document_frequency = end - start
            postings.by_group = dict(zip(group_of[first:last], group_counts[first:last], strict=True))
            index._postings[names[number]] = postings
        index._keys.data, index._keys.size = np.asarray(keys, dtype=np.int64), count
        index._position = {key: position for position, key in enumerate(keys)}
        index._lengths.data, index._lengths.size = np.asarray(lengths, dtype=np.float32), count
        index._alive.data, index._alive.size = np.ones(count, dtype=np.bool_), count
        index._groups.data, index._groups.size = group_codes, count
        # Neighbours within a group: consecutive positions once sorted by group (stable keeps the order).
        by_group = np.argsort(group_codes, kind="stable").astype(np.int32)
        same = group_codes[by_group[1:]] == group_codes[by_group[:-1]]
        previous = np.full(count, -1, dtype=np.int32)
        following = np.full(count, -1, dtype=np.int32)
        previous[by_group[1:][same]] = by_group[:-1][same]
        following[by_group[:-1][same]] = by_group[1:][same]
        index._previous.data, index._previous.size = previous, count
        index._next.data, index._next.size = following, count
        summed = np.bincount(group_codes, weights=index._lengths.data, minlength=group_total)
        members = np.bincount(group_codes, minlength=group_total)
        last = np.searchsorted(group_codes[by_group], np.arange(group_total), side="right") - 1
        for code in range(group_total):
            index._group_totals[code] = [int(members[code]), float(summed[code])]
            index._last_in_group[code] = int(by_group[last[code]])
        index._live = count
        index._total_length = float(sum(lengths))
        return index

    def remove(self, key: int, terms: Sequence[str]) -> bool:
        """Mask a document out (its postings stay) and lower its terms' document frequencies; ``terms``
        are the document's terms (each one at least once)."""
        position = self._position.pop(key, None)
        if position is None:
            return False
        self._alive.data[position] = False
        code = int(self._groups.data[position])
        for term in set(terms):
            postings = self._postings[term]
            postings.document_frequency -= 1
            postings.by_group[code] -= 1
        length = float(self._lengths.data[position])
        self._live -= 1
        self._total_length -= length
        totals = self._group_totals[code]
        totals[0] -= 1
        totals[1] -= length
        return True

    def remove_unread(self, keys: Iterable[int]) -> int:
        """Remove documents whose terms are no longer to be read anywhere (their catalogue rows went while
        this index was saved): each one's terms are found in the postings. Returns how many were live."""
        positions = [self._position[key] for key in keys if key in self._position]
        if not positions:
            return 0
        doomed = np.zeros(self._keys.size, dtype=np.bool_)
        doomed[positions] = True
        terms_of: dict[int, list[str]] = {position: [] for position in positions}
        for term, postings in self._postings.items():
            documents = postings.documents.view
            hits = documents[doomed[documents]]
            for position in hits.tolist():
                terms_of[position].append(term)
        keys_view = self._keys.view
        for position, terms in terms_of.items():
            self.remove(int(keys_view[position]), terms)
        return len(positions)

    def arrays(self) -> dict[str, np.ndarray]:
        """The whole index as named arrays, which ``from_arrays`` reads back into an equal index: what
        ``LexicalIndex`` saves, so that a restart reads a million memories' postings instead of building them
        (the coherence cache is left out: it is measured again)."""
        names = list(self._postings)
        postings = [self._postings[name] for name in names]
        count = len(postings)

        def offsets(sizes: Iterable[int]) -> np.ndarray:
            ends = np.fromiter(sizes, dtype=np.int64, count=count)
            return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(ends)])

        groups = sorted(self._group_codes, key=self._group_codes.__getitem__)
        meta = {"groups": groups, "live": self._live, "total_length": self._total_length}
        return {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "vocabulary": np.frombuffer("\n".join(names).encode(), dtype=np.uint8),
            "offsets": offsets(p.documents.size for p in postings),
            "documents": np.concatenate([p.documents.view for p in postings]) if count else _EMPTY_POSITIONS,
            "frequencies": np.concatenate([p.frequencies.view for p in postings]) if count else _EMPTY_FREQUENCIES,
            "document_frequency": np.fromiter((p.document_frequency for p in postings), dtype=np.int64, count=count),
            "group_offsets": offsets(len(p.by_group) for p in postings),
            "group_codes": np.fromiter(itertools.chain.from_iterable(p.by_group for p in postings), dtype=np.int64),
            "group_counts": np.fromiter(
                itertools.chain.from_iterable(p.by_group.values() for p in postings), dtype=np.int64
            ),
            "keys": self._keys.view,
            "lengths": self._lengths.view,
            "alive": self._alive.view,
            "groups": self._groups.view,
            "previous": self._previous.view,
            "next": self._next.view,
            "group_totals": np.asarray(
                [self._group_totals.get(code, [0, 0.0]) for code in range(len(groups))], dtype=np.float64
            ).reshape(-1, 2),
            "last_in_group": np.asarray(
                [self._last_in_group.get(code, -1) for code in range(len(groups))], dtype=np.int64
            ),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> BM25Index:
        """The index ``arrays`` saved. Raises ``KeyError`` or ``ValueError`` for arrays it did not write."""
        index = cls()
        meta = json.loads(bytes(arrays["meta"]).decode())
        text = bytes(arrays["vocabulary"]).decode()
        names = text.split("\n") if text else []
        offsets = arrays["offsets"].tolist()
        group_offsets = arrays["group_offsets"].tolist()
        documents = arrays["documents"].astype(np.int32, copy=False)
        frequencies = arrays["frequencies"].astype(np.float32, copy=False)
        frequency = arrays["document_frequency"].tolist()
        codes, counts = arrays["group_codes"].tolist(), arrays["group_counts"].tolist()
        if len(offsets) != len(names) + 1 or offsets[-1] != len(documents) or len(group_offsets) != len(offsets):
            raise ValueError("the saved postings do not match their vocabulary")
        for number, name in enumerate(names):
            postings = _Postings()
            start, end = offsets[number], offsets[number + 1]
            # Views of the whole, as ``built`` leaves them: an append to a full array copies it first.
            postings.documents.data, postings.documents.size = documents[start:end], end - start
            postings.frequencies.data, postings.frequencies.size = frequencies[start:end], end - start
            postings.document_frequency = frequency[number]
            first, last = group_offsets[number], group_offsets[number + 1]
            postings.by_group = dict(zip(codes[first:last], counts[first:last], strict=True))
            index._postings[name] = postings
        size = len(arrays["keys"])
        for name, growable, dtype in (
            ("keys", index._keys, np.int64),
            ("lengths", index._lengths, np.float32),
            ("alive", index._alive, np.bool_),
            ("groups", index._groups, np.int32),
            ("previous", index._previous, np.int32),
            ("next", index._next, np.int32),
        ):
            data = np.array(arrays[name], dtype=dtype)  # a copy: written in place by ``remove`` and ``add``
            if len(data) != size:
                raise ValueError(f"the saved {name} do not match the saved keys")
            growable.data, growable.size = data, size
        alive = np.flatnonzero(index._alive.data)
        index._position = dict(zip(index._keys.data[alive].tolist(), alive.tolist(), strict=True))
        index._group_codes = {name: code for code, name in enumerate(meta["groups"])}
        for code, (members, length) in enumerate(arrays["group_totals"].tolist()):
            index._group_totals[code] = [int(members), float(length)]
        for code, last in enumerate(arrays["last_in_group"].tolist()):
            if last >= 0:
                index._last_in_group[code] = int(last)
        index._live = int(meta["live"])
        index._total_length = float(meta["total_length"])
        return index

    def __contains__(self, key: int) -> bool:
        return key in self._position

    def __len__(self) -> int:
        return self._live

    def keys(self) -> set[int]:
        return set(self._position)

    def groups_of(self, keys: Sequence[int]) -> dict[int, str]:
        names = {code: name for name, code in self._group_codes.items()}
        codes = self._groups.view
        return {key: names[int(codes[self._position[key]])] for key in keys if key in self._position}

    def group_counts(self) -> dict[str, int]:
        """Live documents per group (those with any), from the running totals ``add`` and ``remove`` keep."""
        counts = {name: int(self._group_totals.get(code, (0, 0.0))[0]) for name, code in self._group_codes.items()}
        return {name: count for name, count in sorted(counts.items()) if count}

    def _codes(self, scope: Scope) -> list[int] | None:
        """The group codes ``scope`` reaches; None when it reaches every group (the whole index's figures)."""
        if scope is None:
            return None
        names = [scope] if isinstance(scope, str) else scope
        codes = [self._group_codes[name] for name in dict.fromkeys(names) if name in self._group_codes]
        return None if len(codes) == len(self._group_codes) else codes

    def _live_in(self, codes: list[int] | None) -> int:
        if codes is None:
            return self._live
        return int(sum(self._group_totals.get(code, (0, 0.0))[0] for code in codes))

    def _length_in(self, codes: list[int] | None) -> float:
        if codes is None:
            return self._total_length
        return float(sum(self._group_totals.get(code, (0, 0.0))[1] for code in codes))

    def _in_scope(self, codes: list[int] | None, positions: np.ndarray | None = None) -> np.ndarray:
        """Whether each document (or each of ``positions``) is live and in the scope's groups."""
        alive = self._alive.view if positions is None else self._alive.view[positions]
        if codes is None:
            return alive.copy()
        if not codes:
            return np.zeros(len(alive), dtype=np.bool_)
        groups = self._groups.view if positions is None else self._groups.view[positions]
        inside = groups == codes[0] if len(codes) == 1 else np.isin(groups, np.asarray(codes, dtype=np.int32))
        return alive & inside

    def _document_frequency(self, postings: _Postings | None, codes: list[int] | None) -> int:
        if postings is None:
            return 0
        if codes is None:
            return postings.document_frequency
        return sum(postings.by_group.get(code, 0) for code in codes)

    def term_statistics(
        self, term: str, context: bool, codes: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """A term's documents, their term frequencies and its idf within the groups ``codes`` (None: all;
        the documents may include others, which ``search`` masks out). With ``context``, each document is
        its own terms plus those of the documents added just before and just after it in its group, so a
        term also counts for the neighbours of each one that holds it."""
        postings = self._postings.get(term)
        live = self._live_in(codes)
        frequency = self._document_frequency(postings, codes)
        if postings is None or frequency == 0:
            return _EMPTY_POSITIONS, _EMPTY_FREQUENCIES, bm25_idf(0, live)
        documents = postings.documents.view
        frequencies = postings.frequencies.view
        if not context:
            return documents, frequencies, bm25_idf(frequency, live)
        alive = self._alive.view
        documents, frequencies = documents[alive[documents]], frequencies[alive[documents]]
        following, preceding = self._next.view[documents], self._previous.view[documents]
        forward, back = following >= 0, preceding >= 0
        positions = np.concatenate([documents, following[forward], preceding[back]])
        counts = np.concatenate([frequencies, frequencies[forward], frequencies[back]])
        positions, inverse = np.unique(positions, return_inverse=True)
        totals = np.bincount(inverse, weights=counts).astype(np.float32)
        keep = self._in_scope(codes, positions)
        return positions[keep], totals[keep], bm25_idf(int(keep.sum()), live)

    def size(self, scope: Scope) -> int:
        """The number of live documents ``scope`` reaches."""
        return self._live_in(self._codes(scope))

    def sample(self, scope: Scope, count: int) -> list[int]:
        """The keys of up to ``count`` live documents ``scope`` reaches, evenly spaced in the order they were
        added, so that a sample of a long conversation spans all of it, not its first turns."""
        members = np.flatnonzero(self._in_scope(self._codes(scope)))
        step = max(len(members) // count, 1) if count > 0 else 1
        return [int(key) for key in self._keys.view[members[::step][: max(count, 0)]]]

    def mean_length(self, scope: Scope) -> float | None:
        """The mean length (terms) of the live documents ``scope`` reaches; ``None`` if it reaches none."""
        codes = self._codes(scope)
        count = self._live_in(codes)
        if not count:
            return None
        return self._length_in(codes) / count

    def _context_lengths(self) -> np.ndarray:
        """Each document's context length: its own plus those of the live documents added just before and
        just after it."""
        lengths = self._lengths.view
        total = lengths.copy()
        for neighbour in (self._previous.view, self._next.view):
            has = neighbour >= 0
            total[has] += np.where(self._alive.view[neighbour[has]], lengths[neighbour[has]], 0)
        return total

    def attainable(self, terms: Sequence[str], *, context: bool = False, scope: Scope = None) -> float:
        """What a document of average length holding each term once would score: the sum of the terms'
        idf within ``scope`` (terms no document there holds count at the highest idf)."""
        codes = self._codes(scope)
        return sum(self.term_statistics(term, context, codes)[2] for term in terms)

    def search(
        self,
        terms: Sequence[str],
        limit: int,
        *,
        scope: Scope = None,
        allowed: Sequence[int] | None = None,
        context: bool = False,
        prune: bool = True,
    ) -> tuple[list[tuple[int, float]], float]:
        """Top ``limit`` ``(key, score)`` pairs, best first, within the groups of ``scope`` (``None``: all),
        scored by the statistics of those groups alone, and, when given, among the ``allowed`` keys; and
        the attainable score of the terms (0 when nothing could be searched). With ``context``, each
        document is scored as its own terms plus those of its neighbours in its group (``term_statistics``).
        ``prune``: skip what cannot reach the top ``limit`` (the same answer; off only to check that)."""
        codes = self._codes(scope)
        live = self._live_in(codes)
        if not terms or limit <= 0 or live == 0:
            return [], 0.0
        count = self._keys.size
        scores = np.zeros(count, dtype=np.float32)
        mask = self._in_scope(codes)
        lengths = self._context_lengths() if context else self._lengths.view
        # The mean length is the namespaces' own, whatever ``allowed`` leaves of them, like the idf.
        total_length = float(lengths[mask].sum()) if context else self._length_in(codes)
        average_length = total_length / live
        if allowed is not None:
            permitted = np.zeros(count, dtype=np.bool_)
            positions = [self._position[key] for key in allowed if key in self._position]
            permitted[np.asarray(positions, dtype=np.int64)] = True
            mask &= permitted
        attainable = 0.0
        postings: list[tuple[float, np.ndarray, np.ndarray]] = []
        for term in terms:
            documents, frequencies, idf = self.term_statistics(term, context, codes)
            attainable += idf
            if len(documents):
                postings.append((idf, documents, frequencies))
        # Rarest terms first. A term adds at most idf × (k1 + 1) to a document; once the terms left could
        # not lift a document the terms before did not reach past the ``limit``-th score so far, they are
        # added only to the documents that can still reach it (MaxScore: the same top ``limit``, exactly,
        # without touching the most common terms' long postings).
        postings.sort(key=lambda entry: -entry[0])
        left = [*itertools.accumulate(idf * (K1 + 1.0) * PRUNE_SLACK for idf, _, _ in reversed(postings))][::-1]
        reachable: np.ndarray | None = None  # sorted positions, once pruning began
        member = _EMPTY_MASK
        norms = self._norms(lengths, average_length, context) if postings else _EMPTY_FREQUENCIES
        for index, (idf, documents, frequencies) in enumerate(postings):
            if prune and reachable is None and not context and index and left[index] < scores.max():
                reachable = self._reachable(scores, mask, limit, left[index])
                if reachable is not None:
                    member = np.zeros(count, dtype=np.bool_)
                    member[reachable] = True
            if reachable is not None and len(reachable) * 16 < len(documents):
                # Few left to reach: find them in the postings, which are in position order (appended so).
                at = np.searchsorted(documents, reachable)
                found = at < len(documents)
                found[found] = documents[at[found]] == reachable[found]
                documents, frequencies = reachable[found], frequencies[at[found]]
            elif reachable is not None:
                keep = member[documents]
                documents, frequencies = documents[keep], frequencies[keep]
            scores[documents] += frequencies * np.float32(idf * (K1 + 1.0)) / (frequencies + norms[documents])
        if reachable is not None:
            candidates = reachable[scores[reachable] > 0.0]
        else:
            scores[~mask] = 0.0
            candidates = np.flatnonzero(scores > 0.0)
        if len(candidates) > limit:
            # The ``limit``-th score, and the documents tied with it in the order they were added (candidates
            # are in that order), so that equal scores never leave the cut to chance.
            values = scores[candidates]
            cut = np.partition(values, len(values) - limit)[len(values) - limit]
            above = candidates[values > cut]
            candidates = np.concatenate([above, candidates[values == cut][: limit - len(above)]])
        order = sorted(candidates.tolist(), key=lambda position: (-scores[position], position))
        keys = self._keys.view
        return [(int(keys[position]), float(scores[position])) for position in order], attainable

    def _norms(self, lengths: np.ndarray, average_length: float, context: bool) -> np.ndarray:
        """Each document's ``k1 · (1 − b + b · length / mean length)``, kept while the mean and the number of
        documents stay the same (most searches between two writes)."""
        key = (context, average_length, len(lengths))
        if self._norm_cache is None or self._norm_cache[0] != key:
            norms = (K1 * (1.0 - B + B * lengths.astype(np.float64) / average_length)).astype(np.float32)
            self._norm_cache = (key, norms)
        return self._norm_cache[1]

    @staticmethod
    def _reachable(scores: np.ndarray, mask: np.ndarray, limit: int, left: float) -> np.ndarray | None:
        """The documents in ``mask`` that the terms left (at most ``left`` more) could still lift to the
        ``limit``-th score so far, or None when any document still could."""
        candidates = np.flatnonzero(scores > 0.0)
        candidates = candidates[mask[candidates]]
        if len(candidates) < limit:
            return None
        partial = scores[candidates]
        threshold = float(np.partition(partial, len(partial) - limit)[len(partial) - limit])
        if left >= threshold:
            return None
        return candidates[partial + left >= threshold]

    def coherence(self, scope: Scope, terms_of: Callable[[Sequence[int]], dict[int, set[str]]]) -> float | None:
        """How much more alike a document is to the one added just before it than to one added far from
        it, in the groups of ``scope`` (``None``: all), weighing terms by those groups' statistics: the
        mean idf-weighted term overlap (cosine of binary idf-squared vectors) of up to
        ``COHERENCE_SAMPLE`` adjacent pairs, minus that of as many distant pairs.
        ``terms_of`` reads the terms of the sampled keys (the catalogue holds them).

        Turns of a conversation, steps of a log or sections of one document score well above 0: their
        neighbours share names and topics. Unrelated facts, or a corpus stored in arbitrary order, score
        about 0. No labels are needed, so it calibrates to each user's own store; it is recomputed when
        the group has grown or shrunk by a tenth. ``None`` below ``COHERENCE_MIN_MEMORIES``.
        """
        codes = self._codes(scope)
        alive = self._alive.view
        members = np.flatnonzero(self._in_scope(codes))
        size = len(members)
        key = None if codes is None else tuple(sorted(codes))
        cached = self._coherence.get(key)
        if cached is not None and still_current(cached[0], size):
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
                keys = self._keys.view
                terms = terms_of(
                    sorted({int(keys[p]) for p in np.concatenate([chosen, self._previous.view[chosen], distant])})
                )
                value = self._mean_overlap(chosen, self._previous.view[chosen], terms, codes) - self._mean_overlap(
                    chosen, distant, terms, codes
                )
        self._coherence[key] = (size, value)
        return value

    def _mean_overlap(
        self, left: np.ndarray, right: np.ndarray, terms: dict[int, set[str]], codes: list[int] | None
    ) -> float:
        keys = self._keys.view
        live = self._live_in(codes)

        def weight(term: str) -> float:
            return bm25_idf(self._document_frequency(self._postings.get(term), codes), live) ** 2

        total = 0.0
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            first, second = terms.get(int(keys[a]), set()), terms.get(int(keys[b]), set())
            norm = math.sqrt(sum(map(weight, first)) * sum(map(weight, second)))
            total += sum(map(weight, first & second)) / norm if norm else 0.0
        return total / len(left)

    def term_count(self) -> int:
        return len(self._postings)
