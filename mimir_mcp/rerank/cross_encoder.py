"""The local sentence-transformers ``CrossEncoder``, loaded in the background and run off the event loop."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from mimir_mcp.background import BackgroundLoad
from mimir_mcp.config import RerankerSettings
from mimir_mcp.models import RerankerStatus

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)

HOW_TO_CONFIGURE = (
    "Set MIMIR_RERANKER_MODEL (or CROSS_ENCODER_MODEL) to a local cross-encoder folder or a "
    "Hugging Face model name that can be downloaded, then restart the server."
)


class RerankerLoadError(RuntimeError):
    """The configured cross-encoder could not be loaded; the message says why in plain words."""


def _looks_like_path(name: str) -> bool:
    """Hub names are ``org/name``; anything absolute, relative or deeper is meant as a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


class LocalCrossEncoder:
    """A ``CrossEncoder`` whose load never blocks the server and whose failures are reported, not raised."""

    def __init__(self, settings: RerankerSettings, *, cache_dir: str | None = None) -> None:
        self.settings = settings
        self.model = settings.model
        self.timeout_s = settings.timeout_s
        self._cache_dir = cache_dir
        self._load: BackgroundLoad[CrossEncoder] = BackgroundLoad("cross-encoder", self._load_model)
        # One inference at a time: two concurrent predicts on 2 cores are slower than two in a row.
        self._limiter = anyio.CapacityLimiter(1)

    def _load_model(self) -> CrossEncoder:
        from sentence_transformers import CrossEncoder

        name = os.path.expanduser(self.model)
        kwargs = dict(device=self.settings.device, cache_folder=self._cache_dir, max_length=self.settings.max_length)
        if Path(name).exists():
            return CrossEncoder(name, **kwargs)
        if _looks_like_path(self.model):
            raise RerankerLoadError(f"cross-encoder path {self.model!r} does not exist.")
        try:
            return CrossEncoder(name, local_files_only=True, **kwargs)
        except OSError:
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
                raise RerankerLoadError(
                    f"cross-encoder {self.model!r} is not in the local model cache and HF_HUB_OFFLINE is set, "
                    "so it cannot be downloaded."
                ) from None
        logger.info("cross-encoder %s not cached; downloading from the Hugging Face hub", self.model)
        try:
            return CrossEncoder(name, **kwargs)
        except OSError as exc:
            raise RerankerLoadError(
                f"cross-encoder {self.model!r} is not in the local model cache and could not be downloaded "
                f"from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0]})."
            ) from exc

    def start(self) -> None:
        if self.settings.enabled:
            self._load.start()

    def unavailable_reason(self) -> str | None:
        if not self.settings.enabled:
            return "reranking is disabled (MIMIR_RERANKER_ENABLED=false)."
        state = self._load.state
        if state == "ready":
            return None
        if state == "loading":
            return f"the cross-encoder {self.model!r} is still loading; try again in a few seconds."
        return f"the cross-encoder failed to load: {self._describe_error()} {HOW_TO_CONFIGURE}"

    async def wait_ready(self, timeout: float) -> None:
        if not self.settings.enabled or self._load.state != "loading":
            return
        with anyio.move_on_after(timeout):
            try:
                await self._load.wait_async()
            except Exception:  # noqa: BLE001 - the failure is reported by unavailable_reason()
                pass

    async def score(self, query: str, texts: list[str]) -> list[float]:
        model = self._load.result_now()
        if model is None:
            raise RuntimeError(self.unavailable_reason() or "cross-encoder not loaded")
        if not texts:
            return []
        pairs = [(query, text) for text in texts]

        def predict() -> list[float]:
            scores = model.predict(
                pairs, batch_size=self.settings.batch_size, show_progress_bar=False, convert_to_numpy=True
            )
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
            batch_size=self.settings.batch_size,
            max_length=self.settings.max_length,
        )

    def _describe_error(self) -> str:
        error = self._load.error
        if error is None:
            return ""
        if isinstance(error, RerankerLoadError):
            return str(error)
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
