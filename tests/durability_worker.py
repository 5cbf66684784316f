"""The process ``test_durability`` kills: it opens a ``MemoryService`` on a data dir and runs a random
sequence of ``forget``, ``update`` and ``import_records`` on what the store holds, until killed.

It reports on stdout, one JSON object a line, each written with ``os.write`` before it returns:

- ``{"ev": "ready", "count": n}`` once the store is open (and reconciled);
- ``{"ev": "begin", "n": k, "op": ...}`` before operation ``k``, with everything the test needs to know
  what the operation would change;
- ``{"ev": "call", "fn": f}`` / ``{"ev": "done", "fn": f}`` around each write to Chroma (``chroma.*``)
  and to the catalogue and BM25 index (``catalogue.*``), so the test can tell where a kill landed;
- ``{"ev": "ack", "n": k, ...}`` once operation ``k`` has returned: the change is acknowledged.

After each Chroma write of memories it sleeps a random 0 to ``--stall-ms`` milliseconds, widening the
window in which Chroma and the catalogue disagree (where a crash does the most harm), and after each
operation a random 0 to ``--pause-ms``, so that some kills land between operations. With
``--hold-at-write N`` it stops for good after its Nth Chroma write of memories, so that the test's kill
lands, for certain, where Chroma holds a change the catalogue does not and no ack was sent.

Run as ``python -m tests.durability_worker --data-dir DIR --seed N``. ``--embedder hash`` (the
default) stands a deterministic hash embedding in for the bi-encoder, so that a worker starts in about
a second instead of the five that importing torch and loading the model take; what is written to
Chroma and the catalogue, and in which order, is the same. ``--embedder real`` loads the real model.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mimir_mcp.config import EmbeddingSettings, Settings
from mimir_mcp.embedding import Embedder
from mimir_mcp.models import MemoryRecord
from mimir_mcp.service.memory import MemoryService, dedup_key

NAMESPACE = "default"
DIMENSION = 384  # all-MiniLM-L6-v2's, as the collection records
WORDS = (
    "alpha budget canary deploy ember falcon glacier harbor invoice juniper kernel ledger migration "
    "nebula orchard pipeline quartz rollout schema tundra upgrade vector walrus xenon yonder zephyr"
).split()


def emit(event: dict[str, Any]) -> None:
    """One line, written straight to the pipe (no buffer a kill could lose after this returns)."""
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


class _HashModel:
    """Stands in for a ``SentenceTransformer``: a unit vector seeded by the text's hash."""

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).standard_normal(DIMENSION).astype(np.float32)
            rows.append(row / np.linalg.norm(row))
        return np.stack(rows)


class HashEmbedder(Embedder):
    """The real ``Embedder`` (background load, ``encode``) around ``_HashModel``."""

    def _load_model(self) -> Any:
        self.dimension = DIMENSION
        return _HashModel()


def worker_settings(data_dir: str) -> Settings:
    return Settings(
        store={"data_dir": data_dir},
        reranker={"enabled": False},
        embedding={"query_backend": "torch"},  # no ONNX query graph built beside the store
    )


def instrument(service: MemoryService, stall_s: float, rng: random.Random, hold_at: int = 0) -> None:
    """Report every write to Chroma and to the catalogue; stall after each Chroma write of memories,
    and stop for good after the ``hold_at``-th one (0: never)."""
    store, lexical = service.storage()
    writes = [0]
    targets = [
        (store, "add", "chroma.add", True),
        (store, "delete", "chroma.delete", True),
        (store, "set_fields", "chroma.set_fields", True),
        (store, "bump_generation", "chroma.bump_generation", False),
        (lexical, "add", "catalogue.add", False),
        (lexical, "remove", "catalogue.remove", False),
        (lexical, "set_fields", "catalogue.set_fields", False),
    ]
    for owner, name, label, stall in targets:
        original = getattr(owner, name)

        def wrapper(*args: Any, _original: Any = original, _label: str = label, _stall: bool = stall, **kwargs: Any):
            emit({"ev": "call", "fn": _label})
            result = _original(*args, **kwargs)
            emit({"ev": "done", "fn": _label})
            if _stall:
                writes[0] += 1
                if writes[0] == hold_at:
                    time.sleep(3600)  # until the test kills it
            if _stall and stall_s > 0:
                time.sleep(rng.uniform(0, stall_s))
            return result

        setattr(owner, name, wrapper)


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def choose_op(rng: random.Random, present: int) -> str:
    if present < 150:
        return "import"
    if present > 700:
        return rng.choices(["forget", "update_text", "update_tags"], weights=[4, 4, 2])[0]
    return rng.choices(["import", "forget", "update_text", "update_tags"], weights=[3, 3, 4, 2])[0]


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    pauses = random.Random(args.seed + 2)
    settings = worker_settings(args.data_dir)
    if args.embedder == "hash":
        embedder: Embedder = HashEmbedder(EmbeddingSettings(query_backend="torch"))
    else:
        embedder = Embedder(settings.embedding)
    service = MemoryService(settings, embedder=embedder)
    store, lexical = service.storage()
    embedder.encode(["warm up"])
    instrument(service, args.stall_ms / 1000, random.Random(args.seed + 1), args.hold_at_write)
    emit({"ev": "ready", "count": len(lexical.ids()), "pid": os.getpid()})
    tag = f"w{args.seed}"
    for n in range(args.max_ops):
        present = sorted(lexical.ids())
        kind = choose_op(rng, len(present))
        if kind == "import":
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            records = []
            for i in range(rng.randint(50, 200)):
                text = f"{tag}x{n}x{i} {words(rng, 12)}"
                records.append(
                    MemoryRecord(
                        id=dedup_key(NAMESPACE, text),
                        text=text,
                        namespace=NAMESPACE,
                        tags=["imported", f"{tag}x{n}"],
                        created_at=now,
                    )
                )
            emit({"ev": "begin", "n": n, "op": "import", "records": [r.model_dump() for r in records]})
            new = await asyncio.to_thread(service.import_records, records)
            emit({"ev": "ack", "n": n, "op": "import", "new": sorted(new)})
        elif kind == "forget":
            ids = rng.sample(present, rng.randint(20, min(150, len(present) // 2)))
            absent = dedup_key(NAMESPACE, f"{tag}x{n} never stored")
            emit({"ev": "begin", "n": n, "op": "forget", "ids": ids, "absent": absent})
            response = await service.forget([*ids, absent], None, confirm=False, dry_run=False)
            emit(
                {
                    "ev": "ack",
                    "n": n,
                    "op": "forget",
                    "removed_count": response.removed_count,
                    "not_found": response.not_found,
                }
            )
        elif kind == "update_text":
            old = rng.choice(present)
            text = f"{tag}x{n}u {words(rng, 12)}"
            new_id = dedup_key(NAMESPACE, text)
            emit({"ev": "begin", "n": n, "op": "update_text", "old": old, "new": new_id, "text": text})
            response = await service.update(old, text=text)
            emit({"ev": "ack", "n": n, "op": "update_text", "id": response.id, "supersedes": response.supersedes})
        else:
            memory_id = rng.choice(present)
            current = lexical.get([memory_id])[memory_id].tags
            tags = sorted({*current[:1], f"{tag}x{n}t"})
            emit({"ev": "begin", "n": n, "op": "update_tags", "id": memory_id, "tags": tags})
            response = await service.update(memory_id, tags=tags)
            emit({"ev": "ack", "n": n, "op": "update_tags", "id": response.id, "changed": response.changed})
        time.sleep(pauses.uniform(0, args.pause_ms / 1000))  # so some kills land between operations
    emit({"ev": "finished"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-ops", type=int, default=1000)
    parser.add_argument("--stall-ms", type=float, default=100.0)
    parser.add_argument("--pause-ms", type=float, default=50.0)
    parser.add_argument("--hold-at-write", type=int, default=0)
    parser.add_argument("--embedder", choices=["hash", "real"], default="hash")
    args = parser.parse_args()
    asyncio.run(run(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
