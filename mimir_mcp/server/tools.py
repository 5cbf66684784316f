"""The eight tools: each takes its request model (validated before it runs), calls the service with the
caller's scope, which holds the call to the namespaces its token may use, and returns the service's model."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from mimir_mcp.config import LimitSettings
from mimir_mcp.models import (
    ForgetResponse,
    GetResponse,
    ListResponse,
    RememberResponse,
    RerankResponse,
    SearchResponse,
    UpdateResponse,
)
from mimir_mcp.server.access import audit, scope_of
from mimir_mcp.server.requests import (
    ForgetArguments,
    GetArguments,
    ListArguments,
    RememberArguments,
    RerankArguments,
    SearchArguments,
    StatusArguments,
    ToolArguments,
    UpdateArguments,
)
from mimir_mcp.server.validation import LIMITS
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.service.scope import Scope
from mimir_mcp.status_models import StatusSummary

if TYPE_CHECKING:
    from mimir_mcp.server.app import CheckedServer

# Only the hints that differ from the spec's defaults (read_only false, destructive true, idempotent false,
# open_world true), which clients assume for a hint left out: every byte of the tool list is paid per session.
READ_ONLY = ToolAnnotations(read_only_hint=True)
WRITE = ToolAnnotations(destructive_hint=False, idempotent_hint=True)
DESTRUCTIVE = ToolAnnotations(idempotent_hint=True)
Arguments = TypeVar("Arguments", bound=ToolArguments)
# What `search` says of reranking, and the arguments only reranking reads: left out where nothing reranks.
RERANKED = ", reranked by a cross-encoder"
RERANK_ONLY = ("rerank", "rerank_top_k", "min_score", "deadline_ms")


def at_home(request: Arguments, scope: Scope, limits: LimitSettings) -> Arguments:
    """``request`` in the namespace of a token held to one, where it names none: that is where such a
    token's memories are, and 'default' would be refused. Checked again, as the caller could have sent it."""
    if scope.home is None or "namespace" in request.model_fields_set:
        return request
    given = request.model_dump(exclude_unset=True, by_alias=True)
    return type(request).model_validate({**given, "namespace": scope.home}, context={LIMITS: limits})


def install_tools(server: CheckedServer, memory: MemoryService) -> None:
    """Register the tools on ``server``, each over ``memory``."""
    limits = server.limits
    # Fixed by configuration, and what the tool list shows (without_reranker): read once, not per search.
    reranks = memory.reranks

    @server.checked_tool(RememberArguments, annotations=WRITE)
    async def remember(ctx: Context, request: RememberArguments) -> RememberResponse:
        """Store what is worth knowing later (decisions and why, facts, preferences, what was said), one
        self-contained memory each, for any agent to `search`. `text` or a batch `memories` (top-level
        fields fill items' unset ones). The same text in a namespace is stored once: retrying is safe."""
        scope = scope_of(ctx)
        items = at_home(request, scope, limits).items
        response = await memory.remember(items, scope, field="" if request.text is not None else "memories")
        namespaces, agents = sorted({item.namespace for item in items}), sorted({item.agent or "-" for item in items})
        audit(
            "remember",
            ctx,
            scope,
            namespaces=",".join(namespaces),
            agents=",".join(agents),
            stored=response.stored,
            deduplicated=len(items) - response.stored,
        )
        return response

    @server.checked_tool(SearchArguments, annotations=READ_ONLY)
    async def search(ctx: Context, request: SearchArguments) -> SearchResponse:
        """Find memories by meaning and keywords (vectors + BM25, reranked by a cross-encoder); filters all
        must hold. `search_method` says what ran; `message` comes only when it ran otherwise than asked."""
        scope = scope_of(ctx)
        request = at_home(request, scope, limits)
        if "rerank" not in request.model_fields_set and not reranks:
            request.rerank = False  # nothing reranks here (without_reranker): not asked, so nothing to report
        response = await memory.search(request.search_request(), scope)
        return response if request.explain else response.concise(request.where.namespace)

    @server.checked_tool(RerankArguments, annotations=READ_ONLY)
    async def rerank(request: RerankArguments) -> RerankResponse:
        """Order any texts by relevance to a query with the cross-encoder, best first; each result keeps
        its input `index` (and `id`)."""
        response = await memory.rerank(request.query, request.items, top_k=request.top_k, min_score=request.min_score)
        return response if request.explain else response.concise()

    @server.checked_tool(ListArguments, annotations=READ_ONLY)
    async def list_memories(ctx: Context, request: ListArguments) -> ListResponse:
        """Page through memories with `search`'s filters; pass `next_cursor` back as `cursor`."""
        scope = scope_of(ctx)
        request = at_home(request, scope, limits)
        return await memory.list_memories(
            request.where,
            limit=request.limit,
            cursor=request.cursor,
            newest_first=request.order == "newest",
            max_chars=request.max_chars,
            scope=scope,
            when=request.when,
            tz=request.tz,
        )

    @server.checked_tool(GetArguments, annotations=READ_ONLY)
    async def get(ctx: Context, request: GetArguments) -> GetResponse:
        """Read whole memories by id."""
        return await memory.get(request.ids, max_chars=None, scope=scope_of(ctx))

    @server.checked_tool(ForgetArguments, annotations=DESTRUCTIVE)
    async def forget(ctx: Context, request: ForgetArguments) -> ForgetResponse:
        """Delete memories for good, by `ids` or by filters (all must hold); `dry_run` shows what would go."""
        scope = scope_of(ctx)
        where = None if request.ids is not None else request.where
        response = await memory.forget(
            request.ids, where, confirm=request.confirm, dry_run=request.dry_run, scope=scope
        )
        if not request.dry_run:
            removed, shown = response.removed_count, ",".join(response.ids) or "-"
            if request.ids is not None:
                audit("forget", ctx, scope, removed=removed, ids=shown, not_found=len(response.not_found))
            else:
                audit("forget", ctx, scope, by=",".join(request.filters_given), removed=removed, ids=shown)
        return response

    @server.checked_tool(UpdateArguments, annotations=DESTRUCTIVE)
    async def update(ctx: Context, request: UpdateArguments) -> UpdateResponse:
        """Correct a memory. New `text` gets a new id that `supersedes` the old one, which is gone; new tags
        or metadata keep the id."""
        scope = scope_of(ctx)
        response = await memory.update(
            request.id, text=request.text, tags=request.tags, metadata=request.new_metadata, scope=scope
        )
        audit("update", ctx, scope, id=request.id, new_id=response.id, changed=",".join(response.changed) or "-")
        return response

    @server.checked_tool(StatusArguments, annotations=READ_ONLY)
    async def status(ctx: Context, request: StatusArguments) -> StatusSummary:
        """Whether memory works, its models and counts, and what is wrong with the fix."""
        response = await memory.status(scope_of(ctx))
        return response.summary(detail=request.detail)


def without_reranker(server: CheckedServer, memory: MemoryService) -> bool:
    """The tools as far as reranking can run here: no `rerank` tool where the local cross-encoder is switched
    off (``--no-rerank``; it scores with that model alone), and where nothing reranks (no remote API either)
    a `search` described without reranking whose reranking arguments are not listed (still accepted, from a
    client holding an older list): bytes in every session's context for what could never run. Returns
    whether the `rerank` tool was taken out."""
    removed = False
    if not memory.reranker.status().enabled and server._tool_manager.get_tool("rerank") is not None:  # noqa: SLF001
        server.remove_tool("rerank")
        removed = True
    tool = server._tool_manager.get_tool("search")  # noqa: SLF001 - the registered tools
    if tool is None or memory.reranks:
        return removed
    tool.description = (tool.description or "").replace(RERANKED, "")
    properties = tool.parameters.get("properties", {})
    for name in RERANK_ONLY:
        properties.pop(name, None)
    return removed
