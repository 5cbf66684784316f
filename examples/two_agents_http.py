"""Two agents sharing one mimir-mcp server over streamable HTTP.

    mimir-mcp --transport streamable-http --port 8765 &      # a server many agents can share
    python examples/two_agents_http.py --url http://127.0.0.1:8765/mcp

Without --url the script starts its own server on a free port, on a temporary store unless --data-dir
names one, and stops it at the end.
A researcher agent stores findings while a writer agent, in its own MCP session, finds them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from contextlib import contextmanager

from mcp import Client

FINDINGS = [
    "Latency of the search endpoint doubled after the 2.3 release.",
    "The regression comes from the new JSON serializer, not the database.",
    "Rolling back the serializer restores p50 latency to 40 ms.",
]


async def researcher(url: str) -> None:
    async with Client(url) as memory:
        for finding in FINDINGS:
            result = await memory.call_tool(
                "remember", {"text": finding, "agent": "researcher", "tags": ["incident-42"]}
            )
            print(f"[researcher] stored {result.structured_content['ids'][0]}")
            await asyncio.sleep(0.05)


async def writer(url: str, researcher_done: asyncio.Event) -> None:
    async with Client(url) as memory:
        await researcher_done.wait()
        found = await memory.call_tool(
            "search", {"query": "what caused the latency regression?", "tags": ["incident-42"], "top_k": 2}
        )
        result = found.structured_content
        print(f"[writer] {result['search_method']}: {result.get('message', 'ran as asked')}")
        for hit in result["hits"]:
            print(f"[writer]   from {hit['agent']}: {hit['text']}")


@contextmanager
def local_server(data_dir: str):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "mimir_mcp", "--transport", "streamable-http", "--port", str(port)]
        + ["--data-dir", data_dir],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:  # wait until uvicorn listens
        sys.stderr.write(line)
        if "Uvicorn running on" in line:
            break
    # Keep reading its log, or a full pipe would stall the server.
    threading.Thread(target=lambda: [sys.stderr.write(line) for line in process.stderr], daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_team(description: str, team: Callable[[str], Awaitable[tuple[str, str]]]) -> None:
    """The command line of the framework examples: run ``team`` (the researcher's report, the writer's
    answer) against ``--url`` or a server started here, then say which stored ids the writer cited."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="A running server's MCP endpoint (default: start one here)")
    parser.add_argument("--data-dir", help="Store of the server started here (default: a temporary folder)")
    args = parser.parse_args()
    if args.url:
        report, answer = asyncio.run(team(args.url))
    else:
        with (
            tempfile.TemporaryDirectory(prefix="mimir-example-") as scratch,
            local_server(args.data_dir or scratch) as url,
        ):
            report, answer = asyncio.run(team(url))
    print(f"[researcher] {report}")
    print(f"[writer] {answer}")
    stored = set(re.findall(r"mem_[0-9a-f]{32}", report))
    cited = set(re.findall(r"mem_[0-9a-f]{32}", answer))
    print(f"the writer cited {len(cited)} of the researcher's {len(stored)} memories: {sorted(cited & stored)}")


async def run(url: str) -> None:
    done = asyncio.Event()

    async def research_then_signal() -> None:
        await researcher(url)
        done.set()

    await asyncio.gather(research_then_signal(), writer(url, done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running server's MCP endpoint, e.g. http://127.0.0.1:8765/mcp")
    parser.add_argument(
        "--data-dir", help="Store of the server started here (default: a temporary folder, removed at the end)."
    )
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args.url))
        return
    with tempfile.TemporaryDirectory(prefix="mimir-example-") as scratch, local_server(args.data_dir or scratch) as url:
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
