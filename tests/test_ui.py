"""The web page's HTTP side (``mimir_mcp.ui``): its files and security headers, its API held to the token's
namespaces and to read-only tokens, cross-site requests refused, live changes filtered by scope, export and
import, the audit log, ``--no-ui``; through a real uvicorn server on 127.0.0.1 on the in-memory store (the
logic; tests/test_ui_browser.py drives the page in Chromium against a real server process)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mimir_mcp.cli.serve import build_parser, settings_overrides
from mimir_mcp.config import AccessSettings, ServerSettings, Settings
from mimir_mcp.server.access import http_app, load_tokens
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.service.scope import OWNER, Scope
from mimir_mcp.store.catalogue import Catalogue
from mimir_mcp.ui.app import IMPORT_LINES, STATIC
from mimir_mcp.ui.feed import BACKLOG, ChangeFeed

from .conftest import on_fakes, served, tokens_file

settings_on_fakes, service_on_fakes = on_fakes()

ALPHA = "alpha-0123456789abcdef"  # namespace alpha
READER = "reader-0123456789abcdef"  # alpha and beta, read-only
ADMIN = "admin-0123456789abcdef"  # every namespace
JSON_BODY = {"Content-Type": "application/json"}


def with_tokens(settings: Settings, tmp_path: Path, **server: object) -> Settings:
    return settings.model_copy(
        update={
            "auth": AccessSettings(
                tokens_file=tokens_file(
                    tmp_path / "tokens.json",
                    ("alpha", ALPHA, ["alpha"], False),
                    ("reader", READER, ["alpha", "beta"], True),
                    ("admin", ADMIN, ["*"], False),
                )
            ),
            "server": ServerSettings(transport=server.pop("transport", "streamable-http"), **server),
        }
    )


@contextmanager
def serving(settings: Settings, service: MemoryService) -> Iterator[str]:
    with served(http_app(create_server(settings, service=service), settings, load_tokens(settings))) as url:
        yield url


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def call(base: str, secret: str, tool: str, arguments: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/ui/api/tools/{tool}", json=arguments, headers={**bearer(secret), **headers})


@pytest.fixture
def page(settings: Settings, service: MemoryService, tmp_path: Path) -> Iterator[str]:
    with serving(with_tokens(settings, tmp_path), service) as base:
        yield base


def test_the_page_is_public_static_and_unframeable(page: str):
    assert httpx.get(f"{page}/ui").status_code == 308
    html = httpx.get(f"{page}/ui/")  # no token needed: the page holds no memory
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    policy = html.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert html.headers["x-frame-options"] == "DENY" and html.headers["x-content-type-options"] == "nosniff"
    # No inline script or style, nothing loaded from elsewhere.
    assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", html.text))
    assert "<style" not in html.text and "http://" not in html.text and "https://" not in html.text
    script = httpx.get(f"{page}/ui/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    # Every text from the server is set as text: the page never parses anything as HTML.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script.text)
    for missing in ["/ui/static/nothing.js", "/ui/static/..%2fapp.py", "/ui/other"]:
        answer = httpx.get(page + missing)
        assert answer.status_code == 404 and answer.headers["x-frame-options"] == "DENY"
    assert sorted(path.name for path in STATIC.iterdir()) == ["app.css", "app.js", "index.html"]


def test_the_api_needs_a_token_and_tells_its_grant(page: str):
    for headers in [{}, bearer("wrong-0123456789abcdef"), {"Authorization": ALPHA}]:
        assert httpx.get(f"{page}/ui/api/session", headers=headers).status_code == 401
    assert httpx.get(f"{page}/ui/api/session?token={ALPHA}").status_code == 401  # never from the URL
    alpha = httpx.get(f"{page}/ui/api/session", headers=bearer(ALPHA)).json()
    assert (alpha["token"], alpha["namespaces"], alpha["read_only"], alpha["can_import"]) == (
        "alpha",
        ["alpha"],
        False,
        True,
    )
    assert set(alpha["tools"]) == {"remember", "search", "list_memories", "get", "forget", "update", "status"}
    assert alpha["reranks"] is False  # the page offers no reranking where nothing reranks
    reader = httpx.get(f"{page}/ui/api/session", headers=bearer(READER)).json()
    assert reader["read_only"] and not reader["can_import"]
    assert set(reader["tools"]) == {"search", "list_memories", "get", "status"}  # (nothing reranks here)
    assert httpx.get(f"{page}/ui/api/session", headers=bearer(ADMIN)).json()["namespaces"] is None


def test_a_token_never_reaches_another_namespace(page: str):
    stored = call(page, ADMIN, "remember", {"text": "Beta ships on Friday.", "namespace": "beta"}).json()
    beta_id = stored["ids"][0]
    assert call(page, ALPHA, "remember", {"text": "Alpha ships on Monday.", "namespace": "alpha"}).status_code == 200
    refused = call(page, ALPHA, "remember", {"text": "sneaky", "namespace": "beta"})
    assert refused.status_code == 403 and "may not use namespace 'beta'" in refused.json()["error"]
    listed = call(page, ALPHA, "list_memories", {"namespace": "beta"})
    assert listed.status_code == 403 and "namespace 'beta'" in listed.json()["error"]
    everything = call(page, ALPHA, "list_memories", {"namespace": "*"}).json()
    assert [memory["namespace"] for memory in everything["memories"]] == ["alpha"]
    assert call(page, ALPHA, "get", {"ids": [beta_id]}).json() == {"memories": [], "not_found": [beta_id]}
    hits = call(page, ALPHA, "search", {"query": "ships", "namespace": "*", "explain": True}).json()["hits"]
    assert [hit["namespace"] for hit in hits] == ["alpha"] and "scores" in hits[0]
    assert call(page, ALPHA, "forget", {"ids": [beta_id]}).json()["not_found"] == [beta_id]
    assert call(page, ADMIN, "get", {"ids": [beta_id]}).json()["memories"][0]["text"] == "Beta ships on Friday."
    names = httpx.get(f"{page}/ui/api/namespaces", headers=bearer(ALPHA)).json()["namespaces"]
    assert [entry["namespace"] for entry in names] == ["alpha"]
    export = httpx.get(f"{page}/ui/api/export?namespace=beta", headers=bearer(ALPHA))
    assert export.status_code == 403 and "namespace 'beta'" in export.json()["error"]


def test_a_read_only_token_changes_nothing(page: str):
    memory_id = call(page, ADMIN, "remember", {"text": "Keep the read replica.", "namespace": "alpha"}).json()["ids"][0]
    for tool, arguments in [
        ("update", {"id": memory_id, "tags": ["x"]}),
        ("forget", {"ids": [memory_id]}),
        ("remember", {"text": "no", "namespace": "alpha"}),
    ]:
        answer = call(page, READER, tool, arguments)
        assert answer.status_code == 404 and "does not offer it" in answer.json()["error"]
    line = json.dumps({"id": "x1", "text": "t", "namespace": "alpha", "created_at": "2026-01-01T00:00:00+00:00"})
    imported = httpx.post(f"{page}/ui/api/import", content=line, headers=bearer(READER))
    assert imported.status_code == 403
    assert "tags" not in call(page, READER, "get", {"ids": [memory_id]}).json()["memories"][0]  # none set


def test_cross_site_requests_are_refused(page: str):
    arguments = {"text": "forged", "namespace": "alpha"}
    forged = call(page, ALPHA, "remember", arguments, Origin="http://evil.example")
    assert forged.status_code == 403
    assert httpx.get(f"{page}/ui/", headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding
    # A form can post text/plain without a preflight; the API takes JSON only.
    as_form = httpx.post(
        f"{page}/ui/api/tools/remember",
        content=json.dumps(arguments),
        headers={**bearer(ALPHA), "Content-Type": "text/plain"},
    )
    assert as_form.status_code == 415
    same_site = call(page, ALPHA, "remember", arguments, Origin=page)
    assert same_site.status_code == 200 and "access-control-allow-origin" not in same_site.headers
    assert call(page, ALPHA, "list_memories", {"namespace": "alpha"}).json()["total"] == 1
    bad = httpx.post(f"{page}/ui/api/tools/search", content=b"[1]", headers={**bearer(ALPHA), **JSON_BODY})
    assert bad.status_code == 400 and bad.json()["error"] == "arguments: must be a JSON object"
    refused = call(page, ALPHA, "search", {"query": "", "namespace": "alpha"})
    assert refused.status_code == 400 and "query" in refused.json()["error"]


def test_changes_through_the_page_are_audited_as_the_page(page: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="mimir_mcp.audit")
    memory_id = call(page, ALPHA, "remember", {"text": "Use UTC in logs.", "namespace": "alpha"}).json()["ids"][0]
    updated = call(page, ALPHA, "update", {"id": memory_id, "tags": ["ops"]}).json()
    assert updated["changed"] == ["tags"] and updated["memory"]["metadata"] == {"written_by": "alpha"}
    call(page, ALPHA, "forget", {"ids": [memory_id]})
    lines = [record.getMessage() for record in caplog.records if record.name == "mimir_mcp.audit"]
    assert len(lines) == 3
    assert all('token=alpha client="mimir-ui/' in line for line in lines)
    assert lines[1].startswith("update ") and lines[2].startswith("forget ") and memory_id in lines[2]


def test_namespaces_show_counts_and_latest_activity(page: str):
    first = call(page, ADMIN, "remember", {"text": "one", "namespace": "n1"}).json()["ids"][0]
    call(page, ADMIN, "remember", {"text": "two", "namespace": "n2"})
    call(page, ADMIN, "remember", {"text": "three", "namespace": "n2"})
    updated = call(page, ADMIN, "update", {"id": first, "tags": ["later"]}).json()["memory"]
    listed = {
        entry["namespace"]: entry
        for entry in httpx.get(f"{page}/ui/api/namespaces", headers=bearer(ADMIN)).json()["namespaces"]
    }
    assert {name: entry["memories"] for name, entry in listed.items()} == {"n1": 1, "n2": 2}
    assert listed["n1"]["latest"] == updated["updated_at"]


def test_catalogue_activity_is_the_latest_store_or_update(tmp_path: Path):
    catalogue = Catalogue(tmp_path / "catalogue.sqlite3")
    from mimir_mcp.models import MemoryRecord

    def record(memory_id: str, namespace: str, created: str, updated: str | None = None) -> MemoryRecord:
        return MemoryRecord(id=memory_id, text=memory_id, namespace=namespace, created_at=created, updated_at=updated)

    catalogue.insert(
        [
            (record("a", "x", "2026-01-01T00:00:00+00:00", "2026-03-01T12:00:00+00:00"), []),
            (record("b", "x", "2026-02-01T00:00:00+00:00"), []),
            (record("c", "y", "2026-01-05T08:30:00+01:00"), []),
        ]
    )
    assert catalogue.namespace_activity() == {
        "x": (2, "2026-03-01T12:00:00.000+00:00"),
        "y": (1, "2026-01-05T07:30:00.000+00:00"),
    }
    catalogue.close()


def test_export_and_import_as_json_lines(page: str):
    texts = ["Deploys freeze on Fridays.", "The API key rotates monthly.", "Ana owns billing."]
    call(page, ALPHA, "remember", {"memories": [{"text": text} for text in texts], "namespace": "alpha", "agent": "a1"})
    exported = httpx.get(f"{page}/ui/api/export?namespace=alpha", headers=bearer(ALPHA))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    assert 'filename="mimir-alpha.jsonl"' in exported.headers["content-disposition"]
    lines = exported.text.splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts  # oldest first
    ids = [json.loads(line)["id"] for line in lines]
    assert call(page, ALPHA, "forget", {"namespace": "alpha", "confirm": True}).json()["removed_count"] == 3

    def send(body: str, first: int = 1, secret: str = ALPHA) -> httpx.Response:
        headers = {**bearer(secret), "Content-Type": "application/x-ndjson", "X-First-Line": str(first)}
        return httpx.post(f"{page}/ui/api/import", content=body, headers=headers)

    assert send("\n".join(lines[:2])).json() == {"read": 2, "stored": 2, "already_present": 0}
    assert send("\n".join(lines), first=1).json() == {"read": 3, "stored": 1, "already_present": 2}
    back = call(page, ALPHA, "get", {"ids": ids}).json()["memories"]
    assert [memory["text"] for memory in back] == texts and all(memory["agent"] == "a1" for memory in back)
    # A bad line is named by its number in the whole file, and nothing of its part is stored.
    fine = json.loads(lines[1]) | {"text": "A new line.", "id": dedup_key("alpha", "A new line.")}
    refused = send(json.dumps(json.loads(lines[0]) | {"text": ""}) + "\n" + json.dumps(fine), first=401)
    assert refused.status_code == 400 and refused.json()["error"].startswith("line 401, text:")
    assert call(page, ALPHA, "get", {"ids": [fine["id"]]}).json()["not_found"] == [fine["id"]]
    beta = json.loads(lines[0]) | {"namespace": "beta", "id": dedup_key("beta", texts[0])}
    elsewhere = send(json.dumps(beta), first=7)
    assert elsewhere.status_code == 403 and "line 7: namespace" in elsewhere.json()["error"]
    too_many = send("\n".join([lines[0]] * (IMPORT_LINES + 1)))
    assert too_many.status_code == 413


@pytest.mark.anyio
async def test_live_changes_reach_only_the_pages_that_may_read_them(
    settings: Settings, service: MemoryService, tmp_path: Path
):
    with serving(with_tokens(settings, tmp_path), service) as base:
        async with httpx.AsyncClient(base_url=base, headers=bearer(ALPHA), timeout=30) as alpha:
            async with alpha.stream("GET", "/ui/api/events") as events:
                assert events.headers["content-type"].startswith("text/event-stream")
                lines = events.aiter_lines()
                with anyio.fail_after(10):
                    assert await anext(lines) == "event: ready"
                await anyio.to_thread.run_sync(
                    lambda: call(base, ADMIN, "remember", {"text": "Beta's secret plan.", "namespace": "beta"})
                )
                stored = await anyio.to_thread.run_sync(
                    lambda: call(base, ADMIN, "remember", {"text": "Alpha's plan.", "namespace": "alpha"})
                )
                alpha_id = stored.json()["ids"][0]
                with anyio.fail_after(10):
                    data = [line async for line in _until_data(lines)]
                assert json.loads(data[0].removeprefix("data: ")) == {
                    "changes": [{"namespace": "alpha", "id": alpha_id}]
                }


async def _until_data(lines):  # noqa: ANN001, ANN202 - an async line iterator
    async for line in lines:
        if line.startswith("data: {") and line != "data: {}":
            yield line
            return


@pytest.mark.anyio
async def test_the_feed_holds_each_page_to_its_scope_and_ends_on_close():
    feed = ChangeFeed()
    async with feed.listen(Scope("a", frozenset({"a"}))) as alpha, feed.listen(OWNER) as owner:
        await feed.changed([("a", "1"), ("b", "2")])
        assert await alpha.receive() == [{"namespace": "a", "id": "1"}]
        assert await owner.receive() == [{"namespace": "a", "id": "1"}, {"namespace": "b", "id": "2"}]
        await feed.changed([("b", "3")])
        assert await owner.receive() == [{"namespace": "b", "id": "3"}]
        for number in range(BACKLOG + 1):  # the owner's page stops reading: past the backlog it is dropped
            await feed.changed([("b", str(number))])
        assert feed.listeners == 1
        received = [await owner.receive() for _ in range(BACKLOG)]
        assert len(received) == BACKLOG
        with pytest.raises(anyio.EndOfStream):
            await owner.receive()
        feed.close()
        with pytest.raises(anyio.EndOfStream):
            await alpha.receive()
    async with feed.listen(OWNER) as late:  # a closed feed ends new streams at once
        with pytest.raises(anyio.EndOfStream):
            await late.receive()


def test_sse_transport_serves_the_page_and_no_ui_serves_none(
    settings: Settings, service: MemoryService, tmp_path: Path
):
    with serving(with_tokens(settings, tmp_path, transport="sse"), service) as base:
        assert httpx.get(f"{base}/ui/").status_code == 200
        assert httpx.get(f"{base}/ui/api/session", headers=bearer(ALPHA)).json()["token"] == "alpha"
    off = settings.model_copy(update={"server": ServerSettings(transport="streamable-http", ui=False)})
    with serving(off, service) as base:
        answer = httpx.get(f"{base}/ui/")
        assert answer.status_code == 404 and "x-frame-options" not in answer.headers
    assert Settings(**settings_overrides(build_parser().parse_args(["--no-ui"]))).server.ui is False
    assert Settings().server.ui is True


def test_without_tokens_a_loopback_page_is_the_owners(settings: Settings, service: MemoryService):
    local = settings.model_copy(update={"server": ServerSettings(transport="streamable-http")})
    with serving(local, service) as base:
        session = httpx.get(f"{base}/ui/api/session").json()
        assert session["token"] is None and session["namespaces"] is None and not session["read_only"]
        assert httpx.get(f"{base}/ui/api/session", headers={"Origin": "http://evil.example"}).status_code == 403


@pytest.mark.anyio
async def test_an_import_is_announced_like_a_remember(service: MemoryService):
    from mimir_mcp.models import MemoryRecord

    heard: list[list[tuple[str, str]]] = []

    async def watcher(changed: list[tuple[str, str]]) -> None:
        heard.append(changed)

    service.watch(watcher)
    record = MemoryRecord(id="imp-1", text="Imported.", namespace="alpha", created_at="2026-01-01T00:00:00+00:00")
    assert await service.import_memories([record], Scope("alpha", frozenset({"alpha"}))) == {"imp-1"}
    assert await service.import_memories([record], OWNER) == set()
    assert heard == [[("alpha", "imp-1")]]
    stored = (await service.get(["imp-1"], max_chars=None)).memories[0]
    assert stored.metadata == {"written_by": "alpha"} and stored.created_at.startswith("2026-01-01")
    with pytest.raises(Exception, match="read-only"):
        await service.import_memories([record], Scope("r", None, read_only=True))
