"""The pydantic types that cross the tool boundary: what agents send and what they get back.

Field limits that users can configure are checked in ``validation.py`` (so the message quotes the
configured limit); the types here fix only the shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

MetadataValue = str | int | float | bool
# What ran, in order: hybrid (keywords where the dense arm could not run), then +rerank or
# +remote_rerank when a reranker scored, +recency when prefer_recent reordered, +mmr when diversity picked
# the hits.
SearchMethod = str


# An answer's detail (with `explain` or `detail`), published in the output schema as an object, unspelt:
# its fields are in docs/tools.md, and spelling them out would cost every session's context.
DETAIL = WithJsonSchema({"type": "object"})


def _none_as_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_as_empty_dict(value: Any) -> Any:
    return {} if value is None else value


class MemoryInput(BaseModel):
    """One memory inside a ``remember`` batch."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is refused, not silently dropped

    # The fields are those of remember's own arguments, which describe them. Null is taken as "none" for
    # tags and metadata, as it is for those arguments.
    text: str
    tags: Annotated[
        list[str], BeforeValidator(_none_as_empty_list), WithJsonSchema({"type": "array", "items": {"type": "string"}})
    ] = Field(default_factory=list)
    source: str | None = None
    agent: str | None = None
    namespace: str = "default"
    metadata: Annotated[dict[str, Any], BeforeValidator(_none_as_empty_dict), WithJsonSchema({"type": "object"})] = (
        Field(default_factory=dict)
    )


class MemoryRecord(BaseModel):
    """A stored memory as the store and the index keep it."""

    id: str
    text: str
    namespace: str
    tags: list[str] = Field(default_factory=list)
    source: str | None = None
    agent: str | None = None
    created_at: str
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    updated_at: str | None = Field(default=None, description="When `update` last changed it; null if never.")
    supersedes: str | None = Field(
        default=None, description="The id of the memory whose text this one replaced through `update`, if any."
    )


class RecordFilter(BaseModel):
    """Which memories a search, list or forget covers: every given condition must hold. One rule,
    evaluated by the record catalogue (SQL) and translated once for Chroma's ``where``."""

    namespace: str | None = Field(default="default", description="None: every namespace.")
    namespaces: list[str] | None = Field(
        default=None, description="Only these namespaces (a token's scope), whatever `namespace` says."
    )
    tags: list[str] = Field(default_factory=list, description="Every one of these tags.")
    agent: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, description="Every pair equal.")
    created_after: float | None = Field(default=None, description="Unix seconds, inclusive.")
    created_before: float | None = Field(default=None, description="Unix seconds, exclusive.")

    @property
    def selects_by_content(self) -> bool:
        """Whether anything beyond the namespace narrows the set (so records must be checked)."""
        narrowed = self.tags or self.metadata or self.agent is not None or self.namespaces is not None
        return bool(narrowed) or self.has_time

    @property
    def has_time(self) -> bool:
        return self.created_after is not None or self.created_before is not None

    @property
    def scope(self) -> list[str] | None:
        """The namespaces this filter can reach (``None``: all). BM25's statistics are taken over these
        only, so that no figure a caller sees depends on memories it may not read."""
        if self.namespace is not None:
            return [self.namespace] if self.namespaces is None or self.namespace in self.namespaces else []
        return None if self.namespaces is None else list(self.namespaces)


class MemoryOut(BaseModel):
    """A stored memory as ``list`` and ``get`` return it; a search ``Hit`` is one with its scores. Answers
    leave out what is unset (``dump_answer``), so every field but id, text, namespace and created_at has
    a default."""

    id: str
    text: str = Field(
        description="The memory's text, or when it is longer than max_chars, a part of it with '…' where it was cut: "
        "its beginning, or in a search hit the part that best matches the query."
    )
    truncated: bool = Field(default=False, description="True when `text` is a part rather than the whole memory.")
    text_chars: int | None = Field(default=None, description="Length of the whole memory, when `text` is a part.")
    namespace: str
    tags: list[str] = Field(default_factory=list)
    source: str | None = None
    agent: str | None = None
    created_at: str
    updated_at: str | None = Field(default=None, description="When `update` last changed it; null if never.")
    supersedes: str | None = None
    metadata: Annotated[dict[str, MetadataValue], WithJsonSchema({"type": "object"})] = Field(default_factory=dict)

    @classmethod
    def shown(cls, record: MemoryRecord, text: str, **extra: Any) -> Self:
        """``record`` with ``text`` as the part of it shown: the whole text, its beginning or a snippet."""
        truncated = len(text) < len(record.text)
        return cls(
            id=record.id,
            text=text,
            truncated=truncated,
            text_chars=len(record.text) if truncated else None,
            namespace=record.namespace,
            tags=record.tags,
            source=record.source,
            agent=record.agent,
            created_at=answer_time(record.created_at),
            updated_at=None if record.updated_at is None else answer_time(record.updated_at),
            supersedes=record.supersedes,
            metadata=record.metadata,
            **extra,
        )


def answer_time(stamp: str) -> str:
    """A stored time (ISO 8601, to the millisecond) as answers show it: UTC to the second, ``...Z``."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class TimeRangeRead(BaseModel):
    """The time range a `when` was read as, in the caller's zone, so an agent sees what it asked for."""

    start: str | None = Field(default=None, serialization_alias="from", description="Inclusive; none: no lower bound.")
    end: str | None = Field(default=None, serialization_alias="to", description="Exclusive; none: no upper bound.")
    phrase: str
    query: str | None = Field(default=None, description="With when 'auto': the query searched, the phrase taken out.")
    note: str | None = Field(default=None, description="Why the range was not applied, when it was not.")


class ListResponse(BaseModel):
    memories: list[MemoryOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; none on the last.")
    total: int = Field(description="How many memories match the filters (all pages).")
    time_range: TimeRangeRead | None = None


class GetResponse(BaseModel):
    memories: list[MemoryOut] = Field(description="In the order asked, those that exist.")
    not_found: list[str] = Field(default_factory=list)


class ForgetResponse(BaseModel):
    dry_run: bool
    matched: int = Field(description="How many memories the ids or filters matched.")
    removed_count: int = Field(description="How many were removed (0 on a dry run).")
    ids: list[str] = Field(description="The matched ids (removed unless dry_run).")
    not_found: list[str] = Field(default_factory=list, description="Ids asked for that are not stored.")
    message: str


class UpdateResponse(BaseModel):
    id: str = Field(description="The memory's id now: the same, unless the text changed.")
    changed: list[str] = Field(description="Which of text, tags, metadata changed.")
    supersedes: str | None = Field(
        default=None, description="The old id when the text changed: the old memory is gone from search, list and get."
    )
    deduplicated: bool = Field(
        default=False,
        description="True when the new text was already stored in the namespace: the update merged into that memory.",
    )
    memory: MemoryOut = Field(description="The memory as stored now.")


class RememberResponse(BaseModel):
    """Ids in input order; a retried ``remember`` returns the same ids and stores nothing twice."""

    ids: list[str]
    stored: int = Field(description="How many memories were new.")
    deduplicated: list[str] = Field(
        default_factory=list, description="The ids whose text the namespace already held: stored once, not twice."
    )


class HitScores(BaseModel):
    """Every stage's view of a hit; ranks are 1-based, ``None`` where that stage did not find it."""

    dense_rank: int | None = None
    dense_similarity: float | None = Field(default=None, description="Cosine similarity of the bi-encoder.")
    bm25_rank: int | None = None
    bm25_score: float | None = None
    context_rank: int | None = Field(
        default=None, description="Rank in the BM25 arm that reads each memory with its neighbours."
    )
    context_score: float | None = None
    fused_score: float = Field(
        description="The hybrid's fused score before reranking (each arm's scaled scores weighted by "
        "fusion.weights; an RRF score under the RRF methods); the order without a reranker follows it."
    )
    rerank_score: float | None = Field(default=None, description="Cross-encoder score (0..1), if reranked.")
    blended_score: float | None = Field(
        default=None,
        description="When the reranked order blends cross-encoder and hybrid: the combined score it follows.",
    )
    age_days: float | None = Field(default=None, description="With prefer_recent: days since it was stored or updated.")
    recency: float | None = Field(
        default=None, description="With prefer_recent: the recency part of `score` (weight × decay of the age)."
    )


class Hit(MemoryOut):
    """A memory as ``search`` found it: the memory, and how it scored."""

    # A search answers with what is true now; which memory a hit's text replaced is for `get` to tell.
    supersedes: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    namespace: str | None = Field(default=None, description="Left out when the search named the namespace.")  # type: ignore[assignment]
    score: float = Field(
        description="The score the final order follows: the blended score when reranking blends, else the "
        "rerank score, else the fused score; with prefer_recent, that score scaled to 0-1 in the candidates and "
        "blended with recency."
    )
    scores: Annotated[HitScores | None, DETAIL] = Field(
        default=None, description="Every stage's view of the hit (with `explain`)."
    )


class SearchCandidates(BaseModel):
    dense: int
    bm25: int
    context: int | None = Field(default=None, description="Candidates of the context arm; null when it did not run.")
    fused: int
    reranked: int


class SearchFusion(BaseModel):
    """How the arms were fused for this query, so a caller can see why one arm led."""

    method: str = Field(
        description="zscore: BM25's standardized scores and the cosines in dense_unit added, weighted per "
        "query (the RRF methods coverage, top_z, score_gap and equal are comparisons for evaluation)."
    )
    rrf_k: int | None = Field(default=None, description="The RRF constant, under the RRF methods only.")
    weights: dict[str, float] = Field(description="Each arm's weight for this query.")
    coverage: dict[str, float | None] = Field(
        description="How fully each arm's best hit matches the query: a BM25 arm's best score over the query's "
        "summed idf, the dense arm's best cosine; null for an arm with no candidates."
    )
    context: bool = Field(
        default=False,
        description="Whether the BM25 arm scored each memory together with the ones stored next to it in its "
        "namespace (a conversation's turns before and after), as the namespace's coherence and mean_terms, or a short "
        "query (query_words), called for.",
    )
    coherence: float | None = Field(
        default=None,
        description="How much more alike neighbouring memories of the namespace are than distant ones "
        "(0: unrelated; conversations about 0.08-0.12); null when too few memories to tell.",
    )
    mean_terms: float | None = Field(
        default=None,
        description="How many terms the namespace's memories hold on average (words less stop words): the context "
        "arm is for short ones (at most 50; conversation turns about 20, passages 100+).",
    )
    query_words: int | None = Field(
        default=None,
        description="How many words the query has (runs of non-space; Chinese and Japanese text a word per two "
        "characters): in a coherent namespace of longer memories the context arm runs for a keyword query of at most "
        "4 words.",
    )
    dense_unit: float | None = Field(
        default=None,
        description="The cosine similarity the dense arm's scores were counted in: a share of how far apart the "
        "namespace's memories lie for the bi-encoder (the deviation of the cosine between them; chat about 0.14); "
        "null when it had too few memories to tell, and its scores were standardized like BM25's.",
    )


class SearchResponse(BaseModel):
    """A search's answer: the hits and what ran, and with ``explain`` how each stage saw them. The
    pipeline fills everything; ``concise`` keeps what an agent needs by default."""

    hits: list[Hit]
    search_method: Annotated[SearchMethod, WithJsonSchema({"type": "string"})]
    message: str | None = Field(
        default=None,
        description="What ran, and why reranking did not when it did not; without `explain` only when the search "
        "did not run as asked (reranking unavailable or cut short, min_score not applied).",
    )
    time_range: TimeRangeRead | None = Field(default=None, description="The range `when` was read as.")
    query: str | None = None
    reranker_model: str | None = None
    candidates: Annotated[SearchCandidates | None, DETAIL] = None
    fusion: Annotated[SearchFusion | None, DETAIL] = None
    timings_ms: Annotated[dict[str, float] | None, DETAIL] = None
    # The part of `message` that says the search did not run as asked: the concise answer's message.
    caveat: SkipJsonSchema[str | None] = Field(default=None, exclude=True)

    def concise(self, namespace: str | None) -> SearchResponse:
        """What an agent needs by default: each hit's memory and score (to 3 decimals) without the per-stage
        scores, nor the namespace when the search was of the one ``namespace``; the method; a message only
        when the search ran otherwise than asked."""
        hits = [
            hit.model_copy(
                update={
                    "scores": None,
                    "score": round(hit.score, 3),
                    "namespace": None if hit.namespace == namespace else hit.namespace,
                }
            )
            for hit in self.hits
        ]
        return SearchResponse(
            hits=hits, search_method=self.search_method, message=self.caveat, time_range=self.time_range
        )


class RerankDocument(BaseModel):
    """A candidate with an id the caller wants back."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    text: str


class RerankedDocument(BaseModel):
    index: int = Field(description="Position of this document in the input list.")
    id: str | None = None
    score: float
    text: str | None = Field(default=None, description="The document (with `explain`; the caller sent it).")


class RerankResponse(BaseModel):
    results: list[RerankedDocument]
    model: str
    query: str | None = None
    timings_ms: dict[str, float] | None = None

    def concise(self) -> RerankResponse:
        """Each result's index, id and score (the caller has the texts), and the model."""
        results = [result.model_copy(update={"text": None}) for result in self.results]
        return RerankResponse(results=results, model=self.model)
