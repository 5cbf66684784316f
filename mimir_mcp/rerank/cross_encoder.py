"""The local sentence-transformers ``CrossEncoder``, loaded in the background and run off the event loop."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mimir_mcp.background import BackgroundLoad, inference_while_loading
from mimir_mcp.config import RerankerSettings
from mimir_mcp.rerank.blend import BLEND_FILE, load_blend
from mimir_mcp.rerank.onnx_int8 import DEFAULT_ONNX_CACHE, OnnxInt8CrossEncoder, build_int8_model
from mimir_mcp.served_copy import FastTokenizer, describe, find, looks_like_path, model_root, record
from mimir_mcp.status_models import RerankerStatus

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)

HOW_TO_CONFIGURE = (
    "Set MIMIR_RERANKER_MODEL (or CROSS_ENCODER_MODEL) to a local cross-encoder folder or a "
    "Hugging Face model name that can be downloaded, then restart the server."
)
# A hub model that is not cached and cannot be downloaded from here.
HOW_TO_GET_THE_MODEL = (
    "To fix: download it once where the hub is reachable (`hf download {model}`, or start the server "
    "there; it stays in the Hugging Face cache), or set MIMIR_RERANKER_MODEL (--reranker-model) to a local "
    "cross-encoder folder, or turn reranking off (--no-rerank, MIMIR_RERANKER_ENABLED=false); then restart."
)
# The one request that asks the hub whether a model not in the cache can be downloaded. A reachable hub
# answers in well under a second; offline it fails at once (or at this timeout behind a firewall that
# drops packets), where the download itself would retry every file for most of a minute.
HUB_CHECK_TIMEOUT_S = 5.0
# While the hub cannot be reached (a laptop that started offline), the next search this long after the
# last try loads the model again, so reranking comes back without a restart once the network does.
HUB_RETRY_S = 300.0


# The int8 graph is fastest one pair at a time (no padding): 50 SciFact pairs 1.19 s against 1.61 s at 8.
INT8_BATCH_SIZE = 1

# What each backend is timed on when it becomes ready: a query and eight passages of about 90 words, the
# length of a typical stored note or abstract excerpt. Scores are thrown away; only the time is kept.
CALIBRATION_QUERY = "what did we decide about the database migration and who owns it?"
CALIBRATION_TEXTS = [
    f"Note {number}: the team reviewed the migration plan for the billing database, compared a dump and restore "
    "with logical replication, estimated the downtime of each, listed the services that read the old schema, "
    "agreed on who watches the error rates during the switch, and wrote down what would make them roll back. "
    "The open questions went to the next planning meeting, with the measurements from the staging rehearsal."
    for number in range(8)
]


@dataclass(frozen=True)
class Calibration:
    """One timed run of a backend on ``CALIBRATION_TEXTS``: what the rerank queue assumes about its pace
    until a search has been scored with it (without it, a search with a tight ``deadline_ms`` planned by a
    pessimistic guess would never rerank, and so never measure the real pace)."""

    query: str
    texts: tuple[str, ...]
    seconds: float
    backend: str


class RerankerLoadError(RuntimeError):
    """The configured cross-encoder could not be loaded; the message says why in plain words, and how to fix it."""

    def __init__(self, reason: str, fix: str = HOW_TO_CONFIGURE, *, retry: bool = False) -> None:
        again = f" It is tried again at the first search {HUB_RETRY_S / 60:g} minutes after each try." if retry else ""
        super().__init__(f"{reason}{again} {fix}")
        # The hub could not be reached: the load is tried again (``HUB_RETRY_S``); other causes stay.
        self.retry = retry


def check_hub(model: str, *, timeout: float = HUB_CHECK_TIMEOUT_S) -> None:
    """Ask the Hugging Face hub once, without retries, whether ``model`` can be downloaded; raise
    ``RerankerLoadError`` with the fix when the hub cannot be reached or has no such model. Any other answer
    (a gated or private model, a server error) is left to the download, which reports its own error."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    api = HfApi()
    fix = HOW_TO_GET_THE_MODEL.format(model=model)
    try:
        api.model_info(model, timeout=timeout)
    except GatedRepoError:
        return
    except RepositoryNotFoundError:
        raise RerankerLoadError(
            f"cross-encoder {model!r} is not in the local model cache and {api.endpoint} has no such model "
            "(or it is private and no token is set).",
            fix,
        ) from None
    except HfHubHTTPError:
        return
    except Exception as exc:  # noqa: BLE001 - no answer at all (no network, no DNS, a timeout): not downloadable
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise RerankerLoadError(
            f"cross-encoder {model!r} is not in the local model cache and cannot be downloaded: the Hugging Face "
            f"hub ({api.endpoint}) cannot be reached ({type(exc).__name__}: {reason}).",
            fix,
            retry=True,
        ) from None


class LocalCrossEncoder:
    """A ``CrossEncoder`` whose load never blocks the server and whose failures are reported, not raised."""

    def __init__(
        self, settings: RerankerSettings, *, cache_dir: str | None = None, onnx_cache_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.model = settings.model
        self.timeout_s = settings.timeout_s
        self._cache_dir = cache_dir
        self._onnx_cache_dir = onnx_cache_dir or DEFAULT_ONNX_CACHE
        # ``None`` when the model is served from its recorded int8 copy, without torch (``served_copy``).
        self._load: BackgroundLoad[CrossEncoder | None] = BackgroundLoad("cross-encoder", self._load_model)
        # The int8 copy is built after the torch model is ready, so reranking never waits for it.
        self._fast: BackgroundLoad[OnnxInt8CrossEncoder] = BackgroundLoad("int8 cross-encoder", self._build_fast)
        self._served: OnnxInt8CrossEncoder | None = None
        # The model's own longest input (before ``max_length`` caps it), once loaded.
        self._native_max_length: int | None = None
        # One inference at a time: two concurrent predicts on 2 cores are slower than two in a row.
        self._limiter = anyio.CapacityLimiter(1)
        self._saved_blend: float | None = None
        self.calibration: Calibration | None = None

    def _calibrate(self, model: Any, batch_size: int, backend: str) -> None:
        """Time ``model`` on the calibration pairs (once to warm it, once measured), in the loading thread."""
        pairs = [(CALIBRATION_QUERY, text) for text in CALIBRATION_TEXTS]
        with inference_while_loading() as allowed:  # the process may be exiting: see background._ExitGuard
            if not allowed:
                return
            try:
                model.predict(pairs[:1], batch_size=batch_size, show_progress_bar=False)
                started = time.perf_counter()
                model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
                seconds = time.perf_counter() - started
            except Exception:  # noqa: BLE001 - a failed timing only leaves the queue's prior guess in place
                logger.warning("could not time the %s cross-encoder", backend, exc_info=True)
                return
        self.calibration = Calibration(CALIBRATION_QUERY, tuple(CALIBRATION_TEXTS), seconds, backend)
        logger.info("cross-encoder (%s): %d calibration pairs in %.0f ms", backend, len(pairs), seconds * 1000)

    def _load_model(self) -> CrossEncoder | None:
        if self.settings.backend == "onnx-int8":
            served = self._open_served()
            if served is not None:  # no torch in this process: the recorded int8 copy scores
                self._served = served
                self._load_saved_blend()
                self._fast.wait()
                return None
        model = self._load_torch_model()
        self._load_saved_blend()
        self._calibrate(model, self.settings.batch_size, "torch")
        if self.settings.backend == "onnx-int8":
            self._fast.start()
        return model

    def _load_saved_blend(self) -> None:
        try:
            self._saved_blend = load_blend(self._model_folder())
        except Exception:  # noqa: BLE001 - a hub model without a local snapshot simply has no saved weight
            self._saved_blend = None

    def _open_served(self) -> OnnxInt8CrossEncoder | None:
        """The model's recorded int8 copy, opened without torch; ``None`` when there is none yet."""
        try:
            copy = find(self._onnx_cache_dir, "rerank", self._model_folder())
        except Exception:  # noqa: BLE001 - not on this machine: the torch path says why, or downloads it
            return None
        if copy is None:
            return None
        try:
            with inference_while_loading() as allowed:  # opening a session starts onnxruntime's threads
                if not allowed:
                    raise RuntimeError("the process is exiting")
                served = OnnxInt8CrossEncoder(Path(copy.graph), FastTokenizer.of(copy, self._cap(copy.max_length)))
        except Exception:  # noqa: BLE001 - the torch model loads instead, and builds the copy again
            logger.warning("the recorded int8 copy of the cross-encoder could not be opened", exc_info=True)
            return None
        self._native_max_length = copy.max_length
        return served

    def _load_torch_model(self) -> CrossEncoder:
        from mimir_mcp.background import MODEL_IMPORT_LOCK

        name = os.path.expanduser(self.model)
        if not Path(name).exists() and looks_like_path(self.model):  # said before seconds of imports
            raise RerankerLoadError(f"cross-encoder path {self.model!r} does not exist.")
        cached = model_root(self.model, self._cache_dir) is not None
        if not cached:  # a model that cannot be had fails before torch is imported (seconds, half a GB)
            self._check_downloadable()
        with MODEL_IMPORT_LOCK:
            from sentence_transformers import CrossEncoder

        kwargs: dict[str, Any] = dict(device=self.settings.device, cache_folder=self._cache_dir)
        if Path(name).exists():
            return self._capped(CrossEncoder(name, **kwargs))
        if cached:
            try:
                return self._capped(CrossEncoder(name, local_files_only=True, **kwargs))
            except OSError:  # a download cut short: the rest of it is fetched below
                self._check_downloadable()
        logger.info("cross-encoder %s not cached; downloading from the Hugging Face hub", self.model)
        try:
            return self._capped(CrossEncoder(name, **kwargs))
        except OSError as exc:
            raise RerankerLoadError(
                f"cross-encoder {self.model!r} is not in the local model cache and could not be downloaded "
                f"from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0]}).",
                HOW_TO_GET_THE_MODEL.format(model=self.model),
                retry=True,
            ) from exc

    def _check_downloadable(self) -> None:
        """Raise ``RerankerLoadError`` when the hub model cannot be downloaded from here."""
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
            raise RerankerLoadError(
                f"cross-encoder {self.model!r} is not in the local model cache and HF_HUB_OFFLINE is set, "
                "so it cannot be downloaded.",
                HOW_TO_GET_THE_MODEL.format(model=self.model),
            )
        check_hub(self.model)

    def _capped(self, model: CrossEncoder) -> CrossEncoder:
        """Apply ``max_length`` as a cap: never longer than the model was built for."""
        self._native_max_length = model.max_seq_length
        model.max_seq_length = self._cap(model.max_seq_length)
        return model

    def _cap(self, length: int | None) -> int:
        """The longest input scored: the model's, or ``max_length`` where that is shorter."""
        cap, native = self.settings.max_length, int(length or 512)
        return native if cap is None else min(cap, native)

    @property
    def blend(self) -> float:
        """The setting if given, else the weight saved with the model, else 1 (the cross-encoder alone)."""
        if self.settings.blend is not None:
            return self.settings.blend
        return 1.0 if self._saved_blend is None else self._saved_blend

    def _blend_source(self) -> str:
        if self.settings.blend is not None:
            return "setting (MIMIR_RERANKER_BLEND)"
        if self._saved_blend is not None:
            return f"saved with the model ({BLEND_FILE})"
        return "default (the cross-encoder's order alone)"

    def _model_folder(self) -> Path:
        folder = model_root(self.model, self._cache_dir)
        if folder is None:
            raise FileNotFoundError(f"{self.model!r} is neither a folder nor in the local Hugging Face cache")
        return folder

    def _build_fast(self) -> OnnxInt8CrossEncoder:
        if self._served is not None:
            self._calibrate(self._served, INT8_BATCH_SIZE, "onnx-int8")
            return self._served
        torch_model = self._load.wait()
        assert torch_model is not None  # only a served copy leaves no torch model, and it returned above
        folder = self._model_folder()
        onnx_path = build_int8_model(folder, self._onnx_cache_dir)
        copy = describe(onnx_path, torch_model.tokenizer, int(self._native_max_length or 512))
        with inference_while_loading() as allowed:  # opening a session starts onnxruntime's threads
            if not allowed:
                raise RuntimeError("the process is exiting")
            fast = OnnxInt8CrossEncoder(onnx_path, FastTokenizer.of(copy, self._cap(copy.max_length)))
        self._calibrate(fast, INT8_BATCH_SIZE, "onnx-int8")
        record(self._onnx_cache_dir, "rerank", folder, copy)
        return fast

    async def wait_backend(self, timeout: float) -> str:
        """Wait for the configured backend (the int8 build) to finish, either way; returns ``backend``."""
        await self.wait_ready(timeout)
        if self.settings.backend == "onnx-int8" and self._load.state == "ready":
            await self._fast.settle(timeout)
        return self.backend

    @property
    def backend(self) -> str:
        """What scores right now: the int8 graph once it is built, the torch model until then."""
        if self._fast.result_now() is not None:
            return "onnx-int8"
        if self.settings.backend == "onnx-int8" and self._fast.state == "failed":
            return f"torch (onnx-int8 failed: {type(self._fast.error).__name__}: {self._fast.error})"
        if self.settings.backend == "onnx-int8" and self._load.state == "ready":
            return "torch (onnx-int8 building)"
        return "torch"

    def start(self) -> None:
        if self.settings.enabled:
            self._load.start()

    def unavailable_reason(self) -> str | None:
        if not self.settings.enabled:
            return "reranking is disabled (MIMIR_RERANKER_ENABLED=false)."
        state = self._load.state
        if state == "ready":
            return None
        if state == "failed" and self._retry_due():
            self._load.retry()
            state = self._load.state
        if state == "loading":
            return f"the cross-encoder {self.model!r} is still loading; try again in a few seconds."
        fix = "" if isinstance(self._load.error, RerankerLoadError) else f" {HOW_TO_CONFIGURE}"  # it says its own
        return f"the cross-encoder failed to load: {self._describe_error()}{fix}"

    async def wait_ready(self, timeout: float) -> None:
        """Start the load if needed and wait for it to end, either way (``unavailable_reason`` says how)."""
        if not self.settings.enabled:
            return
        self._load.start()
        await self._load.settle(timeout)

    async def score(self, query: str, texts: list[str]) -> list[float]:
        model, batch_size = self._scorer()
        if model is None:
            raise RuntimeError(self.unavailable_reason() or "cross-encoder not loaded")
        if not texts:
            return []
        pairs = [(query, text) for text in texts]

        def predict() -> list[float]:
            scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
            return [float(score) for score in scores]

        return await anyio.to_thread.run_sync(predict, limiter=self._limiter, abandon_on_cancel=True)

    def status(self) -> RerankerStatus:
        state = self._load.state if self.settings.enabled else "disabled"
        return RerankerStatus(
            available=state == "ready",
            enabled=self.settings.enabled,
            model=self.model,
            device=self.settings.device,
            state=state,
            error=self._describe_error() if state == "failed" else None,
            load_seconds=self._load.load_seconds,
            backend=self.backend,
            batch_size=self._scorer()[1],
            max_length=self._effective_max_length(),
            blend=self.blend,
            blend_source=self._blend_source(),
        )

    def _scorer(self) -> tuple[Any, int]:
        """What scores now and its batch size, read together (the int8 graph runs best one pair at a time)."""
        fast = self._fast.result_now()
        if fast is not None:
            return fast, INT8_BATCH_SIZE
        return self._load.result_now(), self.settings.batch_size

    def _effective_max_length(self) -> int | None:
        if self._load.state == "ready":
            return self._cap(self._native_max_length)
        return self.settings.max_length

    def _retry_due(self) -> bool:
        """Whether the failed load is one to try again (the hub could not be reached) and it is time to."""
        error, ended = self._load.error, self._load.ended_at
        if not (isinstance(error, RerankerLoadError) and error.retry) or ended is None:
            return False
        return time.monotonic() - ended >= HUB_RETRY_S

    def _describe_error(self) -> str:
        error = self._load.error
        if error is None:
            return ""
        if isinstance(error, RerankerLoadError):
            return str(error)
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
