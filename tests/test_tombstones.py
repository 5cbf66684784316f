"""Deletions are taken from a record of them, never from absence: every deletion from the store writes a
tombstone first, and a memory the catalogue holds that the store lost without one is stored again from the
catalogue. The unit tests share one in-memory store between services, as processes share a store; the
integration tests use Chroma, embedded and as a server, with real processes."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

from mimir_mcp.config import EmbeddingSettings, Settings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.models import MemoryInput, MemoryRecord
from mimir_mcp.reindex import Reindexer
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.service.sync import TOMBSTONES_SINCE
from mimir_mcp.store.chroma import ChromaStore
from mimir_mcp.store.chroma_records import DAMAGED_SUFFIX
from mimir_mcp.store.chroma_tombstones import TOMBSTONE_SUFFIX
from mimir_mcp.store.in_memory import InMemoryStore
from tests.conftest import PYTHON, REPO
from tests.durability_worker import HashEmbedder, worker_settings
from tests.test_durability import close_service, open_service

pytestmark = pytest.mark.anyio

TEXTS = [
    f"note {n}: the {word} plan for the {topic}"
    for n, (word, topic) in enumerate(
        (w, t) for w in ("first", "second", "third", "fourth") for t in ("schema", "ledger")
    )
]


class RecordingStore(InMemoryStore):
    """An in-memory store that notes the order of its tombstone writes and deletes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []

    def add_tombstones(self, records):  # noqa: ANN001, ANN201 - the protocol's
        self.calls.append(("tombstone", [record.id for record in records]))
        super().add_tombstones(records)

    def delete(self, ids):  # noqa: ANN001, ANN201
        self.calls.append(("delete", list(ids)))
        super().delete(ids)


def services(fake_settings: Settings, tmp_path: Path, store: InMemoryStore) -> tuple[MemoryService, MemoryService]:
    """Two services on one store, each with its own catalogue: two processes on one Chroma server."""
    other = fake_settings.model_copy(
        update={"store": fake_settings.store.model_copy(update={"data_dir": tmp_path / "b"})}
    )
    return (
        MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: store),
        MemoryService(other, embedder=HashingEmbedder(), open_store=lambda *_: store),
    )


# -- unit: the in-memory store -------------------------------------------------------------------------


async def test_forget_and_update_write_the_tombstone_before_the_delete(fake_settings: Settings):
    store = RecordingStore()
    service = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: store)
    try:
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
        await service.forget([ids[0]], None, confirm=False, dry_run=False)
        await service.update(ids[1], text="the second plan, rewritten")
        assert store.calls == [
            ("tombstone", [ids[0]]),
            ("delete", [ids[0]]),
            ("tombstone", [ids[1]]),
            ("delete", [ids[1]]),
        ]
        assert set(store.tombstones()) == {ids[0], ids[1]}
        # Storing an id again clears its tombstone: a tombstone means "deleted since last stored".
        await service.remember([MemoryInput(text=TEXTS[0])])
        assert set(store.tombstones()) == {ids[1]}
    finally:
        service.close()


async def test_another_process_takes_a_forget_from_its_tombstone_and_restores_a_loss(
    fake_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    shared = InMemoryStore()
    writer, reader = services(fake_settings, tmp_path, shared)
    try:
        ids = (await writer.remember([MemoryInput(text=text) for text in TEXTS[:4]])).ids
        assert len((await reader.get(ids, max_chars=None)).memories) == 4  # the reader's catalogue holds all four
        await writer.forget([ids[0]], None, confirm=False, dry_run=False)
        shared.delete([ids[1]])  # lost behind both services' backs: no tombstone
        with caplog.at_level(logging.WARNING, logger="mimir_mcp.service.sync"):
            got = await reader.get(ids, max_chars=None)
        assert got.not_found == [ids[0]]
        assert ids[1] in shared.all_ids() and ids[0] not in shared.all_ids()
        _, lexical = reader.storage()
        assert ids[0] not in lexical.catalogue.ids() and ids[1] in lexical.catalogue.ids()
        assert reader.repair is not None and reader.repair.memories == 1
        assert "lost 1 memories the catalogue holds, with no record of their deletion" in reader.repair.reason
        assert "restored from the catalogue" in caplog.text
        problems = (await reader.status()).summary().problems
        assert any("with no record of their deletion" in problem for problem in problems), problems
    finally:
        writer.close()
        reader.close()


async def test_a_catalogue_never_reconciled_with_tombstones_takes_absence_as_deletion_once(
    fake_settings: Settings,
):
    """Older versions deleted without tombstones: a catalogue they kept takes absence as deletion at its first
    reconcile, and from then on as a loss."""
    first = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: InMemoryStore())
    ids = (await first.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
    _, lexical = first.storage()
    records = lexical.get(ids)
    first.close()
    catalogue = Path(fake_settings.store.data_dir) / f"bm25-{fake_settings.store.collection}.sqlite3"
    with sqlite3.connect(catalogue) as db:  # as an older version left it
        db.execute("DELETE FROM meta WHERE key = ?", (TOMBSTONES_SINCE,))
    store = InMemoryStore()
    store.add([records[ids[0]], records[ids[1]]], HashingEmbedder().encode([TEXTS[0], TEXTS[1]]))
    second = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: store)
    try:
        assert (await second.get(ids, max_chars=None)).not_found == [ids[2]]  # deleted by an older version
        assert second.repair is None
        store.delete([ids[0]])  # now a loss
        assert (await second.get(ids, max_chars=None)).not_found == [ids[2]]
        assert store.all_ids() == {ids[0], ids[1]} and second.repair is not None
    finally:
        second.close()


async def test_an_interrupted_forget_is_completed_at_open_and_a_stale_tombstone_dropped(fake_settings: Settings):
    store = InMemoryStore()
    first = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: store)
    ids = (await first.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
    first.close()
    stored = {record.id: record for record in store.get(ids)}
    # A forget killed between its tombstone and its delete; and a tombstone of an older version of a memory
    # stored again (killed before it cleared the tombstone).
    store.add_tombstones(
        [stored[ids[0]], stored[ids[1]].model_copy(update={"created_at": "2020-01-01T00:00:00+00:00"})]
    )
    second = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=lambda *_: store)
    try:
        assert (await second.get(ids, max_chars=None)).not_found == [ids[0]]
        assert store.all_ids() == {ids[1], ids[2]} and set(store.tombstones()) == {ids[0]}
    finally:
        second.close()


# -- integration: Chroma ----------------------------------------------------------------------------


def lose(data_dir: Path, collection: str, ids: list[str]) -> None:
    """Delete memories straight from the Chroma collection, with no tombstone, while no service has it open
    (what a damaged file or an older copy of the folder does); then this process forgets the client."""
    client = chromadb.PersistentClient(
        path=str(data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    client.get_collection(collection).delete(ids=ids)
    client.close()
    SharedSystemClient.clear_system_cache()


@contextmanager
def opened(data_dir: Path) -> Iterator[tuple[MemoryService, ChromaStore, Any]]:
    """The service on ``data_dir`` as a new process opens it (Chroma's per-path client forgotten first),
    closed after."""
    SharedSystemClient.clear_system_cache()
    service, store, lexical = open_service(data_dir, EMBEDDER)
    try:
        yield service, store, lexical
    finally:
        close_service(service, store)


EMBEDDER = HashEmbedder(EmbeddingSettings(query_backend="torch"))


@pytest.mark.integration
async def test_a_chroma_store_that_lost_memories_gets_them_back(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    data_dir = tmp_path / "data"
    with opened(data_dir) as (service, store, _):
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS])).ids
        await service.forget([ids[0]], None, confirm=False, dry_run=False)
    lost = ids[1:4]
    lose(data_dir, service.settings.store.collection, lost)

    with caplog.at_level(logging.WARNING), opened(data_dir) as (service, store, lexical):
        assert store.all_ids() == set(ids[1:]) and lexical.catalogue.ids() == set(ids[1:])
        got = await service.get(lost, max_chars=None)
        assert [memory.text for memory in got.memories] == TEXTS[1:4]
        for memory_id, text in zip(lost, TEXTS[1:4], strict=True):
            assert store.query(EMBEDDER.encode([text])[0], 1)[0][0] == memory_id  # in the vector index again
            found = await service.search(SearchRequest(query=text, top_k=3, rerank=False, rerank_top_k=3))
            assert found.hits[0].id == memory_id
        status = await service.status()
        assert status.store.repaired is not None and status.store.repaired.memories == 3
        assert "the store had lost 3 memories the catalogue holds" in status.store.repaired.reason
        assert "lost 3 memories" in caplog.text and "restored from the catalogue" in caplog.text
        assert ids[0] not in store.all_ids()  # the forgotten one stays forgotten


@pytest.mark.integration
async def test_forgotten_then_remembered_again_then_lost_is_restored(tmp_path: Path):
    data_dir = tmp_path / "data"
    with opened(data_dir) as (service, store, _):
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
        await service.forget([ids[0]], None, confirm=False, dry_run=False)
        assert set(store.tombstones()) == {ids[0]}
        again = await service.remember([MemoryInput(text=TEXTS[0])])
        assert again.ids == [ids[0]] and again.stored == 1 and store.tombstones() == {}
    lose(data_dir, service.settings.store.collection, [ids[0]])
    with opened(data_dir) as (service, store, lexical):
        assert store.all_ids() == set(ids) and lexical.catalogue.ids() == set(ids)
        assert service.repair is not None and service.repair.memories == 1


@pytest.mark.integration
async def test_an_interrupted_forget_in_chroma_is_completed(tmp_path: Path):
    data_dir = tmp_path / "data"
    with opened(data_dir) as (service, store, lexical):
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
        # A forget that died after its tombstone, before its delete: its write never ended whole.
        with pytest.raises(RuntimeError), store.writing():
            store.add_tombstones([lexical.get([ids[0]])[ids[0]]])
            raise RuntimeError("killed")
    with opened(data_dir) as (service, store, lexical):
        assert store.all_ids() == set(ids[1:]) and lexical.catalogue.ids() == set(ids[1:])
        assert (await service.get(ids, max_chars=None)).not_found == [ids[0]]
        assert service.repair is None


@pytest.mark.integration
async def test_tombstones_survive_a_reindex_and_a_rebuild(tmp_path: Path):
    data_dir = tmp_path / "data"
    with opened(data_dir) as (service, store, lexical):
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:4]])).ids
        await service.forget([ids[0]], None, confirm=False, dry_run=False)
        with store.writing():
            store.rebuild(lexical, EMBEDDER.encode, service.settings.embedding.model, "a test")
    SharedSystemClient.clear_system_cache()
    report = Reindexer(worker_settings(str(data_dir)), embedder=EMBEDDER, force=True).run()
    assert report.switched and report.memories == 3
    lose(data_dir, service.settings.store.collection, [ids[1]])
    with opened(data_dir) as (service, store, lexical):
        assert set(store.tombstones()) == {ids[0]}
        assert store.all_ids() == set(ids[1:]) and lexical.catalogue.ids() == set(ids[1:])


@pytest.mark.integration
async def test_unreadable_tombstones_are_set_aside_and_the_store_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    data_dir = tmp_path / "data"
    with opened(data_dir) as (service, store, _):
        collection = service.settings.store.collection
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:3]])).ids
        await service.forget([ids[0]], None, confirm=False, dry_run=False)
    SharedSystemClient.clear_system_cache()
    with sqlite3.connect(data_dir / "chroma" / "chroma.sqlite3") as db:
        segments = [
            row[0]
            for row in db.execute(
                "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id WHERE c.name = ?",
                (collection + TOMBSTONE_SUFFIX,),
            )
        ]
    torn = [data_dir / "chroma" / segment for segment in segments if (data_dir / "chroma" / segment).is_dir()]
    assert torn, "the tombstones have no vector segment on disk"
    for folder in torn:
        (folder / "index_metadata.pickle").write_bytes(b"\x80\x04torn")
    with caplog.at_level(logging.WARNING), opened(data_dir) as (service, store, lexical):
        assert store.all_ids() == set(ids[1:]) and lexical.catalogue.ids() == set(ids[1:])
        assert "Chroma cannot read the tombstones" in caplog.text
        client = store._client
        assert any(DAMAGED_SUFFIX in str(getattr(c, "name", c)) for c in client.list_collections())
        await service.forget([ids[1]], None, confirm=False, dry_run=False)
        assert set(store.tombstones()) == {ids[1]}


FORGET = """
import asyncio, sys
from mimir_mcp.config import EmbeddingSettings, Settings
from mimir_mcp.service.memory import MemoryService
from tests.durability_worker import HashEmbedder
data_dir, port, memory_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
settings = Settings(
    store={"data_dir": data_dir, "chroma_host": "127.0.0.1", "chroma_port": port},
    reranker={"enabled": False},
    embedding={"query_backend": "torch"},
)
service = MemoryService(settings, embedder=HashEmbedder(EmbeddingSettings(query_backend="torch")))
forgotten = asyncio.run(service.forget([memory_id], None, confirm=False, dry_run=False))
service.close()
print(forgotten.removed_count)
"""


def server_settings(data_dir: Path, port: int) -> Settings:
    return Settings(
        store={"data_dir": data_dir, "chroma_host": "127.0.0.1", "chroma_port": port, "sync_interval_s": 0.0},
        reranker={"enabled": False},
        embedding={"query_backend": "torch"},
    )


async def test_a_forget_in_another_process_on_a_chroma_server_is_taken_from_its_tombstone(
    tmp_path: Path, chroma_server: int
):
    """Each process on a Chroma server keeps its own catalogue: a forget in one reaches the other's through
    the tombstone, and a memory deleted behind both their backs is restored, not taken as forgotten."""
    settings = server_settings(tmp_path / "b", chroma_server)
    service = MemoryService(settings, embedder=HashEmbedder(EmbeddingSettings(query_backend="torch")))
    try:
        ids = (await service.remember([MemoryInput(text=text) for text in TEXTS[:4]])).ids
        done = subprocess.run(
            [PYTHON, "-c", FORGET, str(tmp_path / "a"), str(chroma_server), ids[0]],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr[-2000:]
        client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
        client.get_collection(settings.store.collection).delete(ids=[ids[1]])  # lost: no tombstone
        got = await service.get(ids, max_chars=None)
        assert got.not_found == [ids[0]]
        store, lexical = service.storage()
        assert ids[0] not in lexical.catalogue.ids() and ids[0] not in lexical.ids()
        assert store.all_ids() == set(ids[1:]) and service.repair is not None and service.repair.memories == 1
        vectors = store.vectors([ids[1]])
        assert np.allclose(vectors[ids[1]], service.embedder.encode([TEXTS[1]])[0], atol=1e-5)
    finally:
        service.close()


def test_a_tombstone_names_the_version_it_deleted():
    record = MemoryRecord(id="m", text="t", namespace="default", created_at="2026-01-01T00:00:00+00:00")
    store = InMemoryStore()
    store.add_tombstones([record])
    tombstone = store.tombstones(["m", "x"])["m"]
    assert tombstone.names(record)
    assert not tombstone.names(record.model_copy(update={"updated_at": "2026-01-02T00:00:00+00:00"}))
    assert not tombstone.names(record.model_copy(update={"created_at": "2026-01-03T00:00:00+00:00"}))
    store.clear_tombstones(["m", "x"])
    assert store.tombstones() == {}
