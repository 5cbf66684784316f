"""``mimir-mcp eval``: index a BEIR-format corpus (or LoCoMo conversations, one namespace each) through
``remember``'s code path, answer every judged query through the ``search`` pipeline, and report nDCG@10,
Recall@5/10/50/100, MRR@10 and median latency."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import anyio.to_thread
import numpy as np

from mimir_mcp.config import Settings
from mimir_mcp.evaluation.beir import Dataset, group_by_prefix, load_dataset
from mimir_mcp.evaluation.locomo import is_locomo_folder, load_locomo
from mimir_mcp.evaluation.metrics import mean, median, mrr_at_k, ndcg_at_k, recall_at_k
from mimir_mcp.models import MemoryInput, SearchResponse
from mimir_mcp.search.policy import Arm
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.server.validation import check_batch
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.service.writes import new_record

logger = logging.getLogger(__name__)

EVAL_NAMESPACE = "eval"


@dataclass(frozen=True)
class Method:
    arms: tuple[Arm, ...]
    rerank: bool
    diversity: float = 0.0
    deadline_ms: int | None = None
    # A time phrase: none, the query's own ``when`` given apart (its ``plain`` text searched), or 'auto'.
    when: Literal["none", "given", "auto"] = "none"
    prefer_recent: float = 0.0


METHODS: dict[str, Method] = {
    "bm25": Method(("bm25",), False),
    "dense": Method(("dense",), False),
    "context": Method(("context",), False),
    "hybrid": Method(("dense", "bm25", "context"), False),
    "hybrid+rerank": Method(("dense", "bm25", "context"), True),
}
# The hybrid's name while its fusion was RRF; still read, so that older commands run as they did.
FORMER_NAMES = {"rrf": "hybrid"}


def method(name: str) -> Method:
    """A method by name: one of ``METHODS``, each with suffixes: ``+mmr0.3`` (MMR ``diversity``), ``+recent0.3``
    (``prefer_recent``), ``+when`` (each query's time phrase given as ``when``, its plain text searched),
    ``+auto`` (``when: "auto"``), and last ``@200`` (``deadline_ms`` 200)."""
    name, _, deadline = name.partition("@")
    if deadline:
        if not deadline.isdigit() or not 10 <= int(deadline) <= 600_000:
            raise KeyError(name)
        return replace(method(name), deadline_ms=int(deadline))
    first, plus, rest = name.partition("+")
    if first in FORMER_NAMES:
        name = FORMER_NAMES[first] + plus + rest
    if name in METHODS:
        return METHODS[name]
    head, plus, last = name.rpartition("+")
    if not plus or not head:
        raise KeyError(name)
    base = method(head)
    if last in ("when", "auto"):
        return replace(base, when="given" if last == "when" else "auto")
    for prefix, knob in (("mmr", "diversity"), ("recent", "prefer_recent")):
        if last.startswith(prefix):
            try:
                weight = float(last[len(prefix) :])
            except ValueError:
                break
            # MMR picks among the hybrid's hits; one arm alone has no use for it.
            if 0.0 < weight <= 1.0 and (knob != "diversity" or base.arms == METHODS["hybrid"].arms):
                return replace(base, **{knob: weight})
    raise KeyError(name)


def parse_methods(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = []
    for name in names:
        try:
            method(name)
        except KeyError:
            unknown.append(name)
    if unknown or not names:
        raise ValueError(
            f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)}, each with +mmrD (MMR "
            "diversity D, 0 < D <= 1), +recentW (prefer_recent W, 0 < W <= 1), +when (the queries' time phrases), "
            "+auto (when: auto), and last @MS for deadline_ms MS (10-600000)"
        )
    return names


DatasetFormat = Literal["auto", "beir", "locomo"]
FORMATS: tuple[DatasetFormat, ...] = ("auto", "beir", "locomo")


def open_dataset(
    folder: Path, split: str = "test", *, dataset_format: DatasetFormat = "auto", group_prefix: str | None = None
) -> tuple[Dataset, str]:
    """The dataset in ``folder`` and the format it was read as. ``auto`` reads LoCoMo when the folder
    holds conversation files (itself or in ``conversations/``) and no ``corpus.jsonl``, BEIR otherwise."""
    chosen = dataset_format
    if chosen == "auto":
        chosen = "locomo" if is_locomo_folder(folder) else "beir"
    if chosen == "locomo":
        if group_prefix is not None:
            raise ValueError("--group-by-prefix is for BEIR folders; LoCoMo is one namespace per conversation already")
        return load_locomo(folder, split), chosen
    dataset = load_dataset(folder, split)
    return (group_by_prefix(dataset, group_prefix) if group_prefix is not None else dataset), chosen


def progress(message: str, stream: TextIO = sys.stderr) -> None:
    stream.write(f"\r{message}")
    stream.flush()


@dataclass(frozen=True)
class IndexedCorpus:
    """What indexing made: memory id -> the document ids it holds, and what had to be adapted."""

    owners: dict[str, list[str]]
    cut: int = 0
    empty: int = 0


def document_namespace(dataset: Dataset, document_id: str) -> str:
    return dataset.document_groups.get(document_id, EVAL_NAMESPACE)


def query_namespace(dataset: Dataset, query_id: str) -> str:
    return dataset.query_groups.get(query_id, EVAL_NAMESPACE)


async def index_corpus(service: MemoryService, dataset: Dataset, batch_size: int) -> IndexedCorpus:
    """Remember every document (deduplicated like any memory), each in its group's namespace.

    Real corpora come as they are: a document longer than a memory may be (``MIMIR_LIMITS_MAX_TEXT_BYTES``)
    is cut to fit, as an agent storing it would have to, and an empty one (Cranfield has two) is skipped,
    as ``remember`` would refuse it; both are counted and reported, and neither stops an evaluation.
    """
    limit = service.settings.limits.max_text_bytes
    texts = {doc_id: doc.memory_text for doc_id, doc in dataset.corpus.items()}
    documents = [doc for doc in dataset.corpus.values() if texts[doc.id]]
    empty = len(dataset.corpus) - len(documents)
    owners: dict[str, list[str]] = {}
    cut = 0
    started = time.perf_counter()
    for start in range(0, len(documents), batch_size):
        chunk = documents[start : start + batch_size]
        fitted = [fit_to_bytes(texts[doc.id], limit) for doc in chunk]
        cut += sum(len(text) < len(texts[doc.id]) for text, doc in zip(fitted, chunk, strict=True))
        batch = check_batch(
            [
                MemoryInput(
                    text=text,
                    namespace=document_namespace(dataset, doc.id),
                    source=f"{dataset.name}:{doc.id}",
                    metadata=dict(doc.metadata),
                )
                for text, doc in zip(fitted, chunk, strict=True)
            ],
            service.settings.limits,
        )
        if dataset.document_times:  # each stored at its time, as ``import`` stores exported memories
            records = [
                new_record(memory, dataset.document_times.get(doc.id)) for memory, doc in zip(batch, chunk, strict=True)
            ]
            await anyio.to_thread.run_sync(service.import_records, records)
            ids = [record.id for record in records]
        else:
            ids = (await service.remember(batch)).ids
        for doc, memory_id in zip(chunk, ids, strict=True):
            owners.setdefault(memory_id, []).append(doc.id)
        done = start + len(chunk)
        rate = done / max(time.perf_counter() - started, 1e-9)
        progress(f"indexing {dataset.name}: {done}/{len(documents)} documents ({rate:.0f}/s)")
    sys.stderr.write("\n")
    if cut:
        sys.stderr.write(f"{cut} document(s) longer than {limit} bytes were cut to fit (MIMIR_LIMITS_MAX_TEXT_BYTES)\n")
    if empty:
        sys.stderr.write(f"{empty} empty document(s) were skipped (no text after cleaning)\n")
    return IndexedCorpus(owners=owners, cut=cut, empty=empty)


def fit_to_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary, as a document longer than a
    memory may be is stored (the lab's scripts cut their collections the same way)."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= limit else encoded[:limit].decode("utf-8", "ignore").rstrip()


# Figures per query, in report order; the recall cut-offs are what an agent reads (5, 10), what the
# reranker sees (50, its default depth) and what the first stage found at all (100).
RECALL_CUTOFFS = (5, 10, 50, 100)
CATEGORY_KEYS = ("recall@5", "recall@10")
NAMESPACE_KEYS = ("ndcg@10", "recall@5", "recall@10")
NAMESPACE_COLUMNS = 8  # more namespaces than this: the printed table gives the worst and best, --json all


def score_ranking(ranking: Sequence[str], relevance: dict[str, int]) -> dict[str, float]:
    figures = {"ndcg@10": ndcg_at_k(ranking, relevance, 10)}
    figures.update({f"recall@{k}": recall_at_k(ranking, relevance, k) for k in RECALL_CUTOFFS})
    figures["mrr@10"] = mrr_at_k(ranking, relevance, 10)
    return figures


async def rank_query(
    service: MemoryService,
    dataset: Dataset,
    owners: dict[str, list[str]],
    name: str,
    query_id: str,
    *,
    rerank_top_k: int,
) -> tuple[list[str], SearchResponse]:
    """The document ids ``name`` returns for one query, searched in the query's own namespace."""
    chosen = method(name)
    query, when = dataset.queries[query_id], None
    if chosen.when == "given" and query_id in dataset.query_when:
        query, when = dataset.query_plain[query_id], dataset.query_when[query_id]
    elif chosen.when == "auto":
        when = "auto"
    request = SearchRequest(
        query=query,
        top_k=100,
        rerank=chosen.rerank,
        rerank_top_k=rerank_top_k,
        namespace=query_namespace(dataset, query_id),
        arms=chosen.arms,
        diversity=chosen.diversity,
        deadline_ms=chosen.deadline_ms,
        when=when,
        tz=dataset.tz,
        prefer_recent=chosen.prefer_recent,
    )
    response = await service.search(request)
    return [doc_id for hit in response.hits for doc_id in owners.get(hit.id, [])], response


async def evaluate_method(
    service: MemoryService,
    dataset: Dataset,
    owners: dict[str, list[str]],
    name: str,
    *,
    rerank_top_k: int,
) -> dict[str, Any]:
    queries = dataset.judged_queries
    per_query: dict[str, dict[str, float]] = {}
    latencies = []
    fallbacks = 0
    for done, query_id in enumerate(queries, start=1):
        started = time.perf_counter()
        ranking, response = await rank_query(service, dataset, owners, name, query_id, rerank_top_k=rerank_top_k)
        latencies.append((time.perf_counter() - started) * 1000)
        if method(name).rerank and not (response.candidates and response.candidates.reranked):
            fallbacks += 1
        per_query[query_id] = score_ranking(ranking, dataset.qrels[query_id])
        progress(f"{name}: {done}/{len(queries)} queries")
    sys.stderr.write("\n")
    keys = ["ndcg@10", *(f"recall@{k}" for k in RECALL_CUTOFFS), "mrr@10"]
    result: dict[str, Any] = {key: round(mean([row[key] for row in per_query.values()]), 4) for key in keys}
    result["p50_ms"] = round(median(latencies), 2)
    result["p99_ms"] = round(percentile(latencies, 99), 2)
    if fallbacks:
        result["not_reranked"] = fallbacks
    if dataset.query_categories:
        result["by_category"] = by_label(per_query, dataset.query_categories, CATEGORY_KEYS)
    namespaces = {query_id: query_namespace(dataset, query_id) for query_id in per_query}
    if len(set(namespaces.values())) > 1:  # one conversation's figures can sit far from the mean
        result["by_namespace"] = by_label(per_query, namespaces, NAMESPACE_KEYS)
    return result


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (numpy's linear interpolation); 0 for no values."""
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def by_label(
    per_query: dict[str, dict[str, float]], labels: dict[str, str], keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The figures ``keys`` averaged over each label's queries (a question's category, its namespace),
    labels in natural order ("2" before "10")."""
    grouped: dict[str, list[dict[str, float]]] = {}
    for query_id, figures in per_query.items():
        grouped.setdefault(labels.get(query_id, ""), []).append(figures)
    order = sorted(grouped, key=lambda label: (not label.isdigit(), int(label) if label.isdigit() else 0, label))
    return {
        label: {
            "queries": len(grouped[label]),
            **{key: round(mean([row[key] for row in grouped[label]]), 4) for key in keys},
        }
        for label in order
    }


def format_table(report: dict[str, Any]) -> str:
    header = f"{report['dataset']} ({report['split']}, {report['queries']} queries, {report['documents']} documents"
    if report.get("empty_documents"):
        header += f", {report['empty_documents']} empty skipped"
    if report.get("namespaces"):
        header += f", {report['namespaces']} namespaces"
    lines = [header + ")"]
    if "query_backend" in report:
        lines.append(f"query encoder: {report['query_backend']}")
    if "reranker_backend" in report:
        lines.append(f"reranker backend: {report['reranker_backend']}")
    if report.get("reranker_blend", 1.0) < 1.0:
        lines.append(f"rerank order: cross-encoder blended with the hybrid, weight {report['reranker_blend']:g}")
    recalls = [f"R@{k}" for k in RECALL_CUTOFFS]
    lines.append(
        f"{'method':<12} {'nDCG@10':>8}"
        + "".join(f" {label:>7}" for label in recalls)
        + f" {'MRR@10':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for name, figures in report["methods"].items():
        lines.append(
            f"{name:<12} {figures['ndcg@10']:>8.4f}"
            + "".join(f" {figures[f'recall@{k}']:>7.4f}" for k in RECALL_CUTOFFS)
            + f" {figures['mrr@10']:>8.4f} {figures['p50_ms']:>8.1f} {figures.get('p99_ms', float('nan')):>8.1f}"
            + (f"  ({figures['not_reranked']} queries not reranked)" if figures.get("not_reranked") else "")
        )
    categorised = {
        name: figures["by_category"] for name, figures in report["methods"].items() if "by_category" in figures
    }
    if categorised:
        title = "R@5 / R@10 by question category (queries):"
        lines += label_table(title, categorised, lambda row: f"{row['recall@5']:.3f}/{row['recall@10']:.3f}", 13)
    lines.extend(namespace_lines(report))
    return "\n".join(lines)


def label_table(
    title: str, tables: dict[str, dict[str, dict[str, Any]]], cell: Callable[[dict[str, Any]], str], width: int
) -> list[str]:
    """``title``, then a row per method and a column per label (``by_label``'s), each cell ``width`` wide."""
    heads = [f"{label} ({row['queries']})" for label, row in next(iter(tables.values())).items()]
    lines = [title, f"{'':<12}" + "".join(f" {head:>{width}}" for head in heads)]
    lines += [
        f"{name:<12}" + "".join(f" {cell(row):>{width}}" for row in table.values()) for name, table in tables.items()
    ]
    return lines


def namespace_lines(report: dict[str, Any]) -> list[str]:
    """nDCG@10 / R@5 / R@10 of each namespace, per method; past ``NAMESPACE_COLUMNS`` namespaces, the
    worst and best by nDCG@10."""
    tables = {name: figures["by_namespace"] for name, figures in report["methods"].items() if "by_namespace" in figures}
    if not tables:
        return []

    def cell(row: dict[str, Any]) -> str:
        return f"{row['ndcg@10']:.3f}/{row['recall@5']:.3f}/{row['recall@10']:.3f}"

    first = next(iter(tables.values()))
    if len(first) <= NAMESPACE_COLUMNS:
        return label_table("nDCG@10 / R@5 / R@10 by namespace (queries):", tables, cell, 17)
    lines = [f"nDCG@10 / R@5 / R@10 by namespace, worst and best of {len(first)} (all in --json):"]
    for name, table in tables.items():
        ranked = sorted(table.items(), key=lambda item: item[1]["ndcg@10"])
        (low, worst), (high, best) = ranked[0], ranked[-1]
        lines.append(f"{name:<12} {low}: {cell(worst)}  {high}: {cell(best)}")
    return lines


async def run_eval(
    dataset_dir: Path,
    *,
    split: str = "test",
    methods: Sequence[str] = tuple(METHODS),
    reranker: str | None = None,
    data_dir: Path | None = None,
    rerank_top_k: int | None = None,
    settings: Settings | None = None,
    dataset_format: DatasetFormat = "auto",
    group_prefix: str | None = None,
) -> dict[str, Any]:
    """Run the evaluation and return the report (the ``--json`` document plus a few descriptive keys)."""
    dataset, read_as = open_dataset(dataset_dir, split, dataset_format=dataset_format, group_prefix=group_prefix)
    base = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="mimir-eval-") as scratch:
        # Always an embedded scratch store: a configured Chroma server is the user's memory, not a test bed.
        store = base.store.model_copy(update={"data_dir": data_dir or Path(scratch), "chroma_host": None})
        chosen = base.reranker.model_copy(update={"model": reranker}) if reranker else base.reranker
        search = base.search
        if dataset.now is not None:  # the dataset's questions were asked then
            search = search.model_copy(update={"now": datetime.fromisoformat(dataset.now), "timezone": dataset.tz})
        settings = base.model_copy(update={"store": store, "reranker": chosen, "search": search})
        service = MemoryService(settings)
        service.start()
        try:
            indexed = await index_corpus(service, dataset, settings.limits.max_batch)
            # Latencies of every query on the same query encoder: the ONNX copy once built.
            query_backend = await service.embedder.wait_query_backend(600)
            report: dict[str, Any] = {
                "dataset": dataset.name,
                "split": split,
                "queries": len(dataset.judged_queries),
                "documents": len(dataset.corpus),
                "format": read_as,
                "namespaces": len(set(dataset.document_groups.values())),
                "empty_documents": indexed.empty,
                "cut_documents": indexed.cut,
                "query_backend": query_backend,
                "methods": {},
            }
            for name in methods:
                if method(name).rerank:
                    # Every query scored by the same backend: wait for the int8 copy, not just torch.
                    report["reranker_backend"] = await service.reranker.wait_backend(3600)
                    report["reranker_blend"] = service.reranker.blend
                    reason = service.reranker.unavailable_reason()
                    if reason is not None:
                        report.setdefault("errors", {})[name] = reason
                        logger.error("skipping %s: %s", name, reason)
                        continue
                report["methods"][name] = await evaluate_method(
                    service,
                    dataset,
                    indexed.owners,
                    name,
                    rerank_top_k=rerank_top_k or settings.search.default_rerank_top_k,
                )
        finally:
            service.close()
    return report


def write_json(report: dict[str, Any], path: Path) -> None:
    keys = ("dataset", "format", "queries", "documents", "empty_documents", "cut_documents", "namespaces", "methods")
    document = {key: report[key] for key in keys}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
