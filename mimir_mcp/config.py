"""One settings object for the whole server, read from flags and ``MIMIR_*`` environment variables.

Nested groups map to environment variables with one underscore after the group name:
``MIMIR_RERANKER_MODEL`` sets ``reranker.model``, ``MIMIR_LIMITS_MAX_TEXT_BYTES`` sets
``limits.max_text_bytes``. ``CROSS_ENCODER_MODEL`` and ``SENTENCE_TRANSFORMERS_HOME`` are honoured
as the seed documents describe them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mimir_mcp.search.snippet import MIN_SNIPPET_CHARS
from mimir_mcp.search.when import AUTO, normalized, read_when

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

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder of the embedded Chroma store and the BM25 index: where the memories live (back it up).",
    )
    onnx_cache_dir: Path = Field(
        default_factory=default_onnx_cache_dir,
        description="Where the ONNX copies of the models are built and kept (about 110 MB for the defaults), shared "
        "by every data dir: move it off a small disk.",
    )
    collection: str = Field(
        default="mimir_memories",
        description="Chroma collection of the memories: one per store where several share a Chroma server.",
    )
    chroma_host: str | None = Field(
        default=None,
        description="A Chroma server (`chroma run`) to use instead of the embedded store, so servers on several "
        "machines share one store.",
    )
    chroma_port: int = Field(default=8000, description="Port of the Chroma server.")
    chroma_ssl: bool = Field(default=False, description="Reach the Chroma server over HTTPS.")
    # Counting a Chroma collection takes ~4 ms at 100k memories: a fifth of a search's budget, so not at every
    # search; twice a second keeps what other nodes wrote under a second old. The embedded store needs no
    # interval: a stat of its files tells when anything was written.
    sync_interval_s: float = Field(
        default=0.5,
        ge=0,
        description="With a Chroma server: how often (at most) a search checks for memories written by another "
        "server. Lower it (0: every search) for them to show sooner; each check counts the collection.",
    )

    @property
    def embedded_dir(self) -> Path | None:
        """The embedded store's folder, expanded; None where the store is a Chroma server."""
        return None if self.chroma_host else self.data_dir.expanduser()


class EmbeddingSettings(BaseModel):
    """The bi-encoder that turns memories and queries into vectors."""

    model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or local folder; a store written with another model needs "
        "`mimir-mcp reindex`.",
    )
    device: str = Field(default="cpu", description="Where the model runs: cpu, cuda, mps.")
    batch_size: int = Field(default=32, ge=1, le=1024, description="Texts embedded per step: larger on a GPU.")
    query_backend: Literal["torch", "onnx"] = Field(
        default="onnx",
        description="onnx: an exact fp32 ONNX copy embeds queries and memories (built once, cached; later starts "
        "serve it without torch); 3x faster on CPU. torch: no copy is built.",
    )


class RerankerSettings(BaseModel):
    """The cross-encoder of the second search stage."""

    enabled: bool = Field(
        default=True,
        description="false (--no-rerank): searches keep the hybrid's order: faster, and no model to download.",
    )
    model: str = Field(
        default_factory=lambda: os.environ.get("CROSS_ENCODER_MODEL") or DEFAULT_RERANKER_MODEL,
        description="Cross-encoder: a Hugging Face hub name (downloaded on first use) or a local folder, such as "
        "one `mimir-mcp finetune-reranker` saved.",
    )
    device: str = Field(default="cpu", description="Where the cross-encoder runs: cpu, cuda, mps.")
    backend: Literal["torch", "onnx-int8"] = Field(
        default="onnx-int8",
        description="onnx-int8: a fused, int8-quantized ONNX copy (built once, cached; later starts serve it "
        "without torch) scores once ready. torch: the model as it is, no copy built.",
    )
    # Batches of 4-8 pairs are ~2x faster than 32 on a laptop CPU, with identical scores.
    batch_size: int = Field(
        default=8, ge=1, le=512, description="Pairs the torch backend scores per step: larger on a GPU."
    )
    # Cross-encoder cost grows faster than linearly with length: capping 512-token models at 256 makes
    # 100 SciFact candidates ~2x faster again (bench). Memories shorter than the cap score identically.
    max_length: int | None = Field(
        default=256,
        ge=16,
        le=8192,
        description="Most tokens per (query, memory) pair: more reads further into long memories, at a cost that "
        "grows faster than the length; a model with a shorter limit keeps its own. None: the model's.",
    )
    timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a rerank may take before a search answers in the hybrid's order, and the `rerank` "
        "tool's wait for the model and the queue.",
    )
    # One search scores at a time; under load the others queue (rerank/admission.py).
    budget_s: float = Field(
        default=1.0,
        gt=0,
        description="Under load, the longest a search may wait for the cross-encoder and score with it: a search "
        "whose scoring would end later reranks only the top candidates that fit, or none, and says so in "
        "`message`. A search alone in the queue reranks everything it asks for unless the CPU is so busy that "
        "this would take longer than budget_s and 1.5x its time on an idle machine.",
    )
    cache_entries: int = Field(
        default=20_000,
        ge=0,
        description="Most (model, query, memory) scores kept, local and remote, so a repeated or overlapping search "
        "scores only candidates it has not seen. 0: no cache.",
    )
    cache_bytes: int = Field(
        default=16 * 1024 * 1024, ge=0, description="Most estimated bytes the score cache holds: its share of memory."
    )
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
    max_documents: int = Field(
        default=100, ge=1, le=10_000, description="Most documents per request: the provider's limit, if lower."
    )
    retries: int = Field(
        default=2, ge=0, le=5, description="Retries after a connection error, 429 (honouring Retry-After) or 503."
    )


def _readable_when(value: str | None) -> str | None:
    """A configured `when` is checked at start-up, not at every search."""
    value = normalized(value)
    if value not in (None, AUTO):
        read_when(value, now=datetime.now(UTC), tz=UTC)
    return value


class SearchSettings(BaseModel):
    """What a search does when the call does not say; how the arms are fused is ``search.policy``'s."""

    candidate_depth: int = Field(
        default=100,
        ge=1,
        le=2000,
        description="Candidates each arm (dense, BM25) passes to fusion. Deeper finds a memory that one arm ranks "
        "low, at the cost of latency on a large store.",
    )
    context: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether BM25 also reads each memory together with the ones stored next to it in its namespace, "
        "so a reply is found by the words of what it answers. 'auto' decides per namespace and query (a coherent "
        "namespace of short memories, or a keyword query); 'on' for a store you know is one conversation or log; "
        "'off' for one of unrelated facts.",
    )
    default_top_k: int = Field(
        default=10, ge=1, description="Hits a search returns when it gives no top_k: more for an agent that reads more."
    )
    default_rerank_top_k: int = Field(
        default=50,
        ge=1,
        description="Candidates the cross-encoder scores when a search gives no rerank_top_k: more can lift a memory "
        "the first stage ranks low; the reranker's time grows with it.",
    )
    default_diversity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="MMR weight of a search that gives no diversity: raise it where near-duplicate memories fill "
        "the hits; 0 keeps the ranking as it is.",
    )
    default_deadline_ms: int | None = Field(
        default=None,
        ge=10,
        le=600_000,
        description="Time limit of a search that gives no deadline_ms, for agents that must answer in time: the "
        "reranker scores only the candidates its measured cost says fit, or none. None: no limit but "
        "reranker.budget_s under load.",
    )
    # About a paragraph: enough to judge a hit, and ten hits with their scores stay a few KB.
    default_max_chars: int = Field(
        default=400,
        ge=MIN_SNIPPET_CHARS,
        description="Most characters of each hit's text when `max_chars` is not given (fewer: fewer tokens for the "
        "agent; more: more of each memory); longer memories are shown as a snippet around the best-matching part.",
    )
    default_when: Annotated[str | None, AfterValidator(_readable_when)] = Field(
        default="auto",
        description="The `when` of a search that gives none: 'auto' applies a time phrase found in the query "
        "('what did we decide last week'); unset (or 'off') where memories' times say nothing, as in a store "
        "imported at once.",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone a time phrase (`when`: 'yesterday', 'last week') is read in when the call gives no "
        "`tz`, for a server whose agents' users live elsewhere than its clock says. None: the server's own zone.",
    )
    recency_half_life_days: float = Field(
        default=30.0,
        gt=0,
        le=36_500,
        description="How fast `prefer_recent` forgets: a memory this many days old counts half as recent as a new "
        "one. Shorter for a team whose decisions change weekly.",
    )
    now: AwareDatetime | None = Field(
        default=None,
        description="A fixed time that time phrases and recency are read against instead of the clock: for "
        "replaying a dataset (eval) and tests. None: the clock.",
    )


class LimitSettings(BaseModel):
    """Caps on tool input, so no call can make the server hold or store more than the operator allows: raise
    one for larger memories or calls, lower it to protect a shared server. Each error names the field and the
    limit."""

    max_text_bytes: int = Field(default=32 * 1024, ge=1, description="Largest memory text, in UTF-8 bytes.")
    max_batch: int = Field(default=256, ge=1, description="Most memories one `remember` call stores.")
    max_top_k: int = Field(default=100, ge=1, description="Most hits one search returns.")
    max_rerank_top_k: int = Field(default=200, ge=1, description="Most candidates one search has reranked.")
    max_rerank_documents: int = Field(default=200, ge=1, description="Most documents one `rerank` call scores.")
    max_query_chars: int = Field(default=4096, ge=1, description="Longest query, in characters.")
    max_tags: int = Field(default=32, ge=0, description="Most tags on one memory.")
    max_tag_chars: int = Field(default=64, ge=1, description="Longest tag, in characters.")
    max_metadata_keys: int = Field(default=32, ge=0, description="Most metadata keys on one memory.")
    max_metadata_value_chars: int = Field(
        default=1024, ge=1, description="Longest metadata string value, in characters."
    )
    max_list_limit: int = Field(default=100, ge=1, description="Most memories one `list` page or `get` returns.")
    forget_confirm_threshold: int = Field(
        default=100, ge=0, description="A `forget` by filter matching more memories than this needs `confirm: true`."
    )
    max_input_items: int = Field(
        default=100_000,
        ge=1000,
        description="Most values (array items and object members, all levels) in one tool call's arguments, "
        "refused before they are validated: raise it with max_batch, max_tags or max_metadata_keys.",
    )


def _comma_list(value: Any) -> Any:
    """``a,b`` from an environment variable or a flag as a list (a JSON list is read by pydantic-settings)."""
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]
ToolName = Literal["remember", "search", "rerank", "status", "list_memories", "get", "update", "forget"]


class ServerSettings(BaseModel):
    """How the MCP server is reached."""

    transport: Literal["stdio", "sse", "streamable-http"] = Field(
        default="stdio",
        description="stdio for a client that starts the server (Claude Desktop); streamable-http (or sse, for "
        "older clients) for one server many agents share.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface the HTTP transports listen on: 0.0.0.0 for other machines (then set tokens).",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port of the HTTP transports.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="How much the server logs, on stderr."
    )
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
    tools: Annotated[list[ToolName], BeforeValidator(_comma_list)] | None = Field(
        default=None, description="Expose only these tools (a comma list, e.g. search,get). None: all of them."
    )
    read_only: bool = Field(default=False, description="Expose no tool that writes (remember, update, forget).")
    ui: bool = Field(
        default=True,
        description="Serve the web page at /ui on the HTTP transports (behind the same tokens); off with --no-ui.",
    )
    tool_descriptions: dict[ToolName, str] = Field(
        default_factory=dict,
        description='Replace tools\' descriptions, e.g. {"remember": "Remember every decision with its ticket id."} '
        "(JSON in MIMIR_SERVER_TOOL_DESCRIPTIONS).",
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


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """``MIMIR_*`` variables that name no setting (a typo, or a setting this version no longer has), which
    the settings themselves ignore: the server warns of them so a variable that does nothing is not trusted."""
    groups = {name: field.annotation for name, field in Settings.model_fields.items()}
    unknown = []
    for variable in sorted(environ):
        if not variable.startswith("MIMIR_"):
            continue
        group, _, field = variable[len("MIMIR_") :].lower().partition("_")
        model = groups.get(group)
        if not (isinstance(model, type) and issubclass(model, BaseModel) and field in model.model_fields):
            unknown.append(variable)
    return unknown
