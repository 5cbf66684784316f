"""``create_server``: the MCP server, its lifespan, its tools (``tools.py``) and the memory resources.

Every call's arguments go through the tool's request model (``requests.py``) before the tool runs, and
every refusal reaches the caller in the project's words. Nothing heavy happens here: models and the store
load in the background once the server starts, so the ``initialize`` answer never waits for them.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, InputRequiredResult, ListToolsResult, PaginatedRequestParams, ToolAnnotations
from mcp_types import Tool as ListedTool
from pydantic import BaseModel, ValidationError, WithJsonSchema

from mimir_mcp import __version__
from mimir_mcp.config import LimitSettings, Settings
from mimir_mcp.errors import DiskFullError, MimirError, chroma_internal_error, free_bytes, full_disk
from mimir_mcp.server.access import scope_of_request
from mimir_mcp.server.answers import lean_schema, tool_result
from mimir_mcp.server.requests import ToolArguments
from mimir_mcp.server.resources import MemoryResources
from mimir_mcp.server.tools import install_tools, without_reranker
from mimir_mcp.server.validation import LIMITS, refusal
from mimir_mcp.service.memory import MemoryService

logger = logging.getLogger(__name__)

Tool = TypeVar("Tool", bound=Callable[..., Any])
INSTRUCTIONS = (
    "A long-term memory shared by agents: `remember` what is worth knowing later (decisions, facts, "
    "preferences, what was said), `search` it by meaning and keywords, one namespace per project."
)


def create_server(settings: Settings | None = None, *, service: MemoryService | None = None) -> MCPServer:
    """Build the server; ``service`` lets tests and embedders inject their own models and store."""
    settings = settings or Settings()
    memory = service or MemoryService(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[MemoryService]:
        # Under SSE the lifespan runs per connection; starting is idempotent and nothing is closed here,
        # because the service outlives every session. The CLI closes it when the process ends.
        memory.start()
        yield memory

    server = CheckedServer(
        settings,
        "mimir-mcp",
        memory=memory,
        title="Mimir memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.server.log_level,
    )
    install_tools(server, memory)
    chosen = settings.server.tools
    if without_reranker(server, memory) and chosen is not None and "rerank" in chosen:
        logger.warning("the rerank tool is not served: the cross-encoder is switched off (--no-rerank)")
    for tool in server._tool_manager.list_tools():  # noqa: SLF001 - the registered tools, as checked_tool reads
        if (chosen is not None and tool.name not in chosen) or (settings.server.read_only and writes(tool.annotations)):
            server.remove_tool(tool.name)
    resources = MemoryResources(server, memory)
    resources.install()
    memory.watch(resources.changed)
    return server


def writes(annotations: ToolAnnotations | None) -> bool:
    """Whether a tool changes memories: every one its annotations (tools.py) do not call read-only. What
    ``--read-only`` and a read-only token's sessions leave out."""
    return not (annotations is not None and annotations.read_only_hint)


class _Arguments(FuncMetadata):
    """A tool's arguments validated by its request model, with the configured limits as the validation context,
    instead of the SDK's model of the function's signature; the tool receives the model as ``request``."""

    request_model: Annotated[type[ToolArguments], WithJsonSchema(None)]
    limits: LimitSettings

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        # A ValidationError reaches CheckedServer.call_tool, which tells it in the project's words.
        return {"request": self.request_model.model_validate(arguments_to_validate, context={LIMITS: self.limits})}

    def convert_result(self, result: Any) -> CallToolResult | InputRequiredResult:
        # Compact, with what is unset left out (answers.py), instead of the SDK's indented dump of every field.
        return tool_result(result) if isinstance(result, BaseModel) else super().convert_result(result)


class CheckedServer(MCPServer):
    """An MCP server whose tools take their arguments through a request model, and whose refusals, Chroma
    failures and full disks are told in the project's words."""

    def __init__(self, settings: Settings, *args: Any, memory: MemoryService, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        # The service the tools call; the web page (``mimir_mcp.ui``) reads what the tools do not return.
        self.memory = memory
        # Where a write that failed for lack of space is noted for ``status`` (the service clears it when a
        # write goes through: a ``remember`` that only finds its texts stored writes nothing).
        self._board = memory.board

    @property
    def limits(self) -> LimitSettings:
        """The configured limits every request is checked against."""
        return self._settings.limits

    def checked_tool(self, arguments: type[ToolArguments], *, annotations: ToolAnnotations) -> Callable[[Tool], Tool]:
        """Register a tool ``fn(ctx, request)`` whose input schema, flat, is ``arguments``' own with the
        configured defaults and limits, and whose arguments that model validates."""

        def register(fn: Tool) -> Tool:
            configured = self._settings.server.tool_descriptions.get(fn.__name__)  # type: ignore[call-overload]
            description = configured or " ".join((fn.__doc__ or "").split())  # one line, no indentation
            self.add_tool(fn, annotations=annotations, description=description)
            tool = self._tool_manager.get_tool(fn.__name__)
            assert tool is not None
            model = arguments.for_settings(self._settings, tool.name)
            fields = {name: getattr(tool.fn_metadata, name) for name in FuncMetadata.model_fields}
            if fields["output_schema"] is not None:
                fields["output_schema"] = lean_schema(fields["output_schema"], output=True)
            tool.fn_metadata = _Arguments(**fields, request_model=model, limits=self._settings.limits)
            tool.parameters = lean_schema(model.model_json_schema(by_alias=True))
            return fn

        return register

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        # The SDK's handler, less the write tools for a read-only token's session (the service refuses its
        # writes anyway; this keeps them out of its model's context).
        listed = await super()._handle_list_tools(ctx, params)
        scope = scope_of_request(ctx.request)
        if scope.read_only:
            listed.tools = [tool for tool in listed.tools if not writes(tool.annotations)]
        if scope.home is not None:
            listed.tools = [_at_home(tool, scope.home) for tool in listed.tools]
        return listed

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            result = await super().call_tool(name, arguments, context)
        except ToolError as exc:
            full = full_disk(exc.__cause__, self._settings.store.embedded_dir)
            chroma = chroma_internal_error(exc.__cause__)
            if full is not None:
                logger.error("%s: out of disk space", name, exc_info=full)
                raise self._disk_full(name, full) from full
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
                raise ToolError(f"Error executing tool {name}: {refusal(exc.__cause__)}") from exc.__cause__
            raise
        return result

    def _disk_full(self, name: str, error: BaseException) -> DiskFullError:
        """The error a call that ran out of disk space answers with, noted for ``status`` meanwhile. The
        store is written first and the catalogue then; Chroma may also keep a failed add in its log and apply
        it once there is space. So whether the call's change was kept is unknown, and repeating it is safe:
        ``remember`` deduplicates."""
        settings = self._settings.store
        if settings.chroma_host and type(error).__module__.startswith("chromadb"):
            where = f"the Chroma server at {settings.chroma_host}:{settings.chroma_port} reports a full disk"
        else:
            free = free_bytes(settings.data_dir.expanduser())
            where = f"the disk holding the memory store ({settings.data_dir.expanduser()}) is full" + (
                "" if free is None else f": {_size(free)} free"
            )
        self._board.write_failed(f"{where}; writes fail until space is freed")
        if not self._writes(name):
            # A read writes only to take in changes the store holds and has not applied yet.
            return DiskFullError(
                f"Error executing tool {name}: {where}, and this read had changes to the store to apply first. "
                f"Free space, then repeat it. ({type(error).__name__}: {error})"
            )
        return DiskFullError(
            f"Error executing tool {name}: {where}. This call's change may or may not have been kept: once space "
            "is freed, repeat it (remember deduplicates, so nothing is stored twice). Reads (search, get, "
            "list_memories) keep working meanwhile; status shows the failure until a write succeeds. "
            f"({type(error).__name__}: {error})"
        )

    def _writes(self, name: str) -> bool:
        tool = self._tool_manager.get_tool(name)
        return tool is not None and writes(tool.annotations)


def _at_home(tool: ListedTool, home: str) -> ListedTool:
    """``tool`` as a token held to one namespace sees it: where a call names none it goes to ``home``
    (``tools.at_home``), so that is the default its schema shows, not 'default'."""
    properties = tool.input_schema.get("properties", {})
    field = properties.get("namespace")
    if not isinstance(field, dict):
        return tool
    shown = {**field, "default": home} if "default" in field else dict(field)
    if "description" in shown:
        shown["description"] = shown["description"].replace("default 'default'", f"default '{home}'")
    return tool.model_copy(
        update={"input_schema": {**tool.input_schema, "properties": {**properties, "namespace": shown}}}
    )


def _size(count: int) -> str:
    if count < 2**20:
        return f"{count / 2**10:.0f} KiB"
    return f"{count / 2**20:.0f} MiB" if count < 2**30 else f"{count / 2**30:.1f} GiB"
