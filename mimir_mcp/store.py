"""The Chroma adapter: the store of record for memories and their vectors, embedded or on a server."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimir_mcp.config import StoreSettings
from mimir_mcp.models import MemoryRecord, MetadataValue

logger = logging.getLogger(__name__)

USER_METADATA_PREFIX = "m:"
CHROMA_BATCH = 1000


def to_chroma_metadata(record: MemoryRecord) -> dict[str, Any]:
    """Reserved fields at the top level, user metadata under a prefix so a user key can never shadow them."""
    metadata: dict[str, Any] = {"namespace": record.namespace, "created_at": record.created_at}
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
        metadata={
            key[len(USER_METADATA_PREFIX) :]: value
            for key, value in metadata.items()
            if key.startswith(USER_METADATA_PREFIX)
        },
    )


def chroma_where(
    namespace: str | None, tags: Sequence[str], metadata: dict[str, MetadataValue]
) -> dict[str, Any] | None:
    """The Chroma ``where`` clause for the search filters (``None`` when there is nothing to filter)."""
    clauses: list[dict[str, Any]] = []
    if namespace is not None:
        clauses.append({"namespace": namespace})
    clauses.extend({"tags": {"$contains": tag}} for tag in tags)
    clauses.extend({USER_METADATA_PREFIX + key: value} for key, value in metadata.items())
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


class MemoryStore:
    """A Chroma collection in cosine space holding every memory's text, metadata and vector."""

    def __init__(self, settings: StoreSettings, embedding_function: Any) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.settings = settings
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if settings.chroma_host:
            self.kind = "server"
            self.location = (
                f"{'https' if settings.chroma_ssl else 'http'}://{settings.chroma_host}:{settings.chroma_port}"
            )
            self._client = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl, settings=chroma_settings
            )
        else:
            self.kind = "embedded"
            path = Path(settings.data_dir).expanduser() / "chroma"
            path.mkdir(parents=True, exist_ok=True)
            self.location = str(path)
            self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        self._collection = self._client.get_or_create_collection(
            settings.collection,
            embedding_function=embedding_function,
            configuration={"hnsw": {"space": "cosine"}},
        )

    def add(self, records: Sequence[MemoryRecord], embeddings: np.ndarray) -> None:
        for start in range(0, len(records), CHROMA_BATCH):
            chunk = records[start : start + CHROMA_BATCH]
            self._collection.add(
                ids=[record.id for record in chunk],
                documents=[record.text for record in chunk],
                embeddings=embeddings[start : start + CHROMA_BATCH],
                metadatas=[to_chroma_metadata(record) for record in chunk],
            )

    def existing(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return set(self._collection.get(ids=list(dict.fromkeys(ids)), include=[])["ids"])

    def query(
        self,
        embedding: np.ndarray,
        limit: int,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        metadata: dict[str, MetadataValue] | None = None,
    ) -> list[tuple[str, float]]:
        """Nearest memories as ``(id, cosine similarity)``, best first."""
        if limit <= 0:
            return []
        result = self._collection.query(
            query_embeddings=[embedding],
            n_results=limit,
            where=chroma_where(namespace, tags, metadata or {}),
            include=["distances"],
        )
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result["distances"] else []
        return [(memory_id, 1.0 - float(distance)) for memory_id, distance in zip(ids, distances, strict=True)]

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        records: list[MemoryRecord] = []
        for start in range(0, len(ids), CHROMA_BATCH):
            result = self._collection.get(
                ids=list(ids[start : start + CHROMA_BATCH]), include=["documents", "metadatas"]
            )
            records.extend(
                record_from_chroma(memory_id, document or "", metadata or {})
                for memory_id, document, metadata in zip(
                    result["ids"], result["documents"], result["metadatas"], strict=True
                )
            )
        return records

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            page = self._collection.get(include=[], limit=10_000, offset=offset)["ids"]
            ids.update(page)
            if len(page) < 10_000:
                return ids
            offset += len(page)

    def count(self) -> int:
        return self._collection.count()

    def change_token(self) -> tuple[tuple[str, int, int, int], ...] | None:
        """For the embedded store, a fingerprint of Chroma's database files that every write changes,
        whichever process makes it, and reads do not: a few microseconds against ~4 ms for ``count``
        at 100k memories. ``None`` for a Chroma server, whose files are out of reach."""
        if self.kind != "embedded":
            return None
        token = []
        for name in ("chroma.sqlite3", "chroma.sqlite3-wal", "chroma.sqlite3-journal"):
            try:
                stat = os.stat(Path(self.location) / name)
            except FileNotFoundError:
                continue
            token.append((name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
        return tuple(token) or None
