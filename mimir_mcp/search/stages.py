"""What each stage of the search pipeline hands the next (``pipeline.SearchPipeline.run``): the arms'
lists, the fused first stage, the ranked candidates."""

from __future__ import annotations

from dataclasses import dataclass, field

from mimir_mcp.models import MemoryRecord
from mimir_mcp.search.policy import ContextDecision, FusedList


@dataclass
class Candidate:
    """One memory on its way through the pipeline, with the score each stage gave it."""

    id: str
    fused: float
    rerank: float | None = None
    blended: float | None = None
    # With prefer_recent: its age, the recency part, and the score blended with it (``recency.prefer_recent``).
    age_days: float | None = None
    recency: float | None = None
    final: float | None = None

    @property
    def score(self) -> float:
        """The score its place was decided by: with recency, else blended, else the reranker's, else the fusion's."""
        if self.final is not None:
            return self.final
        return self.blended if self.blended is not None else self.rerank if self.rerank is not None else self.fused


@dataclass
class Retrieved:
    """What the arms found, before the filter check: each arm's (id, score) list in its order."""

    # The context rule's decision and what it read (unmeasured where no lexical arm ran).
    decision: ContextDecision
    dense: list[tuple[str, float]] = field(default_factory=list)
    lexical: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    # How far apart the searched namespaces' memories lie for the bi-encoder (``LexicalIndex.cosine_spread``),
    # measured where the dense arm is fused with a lexical one; None: not measured.
    cosine_spread: float | None = None
    # Each BM25 arm's attainable score for the query (its coverage scale).
    attainable: dict[str, float] = field(default_factory=dict)


@dataclass
class FirstStage:
    """The arms after the filter check, their fusion (with each arm's weight and coverage), and the records
    read so far (those of the head that will be reranked or shown)."""

    arms: dict[str, list[tuple[str, float]]]
    fusion: FusedList[str]
    records: dict[str, MemoryRecord]

    @property
    def fused(self) -> list[tuple[str, float]]:
        return self.fusion.order


@dataclass
class Ranked:
    """The candidates in their order after reranking (or the hybrid's), and how that order came about."""

    ordered: list[Candidate]
    message: str
    method: str = ""  # what scored after the first stage: "+rerank", "+remote_rerank", or nothing
    reranked: int = 0
    model: str | None = None
    # What did not run as asked (reranking unavailable, cut short, or done by the stand-in), for the
    # concise answer; None when the search ran as asked.
    caveat: str | None = None
