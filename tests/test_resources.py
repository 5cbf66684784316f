"""Memories as MCP resources (list, templates, read, paging, scopes) and change notifications to
subscribed sessions: 2025-era `resources/subscribe` and 2026-07-28 `subscriptions/listen`, each between two
real client sessions over streamable HTTP."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from mimir_mcp.errors import InvalidInputError
from mimir_mcp.server import resources as resources_module
from mimir_mcp.server.resources import memory_uri, parse_uri

from .conftest import call, call_error, on_fakes

pytestmark = pytest.mark.anyio


# Listing, reading and paging are logic: they run on the in-memory store and the hashing embedder, and
# conftest's ``client`` is built on these two. The notifications go through a real server process.
settings_on_fakes, service_on_fakes = on_fakes()


async def _remember(client: Client, texts: list[str], namespace: str, agent: str = "scout") -> list[str]:
    stored = await call(
        client, "remember", {"memories": [{"text": t} for t in texts], "namespace": namespace, "agent": agent}
    )
    return stored["ids"]


async def test_memories_are_listed_read_and_paged_as_resources(client: Client, monkeypatch):
    monkeypatch.setattr(resources_module, "PAGE_SIZE", 2)
    proj = await _remember(
        client, ["The API freeze starts Monday.", "Ravi reviews the schema.", "Ship 2.4 on the 9th."], "proj"
    )
    other = await _remember(client, ["Lunch is at noon."], "other")

    templates = (await client.list_resource_templates()).resource_templates
    assert sorted(t.uri_template for t in templates) == ["memory://{namespace}", "memory://{namespace}/{id}"]

    first = await client.list_resources()
    uris = [str(r.uri) for r in first.resources]
    # Namespaces first (with their counts), then the newest memories of every namespace, two per page.
    assert uris[:2] == ["memory://other", "memory://proj"]
    assert [r.description for r in first.resources[:2]] == ["1 memories", "3 memories"]
    assert len(uris) == 4 and first.next_cursor is not None
    seen = uris[2:]
    cursor = first.next_cursor
    while cursor is not None:
        page = await client.list_resources(cursor=cursor)
        assert not any(str(r.uri).count("/") == 2 for r in page.resources)  # no namespaces after page one
        seen += [str(r.uri) for r in page.resources]
        cursor = page.next_cursor
    assert sorted(seen) == sorted([memory_uri("proj", i) for i in proj] + [memory_uri("other", i) for i in other])
    assert seen[0] == memory_uri("other", other[0])  # newest first (stored last)

    memory = await client.read_resource(memory_uri("proj", proj[1]))
    body = json.loads(memory.contents[0].text)
    assert body["text"] == "Ravi reviews the schema." and body["namespace"] == "proj" and body["agent"] == "scout"
    assert memory.contents[0].mime_type == "application/json"

    namespace = json.loads((await client.read_resource("memory://proj")).contents[0].text)
    assert namespace["memories"] == 3
    assert [item["uri"] for item in namespace["newest"]] == [memory_uri("proj", i) for i in reversed(proj)]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///etc/passwd", "is not a memory:// URI"),
        ("memory://proj/a/b", "must be memory://NAMESPACE or memory://NAMESPACE/ID"),
        ("memory://bad%20space", "uri"),
        ("memory://proj/mem_00000000000000000000000000000000", "no memory"),
    ],
)
async def test_bad_resource_uris_are_refused_by_name(client: Client, uri: str, expected: str):
    await _remember(client, ["A memory in proj."], "proj")
    with pytest.raises(MCPError) as refused:
        await client.read_resource(uri)
    assert expected in str(refused.value)


def test_uri_round_trip():
    memory_id = "mem_" + "0123456789abcdef" * 2
    assert parse_uri(memory_uri("team-a", memory_id)) == ("team-a", memory_id)
    assert parse_uri("memory://team-a") == ("team-a", None)


@pytest.mark.parametrize("namespace", ["bad space", "-dash-first", "n" * 65, "a/b"])
async def test_a_resource_uri_is_held_to_the_tools_namespace_rule(client: Client, namespace: str):
    """The namespace of a URI is refused in the same words as the same namespace given to a tool."""
    tool_message = await call_error(client, "list_memories", {"namespace": namespace})
    rule = tool_message.split("namespace: ", 1)[1]
    with pytest.raises(InvalidInputError) as parsed:
        parse_uri(f"memory://{quote(namespace, safe='')}")
    assert str(parsed.value) == f"uri: {rule}"
    with pytest.raises(MCPError) as refused:
        await client.read_resource(f"memory://{quote(namespace, safe='')}")
    assert f"uri: {rule}" in str(refused.value)


async def test_a_resource_uri_is_held_to_the_tools_id_rule(client: Client):
    await _remember(client, ["A memory in proj."], "proj")
    with pytest.raises(MCPError) as refused:
        await client.read_resource("memory://proj/mem_1")
    assert "uri: 'mem_1' is not a memory id (mem_ and 32 hex digits)" in str(refused.value)


async def test_a_subscribed_session_hears_of_another_agents_memory_within_a_second(http_server: int):
    """2025-era clients: resources/subscribe, then notifications/resources/updated from another session's write."""
    url = f"http://127.0.0.1:{http_server}/mcp"
    heard: list[tuple[str, float]] = []

    async def on_message(message: Any) -> None:
        uri = getattr(getattr(getattr(message, "root", message), "params", None), "uri", None)
        if uri is not None:
            heard.append((str(uri), time.monotonic()))

    async with Client(url, mode="legacy", message_handler=on_message) as watcher, Client(url) as writer:
        await _remember(writer, ["warm-up"], "warmup")  # the models are loaded before timing anything
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await watcher.subscribe_resource("memory://proj")
        await _remember(writer, ["Nothing to see in another namespace."], "elsewhere")
        stored_at = time.monotonic()
        ids = await _remember(writer, ["The load balancer drops idle connections after 60 s."], "proj")
        with anyio.fail_after(10):
            while not any(uri == "memory://proj" for uri, _ in heard):
                await anyio.sleep(0.02)
        when = next(at for uri, at in heard if uri == "memory://proj")
        assert when - stored_at < 1.0
        assert all(uri.startswith("memory://proj") for uri, _ in heard)  # not told about other namespaces
        forgotten_at = len(heard)
        await call(writer, "forget", {"ids": ids})
        with anyio.fail_after(10):
            while len(heard) == forgotten_at:
                await anyio.sleep(0.02)
        assert heard[forgotten_at][0] == "memory://proj"


async def test_a_listen_stream_hears_of_updates(http_server: int):
    """2026-07-28 clients: subscriptions/listen with the memory's URI, told when another session updates it."""
    url = f"http://127.0.0.1:{http_server}/mcp"
    async with Client(url) as watcher, Client(url) as writer:
        memory_id = (await _remember(writer, ["The on-call rota changes weekly."], "ops"))[0]
        uri = memory_uri("ops", memory_id)
        async with watcher.listen(resource_subscriptions=["memory://ops", uri]) as events:
            await call(writer, "update", {"id": memory_id, "tags": ["rota"]})
            received: set[str] = set()
            with anyio.fail_after(10):
                async for event in events:
                    assert isinstance(event, ResourceUpdated)
                    received.add(event.uri)
                    if received == {"memory://ops", uri}:
                        break
