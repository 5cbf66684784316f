"""A Chroma server (`chroma run`) shared by two mimir-mcp processes' worth of services: memories written
by one are found by the other, deduplicated across them, and each BM25 index catches up with the store."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mimir_mcp.config import Settings
from mimir_mcp.models import MemoryInput
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService


def server_settings(tmp_path: Path, name: str, port: int, cross_encoder: Path) -> Settings:
    return Settings(
        store={"data_dir": tmp_path / name, "chroma_host": "127.0.0.1", "chroma_port": port},
        reranker={"model": str(cross_encoder)},
    )


@pytest.mark.anyio
async def test_two_services_share_a_chroma_server(tmp_path, chroma_server, embedder, reranker, cross_encoder_path):
    first = MemoryService(
        server_settings(tmp_path, "a", chroma_server, cross_encoder_path), embedder=embedder, reranker=reranker
    )
    second = MemoryService(
        server_settings(tmp_path, "b", chroma_server, cross_encoder_path), embedder=embedder, reranker=reranker
    )
    try:
        stored = await first.remember([MemoryInput(text="Quarterly planning happens in the Oslo office")])
        found = await second.search(SearchRequest(query="Oslo planning", top_k=5, rerank=False, rerank_top_k=5))
        assert [hit.id for hit in found.hits] == stored.ids
        assert found.hits[0].scores.bm25_rank == 1  # the second index caught up with the shared store
        # A write through the first service after the second has opened: caught up by the first search
        # after the sync interval (one count per interval keeps ~4 ms off most searches at 100k).
        later = await first.remember([MemoryInput(text="The Bergen office hosts the design reviews")])
        await anyio.sleep(second.settings.store.sync_interval_s)
        found = await second.search(SearchRequest(query="Bergen design reviews", top_k=5, rerank=False, rerank_top_k=5))
        assert found.hits[0].id == later.ids[0] and found.hits[0].scores.bm25_rank == 1
        again = await second.remember([MemoryInput(text="Quarterly planning happens in the Oslo office")])
        assert again.deduplicated and again.ids == stored.ids
        status = await second.status()
        assert status.store.kind == "server" and status.store.location == f"http://127.0.0.1:{chroma_server}"
        assert status.store.memories == 2 and status.bm25 is not None and status.bm25.in_sync
    finally:
        first.close()
        second.close()


@pytest.mark.anyio
async def test_a_text_two_nodes_store_at_once_is_new_to_exactly_one(
    tmp_path, chroma_server, embedder, reranker, cross_encoder_path, monkeypatch
):
    """Nodes on other machines share no lock: both may find a text absent and both add it. Chroma keeps the
    first add and drops the second without a word; the second node learns it from the store, reports the
    text deduplicated, and its catalogue takes the stored version (the first node's tags)."""
    first = MemoryService(
        server_settings(tmp_path, "a", chroma_server, cross_encoder_path), embedder=embedder, reranker=reranker
    )
    second = MemoryService(
        server_settings(tmp_path, "b", chroma_server, cross_encoder_path), embedder=embedder, reranker=reranker
    )
    try:
        await second.status()  # opened before the first node's write, so its index does not hold it
        text = "The Tromsø team owns the on-call rota"
        stored = await first.remember([MemoryInput(text=text, tags=["first"])])
        assert stored.stored == 1
        backend = await second.loader.ready()
        # The race: the second node checked before the first node's add landed.
        monkeypatch.setattr(backend.store, "existing", lambda ids: set())
        raced = await second.remember([MemoryInput(text=text, tags=["second"]), MemoryInput(text="Bodø hosts CI")])
        assert raced.stored == 1 and raced.deduplicated == stored.ids
        assert backend.store.add(backend.store.get(stored.ids), embedder.encode([text])) == set()
        assert backend.lexical.get(stored.ids)[stored.ids[0]].tags == ["first"]
        found = await second.search(SearchRequest(query="on-call rota", top_k=1, rerank=False, rerank_top_k=1))
        assert found.hits[0].id == stored.ids[0] and found.hits[0].tags == ["first"]
        status = await second.status()
        assert status.store.memories == 2 and status.bm25 is not None and status.bm25.in_sync
    finally:
        first.close()
        second.close()
