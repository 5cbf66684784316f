"""The stdio transport, with an answer for every request.

The SDK parses each line with pydantic's JSON parser, which refuses nesting past about 200 levels and lone
surrogate escapes (``"\\ud800"``) in well under a millisecond (it takes ``NaN``, which the tools refuse by
field), and then drops the line with a debug log: the caller waits forever for an answer. Here such a line
is answered with a JSON-RPC parse error for the request's id (found by scanning the line's top level),
saying what was wrong. Two more kinds of line the SDK mishandles are answered here too: one that is not
UTF-8 (the SDK would read each bad byte as U+FFFD and store that), and a request whose id JSON-RPC does
not allow (``null``, ``1.5``, ``true``, an object...), which the SDK reads as a notification and never
answers.

Stdin is read by a daemon thread of our own rather than the SDK's worker thread: a worker blocked on a
terminal that nobody types into keeps the process alive after Ctrl+C until Enter is pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification
from pydantic import ValidationError
from pydantic_core import from_json

from mimir_mcp.server.validation import MAX_INPUT_DEPTH, json_type

logger = logging.getLogger(__name__)

# JSON strings and brackets: enough to follow the nesting of a line that does not parse.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]')
MAX_ID_DIGITS = 40  # far beyond any 64-bit id a client sends
# An integer (not the start of 1.5 or 1e3) or a string.
_ID_VALUE = re.compile(r'\s*:\s*(-?\d+(?![\d.eE])|"(?:[^"\\]|\\.)*")')


def serve_stdio(server: MCPServer) -> None:
    """``server.run("stdio")``, but a line that cannot be parsed gets an error answer instead of none, and
    Ctrl+C or SIGTERM always stops it (``SignalStop``)."""
    stop = SignalStop()
    with stop.installed():
        anyio.run(_serve, server, stop)


async def _serve(server: MCPServer, stop: SignalStop) -> None:
    with anyio.CancelScope() as scope:
        stop.attach(scope)
        try:
            await _session(server)
        finally:
            stop.attach(None)
    if stop.signalled is not None:
        logger.info("%s received: stopping", signal.Signals(stop.signalled).name)


class SignalStop:
    """SIGINT and SIGTERM for the stdio server, handled so that none is lost.

    Left to asyncio, a SIGINT only cancels the main task once, which a step of the session that absorbs the
    cancellation can swallow; and a signal receiver opened inside the loop misses a signal that comes
    before it is open. Both left a server signalled while starting up and idle (seen in CI, under load).
    This handler is installed before the loop starts (so asyncio keeps its own out): until the session's
    cancel scope exists a signal raises ``KeyboardInterrupt`` as Python's own handler does, and the
    caller's cleanup runs; from then on the loop's handler (``attach``) cancels that scope, which anyio
    repeats at every checkpoint until the session has ended. A second signal raises ``KeyboardInterrupt``."""

    def __init__(self) -> None:
        self.signalled: int | None = None
        self._scope: anyio.CancelScope | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._handle)
        try:
            yield
        finally:
            self._scope = None
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def attach(self, scope: anyio.CancelScope | None) -> None:
        """From inside the loop: signals cancel ``scope`` from now on (None: raise ``KeyboardInterrupt`` again).

        The loop's own signal handling takes over here because it also sets the wakeup fd: a signal the
        kernel hands to another thread (torch's, the stdin reader) only trips a flag that the main thread
        reads when it next runs Python, and a main thread idle in ``select`` with nothing scheduled never
        does; the wakeup fd wakes it (loop.close() removes these handlers again)."""
        loop = asyncio.get_running_loop()
        if scope is not None and self._scope is None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)
        self._scope = scope

    def _on_signal(self, signum: int) -> None:
        """A signal, in the loop."""
        if self._scope is None or self.signalled is not None:
            raise KeyboardInterrupt
        self.signalled = signum
        self._scope.cancel()

    def _handle(self, signum: int, frame: object) -> None:
        """Before ``attach``: Python's own Ctrl+C, under a handler asyncio's runner does not replace with its
        one-shot task cancel (``attach`` hands both signals to the loop, whose handler this no longer is)."""
        raise KeyboardInterrupt


async def _session(server: MCPServer) -> None:
    lowlevel = server._lowlevel_server  # noqa: SLF001 - what MCPServer.run_stdio_async runs, too
    lines = StdinLines()
    async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
        outbound, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def relay() -> None:
            async with outbound:
                async for item in read_stream:
                    line = lines.handed.popleft() if lines.handed else None
                    try:
                        answers = answers_to(item, line)
                    except Exception:  # noqa: BLE001 - a line we cannot explain must not stop the server
                        logger.warning("could not answer an unreadable line", exc_info=True)
                        answers = []
                    for answer in answers:
                        await write_stream.send(SessionMessage(answer))
                    if not answers:
                        await outbound.send(item)

        async with anyio.create_task_group() as group:
            group.start_soon(relay)
            await lowlevel.run(inbound, write_stream, lowlevel.create_initialization_options())
            group.cancel_scope.cancel()


@dataclass(frozen=True)
class UnreadableLine:
    """A line that is not UTF-8, handed to the SDK in place of its text: the SDK's parser refuses anything
    but text (a ``ValidationError`` the relay receives), and the relay sends ``answer`` instead."""

    answer: JSONRPCError


class StdinLines:
    """Stdin's lines for ``stdio_server``, read by a daemon thread straight from a duplicate of fd 0: each
    line as text, or an ``UnreadableLine`` where it is not UTF-8.

    ``handed`` keeps what was handed to the SDK, oldest first, for the relay to take one per message it
    receives: the SDK sends exactly one message or exception per line, in order, and keeps nothing of the
    line but what it parsed (a request with a bad id comes out as a notification, its id gone).

    The thread never holds ``sys.stdin``'s buffer lock, so leaving it blocked in ``os.read`` at exit is
    harmless (a daemon thread inside a buffered read aborts the interpreter's shutdown)."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd
        self.handed: deque[str | UnreadableLine] = deque()

    def __aiter__(self) -> AsyncIterator[str | UnreadableLine]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str | UnreadableLine]:
        fd = os.dup(sys.stdin.fileno() if self._fd is None else self._fd)
        send, receive = anyio.create_memory_object_stream[str | UnreadableLine](16)
        token = anyio.lowlevel.current_token()

        def read() -> None:
            # One growing buffer, each byte scanned for a newline once: a 10 MB line costs 10 MB of copying.
            pending = bytearray()
            try:
                while chunk := os.read(fd, 65536):
                    scanned = len(pending)
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", max(start, scanned))) >= 0:
                        anyio.from_thread.run(send.send, decoded(bytes(pending[start:end]), "\n"), token=token)
                        start = end + 1
                    del pending[:start]
                if pending:
                    anyio.from_thread.run(send.send, decoded(bytes(pending)), token=token)
                anyio.from_thread.run_sync(send.close, token=token)
            except (OSError, RuntimeError, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # stdin closed under us, or the server has already stopped
            finally:
                os.close(fd)

        threading.Thread(target=read, name="mimir-stdin", daemon=True).start()
        async with receive:
            async for line in receive:
                self.handed.append(line)
                yield line


def decoded(line: bytes, end: str = "") -> str | UnreadableLine:
    """A line's text (with ``end`` added), or the parse-error answer to it when it is not UTF-8."""
    try:
        return line.decode("utf-8") + end
    except UnicodeDecodeError as error:
        text = line.decode("utf-8", errors="replace")
        request_id = request_id_of(text)
        if isinstance(request_id, str) and "\ufffd" in request_id:
            request_id = None  # an id with a bad byte in it is not the id the client will look for
        where = f"byte 0x{line[error.start]:02x} at position {error.start}"
        logger.warning("answered a request %r that is not valid UTF-8 (%s)", request_id, where)
        message = f"request: not valid UTF-8 ({where}); the request was not read"
        return UnreadableLine(
            JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=PARSE_ERROR, message=message))
        )


def answers_to(item: SessionMessage | Exception, line: str | UnreadableLine | None) -> list[JSONRPCError]:
    """The answers the relay sends itself for what the SDK read from ``line`` (none: the SDK handles it)."""
    if isinstance(line, UnreadableLine):
        return [line.answer]
    if isinstance(item, ValidationError):
        return error_answers(item)
    if line is not None and isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCNotification):
        answer = bad_id_answer(line)
        return [] if answer is None else [answer]
    return []


def bad_id_answer(line: str) -> JSONRPCError | None:
    """The invalid-request answer (for id ``null``) to a line the SDK read as a notification but that has an
    ``"id"`` JSON-RPC does not allow; None for a notification, which is never answered."""
    try:
        message = from_json(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or "id" not in message or _answerable_id(message) is not None:
        return None
    value = message["id"]
    got = json_type(value) + (f" ({json.dumps(value)})" if isinstance(value, float) else "")
    reason = f"not a valid JSON-RPC request (id: must be an integer or a string, got {got})"
    logger.warning("answered an invalid request: %s", reason)
    return _invalid_request(None, reason)


def error_answers(error: ValidationError) -> list[JSONRPCError]:
    """The answers to a line the SDK could not read as one JSON-RPC message: a parse error for text that
    is not JSON, an invalid-request error for JSON that is not a message (one per request of a batch,
    which MCP no longer allows). Each carries the request's id when it can be found, else ``null``, as
    JSON-RPC asks; a response or notification the client sent gets no answer, as JSON-RPC also asks."""
    details = error.errors(include_url=False)
    if not details:
        return []
    if details[0]["type"] == "json_invalid":
        answer = parse_error_answer(error)
        return [] if answer is None else [answer]
    # The line as parsed: the input of an error about the whole message, or the parent of a missing field.
    message = next(
        (
            d["input"]
            for d in details
            if len(d["loc"]) <= 1 or (d["type"] == "missing" and len(d["loc"]) == 2)  # noqa: PLR2004
        ),
        None,
    )
    if isinstance(message, list):
        reason = "batches are not supported (MCP removed JSON-RPC batching): send each message on its own line"
        ids = [_answerable_id(item) for item in message if isinstance(item, dict) and "method" in item]
        ids = [request_id for request_id in ids if request_id is not None] or [None]
        logger.warning("answered a JSON-RPC batch of %d items with invalid-request errors", len(message))
        return [_invalid_request(request_id, reason) for request_id in ids]
    if isinstance(message, dict):
        if "method" not in message and ("result" in message or "error" in message):
            return []  # a malformed response from the client: JSON-RPC forbids answering it
        if "method" in message and "id" not in message:
            return []  # a malformed notification: never answered
        problem = details[0]
        field = ".".join(str(part) for part in problem["loc"][1:]) or "message"
        reason = f"not a valid JSON-RPC request ({field}: {problem['msg']})"
        logger.warning("answered an invalid request: %s", reason)
        return [_invalid_request(_answerable_id(message), reason)]
    logger.warning("answered a line that is not a JSON-RPC object")
    return [_invalid_request(None, "not a valid JSON-RPC request (a message must be a JSON object)")]


def _answerable_id(message: dict[str, Any]) -> int | str | None:
    """The request id, if it is one JSON-RPC allows (an integer or a string)."""
    value = message.get("id")
    return value if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) else None


def _invalid_request(request_id: int | str | None, reason: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=INVALID_REQUEST, message=reason))


def parse_error_answer(error: ValidationError) -> JSONRPCError | None:
    """The parse-error answer to a line that is not JSON, for the request's id when it can be found (else
    ``null``); None when the line is not what the parser refused."""
    details = error.errors(include_url=False)
    line = details[0].get("input") if details else None
    if not isinstance(line, str) or details[0]["type"] != "json_invalid":
        return None
    request_id = request_id_of(line)
    reason = str(details[0].get("ctx", {}).get("error", details[0]["msg"]))
    logger.warning("answered an unparseable request %r: %s", request_id, reason)
    return JSONRPCError(
        jsonrpc="2.0", id=request_id, error=ErrorData(code=PARSE_ERROR, message=f"request: {explain(reason)}")
    )


def explain(reason: str) -> str:
    """The parser's complaint in the project's words."""
    if "recursion limit" in reason:
        return f"nested too deeply to parse (arguments nest at most {MAX_INPUT_DEPTH} levels); the request was not read"
    if "surrogate" in reason or "hex escape" in reason:
        return "contains a lone surrogate escape (\\ud800-\\udfff); text must be valid Unicode"
    return f"not valid JSON ({reason}; NaN and Infinity are not JSON numbers); the request was not read"


def request_id_of(line: str) -> Any:
    """The value of the top-level ``"id"`` member of a JSON-RPC line that does not parse as a whole."""
    depth = 0
    for token in _TOKENS.finditer(line):
        text = token.group()
        if text in "{[":
            depth += 1
        elif text in "}]":
            depth -= 1
        elif depth == 1 and text == '"id"':
            value = _ID_VALUE.match(line, token.end())
            if value is not None:
                raw = value.group(1)
                if raw.startswith('"'):
                    return _string_id(raw)
                # An id too long for an integer (Python refuses over 4,300 digits) cannot be echoed back.
                return int(raw) if len(raw) <= MAX_ID_DIGITS else None
    return None


def _string_id(token: str) -> str | None:
    """A JSON string token's text, escapes read (the client looks for the id it sent, not its escaped form);
    None when it holds a lone surrogate, which no answer can carry."""
    try:
        text = json.loads(token)
        text.encode("utf-8")  # as validation.py tells valid Unicode: a lone surrogate does not encode
    except (ValueError, UnicodeEncodeError):
        return None
    return text
