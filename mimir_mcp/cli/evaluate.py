"""The commands that measure and tune mimir-mcp on a user's own data: ``eval`` (retrieval quality),
``bench`` (speed and memory), ``stress`` (many clients at once) and ``finetune-reranker``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mimir_mcp.cli.common import LOG_LEVELS, configure_logging, positive_int, run_command


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
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS)


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
    parser.add_argument("--reranker", help="Cross-encoder name or path for hybrid+rerank (default: the configured one)")
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
    parser.add_argument(
        "--epochs",
        type=float,
        default=plan.epochs,
        help=f"passes over the training pairs; fractions allowed (default: {plan.epochs:g})",
    )
    parser.add_argument(
        "--hard-negatives",
        type=int,
        default=plan.hard_negatives,
        help=f"negatives per query mined by hybrid search (default: {plan.hard_negatives})",
    )
    parser.add_argument(
        "--random-negatives",
        type=int,
        default=plan.random_negatives,
        help=f"random negatives per query (default: {plan.random_negatives})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=plan.batch_size,
        help=f"(query, document) pairs per training step (default: {plan.batch_size})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=plan.learning_rate,
        help="peak learning rate, reached after a warm-up over the first tenth of the steps "
        f"(default: {plan.learning_rate:g})",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=plan.max_length,
        help=f"tokens per (query, document) pair (default: {plan.max_length})",
    )
    parser.add_argument("--max-queries", type=int, help="train on the first N judged queries only (smoke runs)")
    parser.add_argument(
        "--dev-fraction",
        type=float,
        default=plan.dev_fraction,
        help="share of the training queries held out to choose the blend weight saved with the model (0: none; "
        f"default: {plan.dev_fraction:g})",
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


def memory_counts(value: str) -> list[int]:
    """``1k,10k,1m`` as ``[1000, 10000, 1000000]``."""
    counts = []
    for part in value.split(","):
        number, scale = part.strip().lower(), 1
        if number[-1:] in ("k", "m"):
            number, scale = number[:-1], 1000 if number[-1] == "k" else 1_000_000
        try:
            count = int(float(number) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {part!r} (e.g. 1k,10k,100k,1m)") from None
        if count < 100:
            raise argparse.ArgumentTypeError(f"{part!r}: at least 100 memories")
        counts.append(count)
    return counts


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
    parser.add_argument("--only", help="comma list of rerank,lexical,search,remember,startup,cost")
    parser.add_argument(
        "--sizes", type=memory_counts, help="store sizes of the search rows, e.g. 1k,10k,100k,1m (default 1k,10k,100k)"
    )
    parser.add_argument(
        "--stores", type=Path, help="keep the search rows' stores here, reused next run (default: scratch)"
    )
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON to this file")
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS)
    return parser


def bench_main(argv: Sequence[str]) -> int:
    args = build_bench_parser().parse_args(argv)
    configure_logging(args.log_level)
    from mimir_mcp.evaluation.bench import format_report, run_bench

    sections = ("rerank", "lexical", "search", "remember", "startup", "cost")
    chosen = tuple(name.strip() for name in args.only.split(",")) if args.only else sections
    unknown = [name for name in chosen if name not in sections]
    if unknown:
        print(f"mimir-mcp bench: unknown section(s) {unknown}; choose from {', '.join(sections)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        report = run_bench(
            quick=args.quick,
            reranker=args.reranker,
            dataset=args.dataset,
            sections=chosen,
            store_sizes=args.sizes,
            stores=args.stores,
        )
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
    parser.add_argument(
        "--nodes",
        type=positive_int,
        default=1,
        help="servers to spread the clients over; above 1, on one `chroma run` server started for the run",
    )
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
            nodes=args.nodes,
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
