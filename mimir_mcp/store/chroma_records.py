"""How a memory and a filter are written in Chroma's terms: reserved fields and user metadata side by side
in one flat metadata dict, the filter rule as a ``where`` clause, and the embedding function Chroma is
handed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mimir_mcp.models import MemoryRecord, RecordFilter
from mimir_mcp.store.catalogue import timestamp

# Records per call to Chroma: its client refuses batches past its own maximum.
CHROMA_BATCH = 1000
# The name a collection Chroma cannot read is kept under, with the time it was set aside.
DAMAGED_SUFFIX = "-damaged-"
USER_METADATA_PREFIX = "m:"
# A reserved field naming the add that stored a memory on a Chroma server (``ChromaStore.add``); never read
# into a record.
WRITER_FIELD = "writer"


def to_chroma_metadata(record: MemoryRecord) -> dict[str, Any]:
    """Reserved fields at the top level, user metadata under a prefix so a user key can never shadow them."""
    metadata: dict[str, Any] = {
        "namespace": record.namespace,
        "created_at": record.created_at,
        "created_ts": timestamp_or_zero(record.created_at),
    }
    if record.updated_at is not None:
        metadata["updated_at"] = record.updated_at
        metadata["updated_ts"] = timestamp_or_zero(record.updated_at)
    if record.supersedes is not None:
        metadata["supersedes"] = record.supersedes
    if record.tags:
        metadata["tags"] = list(record.tags)
    if record.source is not None:
        metadata["source"] = record.source
    if record.agent is not None:
        metadata["agent"] = record.agent
    metadata.update({USER_METADATA_PREFIX + key: value for key, value in record.metadata.items()})
    return metadata


def record_from_chroma(memory_id: str, document: str, metadata: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(
        id=memory_id,
        text=document,
        namespace=metadata.get("namespace", "default"),
        tags=list(metadata.get("tags") or []),
        source=metadata.get("source"),
        agent=metadata.get("agent"),
        created_at=metadata.get("created_at", ""),
        updated_at=metadata.get("updated_at"),
        supersedes=metadata.get("supersedes"),
        metadata={
            key[len(USER_METADATA_PREFIX) :]: value
            for key, value in metadata.items()
            if key.startswith(USER_METADATA_PREFIX)
        },
    )


def timestamp_or_zero(iso: str) -> float:
    try:
        return timestamp(iso)
    except ValueError:
        return 0.0


def chroma_where(where: RecordFilter) -> dict[str, Any] | None:
    """The filter rule (``catalogue.filter_sql``) as a Chroma ``where`` clause, so the HNSW search itself
    is filtered; ``None`` when there is nothing to filter. The pipeline re-checks every candidate
    against the catalogue, so the two can never disagree on what is shown."""
    clauses: list[dict[str, Any]] = []
    if where.namespace is not None:
        clauses.append({"namespace": where.namespace})
    if where.namespaces is not None:
        clauses.append({"namespace": {"$in": where.namespaces}})
    clauses.extend({"tags": {"$contains": tag}} for tag in where.tags)
    if where.agent is not None:
        clauses.append({"agent": where.agent})
    clauses.extend({USER_METADATA_PREFIX + key: value} for key, value in where.metadata.items())
    if where.created_after is not None:
        clauses.append({"created_ts": {"$gte": where.created_after}})
    if where.created_before is not None:
        clauses.append({"created_ts": {"$lt": where.created_before}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def make_embedding_function(encode: Callable[[list[str]], np.ndarray], model: str) -> Any:
    """The project's own Chroma embedding function, so Chroma never falls back to its default one
    (which downloads a model at run time)."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

    class MimirEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self) -> None:
            self._model = model

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - Chroma's signature
            return list(encode(list(input)))

        @staticmethod
        def name() -> str:
            return "mimir-sentence-transformer"

        def get_config(self) -> dict[str, Any]:
            return {"model": self._model}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> EmbeddingFunction[Documents]:
            return MimirEmbeddingFunction()

        def is_legacy(self) -> bool:
            return False

    return MimirEmbeddingFunction()
