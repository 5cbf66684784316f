"""What the search pipeline needs from any reranker, local or remote."""

from __future__ import annotations

from typing import Protocol

from mimir_mcp.status_models import RerankerStatus


class Reranker(Protocol):
    """Scores (query, text) pairs; higher is more relevant."""

    @property
    def model(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    def start(self) -> None:
        """Begin loading, without waiting."""
        ...

    def unavailable_reason(self) -> str | None:
        """``None`` when ready to score now; otherwise why not and how to fix it."""
        ...

    async def wait_ready(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for loading to finish (returns early on failure)."""
        ...

    async def wait_backend(self, timeout: float) -> str:
        """Wait until the configured scoring backend is in place (or has failed); returns its name."""
        ...

    @property
    def blend(self) -> float:
        """Weight of this reranker's scores against the first stage's (1: its own order alone)."""
        ...

    async def score(self, query: str, texts: list[str]) -> list[float]:
        """Scores in input order, computed off the event loop."""
        ...

    def status(self) -> RerankerStatus: ...


def can_rerank(local: Reranker, remote: Reranker | None) -> bool:
    """Whether a search can be reranked at all: a remote API is set, or the local cross-encoder is not switched
    off (``--no-rerank``). One that failed to load still counts: a restart may bring it back."""
    return remote is not None or local.status().enabled
