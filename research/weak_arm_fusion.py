"""Reproduce the weak-arm fusion tables of research/NOTES.md ("How the defaults were chosen").

One arm of the hybrid is given only 1, 2 or 3 random words of each query (the other arm keeps the
whole query), a stand-in for collections where keywords, or the embedding, carry little. Each arm's
top 100 comes from the real index (BM25: the project's index; dense: exact cosine over the stored
vectors), and the lists are fused by the policy search fuses with (``FusionPolicy``), under each
method it offers for comparison.

    mimir-mcp eval --dataset ../shared/datasets/scifact --methods bm25 --data-dir /tmp/scifact-index
    python research/weak_arm_fusion.py --data-dir /tmp/scifact-index --split test
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import chromadb
import numpy as np

from mimir_mcp.config import EmbeddingSettings, Settings
from mimir_mcp.embedding import Embedder
from mimir_mcp.evaluation.beir import load_dataset
from mimir_mcp.evaluation.metrics import ndcg_at_k
from mimir_mcp.evaluation.run import EVAL_NAMESPACE
from mimir_mcp.lexical.analysis import tokenize
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.search.policy import FusionPolicy

DEPTH = 100
# The columns: the RRF methods at their k, and the shipped z-score fusion (these tables
# measure nDCG@10).
COLUMNS = {
    "RRF k=60 equal": FusionPolicy(method="equal", rrf_k=60),
    "RRF k=10 equal": FusionPolicy(method="equal", rrf_k=10),
    "RRF k=10 score_gap": FusionPolicy(method="score_gap", rrf_k=10),
    "RRF k=10 top_z": FusionPolicy(method="top_z", rrf_k=10),
    "RRF k=10 coverage": FusionPolicy(method="coverage", rrf_k=10),
    "zscore": FusionPolicy(),
}


def fuse(
    dense: list[tuple[str, float]],
    bm25: list[tuple[str, float]],
    attainable: float,
    policy: FusionPolicy,
    cosine_spread: float | None,
) -> list[str]:
    """The two arms' lists fused as search fuses them under ``policy`` (in a namespace of this cosine spread)."""
    return [doc for doc, _ in policy.fuse({"dense": dense, "bm25": bm25}, {"bm25": attainable}, cosine_spread).order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/datasets/scifact"))
    parser.add_argument("--data-dir", type=Path, required=True, help="an index made by `mimir-mcp eval --data-dir`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, args.split)
    collection_name = Settings().store.collection
    lexical = LexicalIndex(args.data_dir / f"bm25-{collection_name}.sqlite3")
    stored = chromadb.PersistentClient(path=str(args.data_dir / "chroma")).get_collection(collection_name)
    rows = stored.get(include=["embeddings"])
    records = lexical.get(rows["ids"])
    documents = [records[memory_id].source.split(":", 1)[1] for memory_id in rows["ids"]]
    owner = {memory_id: doc for memory_id, doc in zip(rows["ids"], documents, strict=True)}
    vectors = np.asarray(rows["embeddings"], dtype=np.float32)
    stored_vectors = dict(zip(rows["ids"], vectors, strict=True))
    spread = lexical.cosine_spread(EVAL_NAMESPACE, lambda ids: {i: stored_vectors[i] for i in ids})
    embedder = Embedder(EmbeddingSettings(query_backend="torch"))
    embedder.start()
    rng = random.Random(args.seed)

    def dense_top(query: str) -> list[tuple[str, float]]:
        similarity = vectors @ embedder.encode([query])[0]
        best = np.argsort(-similarity, kind="stable")[:DEPTH]
        return [(documents[i], float(similarity[i])) for i in best]

    def bm25_top(query: str) -> list[tuple[str, float]]:
        return [(owner[hit.id], hit.score) for hit in lexical.search(query, DEPTH, namespace=EVAL_NAMESPACE)]

    def words(query: str, count: int) -> str:
        tokens = tokenize(query)
        return " ".join(rng.sample(tokens, min(count, len(tokens)))) if tokens else query

    queries = dataset.judged_queries
    # BM25's coverage is measured against the whole query even where the arm sees only some of its words:
    # the weak arm stands for a collection where the other words match nothing.
    attainable = {qid: lexical.attainable_score(query) for qid, query in queries.items()}
    full = {qid: (dense_top(query), bm25_top(query), attainable[qid]) for qid, query in queries.items()}
    variants: dict[str, dict[str, tuple[list, list, float]]] = {"full queries": full}
    for count in (3, 2, 1):
        variants[f"BM25 sees {count} word{'s' * (count > 1)}"] = {
            qid: (full[qid][0], bm25_top(words(query, count)), attainable[qid]) for qid, query in queries.items()
        }
    for count in (3, 2, 1):
        variants[f"dense sees {count} word{'s' * (count > 1)}"] = {
            qid: (
                dense_top(" ".join(rng.sample(query.split(), min(count, len(query.split()))))),
                full[qid][1],
                attainable[qid],
            )
            for qid, query in queries.items()
        }

    header = ["dense", "BM25", *COLUMNS]
    print(f"| nDCG@10, {dataset.name} {args.split} | " + " | ".join(header) + " |")
    print("| --- " * (len(header) + 1) + "|")
    for name, arms in variants.items():
        figures = []
        for pick in (lambda d, b, _: [x for x, _ in d], lambda d, b, _: [x for x, _ in b]):
            figures.append(np.mean([ndcg_at_k(pick(*arms[q]), dataset.qrels[q], 10) for q in queries]))
        for policy in COLUMNS.values():
            figures.append(np.mean([ndcg_at_k(fuse(*arms[q], policy, spread), dataset.qrels[q], 10) for q in queries]))
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in figures) + " |")
    lexical.close()


if __name__ == "__main__":
    main()
