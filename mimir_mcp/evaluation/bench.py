"""``mimir-mcp bench``: speed and memory figures, each beside its baseline measured in the same run on
the same inputs and weights. Figures, not assertions: docs/quality-and-speed.md's speed table comes from here."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mimir_mcp.config import RerankerSettings, Settings
from mimir_mcp.evaluation.run import percentile, progress
from mimir_mcp.lexical.analysis import tokenize
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import MemoryInput, MemoryRecord

SAMPLE_SENTENCES = [
    "Agents store decisions, facts and notes so that other agents can find them later.",
    "The deployment pipeline runs unit tests, builds containers and promotes them to staging.",
    "Retrieval combines dense vectors with keyword matching and reranks the best candidates.",
    "Customers asked for an export to spreadsheets and a weekly summary by email.",
    "The database migration adds an index on the created_at column of the events table.",
    "Latency rose after the serializer change; rolling it back restored the median.",
    "The on-call engineer rotates every Monday and keeps the incident log up to date.",
    "Cross-encoders read the query and the document together and score their relevance.",
    "Memory usage stays below one gigabyte with both models loaded on a laptop.",
    "A shared memory lets a planner, a researcher and a writer coordinate without repeating work.",
]


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Milliseconds one call took, and what it returned."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


class Corpus:
    """Benchmark text: SciFact abstracts and claims when the dataset is there, else sample sentences."""

    def __init__(self, dataset: Path | None, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.documents: list[str] = []
        self.queries: list[str] = []
        if dataset is not None and (dataset / "corpus.jsonl").exists():
            from mimir_mcp.evaluation.beir import load_dataset

            loaded = load_dataset(dataset, "test")
            self.documents = [doc.memory_text for doc in loaded.corpus.values()]
            self.queries = list(loaded.judged_queries.values())
            self.source = f"{loaded.name} ({len(self.documents)} abstracts)"
        else:
            self.documents = [" ".join(self.random.sample(SAMPLE_SENTENCES, 6)) + f" Note {i}." for i in range(2000)]
            self.queries = [sentence.split(",")[0] for sentence in SAMPLE_SENTENCES]
            self.source = "bundled sample text"

    def documents_for(self, count: int) -> list[str]:
        """``count`` documents; beyond the real ones, new documents mixed from their sentences."""
        if count <= len(self.documents):
            return self.documents[:count]
        sentences = [s for doc in self.documents for s in doc.split(". ") if len(s) > 20]
        extra = [". ".join(self.random.sample(sentences, 8)) for _ in range(count - len(self.documents))]
        return self.documents + extra


# -- rerank ---------------------------------------------------------------------------------------


def default_reranker_path(folder: Path) -> Path:
    """A MiniLM-L6-H384 cross-encoder (the architecture of ms-marco-MiniLM-L-6-v2): the bundled backbone
    with a one-logit head. Latency is real; its scores are not meaningful."""
    from mimir_mcp.evaluation.finetune import DEFAULT_BASE, load_base

    model = load_base(DEFAULT_BASE, max_length=512)
    model.save_pretrained(str(folder))
    return folder


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic  # pyright: ignore[reportAttributeAccessIssue] - scipy's result type
    return float(tau) if tau == tau else 1.0  # constant inputs give NaN: identical orders


def bench_rerank(model_path: Path, corpus: Corpus, sizes: list[int], repeats: int, onnx_cache: Path) -> dict[str, Any]:
    """The server's reranker (its default backend and batch size) against stock ``CrossEncoder.predict``
    (batch 32) on the same model and texts."""
    import anyio
    from sentence_transformers import CrossEncoder

    from mimir_mcp.rerank import LocalCrossEncoder

    ours = LocalCrossEncoder(RerankerSettings(model=str(model_path)), onnx_cache_dir=onnx_cache)
    ours.start()
    backend = anyio.run(ours.wait_backend, 900)
    stock = CrossEncoder(str(model_path), device="cpu")
    results: dict[str, Any] = {"backend": backend, "batch_size": ours.status().batch_size}
    for size in sizes:
        query = corpus.queries[0]
        texts = corpus.documents[:size]
        pairs = [(query, text) for text in texts]
        our_ms, stock_ms = [], []
        our_scores: list[float] = []
        stock_scores: list[float] = []
        for repeat in range(repeats):  # interleaved, so drift in machine load hits both alike
            elapsed, our_scores = timed(anyio.run, ours.score, query, texts)
            our_ms.append(elapsed)
            elapsed, raw = timed(stock.predict, pairs, batch_size=32, show_progress_bar=False)
            stock_ms.append(elapsed)
            stock_scores = [float(x) for x in raw]
            progress(f"rerank {size}: {repeat + 1}/{repeats}")
        top_ours = set(np.argsort(our_scores)[::-1][:10])
        top_stock = set(np.argsort(stock_scores)[::-1][:10])
        p50, stock_p50 = statistics.median(our_ms), statistics.median(stock_ms)
        results[str(size)] = {
            "p50_ms": round(p50, 1),
            "p95_ms": round(percentile(our_ms, 95), 1),
            "stock_p50_ms": round(stock_p50, 1),
            "speedup": round(stock_p50 / p50, 2),
            "top10_agreement": round(len(top_ours & top_stock) / min(10, size), 3),
            "kendall_tau": round(kendall_tau(our_scores, stock_scores), 4),
        }
    sys.stderr.write("\n")
    return results


# -- lexical --------------------------------------------------------------------------------------


def top_100(reference: Any, tokens: list[str]) -> list[int]:
    """rank_bm25's query path: score every document, keep the best 100."""
    return list(np.argsort(reference.get_scores(tokens))[::-1][:100])


def bench_lexical(corpus: Corpus, sizes: list[int], queries: int, folder: Path) -> dict[str, Any]:
    try:
        from rank_bm25 import BM25Okapi
    except ImportError as exc:
        raise ValueError("the lexical benchmark needs rank_bm25: pip install -e '.[bench]'") from exc

    results: dict[str, Any] = {}
    for size in sizes:
        documents = corpus.documents_for(size)
        index = LexicalIndex(folder / f"bm25-{size}.sqlite3")
        started = time.perf_counter()
        for start in range(0, size, 1000):
            index.add(
                MemoryRecord(id=f"d{i}", text=text, namespace="bench", created_at="")
                for i, text in enumerate(documents[start : start + 1000], start=start)
            )
        add_per_s = size / (time.perf_counter() - started)
        reference = BM25Okapi([tokenize(text) for text in documents])
        ours_ms, reference_ms = [], []
        for query in corpus.queries[:queries]:
            elapsed, _ = timed(index.search, query, 100)
            ours_ms.append(elapsed)
            elapsed, _ = timed(top_100, reference, tokenize(query))
            reference_ms.append(elapsed)
        index.close()
        p50, reference_p50 = statistics.median(ours_ms), statistics.median(reference_ms)
        results[str(size)] = {
            "p50_ms": round(p50, 2),
            "rank_bm25_p50_ms": round(reference_p50, 2),
            "speedup": round(reference_p50 / p50, 1),
            "queries_per_s": round(1000 / p50, 1),
            "adds_per_s": round(add_per_s, 1),
        }
        progress(f"lexical {size}: done")
    sys.stderr.write("\n")
    return results


# -- search ---------------------------------------------------------------------------------------


async def timed_search(service: Any, query: str, rerank: bool) -> float:
    from mimir_mcp.search.request import SearchRequest

    started = time.perf_counter()
    response = await service.search(SearchRequest(query=query, top_k=10, rerank=rerank, rerank_top_k=50))
    if rerank and response.search_method != "hybrid+rerank":
        raise RuntimeError(f"bench expected a reranked search: {response.message}")
    return (time.perf_counter() - started) * 1000


async def search_series(
    service: Any, plain_queries: list[str], reranked_queries: list[str]
) -> tuple[list[float], list[float], list[float], str, str]:
    """One event loop for every search, as in the server, after the fast backends are built. The reranked
    searches run twice: cold, then again with their 50 candidates' scores in the score cache (warm)."""
    reranker_backend = await service.reranker.wait_backend(600)
    query_backend = await service.embedder.wait_query_backend(600)
    await timed_search(service, "warm up", False)
    plain = [await timed_search(service, query, False) for query in plain_queries]
    reranked = [await timed_search(service, query, True) for query in reranked_queries]
    warm = [await timed_search(service, query, True) for query in reranked_queries]
    return plain, reranked, warm, reranker_backend, query_backend


FORGET_NAMESPACE = "bench-forget"


def bench_search(corpus: Corpus, sizes: list[int], queries: int, model_path: Path, folder: Path) -> dict[str, Any]:
    """Whole searches through the service. Memories are inserted directly with random unit vectors:
    embedding cost is measured on its own (``remember``); here it is the query path that counts. A store
    left in ``folder`` by an earlier run is reused: only the memories it lacks are inserted (a million take
    about an hour here)."""
    import anyio

    from mimir_mcp.service.memory import MemoryService
    from mimir_mcp.transfer import export_memories

    results: dict[str, Any] = {}
    generator = np.random.default_rng(3)
    for size in sizes:
        # A tenth of the memories, at most 1,000, in a namespace of their own: the restart forgets them.
        forget_count = min(1000, size // 10)
        # Dicts, not settings objects: pydantic-settings merges them with the MIMIR_* environment.
        settings = Settings(
            store={"data_dir": folder / f"search-{size}"},  # pyright: ignore[reportArgumentType]
            reranker={"model": str(model_path)},  # pyright: ignore[reportArgumentType]
        )
        service = MemoryService(settings)
        service.start()
        store, lexical = service.storage()
        documents = corpus.documents_for(size)
        created = datetime.now(UTC).isoformat()
        for start in range(0, size, 1000):
            held = lexical.holding([f"m{i}" for i in range(start, min(start + 1000, size))])
            records = [
                MemoryRecord(
                    id=f"m{i}",
                    text=text,
                    namespace=FORGET_NAMESPACE if i < forget_count else "default",
                    created_at=created,
                )
                for i, text in enumerate(documents[start : start + 1000], start=start)
                if f"m{i}" not in held
            ]
            if not records:
                continue
            vectors = generator.standard_normal((len(records), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with store.writing():  # as a server writes: its restart below finds the index files vouched for
                store.add(records, vectors)
                lexical.add(records)
            progress(f"search {size}: inserted {start + len(records)}")
        plain, reranked, warm, reranker_backend, query_backend = anyio.run(
            search_series, service, corpus.queries[:queries], corpus.queries[: max(queries // 4, 2)]
        )
        # Every memory as `mimir-mcp export` writes it, to nowhere: the lines' making and the pages' reading.
        with open(os.devnull, "w", encoding="utf-8") as sink:
            export_ms, exported = timed(export_memories, service, sink)
        service.close()
        data_dir = folder / f"search-{size}"
        results[str(size)] = {
            "export_per_s": round(exported / (export_ms / 1000)),
            "p50_ms": round(statistics.median(plain), 1),
            "p95_ms": round(percentile(plain, 95), 1),
            "rerank50_p50_ms": round(statistics.median(reranked), 1),
            "rerank50_warm_p50_ms": round(statistics.median(warm), 1),
            "disk_bytes_per_memory": round(disk_bytes(data_dir) / size),
            **bench_restart(data_dir, model_path, FORGET_NAMESPACE, forget_count),
        }
        results["query_backend"] = query_backend
        results["reranker_backend"] = reranker_backend
        sys.stderr.write("\n")
    return results


# -- remember -------------------------------------------------------------------------------------


def bench_remember(corpus: Corpus, count: int, folder: Path) -> dict[str, Any]:
    import anyio

    from mimir_mcp.server.validation import check_batch
    from mimir_mcp.service.memory import MemoryService
    from mimir_mcp.store.chroma import ChromaStore
    from mimir_mcp.store.chroma_records import make_embedding_function

    documents = corpus.documents_for(count)
    settings = Settings(
        store={"data_dir": folder / "remember"},  # pyright: ignore[reportArgumentType] - merged with the environment
        reranker={"enabled": False},  # pyright: ignore[reportArgumentType]
    )
    service = MemoryService(settings)
    service.start()
    anyio.run(service.embedder.ready)
    service.storage()
    started = time.perf_counter()
    done = 0
    for start in range(0, count, settings.limits.max_batch):
        chunk = [MemoryInput(text=text) for text in documents[start : start + settings.limits.max_batch]]
        anyio.run(service.remember, check_batch(chunk, settings.limits))
        done += len(chunk)
    per_s = done / (time.perf_counter() - started)

    # The naive loop: one encode and one collection.add per memory.
    naive_store = ChromaStore(
        settings.store.model_copy(update={"data_dir": folder / "naive", "collection": "naive"}),
        make_embedding_function(service.embedder.encode, settings.embedding.model),
    )
    started = time.perf_counter()
    for i, text in enumerate(documents):
        vector = service.embedder.encode([text])
        naive_store.add([MemoryRecord(id=f"n{i}", text=text, namespace="default", created_at="")], vector)
    naive_per_s = len(documents) / (time.perf_counter() - started)
    service.close()
    return {"per_s": round(per_s, 1), "naive_per_s": round(naive_per_s, 1), "count": count}


# -- startup and memory ---------------------------------------------------------------------------


class StdioServer:
    """``python -m mimir_mcp`` over stdio, spawned as Claude Desktop does, spoken to in JSON-RPC lines."""

    def __init__(self, data_dir: Path, model_path: Path) -> None:
        env = dict(os.environ)
        env.update(
            {
                "MIMIR_STORE_DATA_DIR": str(data_dir),
                "MIMIR_RERANKER_MODEL": str(model_path),
                "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
            }
        )
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mimir_mcp", "--transport", "stdio", "--log-level", "WARNING"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self.next_id = 1

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        message_id, self.next_id = self.next_id, self.next_id + 1
        stdin.write(json.dumps({"jsonrpc": "2.0", "id": message_id, "method": method, "params": params}) + "\n")
        stdin.flush()
        while True:
            reply = json.loads(stdout.readline())
            if reply.get("id") == message_id:
                return reply

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply = self.request("tools/call", {"name": tool, "arguments": arguments})
        result = reply.get("result") or {}
        if "error" in reply or result.get("isError"):
            raise RuntimeError(f"{tool} failed: {json.dumps(reply)[:500]}")
        return result["structuredContent"]

    def initialize(self) -> float:
        """The handshake; returns the milliseconds since spawn."""
        from mcp_types.version import LATEST_HANDSHAKE_VERSION

        self.request(
            "initialize",
            {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": {"name": "bench"}},
        )
        elapsed = (time.perf_counter() - self.started) * 1000
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        self.process.stdin.flush()
        return elapsed

    def since_spawn_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024

    def first_searches(self, query: str) -> tuple[float, bool, float]:
        """Search at once, then again until the dense arm answers too: the milliseconds since spawn to the
        first answer, whether that one had the dense arm, and to the first with it (a store that opens its
        catalogue first answers from keywords while Chroma opens)."""
        arguments = {"query": query, "rerank": False, "explain": True}
        first = self.call("search", arguments)
        first_ms = hybrid_ms = self.since_spawn_ms()
        answer = first
        while not answer["candidates"]["dense"]:
            time.sleep(0.05)
            answer = self.call("search", arguments)
            hybrid_ms = self.since_spawn_ms()
        return first_ms, bool(first["candidates"]["dense"]), hybrid_ms

    def stop(self) -> None:
        """End the session as a client does (stdin closed): the server closes its store cleanly."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=300)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def models_ready_rss(server: StdioServer) -> float:
    """The server's RSS once both models and their ONNX copies are loaded (or have failed to)."""
    while True:
        content = server.call("status", {"detail": True})["detail"]
        loading = content["reranker"]["state"] == "loading" or content["embedding"]["state"] == "loading"
        # RSS counts the ONNX copies too: wait until both are built (or have failed).
        building = "building" in content["reranker"]["backend"] + content["embedding"]["query_backend"]
        if not loading and not building:
            break
        time.sleep(0.2)
    server.call("search", {"query": "warm both models"})
    return server.rss_mb()


def bench_startup(model_path: Path, folder: Path, texts: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Spawn the server over stdio as Claude Desktop does, twice: on a new data dir (time the handshake and
    the first search; store ``texts``; RSS with both models ready), then again on it after a clean stop (the
    handshake, the first answer, the first with the dense arm, RSS)."""
    data_dir = folder / "startup"
    first = StdioServer(data_dir, model_path)
    try:
        empty_initialize_ms = first.initialize()
        first.call("search", {"query": "first search", "rerank": False})
        empty_search_ms = first.since_spawn_ms()
        first.call("remember", {"memories": [{"text": text} for text in texts]})
        empty_rss = models_ready_rss(first)
        first.stop()
    finally:
        first.close()
    server = StdioServer(data_dir, model_path)
    try:
        initialize_ms = server.initialize()
        first_search_ms, first_dense, hybrid_ms = server.first_searches("first search")
        rss = models_ready_rss(server)
    finally:
        server.close()
    return (
        {
            "empty_initialize_ms": round(empty_initialize_ms, 1),
            "empty_first_search_ms": round(empty_search_ms, 1),
            "empty_rss_mb": round(empty_rss, 1),
            "initialize_ms": round(initialize_ms, 1),
            "first_search_ms": round(first_search_ms, 1),
            "first_search_dense": first_dense,
            "first_hybrid_ms": round(hybrid_ms, 1),
            "memories": len(texts),
        },
        {"rss_mb": round(rss, 1)},
    )


def bench_restart(data_dir: Path, model_path: Path, forget_namespace: str, forget_count: int) -> dict[str, Any]:
    """A server started again on a full store: spawn to the first answer (from the catalogue while the store
    opens) and to the first with the dense arm (the store open, its vector index loaded), RSS then, a page of
    ``list_memories``, and a ``forget`` by a filter matching ``forget_count``."""
    server = StdioServer(data_dir, model_path)
    try:
        server.initialize()
        first_search_ms, _, hybrid_ms = server.first_searches("first search after a restart")
        rss = server.rss_mb()
        started = time.perf_counter()
        page = server.call("list_memories", {"limit": 50})
        list_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        forgotten = server.call("forget", {"namespace": forget_namespace, "confirm": True})
        forget_ms = (time.perf_counter() - started) * 1000
    finally:
        server.close()
    if len(page["memories"]) != 50 or forgotten["removed_count"] != forget_count:
        raise RuntimeError(f"restart: listed {len(page['memories'])}, forgot {forgotten['forgotten']}")
    return {
        "restart_first_search_ms": round(first_search_ms, 1),
        "restart_hybrid_ms": round(hybrid_ms, 1),
        "restart_rss_mb": round(rss, 1),
        "list_page_ms": round(list_ms, 1),
        "forget_ms": round(forget_ms, 1),
        "forgotten": forget_count,
    }


def disk_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# -- the command ----------------------------------------------------------------------------------


def run_bench(
    *,
    quick: bool = False,
    reranker: str | None = None,
    dataset: Path | None = None,
    sections: tuple[str, ...] = ("rerank", "lexical", "search", "remember", "startup", "cost"),
    store_sizes: list[int] | None = None,
    stores: Path | None = None,
) -> dict[str, Any]:
    corpus = Corpus(dataset)
    report: dict[str, Any] = {"quick": quick, "corpus": corpus.source, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mimir-bench-") as scratch:
        folder = Path(scratch)
        model_path = Path(reranker) if reranker else default_reranker_path(folder / "cross-encoder")
        report["reranker"] = str(reranker or "MiniLM-L6-H384 one-logit head on the bundled backbone")
        if "rerank" in sections:
            sizes, repeats = ([20, 50, 100], 5) if not quick else ([20], 2)
            # The server's ONNX cache: a copy the server or an earlier run built is timed, not built again.
            report["rerank"] = bench_rerank(model_path, corpus, sizes, repeats, Settings().store.onnx_cache_dir)
        if "lexical" in sections:
            sizes = [10_000, 100_000] if not quick else [1_000]
            report["lexical"] = bench_lexical(corpus, sizes, 50 if not quick else 5, folder)
        if "search" in sections:
            counts = store_sizes or ([1_000, 10_000, 100_000] if not quick else [500])
            report["search"] = bench_search(corpus, counts, 40 if not quick else 4, model_path, stores or folder)
        if "remember" in sections:
            report["remember"] = bench_remember(corpus, 512 if not quick else 32, folder)
        if "startup" in sections:
            report["startup"], report["memory"] = bench_startup(model_path, folder, corpus.documents_for(100))
        if "cost" in sections:
            from mimir_mcp.evaluation.cost import bench_cost

            report["cost"] = bench_cost(model_path, folder)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"mimir-mcp bench ({'quick, ' if report['quick'] else ''}{report['corpus']}, {report['cpu_count']} CPUs)"]
    lines.append(f"reranker: {report['reranker']}")
    if "rerank" in report:
        lines.append(f"reranker backend: {report['rerank']['backend']}, batch {report['rerank']['batch_size']}")
    for size, row in report.get("rerank", {}).items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"rerank {size:>6}: {row['p50_ms']:>8.1f} ms p50 vs stock {row['stock_p50_ms']:>8.1f} ms "
            f"= {row['speedup']:.2f}x  top-10 agreement {row['top10_agreement']:.2f}  tau {row['kendall_tau']:.3f}"
        )
    for size, row in report.get("lexical", {}).items():
        lines.append(
            f"bm25   {size:>6}: {row['p50_ms']:>8.2f} ms p50 vs rank_bm25 {row['rank_bm25_p50_ms']:>8.2f} ms "
            f"= {row['speedup']:.1f}x  ({row['queries_per_s']:.0f} queries/s, {row['adds_per_s']:.0f} adds/s)"
        )
    if "search" in report:
        lines.append(
            f"search backends: queries embedded by {report['search']['query_backend']}, "
            f"reranked by {report['search']['reranker_backend']}"
        )
    for size, row in report.get("search", {}).items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"search {size:>6}: {row['p50_ms']:>8.1f} ms p50, {row['p95_ms']:.1f} ms p95; "
            f"with rerank of 50: {row['rerank50_p50_ms']:.1f} ms p50, the same again (score cache) "
            f"{row['rerank50_warm_p50_ms']:.1f} ms p50"
        )
        lines.append(
            f"  restarted on it: first answer {row['restart_first_search_ms'] / 1000:.1f} s after spawn, with "
            f"the dense arm {row['restart_hybrid_ms'] / 1000:.1f} s; {row['restart_rss_mb']:.0f} MB RSS; "
            f"list_memories page {row['list_page_ms']:.0f} ms; forget "
            f"{row['forgotten']} by filter {row['forget_ms']:.0f} ms; disk {row['disk_bytes_per_memory'] / 1024:.1f} "
            f"KB per memory; export {row['export_per_s']:,} memories/s"
        )
    if "remember" in report:
        row = report["remember"]
        lines.append(f"remember: {row['per_s']:.1f}/s vs naive encode+add loop {row['naive_per_s']:.1f}/s")
    if "startup" in report:
        row = report["startup"]
        lines.append(
            f"startup, a new data dir: initialize {row['empty_initialize_ms']:.0f} ms after spawn, first search "
            f"{row['empty_first_search_ms']:.0f} ms, {row['empty_rss_mb']:.0f} MB RSS with both models ready"
        )
        lines.append(
            f"startup again, {row['memories']} memories: initialize {row['initialize_ms']:.0f} ms after "
            f"spawn, first answer {row['first_search_ms']:.0f} ms"
            f"{'' if row['first_search_dense'] else ' (keywords)'}, with the dense arm {row['first_hybrid_ms']:.0f} ms"
        )
        lines.append(f"memory: {report['memory']['rss_mb']:.0f} MB RSS with both models loaded, started again")
    if "cost" in report:
        from mimir_mcp.evaluation.cost import Cost, format_costs

        lines.append("what an agent is sent:")
        lines.append(format_costs([Cost.model_validate(row) for row in report["cost"]]))
    return "\n".join(lines)
