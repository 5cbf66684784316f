"""Build a small store from a BEIR folder: the shape most agents' memory has (a few hundred memories), where
the collections the defaults were chosen on hold thousands. In a small store more of a query's words are
rare, BM25 often lists every memory holding one, and the dense arm's hundred candidates are a third of the
store, so the arms meet differently (research/NOTES.md, "Small stores").

Two ways to cut one:

- ``--sample N``: the documents judged for ``--queries`` judged queries drawn at random (``--seed``), and
  other documents drawn at random until the store holds ``N``; those queries are asked.
- ``--first N``: the first ``N`` documents of each group, in corpus order (a conversation's first turns,
  with ``--group-by-prefix``), and every judged query whose documents are all among them.

    python research/small_store_set.py --dataset ../shared/datasets/hotpotqa-distractor-pool \\
        --sample 300 --queries 60 --seed 1 --out /tmp/small/hotpotqa-1
    python research/small_store_set.py --dataset ../shared/datasets/locomo-dev --group-by-prefix - \\
        --first 100 --out /tmp/small/locomo-100
    mimir-mcp eval --dataset /tmp/small/hotpotqa-1 --methods bm25,dense,context,hybrid
    mimir-mcp eval --dataset /tmp/small/locomo-100 --group-by-prefix - --methods bm25,dense,context,hybrid
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from mimir_mcp.evaluation.beir import Dataset, load_dataset, write_dataset


def sample(dataset: Dataset, memories: int, queries: int, seed: int) -> tuple[list[str], list[str]]:
    """Document and query ids: ``queries`` judged queries at random, their documents, and random others
    up to ``memories`` (documents keep their corpus order)."""
    rng = random.Random(seed)
    judged = sorted(query_id for query_id in dataset.qrels if query_id in dataset.queries)
    asked = rng.sample(judged, min(queries, len(judged)))
    kept = {doc_id for query_id in asked for doc_id in dataset.qrels[query_id] if doc_id in dataset.corpus}
    others = sorted(set(dataset.corpus) - kept)
    kept |= set(rng.sample(others, max(0, min(memories - len(kept), len(others)))))
    return [doc_id for doc_id in dataset.corpus if doc_id in kept], sorted(asked)


def first(dataset: Dataset, memories: int, separator: str | None) -> tuple[list[str], list[str]]:
    """Document and query ids: the first ``memories`` documents of each group (the id before ``separator``;
    one group without it), and the judged queries whose documents are all among them."""
    taken: dict[str, int] = {}
    kept: list[str] = []
    for doc_id in dataset.corpus:
        group = doc_id.split(separator, 1)[0] if separator else ""
        if taken.get(group, 0) < memories:
            taken[group] = taken.get(group, 0) + 1
            kept.append(doc_id)
    inside = set(kept)
    asked = [
        query_id
        for query_id, judged in dataset.qrels.items()
        if query_id in dataset.queries and judged and set(judged) <= inside
    ]
    return kept, asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="a BEIR folder")
    parser.add_argument("--out", type=Path, required=True)
    cut = parser.add_mutually_exclusive_group(required=True)
    cut.add_argument("--sample", type=int, metavar="N", help="a store of N documents around random queries")
    cut.add_argument("--first", type=int, metavar="N", help="the first N documents of each group")
    parser.add_argument("--queries", type=int, default=60, help="with --sample: judged queries asked")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-by-prefix", metavar="SEP", help="with --first: a group per id prefix")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    if args.sample is not None:
        kept, asked = sample(dataset, args.sample, args.queries, args.seed)
    else:
        kept, asked = first(dataset, args.first, args.group_by_prefix)
    inside = set(kept)
    write_dataset(
        args.out,
        [dataset.corpus[doc_id] for doc_id in kept],
        {query_id: dataset.queries[query_id] for query_id in asked},
        {query_id: {d: s for d, s in dataset.qrels[query_id].items() if d in inside} for query_id in asked},
    )
    print(f"{len(kept)} documents, {len(asked)} queries -> {args.out}")


if __name__ == "__main__":
    main()
