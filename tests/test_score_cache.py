"""The reranker score cache: exact hit, miss and eviction counts, the LRU order, model isolation, and
``score_with_cache`` scoring only what the cache lacks."""

from __future__ import annotations

import threading

import pytest

from mimir_mcp.rerank.cache import ENTRY_OVERHEAD_BYTES, ScoreCache, ScoreCacheStats, score_with_cache

MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
ONE_CHAR_ENTRY = 1 + 1 + ENTRY_OVERHEAD_BYTES  # query "q", a one-character content key


class Scorer:
    """Scores a text by its length and records every batch it was asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, texts: list[str]) -> list[float]:
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("reranker timed out")
        return [float(len(text)) for text in texts]


def test_lookup_counts_hits_and_misses():
    cache = ScoreCache()
    assert cache.lookup(MODEL, "q", ["a", "b"]) == {}
    cache.store(MODEL, "q", ["a", "b"], [0.5, -1.25])
    assert cache.lookup(MODEL, "q", ["x", "b", "a"]) == {1: -1.25, 2: 0.5}
    assert cache.stats() == ScoreCacheStats(
        entries=2,
        bytes=2 * ONE_CHAR_ENTRY,
        max_entries=10_000,
        max_bytes=16 * 1024 * 1024,
        hits=2,
        misses=3,
        evictions=0,
        hit_rate=0.4,
    )


def test_hit_rate_is_none_before_any_lookup():
    assert ScoreCache().stats().hit_rate is None


def test_query_is_keyed_exactly_as_given():
    cache = ScoreCache()
    cache.store(MODEL, "Deploy steps", ["a"], [2.0])
    assert cache.lookup(MODEL, "deploy steps", ["a"]) == {}
    assert cache.lookup(MODEL, "Deploy steps ", ["a"]) == {}
    assert cache.lookup(MODEL, "Deploy steps", ["a"]) == {0: 2.0}


def test_entry_bytes_estimate():
    assert ScoreCache.entry_bytes("four", "sha1:abc") == 4 + 8 + ENTRY_OVERHEAD_BYTES


def test_evicts_least_recently_used_by_entries():
    cache = ScoreCache(max_entries=3)
    cache.store(MODEL, "q", ["a", "b", "c"], [1.0, 2.0, 3.0])
    cache.lookup(MODEL, "q", ["a"])  # a becomes most recent: b is now the oldest
    cache.store(MODEL, "q", ["d"], [4.0])
    assert cache.lookup(MODEL, "q", ["a", "b", "c", "d"]) == {0: 1.0, 2: 3.0, 3: 4.0}
    cache.store(MODEL, "q", ["e", "f"], [5.0, 6.0])  # the oldest now are a, then c (d was hit after them)
    assert cache.lookup(MODEL, "q", ["a", "c", "d", "e", "f"]) == {2: 4.0, 3: 5.0, 4: 6.0}
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 3 * ONE_CHAR_ENTRY, 3)


def test_storing_again_refreshes_without_growing():
    cache = ScoreCache(max_entries=2)
    cache.store(MODEL, "q", ["a", "b"], [1.0, 2.0])
    cache.store(MODEL, "q", ["a"], [1.5])  # a refreshed: b is the oldest
    cache.store(MODEL, "q", ["c"], [3.0])
    assert cache.lookup(MODEL, "q", ["a", "b", "c"]) == {0: 1.5, 2: 3.0}
    assert cache.stats().bytes == 2 * ONE_CHAR_ENTRY


def test_evicts_least_recently_used_by_bytes():
    cache = ScoreCache(max_entries=100, max_bytes=3 * ONE_CHAR_ENTRY)
    cache.store(MODEL, "q", ["a", "b", "c"], [1.0, 2.0, 3.0])
    assert cache.stats().evictions == 0
    cache.lookup(MODEL, "q", ["a"])
    # A two-character key needs one byte more than one entry frees: b and c both go.
    cache.store(MODEL, "q", ["dd"], [4.0])
    assert cache.lookup(MODEL, "q", ["a", "b", "c", "dd"]) == {0: 1.0, 3: 4.0}
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, 2 * ONE_CHAR_ENTRY + 1, 2)


def test_an_entry_larger_than_the_byte_bound_is_not_kept():
    cache = ScoreCache(max_bytes=ONE_CHAR_ENTRY)
    cache.store(MODEL, "q", ["a"], [1.0])
    cache.store(MODEL, "q", ["too long"], [2.0])
    assert cache.lookup(MODEL, "q", ["a", "too long"]) == {0: 1.0}
    assert cache.stats().evictions == 0


def test_another_model_never_hits():
    cache = ScoreCache()
    cache.store(MODEL, "q", ["a"], [1.0])
    cache.store("BAAI/bge-reranker-base", "q", ["a"], [9.0])
    assert cache.lookup("cross-encoder/ms-marco-TinyBERT-L-6", "q", ["a"]) == {}
    assert cache.lookup(MODEL, "q", ["a"]) == {0: 1.0}
    assert cache.lookup("BAAI/bge-reranker-base", "q", ["a"]) == {0: 9.0}


def test_invalidate_model_drops_only_that_model():
    cache = ScoreCache()
    cache.store(MODEL, "q", ["a", "b"], [1.0, 2.0])
    cache.store("other", "q", ["a"], [9.0])
    assert cache.invalidate_model(MODEL) == 2
    assert cache.invalidate_model(MODEL) == 0
    assert cache.lookup(MODEL, "q", ["a", "b"]) == {}
    assert cache.lookup("other", "q", ["a"]) == {0: 9.0}
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (1, ONE_CHAR_ENTRY, 0)


def test_clear_drops_entries_and_keeps_counts():
    cache = ScoreCache()
    cache.store(MODEL, "q", ["a", "b"], [1.0, 2.0])
    cache.lookup(MODEL, "q", ["a", "x"])
    cache.clear()
    assert cache.lookup(MODEL, "q", ["a", "b"]) == {}
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses) == (0, 0, 1, 3)


def test_zero_max_entries_disables_the_cache():
    cache = ScoreCache(max_entries=0)
    assert not cache.enabled
    cache.store(MODEL, "q", ["a"], [1.0])
    assert cache.lookup(MODEL, "q", ["a"]) == {}
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses, stats.hit_rate) == (0, 0, 0, 0, None)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_entries"):
        ScoreCache(max_entries=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        ScoreCache(max_bytes=-1)
    with pytest.raises(ValueError, match="same length"):
        ScoreCache().store(MODEL, "q", ["a", "b"], [1.0])


def test_threads_storing_and_looking_up_keep_consistent_counts():
    threads_count, per_thread, max_entries = 8, 500, 1000
    cache = ScoreCache(max_entries=max_entries)
    start = threading.Barrier(threads_count)

    def work(thread: int) -> None:
        keys = [f"{thread}-{item:03d}" for item in range(per_thread)]  # all five characters
        start.wait()
        for key in keys:
            cache.store(MODEL, "q", [key], [float(thread)])
            cache.lookup(MODEL, "q", [key, f"absent-{key}"])

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers)

    stats = cache.stats()
    total = threads_count * per_thread
    assert stats.entries == max_entries
    assert stats.evictions == total - max_entries
    assert stats.hits + stats.misses == 2 * total
    assert stats.misses >= total  # every absent key misses
    assert stats.bytes == max_entries * ScoreCache.entry_bytes("q", "0-000")


@pytest.mark.anyio
async def test_overlapping_search_scores_only_the_new_candidates():
    cache = ScoreCache()
    scorer = Scorer()
    scores, scored_now = await score_with_cache(cache, MODEL, "q", ["a", "b", "c"], ["x", "yy", "zzz"], scorer)
    assert (scores, scored_now) == ([1.0, 2.0, 3.0], 3)

    scores, scored_now = await score_with_cache(
        cache, MODEL, "q", ["d", "b", "e", "a"], ["wwww", "yy", "vvvvv", "x"], scorer
    )
    assert scorer.calls == [["x", "yy", "zzz"], ["wwww", "vvvvv"]]
    assert (scores, scored_now) == ([4.0, 2.0, 5.0, 1.0], 2)

    scores, scored_now = await score_with_cache(cache, MODEL, "q", ["e", "c"], ["vvvvv", "zzz"], scorer)
    assert (scores, scored_now) == ([5.0, 3.0], 0)
    assert len(scorer.calls) == 2  # everything cached: the scorer is not called
    assert (cache.stats().hits, cache.stats().misses) == (4, 5)


@pytest.mark.anyio
async def test_another_model_rescores_everything():
    cache = ScoreCache()
    scorer = Scorer()
    await score_with_cache(cache, MODEL, "q", ["a", "b"], ["x", "yy"], scorer)
    await score_with_cache(cache, "other", "q", ["a", "b"], ["x", "yy"], scorer)
    assert scorer.calls == [["x", "yy"], ["x", "yy"]]


@pytest.mark.anyio
async def test_a_failing_scorer_stores_nothing_and_propagates():
    cache = ScoreCache()
    await score_with_cache(cache, MODEL, "q", ["a"], ["x"], Scorer())
    failing = Scorer(fail=True)
    with pytest.raises(RuntimeError, match="timed out"):
        await score_with_cache(cache, MODEL, "q", ["a", "b", "c"], ["x", "yy", "zzz"], failing)
    assert failing.calls == [["yy", "zzz"]]
    assert cache.lookup(MODEL, "q", ["a", "b", "c"]) == {0: 1.0}
    assert cache.stats().entries == 1


@pytest.mark.anyio
async def test_a_scorer_returning_the_wrong_count_stores_nothing():
    async def short(texts: list[str]) -> list[float]:
        return [1.0]

    cache = ScoreCache()
    with pytest.raises(ValueError, match="returned 1 scores for 2 texts"):
        await score_with_cache(cache, MODEL, "q", ["a", "b"], ["x", "yy"], short)
    assert cache.stats().entries == 0


@pytest.mark.anyio
async def test_disabled_cache_scores_everything_every_time():
    cache = ScoreCache(max_entries=0)
    scorer = Scorer()
    for _ in range(2):
        assert await score_with_cache(cache, MODEL, "q", ["a", "b"], ["x", "yy"], scorer) == ([1.0, 2.0], 2)
    assert scorer.calls == [["x", "yy"], ["x", "yy"]]


@pytest.mark.anyio
async def test_mismatched_keys_and_texts_are_refused():
    with pytest.raises(ValueError, match="same length"):
        await score_with_cache(ScoreCache(), MODEL, "q", ["a"], ["x", "yy"], Scorer())
