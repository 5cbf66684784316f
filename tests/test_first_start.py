"""A search while the embedding model loads (a first start, before any ONNX copy exists), or while the store
opens (a restart: seconds at a million memories), answers at once from the keyword arms and says so;
``remember`` still waits, since a memory is stored with its vector or not at all."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from mimir_mcp.config import StoreSettings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.errors import EmbeddingMismatchError, StoreUnavailableError
from mimir_mcp.lexical.index import closed_whole
from mimir_mcp.models import MemoryInput, RecordFilter
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.status_models import EmbeddingStatus
from mimir_mcp.store.catalogue import catalogue_path
from mimir_mcp.store.chroma import store_location
from mimir_mcp.store.in_memory import InMemoryStore, open_in_memory

pytestmark = pytest.mark.anyio

NOTES = [
    "The team moved the Postgres migration to the second week of March.",
    "Alice owns the on-call rota for the billing service.",
    "We chose Kubernetes over Nomad for the new cluster.",
]


class LoadingEmbedder(HashingEmbedder):
    """The hashing embedder behind a load that ends when the test says (or fails, if it says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = anyio.Event()
        self.failure: Exception | None = None

    async def ready(self) -> None:
        await self.loaded.wait()
        if self.failure is not None:
            raise self.failure

    def status(self) -> EmbeddingStatus:
        loaded = self.loaded.is_set()
        state = ("failed" if self.failure else "ready") if loaded else "loading"
        error = f"{type(self.failure).__name__}: {self.failure}" if self.failure else None
        return super().status().model_copy(update={"state": state, "error": error})


def search(query: str, **extra) -> SearchRequest:
    return SearchRequest(query=query, top_k=3, rerank=False, rerank_top_k=10, **extra)


async def test_a_search_answers_from_keywords_while_the_embedder_loads(fake_settings):
    embedder = LoadingEmbedder()
    service = MemoryService(fake_settings, embedder=embedder, open_store=open_in_memory)
    try:
        with anyio.move_on_after(0.5) as waited:  # remember waits for the model
            await service.remember([MemoryInput(text=text) for text in NOTES])
        assert waited.cancelled_caught
        embedder.loaded.set()
        assert (await service.remember([MemoryInput(text=text) for text in NOTES])).stored == 3
        embedder.loaded = anyio.Event()  # loading again, as on a restart before the model is back

        with anyio.fail_after(5):  # answered at once, without waiting for the model
            answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.hits and answer.hits[0].text == NOTES[1]
        assert answer.candidates.dense == 0 and answer.candidates.bm25 > 0
        assert "embedding model is still loading" in answer.message and "keywords alone" in answer.message
        assert answer.caveat is not None and "keywords alone" in answer.caveat
        assert answer.search_method.startswith("keywords")  # not labelled a hybrid: the dense arm did not run

        embedder.loaded.set()
        answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.candidates.dense > 0 and "keywords alone" not in answer.message
        assert answer.search_method.startswith("hybrid")
    finally:
        service.close()


async def test_a_failed_embedder_leaves_keyword_search_and_says_why(fake_settings):
    embedder = LoadingEmbedder()
    service = MemoryService(fake_settings, embedder=embedder, open_store=open_in_memory)
    try:
        embedder.loaded.set()
        await service.remember([MemoryInput(text=text) for text in NOTES])
        embedder.failure = OSError("no such model")
        answer = await service.search(search("Kubernetes or Nomad"))
        assert answer.hits[0].text == NOTES[2] and answer.candidates.dense == 0
        assert "failed to load (OSError: no such model)" in answer.message and answer.search_method == "keywords"
        with pytest.raises(Exception, match="embedding model failed to load"):  # the dense arm alone cannot answer
            await service.search(search("Kubernetes or Nomad", arms=("dense",)))
    finally:
        service.close()


class GatedStore:
    """One in-memory store that outlives the services opening it (a data dir restarted), opened only once
    the test lets it: Chroma's import and open, and its vector index's load, at a million memories."""

    def __init__(self, refusal: Exception | None = None) -> None:
        self.store = InMemoryStore(name="mimir_memories", embedding_model="all-MiniLM-L6-v2")
        self.gate = threading.Event()
        self.refusal = refusal  # raised once the gate opens: a store Chroma refuses to open

    def open(self, settings, embedder) -> InMemoryStore:
        assert self.gate.wait(30), "the test never let the store open"
        if self.refusal is not None:
            raise self.refusal
        return self.store


async def stored(settings, gated: GatedStore, *, close: bool = True) -> MemoryService:
    """``NOTES`` remembered on the gated store (open), by a service closed cleanly unless ``close`` is False."""
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=lambda *_: gated.store)
    await service.remember([MemoryInput(text=text) for text in NOTES])
    if close:
        service.close()
    return service


def opening(settings, gated: GatedStore) -> MemoryService:
    """A service started on the gated store, which opens when the test lets it."""
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=gated.open)
    service.start()
    return service


async def test_a_search_answers_from_the_catalogue_while_the_store_opens(fake_settings):
    gated = GatedStore()
    await stored(fake_settings, gated)
    assert closed_whole(catalogue_path(fake_settings.store))

    service = opening(fake_settings, gated)
    try:
        with anyio.fail_after(5):  # answered at once from the catalogue the last close left
            answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.hits and answer.hits[0].text == NOTES[1]
        assert answer.candidates.dense == 0 and answer.candidates.bm25 > 0
        assert answer.caveat is not None and "memory store is still opening" in answer.caveat
        assert "keywords alone" in answer.caveat and answer.search_method.startswith("keywords")
        opening_status = (await service.status()).store  # where the store is, as once it has opened
        assert opening_status.state == "loading"
        assert opening_status.location == str(fake_settings.store.data_dir / "chroma")
        home = StoreSettings(data_dir=Path("~/mimir"))
        assert store_location(home) == str(Path.home() / "mimir" / "chroma")  # the user's folder, not "~"

        # What needs the store waits for it: the dense arm alone, stored vectors (diversity), a listing.
        for waits in (
            service.search(search("billing", arms=("dense",))),
            service.search(search("billing", diversity=0.5)),
            service.list_memories(RecordFilter(), limit=5, cursor=None, newest_first=True, max_chars=None),
        ):
            with anyio.move_on_after(0.3) as waited:
                await waits
            assert waited.cancelled_caught

        gated.gate.set()
        with anyio.fail_after(10):
            await service.loader.ready()  # opened: from now on both arms
            answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.candidates.dense > 0 and answer.caveat is None and answer.hits[0].text == NOTES[1]
    finally:
        gated.gate.set()
        service.close()
    assert closed_whole(catalogue_path(fake_settings.store))


async def test_a_server_stopped_while_its_store_opens_leaves_the_catalogue_as_it_found_it(fake_settings):
    """A client that starts a server and hangs up at once: the catalogue opened first is closed as the last
    close left it, so the next start answers from it at once again instead of checking it through."""
    gated = GatedStore()
    await stored(fake_settings, gated)

    stopped = opening(fake_settings, gated)
    assert await stopped.loader.keywords() is not None
    stopped.close()
    assert closed_whole(catalogue_path(fake_settings.store))

    later = GatedStore()
    again = opening(fake_settings, later)
    try:
        with anyio.fail_after(5):
            answer = await again.search(search("Kubernetes or Nomad"))
        assert answer.hits[0].text == NOTES[2] and "memory store is still opening" in (answer.caveat or "")
    finally:
        again.close()
        for each in (gated, later):  # the loads the closes cut off end (failing: their catalogue is closed)
            each.gate.set()


async def test_a_data_dir_not_closed_cleanly_waits_for_the_store(fake_settings):
    """Where the catalogue may hold a torn write (no clean close recorded), nothing answers before the store
    and the catalogue have been checked against each other."""
    gated = GatedStore()
    first = await stored(fake_settings, gated, close=False)  # never closed: as if killed

    service = opening(fake_settings, gated)
    try:
        assert await service.loader.keywords() is None
        with anyio.move_on_after(0.3) as waited:
            await service.search(search("Kubernetes or Nomad"))
        assert waited.cancelled_caught
        gated.gate.set()
        answer = await service.search(search("Kubernetes or Nomad"))
        assert answer.candidates.dense > 0 and answer.hits[0].text == NOTES[2]
    finally:
        gated.gate.set()
        service.close()
        first.close()


async def test_a_server_configured_with_another_model_does_not_answer_before_the_store_refuses_it(fake_settings):
    gated = GatedStore()
    await stored(fake_settings, gated)
    other = fake_settings.model_copy(
        update={"embedding": fake_settings.embedding.model_copy(update={"model": "another-model"})}
    )
    refused = GatedStore(EmbeddingMismatchError("the collection holds vectors of another model"))
    service = opening(other, refused)
    try:
        assert await service.loader.keywords() is None
        refused.gate.set()
        with pytest.raises(StoreUnavailableError, match="another model"):
            await service.search(search("Kubernetes or Nomad"))
    finally:
        refused.gate.set()
        service.close()
    same = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=GatedStore().open)
    same.start()
    try:
        assert await same.loader.keywords() is not None  # the check only read the catalogue: still whole
    finally:
        same.close()


async def test_a_first_start_answers_at_once_that_nothing_is_stored(fake_settings):
    """A new data dir holds no memory: the first search says so at once, while Chroma is still being
    imported and opened; ``remember`` waits for the store."""
    gated = GatedStore()
    service = opening(fake_settings, gated)
    try:
        with anyio.fail_after(5):
            answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.hits == [] and "memory store is still opening" in (answer.caveat or "")
        with anyio.move_on_after(0.3) as waited:
            await service.remember([MemoryInput(text=NOTES[0])])
        assert waited.cancelled_caught
        gated.gate.set()
        assert (await service.remember([MemoryInput(text=text) for text in NOTES])).stored == 3
        answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.hits[0].text == NOTES[1] and answer.candidates.dense > 0 and answer.caveat is None
    finally:
        gated.gate.set()
        service.close()
