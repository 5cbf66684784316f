"""A search while the embedding model loads (a first start, before any ONNX copy exists) answers at once from
the keyword arms and says so; ``remember`` still waits, since a memory is stored with its vector or not at
all."""

from __future__ import annotations

import anyio
import pytest

from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.models import MemoryInput
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.status_models import EmbeddingStatus
from mimir_mcp.store.in_memory import open_in_memory

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

        embedder.loaded.set()
        answer = await service.search(search("who owns the billing on-call rota"))
        assert answer.candidates.dense > 0 and "keywords alone" not in answer.message
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
        assert "failed to load (OSError: no such model)" in answer.message
        with pytest.raises(Exception, match="embedding model failed to load"):  # the dense arm alone cannot answer
            await service.search(search("Kubernetes or Nomad", arms=("dense",)))
    finally:
        service.close()
