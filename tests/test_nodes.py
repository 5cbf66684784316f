"""Several nodes, one store: three ``mimir-mcp --transport streamable-http`` processes, each with its own data
dir, on one ``chroma run`` server, with clients spread over them and no proxy in front. What one node writes,
forgets or changes, the others show within the sync interval (default 1 s); a text sent to two nodes at once
is new to exactly one; a node killed and started again catches up with what the others did meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mimir_mcp.config import StoreSettings

from .conftest import call, run_chroma_server, start_http_server

pytestmark = pytest.mark.anyio

# The default: how stale a node's view of the others' writes may be (``StoreSettings.sync_interval_s``).
SYNC_INTERVAL_S = StoreSettings().sync_interval_s


@dataclass
class Nodes:
    """The running nodes: their processes and ports, and how to start one again on its own data dir."""

    folder: Path
    cross_encoder: Path
    chroma_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self, index: int) -> None:
        env = {
            "MIMIR_STORE_CHROMA_HOST": "127.0.0.1",
            "MIMIR_STORE_CHROMA_PORT": str(self.chroma_port),
            "MIMIR_RERANKER_ENABLED": "false",
        }
        process, port = start_http_server("streamable-http", self.folder / f"node-{index}", self.cross_encoder, env)
        # Keep reading its log: a full pipe would block the server mid-request.
        threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
        if index < len(self.processes):
            self.processes[index], self.ports[index] = process, port
        else:
            self.processes.append(process)
            self.ports.append(port)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/mcp"

    def kill(self, index: int) -> None:
        os.kill(self.processes[index].pid, signal.SIGKILL)
        self.processes[index].wait(timeout=30)


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory, cross_encoder_path: Path) -> Iterator[Nodes]:
    folder = tmp_path_factory.mktemp("nodes")
    for chroma_port in run_chroma_server(folder / "chroma"):
        nodes = Nodes(folder, cross_encoder_path, chroma_port)
        try:
            for index in range(3):
                nodes.start(index)
            yield nodes
        finally:
            for process in nodes.processes:
                process.terminate()
            for process in nodes.processes:
                process.wait(timeout=30)


async def hits(client: Client, query: str, namespace: str) -> list[dict]:
    arguments = {"query": query, "namespace": namespace, "rerank": False, "top_k": 5, "explain": True}
    found = await call(client, "search", arguments)
    return found["hits"]


async def test_what_one_node_writes_every_other_node_shows_within_the_interval(three_nodes: Nodes):
    async with AsyncExitStack() as stack:
        a, b, c = [await stack.enter_async_context(Client(three_nodes.url(n))) for n in range(3)]
        for client in (b, c):
            await hits(client, "anything", "visible")  # each node has synced once, before the write below
        stored = await call(
            a, "remember", {"text": "The Narvik depot restocks antifreeze every Tuesday.", "namespace": "visible"}
        )
        await anyio.sleep(SYNC_INTERVAL_S)
        for client in (b, c):
            top = (await hits(client, "when does Narvik restock antifreeze", "visible"))[0]
            assert top["id"] == stored["ids"][0]
            # Both arms: the dense arm reads the shared store, the BM25 arm this node's index, caught up.
            assert top["scores"]["dense_rank"] == 1 and top["scores"]["bm25_rank"] == 1

        changed = await call(
            b, "update", {"id": stored["ids"][0], "text": "The Narvik depot restocks antifreeze every Friday."}
        )
        await anyio.sleep(SYNC_INTERVAL_S)
        for client in (a, c):
            found = await hits(client, "when does Narvik restock antifreeze", "visible")
            assert [hit["id"] for hit in found] == [changed["id"]] and "Friday" in found[0]["text"]

        await call(c, "forget", {"ids": [changed["id"]]})
        await anyio.sleep(SYNC_INTERVAL_S)
        for client in (a, b):
            assert await hits(client, "when does Narvik restock antifreeze", "visible") == []
            assert (await call(client, "get", {"ids": [changed["id"]]}))["not_found"] == [changed["id"]]


async def test_a_text_sent_to_two_nodes_at_once_is_new_to_exactly_one(three_nodes: Nodes):
    texts = [f"Shift handover {n}: the Kirkenes gateway was rebooted at 0{n}:00." for n in range(12)]
    answers: dict[str, list[dict]] = {text: [] for text in texts}
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(three_nodes.url(n))) for n in range(3)]

        async def send(client: Client, text: str) -> None:
            answers[text].append(await call(client, "remember", {"text": text, "namespace": "dedup"}))

        async with anyio.create_task_group() as group:
            for n, text in enumerate(texts):
                group.start_soon(send, clients[n % 3], text)
                group.start_soon(send, clients[(n + 1) % 3], text)
        for text, pair in answers.items():
            assert len(pair) == 2 and pair[0]["ids"] == pair[1]["ids"], text
            assert sorted(answer["stored"] for answer in pair) == [0, 1], text
        await anyio.sleep(SYNC_INTERVAL_S)
        for client in clients:
            await hits(client, "gateway reboot", "dedup")  # the search that catches the node up
            status = await call(client, "status", {"detail": True})
            assert status["namespaces"]["dedup"] == len(texts) and status["detail"]["bm25"]["in_sync"]


async def test_a_node_killed_and_started_again_catches_up(three_nodes: Nodes):
    async with Client(three_nodes.url(0)) as a:
        kept = await call(a, "remember", {"text": "Tana bridge inspection passed in May.", "namespace": "restart"})
        dropped = await call(a, "remember", {"text": "Alta ferry timetable draft v1.", "namespace": "restart"})
        three_nodes.kill(2)
        # While the third node is down, the others write, forget and change.
        added = await call(a, "remember", {"text": "Vardø radar maintenance is due in June.", "namespace": "restart"})
        await call(a, "forget", {"ids": dropped["ids"]})
        await call(a, "update", {"id": kept["ids"][0], "tags": ["bridges"]})
        three_nodes.start(2)
        async with Client(three_nodes.url(2)) as c:
            assert (await hits(c, "Vardø radar maintenance", "restart"))[0]["id"] == added["ids"][0]
            assert (await call(c, "get", {"ids": dropped["ids"]}))["not_found"] == dropped["ids"]
            arguments = {"query": "bridge inspection", "namespace": "restart", "tags": ["bridges"], "rerank": False}
            tagged = await call(c, "search", arguments)
            assert [hit["id"] for hit in tagged["hits"]] == kept["ids"]
            await anyio.sleep(SYNC_INTERVAL_S)
            await hits(a, "anything", "restart")
            counts = [(await call(client, "status", {}))["memories"] for client in (a, c)]
            assert counts[0] == counts[1]
