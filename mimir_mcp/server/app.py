"""``create_server``: the MCP server, its lifespan, the eight thin tools and the memory resources.

Tools validate, call the memory service and return pydantic models (structured content with an
output schema). Nothing heavy happens here: models and the store load in the background once the
server starts, so the ``initialize`` answer never waits for them.
"""

import logging
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from mimir_mcp import __version__
from mimir_mcp.server.access import WRITTEN_BY, Grant, audit, grant_of
from mimir_mcp.config import LimitSettings, Settings
from mimir_mcp.errors import InvalidInputError, MimirError, NotFoundError
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.models import (
    ForgetResponse,
    GetResponse,
    ListResponse,
    MemoryInput,
    RecordFilter,
    RememberResponse,
    RerankDocument,
    RerankResponse,
    SearchResponse,
    StatusResponse,
    UpdateResponse,
)
from mimir_mcp.server.resources import MemoryResources
from mimir_mcp.search.pipeline import SearchRequest
from mimir_mcp.search.snippet import MIN_SNIPPET_CHARS
from mimir_mcp.server.validation import (
    check_arguments,
    check_batch,
    check_count,
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
    check_validation_error,
)

logger = logging.getLogger(__name__)

ALL_NAMESPACES = "*"
CREATED_AFTER = "Only memories stored at or after this ISO 8601 date or time (e.g. 2026-05-01, 2026-05-01T12:00Z)."
CREATED_BEFORE = "Only memories stored before this ISO 8601 date or time."
INSTRUCTIONS = (
    "mimir-mcp is a shared long-term memory. Call `remember` to store facts, decisions and notes "
    "(with tags, source, agent and a namespace per project); call `search` to find them again by meaning "
    "and keywords; `list_memories` and `get` read them back, `update` corrects one and `forget` removes them. "
    "`rerank` scores any list of texts against a query; `status` says whether the "
    "cross-encoder reranker is ready."
)


def create_server(settings: Settings | None = None, *, service: MemoryService | None = None) -> MCPServer:
    """Build the server; ``service`` lets tests and embedders inject their own models and store."""
    settings = settings or Settings()
    memory = service or MemoryService(settings)
    limits = settings.limits
    # No memory is longer than max_text_bytes characters, so a larger max_chars would change nothing;
    # the configured default is allowed even when it is larger.
    max_chars_limit = max(limits.max_text_bytes, settings.search.default_max_chars)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[MemoryService]:
        # Under SSE the lifespan runs per connection; starting is idempotent and nothing is closed here,
        # because the service outlives every session. The CLI closes it when the process ends.
        memory.start()
        yield memory

    server = _CheckedServer(
        limits,
        "mimir-mcp",
        title="Mimir memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.server.log_level,
    )
    read_only = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def remember(
        ctx: Context,
        text: Annotated[
            str | None, Field(description=f"One memory to store (at most {limits.max_text_bytes} bytes).")
        ] = None,
        memories: Annotated[
            list[MemoryInput] | None,
            Field(description=f"A batch of memories instead of `text` (at most {limits.max_batch} per call)."),
        ] = None,
        tags: Annotated[
            list[str] | None, Field(description="Labels for filtering later, e.g. ['bug', 'auth'].")
        ] = None,
        source: Annotated[str | None, Field(description="Where it came from: a URL, a file, a tool.")] = None,
        agent: Annotated[str | None, Field(description="The name of the agent storing it.")] = None,
        namespace: Annotated[
            str | None, Field(description="Memory space, e.g. one per project. Defaults to 'default'.")
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Flat key/value pairs: string, number or boolean values.")
        ] = None,
    ) -> RememberResponse:
        """Store one memory (`text`) or a batch (`memories`) so any agent can find it later with `search`.

        Returns the ids in input order. Storing the same text again in the same namespace is safe:
        it returns the existing id with `deduplicated: true` and stores nothing twice, so retry freely.
        With `memories`, the top-level tags/source/agent/namespace/metadata apply to every item that
        does not set its own.
        """
        if (text is None) == (memories is None):
            raise InvalidInputError(
                "text", "give either `text` (one memory) or `memories` (a batch), not both or neither"
            )
        shared = {
            key: value
            for key, value in {
                "tags": tags,
                "source": source,
                "agent": agent,
                "namespace": namespace,
                "metadata": metadata,
            }.items()
            if value is not None
        }
        for key, value in shared.items():
            _check_shared(key, value, settings)
        if text is not None:
            checked = [check_memory("", MemoryInput(text=text, **shared), limits)]
        else:
            assert memories is not None
            checked = check_batch(
                [
                    item.model_copy(update={k: v for k, v in shared.items() if k not in item.model_fields_set})
                    for item in memories
                ],
                limits,
            )
        grant = grant_of(ctx)
        if grant is not None:
            for index, item in enumerate(checked):
                grant.check("namespace" if text is not None else f"memories[{index}].namespace", item.namespace)
            checked = [
                item.model_copy(update={"metadata": {**item.metadata, WRITTEN_BY: grant.name}}) for item in checked
            ]
        response = await memory.remember(checked)
        audit(
            "remember",
            ctx,
            grant,
            namespaces=",".join(sorted({item.namespace for item in checked})),
            agents=",".join(sorted({item.agent or "-" for item in checked})),
            stored=response.stored_count,
            deduplicated=response.deduplicated_count,
        )
        return response

    @server.tool(annotations=read_only)
    async def search(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for, in natural language or keywords.")],
        top_k: Annotated[
            int, Field(ge=1, description=f"How many hits to return (1-{limits.max_top_k}).")
        ] = settings.search.default_top_k,
        rerank: Annotated[bool, Field(description="Rerank the best candidates with the cross-encoder.")] = True,
        rerank_top_k: Annotated[
            int,
            Field(
                ge=1, description=f"How many fused candidates the cross-encoder scores (1-{limits.max_rerank_top_k})."
            ),
        ] = settings.search.default_rerank_top_k,
        min_score: Annotated[
            float | None, Field(description="Drop hits whose rerank score (0..1) is below this. Needs reranking.")
        ] = None,
        namespace: Annotated[
            str, Field(description=f"Memory space to search; '{ALL_NAMESPACES}' searches all of them.")
        ] = "default",
        tags: Annotated[list[str] | None, Field(description="Only memories carrying every one of these tags.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Only memories whose metadata equals all of these pairs.")
        ] = None,
        max_chars: Annotated[
            int,
            Field(
                ge=MIN_SNIPPET_CHARS,
                le=max_chars_limit,
                description="Most characters of each hit's text: a longer memory is shown as the part that best "
                f"matches the query, with `truncated: true` ({MIN_SNIPPET_CHARS}-{max_chars_limit}).",
            ),
        ] = settings.search.default_max_chars,
        agent: Annotated[str | None, Field(description="Only memories stored by this agent.")] = None,
        created_after: Annotated[str | None, Field(description=CREATED_AFTER)] = None,
        created_before: Annotated[str | None, Field(description=CREATED_BEFORE)] = None,
        diversity: Annotated[
            float,
            Field(
                ge=0,
                le=1,
                description="0-1: how strongly to avoid near-duplicate hits. Above 0, the hits are picked from the "
                "reranked candidates by maximal marginal relevance over the memories' own vectors (0 = off).",
            ),
        ] = settings.search.default_diversity,
        deadline_ms: Annotated[
            int | None,
            Field(
                ge=10,
                le=600_000,
                description="Answer within about this many milliseconds (10-600000): the cross-encoder scores only "
                "the top candidates its measured cost says fit in the time left, or none, and `message` says so.",
            ),
        ] = settings.search.default_deadline_ms,
    ) -> SearchResponse:
        """Find memories: dense vectors and BM25 keywords (plus, in a namespace holding a conversation,
        BM25 over each turn with the turn before it) fused into one ranking, then the top candidates
        reranked by a cross-encoder.

        `search_method` says what ran: `rrf_hybrid+rerank`, or `rrf_hybrid` when reranking was off or
        unavailable (the reason is in `message`; results are still returned in the hybrid's order). Each
        hit has its rank and score in every arm, the fused score (`rrf_score`) and the rerank score. A
        hit's `text` is at most `max_chars` long: a longer memory shows the part that best matches the
        query, with `truncated: true` and its full length in `text_chars`.
        """
        where = _confine(
            _record_filter(namespace, tags, agent, metadata, created_after, created_before, settings), grant_of(ctx)
        )
        request = SearchRequest(
            query=check_query("query", query, limits.max_query_chars),
            top_k=check_count("top_k", top_k, limits.max_top_k),
            rerank=bool(rerank),
            rerank_top_k=check_count("rerank_top_k", rerank_top_k, limits.max_rerank_top_k),
            min_score=check_min_score("min_score", min_score),
            namespace=where.namespace,
            namespaces=where.namespaces,
            tags=where.tags,
            metadata=where.metadata,
            max_chars=max_chars,
            agent=where.agent,
            created_after=where.created_after,
            created_before=where.created_before,
            deadline_ms=deadline_ms,
            diversity=float(diversity),
        )
        return await memory.search(request)

    @server.tool(annotations=read_only)
    async def rerank(
        query: Annotated[str, Field(description="The query to score the documents against.")],
        documents: Annotated[
            list[str | RerankDocument],
            Field(description=f"Candidates: strings or {{id, text}} objects (at most {limits.max_rerank_documents})."),
        ],
        top_k: Annotated[int | None, Field(ge=1, description="Return only the best this many.")] = None,
        min_score: Annotated[float | None, Field(description="Drop documents scoring below this (0..1).")] = None,
    ) -> RerankResponse:
        """Score and reorder any list of texts for a query with the cross-encoder, best first.

        Each result keeps its original `index` (and `id`, if given). If no cross-encoder is available
        this returns an error saying why and how to configure one.
        """
        checked_query = check_query("query", query, limits.max_query_chars)
        if not documents:
            raise InvalidInputError("documents", "give at least one document")
        if len(documents) > limits.max_rerank_documents:
            raise InvalidInputError(
                "documents", f"has {len(documents)} documents; the limit is {limits.max_rerank_documents}"
            )
        items = [doc if isinstance(doc, RerankDocument) else RerankDocument(text=doc) for doc in documents]
        for index, item in enumerate(items):
            item.text = check_text(f"documents[{index}].text", item.text, limits.max_text_bytes)
            if item.id is not None:
                check_label(f"documents[{index}].id", item.id)
        limit = None if top_k is None else check_count("top_k", top_k, limits.max_rerank_documents)
        return await memory.rerank(checked_query, items, top_k=limit, min_score=check_min_score("min_score", min_score))

    @server.tool(annotations=read_only)
    async def list_memories(
        ctx: Context,
        namespace: Annotated[
            str, Field(description=f"Memory space to list; '{ALL_NAMESPACES}' lists all of them.")
        ] = "default",
        tags: Annotated[list[str] | None, Field(description="Only memories carrying every one of these tags.")] = None,
        agent: Annotated[str | None, Field(description="Only memories stored by this agent.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Only memories whose metadata equals all of these pairs.")
        ] = None,
        created_after: Annotated[str | None, Field(description=CREATED_AFTER)] = None,
        created_before: Annotated[str | None, Field(description=CREATED_BEFORE)] = None,
        limit: Annotated[int, Field(ge=1, description=f"Memories per page (1-{limits.max_list_limit}).")] = 20,
        cursor: Annotated[str | None, Field(description="The `next_cursor` of the previous page.")] = None,
        order: Annotated[
            Literal["newest", "oldest"], Field(description="Newest first (default) or oldest.")
        ] = "newest",
        max_chars: Annotated[
            int,
            Field(
                ge=MIN_SNIPPET_CHARS,
                le=max_chars_limit,
                description="Most characters of each memory's text; longer ones are cut with `truncated: true` "
                "(use `get` for the whole text).",
            ),
        ] = settings.search.default_max_chars,
    ) -> ListResponse:
        """List stored memories page by page, newest first, with the same filters as `search` (and no
        scores). Pass `next_cursor` back as `cursor` for the next page; memories stored meanwhile never
        shift or repeat the pages that follow."""
        where = _record_filter(namespace, tags, agent, metadata, created_after, created_before, settings)
        return await memory.list_memories(
            _confine(where, grant_of(ctx)),
            limit=check_count("limit", limit, limits.max_list_limit),
            cursor=cursor,
            newest_first=order == "newest",
            max_chars=max_chars,
        )

    @server.tool(annotations=read_only)
    async def get(
        ctx: Context,
        ids: Annotated[
            list[str],
            Field(description=f"Memory ids, as `remember` and `search` return them (at most {limits.max_list_limit})."),
        ],
    ) -> GetResponse:
        """Read memories by id, whole (no snippet); ids not stored are listed in `not_found`."""
        checked = check_ids("ids", ids, limits.max_list_limit)
        response = await memory.get(checked, max_chars=None)
        grant = grant_of(ctx)
        if grant is None:
            return response
        # A memory of a namespace outside the token's scope is reported exactly as one never stored.
        shown = [item for item in response.memories if grant.allows(item.namespace)]
        visible = {item.id for item in shown}
        return GetResponse(memories=shown, not_found=[memory_id for memory_id in checked if memory_id not in visible])

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def forget(
        ctx: Context,
        ids: Annotated[
            list[str] | None, Field(description=f"Memory ids to remove (at most {limits.max_batch}).")
        ] = None,
        namespace: Annotated[
            str | None, Field(description=f"Remove memories of this namespace ('{ALL_NAMESPACES}': any namespace).")
        ] = None,
        tags: Annotated[list[str] | None, Field(description="...carrying every one of these tags.")] = None,
        agent: Annotated[str | None, Field(description="...stored by this agent.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="...whose metadata equals all of these pairs.")
        ] = None,
        created_after: Annotated[str | None, Field(description=CREATED_AFTER)] = None,
        created_before: Annotated[str | None, Field(description=CREATED_BEFORE)] = None,
        confirm: Annotated[
            bool,
            Field(description=f"Needed when a filter matches more than {limits.forget_confirm_threshold} memories."),
        ] = False,
        dry_run: Annotated[bool, Field(description="Report what would be removed, remove nothing.")] = False,
    ) -> ForgetResponse:
        """Remove memories for good: by `ids`, or every memory matching a filter (`namespace`, `tags`,
        `agent`, `metadata`, `created_after`/`created_before`; all given conditions must hold). Removed
        memories vanish from search, `list_memories`, `get` and the counts in `status`. A filter matching
        more than the threshold needs `confirm: true`; `dry_run: true` shows what would go."""
        filters = {
            "namespace": namespace,
            "tags": tags,
            "agent": agent,
            "metadata": metadata,
            "created_after": created_after,
            "created_before": created_before,
        }
        given = [name for name, value in filters.items() if value is not None]
        grant = grant_of(ctx)
        if ids is not None:
            if given:
                raise InvalidInputError(given[0], "give either `ids` or filters, not both")
            checked = check_ids("ids", ids, limits.max_batch)
            hidden = await _outside(checked, grant)
            response = await memory.forget(
                [memory_id for memory_id in checked if memory_id not in hidden], None, confirm=confirm, dry_run=dry_run
            )
            if hidden:
                # Out of scope reads as never stored, in the same place and words.
                absent = set(response.not_found) | hidden
                not_found = [memory_id for memory_id in dict.fromkeys(checked) if memory_id in absent]
                message = response.message.split("; ")[0] + f"; {len(not_found)} ids were not stored"
                response = response.model_copy(update={"not_found": not_found, "message": message})
            if not dry_run:
                removed, shown = response.removed_count, ",".join(response.ids) or "-"
                audit("forget", ctx, grant, removed=removed, ids=shown, not_found=len(response.not_found))
            return response
        if not given:
            raise InvalidInputError(
                "ids",
                f"give `ids`, or at least one filter (namespace, tags, agent, metadata, created_after, "
                f"created_before); namespace '{ALL_NAMESPACES}' with confirm: true removes everything",
            )
        where = _confine(
            _record_filter(namespace, tags, agent, metadata, created_after, created_before, settings), grant
        )
        response = await memory.forget(None, where, confirm=confirm, dry_run=dry_run)
        if not dry_run:
            removed, shown = response.removed_count, ",".join(response.ids) or "-"
            audit("forget", ctx, grant, by=",".join(given), removed=removed, ids=shown)
        return response

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def update(
        ctx: Context,
        id: Annotated[str, Field(description="The id of the memory to change.")],  # noqa: A002 - the field's name
        text: Annotated[
            str | None,
            Field(description="New text: the memory is embedded and indexed again and gets a new id (`supersedes`)."),
        ] = None,
        tags: Annotated[
            list[str] | None, Field(description="New tags, replacing the old ones ([] removes all).")
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="New metadata, replacing the old ({} removes all).")
        ] = None,
    ) -> UpdateResponse:
        """Correct a memory. Changing only `tags` or `metadata` keeps its id. Changing `text` stores the
        new text under its own content id (so remembering it again deduplicates), says which id it
        `supersedes`, and removes the old memory: search never returns the old text again."""
        memory_id = check_ids("id", [id], 1)[0]
        if text is None and tags is None and metadata is None:
            raise InvalidInputError("text", "give at least one of text, tags, metadata to change")
        new_metadata = None if metadata is None else check_metadata("metadata", metadata, limits)
        grant = grant_of(ctx)
        if grant is not None:
            current = (await memory.get([memory_id], max_chars=MIN_SNIPPET_CHARS)).memories
            if not current or not grant.allows(current[0].namespace):
                raise NotFoundError(f"id: no memory {memory_id!r} is stored (it may have been forgotten)")
            new_metadata = {**(current[0].metadata if new_metadata is None else new_metadata), WRITTEN_BY: grant.name}
        response = await memory.update(
            memory_id,
            text=None if text is None else check_text("text", text, limits.max_text_bytes),
            tags=None if tags is None else check_tags("tags", tags, limits),
            metadata=new_metadata,
        )
        audit("update", ctx, grant, id=memory_id, new_id=response.id, changed=",".join(response.changed) or "-")
        return response

    @server.tool(annotations=read_only)
    async def status(ctx: Context) -> StatusResponse:
        """Report whether the cross-encoder is ready (loading / ready / failed, with the error), which
        models are in use, where memories are stored, how many there are per namespace, the BM25 index,
        search timings, versions and uptime."""
        response = await memory.status()
        grant = grant_of(ctx)
        if grant is not None and grant.namespaces is not None:
            # Counts of the token's own namespaces only: nothing about what the others hold.
            shown = {name: count for name, count in response.store.namespaces.items() if name in grant.namespaces}
            response.store.namespaces = shown
            response.store.memories = sum(shown.values())
            if response.bm25 is not None:
                response.bm25.documents = response.store.memories
        return response

    async def _outside(ids: list[str], grant: Grant | None) -> set[str]:
        """The ids among ``ids`` stored in namespaces the token may not use."""
        if grant is None or grant.namespaces is None:
            return set()
        found = await memory.get(list(dict.fromkeys(ids)), max_chars=MIN_SNIPPET_CHARS)
        return {item.id for item in found.memories if not grant.allows(item.namespace)}

    server.take_arguments_as_sent()
    resources = MemoryResources(server, memory)
    resources.install()
    memory.watch(resources.changed)
    return server


def _takes_only_text(annotation: Any) -> bool:
    """Whether a tool parameter accepts nothing but a string (or null): ``str`` or ``str | None``."""
    return annotation is str or set(typing.get_args(annotation)) == {str, type(None)}


class _ArgumentsAsSent(FuncMetadata):
    """The SDK decodes a string argument that looks like JSON when its parameter is not typed plain ``str``
    (some clients send lists as JSON text). For a parameter that takes only text (``str | None``: ``text``,
    ``namespace``, ``agent``, ``source``...) that turned ``"null"`` into null (stored in ``default``, or as no
    agent) and a JSON snippet into an object (refused); here such a parameter keeps the string as sent."""

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = super().pre_parse_json(data)
        for name, field in self.arg_model.model_fields.items():
            key = field.alias or name
            if isinstance(data.get(key), str) and _takes_only_text(field.annotation):
                parsed[key] = data[key]
        return parsed


class _CheckedServer(MCPServer):
    """Every call's raw arguments are checked for shape (names, depth, size, lone surrogates, NaN) before the
    SDK validates them, and the SDK's own validation errors are told in the project's words."""

    def __init__(self, limits: LimitSettings, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._accepted: dict[str, frozenset[str]] | None = None

    def take_arguments_as_sent(self) -> None:
        """Give every registered tool the argument pre-parsing of ``_ArgumentsAsSent``, and an input schema
        that says what ``call_tool`` enforces: no argument names but its own (``additionalProperties``)."""
        for tool in self._tool_manager.list_tools():
            fields = {name: getattr(tool.fn_metadata, name) for name in FuncMetadata.model_fields}
            tool.fn_metadata = _ArgumentsAsSent(**fields)
            tool.parameters["additionalProperties"] = False

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if self._accepted is None:
            self._accepted = {
                tool.name: frozenset(tool.input_schema.get("properties", ())) for tool in await self.list_tools()
            }
        try:
            if name in self._accepted:
                check_arguments(arguments, self._limits, accepted=self._accepted[name])
            return await super().call_tool(name, arguments, context)
        except InvalidInputError as exc:
            # Worded as the SDK words a refusal raised inside a tool.
            raise ToolError(f"Error executing tool {name}: {exc}") from exc
        except ToolError as exc:
            chroma = _chroma_internal_error(exc.__cause__)
            if chroma is not None:
                # Opening rebuilds an unreadable collection (repair.py); a running server cannot swap it under
                # the searches and writes in flight, so it says what to do instead of "Error executing tool".
                logger.error("%s: Chroma failed", name, exc_info=chroma)
                raise ToolError(
                    f"Error executing tool {name}: Chroma cannot read the memory store ({chroma}). If a process "
                    "was killed while writing to it, restart mimir-mcp: it rebuilds the collection from its "
                    "record catalogue when it opens the store (docs/operations.md)."
                ) from chroma
            if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, MimirError):
                raise ToolError(
                    f"Error executing tool {name}: {check_validation_error(exc.__cause__)}"
                ) from exc.__cause__
            raise


def _chroma_internal_error(error: BaseException | None) -> BaseException | None:
    """Chroma's internal error (a damaged collection, among others) if that is what ``error`` is or holds
    (a search's arms run in a task group, which raises a group). chromadb is loaded by then (the store is
    open), so importing its errors costs nothing."""
    if error is None:
        return None
    from chromadb.errors import InternalError

    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _chroma_internal_error(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, InternalError) else None


def _record_filter(
    namespace: str | None,
    tags: list[str] | None,
    agent: str | None,
    metadata: dict[str, Any] | None,
    created_after: str | None,
    created_before: str | None,
    settings: Settings,
) -> RecordFilter:
    """The filter arguments of search, list_memories and forget, checked; namespace None or '*' is every namespace."""
    after, before = check_time_range(created_after, created_before)
    return RecordFilter(
        namespace=None if namespace in (None, ALL_NAMESPACES) else check_namespace("namespace", namespace),
        tags=check_tags("tags", tags or [], settings.limits),
        agent=check_label("agent", agent),
        metadata=check_metadata("metadata", metadata, settings.limits),
        created_after=after,
        created_before=before,
    )


def _confine(where: RecordFilter, grant: Grant | None) -> RecordFilter:
    """The filter bounded to the token's namespaces; a named namespace outside them is refused."""
    if grant is None:
        return where
    namespace, namespaces = grant.confine(where.namespace)
    return where.model_copy(update={"namespace": namespace, "namespaces": namespaces})


def _check_shared(key: str, value: Any, settings: Settings) -> None:
    """Top-level fields shared by a batch get the same checks, named as the caller wrote them."""
    match key:
        case "tags":
            check_tags("tags", value, settings.limits)
        case "metadata":
            check_metadata("metadata", value, settings.limits)
        case "namespace":
            check_namespace("namespace", value)
        case _:
            check_label(key, value)
