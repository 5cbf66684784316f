"""export, import and reindex: a store round-trips through JSON Lines byte for byte, and re-embeds with
another model without losing a memory, whatever point a crash stops it at."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mimir_mcp.config import EmbeddingSettings, Settings
from mimir_mcp.embedding import Embedder, bundled_minilm_path
from mimir_mcp.errors import EmbeddingMismatchError
from mimir_mcp.models import MemoryInput
from mimir_mcp.reindex import Reindexer, chroma_client, collection_names
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.store.chroma import (
    PREVIOUS_SUFFIX,
    REINDEX_SUFFIX,
    ChromaStore,
)
from mimir_mcp.store.chroma_records import make_embedding_function
from mimir_mcp.store.chroma_tombstones import TOMBSTONE_SUFFIX
from mimir_mcp.transfer import (
    ImportFileError,
    ImportSummary,
    LineError,
    export_memories,
    import_memories,
    parse_line,
)
from tests.conftest import run_cli

OLD_MODEL = "all-MiniLM-L6-v2"
ALL_FIELDS = {
    "id",
    "text",
    "namespace",
    "tags",
    "source",
    "agent",
    "created_at",
    "metadata",
    "updated_at",
    "supersedes",
}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second bi-encoder: the bundled MiniLM with a seeded 384→128 linear layer after it. A random
    projection keeps cosine similarities roughly, so it still finds memories by meaning, and its
    vectors have another dimension, so mixing them with MiniLM's could never pass unnoticed."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    torch.manual_seed(7)
    base = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    dense = Dense(in_features=384, out_features=128, bias=False, activation_function=torch.nn.Identity())
    path = tmp_path_factory.mktemp("small-bi-encoder")
    SentenceTransformer(modules=[*base, dense], device="cpu").save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def small_embedder(small_model: str) -> Embedder:
    embedder = Embedder(EmbeddingSettings(model=small_model, query_backend="torch"))
    embedder.start()
    return embedder


class CountingEmbedder:
    """Counts the texts it embeds; with ``fail_on_call``, that call raises, as a crash would stop it."""

    def __init__(self, inner: Embedder, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        self.texts += len(texts)
        return self.inner.encode(texts)


def with_model(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"model": model})})


def in_dir(settings: Settings, data_dir: Path) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"data_dir": data_dir})})


@pytest.fixture
def open_service(embedder: Embedder, reranker: LocalCrossEncoder) -> Iterator:
    """Opens more services in the test (another data dir, another model) and closes them all after it."""
    opened: list[MemoryService] = []

    def open_one(settings: Settings, model_embedder: Embedder | None = None) -> MemoryService:
        service = MemoryService(settings, embedder=model_embedder or embedder, reranker=reranker)
        opened.append(service)
        return service

    yield open_one
    for service in opened:
        service.close()


async def fill(service: MemoryService) -> list[str]:
    """Memories with every field set, in two namespaces; one updated in place (tags and metadata) and one
    with new text (a new id, with ``supersedes``). Returns the ids stored now."""
    first = await service.remember(
        [
            MemoryInput(
                text="Alice prefers green tea in the morning",
                tags=["prefs", "drinks"],
                source="chat://42",
                agent="planner",
                metadata={"priority": 2, "score": 0.75, "pinned": True, "owner": "alice", "whole": 1.0},
            ),
            MemoryInput(
                text='The deploy checklist: a canary release — "quoted", ünïcode ✓\nand a second line',
                tags=["ops"],
                agent="coder",
                metadata={"step": -3, "done": False, "large": 2**53},
            ),
        ]
    )
    second = await service.remember(
        [
            MemoryInput(text="The database migration runs on Fridays", namespace="project-x", source="file://a.md"),
            MemoryInput(text="Bob owns the billing service and its invoices", namespace="project-x", tags=["people"]),
            MemoryInput(text="Our cat sleeps on the warm laptop", namespace="home", agent="assistant"),
        ]
    )
    alice, deploy = first.ids
    migration, bob, cat = second.ids
    await service.update(alice, tags=["prefs"], metadata={"priority": 3, "score": 0.5, "pinned": False, "x": "y"})
    moved = await service.update(migration, text="The database migration runs on Saturdays now")
    assert moved.supersedes == migration
    return [alice, deploy, moved.id, bob, cat]


def export_text(service: MemoryService, namespace: str | None = None) -> str:
    out = io.StringIO()
    export_memories(service, out, namespace=namespace)
    return out.getvalue()


# -- export and import -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_is_byte_identical(service: MemoryService, settings: Settings, open_service, tmp_path):
    ids = await fill(service)
    first = export_text(service)
    lines = first.splitlines(keepends=True)
    assert len(lines) == len(ids) == 5
    rows = [json.loads(line) for line in lines]
    assert all(set(row) == ALL_FIELDS for row in rows)
    assert sorted(row["id"] for row in rows) == sorted(ids)
    moved = next(row for row in rows if row["supersedes"])
    assert moved["text"].endswith("Saturdays now") and moved["updated_at"] and moved["namespace"] == "project-x"
    alice = next(row for row in rows if row["text"].startswith("Alice"))
    assert alice["metadata"] == {"priority": 3, "score": 0.5, "pinned": False, "x": "y"}
    assert alice["updated_at"] and alice["supersedes"] is None
    only = [json.loads(row) for row in export_text(service, "project-x").splitlines()]
    assert [row["namespace"] for row in only] == ["project-x", "project-x"]

    copy = open_service(in_dir(settings, tmp_path / "copy"))
    progress: list[int] = []
    summary = import_memories(copy, io.StringIO(first + "\n"), batch=2, on_progress=progress.append)
    assert summary == ImportSummary(read=5, stored=5, already_present=0)
    assert progress == [2, 2, 1]
    assert export_text(copy) == first
    assert await copy.get(ids, max_chars=None) == await service.get(ids, max_chars=None)
    # Imported memories are embedded: found by meaning, with no word in common.
    found = await copy.search(
        SearchRequest(query="hot beverage", top_k=1, rerank=False, rerank_top_k=10, arms=("dense",))
    )
    assert found.hits[0].id == ids[0]

    again = import_memories(copy, io.StringIO(first))
    assert again == ImportSummary(read=5, stored=0, already_present=5)
    assert export_text(copy) == first


@pytest.mark.anyio
async def test_cli_export_and_import(
    service: MemoryService, settings: Settings, open_service, cross_encoder_path, tmp_path
):
    ids = await fill(service)
    expected = export_text(service)
    exported = run_cli(
        ["-m", "mimir_mcp", "export", "--data-dir", str(settings.store.data_dir)], tmp_path, cross_encoder_path
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == expected  # nothing but the memories on stdout; logs went to stderr
    assert "5 memories exported (all namespaces) to stdout" in exported.stderr

    dump = tmp_path / "memories.jsonl"
    dump.write_text(exported.stdout, encoding="utf-8")
    copy_dir = tmp_path / "copy"
    imported = run_cli(
        ["-m", "mimir_mcp", "import", str(dump), "--data-dir", str(copy_dir), "--batch", "2"],
        tmp_path,
        cross_encoder_path,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == ""
    assert "read 5, stored 5, already present 0" in imported.stderr
    assert "5/5" in imported.stderr  # the progress bar

    copy = open_service(in_dir(settings, copy_dir))
    assert export_text(copy) == expected
    assert await copy.get(ids, max_chars=None) == await service.get(ids, max_chars=None)


def test_cli_import_rejects_a_bad_file_with_exit_code_2(cross_encoder_path, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "t", "namespace": "n", "created_at": "2024-01-01", "tags": "oops"}\n')
    result = run_cli(
        ["-m", "mimir_mcp", "import", str(bad), "--data-dir", str(tmp_path / "d")], tmp_path, cross_encoder_path
    )
    assert result.returncode == 2
    assert "line 1, tags: must be an array, got a string; nothing was imported" in result.stderr
    assert result.stdout == ""


def line(text: str, namespace: str = "default", **fields) -> str:
    record = {
        "id": dedup_key(namespace, text),
        "text": text,
        "namespace": namespace,
        "created_at": "2024-05-01T10:00:00",
    }
    return json.dumps({**record, **fields})


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("{not json", "the line", "is not valid JSON (key must be a string"),
        ('["a list"]', "the line", "must be an object, got an array"),
        (json.dumps({"text": 5}), "text", "must be a string, got a number"),
        (line("a memory", tag=["x"]), "tag", "unknown field"),
        (line("a memory", metadata={"k": [1, 2]}), "metadata.k", "values must be a string, number or boolean, got an"),
        (line("a memory", created_at=5), "created_at", "must be a string, got a number"),
        (line("a memory", created_at="yesterday"), "created_at", "'yesterday' is not an ISO 8601 date or time"),
        (line("a memory", updated_at="soon"), "updated_at", "'soon' is not an ISO 8601 date or time"),
        (line("a memory", id=dedup_key("default", "another memory")), "id", "is not the hash"),
        (line("a memory", namespace="other", id=dedup_key("default", "a memory")), "id", "is not the hash"),
        (line("a memory", id="note-17"), "id", "note-17 is not the hash of this line's namespace and text"),
        # The rules remember applies, in its words.
        (line("a memory", namespace="bad space"), "namespace", "'bad space' is not a valid namespace: use 1-64"),
        (line("a memory", namespace="n" * 65), "namespace", "is not a valid namespace"),
        (line("x" * 40_000), "text", "over the limit of 32768 bytes of UTF-8 (limits.max_text_bytes)"),
        (line("é" * 16_385), "text", "is 32770 bytes of UTF-8; the limit is 32768 bytes"),
        (line("nul\x00"), "text", "control character U+0000"),
        (line("\u200b"), "text", "only invisible characters"),
        (line("a memory", tags=["fine", "bad\ttag"]), "tags[1]", "U+0009"),
        (line("a memory", tags=[f"t{i}" for i in range(33)]), "tags", "33 tags; the limit is 32"),
        (line("a memory", source="s" * 257), "source", "the limit is 256"),
        (line("a memory", metadata={"bad key!": 1}), "metadata key 'bad key!'", "keys are 1-64 characters"),
        (line("a memory", metadata={"k": 2**70}), "metadata.k", "integers must fit in 64 bits"),
        (json.dumps({"id": "x", "text": "a\udfffb", "namespace": "n", "created_at": "2024-01-01"}), "the line", "lone"),
    ],
)
def test_parse_line_names_the_line_and_the_field(text: str, field: str, problem: str):
    with pytest.raises(LineError) as caught:
        parse_line(text, 7)
    assert (caught.value.line, caught.value.field) == (7, field)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"line 7, {field}: ")


def test_parse_line_computes_a_missing_id_and_keeps_field_types():
    fields = {"text": "kept", "namespace": "default", "created_at": "2024-05-01T10:00:00"}
    record = parse_line(json.dumps({**fields, "metadata": {"a": 1, "b": 1.0, "c": True, "d": "1"}}), 1)
    assert record.id == dedup_key("default", "kept")  # the id remember gives it: get and forget take it
    assert record.metadata == {"a": 1, "b": 1.0, "c": True, "d": "1"}
    assert [type(value) for value in record.metadata.values()] == [int, float, bool, str]
    # Whitespace around the text does not change its hash (remember normalizes it the same way).
    assert parse_line(line("  spaced   out ", id=dedup_key("default", "spaced out")), 2).text == "  spaced   out "
    # A line from elsewhere, with its text alone: what remember would give it, stored now.
    before = datetime.now(UTC).replace(microsecond=0)  # stored to the millisecond
    bare = parse_line(json.dumps({"text": "from elsewhere"}), 3)
    assert (bare.namespace, bare.id) == ("default", dedup_key("default", "from elsewhere"))
    assert before <= datetime.fromisoformat(bare.created_at) <= datetime.now(UTC)


def test_a_bad_line_stops_the_import_after_whole_batches(settings: Settings, open_service, tmp_path):
    good = [line(f"memory number {n} about the garden") for n in range(5)]
    text = "\n".join([good[0], "", *good[1:], line("broken", metadata={"k": None})]) + "\n"
    target = open_service(in_dir(settings, tmp_path / "target"))
    with pytest.raises(ImportFileError) as caught:
        import_memories(target, io.StringIO(text), batch=2)
    message = str(caught.value)
    # Lines 1-5 hold four memories (line 2 is blank): two batches, stored; line 6 shares its batch with
    # the bad line 7, so it is not.
    assert message.startswith("line 7, metadata.k: ")
    assert "lines 1-5 were imported before it (4 memories: 4 stored, 0 already present)" in message
    assert "nothing after line 5 was" in message
    assert caught.value.imported == ImportSummary(read=4, stored=4, already_present=0)
    assert [json.loads(row)["text"] for row in export_text(target).splitlines()] == [
        f"memory number {n} about the garden" for n in range(4)
    ]


def test_an_import_is_held_to_the_stores_own_limits(settings: Settings, open_service, tmp_path):
    """A line a tool would refuse stops the import, named by line and field, after the whole batches before
    it; the limits are the target store's configured ones."""
    small = in_dir(settings, tmp_path / "small").model_copy(
        update={"limits": settings.limits.model_copy(update={"max_text_bytes": 40})}
    )
    target = open_service(small)
    good = [line(f"short memory {n}") for n in range(3)]
    text = "\n".join([*good, line("a memory longer than the forty bytes this store takes"), line("after")]) + "\n"
    with pytest.raises(ImportFileError) as caught:
        import_memories(target, io.StringIO(text), batch=2)
    assert str(caught.value).startswith("line 4, text: is 53 bytes of UTF-8; the limit is 40 bytes; lines 1-2 were")
    assert caught.value.imported == ImportSummary(read=2, stored=2, already_present=0)
    assert [json.loads(row)["text"] for row in export_text(target).splitlines()] == ["short memory 0", "short memory 1"]

    with pytest.raises(ImportFileError) as caught:
        import_memories(target, io.StringIO(line("fine text", namespace="has space") + "\n"))
    assert str(caught.value) == (
        "line 1, namespace: 'has space' is not a valid namespace: use 1-64 characters from A-Z a-z 0-9 . _ - "
        "starting with a letter or digit; nothing was imported"
    )
    assert len(export_text(target).splitlines()) == 2


# -- reindex -----------------------------------------------------------------------------------------


def open_store(settings: Settings, embedder: Embedder) -> ChromaStore:
    model = settings.embedding.model
    return ChromaStore(settings.store, make_embedding_function(embedder.encode, model), model=model)


@pytest.mark.anyio
async def test_reindex_switches_to_the_new_model(
    service: MemoryService, settings: Settings, open_service, embedder, small_model, small_embedder
):
    ids = await fill(service)
    before = export_text(service)
    in_chroma = service.storage()[0].get(ids)
    service.close()
    new = with_model(settings, small_model)
    with pytest.raises(EmbeddingMismatchError) as refused:
        open_store(new, small_embedder)
    assert OLD_MODEL in str(refused.value) and small_model in str(refused.value)
    assert f"mimir-mcp reindex --embedding-model {small_model}" in str(refused.value)

    counting = CountingEmbedder(small_embedder)
    report = Reindexer(new, embedder=counting, batch_size=2).run()
    assert (report.previous_model, report.model, report.dimension) == (OLD_MODEL, small_model, 128)
    assert (report.memories, report.embedded, report.resumed, report.switched) == (5, 5, 0, True)
    assert counting.texts == 5

    assert open_store(new, small_embedder).get(ids) == in_chroma  # the store of record: every field as it was
    reopened = open_service(new, small_embedder)
    assert export_text(reopened) == before
    status = (await reopened.status()).store
    assert (status.embedding_model, status.embedding_dimension, status.memories) == (small_model, 128, 5)
    found = await reopened.search(
        SearchRequest(
            query="who is responsible for payments",
            top_k=1,
            rerank=False,
            rerank_top_k=10,
            namespace="project-x",
            arms=("dense",),
        )
    )
    assert found.hits[0].id == ids[3]
    hybrid = await reopened.search(
        SearchRequest(query="which hot beverage does Alice like", top_k=1, rerank=False, rerank_top_k=10)
    )
    assert hybrid.hits[0].id == ids[0]
    names = collection_names(chroma_client(new.store))
    assert names == {new.store.collection, new.store.collection + TOMBSTONE_SUFFIX}  # the tombstones stay

    with pytest.raises(EmbeddingMismatchError, match="mimir-mcp reindex --embedding-model all-MiniLM-L6-v2"):
        open_store(settings, embedder)
    # Reindexing again to the same model has nothing to do.
    again = Reindexer(new, embedder=CountingEmbedder(small_embedder)).plan()
    assert again.up_to_date and again.to_embed == 0


@pytest.mark.anyio
async def test_a_crash_between_the_renames_is_finished_at_the_next_open(
    service: MemoryService, settings: Settings, open_service, small_model, small_embedder
):
    ids = await fill(service)
    before = export_text(service)
    service.close()
    new = with_model(settings, small_model)
    reindexer = Reindexer(new, embedder=small_embedder)
    reindexer.plan()
    assert reindexer.copy() == 5
    name = settings.store.collection
    client = chroma_client(settings.store)
    client.get_collection(name).modify(name=name + PREVIOUS_SUFFIX)  # ...and the process dies here
    assert collection_names(client) == {name + PREVIOUS_SUFFIX, name + REINDEX_SUFFIX, name + TOMBSTONE_SUFFIX}

    store = open_store(new, small_embedder)
    assert store.all_ids() == set(ids)
    assert (store.embedding_model, store.embedding_dimension) == (small_model, 128)
    reopened = open_service(new, small_embedder)
    assert export_text(reopened) == before
    assert name + REINDEX_SUFFIX not in collection_names(client)


@pytest.mark.anyio
async def test_an_interrupted_reindex_keeps_the_old_store_and_resumes(
    service: MemoryService, settings: Settings, open_service, embedder, small_model, small_embedder
):
    texts = [f"note {n}: the {animal} crossed the road" for n, animal in enumerate(["fox", "owl", "elk", "eel", "ant"])]
    ids = (await service.remember([MemoryInput(text=text) for text in texts])).ids
    service.close()
    new = with_model(settings, small_model)
    crashing = CountingEmbedder(small_embedder, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Reindexer(new, embedder=crashing, batch_size=2).run()
    assert crashing.texts == 2

    # The old collection is still the live one, unchanged, and the half-built one is not complete.
    old = open_store(settings, embedder)
    assert old.all_ids() == set(ids) and old.embedding_model == OLD_MODEL
    client = chroma_client(settings.store)
    partial = client.get_collection(settings.store.collection + REINDEX_SUFFIX)
    assert partial.count() == 2 and not (partial.metadata or {}).get("reindex_complete")
    old_service = open_service(settings)
    assert (await old_service.get(ids, max_chars=None)).not_found == []

    # Meanwhile the old store changes: one copied memory is updated, the other forgotten, one is added.
    changed, forgotten = partial.get(include=[])["ids"]
    await old_service.update(changed, tags=["changed"], metadata={"k": 1})
    await old_service.forget([forgotten], None, confirm=False, dry_run=False)
    added = (await old_service.remember([MemoryInput(text="a late note about the heron")])).ids[0]
    old_service.close()

    resumed = CountingEmbedder(small_embedder)
    reindexer = Reindexer(new, embedder=resumed, batch_size=2)
    plan = reindexer.plan()
    assert (plan.memories, plan.copied, plan.to_embed) == (5, 1, 4)
    report = reindexer.run()
    assert resumed.texts == 4 and (report.embedded, report.resumed) == (4, 1)
    store = open_store(new, small_embedder)
    assert store.all_ids() == set(ids) - {forgotten} | {added}
    [record] = store.get([changed])
    assert (record.tags, record.metadata) == (["changed"], {"k": 1}) and record.updated_at is not None


def tiny_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = {
        "d-tea": "Alice prefers green tea in the morning.",
        "d-cat": "Our cat sleeps on the warm laptop all afternoon.",
        "d-db": "The database migration runs every Saturday night.",
    }
    queries = {"q-tea": "which hot beverage does Alice like", "q-cat": "where does the pet nap"}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq-tea\td-tea\t1\nq-cat\td-cat\t1\n")
    return folder


@pytest.mark.anyio
async def test_cli_reindex_with_eval(
    service: MemoryService, settings: Settings, small_model, cross_encoder_path, tmp_path
):
    await service.remember([MemoryInput(text="Alice prefers green tea in the morning")])
    service.close()
    data_dir = str(settings.store.data_dir)
    dataset = tiny_beir(tmp_path / "beir")
    args = ["-m", "mimir_mcp", "reindex", "--data-dir", data_dir, "--embedding-model", small_model]
    result = run_cli([*args, "--eval", str(dataset)], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr
    assert f"1 memory re-embedded with {small_model} (128 dimensions; was {OLD_MODEL})" in result.stdout
    assert f"nDCG@10 on beir with {OLD_MODEL}: dense 1.0000, hybrid 1.0000" in result.stdout
    assert f"nDCG@10 on beir with {small_model}: dense 1.0000" in result.stdout
    assert "1/1" in result.stderr  # the progress bar
