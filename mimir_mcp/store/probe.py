"""Opening an embedded Chroma folder in a child process first, so that a torn vector index crashes the child,
not the server: Chroma reads its HNSW files in native code, and some damage there (4 KB of garbage in
``data_level0.bin`` or ``link_lists.bin``) is a segmentation fault rather than an error, at start or at a
later query, even after the collection was rebuilt in the same process. A folder whose index files are as
they were when a probe last read them whole (or the last write under the lock left them) is not probed
again, nor its SQLite file checked.

Run as ``python -m mimir_mcp.store.probe FOLDER COLLECTION``: exit 0 when the collection opens, counts and
answers vector queries (its tombstones too, where an error is left to the store); 2 when there is no such
collection yet; 1 with the error on stderr when Chroma cannot read it; a signal when it crashes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

# Beside the Chroma folder: the index files' sizes and times as of the last probe that read them whole.
VERIFIED = "chroma-verified.json"
PROBE_TIMEOUT_S = 300.0
PROBE_QUERIES = 16


def files_signature(files: Iterable[Path], folder: Path) -> list[list[object]]:
    """Each of ``files`` that is a file, by its path below ``folder``, with its size and time: what a
    process that changes any of them, or dies changing them, leaves different."""
    found = sorted(p for p in files if p.is_file())
    return [[str(p.relative_to(folder)), (stat := p.stat()).st_size, stat.st_mtime_ns] for p in found]


def index_signature(folder: Path) -> list[list[object]]:
    """The vector index files (every file below the folder's segment directories), their sizes and times."""
    return files_signature(folder.glob("*/*"), folder)


def store_signature(folder: Path) -> dict[str, list[list[object]]]:
    """The index files and Chroma's SQLite files (with a journal or WAL left over), sizes and times."""
    return {"index": index_signature(folder), "sqlite": files_signature(folder.glob("chroma.sqlite3*"), folder)}


def vouched(folder: Path) -> bool:
    """Whether the index files and the SQLite file are as a probe, or the last write that started from
    vouched files, left them: then neither is read through before opening (a minute each at a million).
    Chroma writes to its database when it opens it too: the store vouches again once open."""
    try:
        return json.loads((folder.parent / VERIFIED).read_text()) == store_signature(folder)
    except (OSError, ValueError):
        return False


def vouch(folder: Path) -> None:
    """Record the files as they are now: a write that began from vouched files has just ended whole
    (under the store lock). A writer killed before this leaves files no record matches: the next open checks."""
    (folder.parent / VERIFIED).write_text(json.dumps(store_signature(folder)))


def index_damage(folder: Path, collection: str) -> str | None:
    """Why Chroma cannot read ``collection`` in ``folder`` whole, tried in a child process: it crashed or
    it failed; ``None`` when it read it (or the index files are as a probe last found them whole)."""
    if not index_signature(folder):
        vouch(folder)  # no index files: nothing native to read
        return None
    if vouched(folder):
        return None
    command = [sys.executable, "-m", "mimir_mcp.store.probe", str(folder), collection]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    if done.returncode < 0:
        return f"Chroma crashed reading the vector index (signal {-done.returncode})"
    if done.returncode == 1:
        # Reading a torn index can corrupt the reader's memory before it raises: not in the server's process.
        said = done.stderr.strip().splitlines()
        return f"Chroma cannot read the vector index ({said[-1] if said else 'no message'})"
    if done.returncode == 0:
        vouch(folder)
    return None


def main() -> None:
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    from mimir_mcp.store.chroma_tombstones import TOMBSTONE_SUFFIX

    folder, name = sys.argv[1], sys.argv[2]
    client = chromadb.PersistentClient(path=folder, settings=ChromaSettings(anonymized_telemetry=False))
    names = {str(getattr(item, "name", item)) for item in client.list_collections()}
    if name not in names:
        sys.exit(2)
    collection = client.get_collection(name)
    count = collection.count()
    dimension = (collection.metadata or {}).get("embedding_dimension")
    if dimension and count:
        # Queries from several directions walk most of the graph's links, where torn ones crash.
        probes = np.random.default_rng(0).standard_normal((PROBE_QUERIES, int(dimension))).astype(np.float32)
        collection.query(query_embeddings=list(probes), n_results=min(count, 50), include=[])
    if name + TOMBSTONE_SUFFIX in names:
        # The record of deletions is read at every open too. An error there is the store's to handle (it
        # sets the tombstones aside and keeps the memories); only a crash reading them is the probe's news.
        try:
            tombstones = client.get_collection(name + TOMBSTONE_SUFFIX)
            if tombstones.count():
                tombstones.query(query_embeddings=[[0.0], [1.0]], n_results=min(tombstones.count(), 50), include=[])
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: see above
            print(f"the tombstones cannot be read: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
