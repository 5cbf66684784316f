"""Exposing the server: bearer tokens, namespace scopes, Host/Origin allow-lists, the body limit, the
refusal to serve a non-loopback address without tokens, and the audit trail, each through a real
uvicorn server on 127.0.0.1 and real clients (the SDK's streamable-HTTP and SSE clients, raw httpx)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from pydantic import SecretStr

from mimir_mcp.cli.serve import build_parser, settings_overrides
from mimir_mcp.config import AccessSettings, ServerSettings, Settings
from mimir_mcp.errors import AccessDeniedError, NotFoundError
from mimir_mcp.models import MemoryInput, RecordFilter
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.server.access import (
    ExposureError,
    TokenConfigError,
    TokenTable,
    body_limit,
    check_exposure,
    http_app,
    load_tokens,
    parse_tokens,
    read_tokens_file,
    transport_security,
)
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.service.scope import OWNER, Scope

from .conftest import PYTHON, call, call_error, free_port, served, server_env

ALPHA = "alpha-0123456789abcdef"  # may use namespace alpha
MULTI = "multi-0123456789abcdef"  # beta and gamma
ADMIN = "admin-0123456789abcdef"  # every namespace
TOKENS = f"alpha:{ALPHA}:alpha; multi:{MULTI}:beta,gamma; admin:{ADMIN}:*"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextmanager
def serving(settings: Settings, service: MemoryService) -> Iterator[str]:
    """The CLI's HTTP app (``access.http_app``) for ``settings``, served on 127.0.0.1; yields its base URL."""
    with served(http_app(create_server(settings, service=service), settings, load_tokens(settings))) as url:
        yield url


def exposed(settings: Settings, **server: object) -> Settings:
    """``settings`` with the test tokens and the given server settings."""
    return settings.model_copy(
        update={
            "auth": AccessSettings(tokens=SecretStr(TOKENS)),
            "server": ServerSettings(transport=server.pop("transport", "streamable-http"), **server),
        }
    )


@asynccontextmanager
async def connect(base: str, secret: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's streamable-HTTP client with a bearer token; ``mode="legacy"``: the stateful session path."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
            yield client


def initialize(base: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw ``initialize`` POST, as any HTTP client sends it."""
    return httpx.post(f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})})


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- tokens ----------------------------------------------------------------------------------------


def test_tokens_parse_and_never_show_their_secret():
    tokens = parse_tokens("ci:a:b:c-0123456789abcdef:proj1, proj2\nreader:0123456789abcdef-xyz:*;")
    assert [(token.name, token.namespaces) for token in tokens] == [
        ("ci", frozenset({"proj1", "proj2"})),
        ("reader", None),
    ]
    assert "0123456789" not in repr(tokens)
    for bad, expected in [
        ("ci:short:*", "at least 16 characters"),
        ("ci:0123456789abcdef-short", "name:secret:namespaces"),
        ("ci:0123456789abcdef-secret:", "give the namespaces"),
        ("ci:0123456789abcdef-secret:no spaces!", "is not a namespace"),
        ("c i:0123456789abcdef-secret:*", "the name must be"),
    ]:
        with pytest.raises(TokenConfigError, match=expected) as caught:
            parse_tokens(bad)
        assert "0123456789abcdef" not in str(caught.value) and "short:" not in str(caught.value)
    duplicated = Settings(auth={"tokens": "a:0123456789abcdef-1:*;a:0123456789abcdef-2:x"})
    with pytest.raises(TokenConfigError, match="unique: a given more than once"):
        load_tokens(duplicated)


def test_tokens_file_json_and_toml(tmp_path: Path):
    as_json = tmp_path / "tokens.json"
    as_json.write_text(json.dumps({"tokens": [{"name": "ci", "secret": ALPHA, "namespaces": ["alpha"]}]}))
    as_toml = tmp_path / "tokens.toml"
    as_toml.write_text(f'[[tokens]]\nname = "admin"\nsecret = "{ADMIN}"\nnamespaces = ["*"]\n')
    as_json.chmod(0o600)
    as_toml.chmod(0o600)
    assert [t.name for t in read_tokens_file(as_json)] == ["ci"]
    assert read_tokens_file(as_toml)[0].namespaces is None
    both = Settings(auth={"tokens": f"m:{MULTI}:beta", "tokens_file": str(as_toml)})
    assert [t.name for t in load_tokens(both)] == ["m", "admin"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"tokens": [{"name": "x", "secret": "' + ADMIN + '"')
    with pytest.raises(TokenConfigError, match="not valid JSON") as caught:
        read_tokens_file(broken)
    assert ADMIN not in str(caught.value)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MIMIR_AUTH_TOKENS", TOKENS)
    monkeypatch.setenv("MIMIR_AUTH_TOKENS_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("MIMIR_SERVER_ALLOWED_HOSTS", "mimir.lan:8000, 10.0.0.5:*")
    monkeypatch.setenv("MIMIR_SERVER_MAX_BODY_BYTES", "65536")
    settings = Settings()
    assert TOKENS not in repr(settings) and ALPHA not in str(settings)
    assert settings.server.allowed_hosts == ["mimir.lan:8000", "10.0.0.5:*"] and body_limit(settings) == 65536
    with pytest.raises(TokenConfigError, match="none.json: cannot be read"):
        load_tokens(settings)
    monkeypatch.delenv("MIMIR_AUTH_TOKENS_FILE")
    assert [token.name for token in load_tokens(Settings())] == ["alpha", "multi", "admin"]
    flags = "--allowed-hosts a.lan:1,b.lan:* --allowed-origins https://a.lan --max-body-bytes 2048 "
    args = build_parser().parse_args([*flags.split(), "--auth-tokens-file", "t.toml", "--allow-unauthenticated"])
    from_flags = Settings(**settings_overrides(args))
    assert from_flags.server.allowed_hosts == ["a.lan:1", "b.lan:*"] and from_flags.server.max_body_bytes == 2048
    assert from_flags.server.allowed_origins == ["https://a.lan"] and from_flags.auth.allow_unauthenticated
    assert from_flags.auth.tokens_file == Path("t.toml") and from_flags.auth.tokens is not None  # env and file


@pytest.mark.anyio
async def test_token_table_verifies_in_constant_time_by_digest():
    table = TokenTable(parse_tokens(TOKENS))
    granted = await table.verify_token(MULTI)
    assert granted is not None and granted.client_id == "multi" and granted.scopes == ["beta", "gamma"]
    assert granted.token == "multi"  # the secret is not carried along
    assert (await table.verify_token(ADMIN)).scopes == ["*"]  # type: ignore[union-attr]
    for wrong in ["", MULTI[:-1], MULTI + "x", MULTI.upper()]:
        assert await table.verify_token(wrong) is None


# -- refusing to start exposed ----------------------------------------------------------------------


def test_exposure_check(settings: Settings):
    def on(host: str, **auth: object) -> Settings:
        return settings.model_copy(
            update={"server": ServerSettings(transport="streamable-http", host=host), "auth": AccessSettings(**auth)}
        )

    for loopback in ["127.0.0.1", "localhost", "::1", "127.0.0.2"]:
        assert check_exposure(on(loopback), []) is None
    for exposed_host in ["0.0.0.0", "::", "192.168.1.20", "mimir.lan"]:
        with pytest.raises(ExposureError, match="without authentication.*MIMIR_AUTH_TOKENS.*--allow-unauthenticated"):
            check_exposure(on(exposed_host), [])
        assert check_exposure(on(exposed_host), parse_tokens(TOKENS)) is None
        warning = check_exposure(on(exposed_host, allow_unauthenticated=True), [])
        assert warning is not None and "WITHOUT AUTHENTICATION" in warning
    stdio = settings.model_copy(update={"server": ServerSettings(host="0.0.0.0")})
    assert check_exposure(stdio, []) is None


def test_cli_refuses_a_non_loopback_bind_without_tokens(tmp_path: Path, cross_encoder_path: Path):
    """Exits before binding anything or loading a model; with --allow-unauthenticated it warns. The
    address there is TEST-NET-1 (192.0.2.1), never local, so nothing is ever exposed."""
    env = server_env(tmp_path / "data", cross_encoder_path)
    port = str(free_port())
    refused = subprocess.run(
        [PYTHON, "-m", "mimir_mcp", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", port],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to serve streamable-http on 0.0.0.0" in refused.stderr and "MIMIR_AUTH_TOKENS" in refused.stderr
    bad_tokens = subprocess.run(
        [PYTHON, "-m", "mimir_mcp", "--transport", "sse", "--port", port],
        capture_output=True,
        text=True,
        env={**env, "MIMIR_AUTH_TOKENS": "ci:tooshort:*"},
        timeout=60,
    )
    assert bad_tokens.returncode == 2 and "at least 16 characters" in bad_tokens.stderr
    assert "tooshort" not in bad_tokens.stderr
    args = ["--transport", "streamable-http", "--host", "192.0.2.1", "--port", port, "--allow-unauthenticated"]
    process = subprocess.Popen([PYTHON, "-m", "mimir_mcp", *args], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "WITHOUT AUTHENTICATION" in line:
                assert " WARNING " in line
                break
        else:
            raise AssertionError("no warning before the process ended")
    finally:
        process.kill()
        process.wait(timeout=30)


# -- HTTP: tokens, Host/Origin, body size -----------------------------------------------------------


def test_every_request_needs_a_valid_token(settings: Settings, service: MemoryService):
    with serving(exposed(settings), service) as base:
        for headers in [{}, bearer("wrong-0123456789abcdef"), bearer(ALPHA + "x"), {"Authorization": ALPHA}]:
            answer = initialize(base, headers)
            assert answer.status_code == 401, headers
            assert answer.json() == {"error": "invalid_token", "error_description": "Authentication required"}
            assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert httpx.get(f"{base}/mcp", headers=MCP_HEADERS).status_code == 401
        opened = initialize(base, bearer(ALPHA))
        assert opened.status_code == 200
        # A session belongs to the token that opened it: another valid token cannot use it.
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        for secret, status in [(ADMIN, 404), (ALPHA, 200)]:
            answer = httpx.post(f"{base}/mcp", json=listing, headers={**MCP_HEADERS, **bearer(secret), **session})
            assert answer.status_code == status, answer.text


def test_host_and_origin_are_checked_before_the_token(settings: Settings, service: MemoryService):
    """Configured as for 0.0.0.0 with one public name (the server itself listens on 127.0.0.1 here)."""
    public = exposed(settings, host="0.0.0.0", port=8000, allowed_hosts=["mimir.example:8000"])
    security = transport_security(public)
    assert "mimir.example:8000" in security.allowed_hosts and "https://mimir.example:8000" in security.allowed_origins
    with serving(public, service) as base:
        assert initialize(base, {**bearer(ALPHA), "Host": "evil.example"}).status_code == 421
        assert initialize(base, {"Host": "evil.example"}).status_code == 421  # no token: still 421, not 401
        assert initialize(base, {**bearer(ALPHA), "Host": "mimir.example:8000"}).status_code == 200
        assert (
            initialize(
                base, {**bearer(ALPHA), "Host": "mimir.example:8000", "Origin": "https://evil.example"}
            ).status_code
            == 403
        )
        same_site = {**bearer(ALPHA), "Host": "mimir.example:8000", "Origin": "https://mimir.example:8000"}
        assert initialize(base, same_site).status_code == 200
        assert initialize(base, bearer(ALPHA)).status_code == 200  # 127.0.0.1:PORT, a loopback name
        # A loopback origin's port is digits and nothing after them (the SDK's "host:*" matches a prefix).
        port = base.rsplit(":", 1)[1]
        assert initialize(base, {**bearer(ALPHA), "Origin": f"http://127.0.0.1:{port}"}).status_code == 200
        for lookalike in (f"http://127.0.0.1:{port}.evil.example", "http://localhost:1@evil.example"):
            assert initialize(base, {**bearer(ALPHA), "Origin": lookalike}).status_code == 403, lookalike
        assert initialize(base, {**bearer(ALPHA), "Host": f"127.0.0.1:{port}.evil.example"}).status_code == 421


def test_the_access_log_never_shows_a_query_string():
    """A client may put a secret in the URL; the access log line keeps the path only."""
    from mimir_mcp.cli.serve import without_query_string

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/mcp?token=alpha-0123456789abcdef", "1.1", 401), None,
    )  # fmt: skip
    assert without_query_string(record) and ALPHA not in record.getMessage()
    assert '"POST /mcp?… HTTP/1.1" 401' in record.getMessage()


def test_a_body_over_the_limit_gets_413_before_it_is_read(settings: Settings, service: MemoryService):
    with serving(exposed(settings, max_body_bytes=4096), service) as base:
        padded = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * 5000}}
        big = json.dumps(padded).encode()
        declared = httpx.post(f"{base}/mcp", content=big, headers={**MCP_HEADERS, **bearer(ALPHA)})
        assert declared.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        streamed = httpx.post(f"{base}/mcp", content=chunks(), headers={**MCP_HEADERS, **bearer(ALPHA)})
        assert streamed.status_code == 413
        assert initialize(base, bearer(ALPHA)).status_code == 200  # a small body passes
        # A body that is not UTF-8 is refused, with where (over stdio: tests/test_transports.py).
        bad = json.dumps(INITIALIZE).encode().replace(b'"raw"', b'"r\xffw"')
        assert bad != json.dumps(INITIALIZE).encode()
        refused = httpx.post(f"{base}/mcp", content=bad, headers={**MCP_HEADERS, **bearer(ALPHA)})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == -32700
        assert "column" in refused.json()["error"]["message"], refused.text


def test_the_default_body_limit_fits_the_largest_valid_remember():
    settings = Settings()
    text = '"' * settings.limits.max_text_bytes  # the worst case: every byte escaped
    batch = {"memories": [{"text": text, "tags": ["t"] * settings.limits.max_tags}] * settings.limits.max_batch}
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "remember", "arguments": batch}}
    assert len(json.dumps(request).encode()) < body_limit(settings) < 20 * 1024 * 1024


# -- namespace scopes ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tokens_are_confined_to_their_namespaces(settings: Settings, service: MemoryService, caplog):
    caplog.set_level(logging.INFO, logger="mimir_mcp.audit")
    with serving(exposed(settings), service) as base:
        async with (
            connect(base, ADMIN) as admin,
            connect(base, ALPHA) as alpha,
            connect(base, MULTI, "legacy") as multi,
        ):
            ids = {}
            for namespace in ["alpha", "beta", "gamma"]:
                stored = await call(
                    admin,
                    "remember",
                    {
                        "text": f"The {namespace} deploy key rotates every month.",
                        "namespace": namespace,
                        "tags": ["ops"],
                    },
                )
                ids[namespace] = stored["ids"][0]

            # Writing outside the scope: refused, in the same words whether the namespace holds anything.
            refused = await call_error(alpha, "remember", {"text": "sneaky", "namespace": "beta"})
            empty = await call_error(alpha, "remember", {"text": "sneaky", "namespace": "zeta"})
            assert refused == (
                "Error executing tool remember: namespace: the token 'alpha' may not use namespace 'beta' "
                "(it may use: alpha)"
            )
            assert refused.replace("beta", "zeta") == empty
            batch = await call_error(
                alpha,
                "remember",
                {"memories": [{"text": "ok"}, {"text": "no", "namespace": "beta"}], "namespace": "alpha"},
            )
            assert "remember: memories[1].namespace: the token" in batch
            assert "may not use namespace 'beta'" in await call_error(
                alpha, "search", {"query": "deploy key", "namespace": "beta"}
            )
            assert "may not use" in await call_error(alpha, "list_memories", {"namespace": "gamma"})
            assert "may not use" in await call_error(alpha, "forget", {"namespace": "gamma", "dry_run": True})

            # 'Every namespace' means every namespace of the token.
            async def seen(client: Client, tool: str, **arguments: object) -> set[str]:
                if tool == "search":
                    hits = (await call(client, "search", {"query": "deploy key", "rerank": False, **arguments}))["hits"]
                else:
                    hits = (await call(client, "list_memories", arguments))["memories"]
                return {hit["namespace"] for hit in hits}

            assert await seen(alpha, "search", namespace="*") == {"alpha"}
            assert await seen(multi, "search", namespace="*") == {"beta", "gamma"}
            assert await seen(multi, "search", namespace="*", tags=["ops"]) == {"beta", "gamma"}
            assert await seen(admin, "search", namespace="*") == {"alpha", "beta", "gamma"}
            assert await seen(multi, "list_memories", namespace="*") == {"beta", "gamma"}

            # Resources follow the same scopes: listed, read and subscribed only within the token's namespaces.
            from mcp.shared.exceptions import MCPError

            from mimir_mcp.server.resources import memory_uri

            listed = {str(resource.uri) for resource in (await alpha.list_resources()).resources}
            assert "memory://alpha" in listed and memory_uri("alpha", ids["alpha"]) in listed
            assert not any("beta" in uri or "gamma" in uri for uri in listed)
            assert "alpha deploy key" in (await alpha.read_resource(memory_uri("alpha", ids["alpha"]))).contents[0].text
            for forbidden in (memory_uri("beta", ids["beta"]), "memory://gamma"):
                with pytest.raises(MCPError, match="may not use namespace"):
                    await alpha.read_resource(forbidden)
            with pytest.raises(MCPError, match="may not use namespace 'alpha'"):
                await multi.session.subscribe_resource("memory://alpha")
            # The 2026-07-28 stream too: no hearing of another namespace's changes.
            for forbidden in ("memory://beta", memory_uri("beta", ids["beta"])):
                with pytest.raises(MCPError, match="may not use namespace 'beta'"):
                    async with alpha.listen(resource_subscriptions=[forbidden]):
                        pass
            assert (await call(multi, "list_memories", {"namespace": "*"}))["total"] == 2

            # Ids of other namespaces read as never stored.
            unknown = "mem_" + "0" * 32
            got = await call(alpha, "get", {"ids": [ids["beta"], ids["alpha"], unknown]})
            assert [m["id"] for m in got["memories"]] == [ids["alpha"]] and got["not_found"] == [ids["beta"], unknown]
            missing = await call_error(alpha, "update", {"id": unknown, "tags": ["x"]})
            hidden = await call_error(alpha, "update", {"id": ids["beta"], "tags": ["x"]})
            assert hidden == missing.replace(unknown, ids["beta"])
            forgot = await call(alpha, "forget", {"ids": [ids["beta"], unknown]})
            assert forgot["removed_count"] == 0 and forgot["not_found"] == [ids["beta"], unknown]
            assert forgot["message"] == "removed 0 memories; 2 ids were not stored"
            # A filter with no namespace covers the token's namespaces only.
            by_tag = await call(multi, "forget", {"tags": ["ops"]})
            assert sorted(by_tag["ids"]) == sorted([ids["beta"], ids["gamma"]])
            assert "not_found" not in await call(admin, "get", {"ids": [ids["alpha"]]})  # left out when empty

            status = await call(alpha, "status")
            assert status["namespaces"] == {"alpha": 1} and status["memories"] == 1
            detail = (await call(alpha, "status", {"detail": True}))["detail"]  # the full report is confined too
            assert detail["store"]["namespaces"] == {"alpha": 1} and detail["store"]["memories"] == 1
            assert (await call(admin, "status"))["memories"] == 1

            # Who wrote: the token's name in the memory (what the client sends is replaced), and the audit log.
            mine = await call(
                alpha,
                "remember",
                {
                    "text": "Alpha ships on Friday.",
                    "namespace": "alpha",
                    "agent": "planner",
                    "metadata": {"written_by": "someone-else"},
                },
            )
            record = (await call(alpha, "get", {"ids": mine["ids"]}))["memories"][0]
            assert record["metadata"] == {"written_by": "alpha"} and record["agent"] == "planner"
            updated = await call(admin, "update", {"id": mine["ids"][0], "tags": ["release"]})
            assert updated["memory"]["metadata"] == {"written_by": "admin"}
            await call(alpha, "forget", {"ids": [updated["id"]]})
    lines = [record.getMessage() for record in caplog.records if record.name == "mimir_mcp.audit"]
    assert any(line.startswith("forget token=multi ") and ids["beta"] in line for line in lines), lines
    assert any(line.startswith("remember token=alpha ") and "agents=planner" in line for line in lines), lines
    assert any(line.startswith("update token=admin ") for line in lines), lines
    assert not any(secret in line for line in lines for secret in (ALPHA, MULTI, ADMIN))


@pytest.mark.anyio
async def test_no_bm25_figure_tells_a_token_what_another_namespace_holds(settings: Settings, service: MemoryService):
    """BM25's statistics come from the namespaces the caller searches: alpha's token cannot tell a word
    only beta holds from one stored nowhere, and beta's writes do not move alpha's scores."""
    with serving(exposed(settings), service) as base:
        async with connect(base, ADMIN) as admin, connect(base, ALPHA) as alpha:
            await call(
                admin,
                "remember",
                {
                    "memories": [{"text": f"Alpha note {i}: the lake trip is on day {i}."} for i in range(6)],
                    "namespace": "alpha",
                },
            )
            await call(
                admin,
                "remember",
                {"memories": [{"text": f"Beta: zebra merger codename {i}."} for i in range(6)], "namespace": "beta"},
            )

            async def figures(query: str, namespace: str) -> tuple:
                """What the search shows of its BM25 arms (the dense arm reads the query's own words)."""
                arguments = {"query": f"lake trip {query}", "namespace": namespace, "rerank": False, "explain": True}
                found = await call(alpha, "search", arguments)
                lexical = {
                    hit["id"]: {
                        key: value for key, value in hit["scores"].items() if key.startswith(("bm25", "context"))
                    }
                    for hit in found["hits"]
                }
                coverage = {arm: value for arm, value in found["fusion"]["coverage"].items() if arm != "dense"}
                assert lexical and coverage.get("bm25")
                return lexical, coverage, found["fusion"].get("context")

            for namespace in ("alpha", "*"):
                only_in_beta, nowhere = await figures("zebra", namespace), await figures("quokkas", namespace)
                assert only_in_beta == nowhere, namespace
            before = await figures("zebra", "alpha")
            await call(admin, "remember", {"text": "Beta: the lake lake lake trip zebra.", "namespace": "beta"})
            assert await figures("zebra", "alpha") == before


@pytest.mark.anyio
async def test_a_token_of_one_namespace_works_there_when_a_call_names_none(settings: Settings, service: MemoryService):
    """'default' is what a call naming no namespace means, and a token held to other namespaces may not use it:
    held to one, its calls go there; held to several, it is told which it may use."""
    with serving(exposed(settings), service) as base:
        async with connect(base, ALPHA) as alpha, connect(base, MULTI) as multi:
            stored = await call(alpha, "remember", {"memories": [{"text": "Alpha's build runs nightly."}]})
            assert (await call(alpha, "get", {"ids": stored["ids"]}))["memories"][0]["namespace"] == "alpha"
            found = await call(alpha, "search", {"query": "nightly build"})
            assert [hit["id"] for hit in found["hits"]] == stored["ids"] and "namespace" not in found["hits"][0]
            assert (await call(alpha, "list_memories", {}))["total"] == 1
            # Named, a namespace is as given: checked, never replaced.
            assert "may not use namespace 'default'" in await call_error(
                alpha, "search", {"query": "nightly build", "namespace": "default"}
            )
            refused = await call_error(multi, "search", {"query": "nightly build"})
            assert "may not use namespace 'default' (it may use: beta, gamma)" in refused
            # And the tool list it is sent says so.
            for client, home in ((alpha, "alpha"), (multi, "default")):
                tools = {tool.name: tool.input_schema["properties"] for tool in (await client.list_tools()).tools}
                assert tools["search"]["namespace"]["default"] == tools["list_memories"]["namespace"]["default"] == home
                assert f"default '{home}'" in tools["remember"]["namespace"]["description"]
                assert "default" not in tools["forget"]["namespace"]  # unset: every namespace the token may use


@pytest.mark.anyio
async def test_the_service_holds_every_call_to_the_callers_scope(service: MemoryService):
    """The policy lives in the service: called directly with a scope, it refuses and hides exactly as the
    tools do over HTTP with that token."""
    alpha = Scope("alpha", frozenset({"alpha"}))
    beta_id = (await service.remember([MemoryInput(text="The beta key rotates monthly.", namespace="beta")])).ids[0]
    denied = "namespace: the token 'alpha' may not use namespace 'beta' (it may use: alpha)"
    with pytest.raises(AccessDeniedError, match=re.escape(denied)):
        await service.search(SearchRequest(query="key", top_k=5, rerank=False, rerank_top_k=5, namespace="beta"), alpha)
    with pytest.raises(AccessDeniedError, match=re.escape(denied)):
        await service.list_memories(
            RecordFilter(namespace="beta"), limit=5, cursor=None, newest_first=True, max_chars=None, scope=alpha
        )
    with pytest.raises(AccessDeniedError, match=re.escape(denied)):
        await service.forget(None, RecordFilter(namespace="beta"), confirm=True, dry_run=True, scope=alpha)
    with pytest.raises(AccessDeniedError, match=re.escape(denied)):
        await service.remember([MemoryInput(text="sneaky", namespace="beta")], alpha, field="")
    with pytest.raises(AccessDeniedError, match=re.escape(f"memories[1].{denied}")):
        batch = [MemoryInput(text="fine", namespace="alpha"), MemoryInput(text="sneaky", namespace="beta")]
        await service.remember(batch, alpha)

    # A memory outside the scope reads as one never stored; "every namespace" is the scope's.
    unknown = "mem_" + "0" * 32
    assert (await service.get([beta_id, unknown], max_chars=None, scope=alpha)).not_found == [beta_id, unknown]
    with pytest.raises(NotFoundError) as hidden:
        await service.update(beta_id, tags=["x"], scope=alpha)
    with pytest.raises(NotFoundError) as missing:
        await service.update(unknown, tags=["x"], scope=alpha)
    assert str(hidden.value) == str(missing.value).replace(unknown, beta_id)
    forgot = await service.forget([beta_id], None, confirm=False, dry_run=False, scope=alpha)
    assert (forgot.removed_count, forgot.not_found) == (0, [beta_id])
    everywhere = await service.search(
        SearchRequest(query="key", top_k=5, rerank=False, rerank_top_k=5, namespace=None), alpha
    )
    assert everywhere.hits == []
    confined = await service.status(alpha)
    assert confined.store.namespaces == {}
    # The server's activity (searches, the reranker's queue and cache) is everyone's: not for a confined token.
    assert confined.search is None and confined.reranker.queue is None and confined.reranker.cache is None
    owner = await service.status(OWNER)
    assert owner.search is not None and owner.search.searches >= 1 and owner.reranker.queue is not None
    assert await service.namespace_counts(alpha) == {}

    # Its writes are signed with its name; the owner's are not, and the owner sees everything.
    mine = (await service.remember([MemoryInput(text="Alpha ships Friday.", namespace="alpha")], alpha)).ids[0]
    assert (await service.get([mine], max_chars=None)).memories[0].metadata == {"written_by": "alpha"}
    assert (await service.get([beta_id], max_chars=None, scope=OWNER)).memories[0].metadata == {}
    assert await service.namespace_counts() == {"alpha": 1, "beta": 1}


@pytest.mark.anyio
async def test_sse_needs_a_token_too(settings: Settings, service: MemoryService):
    with serving(exposed(settings, transport="sse"), service) as base:
        assert httpx.get(f"{base}/sse").status_code == 401
        assert httpx.post(f"{base}/messages/?session_id=0", json={}).status_code == 401
        async with Client(sse_client(f"{base}/sse", headers=bearer(ALPHA)), mode="legacy") as alpha:
            await call(alpha, "remember", {"text": "SSE clients are confined too.", "namespace": "alpha"})
            assert "may not use" in await call_error(alpha, "remember", {"text": "no", "namespace": "beta"})
            listed = await call(alpha, "list_memories", {"namespace": "*"})
            assert [m["metadata"] for m in listed["memories"]] == [{"written_by": "alpha"}]
