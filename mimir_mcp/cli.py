"""Command line: parse flags into ``Settings``, set up logging on stderr, run the chosen transport."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mimir_mcp import __version__

logger = logging.getLogger("mimir_mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimir-mcp",
        description="A shared, searchable memory for AI agents over MCP (stdio, SSE or streamable HTTP).",
        epilog="Every setting can also be given as a MIMIR_* environment variable; see the README.",
    )
    parser.add_argument("--version", action="version", version=f"mimir-mcp {__version__}")
    parser.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        help="stdio for Claude Desktop (default), sse for older clients, streamable-http for many agents.",
    )
    parser.add_argument("--host", help="Interface for sse / streamable-http (default 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Port for sse / streamable-http (default 8000).")
    parser.add_argument("--data-dir", help="Folder for the embedded Chroma store and the BM25 index.")
    parser.add_argument("--embedding-model", help="sentence-transformers model name or local path.")
    parser.add_argument("--reranker-model", help="Cross-encoder model name or local path.")
    parser.add_argument("--no-rerank", action="store_true", help="Disable the cross-encoder entirely.")
    parser.add_argument("--chroma-host", help="Use a Chroma server at this host instead of the embedded store.")
    parser.add_argument("--chroma-port", type=int, help="Port of the Chroma server (default 8000).")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    parser.add_argument(
        "--print-claude-config",
        action="store_true",
        help="Print a Claude Desktop mcpServers entry with this installation's absolute path, then exit.",
    )
    return parser


def claude_config(data_dir: str | None = None) -> dict[str, Any]:
    """A Claude Desktop entry that needs nothing on PATH: the absolute path of this install's script."""
    script = Path(sys.executable).with_name("mimir-mcp")
    command, args = (str(script), []) if script.exists() else (sys.executable, ["-m", "mimir_mcp"])
    entry: dict[str, Any] = {"command": command, "args": [*args, "--transport", "stdio"]}
    if data_dir:
        entry["args"] += ["--data-dir", str(Path(data_dir).expanduser().resolve())]
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
    put("store", "data_dir", args.data_dir)
    put("store", "chroma_host", args.chroma_host)
    put("store", "chroma_port", args.chroma_port)
    put("embedding", "model", args.embedding_model)
    put("reranker", "model", args.reranker_model)
    if args.no_rerank:
        put("reranker", "enabled", False)
    return overrides


def configure_logging(level: str) -> None:
    """Everything to stderr: on stdio, stdout carries only the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "chromadb", "sentence_transformers", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def serve_http(server: Any, transport: str, host: str, port: int, log_level: str) -> None:
    """Run SSE or streamable HTTP under uvicorn with our logging (stderr), not uvicorn's (stdout)."""
    import uvicorn

    if transport == "sse":
        app = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(host=host)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level.lower())).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_claude_config:
        print(json.dumps(claude_config(args.data_dir), indent=2))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from mimir_mcp.config import Settings

    try:
        settings = Settings(**settings_overrides(args))
    except ValidationError as exc:
        print(f"mimir-mcp: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server.log_level)

    from mimir_mcp.memory import MemoryService
    from mimir_mcp.server import create_server

    service = MemoryService(settings)
    server = create_server(settings, service=service)
    transport = settings.server.transport
    logger.info(
        "mimir-mcp %s starting on %s (data: %s, reranker: %s)",
        __version__,
        transport if transport == "stdio" else f"{transport} http://{settings.server.host}:{settings.server.port}",
        settings.store.chroma_host or settings.store.data_dir,
        settings.reranker.model if settings.reranker.enabled else "disabled",
    )
    # Start loading now: the handshake does not wait for it, and the first search waits less.
    service.start()
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            serve_http(server, transport, settings.server.host, settings.server.port, settings.server.log_level)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    return 0
