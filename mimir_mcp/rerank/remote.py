"""A hosted rerank API (Cohere and the services that answer like it, Text Embeddings Inference, or a plain
``{"scores": [...]}`` endpoint) behind the ``Reranker`` protocol.

Every answer is checked before it is trusted: one score per document, each index once and in range, every
score a finite number. Anything else raises ``RemoteRerankError`` with a message that says what was wrong,
so the fallback can report it. Only failures where the request certainly did no work or the server asked
for a retry (a connection error, 429, 503) are retried, and the whole call, retries and waits included,
stays within ``timeout_s``.
"""

from __future__ import annotations

import logging
import math
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from mimir_mcp.config import RemoteRerankerSettings
from mimir_mcp.status_models import RerankerStatus

logger = logging.getLogger(__name__)

# Statuses that mean "not now" rather than "not this request": retrying them is safe and may succeed.
RETRY_STATUSES = frozenset({429, 503})
# First wait before retrying a refused connection or a 503 without Retry-After; doubles each time.
FIRST_BACKOFF_S = 0.1
# How much of an error body goes into a message: enough to read the server's reason, not a page of HTML.
BODY_EXCERPT_CHARS = 200
NOT_CONFIGURED = "no remote rerank API is configured; set MIMIR_REMOTE_URL (and MIMIR_REMOTE_API_KEY if it needs one)."


class RemoteRerankError(Exception):
    """A remote rerank call failed; the message says what the server did wrong (never the API key)."""


class RemoteReranker:
    """Scores through a hosted rerank API, over one shared ``httpx.AsyncClient``.

    After ``cooldown_after`` failed calls in a row, ``unavailable_reason`` reports the API as down for
    ``cooldown_s`` seconds, so searches stop paying a timeout each; the first call after that tries again,
    and one success ends the cooldown.
    """

    backend = "remote"

    def __init__(
        self,
        settings: RemoteRerankerSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        cooldown_after: int = 3,
        cooldown_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.model = settings.model or settings.provider
        self.timeout_s = settings.timeout_s
        self.cooldown_after = cooldown_after
        self.cooldown_s = cooldown_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._secret = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        self._host = _host(settings.url) if settings.url else ""
        self._calls = 0
        self._requests = 0
        self._failures = 0
        self._retries = 0
        self._consecutive_failures = 0
        self._last_failure_at: float | None = None
        self._last_error: str | None = None
        self._last_latency_ms: float | None = None

    @property
    def blend(self) -> float:
        """The API's order alone: its scores are not calibrated against the hybrid's."""
        return 1.0

    def start(self) -> None:
        """Nothing to load; the client opens on the first request, inside the running event loop."""

    def unavailable_reason(self) -> str | None:
        if not self.settings.url:
            return NOT_CONFIGURED
        if self._cooling_down():
            left = self.cooldown_s - (time.monotonic() - (self._last_failure_at or 0.0))
            return (
                f"the {self._describe_api()} failed {self._consecutive_failures} times in a row "
                f"(last: {self._last_error}); it is tried again in {left:.0f} s."
            )
        return None

    async def wait_ready(self, timeout: float) -> None:
        """Nothing to wait for: a remote API is either configured or not."""

    async def wait_backend(self, timeout: float) -> str:
        return self.backend

    async def score(self, query: str, texts: list[str]) -> list[float]:
        """Scores in input order; more than ``max_documents`` texts are sent in several requests."""
        if not self.settings.url:
            raise RemoteRerankError(NOT_CONFIGURED)
        if not texts:
            return []
        self._calls += 1
        started = time.perf_counter()
        deadline = anyio.current_time() + self.timeout_s
        size = self.settings.max_documents
        try:
            with anyio.fail_after(self.timeout_s):
                scores: list[float] = []
                for first in range(0, len(texts), size):
                    scores.extend(await self._score_batch(query, texts[first : first + size], deadline))
        except TimeoutError:
            message = (
                f"the {self._describe_api()} did not answer within {self.timeout_s:g} s "
                "(remote.timeout_s, retries included)."
            )
            self._failed(started, message)
            raise RemoteRerankError(message) from None
        except RemoteRerankError as exc:
            self._failed(started, str(exc))
            raise
        except anyio.get_cancelled_exc_class():
            # The caller's own deadline, or a shutdown: still a call that did not score.
            elapsed = time.perf_counter() - started
            self._failed(
                started, f"the call to the {self._describe_api()} was abandoned by its caller after {elapsed:.2f} s."
            )
            raise
        self._consecutive_failures = 0
        self._last_latency_ms = (time.perf_counter() - started) * 1000
        return scores

    def status(self) -> RerankerStatus:
        reason = self.unavailable_reason()
        failing = self._consecutive_failures > 0
        return RerankerStatus(
            available=reason is None,
            enabled=bool(self.settings.url),
            model=self.model,
            device="remote",
            state="ready" if reason is None else "failed",
            error=reason if not self.settings.url else (self._last_error if failing else None),
            backend=f"remote:{self.settings.provider} {self._host}".rstrip(),
            batch_size=self.settings.max_documents,
            max_length=None,
            blend=self.blend,
            blend_source="default (the remote API's order alone)",
        )

    def counters(self) -> dict[str, object]:
        """Calls of ``score``, HTTP requests, failed calls, retries, and the last error and latency."""
        return {
            "calls": self._calls,
            "requests": self._requests,
            "failures": self._failures,
            "retries": self._retries,
            "consecutive_failures": self._consecutive_failures,
            "last_error": self._last_error,
            "last_latency_ms": None if self._last_latency_ms is None else round(self._last_latency_ms, 1),
        }

    async def aclose(self) -> None:
        """Close the shared client; a later ``score`` opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- one request ------------------------------------------------------------------------------------

    async def _score_batch(self, query: str, texts: list[str], deadline: float) -> list[float]:
        body = await self._post(self._payload(query, texts), deadline)
        return self._parse(body, len(texts))

    def _payload(self, query: str, texts: list[str]) -> dict[str, Any]:
        provider = self.settings.provider
        if provider == "tei":
            # truncate: TEI refuses a text longer than the model's window unless asked to cut it.
            return {"query": query, "texts": texts, "raw_scores": False, "truncate": True}
        payload: dict[str, Any] = {"query": query, "documents": texts}
        if provider == "cohere":
            payload["top_n"] = len(texts)
        if self.settings.model:
            payload["model"] = self.settings.model
        return payload

    async def _post(self, payload: dict[str, Any], deadline: float) -> Any:
        """POST with retries where they are safe; returns the decoded JSON of a 2xx answer."""
        assert self.settings.url is not None
        client = self._http()
        retries = 0
        while True:
            self._requests += 1
            retry_after: float | None = None
            try:
                response = await client.post(self.settings.url, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problem = f"could not connect ({self._describe_exception(exc)})"
            except httpx.TimeoutException:
                raise TimeoutError from None
            except httpx.HTTPError as exc:
                raise self._error(f"failed during the request ({self._describe_exception(exc)})") from None
            else:
                if response.status_code not in RETRY_STATUSES:
                    return self._decode(response)
                problem = f"answered HTTP {response.status_code}{self._excerpt(response)}"
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            if retries >= self.settings.retries:
                tried = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
                raise self._error(f"{problem}{tried} (remote.retries={self.settings.retries}).")
            wait = retry_after if retry_after is not None else FIRST_BACKOFF_S * 2**retries
            left = deadline - anyio.current_time()
            if wait >= left:
                asked = f"Retry-After asks for {wait:g} s" if retry_after is not None else f"a retry in {wait:g} s"
                raise self._error(
                    f"{problem}; {asked}, more than the {max(left, 0.0):.2f} s left of "
                    f"remote.timeout_s ({self.timeout_s:g} s)."
                )
            retries += 1
            self._retries += 1
            logger.warning("%s; retry %d of %d in %.2f s", self._redact(problem), retries, self.settings.retries, wait)
            await anyio.sleep(wait)

    def _decode(self, response: httpx.Response) -> Any:
        if not response.is_success:
            raise self._error(f"answered HTTP {response.status_code}{self._excerpt(response)}")
        try:
            return response.json()
        except ValueError:
            raise self._error(f"answered with invalid JSON{self._excerpt(response)}") from None

    # -- checking the answer ----------------------------------------------------------------------------

    def _parse(self, body: Any, count: int) -> list[float]:
        provider = self.settings.provider
        if provider == "tei":
            if not isinstance(body, list):
                raise self._error(f"answered {_kind(body)}, not the list of {{index, score}} that TEI returns.")
            return self._by_index(body, count, "score")
        if not isinstance(body, dict):
            raise self._error(f"answered {_kind(body)}, not a JSON object.")
        if provider == "cohere":
            if not isinstance(body.get("results"), list):
                raise self._error(f"answered an object without a 'results' list (keys: {_keys(body)}).")
            return self._by_index(body["results"], count, "relevance_score")
        if isinstance(body.get("scores"), list):
            return self._in_order(body["scores"], count)
        for key in ("results", "rankings"):
            if isinstance(body.get(key), list):
                return self._by_index(body[key], count, "score")
        raise self._error(f"answered an object without a 'scores', 'results' or 'rankings' list (keys: {_keys(body)}).")

    def _in_order(self, values: list[Any], count: int) -> list[float]:
        if len(values) != count:
            raise self._error(f"returned {len(values)} scores for {count} documents.")
        return [self._number(value, f"score {position}") for position, value in enumerate(values)]

    def _by_index(self, results: list[Any], count: int, score_key: str) -> list[float]:
        if len(results) != count:
            raise self._error(f"returned {len(results)} results for {count} documents.")
        scores: list[float | None] = [None] * count
        for position, item in enumerate(results):
            if not isinstance(item, dict):
                raise self._error(f"result {position} is {_kind(item)}, not an object with 'index' and '{score_key}'.")
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                raise self._error(f"result {position} has no integer 'index' (got {_short(index)}).")
            if not 0 <= index < count:
                raise self._error(f"result {position} has index {index}, outside 0..{count - 1} ({count} documents).")
            if scores[index] is not None:
                raise self._error(f"index {index} appears more than once in the results.")
            if score_key not in item:
                raise self._error(f"result {position} (index {index}) has no '{score_key}' (keys: {_keys(item)}).")
            scores[index] = self._number(item[score_key], f"the score of document {index}")
        return [score for score in scores if score is not None]

    def _number(self, value: Any, what: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._error(f"returned {_short(value)} as {what}, not a number.")
        number = float(value)
        if not math.isfinite(number):
            raise self._error(f"returned {number} as {what}, not a finite number.")
        return number

    # -- helpers ----------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Accept": "application/json"}
            if self._secret:
                headers["Authorization"] = f"Bearer {self._secret}"
            self._client = httpx.AsyncClient(
                transport=self._transport,
                headers=headers,
                # No phase may outlast the whole call; anyio.fail_after bounds the sum.
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,
            )
        return self._client

    def _failed(self, started: float, message: str) -> None:
        message = self._redact(message)
        self._failures += 1
        self._consecutive_failures += 1
        self._last_failure_at = time.monotonic()
        self._last_error = message
        self._last_latency_ms = (time.perf_counter() - started) * 1000
        logger.warning("remote rerank failed: %s", message)

    def _cooling_down(self) -> bool:
        if self._consecutive_failures < self.cooldown_after or self._last_failure_at is None:
            return False
        return time.monotonic() - self._last_failure_at < self.cooldown_s

    def _describe_api(self) -> str:
        return f"{self.settings.provider} rerank API at {self._host}"

    def _error(self, problem: str) -> RemoteRerankError:
        return RemoteRerankError(self._redact(f"the {self._describe_api()} {problem}"))

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.text.split())
        if not text:
            return " (empty body)"
        if len(text) > BODY_EXCERPT_CHARS:
            text = text[:BODY_EXCERPT_CHARS] + "..."
        return f": {text!r}"

    def _describe_exception(self, exc: Exception) -> str:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

    def _redact(self, text: str) -> str:
        """Servers may echo the key back in an error body; it never leaves this object."""
        return text.replace(self._secret, "***") if self._secret else text


def _host(url: str) -> str:
    """Host and port only: a URL may carry credentials or a key in its user part or query."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date; ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return _short(value)


def _keys(mapping: dict[str, Any]) -> str:
    return ", ".join(repr(key) for key in list(mapping)[:8]) or "none"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
