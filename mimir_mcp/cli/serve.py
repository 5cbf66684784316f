"""``mimir-mcp [serve]``: the server's flags read into ``Settings``, the stdio or HTTP transport run, and the
Claude Desktop entry that starts this install (``--print-claude-config``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimir_mcp import __version__
from mimir_mcp.cli.common import LOG_LEVELS, configure_logging, end_process
from mimir_mcp.cli.main import COMMANDS

if TYPE_CHECKING:
    from mimir_mcp.config import Settings
    from mimir_mcp.server.access import Token

logger = logging.getLogger("mimir_mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimir-mcp",
        description="A shared, searchable memory for AI agents over MCP (stdio, SSE or streamable HTTP).",
        epilog="Every setting can also be given as a MIMIR_* environment variable; see docs/configuration.md. "
        "Other commands: " + ", ".join(f"`mimir-mcp {name} --help`" for name in COMMANDS) + ".",
    )
    parser.add_argument("--version", action="version", version=f"mimir-mcp {__version__}")
    parser.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        help="stdio for Claude Desktop (default), sse for older clients, streamable-http for many agents.",
    )
    parser.add_argument("--host", help="Interface for sse / streamable-http (default 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Port for sse / streamable-http (default 8000).")
    parser.add_argument(
        "--auth-tokens-file",
        help="JSON or TOML file of bearer tokens and their namespaces (or MIMIR_AUTH_TOKENS; see docs/operations.md).",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="Serve HTTP on a non-loopback --host without tokens (refused otherwise; logs a warning).",
    )
    parser.add_argument(
        "--allowed-hosts", help="Comma list of Host headers clients use, e.g. mimir.lan:8000 (others get 421)."
    )
    parser.add_argument("--allowed-origins", help="Comma list of browser Origins allowed (others get 403).")
    parser.add_argument("--max-body-bytes", type=int, help="Largest HTTP request body (larger: 413).")
    parser.add_argument("--no-ui", action="store_true", help="Serve no web page at /ui on the HTTP transports.")
    parser.add_argument("--data-dir", help="Folder for the embedded Chroma store and the BM25 index.")
    parser.add_argument("--embedding-model", help="sentence-transformers model name or local path.")
    parser.add_argument("--reranker-model", help="Cross-encoder model name or local path.")
    parser.add_argument("--no-rerank", action="store_true", help="Disable the cross-encoder entirely.")
    parser.add_argument("--tools", help="Comma list of the tools to expose, e.g. search,get,status (default: all).")
    parser.add_argument(
        "--read-only", action="store_true", help="Expose no tool that writes (remember, update, forget)."
    )
    parser.add_argument("--chroma-host", help="Use a Chroma server at this host instead of the embedded store.")
    parser.add_argument("--chroma-port", type=int, help="Port of the Chroma server (default 8000).")
    parser.add_argument("--log-level", choices=LOG_LEVELS)
    parser.add_argument(
        "--print-claude-config",
        action="store_true",
        help="Print a Claude Desktop mcpServers entry with this installation's absolute path, then exit.",
    )
    return parser


# Environment variables a stdio server started by a client should keep: Claude Desktop starts it with
# little of the user's environment, so settings made there would silently not apply.
CARRIED_ENV_PREFIXES = ("MIMIR_", "HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_")
# Flags that only mean something for the HTTP transports (a client-started stdio server has none of them).
HTTP_ONLY_FLAGS = frozenset(
    {"--host", "--port", "--auth-tokens-file", "--allowed-hosts", "--allowed-origins", "--max-body-bytes", "--no-ui"}
)
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
PATH_FLAGS = frozenset({"--data-dir", "--embedding-model", "--reranker-model"})


def claude_config(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Claude Desktop ``mcpServers`` entry that starts this install as it was started now: the absolute
    path of this install's script (nothing needed on PATH), every flag given (``argv``) but the HTTP-only
    ones, local paths made absolute, and the environment's ``MIMIR_*`` and Hugging Face variables."""
    script = Path(sys.executable).with_name("mimir-mcp")
    command, prefix = (str(script), []) if script.exists() else (sys.executable, ["-m", "mimir_mcp"])
    args: list[str] = ["--transport", "stdio"]
    given = list(argv)
    while given:
        flag, _, inline = given.pop(0).partition("=")
        if flag in ("--print-claude-config", "--allow-unauthenticated"):
            continue
        takes_value = flag not in ("--no-rerank", "--no-ui", "--read-only")
        value = inline or (given.pop(0) if takes_value and given else "")
        if flag == "--transport" or flag in HTTP_ONLY_FLAGS:
            continue
        if flag in PATH_FLAGS and (flag == "--data-dir" or Path(value).expanduser().exists()):
            value = str(Path(value).expanduser().resolve())  # a hub model name stays a name
        args += [flag, value] if takes_value else [flag]
    entry: dict[str, Any] = {"command": command, "args": [*prefix, *args]}
    carried = {
        name: value
        for name, value in sorted((os.environ if environ is None else environ).items())
        if name.startswith(CARRIED_ENV_PREFIXES)
    }
    secret = sorted(name for name in carried if any(word in name for word in SECRET_WORDS))
    if secret:
        print(f"mimir-mcp: left out of the config (secrets, add them yourself): {', '.join(secret)}", file=sys.stderr)
    env = {name: value for name, value in carried.items() if name not in secret}
    if env:
        entry["env"] = env
    return {"mcpServers": {"mimir": entry}}


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags actually given, nested as in ``Settings``, so environment variables fill the rest."""
    overrides: dict[str, dict[str, Any]] = {}

    def put(group: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(group, {})[key] = value

    put("server", "transport", args.transport)
    put("server", "host", args.host)
    put("server", "port", args.port)
    put("server", "log_level", args.log_level)
    put("server", "allowed_hosts", args.allowed_hosts)
    put("server", "allowed_origins", args.allowed_origins)
    put("server", "max_body_bytes", args.max_body_bytes)
    if args.no_ui:
        put("server", "ui", False)
    put("auth", "tokens_file", args.auth_tokens_file)
    if args.allow_unauthenticated:
        put("auth", "allow_unauthenticated", True)
    put("store", "data_dir", args.data_dir)
    put("store", "chroma_host", args.chroma_host)
    put("store", "chroma_port", args.chroma_port)
    put("embedding", "model", args.embedding_model)
    put("reranker", "model", args.reranker_model)
    if args.no_rerank:
        put("reranker", "enabled", False)
    put("server", "tools", args.tools)
    if args.read_only:
        put("server", "read_only", True)
    return overrides


def without_query_string(record: logging.LogRecord) -> bool:
    """An access log line without the request's query string: a client may put a secret there."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
        record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
    return True


def serve_http(server: Any, settings: Settings, tokens: list[Token]) -> None:
    """Run SSE or streamable HTTP under uvicorn, behind the Host/Origin, token and body-size checks of
    ``access.http_app``, with our logging (stderr), not uvicorn's (stdout)."""
    import uvicorn

    from mimir_mcp.server.access import WILDCARD_BINDS, http_app, transport_security

    security = transport_security(settings)
    logger.info(
        "HTTP access: %s; Host allowed: %s",
        f"{len(tokens)} bearer tokens ({', '.join(token.name for token in tokens)})" if tokens else "no tokens",
        ", ".join(security.allowed_hosts),
    )
    if settings.server.host in WILDCARD_BINDS and settings.server.allowed_hosts is None:
        logger.warning(
            "listening on every interface, but only loopback Host names are allowed: clients that reach this "
            "server by another name or address get 421; list those in MIMIR_SERVER_ALLOWED_HOSTS (--allowed-hosts)"
        )
    host, port = settings.server.host, settings.server.port
    app = http_app(server, settings, tokens)
    logging.getLogger("uvicorn.access").addFilter(without_query_string)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=settings.server.log_level.lower())

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            app.close()  # uvicorn waits for open responses: the page's live streams end first
            await super().shutdown(sockets)

    Server(config).run()


def serve_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.print_claude_config:
        print(json.dumps(claude_config(argv), indent=2))
        return 0

    from pydantic import ValidationError

    from mimir_mcp.config import Settings, unknown_environment

    try:
        settings = Settings(**settings_overrides(args))
    except ValidationError as exc:
        print(f"mimir-mcp: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server.log_level)
    for variable in unknown_environment(os.environ):
        logger.warning("%s names no setting and is ignored (docs/configuration.md lists them)", variable)

    from mimir_mcp.server.access import ExposureError, TokenConfigError, check_exposure, load_tokens

    try:
        tokens = load_tokens(settings)
        warning = check_exposure(settings, tokens)
    except (TokenConfigError, ExposureError) as exc:
        print(f"mimir-mcp: {exc}", file=sys.stderr)
        return 2
    if warning:
        logger.warning(warning)
    if tokens and settings.server.transport == "stdio":
        logger.info("bearer tokens apply to the HTTP transports only; stdio serves whoever started the process")

    from mimir_mcp.background import enable_heap_freezing
    from mimir_mcp.server.app import create_server
    from mimir_mcp.service.memory import MemoryService

    service = MemoryService(settings)
    server = create_server(settings, service=service)
    transport = settings.server.transport
    # From the "starting" line on, a Ctrl+C or SIGTERM however early runs the cleanup below and exits 0.
    try:
        # SIGTERM stops the server as Ctrl+C does: uvicorn catches both and, after its own shutdown, raises
        # the signal again under the handler it found, which is this one, so the cleanup runs either way.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # Ignored and blocked signals are inherited across exec: a command started with `&` by a script gets
        # SIGINT ignored (so did the test runner, and the server under it never heard its SIGINT), and a
        # parent may have blocked it. A server asked to stop must hear both, whatever it inherited.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        logger.info(
            "mimir-mcp %s starting on %s (data: %s, reranker: %s)",
            __version__,
            transport if transport == "stdio" else f"{transport} http://{settings.server.host}:{settings.server.port}",
            settings.store.chroma_host or settings.store.data_dir,
            settings.reranker.model if settings.reranker.enabled else "disabled",
        )
        enable_heap_freezing()
        # Start loading now: the handshake does not wait for it, and the first search waits less.
        service.start()
        if transport == "stdio":
            from mimir_mcp.server.stdio import serve_stdio

            serve_stdio(server)
        else:
            serve_http(server, settings, tokens)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        logger.info("mimir-mcp stopped")
    end_process(0)
