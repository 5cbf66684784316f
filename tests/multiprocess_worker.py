"""One of the processes ``test_multiprocess`` runs at once on one data dir: it opens a ``MemoryService``
(with the hash embedding of ``durability_worker``, so that it starts in about a second), and then, each
step on a line from the test on stdin:

- ``go``: remembers its own texts and the texts every worker shares, one ``remember`` call each, in an
  order of its own, ``IN_FLIGHT`` calls at a time, and answers
  ``{"ev": "stored", "results": [[id, deduplicated], ...]}``;
- ``{"check": [texts]}``: searches for each text (the dense arm alone, then BM25 alone) and answers
  with the ids each arm found first, and its own counts of Chroma, the catalogue and the BM25 index;
- ``quit``: closes the store and exits.

Run as ``python -m tests.multiprocess_worker --data-dir DIR --worker N --count 500 --shared 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from typing import Any

from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.models import MemoryInput
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService
from tests.durability_worker import WORDS, HashEmbedder, worker_settings

# remember calls each worker has in flight at once (an agent server under load; its group commits batch them)
IN_FLIGHT = 32


def emit(event: dict[str, Any]) -> None:
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def text(label: str, number: int) -> str:
    """A text of its own words, the same in every process for the same label and number."""
    rng = random.Random(f"{label}-{number}")
    return f"{label} note {number}: " + " ".join(rng.choice(WORDS) for _ in range(10))


def own_texts(worker: int, count: int) -> list[str]:
    return [text(f"w{worker}", i) for i in range(count)]


def shared_texts(count: int) -> list[str]:
    return [text("shared", i) for i in range(count)]


async def first_hit(service: MemoryService, query: str, arm: str) -> str | None:
    request = SearchRequest(query=query, top_k=1, rerank=False, rerank_top_k=0, arms=(arm,))  # type: ignore[arg-type]
    response = await service.search(request)
    return response.hits[0].id if response.hits else None


async def run(args: argparse.Namespace) -> None:
    service = MemoryService(
        worker_settings(args.data_dir), embedder=HashEmbedder(EmbeddingSettings(query_backend="torch"))
    )
    store, lexical = service.storage()
    emit({"ev": "ready", "pid": os.getpid()})
    texts = own_texts(args.worker, args.count) + shared_texts(args.shared)
    random.Random(args.worker).shuffle(texts)
    for line in sys.stdin:
        command = line.strip()
        if command == "go":
            results = []
            for start in range(0, len(texts), IN_FLIGHT):
                # a few agents' calls at once, as a shared server sees them: the group commit joins them
                calls = [service.remember([MemoryInput(text=memory)]) for memory in texts[start : start + IN_FLIGHT]]
                for response in await asyncio.gather(*calls):
                    results.append([response.ids[0], response.ids[0] in response.deduplicated])
            emit({"ev": "stored", "results": results})
        elif command.startswith("{"):
            queries = json.loads(command)["check"]
            dense = [await first_hit(service, query, "dense") for query in queries]
            bm25 = [await first_hit(service, query, "bm25") for query in queries]
            emit(
                {
                    "ev": "seen",
                    "dense": dense,
                    "bm25": bm25,
                    "chroma": store.count(),
                    "catalogue": lexical.catalogue.count(),
                    "bm25_documents": lexical.count(),
                }
            )
        elif command == "quit":
            break
    service.close()
    emit({"ev": "closed"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--shared", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
