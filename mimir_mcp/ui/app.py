"""The web page's HTTP side: its static files and the small JSON API they call, under ``/ui``.

Every change and every read the tools can do goes through the tools themselves (``POST /ui/api/tools/NAME``
runs the registered tool, with its request model's validation, its scope and its audit line); the API adds
only what no tool returns: who the token is, namespaces with their latest activity, live changes (server-sent
events from the same watcher as the resources' notifications), and export and import as JSON Lines.

The bearer token travels in the ``Authorization`` header (the page keeps it in the tab's session storage),
never in a cookie or a URL, so another site cannot make a browser send it; ``access.AccessGuard`` checks
Host, Origin and the token before any of this runs. Every answer forbids framing and inline script.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import LATEST_PROTOCOL_VERSION, ClientCapabilities, Implementation, InitializeRequestParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from mimir_mcp import __version__
from mimir_mcp.errors import AccessDeniedError, InvalidInputError, MimirError, NotFoundError
from mimir_mcp.models import MemoryRecord, answer_time
from mimir_mcp.server.access import UI_PATH, audit, body_limit, scope_of_request
from mimir_mcp.server.app import writes
from mimir_mcp.server.validation import check_namespace
from mimir_mcp.service.scope import Scope
from mimir_mcp.transfer import LineError, export_line, parse_line
from mimir_mcp.ui.feed import ChangeFeed

if TYPE_CHECKING:
    from mimir_mcp.config import Settings
    from mimir_mcp.server.app import CheckedServer


STATIC = Path(__file__).with_name("static")
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# No inline script or style, nothing from elsewhere, no framing, no form posts: the page's own files only.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
# Lines of a JSON Lines file the page sends per import request (it sends the file in such parts, which is
# what its progress bar counts).
IMPORT_LINES = 200
EXPORT_PAGE = 500
KEEPALIVE_SECONDS = 15.0


class PageSession:
    """What the tools read of an MCP session, for a call the page makes: its client's name, for the audit
    log. The page's calls are plain HTTP requests, with no MCP session behind them."""

    client_params = InitializeRequestParams(
        protocol_version=LATEST_PROTOCOL_VERSION,
        capabilities=ClientCapabilities(),
        client_info=Implementation(name="mimir-ui", version=__version__),
    )


async def with_headers(app: ASGIApp, scope: ASGIScope, receive: Receive, send: Send) -> None:
    """``app`` answering with ``HEADERS`` added (to its 404s too)."""

    async def sent(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *HEADERS]
        await send(message)

    await app(scope, receive, sent)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(error: BaseException) -> int:
    """403 for a namespace or write the token may not use, 404 for what is not there, else 400 (the tool
    machinery wraps a tool's own error: its cause tells)."""
    for reason in (error, error.__cause__):
        if isinstance(reason, AccessDeniedError):
            return 403
        if isinstance(reason, NotFoundError):
            return 404
    return 400


class WebPage:
    """The page and its API for ``server``: an ASGI app answering under ``UI_PATH``."""

    def __init__(self, server: CheckedServer, settings: Settings) -> None:
        self._server = server
        self._memory = server.memory
        self._settings = settings
        self.feed = ChangeFeed()
        self._memory.watch(self.feed.changed)
        api = UI_PATH + "/api"
        self._router = Router(
            routes=[
                Route(UI_PATH, self.redirect),
                Route(UI_PATH + "/", self.file),
                Route(UI_PATH + "/static/{name}", self.file),
                Route(api + "/session", self.session),
                Route(api + "/namespaces", self.namespaces),
                Route(api + "/tools/{name}", self.call, methods=["POST"]),
                Route(api + "/events", self.events),
                Route(api + "/export", self.export),
                Route(api + "/import", self.import_lines, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        await with_headers(self._router, scope, receive, send)

    def close(self) -> None:
        """End the live streams, so a server shutting down need not wait for the pages to go."""
        self.feed.close()

    # -- the page's files ----------------------------------------------------------------------------

    async def redirect(self, request: Request) -> Response:
        return Response(status_code=308, headers={"location": UI_PATH + "/"})

    async def file(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in FILES:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response((STATIC / name).read_bytes(), media_type=FILES[name])

    # -- what the page needs to know -----------------------------------------------------------------

    async def _tools(self, scope: Scope) -> list[str]:
        """The tools this caller may run: those the server exposes, less the writes for a read-only token."""
        listed = await self._server.list_tools()
        return [tool.name for tool in listed if not (scope.read_only and writes(tool.annotations))]

    async def session(self, request: Request) -> Response:
        scope = scope_of_request(request)
        tools = await self._tools(scope)
        return JSONResponse(
            {
                "token": scope.name,
                "namespaces": None if scope.namespaces is None else sorted(scope.namespaces),
                "read_only": scope.read_only,
                "tools": tools,
                # Import stores memories as remember does: where remember is not exposed, neither is it.
                "can_import": "remember" in tools,
                # Where nothing reranks (--no-rerank, no remote API) the page offers no reranking.
                "reranks": self._memory.reranks,
                "import_lines": IMPORT_LINES,
                "version": __version__,
            }
        )

    async def namespaces(self, request: Request) -> Response:
        activity = await self._memory.namespace_activity(scope_of_request(request))
        return JSONResponse(
            {
                "namespaces": [
                    {"namespace": name, "memories": count, "latest": latest and answer_time(latest)}
                    for name, (count, latest) in sorted(activity.items())
                ]
            }
        )

    # -- the tools -----------------------------------------------------------------------------------

    def _context(self, request: Request) -> Context[Any, Any]:
        """The context a tool reads its caller from: this HTTP request (the token's grant rides on it)."""
        request_context: ServerRequestContext[Any, Request] = ServerRequestContext(
            session=PageSession(),  # type: ignore[arg-type]  # only client_params is read
            lifespan_context=self._memory,
            protocol_version=LATEST_PROTOCOL_VERSION,
            method="tools/call",
            request=request,
        )
        return Context(request_context=request_context, mcp_server=self._server)

    async def call(self, request: Request) -> Response:
        """Run a tool as an agent would, with the request's JSON body as its arguments."""
        name = request.path_params["name"]
        if name not in await self._tools(scope_of_request(request)):
            return _error(404, f"no tool {name!r} here (this server or token does not offer it)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the arguments as application/json")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            arguments = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "arguments: not valid JSON")
        if not isinstance(arguments, dict):
            return _error(400, "arguments: must be a JSON object")
        try:
            result = await self._server.call_tool(name, arguments, self._context(request))
        except ToolError as exc:
            return _error(_status_of(exc), str(exc))
        return JSONResponse(getattr(result, "structured_content", None) or {})

    async def _body(self, request: Request) -> bytes | Response:
        """The body, or a 413 past the transports' own limit (read no further than that)."""
        limit = body_limit(self._settings)
        received = bytearray()
        async for chunk in request.stream():
            received += chunk
            if len(received) > limit:
                return _error(413, f"the request body is over {limit} bytes")
        return bytes(received)

    # -- live changes ----------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-sent events: a ``ready`` event, then one ``data`` line per write's changes in the token's
        namespaces, ``{"changes": [{"namespace", "id"}]}``; a comment every ``KEEPALIVE_SECONDS``."""
        scope = scope_of_request(request)

        async def stream() -> AsyncIterator[str]:
            async with self.feed.listen(scope) as changes:
                yield "event: ready\ndata: {}\n\n"
                while True:
                    batch = None
                    with anyio.move_on_after(KEEPALIVE_SECONDS):
                        try:
                            batch = await changes.receive()
                        except (anyio.EndOfStream, anyio.ClosedResourceError):
                            return
                    if batch is None:
                        yield ": keep-alive\n\n"
                    else:
                        yield f"data: {json.dumps({'changes': batch})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    # -- export and import -----------------------------------------------------------------------------

    def _namespace(self, request: Request, scope: Scope) -> str:
        namespace = request.query_params.get("namespace")
        if not namespace:
            raise InvalidInputError("namespace", "name the namespace to export")
        namespace = check_namespace("namespace", namespace)
        scope.check("namespace", namespace)
        return namespace

    async def export(self, request: Request) -> Response:
        """A namespace as JSON Lines, oldest first, as ``mimir-mcp export`` writes it."""
        scope = scope_of_request(request)
        try:
            namespace = self._namespace(request, scope)
        except MimirError as exc:
            return _error(_status_of(exc), str(exc))
        pages = self._memory.export_pages(namespace, EXPORT_PAGE)

        async def lines() -> AsyncIterator[str]:
            while (records := await anyio.to_thread.run_sync(next, pages, None)) is not None:
                for record in records:
                    yield export_line(record)

        filename = f"mimir-{namespace}.jsonl"
        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    async def import_lines(self, request: Request) -> Response:
        """Up to ``IMPORT_LINES`` lines of an export, stored as they are (ids already stored are skipped).
        ``X-First-Line`` numbers the first line, so a refusal names the line of the whole file. Every line is
        checked before any is stored."""
        scope = scope_of_request(request)
        if "remember" not in await self._tools(scope):
            return _error(403, "import: this server or token may not store memories")
        try:
            first = int(request.headers.get("x-first-line", "1"))
        except ValueError:
            return _error(400, "X-First-Line: must be a whole number")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the file is not UTF-8 text")
        lines = text.splitlines()
        if len(lines) > IMPORT_LINES:
            return _error(413, f"send at most {IMPORT_LINES} lines per request, got {len(lines)}")
        records: list[MemoryRecord] = []
        try:
            for number, line in enumerate(lines, start=first):
                if line.strip():
                    records.append(parse_line(line, number, self._settings.limits))
                    scope.check(f"line {number}: namespace", records[-1].namespace)
        except LineError as exc:
            return _error(400, str(exc))
        except MimirError as exc:
            return _error(_status_of(exc), str(exc))
        try:
            new_ids = await self._memory.import_memories(records, scope)
        except MimirError as exc:
            return _error(_status_of(exc), str(exc))
        stored = len(new_ids)
        namespaces = ",".join(sorted({record.namespace for record in records})) or "-"
        audit("import", self._context(request), scope, namespaces=namespaces, stored=stored, read=len(records))
        return JSONResponse({"read": len(records), "stored": stored, "already_present": len(records) - stored})
