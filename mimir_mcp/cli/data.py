"""The commands on the store itself: ``export`` and ``import`` (JSON Lines, every field kept) and
``reindex`` (re-embed every memory with another model)."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mimir_mcp.cli.common import (
    LOG_LEVELS,
    configure_logging,
    memories,
    positive_int,
    progress_bar,
    quiet_model_loading,
    run_command,
)
from mimir_mcp.cli.serve import build_parser, settings_overrides

if TYPE_CHECKING:
    from mimir_mcp.config import Settings
    from mimir_mcp.service.memory import MemoryService


def add_store_arguments(parser: argparse.ArgumentParser, *, embedding_help: str) -> None:
    """The flags of ``serve`` that choose the store, for commands that work on the store alone."""
    parser.add_argument("--data-dir", help="Folder of the embedded Chroma store and the BM25 index.")
    parser.add_argument("--chroma-host", help="Use a Chroma server at this host instead of the embedded store.")
    parser.add_argument("--chroma-port", type=int, help="Port of the Chroma server (default 8000).")
    parser.add_argument("--embedding-model", help=embedding_help)
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="(default: WARNING)")


def store_command_settings(args: argparse.Namespace, prog: str, *, existing: bool = False) -> Settings | None:
    """``Settings`` from this command's flags, read like serve's (any serve flag the command lacks is
    unset), without the cross-encoder or the ONNX query graph, which only searching needs. ``None``
    after printing why when they are invalid, or with ``existing`` when there is no store to read
    (``missing_store``)."""
    from pydantic import ValidationError

    from mimir_mcp.config import Settings

    given = argparse.Namespace(**{**vars(build_parser().parse_args([])), **vars(args)})
    try:
        settings = Settings(**settings_overrides(given))
    except ValidationError as exc:
        print(f"{prog}: invalid settings:\n{exc}", file=sys.stderr)
        return None
    missing = missing_store(settings) if existing else None
    if missing is not None:
        print(f"{prog}: {missing}", file=sys.stderr)
        return None
    return settings.model_copy(update={"reranker": settings.reranker.model_copy(update={"enabled": False})})


def command_service(settings: Settings) -> MemoryService:
    """The service of a one-off command: no reranker, and the bi-encoder from its recorded ONNX copy where
    there is one, else torch, building none (``Embedder(build_copy=False)``)."""
    from mimir_mcp.embedding import Embedder
    from mimir_mcp.service.memory import MemoryService

    embedder = Embedder(
        settings.embedding,
        cache_dir=settings.model_cache_dir,
        onnx_cache_dir=settings.store.onnx_cache_dir.expanduser(),
        build_copy=False,
    )
    return MemoryService(settings, embedder=embedder)


def missing_store(settings: Settings) -> str | None:
    """Why there is no embedded store to read at the configured data dir, or ``None`` when there is one
    (or the store is a Chroma server). Opening a folder that holds none would create an empty store there,
    and a mistyped ``--data-dir`` would pass for a store with no memories."""
    from mimir_mcp.store.chroma import embedded_path

    if settings.store.chroma_host:
        return None
    data_dir = Path(settings.store.data_dir).expanduser()
    if not data_dir.is_dir():
        return f"no data dir at {data_dir} (check --data-dir or MIMIR_STORE_DATA_DIR)"
    if not embedded_path(settings.store).is_dir():
        return f"no memory store in {data_dir} (it has no chroma folder; check --data-dir or MIMIR_STORE_DATA_DIR)"
    return None


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimir-mcp export",
        description="Write every memory as JSON Lines, oldest first: one memory per line with every field "
        "(id, text, namespace, tags, source, agent, created_at, metadata, updated_at, supersedes). "
        "`mimir-mcp import` reads it back.",
    )
    add_store_arguments(
        parser, embedding_help="The model the store was written with, if not the configured one (nothing is embedded)."
    )
    parser.add_argument("--namespace", help="Export only this namespace (default: all of them).")
    parser.add_argument("--out", type=Path, help="File to write (default: stdout); written whole or not at all.")
    return parser


def export_main(argv: Sequence[str]) -> int:
    args = build_export_parser().parse_args(argv)
    settings = store_command_settings(args, "mimir-mcp export", existing=True)
    if settings is None:
        return 2
    configure_logging(args.log_level or "WARNING")
    from mimir_mcp.errors import MimirError
    from mimir_mcp.transfer import export_memories

    service = command_service(settings)
    target: Path | None = args.out
    partial = None if target is None else target.with_name(target.name + ".partial")
    try:
        if partial is None:
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(encoding="utf-8")
            count = export_memories(service, sys.stdout, namespace=args.namespace)
            sys.stdout.flush()
        else:
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                count = export_memories(service, out, namespace=args.namespace)
            os.replace(partial, partial.with_name(partial.name.removesuffix(".partial")))
    except BrokenPipeError:
        # The reader stopped early (`| head`): point stdout at /dev/null so the exit flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (MimirError, OSError, ValueError) as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        print(f"mimir-mcp export: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()
    scope = f"namespace {args.namespace!r}" if args.namespace is not None else "all namespaces"
    print(f"mimir-mcp export: {memories(count)} exported ({scope}) to {args.out or 'stdout'}", file=sys.stderr)
    return 0


def build_import_parser() -> argparse.ArgumentParser:
    from mimir_mcp.transfer import DEFAULT_IMPORT_BATCH

    parser = argparse.ArgumentParser(
        prog="mimir-mcp import",
        description="Store the memories of a `mimir-mcp export` file exactly as exported (ids, times and "
        "all); memories already stored are skipped. A bad line stops the import: the batches before it "
        "are stored, nothing of its own batch or after it is.",
    )
    parser.add_argument("file", help="JSON Lines file written by `mimir-mcp export`; - reads stdin.")
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_IMPORT_BATCH,
        help=f"memories checked, embedded and stored together (default: {DEFAULT_IMPORT_BATCH})",
    )
    add_store_arguments(parser, embedding_help="sentence-transformers model name or local path.")
    return parser


def import_main(argv: Sequence[str]) -> int:
    args = build_import_parser().parse_args(argv)
    settings = store_command_settings(args, "mimir-mcp import")
    if settings is None:
        return 2
    configure_logging(args.log_level or "WARNING")
    quiet_model_loading()
    from mimir_mcp.errors import MimirError
    from mimir_mcp.transfer import ImportFileError, import_memories

    if args.file == "-":
        source, total = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig"), None
    else:
        try:
            with open(args.file, "rb") as counting:
                total = sum(1 for line in counting if line.strip())
            source = open(args.file, encoding="utf-8-sig")  # closed by the with below
        except OSError as exc:
            print(f"mimir-mcp import: {exc}", file=sys.stderr)
            return 2
    service = command_service(settings)
    try:
        with source, progress_bar("import", total) as advance:
            summary = import_memories(service, source, batch=args.batch, on_progress=advance)
    except (ImportFileError, UnicodeDecodeError) as exc:
        print(f"mimir-mcp import: {args.file}: {exc}", file=sys.stderr)
        return 2
    except (MimirError, OSError, ValueError) as exc:
        print(f"mimir-mcp import: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()
    print(
        f"mimir-mcp import: read {summary.read}, stored {summary.stored}, already present {summary.already_present}",
        file=sys.stderr,
    )
    return 0


def build_reindex_parser() -> argparse.ArgumentParser:
    from mimir_mcp.reindex import DEFAULT_REINDEX_BATCH, EVAL_METHODS

    parser = argparse.ArgumentParser(
        prog="mimir-mcp reindex",
        description="Re-embed every memory with another embedding model into a new collection, then put it "
        "in the old one's place. Resumable: run it again after an interruption and it embeds only what is "
        "missing. Stop the servers using the store first.",
    )
    add_store_arguments(
        parser, embedding_help="Model to re-embed with (default: the configured one, MIMIR_EMBEDDING_MODEL)."
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_REINDEX_BATCH,
        help=f"memories embedded and stored together (default: {DEFAULT_REINDEX_BATCH})",
    )
    parser.add_argument("--force", action="store_true", help="Re-embed even when the store already records this model.")
    parser.add_argument(
        "--eval",
        type=Path,
        metavar="DATASET",
        help=f"BEIR folder: print nDCG@10 ({', '.join(EVAL_METHODS)}) of the old and the new model on it, "
        "each indexed in a scratch store",
    )
    return parser


def reindex_main(argv: Sequence[str]) -> int:
    args = build_reindex_parser().parse_args(argv)
    settings = store_command_settings(args, "mimir-mcp reindex", existing=True)
    if settings is None:
        return 2
    configure_logging(args.log_level or "WARNING")
    quiet_model_loading()
    from mimir_mcp.errors import MimirError
    from mimir_mcp.reindex import Reindexer, evaluate_model

    reindexer = Reindexer(settings, batch_size=args.batch, force=args.force)
    try:
        plan = reindexer.plan()
    except (MimirError, OSError, ValueError) as exc:
        print(f"mimir-mcp reindex: {exc}", file=sys.stderr)
        return 1
    if plan.up_to_date:
        print(
            f"{plan.collection}: already holds {plan.model} vectors ({memories(plan.memories)}); nothing to do "
            "(--force re-embeds them anyway)"
        )
        return 0
    figures: dict[str, dict[str, float] | None] = {}
    previous = plan.previous_model
    if args.eval and previous:
        figures[previous] = run_command(
            "mimir-mcp reindex --eval", lambda: evaluate_model(args.eval, settings, previous)
        )
    started = time.perf_counter()
    try:
        with progress_bar("reindex", plan.to_embed) as advance:
            report = reindexer.run(on_progress=advance)
    except (MimirError, OSError, RuntimeError, ValueError) as exc:
        print(
            f"mimir-mcp reindex: {exc}\nThe store still holds its old vectors; run reindex again to resume.",
            file=sys.stderr,
        )
        return 1
    took = time.perf_counter() - started
    resumed = f", {report.resumed} kept from an interrupted run" if report.resumed else ""
    print(
        f"{report.collection}: {memories(report.memories)} re-embedded with {report.model} "
        f"({report.dimension} dimensions; was {report.previous_model}): {report.embedded} embedded{resumed}, "
        f"took {took:.0f} s"
    )
    if args.eval:
        figures[report.model] = run_command(
            "mimir-mcp reindex --eval", lambda: evaluate_model(args.eval, settings, report.model)
        )
        for model, ndcg in figures.items():
            if ndcg is not None:
                print(
                    f"nDCG@10 on {args.eval.name} with {model}: " + ", ".join(f"{k} {v:.4f}" for k, v in ndcg.items())
                )
    return 0
