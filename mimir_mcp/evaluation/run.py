"""``mimir-mcp eval``: index a BEIR-format corpus through ``remember``'s code path, answer every judged
query through the ``search`` pipeline, and report nDCG@10, Recall@100, MRR@10 and median latency."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mimir_mcp.config import Settings
from mimir_mcp.evaluation.beir import Dataset, load_dataset
from mimir_mcp.evaluation.metrics import median, mrr_at_k, ndcg_at_k, recall_at_k
from mimir_mcp.memory import MemoryService
from mimir_mcp.models import MemoryInput
from mimir_mcp.search import Arm, SearchRequest
from mimir_mcp.validation import check_batch

logger = logging.getLogger(__name__)

EVAL_NAMESPACE = "eval"


@dataclass(frozen=True)
class Method:
    arms: tuple[Arm, ...]
    rerank: bool


METHODS: dict[str, Method] = {
    "bm25": Method(("bm25",), False),
    "dense": Method(("dense",), False),
    "rrf": Method(("dense", "bm25"), False),
    "rrf+rerank": Method(("dense", "bm25"), True),
}


def parse_methods(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)}")
    return names


def progress(message: str, stream: TextIO = sys.stderr) -> None:
    stream.write(f"\r{message}")
    stream.flush()


async def index_corpus(service: MemoryService, dataset: Dataset, batch_size: int) -> dict[str, list[str]]:
    """Remember every document (deduplicated like any memory); returns memory id -> document ids.

    A document longer than a memory may be (``MIMIR_LIMITS_MAX_TEXT_BYTES``) is cut to fit, as an agent
    storing it would have to, and the count is reported: one long document must not stop an evaluation.
    """
    documents = list(dataset.corpus.values())
    limit = service.settings.limits.max_text_bytes
    owners: dict[str, list[str]] = {}
    cut = 0
    started = time.perf_counter()
    for start in range(0, len(documents), batch_size):
        chunk = documents[start : start + batch_size]
        whole = [doc.memory_text for doc in chunk]
        texts = [_fit(text, limit) for text in whole]
        cut += sum(len(fitted) < len(text) for fitted, text in zip(texts, whole, strict=True))
        batch = check_batch(
            [
                MemoryInput(text=text, namespace=EVAL_NAMESPACE, source=f"{dataset.name}:{doc.id}")
                for text, doc in zip(texts, chunk, strict=True)
            ],
            service.settings.limits,
        )
        response = await service.remember(batch)
        for doc, memory_id in zip(chunk, response.ids, strict=True):
            owners.setdefault(memory_id, []).append(doc.id)
        done = start + len(chunk)
        rate = done / max(time.perf_counter() - started, 1e-9)
        progress(f"indexing {dataset.name}: {done}/{len(documents)} documents ({rate:.0f}/s)")
    sys.stderr.write("\n")
    if cut:
        sys.stderr.write(f"{cut} document(s) longer than {limit} bytes were cut to fit (MIMIR_LIMITS_MAX_TEXT_BYTES)\n")
    return owners


def _fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= limit else encoded[:limit].decode("utf-8", "ignore").rstrip()


async def evaluate_method(
    service: MemoryService,
    dataset: Dataset,
    owners: dict[str, list[str]],
    name: str,
    *,
    rerank_top_k: int,
) -> dict[str, Any]:
    method = METHODS[name]
    queries = dataset.judged_queries
    ndcg, recall, mrr, latencies = [], [], [], []
    fallbacks = 0
    for done, (query_id, query) in enumerate(queries.items(), start=1):
        request = SearchRequest(
            query=query,
            top_k=100,
            rerank=method.rerank,
            rerank_top_k=rerank_top_k,
            namespace=EVAL_NAMESPACE,
            arms=method.arms,
        )
        started = time.perf_counter()
        response = await service.search(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if method.rerank and response.search_method != "rrf_hybrid+rerank":
            fallbacks += 1
        ranking = [doc_id for hit in response.hits for doc_id in owners.get(hit.id, [])]
        relevance = dataset.qrels[query_id]
        ndcg.append(ndcg_at_k(ranking, relevance, 10))
        recall.append(recall_at_k(ranking, relevance, 100))
        mrr.append(mrr_at_k(ranking, relevance, 10))
        progress(f"{name}: {done}/{len(queries)} queries")
    sys.stderr.write("\n")
    result: dict[str, Any] = {
        "ndcg@10": round(sum(ndcg) / len(ndcg), 4) if ndcg else 0.0,
        "recall@100": round(sum(recall) / len(recall), 4) if recall else 0.0,
        "mrr@10": round(sum(mrr) / len(mrr), 4) if mrr else 0.0,
        "p50_ms": round(median(latencies), 2),
    }
    if fallbacks:
        result["not_reranked"] = fallbacks
    return result


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{report['dataset']} ({report['split']}, {report['queries']} queries, {report['documents']} documents)"]
    if "query_backend" in report:
        lines.append(f"query encoder: {report['query_backend']}")
    if "reranker_backend" in report:
        lines.append(f"reranker backend: {report['reranker_backend']}")
    if report.get("reranker_blend", 1.0) < 1.0:
        lines.append(f"rerank order: cross-encoder blended with the hybrid, weight {report['reranker_blend']:g}")
    lines.append(f"{'method':<12} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8} {'p50 ms':>9}")
    for name, figures in report["methods"].items():
        lines.append(
            f"{name:<12} {figures['ndcg@10']:>8.4f} {figures['recall@100']:>8.4f} "
            f"{figures['mrr@10']:>8.4f} {figures['p50_ms']:>9.1f}"
            + (f"  ({figures['not_reranked']} queries not reranked)" if figures.get("not_reranked") else "")
        )
    return "\n".join(lines)


async def run_eval(
    dataset_dir: Path,
    *,
    split: str = "test",
    methods: Sequence[str] = tuple(METHODS),
    reranker: str | None = None,
    data_dir: Path | None = None,
    rerank_top_k: int | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run the evaluation and return the report (the ``--json`` document plus a few descriptive keys)."""
    dataset = load_dataset(dataset_dir, split)
    base = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="mimir-eval-") as scratch:
        store = base.store.model_copy(update={"data_dir": data_dir or Path(scratch)})
        chosen = base.reranker.model_copy(update={"model": reranker}) if reranker else base.reranker
        settings = base.model_copy(update={"store": store, "reranker": chosen})
        service = MemoryService(settings)
        service.start()
        try:
            owners = await index_corpus(service, dataset, settings.limits.max_batch)
            # Latencies of every query on the same query encoder: the ONNX copy once built.
            query_backend = await service.embedder.wait_query_backend(600)
            report: dict[str, Any] = {
                "dataset": dataset.name,
                "split": split,
                "queries": len(dataset.judged_queries),
                "documents": len(dataset.corpus),
                "query_backend": query_backend,
                "methods": {},
            }
            for name in methods:
                if METHODS[name].rerank:
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
                    owners,
                    name,
                    rerank_top_k=rerank_top_k or settings.search.default_rerank_top_k,
                )
        finally:
            service.close()
    return report


def write_json(report: dict[str, Any], path: Path) -> None:
    document = {key: report[key] for key in ("dataset", "queries", "methods")}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
