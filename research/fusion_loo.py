"""Reproduce the leave-one-collection-out tables of research/NOTES.md ("How the defaults were chosen").

Each collection is a BEIR folder, optionally split into namespaces by an id prefix (LoCoMo's
conversations) and cut to some of its groups. Every arm's top 100 for every judged query comes from
the project's own code: BM25 and the context arm from a ``LexicalIndex`` holding the documents in
corpus order, one namespace per group; the dense arm exact cosine over the bundled bi-encoder's
vectors; each namespace's coherence from ``LexicalIndex.coherence``. Each candidate setting of the
``zscore`` fusion (the coverage exponents, the dense arm's scale, the context threshold) is a
``FusionPolicy`` (``mimir_mcp.search.policy``), the object search itself fuses with, and so are two
references (the earlier ``coverage`` RRF default and equal-weight RRF, k = 60).

The rule: a setting's margin on a collection is its nDCG@10 minus that of the better arm (the context
arm counts as an arm where it runs). For each collection, the setting with the best worst-case margin
over the *other* collections (ties within 0.001 broken by the mean margin) is measured on it.

Then the tail (the policy's ``tail_*`` parameters): the top 10 stay as chosen, and past them the dense arm's weight
is multiplied by one factor where the context arm runs and by another where it does not (13 x 13
pairs). A pair's margin on a collection is its Recall@50 minus the better arm's (to 0.001). The goal is a
floor (no collection below its better arm), so for each collection the pair measured on it is, of those
meeting the floor on every other collection, the one farthest from a pair that does not (``choose_tail``),
beside what the best worst case (leximin) would have chosen.

    python research/fusion_loo.py --cache /tmp/loo \\
        locomo-a=../shared/datasets/locomo-dev:-:26,41 locomo-b=../shared/datasets/locomo-dev:-:43,47,49 \\
        scifact=../shared/datasets/scifact wordnet-nouns=/tmp/wn-nouns ...
"""

from __future__ import annotations

import argparse
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.embedding import Embedder
from mimir_mcp.evaluation.beir import load_dataset
from mimir_mcp.evaluation.run import fit_to_bytes, score_ranking
from mimir_mcp.lexical.analysis import count_words
from mimir_mcp.lexical.index import LexicalIndex
from mimir_mcp.models import MemoryRecord
from mimir_mcp.search.policy import ARMS, FusionPolicy

DEPTH = 100
Arms = dict[str, Any]  # per query: arm -> [(doc, score)], "attainable" -> {arm: float}, "coherence", "mean_terms"
SHIPPED = FusionPolicy()


@dataclass(frozen=True)
class Setting:
    bm25_power: float
    dense_power: float
    dense_scale: float
    context_from: float | None  # coherence from which the context arm runs; None: never
    context_max_terms: float | None = None  # ... where memories hold at most this many terms on average
    context_query_words: int | None = None  # ... or the query has at most this many words

    def policy(self, tail: Tail | None = None) -> FusionPolicy:
        """The search tool's policy under this setting, with ``tail`` (None: no tail)."""
        return FusionPolicy(
            bm25_coverage_power=self.bm25_power,
            dense_coverage_power=self.dense_power,
            dense_scale=self.dense_scale,
            context="off" if self.context_from is None else "auto",
            context_min_coherence=SHIPPED.context_min_coherence if self.context_from is None else self.context_from,
            context_max_terms=self.context_max_terms,
            context_query_words=self.context_query_words,
            tail_from=None if tail is None else tail.head,
            tail_dense_factor=1.0 if tail is None else tail.plain,
            tail_dense_factor_context=1.0 if tail is None else tail.context,
        )

    def label(self) -> str:
        context = "off" if self.context_from is None else f"from {self.context_from:g}"
        if self.context_from is not None and self.context_max_terms is not None:
            context += f" up to {self.context_max_terms:g} terms"
            if self.context_query_words is not None:
                context += f" or queries of {self.context_query_words} words"
        return (
            f"coverage^{self.bm25_power:g} (BM25), ^{self.dense_power:g} (dense), dense x{self.dense_scale:g}, "
            f"context {context}"
        )


@dataclass(frozen=True)
class Tail:
    context: float  # the dense arm's weight factor past the head where the context arm runs
    plain: float  # and where it does not
    head: int = 10

    def label(self) -> str:
        return f"dense x{self.context:g} with context, x{self.plain:g} without"


TAIL_FACTORS = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0]


def settings_grid(query_words: int | None = SHIPPED.context_query_words) -> list[Setting]:
    """The candidate settings; the length test, where a setting has it, with the keyword-query exception
    of ``query_words`` (a fixed rule, not a choice: None leaves it out, for comparison)."""
    return [
        Setting(bm25, dense, scale, context, max_terms, query_words if max_terms is not None else None)
        for context in (0.05, 0.07, None)
        for max_terms in ((None, SHIPPED.context_max_terms) if context is not None else (None,))
        for bm25, dense in ((0.25, 0.5), (0.5, 0.25), (0.5, 0.5), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0))
        for scale in (1.5, 2.0, 3.0)
    ]


def choose_tail(margins: dict[Tail, tuple[float, ...]], rule: str = "room") -> Tail:
    """The tail pair for ``margins`` (each pair's Recall@50 margins on the collections it is chosen on,
    sorted, worst first). ``leximin``: the best worst margin, ties by the next worst and so on. ``room``:
    Recall@50's bar is a floor, so of the pairs meeting it (worst margin ≥ 0) on every collection, the one
    farthest from a pair that does not: along each factor, the log-distance to the nearest value that
    fails with the other factor held (the grid's ends count as open), the smaller of the two distances
    first, then the larger, then leximin. Where no pair meets it, leximin."""
    safe = {tail for tail, values in margins.items() if values[0] >= 0}
    if rule == "leximin" or not safe:
        return max(margins, key=lambda tail: margins[tail])

    def room(tail: Tail) -> tuple:
        along = [
            min(
                (
                    abs(math.log(getattr(other, axis) / getattr(tail, axis)))
                    for other in margins
                    if other not in safe and getattr(other, held) == getattr(tail, held)
                ),
                default=math.inf,
            )
            for axis, held in (("context", "plain"), ("plain", "context"))
        ]
        return (*sorted(along), margins[tail])

    return max(safe, key=room)


def compute_arms(folder: Path, separator: str | None, groups: set[str] | None, embedder: Embedder) -> dict:
    """Every judged query's arms, from the project's index and bi-encoder, documents in corpus order."""
    dataset = load_dataset(folder)

    def group(item_id: str) -> str:
        return item_id.split(separator, 1)[0] if separator else "all"

    documents = [
        (doc.id, fit_to_bytes(doc.memory_text, 32 * 1024))
        for doc in dataset.corpus.values()
        if groups is None or group(doc.id) in groups
    ]
    documents = [(doc_id, text) for doc_id, text in documents if text.strip()]
    queries = {qid: text for qid, text in dataset.judged_queries.items() if groups is None or group(qid) in groups}
    runs = arms_of(documents, queries, group, embedder)
    return {"runs": runs, "qrels": {qid: dataset.qrels[qid] for qid in queries}}


def arms_of(
    documents: list[tuple[str, str]], queries: dict[str, str], group: Callable[[str], str], embedder: Embedder
) -> dict[str, Arms]:
    """Every query's arms over ``documents`` (id, text; in this order), each query searched in the
    namespace ``group`` gives its id, as a document's namespace is ``group`` of the document's id."""
    lexical = LexicalIndex(":memory:")
    lexical.add(
        MemoryRecord(id=doc_id, text=text, namespace=group(doc_id), created_at="2026-01-01T00:00:00+00:00")
        for doc_id, text in documents
    )
    vectors = embedder.encode([text for _, text in documents])
    ids = np.array([doc_id for doc_id, _ in documents])
    namespaces = np.array([group(doc_id) for doc_id, _ in documents])
    runs: dict[str, Arms] = {}
    for (qid, query), vector in zip(queries.items(), embedder.encode(list(queries.values())), strict=True):
        namespace = group(qid)
        members = np.flatnonzero(namespaces == namespace)
        similarity = vectors[members] @ vector
        best = members[np.argsort(-similarity, kind="stable")[:DEPTH]]
        arms: Arms = {"dense": [(str(ids[i]), float(vectors[i] @ vector)) for i in best]}
        for arm in ("bm25", "context"):
            hits = lexical.search(query, DEPTH, namespace=namespace, context=arm == "context")
            arms[arm] = [(hit.id, hit.score) for hit in hits]
        arms["attainable"] = {
            arm: lexical.attainable_score(query, context=arm == "context") for arm in ("bm25", "context")
        }
        arms["coherence"] = lexical.coherence(namespace)
        arms["mean_terms"] = lexical.mean_length(namespace)
        arms["words"] = count_words(query)
        runs[qid] = arms
    lexical.close()
    return runs


def runs_context(arms: Arms, policy: FusionPolicy) -> bool:
    """Whether the search tool runs the context arm for this query (its namespace, its words) under ``policy``."""
    return policy.context_runs(arms["coherence"], arms.get("mean_terms"), arms.get("words"))


def fuse(arms: Arms, policy: FusionPolicy) -> list[str]:
    """The fused order the search tool makes under ``policy`` from one query's cached arms."""
    chosen = {arm: arms[arm] for arm in policy.arms(ARMS, runs_context(arms, policy))}
    return [item for item, _ in policy.fuse(chosen, arms["attainable"]).order]


def fuse_zscore(arms: Arms, setting: Setting, tail: Tail | None = None) -> list[str]:
    """The fused order as the search tool makes it under ``setting`` (and ``tail``; None: no tail)."""
    return fuse(arms, setting.policy(tail))


def fuse_rrf(arms: Arms, method: Literal["coverage", "equal"], k: int) -> list[str]:
    """A reference: RRF of the dense arm and BM25 (no context arm), ``coverage``-weighted or equal."""
    return fuse(arms, FusionPolicy(method=method, rrf_k=k, context="off"))


def measure(collection: dict, rank: Callable[[Arms], list[str]]) -> dict[str, float]:
    """nDCG@10 and Recall@5, @10 and @50, averaged over the collection's queries, as ``eval`` scores them."""
    rows = [score_ranking(rank(arms), collection["qrels"][qid]) for qid, arms in collection["runs"].items()]
    names = {"ndcg": "ndcg@10", "r5": "recall@5", "r10": "recall@10", "r50": "recall@50"}
    return {name: float(np.mean([row[key] for row in rows])) for name, key in names.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collections", nargs="+", help="NAME=FOLDER[:SEPARATOR[:GROUP,GROUP...]]")
    parser.add_argument("--cache", type=Path, required=True, help="folder for each collection's arms")
    parser.add_argument(
        "--context-query-words",
        type=int,
        default=SHIPPED.context_query_words,
        help="the keyword-query exception to the length test (0: none, as before it)",
    )
    args = parser.parse_args()
    settings = settings_grid(args.context_query_words or None)
    args.cache.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(EmbeddingSettings(query_backend="torch"))
    embedder.start()
    collections: dict[str, dict] = {}
    for spec in args.collections:
        name, _, location = spec.partition("=")
        folder, separator, groups = [*location.split(":"), None, None][:3]
        cached = args.cache / f"{name}.pickle"
        if not cached.exists():
            chosen = set(groups.split(",")) if groups else None
            cached.write_bytes(pickle.dumps(compute_arms(Path(folder), separator or None, chosen, embedder)))
        collections[name] = pickle.loads(cached.read_bytes())
        texts = load_dataset(Path(folder)).judged_queries  # the query's words: cached arms predate them
        for qid, arms in collections[name]["runs"].items():
            arms["words"] = count_words(texts[qid])

    arms_alone = {
        name: {arm: measure(c, lambda a, arm=arm: [i for i, _ in a[arm]]) for arm in ("dense", "bm25", "context")}
        for name, c in collections.items()
    }
    results = {
        s: {name: measure(c, lambda a, s=s: fuse_zscore(a, s)) for name, c in collections.items()} for s in settings
    }
    references = {
        "RRF k=10 `coverage` (the earlier default)": lambda a: fuse_rrf(a, "coverage", 10),
        "RRF k=60, equal weights": lambda a: fuse_rrf(a, "equal", 60),
    }
    reference_results = {
        label: {n: measure(c, rank) for n, c in collections.items()} for label, rank in references.items()
    }

    def better_arm(name: str, setting: Setting | None, metric: str) -> float:
        runs = collections[name]["runs"].values()
        context = setting is not None and all(runs_context(arms, setting.policy()) for arms in runs)
        arms = ("dense", "bm25", "context") if context else ("dense", "bm25")
        return max(arms_alone[name][arm][metric] for arm in arms)

    def margin(setting: Setting, name: str, metric: str = "ndcg") -> float:
        return results[setting][name][metric] - better_arm(name, setting, metric)

    def pick(names: list[str]) -> Setting:
        return max(
            settings, key=lambda s: (round(min(margin(s, n) for n in names), 3), np.mean([margin(s, n) for n in names]))
        )

    print("| collection | dense | BM25 | context arm | coherence |")
    print("| --- | --- | --- | --- | --- |")
    for name in collections:
        coherence = sorted(
            {round(a["coherence"], 3) for a in collections[name]["runs"].values() if a["coherence"] is not None}
        )
        figures = " | ".join(f"{arms_alone[name][arm]['ndcg']:.4f}" for arm in ("dense", "bm25", "context"))
        print(f"| {name} | {figures} | {', '.join(map(str, coherence)) or 'n/a'} |")

    rows = []
    for held_out in collections:
        setting = pick([name for name in collections if name != held_out])
        rows.append((margin(setting, held_out), held_out, setting))
    print(
        "\n| held out | chosen on the others | hybrid nDCG@10 | better arm | margin | hybrid R@50 | better arm R@50 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for value, name, setting in sorted(rows, key=lambda row: row[0]):
        figures = results[setting][name]
        print(
            f"| {name} | {setting.label()} | {figures['ndcg']:.4f} | {better_arm(name, setting, 'ndcg'):.4f} | "
            f"{value:+.4f} | {figures['r50']:.4f} | {better_arm(name, setting, 'r50'):.4f} |"
        )
    print(f"\nmean margin held out: {np.mean([row[0] for row in rows]):+.4f}")

    chosen = pick(list(collections))
    print(f"\nchosen on all: {chosen.label()}")
    print("| collection | nDCG@10 | margin | R@5 | R@10 | R@50 | R@50 margin |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in collections:
        f = results[chosen][name]
        print(
            f"| {name} | {f['ndcg']:.4f} | {margin(chosen, name):+.4f} | {f['r5']:.4f} | {f['r10']:.4f} | "
            f"{f['r50']:.4f} | {margin(chosen, name, 'r50'):+.4f} |"
        )
    for label, figures in reference_results.items():
        cells = ", ".join(f"{n} {figures[n]['ndcg'] - better_arm(n, None, 'ndcg'):+.4f}" for n in collections)
        print(f"\n{label}, nDCG@10 margin over the better plain arm: {cells}")

    # The tail: per head setting, each query's Recall@50 under each factor; a query takes the factor of its
    # kind (context arm running or not), so a pair's figures combine these without fusing again.
    heads = {pick([n for n in collections if n != held_out]) for held_out in collections} | {chosen}
    recall = {
        (s, name, factor): {
            qid: (
                runs_context(arms, s.policy()),
                score_ranking(fuse_zscore(arms, s, Tail(factor, factor)), c["qrels"][qid])["recall@50"],
            )
            for qid, arms in c["runs"].items()
        }
        for s in heads
        for name, c in collections.items()
        for factor in TAIL_FACTORS
    }
    tails = [Tail(c, p) for c in TAIL_FACTORS for p in TAIL_FACTORS]

    def tail_margin(s: Setting, tail: Tail, name: str) -> float:
        with_context, without = recall[(s, name, tail.context)], recall[(s, name, tail.plain)]
        values = [with_context[q][1] if with_context[q][0] else without[q][1] for q in with_context]
        return float(np.mean(values)) - better_arm(name, s, "r50")

    def tail_table(s: Setting, names: list[str]) -> dict[Tail, tuple[float, ...]]:
        return {tail: tuple(sorted(round(tail_margin(s, tail, n), 3) for n in names)) for tail in tails}

    tail_rows = []
    for held_out in collections:
        others = [n for n in collections if n != held_out]
        s = pick(others)
        table = tail_table(s, others)
        tail, leximin = choose_tail(table), choose_tail(table, rule="leximin")
        tail_rows.append((tail_margin(s, tail, held_out), held_out, tail, tail_margin(s, leximin, held_out), leximin))
    print("\n| held out | tail chosen on the others | R@50 margin | leximin instead: chosen | margin |")
    print("| --- | --- | --- | --- | --- |")
    for value, name, tail, leximin_value, leximin in sorted(tail_rows, key=lambda row: row[0]):
        print(f"| {name} | {tail.label()} | {value:+.4f} | {leximin.label()} | {leximin_value:+.4f} |")
    print(
        f"\nmean R@50 margin held out: {np.mean([row[0] for row in tail_rows]):+.4f} "
        f"(leximin: {np.mean([row[3] for row in tail_rows]):+.4f})"
    )
    tail = choose_tail(tail_table(chosen, list(collections)))
    print(f"\ntail chosen on all: {tail.label()}")
    print("| collection | R@50 | R@50 margin | without the tail |")
    print("| --- | --- | --- | --- |")
    for name in collections:
        print(
            f"| {name} | {tail_margin(chosen, tail, name) + better_arm(name, chosen, 'r50'):.4f} | "
            f"{tail_margin(chosen, tail, name):+.4f} | {margin(chosen, name, 'r50'):+.4f} |"
        )


if __name__ == "__main__":
    main()
