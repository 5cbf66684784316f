"""Generated tool calls, valid and hostile, through a real MCP client session.

Every case knows what it built: a valid call must be answered with a result, a hostile one with an error
that names the field it broke, in the project's words. Every call answers within 5 s; afterwards the
memories stored before the run are intact and the server still answers.

A few hundred cases run by default (``MIMIR_FUZZ_CASES`` changes it); the long run (``-m long``, at least
10,000 cases) prints its figures: cases, calls per second, the slowest call and failures by class.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolResult

from mimir_mcp.config import LimitSettings, Settings
from mimir_mcp.embedding import Embedder
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.server.app import create_server
from mimir_mcp.server.validation import ID_PATTERN
from mimir_mcp.service.memory import MemoryService

LIMITS = LimitSettings()
CALL_TIMEOUT_S = 5.0
CI_CASES = int(os.environ.get("MIMIR_FUZZ_CASES", "300"))
LONG_CASES = int(os.environ.get("MIMIR_FUZZ_LONG_CASES", "10000"))
SENTINEL_NAMESPACE = "sentinel"
SCRATCH_NAMESPACE = "scratch"  # where `forget` by filter may remove what valid `remember` calls stored
UPDATE_NAMESPACE = "scratch-update"  # the memory `update` cases change, out of `forget`'s reach
SCRATCH = "<scratch id>"  # replaced by the id of the memory that `update` cases may change
SENTINELS = [
    "The staging deploy key lives in Vault under secret/staging/deploy.",
    "Backups of the orders database run nightly at 02:00 UTC.",
    "Émilie prefers tabs; the style guide says four spaces. 日本語のメモ.",
]
GENERIC = ("validation error for", "input_value", "Traceback", "errors.pydantic.dev")


@dataclass
class Case:
    tool: str
    arguments: dict[str, Any]
    field: str | None = None  # the field an error must name; None: a valid call
    kind: str = "valid"


@dataclass
class Tally:
    calls: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_case: str = ""
    kinds: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


# Valid values, built from the tools' schemas and the documented limits.

# No control characters (C0, DEL, C1) and no surrogates; everything else, emoji, RTL, combining marks,
# zero-width joiners and the BOM included, is text a memory may hold.
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
ODD = ["\u200d", "\ufeff", "\u202e", "e\u0301", "👩\u200d💻", "ﬁ", "İ", "\u2028", "Ⅻ", "\U0010fffd", "日本語"]
plain = st.text(alphabet=PRINTABLE, max_size=40)
visible = st.builds(lambda head, odd, tail: head + odd + tail, plain, st.sampled_from(["", *ODD]), plain).filter(
    # a text of only whitespace and format characters (zero-width ones) is refused as empty
    lambda text: not all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)
)
texts = st.one_of(
    visible,
    st.builds(lambda head, tail: f"{head}\n\t{tail}", visible, visible),
    st.just("x" * LIMITS.max_text_bytes),
    st.just("é" * (LIMITS.max_text_bytes // 2)),
)
labels = st.text(alphabet=PRINTABLE, min_size=1, max_size=40).filter(str.strip)
tags = st.lists(st.text(alphabet=PRINTABLE, min_size=1, max_size=LIMITS.max_tag_chars).filter(str.strip), max_size=4)
namespaces = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda name: name not in (SENTINEL_NAMESPACE, UPDATE_NAMESPACE)
)
metadata_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
metadata_values = st.one_of(
    st.text(alphabet=st.one_of(PRINTABLE, st.sampled_from("\t\n\r")), max_size=80),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
metadata = st.dictionaries(metadata_keys, metadata_values, max_size=4)
memory_ids = st.from_regex(ID_PATTERN, fullmatch=True)
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1))
times = st.one_of(moments.map(lambda moment: moment.date().isoformat()), moments.map(lambda m: m.isoformat() + "Z"))


def _optional(**fields: st.SearchStrategy) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _valid_remember() -> st.SearchStrategy[dict[str, Any]]:
    shared = {"tags": tags, "source": labels, "agent": labels, "namespace": namespaces, "metadata": metadata}
    one = st.builds(lambda text, rest: {"text": text, **rest}, texts, _optional(**shared))
    item = st.builds(lambda text, rest: {"text": text, **rest}, visible, _optional(**shared))
    batch = st.builds(
        lambda items, rest: {"memories": items, **rest}, st.lists(item, min_size=1, max_size=6), _optional(**shared)
    )
    return st.one_of(one, batch)


def _valid_search() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda query, rest: {"query": query, **rest},
        visible,
        _optional(
            top_k=st.integers(1, LIMITS.max_top_k),
            rerank=st.booleans(),
            rerank_top_k=st.integers(1, 8),
            min_score=st.floats(0, 1),
            namespace=st.one_of(namespaces, st.just("*")),
            tags=tags,
            metadata=metadata,
            max_chars=st.integers(40, LIMITS.max_text_bytes),
            agent=labels,
            created_after=times,
            explain=st.booleans(),
        ),
    )


def _valid_rerank() -> st.SearchStrategy[dict[str, Any]]:
    document = st.one_of(visible, st.builds(lambda text, id_: {"text": text, "id": id_}, visible, labels))
    return st.builds(
        lambda query, documents, rest: {"query": query, "documents": documents, **rest},
        visible,
        st.lists(document, min_size=1, max_size=8),
        _optional(top_k=st.integers(1, LIMITS.max_rerank_documents), min_score=st.floats(0, 1), explain=st.booleans()),
    )


def _valid_list() -> st.SearchStrategy[dict[str, Any]]:
    return _optional(
        namespace=st.one_of(namespaces, st.just("*")),
        tags=tags,
        agent=labels,
        metadata=metadata,
        created_before=times,
        limit=st.integers(1, LIMITS.max_list_limit),
        order=st.sampled_from(["newest", "oldest"]),
        max_chars=st.integers(40, LIMITS.max_text_bytes),
    )


def _valid_forget() -> st.SearchStrategy[dict[str, Any]]:
    by_ids = st.builds(
        lambda ids, dry: {"ids": ids, "dry_run": dry}, st.lists(memory_ids, min_size=1, max_size=5), st.booleans()
    )
    by_filter = st.builds(
        lambda rest: {"namespace": SCRATCH_NAMESPACE, "confirm": True, **rest},
        _optional(tags=tags, dry_run=st.booleans(), created_after=times),
    )
    return st.one_of(by_ids, by_filter)


def _valid_update() -> st.SearchStrategy[dict[str, Any]]:
    changes = _optional(text=visible, tags=tags, metadata=metadata).filter(bool)
    return changes.map(lambda change: {"id": SCRATCH, **change})


VALID = {
    "remember": _valid_remember(),
    "search": _valid_search(),
    "rerank": _valid_rerank(),
    "list_memories": _valid_list(),
    "get": st.builds(lambda ids: {"ids": ids}, st.lists(memory_ids, min_size=1, max_size=5)),
    "forget": _valid_forget(),
    "update": _valid_update(),
    "status": _optional(detail=st.booleans()),
}
valid_cases = st.sampled_from(sorted(VALID)).flatmap(lambda tool: VALID[tool].map(lambda args: Case(tool, args)))


# Hostile values. Each is put into a valid call, so the generator knows which field is wrong.


def nested(depth: int, shape: str, leaf: Any) -> Any:
    """A structure ``depth`` levels deep, built in a loop (no recursion, so 100,000 levels cost nothing)."""
    value: Any = leaf
    for _ in range(depth):
        value = [value] if shape == "list" else {"a": value}
    return value


# (tool, field, kind of value the field takes)
FIELDS = [
    ("remember", "text", "str"),
    ("remember", "memories", "list"),
    ("remember", "tags", "list"),
    ("remember", "source", "str"),
    ("remember", "agent", "str"),
    ("remember", "namespace", "str"),
    ("remember", "metadata", "dict"),
    ("search", "query", "str"),
    ("search", "top_k", "int"),
    ("search", "rerank", "bool"),
    ("search", "rerank_top_k", "int"),
    ("search", "min_score", "float"),
    ("search", "namespace", "str"),
    ("search", "tags", "list"),
    ("search", "metadata", "dict"),
    ("search", "max_chars", "int"),
    ("search", "agent", "str"),
    ("search", "created_after", "str"),
    ("search", "created_before", "str"),
    ("search", "explain", "bool"),
    ("rerank", "query", "str"),
    ("rerank", "documents", "list"),
    ("rerank", "top_k", "int"),
    ("rerank", "min_score", "float"),
    ("rerank", "explain", "bool"),
    ("list_memories", "namespace", "str"),
    ("list_memories", "tags", "list"),
    ("list_memories", "metadata", "dict"),
    ("list_memories", "limit", "int"),
    ("list_memories", "order", "str"),
    ("list_memories", "cursor", "str"),
    ("list_memories", "created_after", "str"),
    ("get", "ids", "list"),
    ("forget", "ids", "list"),
    ("forget", "tags", "list"),
    ("forget", "metadata", "dict"),
    ("forget", "confirm", "bool"),
    ("update", "id", "str"),
    ("update", "text", "str"),
    ("update", "tags", "list"),
    ("update", "metadata", "dict"),
    ("status", "detail", "bool"),
]
ACCEPTED = {
    "remember": {"text", "memories", "tags", "source", "agent", "namespace", "metadata"},
    "search": {"query", "top_k", "rerank", "rerank_top_k", "min_score", "namespace", "tags", "metadata", "max_chars"}
    | {"agent", "created_after", "created_before", "diversity", "deadline_ms", "explain"},
    "rerank": {"query", "documents", "top_k", "min_score", "explain"},
    "list_memories": {"namespace", "tags", "agent", "metadata", "created_after", "created_before", "limit", "cursor"}
    | {"order", "max_chars"},
    "get": {"ids"},
    "forget": {
        "ids",
        "namespace",
        "tags",
        "agent",
        "metadata",
        "created_after",
        "created_before",
        "confirm",
        "dry_run",
    },
    "update": {"id", "text", "tags", "metadata"},
    "status": {"detail"},
}
WRONG = {
    "str": [123, 1.5, True, [1], {"a": 1}],
    "int": ["abc", 1.5, [1], {"a": 1}, "1e400"],
    "float": ["abc", [1], {"a": 1}],
    "bool": ["maybe", [1], {"a": 1}, 2],
    "list": ["not json", 5, {"a": 1}, True],
    "dict": ["not json", 5, [1], True],
}
BAD_TEXT = {
    # Values of the right type that break the field's own rule.
    "str": ["", "  \t\n ", "a\x00b", "esc\x1b[0m", "n" * 300],
    "int": [0, -1, 10**30],
    "float": [],
    "bool": [],
    "list": [[], [""], ["\x07"], ["x" * 65]],
    "dict": [{"bad key!": 1}, {"k": None}, {"k": [1]}, {"k": {"a": 1}}, {"k": 2**70}],
}
BAD_TIMES = ["yesterday", "2026-13-01", "2026-02-30", "", "0000-01-01", "2026-05-01T25:00", "1" * 200]
BAD_IDS = ["abc", "mem_XYZ", "mem_" + "0" * 31, "MEM_" + "0" * 32, " mem_" + "0" * 32, ""]


def _base(tool: str) -> dict[str, Any]:
    """The smallest valid call of a tool, for a hostile value to go into."""
    return {
        "remember": {"text": "a memory"},
        "search": {"query": "a query", "rerank": False},
        "rerank": {"query": "a query", "documents": ["a document"]},
        "get": {"ids": ["mem_" + "0" * 32]},
        "forget": {"ids": ["mem_" + "1" * 32], "dry_run": True},
        "update": {"id": SCRATCH, "tags": ["t"]},
    }.get(tool, {})


def _put(tool: str, name: str, value: Any, kind: str) -> Case:
    arguments = _base(tool)
    if tool == "forget" and name != "ids":
        arguments = {"namespace": SCRATCH_NAMESPACE, "dry_run": True}
    if tool == "remember" and name == "memories":
        arguments = {}
    if tool == "update" and name == "id":
        arguments = {"tags": ["t"]}
    arguments[name] = value
    return Case(tool, arguments, name, kind)


@st.composite
def hostile_cases(draw: st.DrawFn) -> Case:
    tool, name, kind = draw(st.sampled_from(FIELDS))
    attack = draw(st.sampled_from(["type", "rule", "deep", "huge", "surrogate", "nonfinite", "unknown"]))
    if attack == "type":
        noise = {"int": st.text("abcxyz", min_size=1), "float": st.text("abcxyz", min_size=1), "bool": st.just("maybe")}
        value = draw(st.one_of(st.sampled_from(WRONG[kind]), noise.get(kind, st.integers())))
        return _put(tool, name, value, "wrong type")
    if attack == "rule" and (BAD_TEXT[kind] or name.startswith("created_")):
        if name.startswith("created_"):
            return _put(tool, name, draw(st.sampled_from(BAD_TIMES)), "bad time")
        if name in ("id", "ids"):
            bad = draw(st.sampled_from(BAD_IDS))
            return _put(tool, name, bad if name == "id" else ["mem_" + "2" * 32, bad], "bad id")
        if name == "order":
            return _put(tool, name, draw(st.sampled_from(["new", "NEWEST", ""])), "broken rule")
        if name == "cursor":
            return _put(tool, name, draw(st.sampled_from(["nope", "", "~~~~"])), "broken rule")
        value = draw(st.sampled_from(BAD_TEXT[kind]))
        if name == "text" and value == "n" * 300:
            value = "x" * (LIMITS.max_text_bytes + 1)
        elif name == "query" and value == "n" * 300:
            value = "q" * (LIMITS.max_query_chars + 1)
        elif name == "tags" and value == []:
            value = [" "]
        elif name == "memories":
            value = draw(
                st.sampled_from(
                    [[], [{"text": ""}], [{"text": "ok", "namespace": "a b"}], [{"text": "ok", "tagz": []}]]
                )
            )
        elif name == "documents":
            value = draw(st.sampled_from([[], ["  "], [{"id": "x"}], [{"text": "t", "extra": 1}]]))
        elif name in ("source", "agent") and isinstance(value, str) and len(value) > 256:
            value = "s" * 257
        elif name in ("source", "agent") and value in ("", "  \t\n "):
            value = "line\nbreak"
        elif kind == "int" and name in ("top_k", "rerank_top_k", "limit") and value == 10**30:
            value = 10**6
        elif name == "max_chars" and value == 10**30:
            value = LIMITS.max_text_bytes + 1
        return _put(tool, name, value, "broken rule")
    if attack == "deep" and kind in ("list", "dict", "str"):
        depth = draw(st.one_of(st.sampled_from([9, 300, 1000, 20_000, 100_000]), st.integers(9, 5000)))
        value = nested(depth, draw(st.sampled_from(["list", "dict"])), draw(visible))
        if name == "memories":
            value = [{"text": "ok", "metadata": {"k": value}}]
        elif name == "documents":
            value = ["fine", value]
        elif kind == "dict":
            value = {"k": value}
        elif kind == "list":
            value = [value]
        return _put(tool, name, value, "deep nesting")
    if attack == "huge" and kind in ("str", "list", "dict"):
        if kind == "str":
            return _put(tool, name, draw(st.sampled_from("xé日")) * draw(st.integers(10**5, 5 * 10**6)), "huge")
        if kind == "list":
            item: Any = {"text": "m"} if name == "memories" else ("d" if name == "documents" else "t")
            return _put(tool, name, [item] * draw(st.integers(10**5, 2 * 10**6)), "huge")
        size = draw(st.integers(LIMITS.max_metadata_keys + 1, 2 * 10**5))
        return _put(tool, name, {f"k{i}": i for i in range(size)}, "huge")
    if attack == "surrogate" and kind in ("str", "list", "dict"):
        lone = draw(st.sampled_from(["\ud800", "\udfff", "\udc80"]))
        text = draw(plain) + lone + draw(plain)
        if kind == "dict":
            value = draw(st.sampled_from([{text: 1}, {"k": text}]))
        elif name == "memories":
            value = [{"text": text}]
        elif kind == "list":
            value = [text]
        else:
            value = text
        return _put(tool, name, value, "lone surrogate")
    if attack == "nonfinite":
        number = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        value = {draw(metadata_keys): number} if kind == "dict" else ([number] if kind == "list" else number)
        return _put(tool, name, value, "non-finite number")
    tool = draw(st.sampled_from(sorted(VALID)))
    unknown = draw(
        st.one_of(
            st.sampled_from(["tag", "texts", "topk", "namespace_", "__proto__"]),
            st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
        ).filter(lambda key: key not in ACCEPTED[tool])
    )
    arguments = _base(tool)
    arguments[unknown] = draw(st.sampled_from(["x", 1, None, [1]]))
    return Case(tool, arguments, unknown, "unknown field")


cases = st.one_of(valid_cases, hostile_cases())


# The server, a client session and the oracles.


@dataclass
class Harness:
    portal: BlockingPortal
    client: Client
    scratch_id: str
    sentinel_ids: list[str]
    tally: Tally = field(default_factory=Tally)

    def call(self, case: Case) -> CallToolResult:
        arguments = {key: self.scratch_id if value == SCRATCH else value for key, value in case.arguments.items()}
        started = time.perf_counter()
        result = self.portal.call(self._call, case.tool, arguments, case.field is None)
        elapsed = time.perf_counter() - started
        self.tally.calls += 1
        self.tally.seconds += elapsed
        self.tally.kinds[case.kind] += 1
        if elapsed > self.tally.slowest:
            self.tally.slowest, self.tally.slowest_case = elapsed, f"{case.tool} {case.kind} {case.field}"
        if case.tool == "update" and not result.is_error and result.structured_content:
            self.scratch_id = result.structured_content["id"]
        return result

    async def _call(self, tool: str, arguments: dict[str, Any], typed: bool) -> CallToolResult:
        with anyio.fail_after(CALL_TIMEOUT_S):
            if typed:
                return await self.client.call_tool(tool, arguments)
            return await raw_call(self.client, tool, arguments)


async def raw_call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """A ``tools/call`` sent through the session's own dispatcher, as it would arrive from any peer. The
    Python client's ``call_tool`` first dumps the request with pydantic, which refuses structures deeper
    than about 250 levels and lone surrogates, so hostile arguments are sent as they are."""
    request = {"method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    options: dict[str, Any] = {}
    client.session._stamp(request, options)  # noqa: SLF001 - the protocol fields call_tool would add
    raw = await client.session._dispatcher.send_raw_request("tools/call", request["params"], options)  # noqa: SLF001
    return CallToolResult.model_validate(raw)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def verdict(case: Case, result: CallToolResult) -> str | None:
    """The oracle: None when the answer is right, else the class of failure."""
    message = text_of(result)
    if case.field is None:
        return f"valid call rejected ({case.tool})" if result.is_error else None
    if not result.is_error:
        return f"hostile call accepted ({case.kind})"
    if any(marker in message for marker in GENERIC) or message.rstrip().endswith(f"Error executing tool {case.tool}"):
        return f"generic error ({case.kind})"
    if case.field not in message:
        return f"field not named ({case.kind})"
    if len(message) > 2000:
        return f"error echoes the input ({case.kind})"
    return None


@pytest.fixture
def harness(
    tmp_path: Path, cross_encoder_path: Path, embedder: Embedder, reranker: LocalCrossEncoder
) -> Iterator[Harness]:
    fuzz_settings = Settings(
        store={"data_dir": tmp_path / "data"},
        reranker={"model": str(cross_encoder_path), "backend": "torch"},
        search={"default_rerank_top_k": 8},
    )
    service = MemoryService(fuzz_settings, embedder=embedder, reranker=reranker)
    server = create_server(fuzz_settings, service=service)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(server)) as client:
        stored = portal.call(
            client.call_tool,
            "remember",
            {"memories": [{"text": text, "tags": ["sentinel"]} for text in SENTINELS], "namespace": SENTINEL_NAMESPACE},
        )
        scratch = portal.call(client.call_tool, "remember", {"text": "a scratch memory", "namespace": UPDATE_NAMESPACE})
        yield Harness(portal, client, scratch.structured_content["ids"][0], stored.structured_content["ids"])
    service.close()


def check_intact(harness: Harness) -> None:
    """The memories stored before the run are all there, unchanged, and found; the server still answers."""
    got = harness.portal.call(harness.client.call_tool, "get", {"ids": harness.sentinel_ids})
    assert not got.is_error, text_of(got)
    assert [memory["text"] for memory in got.structured_content["memories"]] == SENTINELS
    for text, memory_id in zip(SENTINELS, harness.sentinel_ids, strict=True):
        found = harness.portal.call(
            harness.client.call_tool, "search", {"query": text, "namespace": SENTINEL_NAMESPACE, "rerank": False}
        )
        assert found.structured_content["hits"][0]["id"] == memory_id
    status = harness.portal.call(harness.client.call_tool, "status", {})
    assert status.structured_content["namespaces"][SENTINEL_NAMESPACE] == len(SENTINELS)


def run_cases(harness: Harness, examples: int, *, collect: bool) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases)
    def one(case: Case) -> None:
        try:
            result = harness.call(case)
        except TimeoutError:
            failure: str | None = f"no answer within {CALL_TIMEOUT_S:g} s ({case.tool} {case.kind})"
            message = ""
        else:
            failure, message = verdict(case, result), text_of(result)
        if failure is None:
            return
        if not collect:
            raise AssertionError(f"{failure}: {case.tool} {_shown(case.arguments)} -> {message[:500]}")
        harness.tally.failures[failure] += 1
        harness.tally.examples.setdefault(failure, f"{case.tool} {_shown(case.arguments)} -> {message[:300]}")

    one()


def _shown(arguments: dict[str, Any]) -> str:
    text = repr(arguments)
    return text if len(text) < 300 else text[:300] + "…"


def test_generated_calls_are_answered_correctly(harness: Harness):
    started = time.perf_counter()
    run_cases(harness, CI_CASES, collect=False)
    check_intact(harness)
    assert harness.tally.calls >= CI_CASES
    assert time.perf_counter() - started < 300  # the default run stays a CI-sized cost


def test_every_hostile_kind_is_generated():
    """The generator covers what the suite claims: each attack, on every tool."""
    seen: set[tuple[str, str]] = set()

    @settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=hostile_cases())
    def collect(case: Case) -> None:
        seen.add((case.tool, case.kind))

    collect()
    kinds = {kind for _, kind in seen}
    assert {"wrong type", "deep nesting", "huge", "lone surrogate", "non-finite number", "unknown field"} <= kinds
    assert {tool for tool, _ in seen} == set(VALID)


@pytest.mark.long
def test_long_run(harness: Harness):
    """At least 10,000 cases; prints the figures (and writes them to MIMIR_FUZZ_REPORT, if set)."""
    started = time.perf_counter()
    run_cases(harness, LONG_CASES, collect=True)
    wall = time.perf_counter() - started
    check_intact(harness)
    tally = harness.tally
    figures = {
        "cases": tally.calls,
        "wall_s": round(wall, 1),
        "calls_per_s": round(tally.calls / wall, 1),
        "mean_ms": round(1000 * tally.seconds / max(tally.calls, 1), 1),
        "max_latency_s": round(tally.slowest, 3),
        "slowest": tally.slowest_case,
        "kinds": dict(tally.kinds),
        "failures": dict(tally.failures),
        "examples": tally.examples,
    }
    print(json.dumps(figures, indent=1, ensure_ascii=True))
    if os.environ.get("MIMIR_FUZZ_REPORT"):
        Path(os.environ["MIMIR_FUZZ_REPORT"]).write_text(json.dumps(figures, indent=1, ensure_ascii=True))
    assert tally.calls >= LONG_CASES
    assert not tally.failures, tally.examples


# The same refusals over stdio, where the SDK parses each line before any tool code runs.

STDIO_LINES = [
    # (arguments as raw JSON, what the answer must say)
    ('{"text":"x","metadata":{"k":' + "[" * 100_000 + "1" + "]" * 100_000 + "}}", "nested too deeply"),
    ('{"text":"x","metadata":{"k":' + '{"a":' * 1000 + "1" + "}" * 1000 + "}}", "nested too deeply"),
    ('{"text":"x","metadata":{"k":' + "[" * 20 + "1" + "]" * 20 + "}}", "metadata.k"),
    ('{"text":"x","metadata":{"\\ud800":1}}', "lone surrogate"),
    ('{"text":"x\\udfffy"}', "lone surrogate"),
    ('{"text":"x","metadata":{"k":NaN}}', "metadata.k: must be a finite number"),
    ('{"text":"x","metadata":{"k":-Infinity}}', "metadata.k: must be a finite number"),
    ('{"text":"x","metadata":{"k":1e999}}', "metadata.k: must be a finite number"),
    ('{"text":"x","tgas":["a"]}', "tgas: unknown argument"),
    ('{"text":' + '"' + "x" * 100_000 + '"}', "text: is 100000 characters"),
]


# Lines that are not one JSON-RPC request (the SDK drops each without a word): (line, the ids answered, code).
STDIO_RAW_LINES = [
    ("hello", [None], -32700, "not valid JSON (expected value"),
    ('{"jsonrpc":"2.0","id":201,"method":"tools/call","params":{"name":"status"', [201], -32700, "EOF while parsing"),
    ('{"jsonrpc":"2.0","id":' + "9" * 5000 + ',"method":"ping"}', [None], -32700, "number out of range"),
    ('{"foo":1}', [None], -32600, "not a valid JSON-RPC request (jsonrpc: Field required)"),
    ('{"jsonrpc":"2.0","id":202}', [202], -32600, "method: Field required"),
    ('{"jsonrpc":"2.0","id":203,"method":"ping","params":[1]}', [203], -32600, "params: Input should be an object"),
    (
        '[{"jsonrpc":"2.0","id":204,"method":"ping"},{"jsonrpc":"2.0","id":"x","method":"ping"}]',
        [204, "x"],
        -32600,
        "batch",
    ),  # noqa: E501
    ("[]", [None], -32600, "batches are not supported"),
    ('{"jsonrpc":"2.0","method":"notifications/cancelled","params":[1]}', [], 0, ""),  # a notification: no answer
]


def test_stdio_answers_every_hostile_line(tmp_path: Path, cross_encoder_path: Path):
    from .conftest import PYTHON, server_env

    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--no-rerank"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(tmp_path / "data", cross_encoder_path),
    )
    assert process.stdin is not None and process.stdout is not None
    answers: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in process.stdout], daemon=True).start()

    def ask(request_id: int, body: str, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        process.stdin.write(f'{{"jsonrpc":"2.0","id":{request_id},{body}}}\n'.encode())
        process.stdin.flush()
        answer = json.loads(answers.get(timeout=timeout))
        assert answer["id"] == request_id
        return answer

    def call_line(request_id: int, tool: str, arguments: str, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        body = f'"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}'
        return ask(request_id, body, timeout)

    try:
        client = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        ask(0, f'"method":"initialize","params":{json.dumps(client)}', timeout=60)
        process.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        stored = call_line(
            1, "remember", '{"text":"stored before the hostile lines","namespace":"sentinel"}', timeout=120
        )
        memory_id = stored["result"]["structuredContent"]["ids"][0]
        for request_id, (arguments, expected) in enumerate(STDIO_LINES, start=2):
            answer = call_line(request_id, "remember", arguments)
            said = answer["error"]["message"] if "error" in answer else answer["result"]["content"][0]["text"]
            assert "error" in answer or answer["result"]["isError"], said
            assert expected in said, said
        for line, ids, code, expected in STDIO_RAW_LINES:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
            for request_id in ids:
                answer = json.loads(answers.get(timeout=CALL_TIMEOUT_S))
                assert answer["id"] == request_id and answer["error"]["code"] == code, answer
                assert expected in answer["error"]["message"], answer
        assert ask(98, '"method":"ping"')["result"] == {}  # still serving, and nothing more was said
        got = call_line(99, "get", json.dumps({"ids": [memory_id]}))
        assert got["result"]["structuredContent"]["memories"][0]["text"] == "stored before the hostile lines"
    finally:
        process.stdin.close()
        process.wait(timeout=60)
