"""The process ``test_faults`` starts on damaged data dirs: for each, it opens the store as the server does
and reports, as one JSON line on stdout, what it can read (every memory's text, the store's ids, a vector
query) and what it repaired, or the refusal. A separate process, so that a crash in native code is seen as
one rather than taking the test run down."""

from __future__ import annotations

import argparse
import json
import sys

from mimir_mcp.config import Settings
from mimir_mcp.errors import MimirError
from mimir_mcp.service.memory import MemoryService
from tests.durability_worker import HashEmbedder


def inspect(data_dir: str) -> dict:
    settings = Settings(store={"data_dir": data_dir}, reranker={"enabled": False})
    service = MemoryService(settings, embedder=HashEmbedder(settings.embedding))
    try:
        store, lexical = service.storage()
        ids = sorted(lexical.ids())
        records = lexical.get(ids)
        backend = service.loader.wait()
        return {
            "texts": {memory_id: records[memory_id].text for memory_id in ids if memory_id in records},
            "store_ids": sorted(store.all_ids()),
            # Every part of the store a search reads: the vector index too (a torn one must never crash).
            "found": len(store.query(service.embedder.encode(["memory"])[0], 5)),
            "repaired": None if backend.repair is None else backend.repair.reason,
            "catalogue_repaired": None if backend.catalogue_repair is None else backend.catalogue_repair.reason,
        }
    except MimirError as exc:
        return {"refused": str(exc)}
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dirs", nargs="+")
    for data_dir in parser.parse_args().data_dirs:
        print(json.dumps({"data_dir": data_dir, **inspect(data_dir)}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
