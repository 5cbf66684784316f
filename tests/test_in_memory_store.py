"""The in-memory store and the deterministic embedder: they keep the contract Chroma's adapter keeps, and the
service's logic (dedup, update, forget, list, search order, another writer's changes) runs on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimir_mcp.config import Settings, StoreSettings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.models import MemoryInput, MemoryRecord, RecordFilter
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.store.base import VectorStore
from mimir_mcp.store.catalogue import Catalogue
from mimir_mcp.store.chroma import ChromaStore
from mimir_mcp.store.chroma_records import make_embedding_function
from mimir_mcp.store.in_memory import InMemoryStore

EMBEDDER = HashingEmbedder()

RECORDS = [
    MemoryRecord(
        id="a",
        text="the deploy runs on friday",
        namespace="ops",
        tags=["deploy", "weekly"],
        agent="planner",
        created_at="2026-01-01T00:00:00+00:00",
        metadata={"priority": 2, "team": "infra", "urgent": True},
    ),
    MemoryRecord(
        id="b",
        text="the canary goes out before the deploy",
        namespace="ops",
        tags=["deploy"],
        created_at="2026-02-01T00:00:00+00:00",
        metadata={"priority": 1, "team": "infra", "urgent": False},
    ),
    MemoryRecord(
        id="c",
        text="alice prefers tea over coffee",
        namespace="people",
        tags=["preferences"],
        agent="planner",
        created_at="2026-03-01T00:00:00+00:00",
        metadata={"priority": 2.5, "team": "2"},
    ),
    MemoryRecord(
        id="d",
        text="the ledger schema moves to postgres",
        namespace="default",
        created_at="not a time",
        metadata={"priority": 2},
    ),
]

FILTERS = {
    "none": RecordFilter(namespace=None),
    "namespace": RecordFilter(namespace="ops"),
    "namespaces": RecordFilter(namespace=None, namespaces=["ops", "people"]),
    "no namespaces": RecordFilter(namespace=None, namespaces=[]),
    "tag": RecordFilter(namespace=None, tags=["deploy"]),
    "two tags": RecordFilter(namespace=None, tags=["deploy", "weekly"]),
    "agent": RecordFilter(namespace=None, agent="planner"),
    "number": RecordFilter(namespace=None, metadata={"priority": 2}),
    "float": RecordFilter(namespace=None, metadata={"priority": 2.5}),
    "string": RecordFilter(namespace=None, metadata={"team": "2"}),
    "bool": RecordFilter(namespace=None, metadata={"urgent": False}),
    "after": RecordFilter(namespace=None, created_after=1769904000.0),  # 2026-02-01, inclusive
    "before": RecordFilter(namespace=None, created_before=1769904000.0),  # exclusive; "not a time" is 0
    "all at once": RecordFilter(namespace="ops", tags=["deploy"], metadata={"team": "infra"}, created_after=0.0),
}

# Where Chroma's ``where`` selects more than the rule: it takes 2.5 as equal to a stored 2. The search
# pipeline re-checks every candidate against the catalogue, so what is shown follows the rule.
CHROMA_SELECTS_MORE = {"float"}


def chroma_store(tmp_path: Path) -> ChromaStore:
    return ChromaStore(
        StoreSettings(data_dir=tmp_path / "data"), make_embedding_function(EMBEDDER.encode, EMBEDDER.model)
    )


@pytest.fixture(params=[pytest.param("chroma", marks=pytest.mark.integration), "in-memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    filled: VectorStore = chroma_store(tmp_path) if request.param == "chroma" else InMemoryStore()
    with filled.writing():
        filled.add(RECORDS, EMBEDDER.encode([record.text for record in RECORDS]))
    return filled


@pytest.mark.integration  # Chroma's own filter against the rule
@pytest.mark.parametrize("name", FILTERS)
def test_both_stores_and_the_catalogue_select_the_same_memories(name: str, tmp_path: Path):
    where = FILTERS[name]
    chroma, memory = chroma_store(tmp_path), InMemoryStore()
    vectors = EMBEDDER.encode([record.text for record in RECORDS])
    for store in (chroma, memory):
        store.add(RECORDS, vectors)
    catalogue = Catalogue(tmp_path / "catalogue.sqlite3")
    catalogue.insert((record, record.text.split()) for record in RECORDS)
    expected = set(catalogue.matching_ids(where))
    query = EMBEDDER.encode_query("the deploy")
    found = {kind: store.query(query, 10, where=where) for kind, store in (("chroma", chroma), ("memory", memory))}
    assert {i for i, _ in found["memory"]} == expected
    if name in CHROMA_SELECTS_MORE:
        assert {i for i, _ in found["chroma"]} > expected
        found["chroma"] = [(i, score) for i, score in found["chroma"] if i in expected]
    assert [i for i, _ in found["chroma"]] == [i for i, _ in found["memory"]]  # distinct scores: one order
    for (_, chroma_score), (_, memory_score) in zip(found["chroma"], found["memory"], strict=True):
        assert chroma_score == pytest.approx(memory_score, abs=1e-5)


def test_reads_counts_and_vectors(store: VectorStore):
    assert store.count() == 4 and store.all_ids() == {"a", "b", "c", "d"}
    assert store.existing(["a", "x", "c"]) == {"a", "c"} and store.existing([]) == set()
    assert {record.id: record for record in store.get(["c", "x", "a"])} == {"a": RECORDS[0], "c": RECORDS[2]}
    vectors = store.vectors(["b", "x"])
    assert list(vectors) == ["b"] and np.allclose(vectors["b"], EMBEDDER.encode([RECORDS[1].text])[0], atol=1e-6)
    pages = list(store.records(embeddings=True, batch=3))
    assert [len(page) for page, _ in pages] == [3, 1]
    assert {record.id for page, _ in pages for record in page} == store.all_ids()
    assert all(np.asarray(vectors).shape == (len(page), EMBEDDER.dimension) for page, vectors in pages)
    assert [vectors for _, vectors in store.records()] == [None]
    assert store.query(EMBEDDER.encode_query("tea"), 0) == []
    assert store.query(EMBEDDER.encode_query("alice prefers tea over coffee"), 1)[0][0] == "c"


def test_writes_deletes_and_field_changes(store: VectorStore):
    generation, token = store.generation(), store.change_token()
    with store.writing():
        store.add([RECORDS[0].model_copy(update={"text": "changed"})], EMBEDDER.encode(["changed"]))  # id stored
        store.delete(["a", "x"])
        changed = RECORDS[1].model_copy(
            update={"tags": ["moved"], "metadata": {"team": "web"}, "updated_at": "2026-04-01T00:00:00+00:00"}
        )
        store.set_fields(changed, RECORDS[1])
        store.bump_generation()
    assert store.count() == 3 and store.existing(["a", "b"]) == {"b"}
    assert store.get(["b"]) == [changed]
    assert [r.id for r in store.updated_since(1774000000.0)] == ["b"] and store.updated_since(1776000000.0) == []
    assert store.generation() not in {None, generation}
    assert token is None or store.change_token() != token
    assert (
        store.query(EMBEDDER.encode_query("deploy"), 5, where=RecordFilter(namespace=None, tags=["moved"]))[0][0] == "b"
    )


# -- the service on the fakes ------------------------------------------------------------------------


# ``fake_settings`` and ``fake_service`` are conftest's.


def search(query: str, **fields) -> SearchRequest:
    return SearchRequest(**{"query": query, "top_k": 10, "rerank": False, "rerank_top_k": 10, **fields})


@pytest.mark.anyio
async def test_remember_deduplicates_within_a_namespace_only(fake_service: MemoryService):
    first = await fake_service.remember(
        [MemoryInput(text="Zebrafish regenerate heart tissue"), MemoryInput(text="Zebrafish  regenerate heart tissue ")]
    )
    assert first.stored == 1 and first.deduplicated == first.ids[:1] and len(set(first.ids)) == 1
    assert first.ids[0] == dedup_key("default", "Zebrafish regenerate heart tissue")
    again = await fake_service.remember(
        [
            MemoryInput(text="Zebrafish regenerate heart tissue"),
            MemoryInput(text="Zebrafish regenerate heart tissue", namespace="bio"),
        ]
    )
    assert again.stored == 1 and again.deduplicated == again.ids[:1] and again.ids[1] not in again.deduplicated
    status = await fake_service.status()
    assert status.store.kind == "in-memory" and status.store.memories == 2
    assert status.store.namespaces == {"default": 1, "bio": 1}
    assert status.bm25 is not None and status.bm25.in_sync and status.embedding.model == "hashing-bag-of-words"


@pytest.mark.anyio
async def test_search_ranks_the_memory_with_the_query_s_words_first(fake_service: MemoryService):
    await fake_service.remember(
        [
            MemoryInput(text="Axolotls regrow whole limbs"),
            MemoryInput(text="Zebrafish regenerate heart tissue"),
            MemoryInput(text="Comets have icy nuclei"),
            MemoryInput(text="Heart tissue of zebrafish", namespace="other"),
        ]
    )
    found = await fake_service.search(search("zebrafish heart"))
    assert found.hits[0].text == "Zebrafish regenerate heart tissue"
    assert found.hits[0].scores.dense_rank == 1 and found.hits[0].scores.bm25_rank == 1
    assert all(hit.namespace == "default" for hit in found.hits)
    everywhere = await fake_service.search(search("zebrafish heart", namespace=None))
    assert {hit.text for hit in everywhere.hits[:2]} == {
        "Zebrafish regenerate heart tissue",
        "Heart tissue of zebrafish",
    }
    assert (await fake_service.status()).search.searches == 2


@pytest.mark.anyio
async def test_update_in_place_and_with_new_text(fake_service: MemoryService):
    stored = await fake_service.remember([MemoryInput(text="The deploy runs on Friday", tags=["ops"])])
    old_id = stored.ids[0]
    # The same text but for whitespace is the same memory, and changes nothing, not even its time.
    same = await fake_service.update(old_id, text="  The deploy runs   on Friday ")
    assert (same.id, same.changed, same.memory.text, same.memory.updated_at) == (
        old_id,
        [],
        "The deploy runs on Friday",
        None,
    )
    tagged = await fake_service.update(old_id, text=" The deploy runs on Friday", tags=["ops", "weekly"])
    assert tagged.id == old_id and tagged.changed == ["tags"] and tagged.memory.tags == ["ops", "weekly"]
    assert tagged.memory.text == "The deploy runs on Friday" and tagged.memory.updated_at is not None
    rewritten = await fake_service.update(old_id, text="The deploy runs on Thursday")
    assert rewritten.supersedes == old_id and rewritten.id == dedup_key("default", "The deploy runs on Thursday")
    assert rewritten.memory.tags == ["ops", "weekly"] and rewritten.changed == ["text"]
    got = await fake_service.get([old_id, rewritten.id], max_chars=None)
    assert got.not_found == [old_id] and [m.text for m in got.memories] == ["The deploy runs on Thursday"]
    store, _ = fake_service.storage()
    assert store.all_ids() == {rewritten.id}
    found = await fake_service.search(search("thursday deploy"))
    assert [hit.id for hit in found.hits] == [rewritten.id]


@pytest.mark.anyio
async def test_forget_by_id_and_by_filter_and_list_newest_first(fake_service: MemoryService):
    texts = [f"note {n} about the ledger" for n in range(5)]
    for text in texts:  # one call each: each gets its own creation time
        await fake_service.remember([MemoryInput(text=text, tags=["ledger"] if text.endswith("ledger") else [])])
    listed = await fake_service.list_memories(RecordFilter(), limit=3, cursor=None, newest_first=True, max_chars=None)
    assert listed.total == 5 and len(listed.memories) == 3 and listed.next_cursor is not None
    rest = await fake_service.list_memories(
        RecordFilter(), limit=3, cursor=listed.next_cursor, newest_first=True, max_chars=None
    )
    order = [m.text for m in listed.memories + rest.memories]
    assert sorted(order) == sorted(texts) and len(set(order)) == 5
    forgotten = await fake_service.forget([listed.memories[0].id, "mem_unknown"], None, confirm=False, dry_run=False)
    assert forgotten.removed_count == 1 and forgotten.not_found == ["mem_unknown"]
    assert forgotten.message == "removed 1 memory; 1 id was not stored"
    dry = await fake_service.forget(None, RecordFilter(tags=["ledger"]), confirm=False, dry_run=True)
    assert dry.matched == 4 and dry.removed_count == 0
    gone = await fake_service.forget(None, RecordFilter(tags=["ledger"]), confirm=False, dry_run=False)
    assert gone.removed_count == 4 and await fake_service.namespace_counts() == {}
    store, lexical = fake_service.storage()
    assert store.count() == 0 and lexical.count() == 0


@pytest.mark.anyio
async def test_another_service_sharing_the_store_sees_its_writes(fake_settings: Settings, tmp_path: Path):
    """Two services on one store, each with its own catalogue, as two nodes on one Chroma server."""
    shared = InMemoryStore()
    on_server = fake_settings.model_copy(
        update={"store": fake_settings.store.model_copy(update={"chroma_host": "chroma.lan"})}
    )
    other_settings = on_server.model_copy(
        update={"store": on_server.store.model_copy(update={"data_dir": tmp_path / "other"})}
    )
    writer = MemoryService(on_server, embedder=HashingEmbedder(), open_store=lambda *_: shared)
    reader = MemoryService(other_settings, embedder=HashingEmbedder(), open_store=lambda *_: shared)
    try:
        stored = await writer.remember(
            [MemoryInput(text="Comets have icy nuclei"), MemoryInput(text="Tea over coffee")]
        )
        assert [hit.id for hit in (await reader.search(search("icy comets"))).hits][0] == stored.ids[0]
        await writer.update(stored.ids[1], tags=["drinks"])
        await writer.forget([stored.ids[0]], None, confirm=False, dry_run=False)
        got = await reader.get(stored.ids, max_chars=None)
        assert got.not_found == [stored.ids[0]] and got.memories[0].tags == ["drinks"]
        assert (await reader.status()).store.memories == 1
    finally:
        writer.close()
        reader.close()
