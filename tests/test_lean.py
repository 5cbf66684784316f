"""What the server costs an agent's context window, and what a deployment exposes: the size goals through a
real client (sizes are deterministic, so they are checked here, not timed), the tool subset and read-only
modes, read-only tokens, and tool descriptions replaced from configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mcp import Client

from mimir_mcp.cli.serve import build_parser, settings_overrides
from mimir_mcp.config import AccessSettings, Settings
from mimir_mcp.evaluation.cost import TOOL_MAX_BYTES, TOOLS_LIST_MAX_BYTES, format_costs, measure
from mimir_mcp.server.access import http_app, load_tokens
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService

from .conftest import call, call_error, served
from .test_access import connect

pytestmark = pytest.mark.anyio

READER = "reader-0123456789abcdef"
WRITER = "writer-0123456789abcdef"
UNHURRIED_S = 600.0
EVERY_TOOL = {"remember", "search", "rerank", "status", "list_memories", "get", "update", "forget"}


async def test_the_size_goals_hold_through_a_real_client(settings: Settings, embedder, reranker):
    """tools/list at most 10 KB and no tool over 2.5 KB; a 5-hit search's text at most 1.5x its hits' text
    + 400 bytes; remember at most 200 + 60 per memory (``bench --only cost`` prints the same table). The
    goals are for a search that ran as asked: a time budget no load can trim, so no caveat is sent."""
    patient = settings.model_copy(update={"reranker": settings.reranker.model_copy(update={"budget_s": UNHURRIED_S})})
    service = MemoryService(patient, embedder=embedder, reranker=reranker)
    try:
        async with Client(create_server(patient, service=service)) as client:
            costs = await measure(client)
    finally:
        service.close()
    print(format_costs(costs))
    assert [item.what for item in costs if not item.met] == [], format_costs(costs)
    assert costs[0].limit == TOOLS_LIST_MAX_BYTES and costs[1].limit == TOOL_MAX_BYTES
    assert sum(item.limit is not None for item in costs) == 4  # every goal was measured, none skipped
    default, explained = (next(c for c in costs if c.what.startswith(f"search, {k}")) for k in ("5 hits", "5 hits,"))
    assert explained.bytes > 2 * default.bytes


async def test_explain_and_detail_give_back_everything_the_default_leaves_out(client: Client):
    await call(
        client, "remember", {"memories": [{"text": "The deploy key rotates monthly."}, {"text": "Keys live in vault."}]}
    )
    concise = await call(client, "search", {"query": "deploy key"})
    full = await call(client, "search", {"query": "deploy key", "explain": True})
    assert set(full) >= {
        "hits",
        "search_method",
        "message",
        "query",
        "reranker_model",
        "candidates",
        "fusion",
        "timings_ms",
    }
    assert set(concise) == {"hits", "search_method"}  # reranked as asked: no message
    assert [hit["id"] for hit in concise["hits"]] == [hit["id"] for hit in full["hits"]]
    for short, long in zip(concise["hits"], full["hits"], strict=True):
        assert "scores" not in short and "namespace" not in short  # the search named its namespace
        assert long["namespace"] == "default" and long["scores"]["fused_score"] is not None
        assert short["score"] == round(long["score"], 3)
    status = await call(client, "status")
    assert set(status) <= {
        "ready",
        "memories",
        "namespaces",
        "store",
        "embedding",
        "reranker",
        "remote_reranker",
        "problems",
    }
    assert status["ready"] is True and status["memories"] == 2
    detail = (await call(client, "status", {"detail": True}))["detail"]
    assert {"reranker", "embedding", "store", "bm25", "search", "versions", "uptime_s"} <= set(detail)
    assert detail["reranker"]["queue"]["budget_s"] > 0


async def test_answers_leave_out_what_is_empty_and_say_it_once(fake_client: Client):
    """No null, no empty list or object, no false anywhere in a default answer; the text is the structured
    content as compact JSON."""
    await call(fake_client, "remember", {"text": "Lunch is at noon on Fridays.", "tags": ["team"]})
    for tool, arguments in [
        ("search", {"query": "lunch", "namespace": "*"}),
        ("list_memories", {}),
        ("remember", {"text": "Lunch is at noon on Fridays."}),
        ("status", {}),
    ]:
        result = await fake_client.call_tool(tool, arguments)
        text = result.content[0].text  # type: ignore[union-attr]
        assert json.loads(text) == result.structured_content
        assert text == json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
        assert not any(token in text for token in (":null", ":[]", ":{}", ":false")), (tool, text)


def test_the_flags_choose_the_tools(tmp_path: Path):
    args = build_parser().parse_args(["--tools", "search,get", "--read-only"])
    settings = Settings(store={"data_dir": tmp_path}, **settings_overrides(args))
    assert settings.server.tools == ["search", "get"] and settings.server.read_only
    with pytest.raises(ValueError, match="server.tools"):
        Settings(server={"tools": "search,recall"})


@pytest.mark.parametrize(
    ("server", "listed"),
    [
        ({"tools": "search,get,status"}, {"search", "get", "status"}),
        ({"read_only": True}, EVERY_TOOL - {"remember", "update", "forget", "rerank"}),  # (nothing reranks here)
        ({"tools": "remember,search", "read_only": True}, {"search"}),
    ],
)
async def test_a_deployment_exposes_only_the_tools_it_chose(fake_settings: Settings, fake_service, server, listed):
    settings = Settings(store=fake_settings.store, reranker=fake_settings.reranker, server=server)
    async with Client(create_server(settings, service=fake_service)) as connected:
        assert {tool.name for tool in (await connected.list_tools()).tools} == listed
        for missing in EVERY_TOOL - listed:
            message = await call_error(connected, missing, {"query": "x", "text": "x", "ids": ["x"], "id": "x"})
            assert "Unknown tool" in message, message


async def test_rerank_chosen_where_nothing_reranks_is_left_out_with_a_warning(
    fake_settings: Settings, fake_service, caplog: pytest.LogCaptureFixture
):
    settings = Settings(store=fake_settings.store, reranker=fake_settings.reranker, server={"tools": "search,rerank"})
    with caplog.at_level(logging.WARNING, logger="mimir_mcp.server.app"):
        server = create_server(settings, service=fake_service)
    assert "rerank tool is not served: the cross-encoder is switched off" in caplog.text
    async with Client(server) as connected:
        assert {tool.name for tool in (await connected.list_tools()).tools} == {"search"}


async def test_tool_descriptions_can_be_replaced(fake_settings: Settings, fake_service: MemoryService):
    team = "Remember every decision with its ticket id, e.g. 'PAY-123: retries capped at 3'."
    settings = fake_settings.model_copy(
        update={"server": fake_settings.server.model_copy(update={"tool_descriptions": {"remember": team}})}
    )
    async with Client(create_server(settings, service=fake_service)) as connected:
        described = {tool.name: tool.description for tool in (await connected.list_tools()).tools}
    assert described["remember"] == team
    assert described["search"] and described["search"] != team  # the others keep their own
    with pytest.raises(ValueError, match="tool_descriptions"):
        Settings(server={"tool_descriptions": {"recall": "x"}})


async def test_a_read_only_token_reads_and_never_writes(settings: Settings, service: MemoryService, tmp_path: Path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "tokens": [
                    {"name": "writer", "secret": WRITER, "namespaces": ["team"]},
                    {"name": "reader", "secret": READER, "namespaces": ["team"], "read_only": True},
                ]
            }
        )
    )
    tokens.chmod(0o600)
    exposed = settings.model_copy(
        update={
            "auth": AccessSettings(tokens_file=tokens),
            "server": settings.server.model_copy(update={"transport": "streamable-http"}),
        }
    )
    with served(http_app(create_server(exposed, service=service), exposed, load_tokens(exposed))) as base:
        async with connect(base, WRITER) as writer, connect(base, READER) as reader:
            assert {tool.name for tool in (await writer.list_tools()).tools} == EVERY_TOOL
            assert {tool.name for tool in (await reader.list_tools()).tools} == EVERY_TOOL - {
                "remember",
                "update",
                "forget",
            }
            stored = (await call(writer, "remember", {"text": "The team offsite is in Lisbon.", "namespace": "team"}))[
                "ids"
            ]
            found = await call(reader, "search", {"query": "offsite", "namespace": "team"})
            assert [hit["id"] for hit in found["hits"]] == stored
            for tool, arguments in [
                ("remember", {"text": "sneaky", "namespace": "team"}),
                ("update", {"id": stored[0], "text": "The offsite is cancelled."}),
                ("forget", {"ids": stored}),
            ]:
                message = await call_error(reader, tool, arguments)
                refusal = f"{tool}: the token 'reader' is read-only; it may search and read, not write"
                assert message == f"Error executing tool {tool}: {refusal}"
            assert (await call(writer, "get", {"ids": stored}))["memories"][0][
                "text"
            ] == "The team offsite is in Lisbon."
