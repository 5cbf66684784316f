"""``mimir-mcp reindex``: re-embed every memory with another embedding model, without a moment in which
the store is unusable or a crash loses memories.

The new vectors go into a collection beside the live one (``<collection>-reindex``); the live one is
untouched until every memory is copied, so a crash before the switch-over leaves the old store working
and a rerun embeds only the memories still missing. The switch-over renames the live collection to
``<collection>-previous``, the new one to ``<collection>``, then drops the old one; ``ChromaStore``
finishes or undoes a switch-over that a crash interrupted when it next opens the store. The BM25 index
and the record catalogue do not change: the ids and texts are the same. Nor do the store's tombstones
(``VectorStore.add_tombstones``): they live in a collection of their own (``<collection>-tombstones``),
which the switch-over leaves alone, and the memories a copy pass drops from the new collection are gone
from the live one already, under their tombstones.

Stop the servers using the store first: one that keeps running holds the old collection and would go
on writing to it after the switch-over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mimir_mcp.config import Settings, StoreSettings
from mimir_mcp.embedding import Embedder, TextEmbedder
from mimir_mcp.store.base import VectorStore
from mimir_mcp.store.chroma import PREVIOUS_SUFFIX, REINDEX_SUFFIX, ChromaStore, embedded_path
from mimir_mcp.store.chroma_records import make_embedding_function

logger = logging.getLogger(__name__)

DEFAULT_REINDEX_BATCH = 256
# Copy passes before giving up on a store that other processes keep changing.
MAX_PASSES = 5
# What ``--eval`` measures: the two methods the embedding model changes, without the cross-encoder.
EVAL_METHODS = ("dense", "hybrid")


class ReindexPlan(BaseModel):
    """What a reindex will do, known before any embedding (the progress bar's total)."""

    collection: str
    previous_model: str | None = Field(description="The model the live collection records; None if unrecorded.")
    model: str
    memories: int
    copied: int = Field(description="Memories already in the new collection, from an interrupted run.")
    to_embed: int
    up_to_date: bool = Field(description="The store already holds this model's vectors: nothing to do.")


class ReindexReport(BaseModel):
    collection: str
    previous_model: str | None
    model: str
    dimension: int | None = Field(description="Of the new vectors; None when the store holds no memories.")
    memories: int
    embedded: int = Field(description="Memories embedded by this run.")
    resumed: int = Field(description="Memories an interrupted run had embedded already.")
    switched: bool = Field(description="False when the store already held this model's vectors.")


def chroma_client(settings: StoreSettings) -> Any:
    """A client of the store ``ChromaStore`` opens (the embedded folder or the server), for what it does
    not do: renaming and dropping whole collections."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl, settings=chroma_settings
        )
    return chromadb.PersistentClient(path=str(embedded_path(settings)), settings=chroma_settings)


def collection_names(client: Any) -> set[str]:
    return {getattr(item, "name", item) for item in client.list_collections()}


class Reindexer:
    """Re-embeds one store's collection with ``model`` (default: the configured one), ``batch_size``
    memories at a time. ``plan``, ``copy`` and ``switch`` are the steps ``run`` takes, apart for tests
    and progress bars."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: str | None = None,
        embedder: TextEmbedder | None = None,
        batch_size: int = DEFAULT_REINDEX_BATCH,
        force: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch: must be at least 1, got {batch_size}")
        self.settings = settings
        self.model = model or settings.embedding.model
        # The new model's recorded ONNX copy where there is one (the same vectors), else torch: a one-off
        # command builds none; the server builds the copy at its next start.
        self.embedder = embedder or Embedder(
            settings.embedding.model_copy(update={"model": self.model}),
            cache_dir=settings.model_cache_dir,
            onnx_cache_dir=settings.store.onnx_cache_dir.expanduser(),
            build_copy=False,
        )
        self.batch_size = batch_size
        self.force = force
        self.name = settings.store.collection
        self.fresh_name = self.name + REINDEX_SUFFIX
        self._plan: ReindexPlan | None = None
        self._live: ChromaStore | None = None
        self._fresh: ChromaStore | None = None
        self._client: Any = None

    def plan(self) -> ReindexPlan:
        """Open the store (finishing an interrupted switch-over) and the new collection (keeping what an
        interrupted run copied, unless it was for another model), and count what is left to embed."""
        store = self.settings.store
        missing = ValueError(f"the store has no collection {self.name!r} to reindex (data dir: {store.data_dir})")
        if not store.chroma_host and not embedded_path(store).is_dir():
            raise missing
        self._client = client = chroma_client(store)
        if not collection_names(client) & {self.name, self.fresh_name, self.name + PREVIOUS_SUFFIX}:
            raise missing
        function = make_embedding_function(self.embedder.encode, self.model)
        # model=None: open whatever the live collection holds; the new one is checked below.
        live = ChromaStore(store, function)
        if self.fresh_name in collection_names(client):
            recorded = (client.get_collection(self.fresh_name).metadata or {}).get("embedding_model")
            if recorded != self.model:
                logger.warning(
                    "reindex: dropping an unfinished reindex into %r to start one into %r", recorded, self.model
                )
                client.delete_collection(self.fresh_name)
        resuming = self.fresh_name in collection_names(client)
        live_ids = live.all_ids()
        up_to_date = not resuming and not self.force and live.embedding_model == self.model
        copied: set[str] = set()
        if not up_to_date:
            fresh_settings = store.model_copy(update={"collection": self.fresh_name})
            self._fresh = ChromaStore(fresh_settings, function, model=self.model)
            copied = self._fresh.all_ids() & live_ids
        self._live = live
        self._plan = ReindexPlan(
            collection=self.name,
            previous_model=live.embedding_model,
            model=self.model,
            memories=len(live_ids),
            copied=len(copied),
            to_embed=0 if up_to_date else len(live_ids) - len(copied),
            up_to_date=up_to_date,
        )
        return self._plan

    def copy(self, on_progress: Callable[[int], object] | None = None) -> int:
        """Bring the new collection level with the live one, then mark it complete; returns how many
        memories were embedded. Passes repeat while other processes change the store meanwhile."""
        live, fresh = self._opened()
        embedded = 0
        for _ in range(MAX_PASSES):
            generation = live.generation()
            embedded += self._copy_pass(live, fresh, on_progress)
            if live.generation() == generation and live.all_ids() == fresh.all_ids():
                break
        else:
            raise RuntimeError(
                f"the store kept changing during {MAX_PASSES} copy passes; stop the servers writing to it and "
                "run reindex again (it resumes where it stopped)"
            )
        fresh.take_over(live.collection_meta(), "reindex_complete")
        return embedded

    def _copy_pass(self, live: VectorStore, fresh: VectorStore, on_progress: Callable[[int], object] | None) -> int:
        """Embed the memories the new collection lacks, drop those the live one no longer holds, and
        refresh the tags and metadata of those changed since an interrupted run copied them."""
        copied = fresh.all_ids()
        gone = copied - live.all_ids()
        if gone:
            fresh.delete(sorted(gone))
        embedded = 0
        for page, _ in live.records():
            kept = [record for record in page if record.id in copied]
            if kept:
                stale = {record.id: record for record in fresh.get([record.id for record in kept])}
                for record in kept:
                    if stale.get(record.id, record) != record:
                        fresh.set_fields(record, stale[record.id])
            todo = [record for record in page if record.id not in copied]
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                vectors = self.embedder.encode([record.text for record in chunk])
                fresh.add(chunk, vectors)
                fresh.record_dimension(int(vectors.shape[1]))
                embedded += len(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
        return embedded

    def switch(self) -> None:
        """Put the complete new collection in the live one's place. Each rename is atomic, and
        ``ChromaStore._recover_reindex`` finishes the switch-over from any point a crash leaves."""
        client = self._client
        previous = self.name + PREVIOUS_SUFFIX
        client.get_collection(self.name).modify(name=previous)
        client.get_collection(self.fresh_name).modify(name=self.name)
        client.delete_collection(previous)
        logger.info("reindex: %r now holds %s vectors; the old collection is dropped", self.name, self.model)

    def run(self, on_progress: Callable[[int], object] | None = None) -> ReindexReport:
        plan = self._plan or self.plan()
        embedded = 0
        dimension = self._live.embedding_dimension if self._live is not None else None
        if not plan.up_to_date:
            embedded = self.copy(on_progress)
            _, fresh = self._opened()
            dimension = fresh.embedding_dimension
            self.switch()
        return ReindexReport(
            collection=self.name,
            previous_model=plan.previous_model,
            model=self.model,
            dimension=dimension,
            memories=plan.memories,
            embedded=embedded,
            resumed=plan.copied,
            switched=not plan.up_to_date,
        )

    def _opened(self) -> tuple[ChromaStore, ChromaStore]:
        if self._plan is None:
            self.plan()
        if self._live is None or self._fresh is None:
            raise RuntimeError("the store already holds this model's vectors; pass force=True to re-embed them")
        return self._live, self._fresh


async def evaluate_model(dataset: Path, settings: Settings, model: str) -> dict[str, float]:
    """nDCG@10 of ``EVAL_METHODS`` on a BEIR folder embedded with ``model``, in a scratch store (never the
    configured one, even on a Chroma server), for comparing the models before and after a reindex."""
    from mimir_mcp.evaluation.run import run_eval

    scratch = settings.model_copy(
        update={
            "store": StoreSettings(),
            "embedding": settings.embedding.model_copy(update={"model": model, "query_backend": "torch"}),
            "reranker": settings.reranker.model_copy(update={"enabled": False}),
        }
    )
    report = await run_eval(dataset, methods=EVAL_METHODS, settings=scratch, dataset_format="beir")
    return {name: figures["ndcg@10"] for name, figures in report["methods"].items()}
