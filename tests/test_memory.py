"""The dedup key and keeping Chroma and the BM25 index in step across restarts."""

import dataclasses
import sqlite3
import threading
import time

import anyio
import pytest

from mimir_mcp.models import MemoryInput, MemoryRecord
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService, dedup_key, normalize_for_dedup


def test_normalize_for_dedup_exact():
    assert normalize_for_dedup("  Hello \n\t world  ") == "Hello world"
    assert normalize_for_dedup("cafe\u0301") == "caf\u00e9"  # NFC
    assert normalize_for_dedup("Hello World") != normalize_for_dedup("hello world")  # case is meaning


def test_dedup_key_exact_values():
    assert dedup_key("default", "Hello world") == "mem_0765633a18aef01270c4c7b3067c82ee"
    assert dedup_key("default", "  Hello   world\n") == "mem_0765633a18aef01270c4c7b3067c82ee"
    assert dedup_key("work", "Hello world") == "mem_a5f1a65be2ea65d0c1a2a0df4f0ed969"


def request(query: str, **overrides) -> SearchRequest:
    fields = dict(query=query, top_k=10, rerank=False, rerank_top_k=50)
    fields.update(overrides)
    return SearchRequest(**fields)


@pytest.mark.anyio
async def test_memories_survive_restart_and_bm25_follows_the_store(settings, embedder, reranker):
    first = MemoryService(settings, embedder=embedder, reranker=reranker)
    stored = await first.remember(
        [MemoryInput(text="Zebrafish regenerate heart tissue"), MemoryInput(text="Axolotls regrow limbs")]
    )
    first.close()

    # Simulate a crash between the Chroma write and the index write: the index loses one memory.
    bm25_path = settings.store.data_dir / f"bm25-{settings.store.collection}.sqlite3"
    with sqlite3.connect(bm25_path) as db:
        db.execute("DELETE FROM memories WHERE id = ?", (stored.ids[0],))

    second = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        status = await second.status()  # not loaded yet: reports loading, not an error
        assert status.store.state in {"loading", "ready"}
        found = await second.search(request("zebrafish heart"))
        assert found.hits[0].id == stored.ids[0]
        assert found.hits[0].scores.bm25_rank == 1  # back in the BM25 index, not only found by vectors
        status = await second.status()
        assert status.store.memories == 2
        assert status.bm25 is not None and status.bm25.documents == 2 and status.bm25.in_sync
        again = await second.remember([MemoryInput(text="Zebrafish  regenerate heart tissue ")])
        assert again.deduplicated and again.ids == [stored.ids[0]]
    finally:
        second.close()


@pytest.mark.anyio
async def test_catalogue_entries_the_store_lacks_without_a_tombstone_are_restored(settings, embedder, reranker):
    """A memory the catalogue holds and the store does not, with no record of its deletion, was lost by the
    store: it is stored again from the catalogue, not dropped (tests/test_tombstones.py: the deleted ones)."""
    first = MemoryService(settings, embedder=embedder, reranker=reranker)
    await first.remember([MemoryInput(text="Real memory about comets")])
    first.close()
    bm25_path = settings.store.data_dir / f"bm25-{settings.store.collection}.sqlite3"
    with sqlite3.connect(bm25_path) as db:
        db.execute(
            "INSERT INTO memories (id, namespace, text, tags, source, agent, created_at, metadata, tokens) "
            "VALUES ('ghost', 'default', 'ghost comets', '[]', NULL, NULL, 't', '{}', 'ghost comet')"
        )
    second = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        found = await second.search(request("comets"))
        assert sorted(hit.text for hit in found.hits) == ["Real memory about comets", "ghost comets"]
        store, _ = second.storage()
        assert "ghost" in store.all_ids() and second.repair is not None and second.repair.memories == 1
    finally:
        second.close()


@pytest.mark.anyio
async def test_writes_by_another_process_reach_the_next_search(settings, embedder, reranker):
    """A write that reached the embedded Chroma store but not this process's index (another process
    sharing the data dir) is picked up by the very next search: Chroma's files changed, so the counts
    are compared, whatever the sync interval (which only paces the check against a Chroma server)."""
    shared = settings.model_copy(update={"store": settings.store.model_copy(update={"sync_interval_s": 3600.0})})
    service = MemoryService(shared, embedder=embedder, reranker=reranker)
    try:
        await service.remember([MemoryInput(text="Comets have icy nuclei")])
        assert len((await service.search(request("comets"))).hits) == 1
        store, _ = service.storage()
        token = store.change_token()
        assert token is not None and store.change_token() == token  # reads leave the files alone
        assert len((await service.search(request("comets"))).hits) == 1 and store.change_token() == token
        outsider = MemoryRecord(
            id="mem_outsider", text="Zebrafish regenerate heart tissue", namespace="default", created_at="t"
        )
        store.add([outsider], embedder.encode([outsider.text]))
        assert store.change_token() != token
        found = await service.search(request("zebrafish heart"))
        assert found.hits[0].id == "mem_outsider" and found.hits[0].scores.bm25_rank == 1
    finally:
        service.close()


@pytest.mark.anyio
async def test_another_writers_change_reloads_the_index_once_not_at_every_search(settings, embedder, reranker):
    """Reopening Chroma to take in another process's write touches its database file; that touch must not
    read as one more write, or every later search reloads the whole HNSW index (0.2 s each at 100k
    memories, measured by `bench` before this was fixed)."""
    service = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        await service.remember([MemoryInput(text="Comets have icy nuclei")])
        store, _ = service.storage()
        outsider = MemoryRecord(
            id="mem_other", text="Zebrafish regenerate heart tissue", namespace="default", created_at="t"
        )
        store.add([outsider], embedder.encode([outsider.text]))  # as a process sharing the data dir would
        reloads: list[float] = []
        load = store._load_index
        store._load_index = lambda: (reloads.append(time.monotonic()), load())[1]  # type: ignore[method-assign]
        for query in ["zebrafish heart", "comets", "icy nuclei", "heart tissue", "zebrafish"]:
            assert (await service.search(request(query))).hits
        assert len(reloads) == 1
        assert service.sync.due((await service.loader.ready()).store) is False  # nothing changed since
    finally:
        service.close()


@pytest.mark.anyio
async def test_status_answers_from_its_counts_while_a_write_holds_the_store_and_the_index(settings, embedder, reranker):
    service = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        await service.remember([MemoryInput(text="Alpha ships on Monday"), MemoryInput(text="Beta", namespace="x")])
        backend = await service.loader.ready()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with backend.store.writing(), backend.lexical._lock:
                held.set()
                release.wait(60)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait()
        try:
            with anyio.fail_after(10):  # counting here would wait for the lock until release (60 s)
                status = await service.status()
        finally:
            release.set()
            thread.join()
        assert status.store.memories == 2 and status.store.namespaces == {"default": 1, "x": 1}
        assert status.bm25 is not None and status.bm25.documents == 2 and status.bm25.in_sync

        # Counts older than a second are shown as they are, with their age, and counted again behind.
        counts = service.board.counts
        assert counts is not None
        service.board.counts = dataclasses.replace(counts, store=99, at=time.monotonic() - 5)
        stale = await service.status()
        assert stale.store.memories == 99 and stale.store.counted_s_ago >= 5
        assert stale.bm25 is not None and not stale.bm25.in_sync
        for _ in range(200):
            if service.board.counts.store == 2:
                break
            await anyio.sleep(0.05)
        fresh = await service.status()
        assert fresh.store.memories == 2 and fresh.store.counted_s_ago < 5
    finally:
        service.close()
