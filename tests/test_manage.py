"""Managing memories through a real MCP client: list_memories, get, forget, update, time filters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from mcp import Client

from mimir_mcp.models import MemoryRecord
from mimir_mcp.service.memory import MemoryService, dedup_key
from tests.conftest import call, call_error, on_fakes

pytestmark = pytest.mark.anyio


# Managing memories is logic: it runs on the in-memory store and the hashing embedder, and conftest's ``client`` is
# built on these two.
settings_on_fakes, service_on_fakes = on_fakes()


async def remember(client: Client, *texts: str, **fields) -> list[str]:
    result = await call(client, "remember", {"memories": [{"text": text, **fields} for text in texts]})
    return result["ids"]


async def search_ids(client: Client, query: str, **arguments) -> list[str]:
    result = await call(client, "search", {"query": query, "rerank": False, **arguments})
    return [hit["id"] for hit in result["hits"]]


async def test_tool_annotations_and_schemas(client: Client):
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"forget", "update", "list_memories", "get"} <= set(tools)
    # A hint left out is the spec's default, and destructive is the default: only the others are sent.
    assert tools["forget"].annotations.destructive_hint is None
    assert tools["forget"].annotations.idempotent_hint is True
    assert tools["update"].annotations.destructive_hint is None
    assert tools["remember"].annotations.destructive_hint is False
    assert tools["list_memories"].annotations.read_only_hint is True
    assert tools["get"].annotations.read_only_hint is True
    for name in ("forget", "update", "list_memories", "get"):
        assert tools[name].output_schema is not None, name


async def test_get_returns_whole_records_and_names_missing_ids(client: Client):
    long_text = "The deploy checklist. " + "Step: verify the canary before promoting. " * 40
    [short, long] = await remember(client, "Alice prefers tea", long_text, tags=["prefs"], agent="planner")
    missing = "mem_" + "0" * 32
    result = await call(client, "get", {"ids": [long, missing, short]})
    assert [m["id"] for m in result["memories"]] == [long, short]
    assert result["memories"][0]["text"] == long_text.strip()
    assert "truncated" not in result["memories"][0] and "text_chars" not in result["memories"][0]
    assert result["memories"][1]["tags"] == ["prefs"] and result["memories"][1]["agent"] == "planner"
    assert result["not_found"] == [missing]
    message = await call_error(client, "get", {"ids": ["not-an-id"]})
    assert "ids[0]" in message


async def test_list_pages_newest_first_and_stays_stable_while_memories_arrive(client: Client):
    ids = []
    for n in range(7):
        ids += await remember(client, f"note number {n} about the migration")
    first = await call(client, "list_memories", {"limit": 3})
    assert first["total"] == 7
    assert [m["id"] for m in first["memories"]] == ids[::-1][:3]
    # memories stored while paging sort before the cursor: they never shift or repeat later pages
    await remember(client, "a late note", "another late note")
    second = await call(client, "list_memories", {"limit": 3, "cursor": first["next_cursor"]})
    third = await call(client, "list_memories", {"limit": 3, "cursor": second["next_cursor"]})
    assert [m["id"] for m in second["memories"]] == ids[::-1][3:6]
    assert [m["id"] for m in third["memories"]] == ids[::-1][6:]
    assert "next_cursor" not in third  # the last page
    oldest = await call(client, "list_memories", {"limit": 2, "order": "oldest"})
    assert [m["id"] for m in oldest["memories"]] == ids[:2]
    assert "cursor" in await call_error(client, "list_memories", {"cursor": "garbage!"})
    assert "limit" in await call_error(client, "list_memories", {"limit": 101})


async def test_list_filters_and_truncates(client: Client):
    await remember(client, "kept by planner", agent="planner", tags=["a"])
    await remember(client, "kept by coder", agent="coder", tags=["a", "b"], metadata={"sprint": 4})
    await remember(client, "elsewhere", namespace="other")
    assert [m["text"] for m in (await call(client, "list_memories", {"agent": "coder"}))["memories"]] == [
        "kept by coder"
    ]
    assert (await call(client, "list_memories", {"tags": ["a"]}))["total"] == 2
    assert (await call(client, "list_memories", {"metadata": {"sprint": 4.0}}))["total"] == 1
    assert (await call(client, "list_memories", {"namespace": "*"}))["total"] == 3
    long_text = "word " * 300
    await remember(client, long_text)
    listed = (await call(client, "list_memories", {"limit": 1, "max_chars": 100}))["memories"][0]
    assert listed["truncated"] is True and len(listed["text"]) <= 100 and listed["text_chars"] == len(long_text.strip())


async def test_forget_by_ids_removes_from_both_arms_list_and_status(client: Client):
    ids = await remember(client, "The staging database password rotates on Mondays", "Lunch is at noon")
    assert ids[0] in await search_ids(client, "staging database password")
    result = await call(client, "forget", {"ids": [ids[0], "mem_" + "f" * 32]})
    assert result["removed_count"] == 1 and result["ids"] == [ids[0]]
    assert result["not_found"] == ["mem_" + "f" * 32]
    assert ids[0] not in await search_ids(client, "staging database password")
    # neither arm alone finds it: a keyword-only query and a paraphrase
    assert ids[0] not in await search_ids(client, "Mondays rotates")
    assert ids[0] not in await search_ids(client, "when does the credential change")
    status = await call(client, "status", {"detail": True})
    assert status["memories"] == 1 and status["namespaces"] == {"default": 1}
    assert status["detail"]["bm25"]["documents"] == 1 and status["detail"]["bm25"]["in_sync"] is True
    assert (await call(client, "get", {"ids": [ids[0]]}))["not_found"] == [ids[0]]
    # forgetting again is harmless (idempotent)
    again = await call(client, "forget", {"ids": [ids[0]]})
    assert again["removed_count"] == 0 and again["not_found"] == [ids[0]]
    # remembering the same text again stores it again, under the same id
    assert (await remember(client, "The staging database password rotates on Mondays")) == [ids[0]]


async def test_forget_by_filter_needs_confirm_over_the_threshold_and_dry_run_removes_nothing(
    client: Client, service: MemoryService
):
    service.settings.limits.forget_confirm_threshold = 3
    await remember(client, *[f"scratch note {n}" for n in range(5)], tags=["scratch"])
    keep = await remember(client, "the one to keep", tags=["keep"])
    message = await call_error(client, "forget", {"tags": ["scratch"]})
    assert "confirm" in message and "5" in message and "3" in message
    dry = await call(client, "forget", {"tags": ["scratch"], "dry_run": True})
    assert dry["dry_run"] is True and dry["matched"] == 5 and dry["removed_count"] == 0
    assert (await call(client, "list_memories", {}))["total"] == 6
    done = await call(client, "forget", {"tags": ["scratch"], "confirm": True})
    assert done["removed_count"] == 5
    assert [m["id"] for m in (await call(client, "list_memories", {}))["memories"]] == keep
    assert "ids" in await call_error(client, "forget", {})
    assert "namespace" in await call_error(client, "forget", {"ids": keep, "namespace": "default"})


async def test_forgetting_a_whole_namespace_needs_confirm_whatever_its_size(client: Client):
    kept = await remember(client, "one memory in the scratch space", namespace="scratch")
    message = await call_error(client, "forget", {"namespace": "scratch"})
    assert message.startswith("Error executing tool forget: confirm: a forget by namespace alone")
    assert (await call(client, "forget", {"namespace": "scratch", "dry_run": True}))["ids"] == kept
    assert (await call(client, "list_memories", {"namespace": "scratch"}))["total"] == 1
    assert (await call(client, "forget", {"namespace": "scratch", "confirm": True}))["removed_count"] == 1
    # With another filter the threshold rule applies as before.
    await remember(client, "another one", namespace="scratch", tags=["x"])
    assert (await call(client, "forget", {"namespace": "scratch", "tags": ["x"]}))["removed_count"] == 1


async def test_forget_by_time_and_agent(client: Client, service: MemoryService):
    old = await _stored_at(service, "an old decision about caching", datetime(2025, 1, 5, tzinfo=UTC), agent="a1")
    await remember(client, "a fresh decision about caching", agent="a1")
    result = await call(client, "forget", {"agent": "a1", "created_before": "2025-06-01"})
    assert result["ids"] == [old]


async def test_update_tags_and_metadata_keep_the_id(client: Client):
    [memory_id] = await remember(client, "Use Postgres 16 for the new service", tags=["db"], metadata={"v": 1})
    result = await call(client, "update", {"id": memory_id, "tags": ["db", "decided"], "metadata": {"owner": "ana"}})
    assert result["id"] == memory_id and "supersedes" not in result
    assert result["changed"] == ["tags", "metadata"]
    record = (await call(client, "get", {"ids": [memory_id]}))["memories"][0]
    assert record["tags"] == ["db", "decided"] and record["metadata"] == {"owner": "ana"}
    assert record["updated_at"].endswith("Z")
    assert memory_id in await search_ids(client, "Postgres", tags=["decided"])
    assert memory_id in await search_ids(client, "Postgres", metadata={"owner": "ana"})
    assert memory_id not in await search_ids(client, "Postgres", metadata={"v": 1})


async def test_update_text_supersedes_and_search_never_returns_the_old_text(client: Client):
    [old] = await remember(client, "The launch is on March 3", tags=["launch"])
    result = await call(client, "update", {"id": old, "text": "The launch moved to April 14"})
    new = result["id"]
    assert new != old and result["supersedes"] == old and result["changed"][0] == "text"
    assert new == dedup_key("default", "The launch moved to April 14")
    for query in ("launch March 3", "when is the launch", "April 14"):
        found = await call(client, "search", {"query": query, "rerank": False})
        assert old not in [hit["id"] for hit in found["hits"]]
        assert all("March" not in hit["text"] for hit in found["hits"])
    assert new in await search_ids(client, "launch April")
    record = await call(client, "get", {"ids": [new, old]})
    assert record["not_found"] == [old]
    assert record["memories"][0]["tags"] == ["launch"] and record["memories"][0]["supersedes"] == old
    # remembering the new text again deduplicates
    again = await call(client, "remember", {"text": "The launch moved to April 14"})
    assert again["ids"] == [new] and again["deduplicated"] == [new] and again["stored"] == 0
    # updating to a text already stored merges into that memory
    [other] = await remember(client, "The launch is cancelled")
    merged = await call(client, "update", {"id": new, "text": "The launch is cancelled"})
    assert merged["id"] == other and merged["deduplicated"] is True
    assert (await call(client, "list_memories", {}))["total"] == 1


async def test_update_errors_name_the_field_and_keep_the_memory(client: Client):
    [memory_id] = await remember(client, "something to keep")
    assert "id" in await call_error(client, "update", {"id": "mem_" + "1" * 32, "text": "x"})
    assert "text" in await call_error(client, "update", {"id": memory_id})
    assert "text" in await call_error(client, "update", {"id": memory_id, "text": "   "})
    assert "metadata.bad" in await call_error(client, "update", {"id": memory_id, "metadata": {"bad": [1]}})
    assert (await call(client, "get", {"ids": [memory_id]}))["memories"][0]["text"] == "something to keep"


async def test_time_filters_apply_inside_both_arms(client: Client, service: MemoryService):
    """The one memory in the window ranks far below 100 unfiltered; a post-filter of the top
    candidates would miss it, a filter inside both arms finds it."""
    service.settings.search.candidate_depth = 20
    target = await _stored_at(service, "notes from the budget meeting", datetime(2024, 3, 1, tzinfo=UTC))
    await remember(client, *[f"quarterly budget review notes, copy {n}" for n in range(40)])
    unfiltered = await search_ids(client, "quarterly budget review notes", top_k=20)
    assert target not in unfiltered
    window = {"created_after": "2024-02-01", "created_before": "2024-04-01T00:00:00Z"}
    result = await call(
        client, "search", {"query": "quarterly budget review notes", "rerank": False, "explain": True, **window}
    )
    assert [hit["id"] for hit in result["hits"]] == [target]
    assert result["hits"][0]["scores"]["dense_rank"] == 1 and result["hits"][0]["scores"]["bm25_rank"] == 1
    listed = await call(client, "list_memories", window)
    assert [m["id"] for m in listed["memories"]] == [target]
    assert "created_after" in await call_error(client, "search", {"query": "x", "created_after": "yesterday"})
    message = await call_error(
        client, "search", {"query": "x", "created_after": "2025-01-02", "created_before": "2025-01-01"}
    )
    assert "created_before" in message


async def test_concurrent_forget_and_search_never_show_removed_memories(client: Client):
    ids = await remember(client, *[f"incident {n}: the cache went cold" for n in range(20)])

    async def searcher() -> list[list[str]]:
        seen = []
        for _ in range(5):
            seen.append(await search_ids(client, "cache went cold", top_k=20))
        return seen

    forget = asyncio.ensure_future(call(client, "forget", {"ids": ids[:10]}))
    await searcher()
    await forget
    assert not set(ids[:10]) & set(await search_ids(client, "cache went cold", top_k=20))


async def _stored_at(service: MemoryService, text: str, when: datetime, **fields) -> str:
    """Store a memory with a creation time in the past, as an import would."""
    record = MemoryRecord(
        id=dedup_key("default", text),
        text=text,
        namespace="default",
        created_at=when.isoformat(timespec="milliseconds"),
        **fields,
    )
    await asyncio.to_thread(service.import_records, [record])
    return record.id


async def test_a_different_embedding_model_is_refused_by_status_and_every_call(settings, embedder, reranker):
    """A store written with one model, a server configured with another (here the same weights under
    another name, so only the recorded name differs): nothing is mixed, and every answer says why."""
    from mimir_mcp.embedding import bundled_minilm_path
    from mimir_mcp.server.app import create_server

    first = MemoryService(settings, embedder=embedder, reranker=reranker)
    async with Client(create_server(settings, service=first)) as client:
        await remember(client, "a memory embedded by the default model")
    first.close()
    other = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"model": str(bundled_minilm_path())})}
    )
    second = MemoryService(other, reranker=reranker)
    async with Client(create_server(other, service=second)) as client:
        for tool, arguments in (
            ("search", {"query": "memory"}),
            ("list_memories", {}),
            ("forget", {"ids": ["mem_" + "a" * 32]}),
        ):
            message = await call_error(client, tool, arguments)
            assert "all-MiniLM-L6-v2" in message and str(bundled_minilm_path()) in message, message
            assert "mimir-mcp reindex" in message
        status = await call(client, "status", {"detail": True})
        assert (
            status["detail"]["store"]["state"] == "failed" and "mimir-mcp reindex" in status["detail"]["store"]["error"]
        )
        assert status["ready"] is False and any("mimir-mcp reindex" in problem for problem in status["problems"])
    second.close()
