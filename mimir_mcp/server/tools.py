"""The eight tools: each takes its request model (validated before it runs), calls the service with the
caller's scope, which holds the call to the namespaces its token may use, and returns the service's model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from mimir_mcp.models import (
    ForgetResponse,
    GetResponse,
    ListResponse,
    RememberResponse,
    RerankResponse,
    SearchResponse,
    StatusResponse,
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
    UpdateArguments,
)
from mimir_mcp.service.memory import MemoryService

if TYPE_CHECKING:
    from mimir_mcp.server.app import CheckedServer

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def install_tools(server: CheckedServer, memory: MemoryService) -> None:
    """Register the tools on ``server``, each over ``memory``."""

    @server.checked_tool(RememberArguments, annotations=WRITE)
    async def remember(ctx: Context, request: RememberArguments) -> RememberResponse:
        """Store one memory (`text`) or a batch (`memories`) so any agent can find it later with `search`.

        Returns the ids in input order. Storing the same text again in the same namespace is safe:
        it returns the existing id with `deduplicated: true` and stores nothing twice, so retry freely.
        With `memories`, the top-level tags/source/agent/namespace/metadata apply to every item that
        does not set its own.
        """
        scope, items = scope_of(ctx), request.items
        response = await memory.remember(items, scope, field="" if request.text is not None else "memories")
        namespaces, agents = sorted({item.namespace for item in items}), sorted({item.agent or "-" for item in items})
        audit(
            "remember",
            ctx,
            scope,
            namespaces=",".join(namespaces),
            agents=",".join(agents),
            stored=response.stored_count,
            deduplicated=response.deduplicated_count,
        )
        return response

    @server.checked_tool(SearchArguments, annotations=READ_ONLY)
    async def search(ctx: Context, request: SearchArguments) -> SearchResponse:
        """Find memories: dense vectors and BM25 keywords (plus, in a namespace holding a conversation,
        BM25 over each turn with the turn before it) fused into one ranking, then the top candidates
        reranked by a cross-encoder.

        `search_method` says what ran: `rrf_hybrid+rerank`, or `rrf_hybrid` when reranking was off or
        unavailable (the reason is in `message`; results are still returned in the hybrid's order). Each
        hit has its rank and score in every arm, the fused score (`fused_score`) and the rerank score. A
        hit's `text` is at most `max_chars` long: a longer memory shows the part that best matches the
        query, with `truncated: true` and its full length in `text_chars`.
        """
        return await memory.search(request.search_request(), scope_of(ctx))

    @server.checked_tool(RerankArguments, annotations=READ_ONLY)
    async def rerank(request: RerankArguments) -> RerankResponse:
        """Score and reorder any list of texts for a query with the cross-encoder, best first.

        Each result keeps its original `index` (and `id`, if given). If no cross-encoder is available
        this returns an error saying why and how to configure one.
        """
        return await memory.rerank(request.query, request.items, top_k=request.top_k, min_score=request.min_score)

    @server.checked_tool(ListArguments, annotations=READ_ONLY)
    async def list_memories(ctx: Context, request: ListArguments) -> ListResponse:
        """List stored memories page by page, newest first, with the same filters as `search` (and no
        scores). Pass `next_cursor` back as `cursor` for the next page; memories stored meanwhile never
        shift or repeat the pages that follow."""
        return await memory.list_memories(
            request.where,
            limit=request.limit,
            cursor=request.cursor,
            newest_first=request.order == "newest",
            max_chars=request.max_chars,
            scope=scope_of(ctx),
        )

    @server.checked_tool(GetArguments, annotations=READ_ONLY)
    async def get(ctx: Context, request: GetArguments) -> GetResponse:
        """Read memories by id, whole (no snippet); ids not stored are listed in `not_found`."""
        return await memory.get(request.ids, max_chars=None, scope=scope_of(ctx))

    @server.checked_tool(ForgetArguments, annotations=DESTRUCTIVE)
    async def forget(ctx: Context, request: ForgetArguments) -> ForgetResponse:
        """Remove memories for good: by `ids`, or every memory matching a filter (`namespace`, `tags`,
        `agent`, `metadata`, `created_after`/`created_before`; all given conditions must hold). Removed
        memories vanish from search, `list_memories`, `get` and the counts in `status`. A filter matching
        more than the threshold needs `confirm: true`; `dry_run: true` shows what would go."""
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
        """Correct a memory. Changing only `tags` or `metadata` keeps its id. Changing `text` stores the
        new text under its own content id (so remembering it again deduplicates), says which id it
        `supersedes`, and removes the old memory: search never returns the old text again."""
        scope = scope_of(ctx)
        response = await memory.update(
            request.id, text=request.text, tags=request.tags, metadata=request.new_metadata, scope=scope
        )
        audit("update", ctx, scope, id=request.id, new_id=response.id, changed=",".join(response.changed) or "-")
        return response

    @server.checked_tool(StatusArguments, annotations=READ_ONLY)
    async def status(ctx: Context, request: StatusArguments) -> StatusResponse:
        """Report whether the cross-encoder is ready (loading / ready / failed, with the error), which
        models are in use, where memories are stored, how many there are per namespace, the BM25 index,
        search timings, versions and uptime."""
        return await memory.status(scope_of(ctx))
