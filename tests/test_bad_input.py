"""Every bad input gets an error naming the field and the limit, and the store is left exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from mimir_mcp.config import RerankerSettings, Settings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.store.in_memory import open_in_memory

from .conftest import call, call_error, on_fakes

pytestmark = pytest.mark.anyio


# Validation is logic: it runs on the in-memory store and the hashing embedder, and conftest's ``client`` is
# built on these two.
settings_on_fakes, _ = on_fakes()


@pytest.fixture(name="service")
def service_on_fakes(fake_settings: Settings, tmp_path: Path) -> Iterator[MemoryService]:
    """The fakes with a cross-encoder switched on, so that `rerank` is listed (a server lists it only where
    something may rerank); its folder is missing, so it fails at once and loads nothing: arguments are
    checked before any model is asked."""
    switched_on = LocalCrossEncoder(RerankerSettings(model=str(tmp_path / "no-cross-encoder")))
    service = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=open_in_memory, reranker=switched_on)
    yield service
    service.close()


SEED = ["Keep API keys in the vault, never in git.", "The CI pipeline runs on every pull request."]

REMEMBER_CASES = [
    ({"text": ""}, ["text", "empty"]),
    ({"text": "   \n\t "}, ["text", "empty"]),
    ({"text": "x" * (32 * 1024 + 1)}, ["text", "32769 characters", "limit of 32768 bytes"]),
    ({"text": "é" * (16 * 1024 + 1)}, ["text", "32770 bytes", "limit is 32768 bytes"]),  # bytes, not characters
    ({"text": "hello\x00world"}, ["text", "U+0000", "control character"]),
    ({"text": "bell\x07"}, ["text", "U+0007"]),
    ({"text": "ok", "namespace": "my space!"}, ["namespace", "not a valid namespace", "1-64 characters"]),
    ({"text": "ok", "namespace": ""}, ["namespace", "not a valid namespace"]),
    ({"text": "ok", "namespace": "n" * 65}, ["namespace", "1-64 characters"]),
    ({"text": "ok", "metadata": {"nested": {"a": 1}}}, ["metadata.nested", "flat", "an object"]),
    ({"text": "ok", "metadata": {"list": [1, 2]}}, ["metadata.list", "flat", "an array"]),
    ({"text": "ok", "metadata": {"none": None}}, ["metadata.none", "null"]),
    ({"text": "ok", "metadata": {"bad key!": 1}}, ["metadata key", "bad key!"]),
    ({"text": "ok", "metadata": {f"k{i}": i for i in range(33)}}, ["metadata", "33 keys", "limit is 32"]),
    ({"text": "ok", "metadata": {"long": "v" * 1025}}, ["metadata.long", "limit is 1024"]),
    ({"text": "ok", "tags": ["fine", "bad\ntag"]}, ["tags[1]", "U+000A"]),
    ({"text": "ok", "tags": [""]}, ["tags[0]", "non-empty"]),
    ({"text": "ok", "tags": ["t" * 65]}, ["tags[0]", "limit is 64"]),
    ({"text": "ok", "tags": [f"t{i}" for i in range(33)]}, ["tags", "33 tags", "limit is 32"]),
    ({"text": "ok", "source": "s" * 257}, ["source", "limit is 256"]),
    ({"text": "ok", "agent": "line\nbreak"}, ["agent", "control character"]),
    ({}, ["text", "either `text`", "or `memories`"]),
    ({"text": "a", "memories": [{"text": "b"}]}, ["text", "not both"]),
    ({"memories": []}, ["memories", "at least one"]),
    ({"memories": [{"text": "fine"}, {"text": ""}]}, ["memories[1].text", "empty"]),
    ({"memories": [{"text": "fine"}, {"text": "ok", "namespace": "a/b"}]}, ["memories[1].namespace"]),
    ({"memories": [{"text": f"m{i}"} for i in range(257)]}, ["memories", "257 memories", "limit is 256"]),
    ({"memories": [{"text": "fine"}], "namespace": "bad space"}, ["namespace", "not a valid namespace"]),
    ({"text": 123}, ["text"]),
]

SEARCH_CASES = [
    ({"query": ""}, ["query", "empty"]),
    ({"query": "q" * 4097}, ["query", "4097 characters", "limit is 4096"]),
    ({"query": "esc\x1b[31m"}, ["query", "U+001B"]),
    ({"query": "q", "top_k": 0}, ["top_k", "greater than or equal to 1"]),
    ({"query": "q", "top_k": -5}, ["top_k", "greater than or equal to 1"]),
    ({"query": "q", "top_k": 101}, ["top_k", "less than or equal to 100", "101"]),
    ({"query": "q", "rerank_top_k": 201}, ["rerank_top_k", "less than or equal to 200"]),
    ({"query": "q", "rerank_top_k": 0}, ["rerank_top_k", "greater than or equal to 1"]),
    ({"query": "q", "namespace": "no spaces"}, ["namespace", "not a valid namespace"]),
    ({"query": "q", "metadata": {"a": [1]}}, ["metadata.a", "flat"]),
    ({"query": "q", "tags": ["x\ty"]}, ["tags[0]", "U+0009"]),
    ({"query": "q", "max_chars": 0}, ["max_chars", "greater than or equal to 40"]),
    ({"query": "q", "max_chars": -1}, ["max_chars", "greater than or equal to 40"]),
    ({"query": "q", "max_chars": 32 * 1024 + 1}, ["max_chars", "less than or equal to 32768"]),
]

RERANK_CASES = [
    ({"query": "q", "documents": []}, ["documents", "at least one"]),
    ({"query": "q", "documents": ["d"] * 201}, ["documents", "201 documents", "limit is 200"]),
    ({"query": "q", "documents": ["fine", "  "]}, ["documents[1].text", "empty"]),
    ({"query": "q", "documents": ["fine", {"id": "x", "text": "nul\x00"}]}, ["documents[1].text", "U+0000"]),
    ({"query": "q", "documents": ["x" * (32 * 1024 + 1)]}, ["documents[0]", "limit of 32768 bytes"]),
    ({"query": "q", "documents": [{"text": "é" * (16 * 1024 + 1)}]}, ["documents[0].text", "limit is 32768 bytes"]),
    ({"query": "", "documents": ["d"]}, ["query", "empty"]),
    ({"query": "q", "documents": ["d"], "top_k": 0}, ["top_k", "greater than or equal to 1"]),
]


async def snapshot(client: Client) -> tuple[dict, list]:
    status = await call(client, "status")
    found = await call(client, "search", {"query": "keys and pipelines", "rerank": False, "namespace": "*"})
    hits = [
        (hit["id"], hit["text"], hit.get("tags", []), hit.get("metadata", {}), hit["namespace"])
        for hit in found["hits"]
    ]
    return status["namespaces"], sorted(hits)


@pytest.fixture
async def seeded(client: Client) -> Client:
    await call(client, "remember", {"memories": [{"text": text, "tags": ["seed"]} for text in SEED]})
    return client


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        *[("remember", arguments, expected) for arguments, expected in REMEMBER_CASES],
        *[("search", arguments, expected) for arguments, expected in SEARCH_CASES],
        *[("rerank", arguments, expected) for arguments, expected in RERANK_CASES],
    ],
)
async def test_bad_input_is_named_and_changes_nothing(seeded: Client, tool, arguments, expected):
    before = await snapshot(seeded)
    message = await call_error(seeded, tool, arguments)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    for leak in ("Traceback", "validation error for", "input_value", "https://", "pydantic"):
        assert leak not in message, message  # the project's words, never the validator's dump
    assert await snapshot(seeded) == before


async def test_a_bad_item_rejects_the_whole_batch(seeded: Client):
    before = await snapshot(seeded)
    await call_error(seeded, "remember", {"memories": [{"text": "would be new"}, {"text": "bad\x00"}]})
    after = await snapshot(seeded)
    assert after == before
    assert all("would be new" not in hit[1] for hit in after[1])


async def test_limits_follow_settings(tmp_path):
    from mimir_mcp.server.app import create_server

    settings = Settings(
        store={"data_dir": tmp_path / "small"},
        reranker={"enabled": False},
        limits={"max_text_bytes": 10, "max_batch": 2, "max_top_k": 5},
        search={"default_top_k": 5},
    )
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=open_in_memory)
    try:
        async with Client(create_server(settings, service=service)) as client:
            assert "limit is 10 bytes" in await call_error(client, "remember", {"text": "eleven byte"})
            message = await call_error(client, "remember", {"memories": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
            assert "limit is 2 per call" in message
            assert "less than or equal to 5" in await call_error(client, "search", {"query": "q", "top_k": 6})
            assert (await call(client, "remember", {"text": "ten bytes!"}))["stored"] == 1
    finally:
        service.close()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("tool", ["search", "rerank"])
async def test_non_finite_min_score_is_rejected(settings, service, tool, value):
    """JSON has no NaN, and the Python client sends NaN as null; a non-standard client can still send the
    literal, which reaches the tool as a float. Call the server's own tool path with it."""
    from mcp.server.mcpserver.exceptions import ToolError

    from mimir_mcp.server.app import create_server

    server = create_server(settings, service=service)
    service.start()
    arguments = {"query": "q", "min_score": value}
    if tool == "rerank":
        arguments["documents"] = ["d"]
    with pytest.raises(ToolError, match="min_score: must be a finite number"):
        await server.call_tool(tool, arguments)


def _deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# Sent as they are (the Python client itself refuses to send the deepest and the lone surrogates).
RAW_CASES = [
    ("remember", {"text": "ok", "metadata": {"k": _deep(100_000)}}, ["metadata.k", "nested deeper than 8 levels"]),
    ("rerank", {"query": "q", "documents": ["d", _deep(100_000)]}, ["documents[1]", "nested deeper than 8 levels"]),
    ("remember", {"text": "ok", "metadata": {"\ud800": 1}}, ["metadata key", "lone surrogate U+D800"]),
    ("remember", {"text": "a\udfffb"}, ["text", "lone surrogate U+DFFF at position 1"]),
    ("list_memories", {"tags": ["\udc80"]}, ["tags[0]", "lone surrogate"]),
    ("search", {"query": "q", "min_score": float("nan")}, ["min_score", "finite"]),
    ("remember", {"text": "ok", "metadata": {"k": float("inf")}}, ["metadata.k", "finite"]),
    ("remember", {"text": "ok", "tags": ["t"] * 200_000}, ["tags", "more than 100000 values", "max_input_items"]),
    ("remember", {"text": "ok", "metadata": {"k" * 10_000_000: 1}}, ["metadata key", "(10000000 characters)"]),
    ("remember", {"text": "ok", "tag": ["x"]}, ["tag: unknown argument", "tags"]),
    ("status", {"verbose": True}, ["verbose: unknown argument"]),
    ("remember", {"memories": [{"text": "ok", "tagz": []}]}, ["memories[0].tagz: unknown field"]),
    ("remember", {"text": ["x"]}, ["text: must be a string, got an array"]),
    ("search", {"query": "q", "top_k": "abc"}, ["top_k: must be an integer, got a string"]),
    ("get", {"ids": [1] * 99_999}, ["ids[0]: must be a string, got a number"]),  # 99,999 complaints, one told
    ("search", {"query": "q", "rerank": "maybe"}, ["rerank: must be true or false"]),
    ("list_memories", {"order": "new"}, ["order: must be 'newest' or 'oldest'"]),
    ("search", {"query": "q", "created_after": "1" * 30}, ["created_after", "is not an ISO 8601"]),
    ("get", {"ids": [["x"]]}, ["ids[0]: must be a string, got an array"]),
    ("rerank", {"query": "q", "documents": [{"id": "x"}]}, ["documents[0].text: is required"]),
    ("update", {}, ["id: is required"]),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), RAW_CASES)
async def test_hostile_input_is_refused_early_in_the_projects_words(seeded: Client, tool, arguments, expected):
    import anyio

    from .test_fuzz import raw_call, text_of

    before = await snapshot(seeded)
    with anyio.fail_after(5):
        result = await raw_call(seeded, tool, arguments)
    message = text_of(result)
    assert result.is_error
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "validation error for" not in message and "input_value" not in message
    assert len(message) < 500  # the input is never echoed back whole
    assert await snapshot(seeded) == before


# Numbers and booleans are taken exactly as sent: a string that looks like one is refused, not read as one.
AS_SENT_CASES = [
    ("search", {"query": "q", "top_k": "5"}, "top_k: must be an integer, got a string"),
    ("search", {"query": "q", "top_k": 5.0}, "top_k: must be an integer, got a number"),
    ("search", {"query": "q", "rerank": "true"}, "rerank: must be true or false, got a string"),
    ("search", {"query": "q", "rerank": 1}, "rerank: must be true or false, got a number"),
    ("search", {"query": "q", "min_score": "0.5"}, "min_score: must be a number, got a string"),
    ("search", {"query": "q", "diversity": "0.5"}, "diversity: must be a number, got a string"),
    ("rerank", {"query": "q", "documents": ["d"], "top_k": "2"}, "top_k: must be an integer, got a string"),
    ("list_memories", {"limit": "20"}, "limit: must be an integer, got a string"),
    ("forget", {"namespace": "scratch", "confirm": "true"}, "confirm: must be true or false, got a string"),
    ("forget", {"namespace": "scratch", "confirm": 1}, "confirm: must be true or false, got a number"),
    ("forget", {"namespace": "scratch", "dry_run": "no"}, "dry_run: must be true or false, got a string"),
    ("search", {"query": "q", "top_k": True}, "top_k: must be an integer, got a boolean"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), AS_SENT_CASES)
async def test_numbers_and_booleans_are_taken_exactly_as_sent(seeded: Client, tool, arguments, expected):
    before = await snapshot(seeded)
    assert expected in await call_error(seeded, tool, arguments)
    assert await snapshot(seeded) == before


@pytest.mark.parametrize("namespace", ["*", "default", "nothing-here"])
async def test_forget_by_namespace_alone_needs_confirm_whatever_the_count(seeded: Client, namespace: str):
    """Every namespace, the seeded one, and one with no memories: a namespace-wide forget is never implied."""
    before = await snapshot(seeded)
    message = await call_error(seeded, "forget", {"namespace": namespace})
    assert message.startswith("Error executing tool forget: confirm: a forget by namespace alone"), message
    assert await snapshot(seeded) == before


async def test_a_string_top_k_is_refused_naming_top_k(seeded: Client):
    message = await call_error(seeded, "search", {"query": "keys", "top_k": "5"})
    assert message == "Error executing tool search: top_k: must be an integer, got a string"
    assert (await call(seeded, "search", {"query": "keys", "top_k": 5, "rerank": False}))["hits"]


async def test_input_schemas_refuse_names_they_do_not_list(client: Client):
    """Clients that check arguments against the schema before sending learn the same rule the server enforces."""
    tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} >= {"remember", "search", "rerank", "status", "forget", "update"}
    for tool in tools:
        assert tool.input_schema["additionalProperties"] is False, tool.name
    remember = next(tool for tool in tools if tool.name == "remember")
    item = remember.input_schema["$defs"]["MemoryInput"]
    assert item["additionalProperties"] is False  # inside memories[...] too
