"""Opening the store and its catalogue once, in the background, so the MCP handshake never waits for them:
each guards the other. A torn store, or one that came back empty, is rebuilt from the catalogue; a damaged
catalogue is set aside and filled again from the store; then the two are caught up with each other, the
memories a store lost without a record of their deletion restored to it (``sync.reconcile``).

A catalogue that the last clean close left as it is opens first, alone (``open_keywords``), so that search
answers from its keyword arms while Chroma is imported and opened and its vector index loaded
(``VectorStore.warm``): seconds at a million memories. Only for the embedded store: a node of a Chroma
server shared by others would answer from a catalogue without what they stored meanwhile."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

import anyio.to_thread

from mimir_mcp.background import BackgroundLoad
from mimir_mcp.config import Settings
from mimir_mcp.embedding import TextEmbedder
from mimir_mcp.errors import StoreUnavailableError, full_disk
from mimir_mcp.lexical.index import LexicalIndex, closed_whole
from mimir_mcp.locks import ProcessLock
from mimir_mcp.service.status import StatusBoard
from mimir_mcp.service.sync import StoreSync
from mimir_mcp.status_models import ModelState, RepairReport
from mimir_mcp.store.base import StoreFactory, VectorStore
from mimir_mcp.store.catalogue import Catalogue, catalogue_path, set_aside_if_damaged
from mimir_mcp.store.chroma import embedded_path, store_lock_path

logger = logging.getLogger(__name__)

# The catalogue's record of which store it was filled from (``VectorStore.identity``).
STORE_IDENTITY = "store_identity"
# ... and of the embedding model that store holds vectors of, as its last open found it: a server configured
# with another one does not answer from the catalogue before the store refuses it (``open_keywords``).
STORE_MODEL = "store_embedding_model"


@dataclass(frozen=True)
class Backend:
    """The opened store and its catalogue with the BM25 index, created together."""

    store: VectorStore
    lexical: LexicalIndex
    # Set when opening found a store it could not read, or one that had lost its memories, and rebuilt it
    # from the catalogue.
    rebuilt: RepairReport | None = None
    # Set when opening found the catalogue damaged, set it aside and filled a new one from the store.
    catalogue_repair: RepairReport | None = None
    # Its reconciles, which restore memories the store lost.
    sync: StoreSync | None = None

    @property
    def repair(self) -> RepairReport | None:
        """The store's latest repair, for status: memories the store had lost restored from the catalogue
        (at open or since), or else the rebuild at open."""
        restored = None if self.sync is None else self.sync.restored
        return restored or self.rebuilt


@dataclass(frozen=True)
class Keywords:
    """The catalogue and its BM25 index, opened before the store (``open_keywords``), with the catalogue's
    generation then."""

    lexical: LexicalIndex
    generation: int


def open_keywords(settings: Settings) -> Keywords | None:
    """Blocking: the catalogue and its BM25 index alone, when the store is embedded and the last clean close
    left the catalogue as it is (nothing to check or repair), or the data dir holds neither yet (a first
    start: nothing is stored); else ``None``, and the store opens first. Under the store's write lock, like
    every open of the catalogue."""
    if settings.store.chroma_host:
        return None
    path = catalogue_path(settings.store)
    with ProcessLock(store_lock_path(settings.store)):
        if not path.exists() and not embedded_path(settings.store).exists():
            lexical = LexicalIndex(path)  # new and empty
            return Keywords(lexical, lexical.catalogue.generation())
        if not closed_whole(path):
            return None
        catalogue = Catalogue(path)
        if catalogue.meta(STORE_MODEL) != settings.embedding.model:
            catalogue.close()  # only read: its files stay as the last clean close left them
            return None
        lexical = LexicalIndex(catalogue)
        return Keywords(lexical, catalogue.generation())


def open_backend(
    settings: Settings,
    embedder: TextEmbedder,
    open_store: StoreFactory,
    sync: StoreSync,
    board: StatusBoard,
    keywords: Keywords | None = None,
) -> Backend:
    """Blocking: open the store and the catalogue (or take ``keywords``, opened already) under the store's
    write lock, rebuild a store whose files cannot be read (``VectorStore.repairable``), and bring the
    catalogue level with the store."""
    model = settings.embedding.model
    path = catalogue_path(settings.store)
    store = open_store(settings, embedder)
    repair = catalogue_repair = None
    # A store a rebuild replaced is closed after the lock is let go (``VectorStore.close``).
    with ExitStack() as replaced, store.writing():
        started = time.perf_counter()
        if keywords is not None:
            lexical = keywords.lexical
            # Another process may have written between the two holds of the lock: then it is checked, and its
            # rows taken in (unless an early search did already).
            catalogue_whole = lexical.catalogue.generation() == keywords.generation
            if not catalogue_whole:
                lexical.level()
            set_aside, catalogued = None, True
        else:
            # SQLite's check reads the whole file: not when it is as the last clean close left it.
            catalogue_whole = closed_whole(path)
            set_aside = None if catalogue_whole else set_aside_if_damaged(path)
            catalogued = path.exists()
            lexical = LexicalIndex(path)
        # Files as the last whole write left them hold no torn write: not read through again.
        damage = store.damage() if store.repairable and not store.found_whole else None
        if damage is not None:
            if not catalogued:
                raise StoreUnavailableError(
                    f"Chroma cannot read the collection {store.name!r} in {store.location} ({damage}), and "
                    "there is no record catalogue to rebuild it from (it was deleted or damaged). Restore the "
                    "memories from an export (`mimir-mcp import`) into a new data dir, or put the catalogue back."
                )
            repair = store.rebuild(lexical, embedder.encode, model, damage)
            replaced.callback(store.close)
            store = open_store(settings, embedder)
        known, identity = lexical.catalogue.meta(STORE_IDENTITY), store.identity()
        lost = _lost_store(store, lexical, known, identity)
        if lost is not None:
            repair = store.rebuild(lexical, embedder.encode, model, lost, identity=known)
            replaced.callback(store.close)
            store, identity = open_store(settings, embedder), known  # the rebuilt store has the catalogue's
        if identity is not None and identity != known:
            lexical.catalogue.set_meta(STORE_IDENTITY, identity)
        if lexical.catalogue.meta(STORE_MODEL) != model:  # the store took this model's vectors (it checks)
            lexical.catalogue.set_meta(STORE_MODEL, model)
        whole = catalogue_whole and store.found_whole and repair is None
        counted = sync.opened(store, lexical, embedder.encode, whole=whole)
        if set_aside is not None:
            problem, kept = set_aside
            catalogue_repair = RepairReport(
                reason=f"SQLite cannot read the record catalogue ({problem})",
                memories=lexical.count(),
                kept_as=str(kept),
                seconds=round(time.perf_counter() - started, 3),
            )
            logger.warning(
                "store: the record catalogue %s was damaged (%s); it is kept as %s and a new one was filled "
                "from the store: %d memories",
                path,
                problem,
                kept,
                lexical.count(),
            )
    board.recount(store, lexical, store_count=counted)
    return Backend(store, lexical, repair, catalogue_repair, sync)


def _lost_store(store: VectorStore, lexical: LexicalIndex, known: str | None, identity: str | None) -> str | None:
    """Why the store is not the one the catalogue was filled from, when it came back empty in its place
    (its files deleted, or the store reset): then it is rebuilt from the catalogue, never taken as every
    memory forgotten. ``None`` when it is the same store (or the catalogue knows of none). A different
    store that holds memories is refused: which one is right is for a person to say. ``known``: the identity
    the catalogue records; ``identity``: the store's."""
    if known is None or identity is None or known == identity or not lexical.count():
        return None
    if store.count() == 0:
        why = f"{store.set_aside[0]}" if store.set_aside else "its files deleted, or the store reset"
        held = lexical.count()
        return f"the store came back empty in place of the one the catalogue holds {held} memories of ({why})"
    raise StoreUnavailableError(
        f"the store {store.name!r} at {store.location} is not the one the record catalogue {lexical.path} was "
        f"filled from (it holds {store.count()} memories, the catalogue {lexical.count()} of another store). "
        "To serve this store, move the catalogue file away (a new one is filled from the store); to serve the "
        "catalogue's memories, point the server at the store they were stored in."
    )


class StoreLoader:
    """The backend, loaded once in the background; ``ready`` and ``synced`` are what callers await. Before
    it, the catalogue alone where it can open first (``keywords``)."""

    def __init__(
        self,
        settings: Settings,
        embedder: TextEmbedder,
        open_store: StoreFactory,
        sync: StoreSync,
        board: StatusBoard,
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._open_store = open_store
        self._sync = sync
        self._board = board
        # The catalogue opened first (``open_keywords``), once that was tried: ``None`` when it was not.
        self._keywords: concurrent.futures.Future[Keywords | None] = concurrent.futures.Future()
        self._load: BackgroundLoad[Backend] = BackgroundLoad("memory store", self._open)

    def _open(self) -> Backend:
        """The load: the catalogue alone first where it can be, then the store, ready once its vector index is
        loaded (a write would load it anyway; a search meanwhile has the catalogue)."""
        keywords = None
        try:
            keywords = open_keywords(self._settings)
        except Exception as exc:  # noqa: BLE001 - the store's open below reads it again and reports what fails
            logger.warning("store: the catalogue did not open before the store (%s: %s)", type(exc).__name__, exc)
        finally:
            self._keywords.set_result(keywords)
        if keywords is not None:
            logger.info("keyword search ready (%d memories) while the store opens", keywords.lexical.count())
        backend = open_backend(self._settings, self._embedder, self._open_store, self._sync, self._board, keywords)
        backend.store.warm()
        return backend

    def start(self) -> None:
        """Start opening, without waiting; later calls do nothing."""
        self._load.start()

    async def keywords(self) -> LexicalIndex | None:
        """The catalogue and BM25 index while the store is still opening, where they opened first (waiting for
        that try, a second at a million memories); ``None`` otherwise (not opened first, or the store is open
        or failed to open: its error is what callers see)."""
        self._load.start()
        if not self._keywords.done():
            await anyio.to_thread.run_sync(self._keywords.result, abandon_on_cancel=True)
        keywords = self._keywords.result()
        return keywords.lexical if keywords is not None and self._load.state == "loading" else None

    def catalogue(self) -> LexicalIndex | None:
        """The catalogue and BM25 index this process opened, to close: the backend's, or the one opened first
        while the store is still opening (a process stopped then leaves it as it found it, so the next start
        opens it first too)."""
        backend = self._load.result_now()
        if backend is not None:
            return backend.lexical
        keywords = self._keywords.result() if self._keywords.done() else None
        return None if keywords is None else keywords.lexical

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

    async def ready(self, *, embedder: bool = True) -> Backend:
        """The backend and (unless ``embedder=False``: a search, which answers from keywords meanwhile) the
        embedder, loaded; a failure to load either is the caller's error."""
        try:
            backend = await self._load.wait_async()
            if embedder:
                await self._embedder.ready()
        except Exception as exc:
            raise StoreUnavailableError(
                f"The memory store is unavailable: {type(exc).__name__}: {exc}. "
                "Check MIMIR_STORE_DATA_DIR (or the Chroma server settings) and the embedding model."
            ) from exc
        return backend

    async def synced(self, *, embedder: bool = True) -> Backend:
        """The backend, with changes made by other processes applied: list, get, forget and update act on
        what the store holds now, not on what this process last saw."""
        backend = await self.ready(embedder=embedder)
        if self._sync.due(backend.store):
            try:
                await anyio.to_thread.run_sync(self._sync.catch_up, backend.store, backend.lexical)
            except Exception as exc:
                if full_disk(exc, self._settings.store.embedded_dir) is None:
                    raise
                # Taking the changes in writes to the catalogue: on a full disk, reads serve what this process
                # holds, and the next read tries again.
                self._sync.missed()
                logger.warning("store: other processes' changes not taken in yet, the disk is full (%s)", exc)
        return backend
