"""A bounded, thread-safe LRU cache of reranker scores, so that a search overlapping an earlier one (an
agent asking again, or for more results) scores only the candidates it has not seen."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mimir_mcp.rerank.base import Reranker
from mimir_mcp.status_models import RerankerStatus, ScoreCacheStats

# Per-entry bytes on top of the query's and the content key's characters: the key tuple, the float, the
# ordered dict's slot and links, and the content key's string header, on 64-bit CPython.
ENTRY_OVERHEAD_BYTES = 200

_Key = tuple[str, str, str]


class ScoreCache:
    """Reranker scores keyed by (model, query, content key), least recently used dropped first.

    The model is part of the key, so scores of another model (or of a changed one, if its identity
    string changes with it) are never returned. The query is keyed exactly as given: a cross-encoder's
    score can change with case or spacing, so normalizing here would return scores it never produced.
    The content key should be a hash of the memory's text, so an edited memory misses instead of
    returning its old score. Bounded by entries and by an estimate of bytes (``entry_bytes``);
    ``max_entries=0`` turns it off. One lock guards everything, so search threads can share it.
    """

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Key, float] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    @staticmethod
    def entry_bytes(query: str, content_key: str) -> int:
        """Estimated size of one entry: the query's and the key's characters plus ``ENTRY_OVERHEAD_BYTES``.

        Entries stored together share one query string, so counting it per entry overestimates, which
        keeps the real footprint under ``max_bytes``; characters count as bytes, exact for ASCII text.
        """
        return len(query) + len(content_key) + ENTRY_OVERHEAD_BYTES

    def peek(self, model: str, query: str, keys: Sequence[str]) -> list[bool]:
        """Which keys are held, without counting a hit or a miss or refreshing them (for planning)."""
        with self._lock:
            return [(model, query, key) in self._entries for key in keys]

    def lookup(self, model: str, query: str, keys: Sequence[str]) -> dict[int, float]:
        """Cached scores by position in ``keys``; positions not found are misses. Hits become most recent.

        A disabled cache finds nothing and counts nothing.
        """
        if not self.enabled:
            return {}
        found: dict[int, float] = {}
        with self._lock:
            for position, content_key in enumerate(keys):
                key = (model, query, content_key)
                score = self._entries.get(key)
                if score is None:
                    self._misses += 1
                    continue
                self._entries.move_to_end(key)
                found[position] = score
                self._hits += 1
        return found

    def store(self, model: str, query: str, keys: Sequence[str], scores: Sequence[float]) -> None:
        """Keep ``scores[i]`` for ``keys[i]`` as most recent, then evict the least recent until within bounds.

        An entry larger than ``max_bytes`` on its own is not kept: it would only evict everything else.
        """
        if len(keys) != len(scores):
            raise ValueError(f"keys and scores must have the same length, got {len(keys)} and {len(scores)}")
        if not self.enabled:
            return
        with self._lock:
            for content_key, score in zip(keys, scores, strict=True):
                size = self.entry_bytes(query, content_key)
                if size > self.max_bytes:
                    continue
                key = (model, query, content_key)
                if key in self._entries:
                    self._entries.move_to_end(key)
                else:
                    self._bytes += size
                self._entries[key] = float(score)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop_oldest()

    def invalidate_model(self, model: str) -> int:
        """Drop every score of ``model`` (say, after its weights changed under the same name); returns how
        many. Not counted as evictions, which measure pressure on the bounds."""
        with self._lock:
            stale = [key for key in self._entries if key[0] == model]
            for key in stale:
                del self._entries[key]
                self._bytes -= self.entry_bytes(key[1], key[2])
        return len(stale)

    def clear(self) -> None:
        """Drop every entry; the hit, miss and eviction counts, which cover the process's lifetime, stay."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> ScoreCacheStats:
        with self._lock:
            looked_up = self._hits + self._misses
            return ScoreCacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                max_entries=self.max_entries,
                max_bytes=self.max_bytes,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                hit_rate=self._hits / looked_up if looked_up else None,
            )

    def _drop_oldest(self) -> None:
        (_, query, content_key), _ = self._entries.popitem(last=False)
        self._bytes -= self.entry_bytes(query, content_key)
        self._evictions += 1


async def score_with_cache(
    cache: ScoreCache,
    model: str,
    query: str,
    keys: Sequence[str],
    texts: Sequence[str],
    score: Callable[[list[str]], Awaitable[list[float]]],
) -> tuple[list[float], int]:
    """All scores in input order, and how many were scored now: cached ones are reused and the misses
    are scored in one call to ``score``, in input order, then stored.

    If ``score`` raises (or returns the wrong number of scores), nothing is stored and the error
    propagates, so a failed or timed-out rerank never leaves partial scores behind. Two concurrent
    searches missing the same candidates both score them; the second store just refreshes the entries.
    """
    if len(keys) != len(texts):
        raise ValueError(f"keys and texts must have the same length, got {len(keys)} and {len(texts)}")
    found = cache.lookup(model, query, keys)
    missing = [position for position in range(len(keys)) if position not in found]
    if missing:
        fresh = await score([texts[position] for position in missing])
        if len(fresh) != len(missing):
            raise ValueError(f"the scorer returned {len(fresh)} scores for {len(missing)} texts")
        cache.store(model, query, [keys[position] for position in missing], fresh)
        found.update(zip(missing, (float(value) for value in fresh), strict=True))
    return [found[position] for position in range(len(keys))], len(missing)


def content_key(text: str) -> str:
    """The cache's key for a candidate: a hash of its text, so an edited memory never reuses a score."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class CachedReranker:
    """A reranker whose scores go through a ``ScoreCache``: only candidates it has not scored for this query
    reach the model. Everything else (loading, status, timeouts) is the wrapped reranker's own.

    The cache key names the model and the backend that scores (the int8 copy scores a little differently
    from torch), so scores from before a backend or model change are never returned.
    """

    def __init__(self, inner: Reranker, cache: ScoreCache) -> None:
        self.inner = inner
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # what only one kind has: backend, settings, counters, aclose

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def timeout_s(self) -> float:
        return self.inner.timeout_s

    @property
    def blend(self) -> float:
        return float(self.inner.blend)

    def start(self) -> None:
        self.inner.start()

    def unavailable_reason(self) -> str | None:
        return self.inner.unavailable_reason()

    async def wait_ready(self, timeout: float) -> None:
        await self.inner.wait_ready(timeout)

    async def wait_backend(self, timeout: float) -> str:
        return await self.inner.wait_backend(timeout)

    def status(self) -> RerankerStatus:
        return self.inner.status()

    @property
    def identity(self) -> str:
        return f"{self.inner.model}|{getattr(self.inner, 'backend', None)}"

    def cached(self, query: str, texts: Sequence[str]) -> list[bool]:
        """Which texts have a score for this query already (nothing counted)."""
        return self.cache.peek(self.identity, query, [content_key(text) for text in texts])

    async def score(self, query: str, texts: list[str]) -> list[float]:
        keys = [content_key(text) for text in texts]
        scores, _ = await score_with_cache(
            self.cache, self.identity, query, keys, texts, lambda missing: self.inner.score(query, missing)
        )
        return scores
