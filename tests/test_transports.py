"""End to end over real transports: a stdio subprocess (as Claude Desktop runs it), and streamable HTTP
and SSE servers on 127.0.0.1, each through remember -> search -> rerank -> status."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp_types import INVALID_REQUEST, PARSE_ERROR
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from .conftest import PYTHON, call, call_error, server_env, start_http_server

pytestmark = pytest.mark.anyio

NOTES = [
    "Project Falcon's launch date moved to March 3rd.",
    "The billing service retries failed charges three times.",
    "Bob owns the search relevance dashboard.",
]


async def exercise_all_tools(client: Client, agent: str) -> None:
    stored = await call(
        client, "remember", {"memories": [{"text": note} for note in NOTES], "agent": agent, "tags": ["notes"]}
    )
    assert len(stored["ids"]) == 3
    found = await call(client, "search", {"query": "when does Falcon launch?", "top_k": 3, "explain": True})
    assert found["search_method"] == "hybrid+rerank", found["message"]
    assert {hit["text"] for hit in found["hits"]} == set(NOTES)
    falcon = next(hit for hit in found["hits"] if "Falcon" in hit["text"])
    assert falcon["scores"]["dense_rank"] == 1 and falcon["scores"]["bm25_rank"] == 1
    reranked = await call(client, "rerank", {"query": "billing retries", "documents": NOTES, "top_k": 2})
    assert len(reranked["results"]) == 2
    status = await call(client, "status", {"detail": True})
    assert status["detail"]["reranker"]["state"] == "ready"
    assert status["memories"] >= 3 and status["detail"]["store"]["memories"] == status["memories"]


async def exercise_management(client: Client) -> None:
    """list_memories, get, update and forget over the transport."""
    listed = await call(client, "list_memories", {"limit": 2})
    assert listed["total"] >= 3 and len(listed["memories"]) == 2 and listed["next_cursor"]
    falcon = next(m for m in (await call(client, "list_memories", {"limit": 100}))["memories"] if "Falcon" in m["text"])
    assert (await call(client, "get", {"ids": [falcon["id"]]}))["memories"][0]["text"] == falcon["text"]
    updated = await call(client, "update", {"id": falcon["id"], "text": "Project Falcon's launch moved to May 9th."})
    assert updated["supersedes"] == falcon["id"]
    found = await call(client, "search", {"query": "when does Falcon launch?", "top_k": 3, "rerank": False})
    assert falcon["id"] not in [hit["id"] for hit in found["hits"]]
    assert found["hits"][0]["id"] == updated["id"]
    gone = await call(client, "forget", {"ids": [updated["id"]]})
    assert gone["removed_count"] == 1
    assert "confirm" not in (await call(client, "forget", {"tags": ["nothing-has-this"], "dry_run": True}))["message"]


async def wait_for_reranker(client: Client, timeout: float = 120) -> None:
    """The cross-encoder loads after the handshake; status reports when it is ready."""
    with anyio.fail_after(timeout):
        while (await call(client, "status", {"detail": True}))["detail"]["reranker"]["state"] == "loading":
            await anyio.sleep(0.2)


async def test_stdio_subprocess(tmp_path: Path, cross_encoder_path: Path):
    params = StdioServerParameters(
        command=PYTHON, args=["-m", "mimir_mcp"], env=server_env(tmp_path / "data", cross_encoder_path)
    )
    async with Client(params, mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "mimir-mcp"
        await wait_for_reranker(client)
        await exercise_all_tools(client, "stdio-agent")
        await exercise_management(client)
        message = await call_error(client, "search", {"query": "q", "top_k": 1000})
        assert "top_k" in message and "less than or equal to 100" in message


def test_stdio_stdout_carries_only_protocol(tmp_path: Path, cross_encoder_path: Path):
    """Raw JSON-RPC over the pipes, as any client sends it: every stdout line must be a JSON-RPC message,
    and a non-standard NaN literal is answered with a named error, not a crash."""
    env = server_env(tmp_path / "data", cross_encoder_path)
    env["MIMIR_SERVER_LOG_LEVEL"] = "DEBUG"  # the chattiest setting must still keep stdout clean
    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--transport", "stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        bufsize=1,
    )
    replies: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [replies.put(line) for line in process.stdout], daemon=True).start()
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True).start()

    def send(raw: str) -> None:
        process.stdin.write(raw + "\n")
        process.stdin.flush()

    def reply() -> dict:
        line = replies.get(timeout=120)
        message = json.loads(line)  # anything but JSON on stdout fails here
        assert message.get("jsonrpc") == "2.0", line
        return message

    try:
        initialize = {
            "protocolVersion": LATEST_HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}))
        assert reply()["result"]["serverInfo"]["name"] == "mimir-mcp"
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        arguments = {"name": "remember", "arguments": {"text": "raw pipes work"}}
        send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": arguments}))
        stored = reply()
        assert stored["id"] == 2 and stored["result"]["structuredContent"]["stored"] == 1
        send(
            '{"jsonrpc": "2.0", "id": 3, "method": "tools/call", '
            '"params": {"name": "search", "arguments": {"query": "pipes", "min_score": NaN}}}'
        )
        answer = reply()
        assert answer["id"] == 3
        if "result" in answer:  # the tool saw the NaN and named the field
            assert answer["result"]["isError"] is True
            assert "min_score: must be a finite number" in answer["result"]["content"][0]["text"]
        else:  # or the JSON-RPC layer refused the literal: still an answer, not a crash
            assert "error" in answer
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        assert replies.empty()
    finally:
        process.kill()
    assert any("mimir-mcp" in line for line in stderr_lines)  # logs went to stderr


async def test_streamable_http_two_agents_share_memory(http_server: int):
    url = f"http://127.0.0.1:{http_server}/mcp"
    async with Client(url) as writer, Client(url) as reader:
        await wait_for_reranker(writer)
        await exercise_all_tools(writer, "writer")
        # The second agent, in its own session, finds what the first one stored.
        found = await call(reader, "search", {"query": "who owns the relevance dashboard", "top_k": 1, "rerank": False})
        assert found["hits"][0]["text"] == "Bob owns the search relevance dashboard."
        assert found["hits"][0]["agent"] == "writer"

        # Concurrent remembers of the same text from both agents store it once.
        async def remember(client: Client) -> dict:
            return await call(client, "remember", {"text": "Shared decision: use Postgres", "agent": "both"})

        results: list[dict] = []

        async def run(client: Client) -> None:
            results.append(await remember(client))

        async with anyio.create_task_group() as group:
            for client in (writer, reader, writer, reader):
                group.start_soon(run, client)
        assert len({result["ids"][0] for result in results}) == 1
        assert sum(result["stored"] for result in results) == 1
        assert sum(result.get("deduplicated") == result["ids"] for result in results) == 3
        # The server is shared: this test's memories are in "default".
        status = await call(reader, "status", {"detail": True})
        assert status["namespaces"]["default"] == 4 and status["detail"]["bm25"]["in_sync"]


async def test_two_stdio_processes_on_one_store_see_each_others_forget_and_update(
    tmp_path: Path, cross_encoder_path: Path, chroma_server: int
):
    """Two server processes sharing one Chroma server, each with its own catalogue: what one forgets or
    changes, the other stops showing at its next call after the sync interval (no restart)."""

    def params(name: str) -> StdioServerParameters:
        env = server_env(tmp_path / name, cross_encoder_path)
        env.update(
            {
                "MIMIR_RERANKER_ENABLED": "false",
                "MIMIR_STORE_CHROMA_HOST": "127.0.0.1",
                "MIMIR_STORE_CHROMA_PORT": str(chroma_server),
                "MIMIR_STORE_SYNC_INTERVAL_S": "0",
            }
        )
        return StdioServerParameters(command=PYTHON, args=["-m", "mimir_mcp"], env=env)

    async with Client(params("a"), mode="legacy") as first, Client(params("b"), mode="legacy") as second:
        ids = (await call(first, "remember", {"memories": [{"text": note} for note in NOTES]}))["ids"]

        async def seen_by_second(query: str, **arguments) -> list[str]:
            found = await call(second, "search", {"query": query, "rerank": False, "top_k": 5, **arguments})
            return [hit["id"] for hit in found["hits"]]

        assert ids[1] in await seen_by_second("billing retries")
        await call(first, "forget", {"ids": [ids[1]]})
        assert ids[1] not in await seen_by_second("billing retries")
        new = (await call(first, "update", {"id": ids[0], "text": "Project Falcon now launches on June 1st."}))["id"]
        falcon = await seen_by_second("Falcon launch date")
        assert ids[0] not in falcon and falcon[0] == new
        await call(first, "update", {"id": ids[2], "tags": ["dashboards"]})
        assert await seen_by_second("who owns the dashboard", tags=["dashboards"]) == [ids[2]]
        listed = await call(second, "list_memories", {"limit": 10})
        assert sorted(m["id"] for m in listed["memories"]) == sorted([new, ids[2]])
        status = await call(second, "status", {"detail": True})
        assert status["memories"] == 2 and status["detail"]["bm25"]["documents"] == 2


async def test_sse_transport(tmp_path: Path, cross_encoder_path: Path):
    process, port = start_http_server("sse", tmp_path / "data", cross_encoder_path)
    try:
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
            await wait_for_reranker(client)
            await exercise_all_tools(client, "sse-agent")
        # A second connection (the SSE lifespan runs per connection) sees the same memories.
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
            status = await call(client, "status")
            assert status["memories"] == 3
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_stdio_server_stops_at_once_on_ctrl_c_and_sigterm(tmp_path: Path, cross_encoder_path: Path):
    """Started by hand in a terminal, the server must stop on Ctrl+C (SIGINT) while its stdin stays open and
    silent, without waiting for a line; a supervisor's SIGTERM stops it the same way. Both run the cleanup,
    also for a Ctrl+C while it is still starting (no wait: before the fix, killed by the signal, status -2),
    and when it was started with both signals blocked (a blocked mask is inherited across exec: in CI the
    test process at times had SIGINT blocked, and the server, never hearing it, stayed up idle)."""
    for stop, wait in ((signal.SIGINT, 1.0), (signal.SIGTERM, 1.0), (signal.SIGINT, 0.0)):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            process = subprocess.Popen(
                [PYTHON, "-m", "mimir_mcp", "--transport", "stdio"],
                stdin=subprocess.PIPE,  # held open, nothing written: a terminal nobody types into
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # on a hang, the SIGABRT below makes it print every thread's Python stack to stderr
                env={**server_env(tmp_path / "data", cross_encoder_path), "PYTHONFAULTHANDLER": "1"},
                text=True,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        try:
            log = _StderrLog(process)
            assert log.wait_for("starting on stdio"), "stdio server did not start"
            time.sleep(wait)  # 1 s: into its read of stdin
            process.send_signal(stop)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGABRT)
                process.wait(timeout=30)
                log.wait_for("most recent call first", timeout=10)
                pytest.fail(f"still running 30 s after {stop.name}; its threads:\n{log.text()[-8000:]}")
            assert process.returncode == 0, f"{stop.name}: exit status {process.returncode}\n{log.text()[-4000:]}"
            assert log.wait_for("mimir-mcp stopped", timeout=5), log.text()[-2000:]
            assert process.stdout.read() == ""  # nothing but protocol on stdout, and no protocol was asked for
        finally:
            process.kill()


def test_the_stdio_signal_handler_loses_no_signal_at_any_moment():
    """In process, each moment a signal can come (the subprocess test above hits them by chance): before the
    session's scope exists it is a KeyboardInterrupt, as Python's own handler gives; inside the session it
    cancels the scope, again at every checkpoint even when one step swallows the cancellation (asyncio's
    own handler cancelled the task once, and a swallowed cancellation left the server up); a second signal
    is a KeyboardInterrupt; leaving puts the handlers found back."""
    from mimir_mcp.server.stdio import SignalStop

    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stop = SignalStop()
    with stop.installed():
        assert all(signal.getsignal(signum) == stop._handle for signum in found)  # noqa: SLF001
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs in this thread at once, interrupting the sleep

        async def session() -> list[str]:
            steps = []
            with anyio.CancelScope() as scope:
                stop.attach(scope)
                os.kill(os.getpid(), signal.SIGTERM)
                try:
                    await anyio.sleep(30)
                except anyio.get_cancelled_exc_class():
                    steps.append("swallowed")  # a step that absorbs its cancellation, and goes on
                await anyio.sleep(30)
                steps.append("still running")
            stop.attach(None)
            return [*steps, "cancelled" if scope.cancelled_caught else "not cancelled"]

        started = time.monotonic()
        assert anyio.run(session) == ["swallowed", "cancelled"]
        assert time.monotonic() - started < 5 and stop.signalled == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert {signum: signal.getsignal(signum) for signum in found} == found


def test_a_signal_the_kernel_hands_to_another_thread_still_stops_the_session_at_once():
    """The kernel may deliver a process's signal to any thread that does not block it (the server has torch's,
    the stdin reader...). Python then runs the handler only when the main thread next runs Python, and an
    idle loop waiting in select never does: the loop's wakeup fd must wake it (the CI hang)."""
    from mimir_mcp.server.stdio import SignalStop

    stop = SignalStop()

    async def session() -> float:
        started = time.monotonic()
        with anyio.CancelScope() as scope:
            stop.attach(scope)

            def kill_from_here() -> None:
                time.sleep(0.5)  # the main thread is in select by then
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)

            other = threading.Thread(target=kill_from_here)
            other.start()
            await anyio.sleep(30)  # the loop sleeps in select until then, unless something wakes it
        stop.attach(None)
        other.join()
        return time.monotonic() - started

    with stop.installed():
        assert anyio.run(session) < 5 and stop.signalled == signal.SIGINT


def test_http_server_runs_its_cleanup_on_sigterm(tmp_path: Path, cross_encoder_path: Path):
    """uvicorn re-raises the SIGTERM it caught after its own shutdown; the server must still close its store
    and exit 0, as a service manager expects of a clean stop."""
    process, _ = start_http_server("streamable-http", tmp_path / "data", cross_encoder_path)
    try:
        log = _StderrLog(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert log.wait_for("mimir-mcp stopped", timeout=5), log.text()[-2000:]
    finally:
        process.kill()


class _StderrLog:
    """A subprocess's stderr, drained by a thread (a full pipe would stall the server), searchable."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._lines: list[str] = []
        self._grew = threading.Condition()
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._grew:
                self._lines.append(line)
                self._grew.notify_all()

    def text(self) -> str:
        with self._grew:
            return "".join(self._lines)

    def wait_for(self, fragment: str, timeout: float = 120) -> bool:
        with self._grew:
            return self._grew.wait_for(lambda: any(fragment in line for line in self._lines), timeout=timeout)


class _RawStdio:
    """A stdio server spoken to in raw lines, as a client with its own encoder writes them."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self._replies: queue.Queue[bytes] = queue.Queue()
        self._next_id = 1000
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self._replies.put(line) for line in stdout], daemon=True).start()

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def send_request(self, request_id: int, method: str, params: dict) -> None:
        self.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode())

    def reply(self, timeout: float = 60) -> dict:
        return json.loads(self._replies.get(timeout=timeout))  # anything but JSON on stdout fails here

    def call(self, tool: str, arguments: dict, timeout: float = 60) -> dict:
        """A good tools/call, answered under its own id; its structured content."""
        self._next_id += 1
        self.send_request(self._next_id, "tools/call", {"name": tool, "arguments": arguments})
        answer = self.reply(timeout)
        assert answer["id"] == self._next_id and not answer["result"]["isError"], answer
        return answer["result"]["structuredContent"]


@pytest.fixture(scope="session")  # one start for the worker, however xdist orders the group's tests
def raw_stdio(tmp_path_factory: pytest.TempPathFactory, cross_encoder_path: Path) -> Iterator[_RawStdio]:
    """One stdio server for the tests that only send lines it must refuse, so nothing is ever stored."""
    env = server_env(tmp_path_factory.mktemp("raw-stdio"), cross_encoder_path)
    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--no-rerank"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    server = _RawStdio(process)
    try:
        client = {"name": "raw", "version": "0"}
        server.send_request(
            0, "initialize", {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": client}
        )
        assert server.reply(timeout=120)["id"] == 0
        server.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        yield server
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


def _remember_line(request_id: bytes, text: bytes) -> bytes:
    arguments = b'{"name":"remember","arguments":{"text":"' + text + b'"}}'
    return b'{"jsonrpc":"2.0","id":' + request_id + b',"method":"tools/call","params":' + arguments + b"}"


def _not_utf8(line: bytes, bad: int, request_id: int | None) -> tuple[bytes, int, int | None, str]:
    """A line with a bad byte, answered with a parse error that names the byte and where it is."""
    where = f"byte 0x{bad:02x} at position {line.index(bytes([bad]))}"
    return line, PARSE_ERROR, request_id, f"request: not valid UTF-8 ({where}); the request was not read"


def _bad_id(got: str) -> str:
    return f"not a valid JSON-RPC request (id: must be an integer or a string, got {got})"


# A request JSON-RPC refuses, (the line, the error code, the id answered, the message): a request whose id is
# not an integer or a string (the SDK reads it as a notification, never answered), or a line that is not
# UTF-8 (the SDK would store each bad byte as U+FFFD).
BAD_REQUESTS = [
    (b'{"jsonrpc":"2.0","id":NaN,"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("a number (NaN)")),
    (b'{"jsonrpc":"2.0","id":{},"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("an object")),
    (b'{"jsonrpc":"2.0","id":[1],"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("an array")),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("a number (1.5)")),
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("a boolean")),
    (b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}', INVALID_REQUEST, None, _bad_id("null")),
    # Not JSON as well: 1.5 is not read as the id 1.
    (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list",', PARSE_ERROR, None, "request: not valid JSON (EOF"),
    # ... and a string id is answered as sent, its escapes read.
    (
        b'{"jsonrpc":"2.0","id":"a\\"b\\u00e9","method":"tools/list",',
        PARSE_ERROR,
        'a"b\u00e9',
        "request: not valid JSON (EOF",
    ),
    _not_utf8(_remember_line(b"71", b"bad \xff byte"), 0xFF, 71),
    _not_utf8(_remember_line(b"72", b"cut short \xc3"), 0xC3, 72),  # a two-byte character, one byte of it
    _not_utf8(_remember_line(b"73", b"fine") + b"\xe2\x82", 0xE2, 73),  # truncated at the end of the line
    _not_utf8(_remember_line(b'"id-\xff"', b"fine"), 0xFF, None),  # an id with a bad byte is not echoed
]


@pytest.mark.xdist_group("raw_stdio")
@pytest.mark.parametrize(
    ("line", "code", "request_id", "message"),
    BAD_REQUESTS,
    ids=[
        *("id-nan", "id-object", "id-array", "id-fraction", "id-true", "id-null", "id-fraction-not-json"),
        "id-escaped-not-json",
        *("utf8-bad-byte", "utf8-cut-in-string", "utf8-cut-at-end", "utf8-bad-byte-in-id"),
    ],
)
def test_stdio_answers_a_request_json_rpc_refuses_and_keeps_serving(
    raw_stdio: _RawStdio, line: bytes, code: int, request_id: int | None, message: str
):
    raw_stdio.send(line)
    answer = raw_stdio.reply()
    assert answer["id"] == request_id and answer["error"]["code"] == code, answer
    assert answer["error"]["message"].startswith(message), answer
    assert raw_stdio.call("list_memories", {"namespace": "*"}) == {"memories": [], "total": 0}  # nothing stored


@pytest.mark.anyio
async def test_stdin_lines_are_cut_at_each_newline_whatever_the_reads():
    """Stdin as the reader thread sees it: a line longer than many reads, several lines in one read, a line
    that is not UTF-8 and a last line with no newline come out as sent, in order."""
    from mimir_mcp.server.stdio import StdinLines, UnreadableLine

    long = b'{"text": "' + b"x" * 300_000 + b'"}'
    sent = [b"first", long, b"", b"bad \xff", b"last"]
    read_fd, write_fd = os.pipe()

    def write() -> None:
        data = b"\n".join(sent)
        for start in range(0, len(data), 7_000):  # reads end anywhere, mid-line and mid-character
            os.write(write_fd, data[start : start + 7_000])
        os.close(write_fd)

    threading.Thread(target=write, daemon=True).start()
    got = [line async for line in StdinLines(read_fd)]
    os.close(read_fd)
    assert got[:3] == ["first\n", long.decode() + "\n", "\n"] and got[4] == "last"
    assert isinstance(got[3], UnreadableLine) and "position 4" in got[3].answer.error.message
    assert len(got) == len(sent)
