"""Reproduce the weak-arm fusion tables of the docs/retrieval-quality.md ("How the defaults were chosen").

One arm of the hybrid is given only 1, 2 or 3 random words of each query (the other arm keeps the
whole query), a stand-in for collections where keywords, or the embedding, carry little. Each arm's
top 100 comes from the real index (BM25: the project's index; dense: exact cosine over the stored
vectors), and the lists are fused with the project's own ``arm_weights`` and ``rrf``.

    mimir-mcp eval --dataset ../shared/datasets/scifact --methods bm25 --data-dir /tmp/scifact-index
    python examples/weak_arm_fusion.py --data-dir /tmp/scifact-index --split test
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
from mimir_mcp.search.fusion import arm_coverage, arm_weights, rrf, z_fusion

DEPTH = 100
COLUMNS = [("equal", 60), ("equal", 10), ("score_gap", 10), ("top_z", 10), ("coverage", 10), ("zscore", 0)]


def fuse(
    dense: list[tuple[str, float]], bm25: list[tuple[str, float]], attainable: float, method: str, k: int
) -> list[str]:
    scores = {"dense": [s for _, s in dense], "bm25": [s for _, s in bm25]}
    coverage = arm_coverage(scores, {"bm25": attainable})
    weights = None if method == "equal" else arm_weights(scores, method=method, coverage=coverage)
    if method == "zscore":
        return [doc for doc, _ in z_fusion({"dense": dense, "bm25": bm25}, weights=weights)]
    return [doc for doc, _ in rrf({"dense": [d for d, _ in dense], "bm25": [d for d, _ in bm25]}, k=k, weights=weights)]


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

    header = ["dense", "BM25"] + [f"RRF k={k} {method}" if k else method for method, k in COLUMNS]
    print(f"| nDCG@10, {dataset.name} {args.split} | " + " | ".join(header) + " |")
    print("| --- " * (len(header) + 1) + "|")
    for name, arms in variants.items():
        figures = []
        for pick in (lambda d, b, _: [x for x, _ in d], lambda d, b, _: [x for x, _ in b]):
            figures.append(np.mean([ndcg_at_k(pick(*arms[q]), dataset.qrels[q], 10) for q in queries]))
        for method, k in COLUMNS:
            figures.append(np.mean([ndcg_at_k(fuse(*arms[q], method, k), dataset.qrels[q], 10) for q in queries]))
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in figures) + " |")
    lexical.close()


if __name__ == "__main__":
    main()
