"""Command line: parse flags into ``Settings``, set up logging on stderr, run the chosen transport."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from mimir_mcp import __version__

if TYPE_CHECKING:
    from mimir_mcp.server.access import Token
    from mimir_mcp.config import Settings

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
        help="JSON or TOML file of bearer tokens and their namespaces "
        "(or MIMIR_AUTH_TOKENS; see docs/configuration.md).",
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


# Environment variables a stdio server started by a client should keep: Claude Desktop starts it with
# little of the user's environment, so settings made there would silently not apply.
CARRIED_ENV_PREFIXES = ("MIMIR_", "HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_")
# Flags that only mean something for the HTTP transports (a client-started stdio server has none of them).
HTTP_ONLY_FLAGS = frozenset(
    {"--host", "--port", "--auth-tokens-file", "--allowed-hosts", "--allowed-origins", "--max-body-bytes"}
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
        takes_value = flag not in ("--no-rerank",)
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
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=settings.server.log_level.lower())
    uvicorn.Server(config).run()


def add_dataset_arguments(
    parser: argparse.ArgumentParser,
    *,
    split: str,
    split_help: str,
    dataset_help: str = "Folder with corpus.jsonl, queries.jsonl, qrels/",
) -> None:
    """The arguments eval and finetune-reranker share."""
    parser.add_argument("--dataset", required=True, type=Path, help=dataset_help)
    parser.add_argument("--split", default=split, help=f"{split_help} (default: {split})")
    parser.add_argument("--data-dir", type=Path, help="Keep the corpus index here (default: a temporary folder)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])


def run_command(prog: str, main: Callable[[], Awaitable[Any]]) -> Any | None:
    """Run an async command; a bad dataset or argument is one clear line on stderr, not a traceback."""
    import anyio

    try:
        return anyio.run(main)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def build_eval_parser() -> argparse.ArgumentParser:
    from mimir_mcp.evaluation.run import FORMATS, METHODS

    parser = argparse.ArgumentParser(
        prog="mimir-mcp eval",
        description="Measure retrieval quality on a BEIR-format folder, or on LoCoMo conversations (one "
        "namespace per conversation), through the real remember/search path.",
    )
    add_dataset_arguments(
        parser,
        split="test",
        split_help="qrels split to judge",
        dataset_help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or LoCoMo folder (conversation *.json files)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="how to read --dataset; auto: locomo when it holds *.json (or conversations/*.json) and no "
        "corpus.jsonl, else beir",
    )
    parser.add_argument(
        "--group-by-prefix",
        metavar="SEP",
        help="BEIR only: one namespace per group, the part of each document and query id before the first SEP; "
        "each query is searched in its own group",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--reranker", help="Cross-encoder name or path for rrf+rerank (default: the configured one)")
    parser.add_argument("--rerank-top-k", type=int, help="Candidates reranked per query (default: the server's)")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON to this file")
    return parser


def eval_main(argv: Sequence[str]) -> int:
    args = build_eval_parser().parse_args(argv)
    configure_logging(args.log_level)
    from mimir_mcp.evaluation.run import format_table, parse_methods, run_eval, write_json

    try:
        methods = parse_methods(args.methods)
    except ValueError as exc:
        print(f"mimir-mcp eval: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = run_command(
        "mimir-mcp eval",
        lambda: run_eval(
            args.dataset,
            split=args.split,
            methods=methods,
            reranker=args.reranker,
            data_dir=args.data_dir,
            rerank_top_k=args.rerank_top_k,
            dataset_format=args.format,
            group_prefix=args.group_by_prefix,
        ),
    )
    if report is None:
        return 2
    print(format_table(report))
    for name, reason in report.get("errors", {}).items():
        print(f"{name}: not run: {reason}")
    print(f"took {time.perf_counter() - started:.0f} s")
    if args.json:
        write_json(report, args.json)
    return 1 if report.get("errors") else 0


def build_finetune_parser() -> argparse.ArgumentParser:
    from mimir_mcp.evaluation.finetune import DEFAULT_BASE, TrainingPlan

    plan = TrainingPlan()
    parser = argparse.ArgumentParser(
        prog="mimir-mcp finetune-reranker",
        description="Fine-tune a cross-encoder on BEIR-format qrels, with hard negatives mined by hybrid search.",
    )
    add_dataset_arguments(parser, split="train", split_help="qrels split to train on")
    parser.add_argument("--eval-split", default="test", help="held-out split evaluated at the end ('' to skip)")
    parser.add_argument("--output", required=True, type=Path, help="Folder to save the trained cross-encoder in")
    parser.add_argument("--base", default=DEFAULT_BASE, help="Cross-encoder or BERT-like model to start from")
    parser.add_argument("--epochs", type=float, default=plan.epochs)
    parser.add_argument("--hard-negatives", type=int, default=plan.hard_negatives, help="mined by hybrid search")
    parser.add_argument("--random-negatives", type=int, default=plan.random_negatives, help="random, per query")
    parser.add_argument("--batch-size", type=int, default=plan.batch_size)
    parser.add_argument("--learning-rate", type=float, default=plan.learning_rate)
    parser.add_argument("--max-length", type=int, default=plan.max_length, help="tokens per (query, document) pair")
    parser.add_argument("--max-queries", type=int, help="train on the first N judged queries only (smoke runs)")
    parser.add_argument(
        "--dev-fraction",
        type=float,
        default=plan.dev_fraction,
        help="share of the training queries held out to choose the blend weight saved with the model (0: none)",
    )
    return parser


def finetune_main(argv: Sequence[str]) -> int:
    args = build_finetune_parser().parse_args(argv)
    configure_logging(args.log_level)
    from mimir_mcp.evaluation.finetune import TrainingPlan, run_finetune
    from mimir_mcp.evaluation.run import format_table

    plan = TrainingPlan(
        epochs=args.epochs,
        hard_negatives=args.hard_negatives,
        random_negatives=args.random_negatives,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        max_queries=args.max_queries,
        dev_fraction=args.dev_fraction,
    )
    started = time.perf_counter()
    report = run_command(
        "mimir-mcp finetune-reranker",
        lambda: run_finetune(
            args.dataset,
            args.output,
            split=args.split,
            eval_split=args.eval_split or None,
            base=args.base,
            plan=plan,
            data_dir=args.data_dir,
        ),
    )
    if report is None:
        return 2
    print(
        f"saved {args.output} ({report['train_queries']} training queries, {report['pairs']} pairs, "
        f"{report['positives']} positive)"
    )
    if "blend" in report:
        blend = report["blend"]
        table = blend["dev_ndcg@10"]
        chosen = table[f"{blend['blend']:g}"]
        print(
            f"blend weight {blend['blend']:g} chosen on {blend['dev_queries']} held-out queries "
            f"(dev nDCG@10: hybrid alone {table['0']:.4f}, cross-encoder alone {table['1']:.4f}, "
            f"chosen {chosen:.4f})"
        )
    print("timings (s): " + ", ".join(f"{key} {value}" for key, value in report["timings"].items()))
    if "evaluation" in report:
        print(format_table(report["evaluation"]))
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


def build_bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimir-mcp bench",
        description="Speed and memory figures, each beside its baseline measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test)")
    parser.add_argument("--reranker", help="cross-encoder folder to time (default: MiniLM-L6 + one-logit head)")
    parser.add_argument(
        "--dataset", type=Path, default=Path("../shared/datasets/scifact"), help="text to use (BEIR folder)"
    )
    parser.add_argument("--only", help="comma list of rerank,lexical,search,remember,startup")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON to this file")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    return parser


def bench_main(argv: Sequence[str]) -> int:
    args = build_bench_parser().parse_args(argv)
    configure_logging(args.log_level)
    from mimir_mcp.evaluation.bench import format_report, run_bench

    sections = ("rerank", "lexical", "search", "remember", "startup")
    chosen = tuple(name.strip() for name in args.only.split(",")) if args.only else sections
    unknown = [name for name in chosen if name not in sections]
    if unknown:
        print(f"mimir-mcp bench: unknown section(s) {unknown}; choose from {', '.join(sections)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        report = run_bench(quick=args.quick, reranker=args.reranker, dataset=args.dataset, sections=chosen)
    except ValueError as exc:
        print(f"mimir-mcp bench: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(f"took {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def build_stress_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimir-mcp stress",
        description="Many clients at once against a real server over streamable HTTP: throughput, latency per "
        "operation, errors, RSS, how reranked searches were served, and lost writes.",
    )
    parser.add_argument("--clients", type=positive_int, default=16, help="concurrent MCP sessions (default 16)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--memories", type=positive_int, default=1000, help="memories stored first (default 1000)")
    parser.add_argument("--reranker", help="cross-encoder folder (default: MiniLM-L6 + one-logit head)")
    parser.add_argument(
        "--dataset", type=Path, default=Path("../shared/datasets/scifact"), help="text to use (BEIR folder)"
    )
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON to this file")
    return parser


def stress_main(argv: Sequence[str]) -> int:
    args = build_stress_parser().parse_args(argv)
    configure_logging("WARNING")
    from mimir_mcp.evaluation.stress import format_report, run_stress

    try:
        report = run_stress(
            clients=args.clients,
            duration=args.duration,
            memories=args.memories,
            reranker=args.reranker,
            dataset=args.dataset,
            say=lambda message: print(f"stress: {message}", file=sys.stderr, flush=True),
        )
    except (RuntimeError, ValueError) as exc:
        print(f"mimir-mcp stress: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


# -- export, import, reindex: commands on the store itself ------------------------------------------


def memories(count: int) -> str:
    return f"{count} memory" if count == 1 else f"{count} memories"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_store_arguments(parser: argparse.ArgumentParser, *, embedding_help: str) -> None:
    """The flags of ``serve`` that choose the store, for commands that work on the store alone."""
    parser.add_argument("--data-dir", help="Folder of the embedded Chroma store and the BM25 index.")
    parser.add_argument("--chroma-host", help="Use a Chroma server at this host instead of the embedded store.")
    parser.add_argument("--chroma-port", type=int, help="Port of the Chroma server (default 8000).")
    parser.add_argument("--embedding-model", help=embedding_help)
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="(default: WARNING)"
    )


def store_command_settings(args: argparse.Namespace, prog: str) -> Settings | None:
    """``Settings`` from this command's flags, read like serve's (any serve flag the command lacks is
    unset), without the cross-encoder or the ONNX query graph, which only searching needs. ``None``
    after printing why when they are invalid."""
    from mimir_mcp.config import Settings

    given = argparse.Namespace(**{**vars(build_parser().parse_args([])), **vars(args)})
    try:
        settings = Settings(**settings_overrides(given))
    except ValidationError as exc:
        print(f"{prog}: invalid settings:\n{exc}", file=sys.stderr)
        return None
    return settings.model_copy(
        update={
            "reranker": settings.reranker.model_copy(update={"enabled": False}),
            "embedding": settings.embedding.model_copy(update={"query_backend": "torch"}),
        }
    )


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
    settings = store_command_settings(args, "mimir-mcp export")
    if settings is None:
        return 2
    configure_logging(args.log_level or "WARNING")
    from mimir_mcp.errors import MimirError
    from mimir_mcp.service.memory import MemoryService
    from mimir_mcp.transfer import export_memories

    service = MemoryService(settings)
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
    import io

    from tqdm import tqdm

    from mimir_mcp.errors import MimirError
    from mimir_mcp.service.memory import MemoryService
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
    service = MemoryService(settings)
    try:
        with source, tqdm(total=total, desc="import", unit="memory", file=sys.stderr) as bar:
            summary = import_memories(service, source, batch=args.batch, on_progress=bar.update)
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
    settings = store_command_settings(args, "mimir-mcp reindex")
    if settings is None:
        return 2
    configure_logging(args.log_level or "WARNING")
    from tqdm import tqdm

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
        with tqdm(total=plan.to_embed, desc="reindex", unit="memory", file=sys.stderr) as bar:
            report = reindexer.run(on_progress=bar.update)
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve_main(argv)


def serve_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.print_claude_config:
        print(json.dumps(claude_config(argv), indent=2))
        return 0

    from mimir_mcp.config import Settings

    try:
        settings = Settings(**settings_overrides(args))
    except ValidationError as exc:
        print(f"mimir-mcp: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server.log_level)

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
    from mimir_mcp.service.memory import MemoryService
    from mimir_mcp.server.app import create_server

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


def end_process(status: int) -> NoReturn:
    """End a server process here, without the interpreter's teardown.

    Stopped within seconds of its start, a server still has daemon threads loading models (importing torch,
    opening onnxruntime sessions); the interpreter's exit then finalizes those libraries under them and
    crashed in native code (a segmentation fault, exit status -11, seen in CI right after "mimir-mcp
    stopped"). By now the store is closed and every acknowledged write is as durable as after a SIGKILL,
    which the durability tests check, so nothing is left that the teardown would do for the user."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a client that hung up, a stream already closed
            pass
    os._exit(status)


# The commands beside serving (``mimir-mcp`` alone or ``mimir-mcp serve``), each with its own parser.
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "eval": eval_main,
    "finetune-reranker": finetune_main,
    "bench": bench_main,
    "stress": stress_main,
    "export": export_main,
    "import": import_main,
    "reindex": reindex_main,
}
