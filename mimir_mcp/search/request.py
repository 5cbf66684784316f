"""What a search asks for, validated: the query, its filters and knobs, as the pipeline runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from mimir_mcp.models import MetadataValue, RecordFilter
from mimir_mcp.search.policy import Arm, FusionPolicy


@dataclass(frozen=True)
class SearchRequest:
    """A validated search; ``namespace=None`` searches every namespace. ``arms`` lets evaluation run one
    retrieval arm alone through the same pipeline; the tool uses all three (the context arm where the
    namespace's coherence calls for it). ``max_chars`` caps each
    hit's text (a snippet around the best-matching part); ``None`` shows whole texts."""

    query: str
    top_k: int
    rerank: bool
    rerank_top_k: int
    min_score: float | None = None
    namespace: str | None = "default"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    arms: tuple[Arm, ...] = ("dense", "bm25", "context")
    max_chars: int | None = None
    agent: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    # A token's scope: only these namespaces, whatever ``namespace`` says (None: no such bound).
    namespaces: list[str] | None = None
    # Answer within this long: reranking is planned in the time the first stage leaves (None: no limit).
    deadline_ms: int | None = None
    # MMR weight of redundancy when picking the hits (0: the ranking as it is).
    diversity: float = 0.0
    # Another fusion policy than the configured one, for evaluation and the lab (None: the configured one).
    policy: FusionPolicy | None = None
    # A time phrase bounding the search ('auto': found in the query), read in zone ``tz`` (``time_scope``).
    when: str | None = None
    tz: str | None = None
    # Weight of recency in the final order (0: none; ``recency.prefer_recent``).
    prefer_recent: float = 0.0

    @property
    def keywords_can_answer(self) -> bool:
        """Whether the keyword arms alone can answer it without the store's vectors: it asks for a keyword arm,
        and no MMR (``diversity``), which reads stored vectors."""
        return self.diversity == 0 and any(arm != "dense" for arm in self.arms)

    @property
    def where(self) -> RecordFilter:
        return RecordFilter(
            namespace=self.namespace,
            namespaces=self.namespaces,
            tags=self.tags,
            agent=self.agent,
            metadata=self.metadata,
            created_after=self.created_after,
            created_before=self.created_before,
        )
