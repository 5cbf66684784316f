"""Memories as MCP resources, and change notifications for them.

Clients that browse resources (the Inspector, a desktop client's attach menu) can pick a memory without
a search: ``memory://{namespace}`` is a namespace with its counts and newest memories, and
``memory://{namespace}/{id}`` one memory with its metadata, both JSON. ``resources/list`` pages through
the namespaces and then the newest memories.

A session that subscribes to a namespace's or a memory's URI is told when memories are added, updated
or forgotten there, so an agent can react to another agent's finding without polling: on a 2025-era
connection by ``resources/subscribe`` and ``notifications/resources/updated``, on a 2026-07-28 one through
the SDK's ``subscriptions/listen`` stream. Only writes made through this server process are announced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, ValidationError, model_validator

from mimir_mcp.errors import InvalidInputError, MimirError
from mimir_mcp.models import RecordFilter
from mimir_mcp.server.access import scope_of_request
from mimir_mcp.server.answers import dump_answer
from mimir_mcp.server.validation import check_id, check_namespace, refusal
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.service.scope import Scope

logger = logging.getLogger(__name__)

SCHEME = "memory://"
PAGE_SIZE = 50
NEWEST_SHOWN = 10  # newest memories listed inside a namespace resource
PREVIEW_CHARS = 80  # of a memory's text, in its resource's description
JSON = "application/json"


def _connection_key(session: Any) -> int:
    """One key per client connection: the SDK hands each request its own session proxy over it."""
    return id(getattr(session, "_connection", session))


def namespace_uri(namespace: str) -> str:
    return f"{SCHEME}{quote(namespace, safe='')}"


def memory_uri(namespace: str, memory_id: str) -> str:
    return f"{namespace_uri(namespace)}/{quote(memory_id, safe='')}"


class MemoryUri(BaseModel):
    """The request a resource URI makes: a namespace and maybe a memory, held to the tools' own rules for
    both (the same refusal, naming ``uri``)."""

    namespace: str
    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parts(cls, uri: Any) -> Any:
        if not isinstance(uri, str) or not uri.startswith(SCHEME):
            raise InvalidInputError(
                "uri", f"{uri!r} is not a memory:// URI (memory://NAMESPACE or memory://NAMESPACE/ID)"
            )
        parts = uri[len(SCHEME) :].split("/")
        if not 1 <= len(parts) <= 2 or not all(parts):  # noqa: PLR2004 - namespace, then an optional id
            raise InvalidInputError("uri", f"{uri!r} must be memory://NAMESPACE or memory://NAMESPACE/ID")
        namespace = check_namespace("uri", unquote(parts[0]))
        return {"namespace": namespace, "id": check_id("uri", unquote(parts[1])) if len(parts) == 2 else None}  # noqa: PLR2004


def parse_uri(uri: str) -> tuple[str, str | None]:
    """``(namespace, id or None)`` of a ``memory://`` URI; an ``InvalidInputError`` naming what is wrong otherwise."""
    try:
        parsed = MemoryUri.model_validate(uri)
    except ValidationError as exc:
        raise refusal(exc) from None
    return parsed.namespace, parsed.id


class MemoryResources:
    """The resource handlers of one server, and the sessions subscribed to its URIs."""

    def __init__(self, server: MCPServer, service: MemoryService) -> None:
        self._server = server
        self._service = service
        # URI -> the 2025-era subscribers: the session proxy of each subscribing request, keyed by its
        # connection (one entry per client connection). A connection that can no longer be reached is
        # dropped at the next announcement.
        self._subscribers: dict[str, dict[int, Any]] = {}

    def install(self) -> None:
        """Replace the SDK's static-resource handlers with these, and serve ``resources/subscribe``."""
        lowlevel = self._server._lowlevel_server  # noqa: SLF001 - the one place handlers are registered
        lowlevel.add_request_handler("resources/list", PaginatedRequestParams, self._list)
        lowlevel.add_request_handler("resources/templates/list", PaginatedRequestParams, self._templates)
        lowlevel.add_request_handler("resources/read", ReadResourceRequestParams, self._read)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)
        listen = lowlevel.get_request_handler("subscriptions/listen")
        if listen is not None:  # the SDK's stream, behind the same check as resources/subscribe
            lowlevel.add_request_handler(
                "subscriptions/listen", listen.params_type, self._checked_listen(listen.handler)
            )

    # -- reading ------------------------------------------------------------------------------------

    async def _templates(self, ctx: ServerRequestContext[Any], params: Any) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(
            resource_templates=[
                ResourceTemplate(
                    uri_template=f"{SCHEME}{{namespace}}/{{id}}",
                    name="memory",
                    description="One memory: its text, tags, source, agent, times and metadata (JSON).",
                    mime_type=JSON,
                ),
                ResourceTemplate(
                    uri_template=f"{SCHEME}{{namespace}}",
                    name="namespace",
                    description="A namespace: how many memories it holds and its newest ones (JSON).",
                    mime_type=JSON,
                ),
            ]
        )

    async def _list(self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListResourcesResult:
        """The namespaces the caller may read (first page), then their memories, newest first, in pages."""
        scope = scope_of_request(ctx.request)
        cursor = params.cursor if params is not None else None
        resources: list[Resource] = []
        if cursor is None:
            for namespace, count in sorted((await self._service.namespace_counts(scope)).items()):
                resources.append(
                    Resource(
                        uri=namespace_uri(namespace),
                        name=f"namespace {namespace}",
                        description=f"{count} memories",
                        mime_type=JSON,
                    )
                )
        try:
            page = await self._service.list_memories(
                RecordFilter(namespace=None),
                limit=PAGE_SIZE,
                cursor=cursor,
                newest_first=True,
                max_chars=PREVIEW_CHARS,
                scope=scope,
            )
        except MimirError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        for memory in page.memories:
            resources.append(
                Resource(
                    uri=memory_uri(memory.namespace, memory.id),
                    name=memory.text.replace("\n", " "),
                    description=f"{memory.namespace}, {memory.agent or 'no agent'}, {memory.created_at}",
                    mime_type=JSON,
                )
            )
        return ListResourcesResult(resources=resources, next_cursor=page.next_cursor)

    async def _read(self, ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> ReadResourceResult:
        uri = str(params.uri)
        scope = scope_of_request(ctx.request)
        namespace, memory_id = self._checked(uri, scope)
        if memory_id is None:
            newest = await self._service.list_memories(
                RecordFilter(namespace=namespace),
                limit=NEWEST_SHOWN,
                cursor=None,
                newest_first=True,
                max_chars=200,
                scope=scope,
            )
            body: dict[str, Any] = {
                "namespace": namespace,
                "memories": newest.total,
                "newest": [
                    {"uri": memory_uri(m.namespace, m.id), "text": m.text, "created_at": m.created_at}
                    for m in newest.memories
                ],
            }
        else:
            found = await self._service.get([memory_id], max_chars=None, scope=scope)
            memory = next((m for m in found.memories if m.namespace == namespace), None)
            if memory is None:
                raise MCPError(code=INVALID_PARAMS, message=f"uri: no memory {memory_id!r} in namespace {namespace!r}")
            body = dump_answer(memory)
        text = json.dumps(body, ensure_ascii=False)
        return ReadResourceResult(contents=[TextResourceContents(uri=uri, text=text, mime_type=JSON)])

    @staticmethod
    def _checked(uri: str, scope: Scope) -> tuple[str, str | None]:
        """The URI's namespace and id, held to the tools' rules and to the caller's scope."""
        try:
            namespace, memory_id = parse_uri(uri)
            scope.check("uri", namespace)
        except MimirError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from exc
        return namespace, memory_id

    # -- subscriptions ------------------------------------------------------------------------------

    async def _subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        self._checked(uri, scope_of_request(ctx.request))
        self._subscribers.setdefault(uri, {})[_connection_key(ctx.session)] = ctx.session
        logger.info("resources: a session subscribed to %s", uri)
        return EmptyResult()

    def _checked_listen(self, listen: Any) -> Any:
        """The SDK's ``subscriptions/listen`` handler, refusing a resource URI outside the caller's scope
        before the stream opens (a token would otherwise hear of another namespace's changes)."""

        async def checked(ctx: ServerRequestContext[Any], params: Any) -> Any:
            scope = scope_of_request(ctx.request)
            for uri in getattr(params.notifications, "resource_subscriptions", None) or ():
                self._checked(str(uri), scope)
            return await listen(ctx, params)

        return checked

    async def _unsubscribe(self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self._subscribers.get(str(params.uri), {}).pop(_connection_key(ctx.session), None)
        return EmptyResult()

    async def changed(self, memories: Iterable[tuple[str, str]]) -> None:
        """Announce that these ``(namespace, id)`` memories were added, updated or forgotten: each one's URI
        and its namespace's URI, to the sessions subscribed to them and to ``subscriptions/listen`` streams.
        A session that cannot be reached is dropped; nothing here fails the write that caused it."""
        uris: dict[str, None] = {}
        for namespace, memory_id in memories:
            uris[namespace_uri(namespace)] = None
            uris[memory_uri(namespace, memory_id)] = None
        for uri in uris:
            for key, session in list(self._subscribers.get(uri, {}).items()):
                try:
                    logger.debug("resources: telling a subscriber of %s", uri)
                    # No related request: it goes on the connection's own stream, not the writer's call.
                    await session.send_resource_updated(uri)
                except Exception:  # noqa: BLE001 - a closed or broken session must not fail the write
                    logger.info("resources: dropped a subscriber of %s that could not be reached", uri)
                    self._subscribers[uri].pop(key, None)
            try:
                await self._server._subscriptions.publish(ResourceUpdated(uri=uri))  # noqa: SLF001
            except Exception:  # noqa: BLE001 - as above
                logger.warning("resources: could not publish an update of %s", uri, exc_info=True)
