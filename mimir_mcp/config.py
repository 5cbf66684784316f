"""One settings object for the whole server, read from flags and ``MIMIR_*`` environment variables.

Nested groups map to environment variables with one underscore after the group name:
``MIMIR_RERANKER_MODEL`` sets ``reranker.model``, ``MIMIR_LIMITS_MAX_TEXT_BYTES`` sets
``limits.max_text_bytes``. ``CROSS_ENCODER_MODEL`` and ``SENTENCE_TRANSFORMERS_HOME`` are honoured
as the seed documents describe them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mimir_mcp.lexical.bm25 import CONTEXT_MAX_TERMS, CONTEXT_MIN_COHERENCE, CONTEXT_QUERY_WORDS
from mimir_mcp.search.fusion import TAIL_DENSE_FACTOR, TAIL_DENSE_FACTOR_CONTEXT, TAIL_FROM
from mimir_mcp.search.snippet import MIN_SNIPPET_CHARS

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_RERANKER_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"


def default_data_dir() -> Path:
    """A per-user data directory, so memories survive reinstalls and are not written into the CWD."""
    return Path(platformdirs.user_data_dir("mimir-mcp", appauthor=False))


def default_onnx_cache_dir() -> Path:
    """One per-user cache of the ONNX copies of the models (about 110 MB for the defaults), keyed inside by
    each model's fingerprint, so every data dir and every process shares one build."""
    return Path(platformdirs.user_cache_dir("mimir-mcp", appauthor=False)) / "onnx"


class StoreSettings(BaseModel):
    """Where memories live: an embedded Chroma folder (default) or a Chroma server."""

    data_dir: Path = Field(default_factory=default_data_dir)
    onnx_cache_dir: Path = Field(
        default_factory=default_onnx_cache_dir,
        description="Where the ONNX copies of the models are built and kept, shared by every data dir.",
    )
    collection: str = "mimir_memories"
    chroma_host: str | None = Field(
        default=None, description="Use a Chroma server (`chroma run`) at this host instead of the embedded store."
    )
    chroma_port: int = 8000
    chroma_ssl: bool = False
    # Counting a Chroma collection takes ~4 ms at 100k memories: a fifth of a search's budget. The
    # embedded store needs no interval: a stat of its files tells when anything was written.
    sync_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="With a Chroma server: how often (at most) a search checks for memories written by "
        "another process; 0: every search.",
    )
    # A Chroma add holds the GIL for its whole run (~5 ms idle, ~20 ms on a busy 2-core machine) however few
    # rows it carries: one per remember stalled every search. Chosen with `mimir-mcp stress` (docs/benchmarks.md).
    write_duty: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Most of the time Chroma writes may take under a steady stream of remembers: after a write "
        "of d seconds the next starts d*(1/write_duty - 1) later at the earliest, carrying every remember that "
        "arrived meanwhile; only while a search is in flight. 1: write as soon as the previous write ends.",
    )


class EmbeddingSettings(BaseModel):
    """The bi-encoder that turns memories and queries into vectors."""

    model: str = DEFAULT_EMBEDDING_MODEL
    device: str = "cpu"
    batch_size: int = Field(default=32, ge=1, le=1024)
    query_backend: Literal["torch", "onnx"] = Field(
        default="onnx",
        description="onnx: queries embed through an exact fp32 ONNX copy (built once, cached); 3x faster on CPU.",
    )


class RerankerSettings(BaseModel):
    """The cross-encoder of the second search stage."""

    enabled: bool = True
    model: str = Field(default_factory=lambda: os.environ.get("CROSS_ENCODER_MODEL") or DEFAULT_RERANKER_MODEL)
    device: str = "cpu"
    backend: Literal["torch", "onnx-int8"] = Field(
        default="onnx-int8",
        description="onnx-int8: a fused, int8-quantized ONNX copy (built once, cached) scores once ready.",
    )
    # Batches of 4-8 pairs are ~2x faster than 32 on a laptop CPU, with identical scores.
    batch_size: int = Field(default=8, ge=1, le=512)
    # The int8 graph is fastest one pair at a time (no padding): 50 SciFact pairs 1.19 s vs 1.61 s at 8.
    onnx_batch_size: int = Field(default=1, ge=1, le=512)
    # Cross-encoder cost grows faster than linearly with length: capping 512-token models at 256 makes
    # 100 SciFact candidates ~2x faster again (bench). Memories shorter than the cap score identically.
    max_length: int | None = Field(
        default=256,
        ge=16,
        le=8192,
        description="Most tokens per (query, memory) pair; a model with a shorter limit keeps its own. "
        "None: the model's.",
    )
    timeout_s: float = Field(default=30.0, gt=0)
    # One search scores at a time; under load the others queue (rerank/admission.py).
    budget_s: float = Field(
        default=1.0,
        gt=0,
        description="Under load, the longest a search may wait for the cross-encoder and score with it: a search "
        "whose scoring would end later reranks only the top candidates that fit, or none, and says so in "
        "`message`. A search alone in the queue reranks everything it asks for unless the CPU is so busy that "
        "this would take longer than budget_s and 1.5x its time on an idle machine.",
    )
    min_candidates: int = Field(
        default=10,
        ge=1,
        description="Fewest candidates worth reranking under load; a search that cannot score this many within "
        "budget_s is answered in the hybrid's order.",
    )
    cache_entries: int = Field(
        default=20_000,
        ge=0,
        description="Most (model, query, memory) scores kept, local and remote, so a repeated or overlapping search "
        "scores only candidates it has not seen. 0: no cache.",
    )
    cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0, description="Most estimated bytes the score cache holds.")
    blend: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Weight of the cross-encoder in the final order of the reranked candidates, against the "
        "hybrid's (both standardized): 1 = the cross-encoder's order alone. None: the weight saved with the "
        "model by finetune-reranker (mimir_reranker.json), else 1.",
    )


class RemoteRerankerSettings(BaseModel):
    """A hosted rerank API, tried before the local cross-encoder (``MIMIR_REMOTE_*``). Off unless ``url`` is set."""

    provider: Literal["cohere", "tei", "simple"] = Field(
        default="cohere",
        description="Response shape: cohere (results[{index, relevance_score}]; Jina and Voyage answer the same), "
        "tei (Text Embeddings Inference /rerank: [{index, score}]), simple ({scores: [...]} in input order).",
    )
    url: str | None = Field(default=None, description="The rerank endpoint, e.g. https://api.cohere.com/v2/rerank.")
    api_key: SecretStr | None = Field(
        default=None, description="Sent as a bearer token; read from the environment, never logged or shown in status."
    )
    model: str | None = Field(default=None, description="Model name sent with each request (rerank-v3.5, ...).")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Longest one request may take, retries included.")
    max_documents: int = Field(default=100, ge=1, le=10_000, description="Most documents per request.")
    retries: int = Field(
        default=2, ge=0, le=5, description="Retries after a connection error, 429 (honouring Retry-After) or 503."
    )


class SearchSettings(BaseModel):
    """Defaults of the hybrid pipeline."""

    candidate_depth: int = Field(default=100, ge=1, le=2000, description="Dense and BM25 candidates per arm.")
    # zscore fusion, its coverage powers and the context threshold were chosen leave one collection out
    # over twelve collections (docs/retrieval-quality.md, "How the defaults were chosen"); the RRF methods
    # remain for comparison.
    fusion: Literal["zscore", "coverage", "top_z", "score_gap", "equal"] = Field(
        default="zscore",
        description="zscore: each arm's standardized scores added, weighted per query by how far its best hit "
        "stands above its other candidates and how fully it matches the query (coverage). RRF with such weights "
        "(coverage), with the stand-out part alone (top_z), with the top-1/top-10 score gap (score_gap), or "
        "plain equal-weight RRF (equal).",
    )
    rrf_k: int = Field(default=10, ge=1, description="RRF constant, for the RRF methods.")
    bm25_coverage_power: float | None = Field(
        default=None, ge=0, description="Exponent of the BM25 arms' coverage in their weight (default: the method's)."
    )
    dense_coverage_power: float | None = Field(
        default=None, ge=0, description="Exponent of the dense arm's coverage (best cosine) (default: the method's)."
    )
    dense_weight: float = Field(default=1.0, ge=0)
    bm25_weight: float = Field(default=1.0, ge=0)
    # the tail's factors were chosen leave one collection out on Recall@50 (docs/retrieval-quality.md, "The tail")
    tail_from: int = Field(
        default=TAIL_FROM,
        ge=0,
        description="zscore only: past this many places the fused order weighs the dense arm by the tail factor "
        "below (the top places, and nDCG@10, do not move). A large value turns the tail off.",
    )
    tail_dense_factor: float = Field(
        default=TAIL_DENSE_FACTOR,
        gt=0,
        description="The dense arm's weight past tail_from is multiplied by this where the context arm does not run.",
    )
    tail_dense_factor_context: float = Field(
        default=TAIL_DENSE_FACTOR_CONTEXT,
        gt=0,
        description="The same where the context arm runs (a coherent namespace: conversations, logs).",
    )
    context: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Score each memory with the one stored before it in its namespace (BM25 arm): 'auto' when "
        "the namespace's coherence reaches context_min_coherence and its memories are short (context_max_terms) "
        "(conversations, logs) or the query is (context_query_words), 'on' always, 'off' never.",
    )
    context_min_coherence: float = Field(
        default=CONTEXT_MIN_COHERENCE,
        description="Coherence (LexicalIndex.coherence) from which 'auto' context applies.",
    )
    context_max_terms: float = Field(
        default=CONTEXT_MAX_TERMS,
        gt=0,
        description="'auto' context applies only where the namespace's memories hold at most this many terms "
        "on average (BM25 length: words less stop words): turns, not passages of a document stored in order.",
    )
    context_query_words: int = Field(
        default=CONTEXT_QUERY_WORDS,
        ge=0,
        description="... or for a query of at most this many words (a keyword look-up) in a coherent namespace of "
        "longer memories: a manual stored in order asked 'exit status'. 0: no such exception.",
    )
    default_top_k: int = Field(default=10, ge=1)
    default_rerank_top_k: int = Field(default=50, ge=1)
    default_diversity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="MMR weight of a search that gives no diversity: 0 keeps the ranking as it is.",
    )
    default_deadline_ms: int | None = Field(
        default=None,
        ge=10,
        le=600_000,
        description="Time limit of a search that gives no deadline_ms: the reranker scores only the candidates "
        "its measured cost says fit, or none. None: no limit but reranker.budget_s under load.",
    )
    # About a paragraph: enough to judge a hit, and ten hits with their scores stay a few KB.
    default_max_chars: int = Field(
        default=400,
        ge=MIN_SNIPPET_CHARS,
        description="Most characters of each hit's text when `max_chars` is not given; longer memories "
        "are shown as a snippet around the best-matching part.",
    )


class LimitSettings(BaseModel):
    """Caps on tool input; each error names the field and the limit."""

    max_text_bytes: int = Field(default=32 * 1024, ge=1)
    max_batch: int = Field(default=256, ge=1)
    max_top_k: int = Field(default=100, ge=1)
    max_rerank_top_k: int = Field(default=200, ge=1)
    max_rerank_documents: int = Field(default=200, ge=1)
    max_query_chars: int = Field(default=4096, ge=1)
    max_tags: int = Field(default=32, ge=0)
    max_tag_chars: int = Field(default=64, ge=1)
    max_metadata_keys: int = Field(default=32, ge=0)
    max_metadata_value_chars: int = Field(default=1024, ge=1)
    max_list_limit: int = Field(default=100, ge=1, description="Most memories one `list` page or `get` returns.")
    forget_confirm_threshold: int = Field(
        default=100, ge=0, description="A `forget` by filter matching more memories than this needs `confirm: true`."
    )
    max_forget_ids_shown: int = Field(default=1000, ge=1, description="Most ids one `forget` answer lists.")
    max_input_depth: int = Field(
        default=8,
        ge=4,
        description="Deepest nesting of objects and arrays in a tool's arguments (the deepest valid call has 3); "
        "deeper input is refused before it is validated or stored.",
    )
    max_input_items: int = Field(
        default=100_000,
        ge=1000,
        description="Most values (array items and object members, all levels) in one tool call's arguments.",
    )


def _comma_list(value: Any) -> Any:
    """``a,b`` from an environment variable or a flag as a list (a JSON list is read by pydantic-settings)."""
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]


class ServerSettings(BaseModel):
    """How the MCP server is reached."""

    transport: Literal["stdio", "sse", "streamable-http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    allowed_hosts: CommaList | None = Field(
        default=None,
        description="Host headers HTTP requests may carry besides the loopback names, e.g. mimir.lan:8000 "
        "(host:* for any port); others get 421. None: the bind address (nothing more for 0.0.0.0).",
    )
    allowed_origins: CommaList | None = Field(
        default=None,
        description="Origin headers allowed besides loopback ones (a request without Origin passes); others "
        "get 403. None: http:// and https:// of every allowed host.",
    )
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Largest HTTP request body; larger ones get 413 before they are read. None: twice the "
        "largest remember batch's text (limits.max_batch x limits.max_text_bytes) plus 1 MiB.",
    )


class AccessSettings(BaseModel):
    """Bearer tokens for the HTTP transports and the namespaces each may use (``mimir_mcp.server.access``)."""

    tokens: SecretStr | None = Field(
        default=None, description="name:secret:ns1,ns2 entries separated by ';' ('*': every namespace)."
    )
    tokens_file: Path | None = Field(default=None, description="A JSON or TOML file of tokens.")
    allow_unauthenticated: bool = Field(
        default=False, description="Serve HTTP on a non-loopback address without tokens (logs a warning)."
    )


class Settings(BaseSettings):
    """Everything configurable about mimir-mcp."""

    model_config = SettingsConfigDict(
        env_prefix="MIMIR_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    reranker: RerankerSettings = Field(default_factory=RerankerSettings)
    remote: RemoteRerankerSettings = Field(default_factory=RemoteRerankerSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AccessSettings = Field(default_factory=AccessSettings)

    @model_validator(mode="after")
    def _check_search_within_limits(self) -> Settings:
        if self.search.default_top_k > self.limits.max_top_k:
            raise ValueError(
                f"search.default_top_k ({self.search.default_top_k}) must not exceed "
                f"limits.max_top_k ({self.limits.max_top_k})"
            )
        if self.search.default_rerank_top_k > self.limits.max_rerank_top_k:
            raise ValueError(
                f"search.default_rerank_top_k ({self.search.default_rerank_top_k}) must not exceed "
                f"limits.max_rerank_top_k ({self.limits.max_rerank_top_k})"
            )
        return self

    @property
    def model_cache_dir(self) -> str | None:
        """sentence-transformers' own cache variable, passed through so the seed's setting keeps working."""
        return os.environ.get("SENTENCE_TRANSFORMERS_HOME") or None
