"""The tools' typed request models: one validation path for every call.

One ``model_validate`` with the configured limits as its context (``app.CheckedServer`` calls it for every
tool and tells a refusal with ``validation.refusal``) runs it all, in order: the raw shape of the arguments
(``check_arguments``), lists and objects sent as JSON text decoded, the types (strict: ``top_k: "5"`` is
refused, not read as 5), then each field's rule against the configured limits. The models publish
the tools' flat input schemas too; ``for_settings`` gives each the configured defaults and limits.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo

from mimir_mcp.config import LimitSettings, Settings
from mimir_mcp.errors import InvalidInputError
from mimir_mcp.models import MemoryInput, MetadataValue, RecordFilter, RerankDocument
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.search.snippet import MIN_SNIPPET_CHARS
from mimir_mcp.server.validation import (
    check_arguments,
    check_batch,
    check_count,
    check_id,
    check_ids,
    check_label,
    check_memory,
    check_metadata,
    check_min_score,
    check_namespace,
    check_query,
    check_tags,
    check_text,
    check_time_range,
    check_when,
    limits_of,
)

ALL_NAMESPACES = "*"
CREATED_AFTER = "ISO 8601 date or time, inclusive."
CREATED_BEFORE = "ISO 8601, exclusive."
TAGS_FILTER = "All of these tags."
METADATA_FILTER = "All of these key/value pairs."
WHEN = "Time phrase, e.g. 'last week', 'since Monday'."
TZ = "`when`'s IANA zone."
SHARED_FIELDS = ("tags", "source", "agent", "namespace", "metadata")


def _takes_structure(annotation: Any) -> bool:
    """Whether a field takes an array or an object (which some clients send as JSON text)."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    return any(typing.get_origin(member) in (list, dict) for member in (annotation, *members))


def _decoded(value: Any) -> Any:
    """A list or object sent as JSON text, decoded; anything else exactly as sent."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return value
    return parsed if isinstance(parsed, list | dict) else value


class ToolArguments(BaseModel):
    """A tool's arguments. Unknown names are refused."""

    model_config = ConfigDict(extra="forbid")

    structured: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.structured = frozenset(
            name for name, field in cls.model_fields.items() if _takes_structure(field.annotation)
        )

    @classmethod
    def for_settings(cls, settings: Settings, name: str) -> type[Self]:
        """This model with the defaults and limits ``settings`` configure, named as the tool's input schema."""
        fields: dict[str, Any] = {}
        for field, changes in cls.configured(settings).items():
            info = cls.model_fields[field]
            bounds = {key: changes.pop(key) for key in ("ge", "le") if key in changes}
            if "max_items" in changes:  # published; the field's rule checks it, in the project's words
                changes["json_schema_extra"] = {"maxItems": changes.pop("max_items")}
            fields[field] = (info.annotation, FieldInfo.merge_field_infos(info, Field(**bounds), **changes))
        return create_model(f"{name}Arguments", __base__=cls, __module__=cls.__module__, **fields)

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        """Per field, what ``settings`` change in it: a default, a bound (``ge``/``le``, validated too), a
        list's ``max_items`` (published only), a description quoting a limit."""
        return {}

    @model_validator(mode="before")
    @classmethod
    def _as_sent(cls, data: Any, info: ValidationInfo) -> Any:
        limits = limits_of(info)
        check_arguments(data, limits, accepted=frozenset(cls.model_fields))
        decoded = {name: _decoded(value) if name in cls.structured else value for name, value in data.items()}
        if decoded != data:
            check_arguments(decoded, limits)
        return decoded


class FilterArguments(ToolArguments):
    """The filters ``search``, ``list_memories`` and ``forget`` share; namespace None or '*' is every namespace."""

    namespace: StrictStr | None = None
    tags: list[StrictStr] | None = Field(default=None, description=TAGS_FILTER)
    agent: StrictStr | None = None
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_FILTER)
    created_after: StrictStr | None = Field(default=None, description=CREATED_AFTER)
    created_before: StrictStr | None = Field(default=None, description=CREATED_BEFORE)

    _where: RecordFilter = PrivateAttr(default_factory=RecordFilter)

    @property
    def where(self) -> RecordFilter:
        """The filter as the service applies it (times as Unix seconds)."""
        return self._where

    def _check_filter(self, limits: LimitSettings) -> None:
        after, before = check_time_range(self.created_after, self.created_before)
        namespace = self.namespace
        self._where = RecordFilter(
            namespace=None if namespace in (None, ALL_NAMESPACES) else check_namespace("namespace", namespace),
            tags=check_tags("tags", self.tags or [], limits),
            agent=check_label("agent", self.agent),
            metadata=check_metadata("metadata", self.metadata, limits),
            created_after=after,
            created_before=before,
        )

    @property
    def filters_given(self) -> list[str]:
        names = ("namespace", "tags", "agent", "metadata", "created_after", "created_before")
        return [name for name in names if getattr(self, name) is not None]


class RememberArguments(ToolArguments):
    text: StrictStr | None = Field(default=None, description="One memory.")
    memories: list[MemoryInput] | None = Field(default=None, description="A batch, instead of `text`.")
    tags: list[StrictStr] | None = None
    source: StrictStr | None = Field(default=None, description="URL, file or tool it came from.")
    agent: StrictStr | None = Field(default=None, description="Your agent's name.")
    namespace: StrictStr | None = Field(default=None, description="One per project; default 'default'.")
    metadata: dict[str, Any] | None = Field(default=None, description="Flat; string, number or boolean values.")

    _items: list[MemoryInput] = PrivateAttr(default_factory=list)

    @property
    def items(self) -> list[MemoryInput]:
        """The memories to store, checked, each with the shared fields it does not set itself."""
        return self._items

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        limits = settings.limits
        return {
            "text": {"description": f"One memory (at most {limits.max_text_bytes} bytes)."},
            "memories": {"max_items": limits.max_batch},
        }

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        if (self.text is None) == (self.memories is None):
            raise InvalidInputError(
                "text", "give either `text` (one memory) or `memories` (a batch), not both or neither"
            )
        shared = {key: getattr(self, key) for key in SHARED_FIELDS if getattr(self, key) is not None}
        for key, value in shared.items():
            # Fields shared by a batch get the same checks, named as the caller wrote them.
            if key == "tags":
                check_tags(key, value, limits)
            elif key == "metadata":
                check_metadata(key, value, limits)
            elif key == "namespace":
                check_namespace(key, value)
            else:
                check_label(key, value)
        if self.text is not None:
            self._items = [check_memory("", MemoryInput(text=self.text, **shared), limits)]
        else:
            assert self.memories is not None
            unset = [
                item.model_copy(update={k: v for k, v in shared.items() if k not in item.model_fields_set})
                for item in self.memories
            ]
            self._items = check_batch(unset, limits)
        return self


class SearchArguments(FilterArguments):
    query: StrictStr = Field(description="Natural language or keywords.")
    top_k: Annotated[StrictInt, Field(ge=1)] = 10
    rerank: StrictBool = True
    rerank_top_k: Annotated[StrictInt, Field(ge=1, description="Candidates reranked.")] = 50
    min_score: StrictFloat | None = Field(default=None, description="Drop hits with rerank score (0-1) below.")
    namespace: StrictStr = Field(  # type: ignore[assignment]  # narrower than the shared filter's
        default="default", description=f"'{ALL_NAMESPACES}': all."
    )
    max_chars: Annotated[
        StrictInt, Field(ge=MIN_SNIPPET_CHARS, description="Longer hits show their best-matching part.")
    ] = 400
    diversity: Annotated[StrictFloat, Field(ge=0, le=1, description="Avoid near-duplicate hits (MMR).")] = 0.0
    deadline_ms: Annotated[
        Annotated[StrictInt, Field(ge=10, le=600_000)] | None,
        Field(description="Rerank only what fits in this time."),
    ] = None
    explain: StrictBool = Field(default=False, description="Add per-stage scores, fusion, counts, timings.")
    when: StrictStr = Field(default="auto", description=WHEN[:-1] + "; 'auto': in the query; 'off'.")
    tz: StrictStr | None = Field(default=None, description=TZ)
    prefer_recent: Annotated[StrictFloat, Field(ge=0, le=1, description="Favour newer matches.")] = 0.0

    _phrase: str | None = PrivateAttr(default=None)  # `when` as the search applies it ('off': None)

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        limits, search = settings.limits, settings.search
        top = max_chars_limit(settings)
        return {
            "top_k": {"default": search.default_top_k, "le": limits.max_top_k},
            "rerank_top_k": {"default": search.default_rerank_top_k, "le": limits.max_rerank_top_k},
            "max_chars": {"default": search.default_max_chars, "le": top},
            "diversity": {"default": search.default_diversity},
            "deadline_ms": {"default": search.default_deadline_ms},
            "when": {"default": search.default_when or "off"},
        }

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        self._check_filter(limits)
        self.query = check_query("query", self.query, limits.max_query_chars)
        check_count("top_k", self.top_k, limits.max_top_k)
        check_count("rerank_top_k", self.rerank_top_k, limits.max_rerank_top_k)
        check_min_score("min_score", self.min_score)
        self._phrase, self.tz = check_when(self.when, self.tz)
        return self

    def search_request(self) -> SearchRequest:
        """The pipeline's request."""
        where = self.where
        return SearchRequest(
            query=self.query,
            top_k=self.top_k,
            rerank=self.rerank,
            rerank_top_k=self.rerank_top_k,
            min_score=self.min_score,
            namespace=where.namespace,
            namespaces=where.namespaces,
            tags=where.tags,
            metadata=where.metadata,
            max_chars=self.max_chars,
            agent=where.agent,
            created_after=where.created_after,
            created_before=where.created_before,
            deadline_ms=self.deadline_ms,
            diversity=self.diversity,
            when=self._phrase,
            tz=self.tz,
            prefer_recent=self.prefer_recent,
        )


class RerankArguments(ToolArguments):
    query: StrictStr
    documents: list[StrictStr | RerankDocument] = Field(description="Strings or {id, text} objects.")
    top_k: Annotated[StrictInt | None, Field(ge=1)] = None
    min_score: StrictFloat | None = Field(default=None, description="Drop scores (0-1) below.")
    explain: StrictBool = Field(default=False, description="Add the query, texts and timings.")

    _items: list[RerankDocument] = PrivateAttr(default_factory=list)

    @property
    def items(self) -> list[RerankDocument]:
        """The documents, checked, each as an ``{id, text}``."""
        return self._items

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        limit = settings.limits.max_rerank_documents
        return {"documents": {"max_items": limit}, "top_k": {"le": limit}}

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        self.query = check_query("query", self.query, limits.max_query_chars)
        if not self.documents:
            raise InvalidInputError("documents", "give at least one document")
        if len(self.documents) > limits.max_rerank_documents:
            raise InvalidInputError(
                "documents", f"has {len(self.documents)} documents; the limit is {limits.max_rerank_documents}"
            )
        items = [doc if isinstance(doc, RerankDocument) else RerankDocument(text=doc) for doc in self.documents]
        for index, item in enumerate(items):
            item.text = check_text(f"documents[{index}].text", item.text, limits.max_text_bytes)
            if item.id is not None:
                check_label(f"documents[{index}].id", item.id)
        self._items = items
        if self.top_k is not None:
            check_count("top_k", self.top_k, limits.max_rerank_documents)
        check_min_score("min_score", self.min_score)
        return self


class ListArguments(FilterArguments):
    namespace: StrictStr = Field(  # type: ignore[assignment]  # narrower than the shared filter's
        default="default", description=f"'{ALL_NAMESPACES}': all."
    )
    limit: Annotated[StrictInt, Field(ge=1)] = 20
    cursor: StrictStr | None = Field(default=None, description="The last page's `next_cursor`.")
    order: Literal["newest", "oldest"] = "newest"
    max_chars: Annotated[StrictInt, Field(ge=MIN_SNIPPET_CHARS, description="Longer texts are cut.")] = 400
    when: StrictStr | None = Field(default=None, description=WHEN)
    tz: StrictStr | None = Field(default=None, description=TZ)

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        return {
            "limit": {"le": settings.limits.max_list_limit},
            "max_chars": {"default": settings.search.default_max_chars, "le": max_chars_limit(settings)},
        }

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        self._check_filter(limits)
        check_count("limit", self.limit, limits.max_list_limit)
        self.when, self.tz = check_when(self.when, self.tz)
        return self


class GetArguments(ToolArguments):
    ids: list[StrictStr]

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        return {"ids": {"max_items": settings.limits.max_list_limit}}

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        self.ids = check_ids("ids", self.ids, limits_of(info).max_list_limit)
        return self


class ForgetArguments(FilterArguments):
    ids: list[StrictStr] | None = None
    namespace: StrictStr | None = Field(default=None, description=f"Unset or '{ALL_NAMESPACES}': any.")
    confirm: StrictBool = False
    dry_run: StrictBool = False

    @classmethod
    def configured(cls, settings: Settings) -> dict[str, dict[str, Any]]:
        limits = settings.limits
        return {
            "ids": {"max_items": limits.max_batch},
            "confirm": {
                "description": f"Needed past {limits.forget_confirm_threshold} matches, or for a namespace alone."
            },
        }

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        given = self.filters_given
        if self.ids is not None:
            if given:
                raise InvalidInputError(given[0], "give either `ids` or filters, not both")
            self.ids = check_ids("ids", self.ids, limits.max_batch)
            return self
        if not given:
            raise InvalidInputError(
                "ids",
                f"give `ids`, or at least one filter (namespace, tags, agent, metadata, created_after, "
                f"created_before); namespace '{ALL_NAMESPACES}' with confirm: true removes everything",
            )
        if given == ["namespace"] and not self.confirm and not self.dry_run:
            raise InvalidInputError(
                "confirm",
                "a forget by namespace alone removes every memory in it: pass confirm: true (dry_run: true lists "
                "them first)",
            )
        self._check_filter(limits)
        return self


class UpdateArguments(ToolArguments):
    id: StrictStr
    text: StrictStr | None = None
    tags: list[StrictStr] | None = Field(default=None, description="Replace all ([] clears).")
    metadata: dict[str, Any] | None = Field(default=None, description="Replace all ({} clears).")

    _metadata: dict[str, MetadataValue] | None = PrivateAttr(default=None)

    @property
    def new_metadata(self) -> dict[str, MetadataValue] | None:
        """The checked metadata to set; None: keep the memory's own."""
        return self._metadata

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        check_id("id", self.id)
        if self.text is None and self.tags is None and self.metadata is None:
            raise InvalidInputError("text", "give at least one of text, tags, metadata to change")
        self._metadata = None if self.metadata is None else check_metadata("metadata", self.metadata, limits)
        if self.text is not None:
            self.text = check_text("text", self.text, limits.max_text_bytes)
        if self.tags is not None:
            self.tags = check_tags("tags", self.tags, limits)
        return self


class StatusArguments(ToolArguments):
    detail: StrictBool = Field(default=False, description="Add queues, cache, timings, versions.")


def max_chars_limit(settings: Settings) -> int:
    """No memory is longer than max_text_bytes characters, so a larger max_chars would change nothing; the
    configured default is allowed even when it is larger."""
    return max(settings.limits.max_text_bytes, settings.search.default_max_chars)
