"""Opening the store and its catalogue once, in the background, so the MCP handshake never waits for them:
a torn store rebuilt from the catalogue, the catalogue caught up with the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from mimir_mcp.background import BackgroundLoad
from mimir_mcp.config import Settings, StoreSettings
from mimir_mcp.embedding import TextEmbedder
from mimir_mcp.errors import StoreUnavailableError
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import ModelState, RepairReport
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.service.sync import StoreSync
from mimir_mcp.store.base import StoreFactory, VectorStore


@dataclass(frozen=True)
class Backend:
    """The opened store and its catalogue with the BM25 index, created together."""

    store: VectorStore
    lexical: LexicalIndex
    # Set when opening found a store it could not read and rebuilt it from the catalogue; for status.
    repair: RepairReport | None = None


def catalogue_path(settings: StoreSettings) -> Path:
    """The catalogue and BM25 file of the configured store: one per data dir, and one per Chroma server."""
    server = f"-{settings.chroma_host}-{settings.chroma_port}" if settings.chroma_host else ""
    return Path(settings.data_dir).expanduser() / f"bm25-{settings.collection}{server}.sqlite3"


def open_backend(
    settings: Settings, embedder: TextEmbedder, open_store: StoreFactory, sync: StoreSync, board: StatusBoard
) -> Backend:
    """Blocking: open the store and the catalogue under the store's write lock, rebuild a store whose files
    cannot be read (``VectorStore.repairable``), and bring the catalogue level with the store."""
    model = settings.embedding.model
    path = catalogue_path(settings.store)
    store = open_store(settings, embedder)
    repair = None
    with store.writing():
        catalogued = path.exists()
        lexical = LexicalIndex(path)
        damage = store.damage() if store.repairable else None
        if damage is not None:
            if not catalogued:
                raise StoreUnavailableError(
                    f"Chroma cannot read the collection {store.name!r} in {store.location} ({damage}), and "
                    "there is no record catalogue to rebuild it from (it was deleted). Restore the memories "
                    "from an export (`mimir-mcp import`) into a new data dir, or put the catalogue file back."
                )
            repair = store.rebuild(lexical, embedder.encode, model, damage)
            store = open_store(settings, embedder)
        sync.opened(store, lexical)
    board.recount(store, lexical)
    return Backend(store, lexical, repair)


class StoreLoader:
    """The backend, loaded once in the background; ``ready`` and ``synced`` are what callers await."""

    def __init__(
        self,
        settings: Settings,
        embedder: TextEmbedder,
        open_store: StoreFactory,
        sync: StoreSync,
        board: StatusBoard,
    ) -> None:
        self._embedder = embedder
        self._sync = sync
        self._load: BackgroundLoad[Backend] = BackgroundLoad(
            "memory store", lambda: open_backend(settings, embedder, open_store, sync, board)
        )

    def start(self) -> None:
        """Start opening, without waiting; later calls do nothing."""
        self._load.start()

    def wait(self) -> Backend:
        """Blocking: the opened backend (opening it if needed); re-raises what made opening fail."""
        return self._load.wait()

    def result_now(self) -> Backend | None:
        return self._load.result_now()

    @property
    def state(self) -> ModelState:
        return self._load.state

    @property
    def error(self) -> BaseException | None:
        return self._load.error

    async def ready(self) -> Backend:
        """The backend and the embedder, loaded; a failure to load either is the caller's error."""
        try:
            backend = await self._load.wait_async()
            await self._embedder.ready()
        except Exception as exc:
            raise StoreUnavailableError(
                f"The memory store is unavailable: {type(exc).__name__}: {exc}. "
                "Check MIMIR_STORE_DATA_DIR (or the Chroma server settings) and the embedding model."
            ) from exc
        return backend

    async def synced(self) -> Backend:
        """The backend, with changes made by other processes applied: list, get, forget and update act on
        what the store holds now, not on what this process last saw."""
        backend = await self.ready()
        if self._sync.due(backend.store):
            await anyio.to_thread.run_sync(self._sync.catch_up, backend.store, backend.lexical)
        return backend
