"""The remote reranker against a real HTTP server on 127.0.0.1 that answers well or misbehaves on purpose,
one route per behaviour: every failure must raise ``RemoteRerankError`` saying what was wrong, within
``timeout_s``, and never show the API key."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import anyio
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mimir_mcp.config import RemoteRerankerSettings
from mimir_mcp.rerank.fallback import rerank_or_fallback
from mimir_mcp.rerank.remote import RemoteReranker, RemoteRerankError, _retry_after_seconds

from .conftest import free_port, served

pytestmark = pytest.mark.anyio

SECRET = "sk-test-SECRET-4242"
# Distinct lengths, so the server's score (length / 10) tells the documents apart.
TEXTS = ["a", "bbbb", "cc", "ddddddd", "eee"]
EXPECTED = [0.1, 0.4, 0.2, 0.7, 0.3]
MARGIN_S = 1.0


# -- the server ---------------------------------------------------------------------------------------


def _relevance(document: str) -> float:
    return len(document) / 10


def _ranked(documents: list[str]) -> list[tuple[int, float]]:
    """(index, score), best first, as rerank APIs answer: not the order the documents were sent in."""
    return sorted(((i, _relevance(d)) for i, d in enumerate(documents)), key=lambda pair: -pair[1])


def _cohere(documents: list[str]) -> dict[str, Any]:
    return {"results": [{"index": i, "relevance_score": s} for i, s in _ranked(documents)]}


@dataclass
class Recorded:
    """What the server saw for one test: each request's route, Authorization header and JSON body."""

    requests: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, _, body in self.requests]


SEEN: dict[str, Recorded] = {}


async def _handle(request: Request) -> Response:
    token, behaviour = request.path_params["token"], request.path_params["behaviour"]
    body = json.loads(await request.body())
    recorded = SEEN.setdefault(token, Recorded())
    recorded.requests.append((behaviour, request.headers.get("authorization"), body))
    attempt = len(recorded.requests)
    documents: list[str] = body.get("documents", body.get("texts", []))

    if behaviour == "cohere":
        return JSONResponse(_cohere(documents))
    if behaviour == "tei":
        return JSONResponse([{"index": i, "score": s} for i, s in _ranked(documents)])
    if behaviour == "simple":
        return JSONResponse({"scores": [_relevance(d) for d in documents]})
    if behaviour == "rankings":
        return JSONResponse({"rankings": [{"index": i, "score": s} for i, s in _ranked(documents)]})
    if behaviour == "slow":
        # Hold the request until the client gives up and disconnects.
        await request.receive()
        return PlainTextResponse("too late")
    if behaviour == "error500":
        return PlainTextResponse("model crashed: CUDA out of memory", status_code=500)
    if behaviour == "echo401":
        return PlainTextResponse(f"invalid api key in header {request.headers.get('authorization')}", status_code=401)
    if behaviour == "flaky429":
        if attempt == 1:
            return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": "0.3"})
        return JSONResponse(_cohere(documents))
    if behaviour == "flaky503":
        if attempt == 1:
            return PlainTextResponse("warming up", status_code=503)
        return JSONResponse(_cohere(documents))
    if behaviour == "always429":
        return PlainTextResponse("rate limited", status_code=429, headers={"Retry-After": "0.05"})
    if behaviour == "late429":
        return PlainTextResponse("come back later", status_code=429, headers={"Retry-After": "10"})
    if behaviour == "malformed":
        return Response('{"results": [{"index": 0,', media_type="application/json")
    results = _cohere(documents)["results"]
    if behaviour == "short":
        return JSONResponse({"results": results[:-1]})
    if behaviour == "out_of_range":
        results[0]["index"] = len(documents) + 2
        return JSONResponse({"results": results})
    if behaviour == "duplicate":
        results[0]["index"] = results[1]["index"]
        return JSONResponse({"results": results})
    if behaviour == "nan":
        results[2]["relevance_score"] = "NaN-marker"
        return Response(json.dumps({"results": results}).replace('"NaN-marker"', "NaN"), media_type="application/json")
    if behaviour == "string_score":
        results[1]["relevance_score"] = "high"
        return JSONResponse({"results": results})
    return PlainTextResponse(f"no behaviour {behaviour!r}", status_code=404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served(Starlette(routes=[Route("/{token}/{behaviour}", _handle, methods=["POST"])]), shutdown_s=1) as url:
        yield url


@dataclass
class Api:
    """One test's view of the server: its own token, so counts never mix between tests."""

    base: str
    recorded: Recorded


@pytest.fixture
def api(server: str) -> Api:
    token = uuid.uuid4().hex
    SEEN[token] = Recorded()
    return Api(base=f"{server}/{token}", recorded=SEEN[token])


Make = Callable[..., RemoteReranker]


@pytest.fixture
async def remote(api: Api) -> AsyncIterator[Make]:
    """Build rerankers aimed at a behaviour's route; their clients are closed after the test."""
    made: list[RemoteReranker] = []

    def make(behaviour: str, **options: Any) -> RemoteReranker:
        options.setdefault("timeout_s", 2.0)
        url = options.pop("url", f"{api.base}/{behaviour}")
        reranker = RemoteReranker(RemoteRerankerSettings(url=url, **options))
        made.append(reranker)
        return reranker

    yield make
    for reranker in made:
        await reranker.aclose()


async def _failure(reranker: RemoteReranker, texts: list[str] = TEXTS) -> tuple[str, float]:
    """The error message of a call that must fail, and how long it took; never waits past the timeout."""
    started = time.perf_counter()
    with anyio.fail_after(reranker.timeout_s + MARGIN_S):
        with pytest.raises(RemoteRerankError) as caught:
            await reranker.score("query", texts)
    return str(caught.value), time.perf_counter() - started


async def _scores(reranker: RemoteReranker, texts: list[str] = TEXTS) -> list[float]:
    with anyio.fail_after(reranker.timeout_s + MARGIN_S):
        return await reranker.score("query", texts)


# -- good answers ---------------------------------------------------------------------------------------


async def test_cohere_scores_come_back_in_input_order(remote: Make, api: Api) -> None:
    reranker = remote("cohere", model="rerank-v3.5")
    assert await _scores(reranker) == EXPECTED
    assert api.recorded.bodies() == [{"model": "rerank-v3.5", "query": "query", "documents": TEXTS, "top_n": 5}]
    assert api.recorded.requests[0][1] is None  # no key configured, no Authorization header
    assert reranker.counters() == {
        "calls": 1,
        "requests": 1,
        "failures": 0,
        "retries": 0,
        "consecutive_failures": 0,
        "last_error": None,
        "last_latency_ms": reranker.counters()["last_latency_ms"],
    }
    assert isinstance(reranker.counters()["last_latency_ms"], float)


async def test_tei_scores_come_back_in_input_order(remote: Make, api: Api) -> None:
    assert await _scores(remote("tei", provider="tei")) == EXPECTED
    assert api.recorded.bodies() == [{"query": "query", "texts": TEXTS, "raw_scores": False, "truncate": True}]


@pytest.mark.parametrize("behaviour", ["simple", "rankings"])
async def test_simple_scores_come_back_in_input_order(remote: Make, api: Api, behaviour: str) -> None:
    assert await _scores(remote(behaviour, provider="simple", model="bge-reranker")) == EXPECTED
    assert api.recorded.bodies() == [{"query": "query", "documents": TEXTS, "model": "bge-reranker"}]


@pytest.mark.parametrize("provider", ["cohere", "tei"])
async def test_more_documents_than_max_documents_are_sent_in_batches(remote: Make, api: Api, provider: str) -> None:
    texts = TEXTS + ["ffffff", "gggggggg"]
    scores = await _scores(remote(provider, provider=provider, max_documents=3), texts)
    assert scores == [0.1, 0.4, 0.2, 0.7, 0.3, 0.6, 0.8]
    key = "documents" if provider == "cohere" else "texts"
    assert [body[key] for body in api.recorded.bodies()] == [texts[0:3], texts[3:6], texts[6:7]]


async def test_no_texts_sends_no_request(remote: Make, api: Api) -> None:
    assert await _scores(remote("cohere"), []) == []
    assert api.recorded.requests == []


# -- retries --------------------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(remote: Make, api: Api) -> None:
    reranker = remote("flaky429", retries=2, timeout_s=3.0)
    started = time.perf_counter()
    assert await _scores(reranker) == EXPECTED
    assert time.perf_counter() - started >= 0.3  # the server's Retry-After was honoured
    assert len(api.recorded.requests) == 2
    counters = reranker.counters()
    assert (counters["calls"], counters["requests"], counters["retries"], counters["failures"]) == (1, 2, 1, 0)


async def test_503_is_retried(remote: Make, api: Api) -> None:
    reranker = remote("flaky503", retries=1)
    assert await _scores(reranker) == EXPECTED
    assert len(api.recorded.requests) == 2
    assert reranker.counters()["retries"] == 1


async def test_429_forever_gives_up_after_the_retries(remote: Make, api: Api) -> None:
    reranker = remote("always429", retries=2, timeout_s=2.0)
    message, seconds = await _failure(reranker)
    assert message == (
        f"the cohere rerank API at {_hostport(api)} answered HTTP 429: 'rate limited' after 2 retries "
        "(remote.retries=2)."
    )
    assert seconds < reranker.timeout_s
    assert len(api.recorded.requests) == 3
    assert reranker.counters()["retries"] == 2
    assert reranker.counters()["failures"] == 1


async def test_a_retry_after_longer_than_the_timeout_gives_up_at_once(remote: Make, api: Api) -> None:
    reranker = remote("late429", retries=3, timeout_s=1.0)
    message, seconds = await _failure(reranker)
    assert "answered HTTP 429: 'come back later'; Retry-After asks for 10 s, more than the" in message
    assert "left of remote.timeout_s (1 s)" in message
    assert seconds < 0.5
    assert len(api.recorded.requests) == 1


async def test_connection_refused_is_retried_then_reported(remote: Make) -> None:
    reranker = remote("cohere", url=f"http://127.0.0.1:{free_port()}/rerank", retries=1)
    message, seconds = await _failure(reranker)
    assert message.startswith("the cohere rerank API at 127.0.0.1:")
    assert "could not connect (ConnectError: " in message
    assert message.endswith("after 1 retry (remote.retries=1).")
    assert seconds < reranker.timeout_s
    assert reranker.counters()["requests"] == 2
    assert reranker.counters()["retries"] == 1


# -- failures that are never retried ---------------------------------------------------------------------


async def test_a_slow_server_is_abandoned_at_the_timeout(remote: Make, api: Api) -> None:
    reranker = remote("slow", timeout_s=0.5)
    message, seconds = await _failure(reranker)
    assert message == (
        f"the cohere rerank API at {_hostport(api)} did not answer within 0.5 s (remote.timeout_s, retries included)."
    )
    assert 0.5 <= seconds < 0.5 + MARGIN_S
    assert reranker.counters()["last_error"] == message


async def test_http_500_is_reported_with_the_body_and_not_retried(remote: Make, api: Api) -> None:
    reranker = remote("error500", retries=3)
    message, _ = await _failure(reranker)
    assert (
        message == f"the cohere rerank API at {_hostport(api)} answered HTTP 500: 'model crashed: CUDA out of memory'"
    )
    assert len(api.recorded.requests) == 1
    assert reranker.counters()["retries"] == 0


@pytest.mark.parametrize(
    ("behaviour", "problem"),
    [
        ("malformed", 'answered with invalid JSON: \'{"results": [{"index": 0,\''),
        ("short", "returned 4 results for 5 documents."),
        ("out_of_range", "result 0 has index 7, outside 0..4 (5 documents)."),
        ("duplicate", "index 1 appears more than once in the results."),
        ("nan", "returned nan as the score of document 4, not a finite number."),
        ("string_score", "returned 'high' as the score of document 1, not a number."),
    ],
)
async def test_a_malformed_answer_is_reported_and_not_retried(
    remote: Make, api: Api, behaviour: str, problem: str
) -> None:
    reranker = remote(behaviour, retries=3)
    message, _ = await _failure(reranker)
    assert message == f"the cohere rerank API at {_hostport(api)} {problem}"
    assert len(api.recorded.requests) == 1
    assert reranker.counters()["failures"] == 1


async def test_an_answer_in_another_providers_shape_is_reported(remote: Make, api: Api) -> None:
    message, _ = await _failure(remote("cohere", provider="tei"))
    expected = "answered an object, not the list of {index, score} that TEI returns."
    assert message == f"the tei rerank API at {_hostport(api)} {expected}"


# -- the key --------------------------------------------------------------------------------------------


async def test_the_key_is_sent_as_a_bearer_token_and_shown_nowhere(
    remote: Make, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = remote("cohere", api_key=SecretStr(SECRET))
    assert await _scores(good) == EXPECTED
    assert api.recorded.requests[0][1] == f"Bearer {SECRET}"

    rejected = remote("echo401", api_key=SecretStr(SECRET))
    message, _ = await _failure(rejected)
    assert (
        message
        == f"the cohere rerank API at {_hostport(api)} answered HTTP 401: 'invalid api key in header Bearer ***'"
    )
    assert api.recorded.requests[1][1] == f"Bearer {SECRET}"  # the server did see it, and echoed it back
    for shown in (message, rejected.status().model_dump_json(), repr(rejected.counters()), caplog.text):
        assert SECRET not in shown
    assert "remote rerank failed" in caplog.text


# -- status, cooldown, fallback -------------------------------------------------------------------------


async def test_status_describes_the_api(remote: Make, api: Api) -> None:
    reranker = remote("cohere", model="rerank-v3.5", max_documents=40)
    assert reranker.unavailable_reason() is None
    assert await reranker.wait_backend(1.0) == "remote"
    assert (reranker.model, reranker.timeout_s, reranker.blend, reranker.backend) == ("rerank-v3.5", 2.0, 1.0, "remote")
    status = reranker.status()
    assert (status.available, status.enabled, status.state, status.error) == (True, True, "ready", None)
    assert (status.device, status.backend) == ("remote", f"remote:cohere {_hostport(api)}")
    assert (status.batch_size, status.max_length, status.model) == (40, None, "rerank-v3.5")


async def test_unconfigured_reranker_says_how_to_configure_it() -> None:
    reranker = RemoteReranker(RemoteRerankerSettings(provider="tei"))
    reason = reranker.unavailable_reason()
    assert reason is not None and "MIMIR_REMOTE_URL" in reason
    status = reranker.status()
    assert (status.available, status.enabled, status.state, status.error) == (False, False, "failed", reason)
    assert (reranker.model, status.backend) == ("tei", "remote:tei")
    with pytest.raises(RemoteRerankError, match="MIMIR_REMOTE_URL"):
        await reranker.score("query", TEXTS)
    outcome = await rerank_or_fallback(reranker, "query", TEXTS)
    assert (outcome.scores, outcome.reason, outcome.attempted) == (None, reason, False)


async def test_failures_in_a_row_start_a_cooldown_and_a_success_ends_it(remote: Make, api: Api) -> None:
    reranker = remote("error500", retries=0)
    reranker.cooldown_after = 2
    await _failure(reranker)
    assert reranker.unavailable_reason() is None
    message, _ = await _failure(reranker)
    reason = reranker.unavailable_reason()
    assert reason is not None and reason.startswith(
        f"the cohere rerank API at {_hostport(api)} failed 2 times in a row"
    )
    assert message in reason
    status = reranker.status()
    assert (status.available, status.state, status.error) == (False, "failed", message)
    outcome = await rerank_or_fallback(reranker, "query", TEXTS)
    assert (outcome.scores, outcome.attempted) == (None, False)
    assert len(api.recorded.requests) == 2  # the cooldown sent nothing

    reranker.cooldown_s = 0.0  # the cooldown is over: the next call tries again
    assert reranker.unavailable_reason() is None


async def test_a_success_resets_the_failures_in_a_row(remote: Make) -> None:
    reranker = remote("flaky503", retries=0)
    await _failure(reranker)
    assert reranker.status().error is not None
    assert await _scores(reranker) == EXPECTED
    counters = reranker.counters()
    assert (counters["calls"], counters["failures"], counters["consecutive_failures"]) == (2, 1, 0)
    assert reranker.status().error is None


async def test_the_fallback_turns_a_misbehaving_server_into_a_reason(remote: Make, api: Api) -> None:
    with anyio.fail_after(2.0 + MARGIN_S):
        outcome = await rerank_or_fallback(remote("error500"), "query", TEXTS)
        good = await rerank_or_fallback(remote("cohere"), "query", TEXTS)
    assert outcome.scores is None and outcome.attempted
    assert outcome.reason == (
        f"the cohere rerank API at {_hostport(api)} answered HTTP 500: 'model crashed: CUDA out of memory'"
    )
    assert (good.scores, good.reason) == (EXPECTED, None)


async def test_the_fallbacks_deadline_abandons_a_slow_server(remote: Make) -> None:
    reranker = remote("slow", timeout_s=0.5)
    with anyio.fail_after(0.5 + MARGIN_S):
        outcome = await rerank_or_fallback(reranker, "query", TEXTS)
    assert outcome.scores is None
    assert outcome.reason == "reranking took longer than 0.5 s (reranker.timeout_s) and was abandoned."
    last_error = reranker.counters()["last_error"]
    assert isinstance(last_error, str)
    # Whichever deadline fires first (the fallback's or the reranker's own), the failure is counted.
    assert "was abandoned by its caller after 0.5" in last_error or "did not answer within 0.5 s" in last_error
    assert reranker.counters()["failures"] == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds("0.25") == 0.25
    in_a_minute = _retry_after_seconds(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 < in_a_minute <= 60
    assert _retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None


def _hostport(api: Api) -> str:
    return api.base.removeprefix("http://").split("/")[0]


# -- through search: remote first, then the local cross-encoder, then the hybrid's order ----------------

DEPLOY_NOTES = [
    "Deploy keys rotate weekly.",
    "Deploy keys for the billing service rotate every Monday at noon.",
    "Deploy keys are stored in the vault; rotation is automated by the platform team since March.",
    "The deploy key of the search cluster rotates monthly.",
]


async def _search_service(tmp_path: Any, remote_url: str, embedder: Any, local: Any, **reranker: Any) -> Any:
    from mimir_mcp.config import Settings
    from mimir_mcp.service.memory import MemoryService

    settings = Settings(
        store={"data_dir": tmp_path / "data"},
        remote={"url": remote_url, "api_key": SECRET, "model": "rerank-test", "timeout_s": 2.0},
        reranker=reranker,
    )
    service = MemoryService(settings, embedder=embedder, reranker=local)
    # Open: a data dir a service before closed would answer its first searches from keywords meanwhile
    # (test_first_start), and these tests compare reranked orders with the hybrid's.
    await service.loader.ready()
    return service


async def test_search_uses_the_remote_api_and_status_shows_it_without_the_key(api: Api, tmp_path, embedder, reranker):
    from mcp import Client

    from mimir_mcp.server.app import create_server

    from .conftest import call

    service = await _search_service(tmp_path, f"{api.base}/cohere", embedder, reranker)
    try:
        async with Client(create_server(service.settings, service=service)) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in DEPLOY_NOTES]})
            found = await call(client, "search", {"query": "deploy key rotation", "top_k": 4, "explain": True})
            assert found["search_method"] == "hybrid+remote_rerank"
            assert found["reranker_model"] == "remote:cohere:rerank-test"
            assert "reranked by the remote reranker remote:cohere:rerank-test" in found["message"]
            # The test server scores a text by its length: the remote order is longest first.
            assert [hit["text"] for hit in found["hits"]] == sorted(DEPLOY_NOTES, key=len, reverse=True)
            assert [hit["scores"]["rerank_score"] for hit in found["hits"]] == [
                len(text) / 10 for text in sorted(DEPLOY_NOTES, key=len, reverse=True)
            ]
            assert api.recorded.requests[0][1] == f"Bearer {SECRET}"
            # The same search again: answered from the score cache, no second request.
            again = await call(client, "search", {"query": "deploy key rotation", "top_k": 4, "explain": True})
            assert [(hit["id"], hit["score"]) for hit in again["hits"]] == [
                (hit["id"], hit["score"]) for hit in found["hits"]
            ]
            assert again["search_method"] == "hybrid+remote_rerank" and len(api.recorded.requests) == 1
            status = await call(client, "status", {"detail": True})
            remote = status["detail"]["remote_reranker"]
            assert remote["state"] == "ready" and remote["counters"]["calls"] == 1
            assert status["detail"]["reranker"]["cache"]["hits"] == 4
            assert SECRET not in json.dumps(status)
            assert SECRET not in json.dumps(await call(client, "status"))
    finally:
        service.close()
        await service.remote.inner.aclose()


async def test_a_failing_remote_api_hands_over_to_the_local_model_then_to_the_hybrid(
    api: Api, tmp_path, embedder, reranker
):
    from mcp import Client

    from mimir_mcp.server.app import create_server

    from .conftest import call

    service = await _search_service(tmp_path, f"{api.base}/error500", embedder, reranker)
    await reranker.wait_ready(120)
    try:
        async with Client(create_server(service.settings, service=service)) as client:
            await call(client, "remember", {"memories": [{"text": text} for text in DEPLOY_NOTES]})
            found = await call(client, "search", {"query": "deploy key rotation", "top_k": 4, "explain": True})
            assert found["search_method"] == "hybrid+rerank"
            assert found["reranker_model"] == reranker.model
            assert (
                "The local cross-encoder stood in because the remote reranker remote:cohere:rerank-test did not "
                in (found["message"])
            )
            assert "HTTP 500" in found["message"] and "CUDA out of memory" in found["message"]
            status = (await call(client, "status", {"detail": True}))["detail"]
            assert status["remote_reranker"]["counters"]["failures"] == 1
            assert "HTTP 500" in status["remote_reranker"]["error"]
    finally:
        service.close()
        await service.remote.inner.aclose()

    # With the local model switched off as well, the answer is the hybrid's order, with both reasons.
    from mimir_mcp.config import RerankerSettings
    from mimir_mcp.rerank import LocalCrossEncoder

    switched_off = LocalCrossEncoder(RerankerSettings(enabled=False, model=reranker.model))
    service = await _search_service(tmp_path, f"{api.base}/malformed", embedder, switched_off)
    try:
        async with Client(create_server(service.settings, service=service)) as client:
            # The remote API still reranks searches, so search offers it; the rerank tool scores with the
            # local model alone, which is off: not listed.
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert "rerank" not in tools and "cross-encoder" in (tools["search"].description or "")
            assert {"rerank", "rerank_top_k", "min_score"} <= set(tools["search"].input_schema["properties"])
            plain = await call(client, "search", {"query": "deploy key rotation", "top_k": 4, "rerank": False})
            found = await call(client, "search", {"query": "deploy key rotation", "top_k": 4, "explain": True})
            assert found["search_method"] == "hybrid" and "reranker_model" not in found  # none: left out
            assert [hit["id"] for hit in found["hits"]] == [hit["id"] for hit in plain["hits"]]
            assert "not reranked: the remote reranker remote:cohere:rerank-test did not score" in found["message"]
            assert "the local cross-encoder: " in found["message"]
    finally:
        service.close()
        await service.remote.inner.aclose()
