"""Time in questions through real MCP client sessions: `when` read against a fixed clock in the caller's zone
(``search.now``), applied inside both arms and to `list_memories`; `when: "auto"` finding the phrase in the
query; `prefer_recent` putting the newer of two matches first; bad phrases and zones refused by name. The
logic runs on the in-memory store; one test goes over streamable HTTP to a server on Chroma and the models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from mimir_mcp.config import Settings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.models import MemoryRecord
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.store.in_memory import open_in_memory

from .conftest import PYTHON, call, call_error, server_env

pytestmark = pytest.mark.anyio

# A Wednesday, in winter: London is on UTC.
NOW = "2026-12-09T15:30:00+00:00"
NAMESPACE = "team"
STORED = {
    "yesterday": ("2026-12-08T10:00:00+00:00", "Billing decision: we moved the invoices to Adyen."),
    "last_week": ("2026-12-02T10:00:00+00:00", "Billing decision: we chose Stripe for the invoices."),
    "november": ("2026-11-20T10:00:00+00:00", "Billing idea: PayPal was considered for the invoices."),
    "march": ("2026-03-15T10:00:00+00:00", "Billing plan: invoices go out monthly by hand."),
}


def _records() -> list[MemoryRecord]:
    return [
        MemoryRecord(id=dedup_key(NAMESPACE, text), text=text, namespace=NAMESPACE, created_at=created)
        for created, text in STORED.values()
    ]


def ids_of(*names: str) -> set[str]:
    return {dedup_key(NAMESPACE, STORED[name][1]) for name in names}


def _timed_service(tmp_path: Path, now: str = NOW, timezone: str = "Europe/London") -> MemoryService:
    settings = Settings(
        store={"data_dir": tmp_path / "data"},  # pyright: ignore[reportArgumentType]
        reranker={"enabled": False},  # pyright: ignore[reportArgumentType]
        search={"now": now, "timezone": timezone},  # pyright: ignore[reportArgumentType]
    )
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=open_in_memory)
    service.import_records(_records())
    return service


@pytest.fixture
def timed(tmp_path: Path) -> Iterator[MemoryService]:
    service = _timed_service(tmp_path)
    yield service
    service.close()


@pytest.fixture
async def timed_client(timed: MemoryService) -> AsyncIterator[Client]:
    async with Client(create_server(timed.settings, service=timed)) as connected:
        yield connected


@pytest.mark.parametrize(
    ("when", "start", "end", "found"),
    [
        ("yesterday", "2026-12-08T00:00:00+00:00", "2026-12-09T00:00:00+00:00", ("yesterday",)),
        ("last week", "2026-11-30T00:00:00+00:00", "2026-12-07T00:00:00+00:00", ("last_week",)),
        ("since Monday", "2026-12-07T00:00:00+00:00", None, ("yesterday",)),
        ("the last 3 days", "2026-12-06T15:30:00+00:00", None, ("yesterday",)),
        ("in March", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+01:00", ("march",)),
        ("last month", "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00", ("november",)),
        ("before the 1st of May", None, "2026-05-01T00:00:00+01:00", ("march",)),
        ("2026-11-01..2026-12-02", "2026-11-01T00:00:00+00:00", "2026-12-03T00:00:00+00:00", ("november", "last_week")),
    ],
)
async def test_list_memories_reads_when_against_the_clock(timed_client: Client, when, start, end, found):
    listed = await call(timed_client, "list_memories", {"namespace": NAMESPACE, "when": when})
    assert {memory["id"] for memory in listed["memories"]} == ids_of(*found)
    assert listed["total"] == len(found)
    expected = {"phrase": when} | ({"from": start} if start else {}) | ({"to": end} if end else {})
    assert listed["time_range"] == expected


async def test_search_publishes_auto_as_its_default_when(timed_client: Client, tmp_path: Path):
    tools = {tool.name: tool for tool in (await timed_client.list_tools()).tools}
    assert tools["search"].input_schema["properties"]["when"]["default"] == "auto"
    assert "default" not in tools["list_memories"].input_schema["properties"]["when"]
    assert set(tools["search"].input_schema["properties"]) >= {"when", "tz", "prefer_recent"}
    settings = Settings(store={"data_dir": tmp_path / "off"}, search={"default_when": "off"})  # pyright: ignore[reportArgumentType]
    async with Client(
        create_server(settings, service=MemoryService(settings, embedder=HashingEmbedder(), open_store=open_in_memory))
    ) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert tools["search"].input_schema["properties"]["when"]["default"] == "off"


async def test_search_applies_when_inside_both_arms(timed_client: Client):
    """Every billing memory matches the query; only the one of last week is in range, in each arm."""
    found = await call(
        timed_client,
        "search",
        {"query": "billing invoices decision", "namespace": NAMESPACE, "when": "last week", "explain": True},
    )
    assert {hit["id"] for hit in found["hits"]} == ids_of("last_week")
    assert found["candidates"]["dense"] == 1 and found["candidates"]["bm25"] == 1
    assert found["time_range"]["phrase"] == "last week"
    concise = await call(timed_client, "search", {"query": "billing", "namespace": NAMESPACE, "when": "in March"})
    assert [hit["id"] for hit in concise["hits"]] == list(ids_of("march"))
    assert concise["time_range"] == {
        "from": "2026-03-01T00:00:00+00:00",
        "to": "2026-04-01T00:00:00+01:00",
        "phrase": "in March",
    }


async def test_when_narrows_created_after_and_refuses_a_range_outside_it(timed_client: Client):
    narrowed = await call(
        timed_client,
        "list_memories",
        {"namespace": NAMESPACE, "when": "2026-11-01..2026-12-31", "created_after": "2026-12-01"},
    )
    assert {memory["id"] for memory in narrowed["memories"]} == ids_of("yesterday", "last_week")
    message = await call_error(
        timed_client, "list_memories", {"namespace": NAMESPACE, "when": "in March", "created_after": "2026-12-01"}
    )
    assert "when" in message and "does not overlap created_after/created_before" in message
    # A phrase 'auto' found is a guess: one outside the call's own bounds is left out, not an error.
    guessed = await call(
        timed_client,
        "search",
        {"query": "billing decision in March", "namespace": NAMESPACE, "created_after": "2026-12-01"},
    )
    assert {hit["id"] for hit in guessed["hits"]} == ids_of("yesterday", "last_week")
    assert guessed["time_range"]["note"] == "Not applied: it does not overlap created_after/created_before."


async def test_a_time_zone_moves_the_day(tmp_path: Path):
    """'yesterday' at 15:30 UTC is another range in Kolkata (+5:30) and in Auckland (+13), where it is
    already Thursday; the caller's `tz` wins over the server's zone."""
    service = _timed_service(tmp_path)
    try:
        async with Client(create_server(service.settings, service=service)) as client:
            kolkata = await call(
                client, "list_memories", {"namespace": NAMESPACE, "when": "yesterday", "tz": "Asia/Kolkata"}
            )
            auckland = await call(
                client, "list_memories", {"namespace": NAMESPACE, "when": "yesterday", "tz": "Pacific/Auckland"}
            )
    finally:
        service.close()
    assert kolkata["time_range"] == {
        "from": "2026-12-08T00:00:00+05:30",
        "to": "2026-12-09T00:00:00+05:30",
        "phrase": "yesterday",
    }
    assert auckland["time_range"]["from"] == "2026-12-09T00:00:00+13:00"  # Thursday 04:30 there
    assert {memory["id"] for memory in kolkata["memories"]} == ids_of("yesterday")
    assert auckland["memories"] == []


async def test_a_day_across_a_daylight_saving_change_is_23_hours(tmp_path: Path):
    service = _timed_service(tmp_path, now="2026-03-30T11:00:00+00:00")
    try:
        async with Client(create_server(service.settings, service=service)) as client:
            listed = await call(client, "list_memories", {"namespace": NAMESPACE, "when": "yesterday"})
    finally:
        service.close()
    start, end = listed["time_range"]["from"], listed["time_range"]["to"]
    assert (start, end) == ("2026-03-29T00:00:00+00:00", "2026-03-30T00:00:00+01:00")
    assert (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() == 23 * 3600


@pytest.mark.parametrize(
    ("arguments", "field", "words"),
    [
        ({"when": "blue moon"}, "when", "could not read 'blue moon'"),
        ({"when": "03/04/2026"}, "when", "ambiguous"),
        ({"when": "   "}, "when", "must not be empty"),
        ({"when": "yesterday", "tz": "Mars/Base"}, "tz", "Mars/Base"),
        ({"when": "auto"}, "when", "'auto' finds a time phrase in a search's query"),
    ],
)
async def test_a_phrase_or_zone_that_cannot_be_read_is_refused_by_name(timed_client: Client, arguments, field, words):
    message = await call_error(timed_client, "list_memories", {"namespace": NAMESPACE, **arguments})
    assert field in message and words in message


async def test_auto_finds_the_phrase_in_the_query_and_searches_the_rest(timed_client: Client):
    found = await call(
        timed_client,
        "search",
        {"query": "what did we decide last week about billing?", "namespace": NAMESPACE, "when": "auto"},
    )
    assert [hit["id"] for hit in found["hits"]] == list(ids_of("last_week"))
    assert found["time_range"] == {
        "from": "2026-11-30T00:00:00+00:00",
        "to": "2026-12-07T00:00:00+00:00",
        "phrase": "last week",
        "query": "what did we decide about billing?",
    }
    # No phrase in the query: nothing recognised, nothing narrowed, nothing reported.
    plain = await call(timed_client, "search", {"query": "billing invoices", "namespace": NAMESPACE, "when": "auto"})
    assert {hit["id"] for hit in plain["hits"]} == ids_of("yesterday", "last_week", "november", "march")
    assert "time_range" not in plain
    # 'auto' is the default (MIMIR_SEARCH_DEFAULT_WHEN); with when 'off' the phrase is only words of the query.
    default = await call(timed_client, "search", {"query": "billing last week", "namespace": NAMESPACE})
    assert [hit["id"] for hit in default["hits"]] == list(ids_of("last_week"))
    assert default["time_range"]["query"] == "billing"
    untouched = await call(
        timed_client, "search", {"query": "billing last week", "namespace": NAMESPACE, "when": "off"}
    )
    assert len(untouched["hits"]) == 4 and "time_range" not in untouched


@pytest.mark.parametrize(
    ("query", "phrase", "why"),
    [
        ("billing invoices in August", "in August", "Not applied: it holds no memory searched."),
        ("billing invoices since 2020", "since 2020", "Not applied: it holds every memory searched."),
    ],
)
async def test_auto_leaves_out_a_range_that_does_not_narrow_and_says_so(timed_client: Client, query, phrase, why):
    """A phrase read where it names no time of the memories ("in August": none stored then) or all of them:
    the whole query is searched, with its words."""
    found = await call(timed_client, "search", {"query": query, "namespace": NAMESPACE, "when": "auto"})
    assert {hit["id"] for hit in found["hits"]} == ids_of("yesterday", "last_week", "november", "march")
    assert found["time_range"]["phrase"] == phrase and found["time_range"]["note"] == why
    assert "query" not in found["time_range"]


# Notes that share a word or two with the release question: the candidates a real namespace offers.
OTHER_NOTES = [
    f"{subject} {verb} {when}."
    for subject in (
        "The release notes",
        "The offsite train",
        "Our design review",
        "The billing report",
        "Branch cleanup",
    )
    for verb in ("is due", "leaves", "happens")
    for when in ("on Friday", "every month", "after the freeze")
]


async def test_prefer_recent_puts_the_newer_of_two_matches_first(tmp_path: Path):
    """Two memories that say the same with one word changed, among notes sharing some of their words:
    without prefer_recent the older leads (the query has its word); with it the newer does, and explain
    shows each hit's age and recency part."""
    settings = Settings(
        store={"data_dir": tmp_path / "data"},  # pyright: ignore[reportArgumentType]
        reranker={"enabled": False},  # pyright: ignore[reportArgumentType]
        search={"now": NOW, "recency_half_life_days": 7},  # pyright: ignore[reportArgumentType]
    )
    older = "The release train leaves every second Tuesday from the main branch."
    newer = "The release train leaves every Thursday from the main branch."
    stored = [(older, "2026-10-01T09:00:00Z"), (newer, "2026-12-08T09:00:00Z")]
    stored += [(text, "2026-09-01T09:00:00Z") for text in OTHER_NOTES]
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=open_in_memory)
    try:
        service.import_records(
            [
                MemoryRecord(id=dedup_key(NAMESPACE, text), text=text, namespace=NAMESPACE, created_at=created)
                for text, created in stored
            ]
        )
        async with Client(create_server(settings, service=service)) as client:
            query = {"query": "when does the release train leave on the second Tuesday", "namespace": NAMESPACE}
            plain = await call(client, "search", {**query, "explain": True})
            recent = await call(client, "search", {**query, "prefer_recent": 0.3, "explain": True})
    finally:
        service.close()
    assert [hit["text"] for hit in plain["hits"][:2]] == [older, newer]
    assert [hit["text"] for hit in recent["hits"][:2]] == [newer, older]
    assert plain["search_method"] == "hybrid" and recent["search_method"] == "hybrid+recency"
    newest, oldest = (hit["scores"] for hit in recent["hits"][:2])
    assert newest["age_days"] == pytest.approx(1.27, abs=0.01) and oldest["age_days"] == pytest.approx(69.27, abs=0.01)
    assert newest["recency"] == pytest.approx(0.3 * 0.5 ** (1.27 / 7), abs=1e-3)
    assert oldest["recency"] == pytest.approx(0.3 * 0.5 ** (69.27 / 7), abs=1e-3)
    # The older was the best match (relevance 1 after scaling): its score is 0.7 + its recency part.
    assert recent["hits"][1]["score"] == pytest.approx(0.7 + oldest["recency"], abs=1e-3)
    assert "prefer_recent 0.3, half-life 7 days" in recent["message"]
    # The other notes keep their order among themselves: recency is alike for all of them.
    others = [hit["text"] for hit in plain["hits"] if hit["text"] not in (older, newer)]
    assert [hit["text"] for hit in recent["hits"] if hit["text"] not in (older, newer)] == others


@pytest.mark.integration
async def test_when_over_streamable_http_on_chroma(http_server: int):
    """The real server on Chroma and the models: a memory stored now is within 'the last 3 days' read in
    New York, and outside 'before 2020-01-01', in the dense arm as in BM25; 'auto' reads a phrase."""
    url = f"http://127.0.0.1:{http_server}/mcp"
    namespace = "time-http"
    async with Client(url) as client:
        await call(
            client, "remember", {"text": "The quarterly planning offsite moved to Lisbon.", "namespace": namespace}
        )
        query = {"query": "where is the planning offsite", "namespace": namespace, "rerank": False, "explain": True}
        recent = await call(client, "search", {**query, "when": "the last 3 days", "tz": "America/New_York"})
        old = await call(client, "search", {**query, "when": "before 2020-01-01"})
        auto = await call(
            client, "search", {**query, "query": "where is the planning offsite since yesterday", "when": "auto"}
        )
    assert [hit["text"] for hit in recent["hits"]] == ["The quarterly planning offsite moved to Lisbon."]
    assert recent["hits"][0]["scores"]["dense_rank"] == 1 and recent["hits"][0]["scores"]["bm25_rank"] == 1
    assert recent["time_range"]["from"].endswith(("-05:00", "-04:00"))
    assert old["hits"] == [] and old["time_range"]["to"].startswith("2020-01-01T00:00:00")
    # Every memory of the namespace was stored since yesterday: the range would narrow nothing.
    assert auto["time_range"]["phrase"] == "since yesterday"
    assert auto["time_range"]["note"] == "Not applied: it holds every memory searched."
    assert [hit["text"] for hit in auto["hits"]] == ["The quarterly planning offsite moved to Lisbon."]


@pytest.mark.integration
async def test_a_stdio_server_reads_phrases_against_its_configured_clock_and_zone(
    tmp_path: Path, cross_encoder_path: Path
):
    """MIMIR_SEARCH_NOW and MIMIR_SEARCH_TIMEZONE reach a server process: its ranges are those of that clock
    in that zone, whatever the machine's."""
    env = {
        **server_env(tmp_path / "data", cross_encoder_path),
        "MIMIR_SEARCH_NOW": "2026-07-01T09:00:00+00:00",
        "MIMIR_SEARCH_TIMEZONE": "America/New_York",
    }
    params = StdioServerParameters(command=PYTHON, args=["-m", "mimir_mcp"], env=env)
    async with Client(params, mode="legacy") as client:
        listed = await call(client, "list_memories", {"when": "yesterday"})
        london = await call(client, "list_memories", {"when": "last week", "tz": "Europe/London"})
        message = await call_error(client, "list_memories", {"when": "03/04/2026"})
    assert listed["time_range"] == {
        "from": "2026-06-30T00:00:00-04:00",
        "to": "2026-07-01T00:00:00-04:00",
        "phrase": "yesterday",
    }
    assert (london["time_range"]["from"], london["time_range"]["to"]) == (
        "2026-06-22T00:00:00+01:00",
        "2026-06-29T00:00:00+01:00",
    )
    assert "when" in message and "ambiguous (3 April or March 4)" in message
