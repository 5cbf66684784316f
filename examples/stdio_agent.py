"""A Python agent that uses mimir-mcp as its memory over stdio, the way Claude Desktop runs it.

    python examples/stdio_agent.py                 # starts `python -m mimir_mcp` itself, on a temporary store
    python examples/stdio_agent.py --data-dir /tmp/agent-memory     # or on a store that stays

It stores a few notes, searches them, reranks a list, and prints what `status` says about the reranker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile

from mcp import Client, StdioServerParameters

NOTES = [
    {"text": "The customer asked for CSV export by the end of the quarter.", "tags": ["customer", "roadmap"]},
    {"text": "Staging runs on Kubernetes 1.31; production is still on 1.29.", "tags": ["infra"]},
    {
        "text": "We chose an in-memory BM25 index kept in SQLite for keyword search because it updates incrementally.",
        "tags": ["decision"],
    },
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="Where the server keeps memories (default: a temporary folder, removed at the end)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimir-example-") as scratch:
        await run(args.data_dir or scratch)


async def run(data_dir: str) -> None:
    server_args = ["-m", "mimir_mcp", "--transport", "stdio", "--data-dir", data_dir]
    params = StdioServerParameters(command=sys.executable, args=server_args, env=dict(os.environ))

    async with Client(params, mode="legacy") as memory:
        stored = await memory.call_tool("remember", {"memories": NOTES, "agent": "stdio-example"})
        print("remembered:", stored.structured_content["ids"])

        found = await memory.call_tool("search", {"query": "which Kubernetes version is production on?", "top_k": 2})
        result = found.structured_content
        # `message` comes only when the search ran otherwise than asked (say, the reranker still loading).
        print(f"search ({result['search_method']}): {result.get('message', 'ran as asked')}")
        for hit in result["hits"]:
            print(f"  {hit['score']:.4f}  {hit['text']}")

        ranked = await memory.call_tool(
            "rerank", {"query": "keyword search", "documents": [note["text"] for note in NOTES]}
        )
        if ranked.is_error:
            print("rerank unavailable:", ranked.content[0].text)
        else:
            print("rerank order:", [item["index"] for item in ranked.structured_content["results"]])

        status = (await memory.call_tool("status", {})).structured_content
        print("status:", json.dumps(status))


if __name__ == "__main__":
    asyncio.run(main())
