"""End to end over real transports: a stdio subprocess (as Claude Desktop runs it), and streamable HTTP
and SSE servers on 127.0.0.1, each through remember -> search -> rerank -> status."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from .conftest import PYTHON, call, call_error, free_port, server_env

pytestmark = pytest.mark.anyio

NOTES = [
    "Project Falcon's launch date moved to March 3rd.",
    "The billing service retries failed charges three times.",
    "Bob owns the search relevance dashboard.",
]


async def exercise_all_tools(client: Client, agent: str) -> None:
    stored = await call(
        client, "remember", {"memories": [{"text": note} for note in NOTES], "agent": agent, "tags": ["notes"]}
    )
    assert len(stored["ids"]) == 3
    found = await call(client, "search", {"query": "when does Falcon launch?", "top_k": 3})
    assert found["search_method"] == "rrf_hybrid+rerank", found["message"]
    assert {hit["text"] for hit in found["hits"]} == set(NOTES)
    falcon = next(hit for hit in found["hits"] if "Falcon" in hit["text"])
    assert falcon["scores"]["dense_rank"] == 1 and falcon["scores"]["bm25_rank"] == 1
    reranked = await call(client, "rerank", {"query": "billing retries", "documents": NOTES, "top_k": 2})
    assert len(reranked["results"]) == 2
    status = await call(client, "status")
    assert status["reranker"]["state"] == "ready"
    assert status["store"]["memories"] >= 3


async def wait_for_reranker(client: Client, timeout: float = 120) -> None:
    """The cross-encoder loads after the handshake; status reports when it is ready."""
    with anyio.fail_after(timeout):
        while (await call(client, "status"))["reranker"]["state"] == "loading":
            await anyio.sleep(0.2)


async def test_stdio_subprocess(tmp_path: Path, cross_encoder_path: Path):
    params = StdioServerParameters(
        command=PYTHON, args=["-m", "mimir_mcp"], env=server_env(tmp_path / "data", cross_encoder_path)
    )
    async with Client(params, mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "mimir-mcp"
        await wait_for_reranker(client)
        await exercise_all_tools(client, "stdio-agent")
        message = await call_error(client, "search", {"query": "q", "top_k": 1000})
        assert "top_k" in message and "between 1 and 100" in message


def test_stdio_stdout_carries_only_protocol(tmp_path: Path, cross_encoder_path: Path):
    """Raw JSON-RPC over the pipes, as any client sends it: every stdout line must be a JSON-RPC message,
    and a non-standard NaN literal is answered with a named error, not a crash."""
    env = server_env(tmp_path / "data", cross_encoder_path)
    env["MIMIR_SERVER_LOG_LEVEL"] = "DEBUG"  # the chattiest setting must still keep stdout clean
    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--transport", "stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        bufsize=1,
    )
    replies: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [replies.put(line) for line in process.stdout], daemon=True).start()
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True).start()

    def send(raw: str) -> None:
        process.stdin.write(raw + "\n")
        process.stdin.flush()

    def reply() -> dict:
        line = replies.get(timeout=120)
        message = json.loads(line)  # anything but JSON on stdout fails here
        assert message.get("jsonrpc") == "2.0", line
        return message

    try:
        initialize = {
            "protocolVersion": LATEST_HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}))
        assert reply()["result"]["serverInfo"]["name"] == "mimir-mcp"
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        arguments = {"name": "remember", "arguments": {"text": "raw pipes work"}}
        send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": arguments}))
        stored = reply()
        assert stored["id"] == 2 and stored["result"]["structuredContent"]["stored_count"] == 1
        send(
            '{"jsonrpc": "2.0", "id": 3, "method": "tools/call", '
            '"params": {"name": "search", "arguments": {"query": "pipes", "min_score": NaN}}}'
        )
        answer = reply()
        assert answer["id"] == 3
        if "result" in answer:  # the tool saw the NaN and named the field
            assert answer["result"]["isError"] is True
            assert "min_score: must be a finite number" in answer["result"]["content"][0]["text"]
        else:  # or the JSON-RPC layer refused the literal: still an answer, not a crash
            assert "error" in answer
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        assert replies.empty()
    finally:
        process.kill()
    assert any("mimir-mcp" in line for line in stderr_lines)  # logs went to stderr


def start_http_server(transport: str, data_dir: Path, cross_encoder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--transport", transport, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=server_env(data_dir, cross_encoder),
        text=True,
    )
    deadline = time.monotonic() + 120
    assert process.stderr is not None
    for line in process.stderr:  # uvicorn announces the socket once it listens
        if "Uvicorn running on" in line:
            return process, port
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"{transport} server did not start")


@pytest.fixture
def http_server(tmp_path: Path, cross_encoder_path: Path) -> Iterator[int]:
    process, port = start_http_server("streamable-http", tmp_path / "data", cross_encoder_path)
    yield port
    process.terminate()
    process.wait(timeout=30)


async def test_streamable_http_two_agents_share_memory(http_server: int):
    url = f"http://127.0.0.1:{http_server}/mcp"
    async with Client(url) as writer, Client(url) as reader:
        await wait_for_reranker(writer)
        await exercise_all_tools(writer, "writer")
        # The second agent, in its own session, finds what the first one stored.
        found = await call(reader, "search", {"query": "who owns the relevance dashboard", "top_k": 1, "rerank": False})
        assert found["hits"][0]["text"] == "Bob owns the search relevance dashboard."
        assert found["hits"][0]["agent"] == "writer"

        # Concurrent remembers of the same text from both agents store it once.
        async def remember(client: Client) -> dict:
            return await call(client, "remember", {"text": "Shared decision: use Postgres", "agent": "both"})

        results: list[dict] = []

        async def run(client: Client) -> None:
            results.append(await remember(client))

        async with anyio.create_task_group() as group:
            for client in (writer, reader, writer, reader):
                group.start_soon(run, client)
        assert len({result["ids"][0] for result in results}) == 1
        assert sum(result["stored_count"] for result in results) == 1
        status = await call(reader, "status")
        assert status["store"]["memories"] == 4 and status["bm25"]["in_sync"]


async def test_sse_transport(tmp_path: Path, cross_encoder_path: Path):
    process, port = start_http_server("sse", tmp_path / "data", cross_encoder_path)
    try:
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
            await wait_for_reranker(client)
            await exercise_all_tools(client, "sse-agent")
        # A second connection (the SSE lifespan runs per connection) sees the same memories.
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
            status = await call(client, "status")
            assert status["store"]["memories"] == 3
    finally:
        process.terminate()
        process.wait(timeout=30)
