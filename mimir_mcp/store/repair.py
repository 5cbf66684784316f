"""Rebuilding an embedded collection that Chroma can no longer read, from the record catalogue.

A process killed while Chroma writes its vector index (``kill -9``, the OOM killer, a power cut) can
leave the index files torn; from then on every read of the collection fails ("Failed to apply logs to
the hnsw segment writer", chroma-core/chroma#7678) and a server on that data dir could not start. The
catalogue is a SQLite database written in transactions, after Chroma, for every change: it holds every
acknowledged change, at most without the one in flight, which was never acknowledged. Re-embedding its
memories gives a working collection. The damaged one is kept under another name, never deleted.

Crash-safe like ``reindex``: the new collection is filled beside the damaged one and marked complete
before the two are renamed, and ``ChromaStore`` finishes an interrupted switch-over when it next opens.
The store's tombstones (``<collection>-tombstones``) are a collection of their own and stay as they are; a
memory whose deletion a crash left in the catalogue comes back with the rest and its tombstone names it,
so the next open completes that deletion (``sync.finish_interrupted_forgets``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from mimir_mcp.config import StoreSettings
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.status_models import RepairReport
from mimir_mcp.store.chroma import IDENTITY_KEY, REPAIR_SUFFIX, ChromaStore
from mimir_mcp.store.chroma_records import make_embedding_function

logger = logging.getLogger(__name__)

REPAIR_BATCH = 256


def rebuild_from_catalogue(
    settings: StoreSettings,
    damaged: ChromaStore,
    lexical: LexicalIndex,
    encode: Callable[[list[str]], np.ndarray],
    model: str,
    reason: str,
    *,
    identity: str | None = None,
    batch_size: int = REPAIR_BATCH,
) -> RepairReport:
    """Fill a new collection with every memory of the catalogue, embedded again, then give it the damaged
    collection's name (and ``identity``, the one the catalogue knows, in place of an empty store's own: set
    with the mark of completion, so an interrupted rebuild is finished, never taken for another store). The
    caller holds the store lock and opens the store again afterwards."""
    started = time.perf_counter()
    fresh_name = settings.collection + REPAIR_SUFFIX
    damaged.drop_collection(fresh_name)  # an interrupted rebuild: start again
    fresh = ChromaStore(
        settings.model_copy(update={"collection": fresh_name}), make_embedding_function(encode, model), model=model
    )
    ids = sorted(lexical.ids())
    logger.warning(
        "store: the collection %r must be rebuilt (%s); rebuilding it from the record catalogue: %d memories",
        settings.collection,
        reason,
        len(ids),
    )
    for start in range(0, len(ids), batch_size):
        found = lexical.get(ids[start : start + batch_size])
        records = [found[memory_id] for memory_id in ids[start : start + batch_size] if memory_id in found]
        if records:
            vectors = encode([record.text for record in records])
            fresh.add(records, vectors)
            fresh.record_dimension(int(vectors.shape[1]))
        if len(ids) > batch_size:
            logger.warning("store: rebuilt %d/%d memories", min(start + batch_size, len(ids)), len(ids))
    previous = damaged.collection_meta()
    if identity is not None:
        previous[IDENTITY_KEY] = identity
    fresh.take_over(previous, "repair_complete")
    fresh.close()
    empty = damaged.count() == 0
    kept_as = damaged.replace_with(fresh_name)
    if empty and damaged.set_aside is not None:  # the empty stand-in for a folder kept aside: nothing to keep
        damaged.drop_collection(kept_as)
        kept_as = damaged.set_aside[1]
    report = RepairReport(
        reason=reason,
        memories=len(ids),
        kept_as=kept_as,
        seconds=round(time.perf_counter() - started, 2),
    )
    logger.warning(
        "store: rebuilt the collection %r from the catalogue (%d memories, %.1f s); the damaged one is kept as %r",
        settings.collection,
        report.memories,
        report.seconds,
        kept_as,
    )
    return report
