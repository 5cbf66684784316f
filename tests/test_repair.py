"""A collection Chroma can no longer read (a process killed while Chroma wrote its vector index) is rebuilt
from the record catalogue when the store is opened, with nothing acknowledged lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.errors import InternalError

from mimir_mcp.errors import StoreUnavailableError
from mimir_mcp.models import MemoryInput
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.store.chroma import REPAIR_SUFFIX, ChromaStore
from mimir_mcp.store.chroma_records import DAMAGED_SUFFIX, make_embedding_function
from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio

TEXTS = [
    f"note {n}: the {word} decision about the {topic}"
    for n, (word, topic) in enumerate(
        (w, t)
        for w in ("first", "second", "third", "fourth", "fifth")
        for t in ("schema", "deploy", "ledger", "canary")
    )
]


def damage(data_dir: Path) -> None:
    """What a torn write of the vector index leaves: unreadable index metadata in the HNSW segment. Then
    this process forgets the store it had open (Chroma keeps one per path), as a new process would."""
    segments = [path for path in (data_dir / "chroma").iterdir() if (path / "header.bin").exists()]
    assert segments, "the store has no vector segment on disk"
    for segment in segments:
        (segment / "index_metadata.pickle").write_bytes(b"\x80\x04torn")
    SharedSystemClient.clear_system_cache()


def chroma_reads(data_dir: Path, collection: str, folder: Path | None = None) -> str:
    """What a plain Chroma client says when it counts the collection (in a child: a clean process), in the
    data dir's Chroma folder or in ``folder``."""
    script = (
        "import chromadb, sys\n"
        f"c = chromadb.PersistentClient(path={str(folder or data_dir / 'chroma')!r})\n"
        "try:\n"
        f"    print('count', c.get_collection({collection!r}).count())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120).stdout


def request(query: str, namespace: str | None = None) -> SearchRequest:
    return SearchRequest(query=query, top_k=5, rerank=False, rerank_top_k=10, namespace=namespace)


async def fill(service: MemoryService) -> dict[str, dict]:
    """Memories in two namespaces, with tags, metadata, a forget and both kinds of update; returns what
    the catalogue holds afterwards, by id."""
    first = await service.remember(
        [MemoryInput(text=text, namespace="alpha", tags=["t"], metadata={"n": n}) for n, text in enumerate(TEXTS[:12])]
    )
    await service.remember([MemoryInput(text=text, namespace="beta", agent="writer") for text in TEXTS[12:]])
    await service.forget(first.ids[:2], None, confirm=False, dry_run=False)
    await service.update(first.ids[2], tags=["changed"], metadata={"n": 99})
    await service.update(first.ids[3], text="note 3, rewritten: the ledger schema moves to Postgres")
    _, lexical = service.storage()
    return {memory_id: record.model_dump() for memory_id, record in lexical.get(sorted(lexical.ids())).items()}


async def stored_then_torn(settings, embedder, reranker) -> dict[str, dict]:
    """``fill`` a store, close it, then tear its vector index; returns what the catalogue holds."""
    service = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        before = await fill(service)
    finally:
        service.close()
    damage(Path(settings.store.data_dir))
    return before


async def test_an_unreadable_collection_is_rebuilt_from_the_catalogue(settings, embedder, reranker):
    data_dir = Path(settings.store.data_dir)
    before = await stored_then_torn(settings, embedder, reranker)
    assert len(before) == len(TEXTS) - 2 + 1 - 1  # two forgotten; the rewritten one replaced
    assert "InternalError" in chroma_reads(data_dir, settings.store.collection)

    # Opening reads the torn index in a child process first (never in its own: a torn index can crash the
    # reader), sets the folder aside, and rebuilds the store from the catalogue.
    second = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        store, lexical = second.storage()
        assert store.all_ids() == set(before)
        assert {record.id: record.model_dump() for record in store.get(sorted(before))} == before
        status = await second.status()
        assert status.store.memories == len(before) and status.bm25 is not None and status.bm25.in_sync
        repaired = status.store.repaired
        assert repaired is not None and repaired.memories == len(before) and "Chroma cannot read" in repaired.reason
        assert second.repair is repaired
        # The vectors are back: a memory's own text finds it first in the dense arm, in its namespace.
        found = await second.search(request("note 3, rewritten: the ledger schema moves to Postgres", "alpha"))
        assert found.hits[0].text.startswith("note 3, rewritten") and found.hits[0].scores.dense_rank == 1
        kept = Path(second.repair.kept_as)
        assert kept.parent == data_dir and kept.name.startswith("chroma.damaged-")
    finally:
        second.close()
    assert chroma_reads(data_dir, settings.store.collection).strip() == f"count {len(before)}"
    assert "InternalError" in chroma_reads(data_dir, settings.store.collection, kept)  # kept as it was

    third = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        store, _ = third.storage()
        assert third.repair is None and store.all_ids() == set(before)
    finally:
        third.close()


async def test_a_rebuild_interrupted_at_any_step_completes_on_the_next_open(settings, embedder, reranker, monkeypatch):
    data_dir = Path(settings.store.data_dir)
    before = await stored_then_torn(settings, embedder, reranker)

    # Killed while filling the new collection: the damaged one still has the live name.
    calls = {"add": 0}
    original_add = ChromaStore.add

    def add_then_die(self: ChromaStore, records, embeddings) -> None:
        calls["add"] += 1
        original_add(self, records[:3], embeddings[:3])
        raise RuntimeError("killed while filling")

    # Killed between the two renames: the live name is gone, the complete new collection waits.
    def rename_half_then_die(self: ChromaStore, name: str) -> str:
        self._client.get_collection(self.name).modify(name=self.name + DAMAGED_SUFFIX + "x")
        raise RuntimeError("killed between the renames")

    for attribute, dying, match in (
        ("add", add_then_die, "while filling"),
        ("replace_with", rename_half_then_die, "renames"),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(ChromaStore, attribute, dying)
            service = MemoryService(settings, embedder=embedder, reranker=reranker)
            try:
                with pytest.raises(RuntimeError, match=match):
                    service.storage()
            finally:
                service.close()
    assert calls["add"] == 1
    assert "NotFoundError" in chroma_reads(data_dir, settings.store.collection)
    assert chroma_reads(data_dir, settings.store.collection + REPAIR_SUFFIX).strip() == f"count {len(before)}"
    # Another process opening now finishes the switch-over, and never makes an empty collection.
    waiting = ChromaStore(
        settings.store, make_embedding_function(embedder.encode, settings.embedding.model), model=None
    )
    with waiting.writing():
        assert waiting.damage() is None
        assert waiting.all_ids() == set(before)

    fourth = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        store, _ = fourth.storage()
        assert fourth.repair is None  # nothing left to rebuild: the switch-over was finished
        assert store.all_ids() == set(before)
        found = await fourth.search(request(TEXTS[5], "alpha"))
        assert found.hits[0].text == TEXTS[5] and found.hits[0].scores.dense_rank == 1
    finally:
        fourth.close()


async def test_a_store_that_breaks_while_running_is_reported_with_what_to_do(client, service, monkeypatch):
    await call(client, "remember", {"text": "the canary goes out before the full deploy"})
    store, _ = service.storage()

    def unreadable(*args, **kwargs):
        raise InternalError("Error executing plan: Failed to apply logs to the hnsw segment writer")

    monkeypatch.setattr(store, "query", unreadable)
    message = await call_error(client, "search", {"query": "canary", "rerank": False})
    assert "Chroma cannot read the memory store" in message
    assert "hnsw segment writer" in message and "restart mimir-mcp" in message
    monkeypatch.undo()
    result = await call(client, "search", {"query": "canary", "rerank": False})
    assert result["hits"][0]["text"].startswith("the canary")


async def test_without_a_catalogue_nothing_is_rebuilt_and_the_error_says_why(settings, embedder, reranker):
    data_dir = Path(settings.store.data_dir)
    await stored_then_torn(settings, embedder, reranker)
    (data_dir / f"bm25-{settings.store.collection}.sqlite3").unlink()

    second = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        with pytest.raises(StoreUnavailableError, match="no record catalogue to rebuild it from"):
            second.storage()
    finally:
        second.close()
    # Nothing was moved, renamed or emptied: the damaged collection still holds the name, for a restore.
    assert "InternalError" in chroma_reads(data_dir, settings.store.collection)
    assert "NotFoundError" in chroma_reads(data_dir, settings.store.collection + REPAIR_SUFFIX)


@pytest.mark.integration
def test_a_store_left_by_its_own_writes_opens_again_without_a_probe(tmp_path, monkeypatch):
    """The probe reads the vector index in a child process (a second at a thousand memories, a minute at a
    million) only when its files are not as the last write under the lock left them, and SQLite's check of
    its database likewise. A new store is vouched for from its creation, so the first restart after a
    server's writes opens it directly."""
    from mimir_mcp.config import StoreSettings
    from mimir_mcp.embedding import HashingEmbedder
    from mimir_mcp.models import MemoryRecord
    from mimir_mcp.store import chroma, probe

    embedder = HashingEmbedder()
    settings = StoreSettings(data_dir=tmp_path / "data")
    store = ChromaStore(settings, make_embedding_function(embedder.encode, embedder.model))
    records = [MemoryRecord(id=f"m{n}", text=f"note {n}", namespace="default", created_at="") for n in range(1500)]
    with store.writing():
        store.add(records, embedder.encode([record.text for record in records]))
    folder = tmp_path / "data" / "chroma"
    assert probe.index_signature(folder) and probe.vouched(folder)  # index files written, and vouched for
    SharedSystemClient.clear_system_cache()  # as a new process would open it

    def no_probe(*args, **kwargs):
        raise AssertionError("the store was probed")

    def no_check(path):
        raise AssertionError(f"SQLite read {path} through")

    monkeypatch.setattr(probe.subprocess, "run", no_probe)
    monkeypatch.setattr(chroma, "sqlite_damage", no_check)
    assert ChromaStore(settings, make_embedding_function(embedder.encode, embedder.model)).count() == len(records)


@pytest.mark.integration
def test_every_id_is_listed_across_pages(tmp_path, monkeypatch):
    """The reconcile lists the store's ids a page at a time; the last page, full or not, ends the list."""
    from mimir_mcp.config import StoreSettings
    from mimir_mcp.embedding import HashingEmbedder
    from mimir_mcp.models import MemoryRecord
    from mimir_mcp.store import chroma

    embedder = HashingEmbedder()
    store = ChromaStore(StoreSettings(data_dir=tmp_path / "data"), make_embedding_function(embedder.encode, "h"))
    for count in (9, 10):  # a short last page, then a full one
        records = [MemoryRecord(id=f"m{n}", text=f"note {n}", namespace="default", created_at="") for n in range(count)]
        with store.writing():
            store.add(records, embedder.encode([record.text for record in records]))
        monkeypatch.setattr(chroma, "ALL_IDS_PAGE", 3 if count == 9 else 5)
        assert store.all_ids() == {f"m{n}" for n in range(count)}


@pytest.mark.integration
def test_a_cleanly_closed_data_dir_opens_without_reading_it_through(tmp_path, monkeypatch):
    """At a million memories, reading the store and the catalogue through at every start (SQLite's checks,
    the probe, the torn-write read, listing every id on both sides, building the BM25 postings) took
    minutes. After a clean close none of it runs: the files are as the last whole writes left them, and
    the counts agree. A write that failed leaves the store unvouched, so the next open checks it all."""
    from functools import partial

    import anyio

    from mimir_mcp.config import Settings
    from mimir_mcp.lexical.bm25 import BM25Index
    from mimir_mcp.models import MemoryRecord
    from mimir_mcp.store import catalogue, chroma, probe
    from mimir_mcp.store.catalogue import Catalogue
    from tests.durability_worker import HashEmbedder

    settings = Settings(store={"data_dir": tmp_path / "data"}, reranker={"enabled": False})
    first = MemoryService(settings, embedder=HashEmbedder(settings.embedding))
    first.storage()
    stored = anyio.run(first.remember, [MemoryInput(text=f"note {n} about the harbour") for n in range(30)])
    anyio.run(partial(first.forget, stored.ids[:3], None, confirm=False, dry_run=False))  # tombstones too
    first.close()
    SharedSystemClient.clear_system_cache()  # as a new process would open it

    def read_through(*args, **kwargs):
        raise AssertionError("read through at open")

    for owner, name in (
        (chroma, "sqlite_damage"),
        (catalogue, "sqlite_damage"),
        (probe.subprocess, "run"),
        (ChromaStore, "damage"),
        (ChromaStore, "all_ids"),
        (ChromaStore, "tombstones"),
        (Catalogue, "row_ids"),
        (BM25Index, "built"),
    ):
        monkeypatch.setattr(owner, name, read_through)
    second = MemoryService(settings, embedder=HashEmbedder(settings.embedding))
    try:
        store, lexical = second.storage()
        assert store.found_whole and store.count() == lexical.count() == 27
        found = anyio.run(second.search, SearchRequest(query="note 7 harbour", top_k=3, rerank=False, rerank_top_k=10))
        assert found.hits and found.hits[0].text == "note 7 about the harbour"
        late = MemoryRecord(id="mem_late", text="stored, then the catalogue failed", namespace="default", created_at="")
        with pytest.raises(RuntimeError), store.writing():
            store.add([late], HashEmbedder(settings.embedding).encode([late.text]))
            raise RuntimeError("the catalogue's half of the write failed")
        assert not probe.vouched(Path(store.location))
    finally:
        second.close()
