"""Can the fused list's tail (what the reranker sees past the top 10) calibrate itself to a store?
Two label-free ways of setting the dense arm's weight below the top 10, measured on the cached arms of
``research/fusion_loo.py`` (research/NOTES.md, "Recall@50: what was tried before the tail").

For each collection, the fused top 10 stays the default's (so nDCG@10 does not move) and ranks 11+
are fused again with the dense arm's weight times ``m``; the figure is Recall@50 minus the better arm's.

- From the store's own query stream: ``s``, the share of queries whose fused top hit only the dense arm
  found (no BM25 list holds it), which a server could count as it answers; a rule ``m = lo if s < tau
  else hi``, chosen leaving one collection out (best worst case over the others, ties by the mean).
- From pseudo-queries (``--pseudo``): a sentence of a stored memory, asked with that sentence taken out
  of its memory, must find the memory; ``m`` is the one with the best pseudo Recall@50 on the store.

    python research/tail_calibration.py --cache /tmp/loo [--pseudo] \\
        locomo-a=../shared/datasets/locomo-dev:-:26,41 ... (the collections given to fusion_loo.py)
"""

from __future__ import annotations

import argparse
import pickle
import random
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from fusion_loo import Arms, arms_of, fuse, measure, runs_context

from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.embedding import Embedder
from mimir_mcp.evaluation.beir import load_dataset
from mimir_mcp.evaluation.run import fit_to_bytes
from mimir_mcp.search.policy import FusionPolicy

# The shipped fusion's head without a tail (and without the keyword-query exception: the cached arms this
# was measured on predate it); m = 1 is this fused order.
DEFAULT = FusionPolicy(context_query_words=None, tail_from=None)
MULTIPLIERS = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0]
PSEUDO_QUERIES = 300
SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def tailed(arms: Arms, multiplier: float, keep: int = 10) -> list[str]:
    """The default's top ``keep``, then the rest fused with the dense arm's weight times ``multiplier``
    (the policy's tail, as search runs it, with one factor whether or not the context arm runs)."""
    tail = replace(DEFAULT, tail_from=keep, tail_dense_factor=multiplier, tail_dense_factor_context=multiplier)
    return fuse(arms, tail)


def dense_only_top(arms: Arms) -> bool:
    """Whether the default's top hit is one that no lexical list holds."""
    lexical = {item for arm in ("bm25", "context") for item, _ in arms[arm]}
    return fuse(arms, DEFAULT)[0] not in lexical


def curve(collection: dict) -> list[float]:
    """Recall@50 of the tailed list at each multiplier."""
    return [measure(collection, lambda arms, m=m: tailed(arms, m))["r50"] for m in MULTIPLIERS]


def better_arm_r50(collection: dict) -> float:
    """The better arm's Recall@50; the context arm counts where every namespace runs it (as fusion_loo)."""
    runs = collection["runs"].values()
    arms = ["dense", "bm25"]
    if all(runs_context(a, DEFAULT) for a in runs):
        arms.append("context")
    return max(measure(collection, lambda a, arm=arm: [i for i, _ in a[arm]])["r50"] for arm in arms)


def pseudo_collection(folder: Path, separator: str | None, groups: set[str] | None, embedder: Embedder) -> dict:
    """Arms for pseudo-queries: a random sentence (four words or more) of a random memory with two or more
    sentences, asked against the store where that memory lost the sentence; its memory is the one relevant."""
    dataset = load_dataset(folder)

    def group(item_id: str) -> str:
        return item_id.split(separator, 1)[0] if separator else "all"

    documents = {
        doc.id: fit_to_bytes(doc.memory_text, 32 * 1024)
        for doc in dataset.corpus.values()
        if groups is None or group(doc.id) in groups
    }
    documents = {doc_id: text for doc_id, text in documents.items() if text.strip()}
    rng = random.Random(0)
    order = list(documents)
    rng.shuffle(order)
    queries: dict[str, str] = {}
    for doc_id in order:
        parts = [part for part in SENTENCE.split(documents[doc_id]) if part.strip()]
        long_enough = [i for i, part in enumerate(parts) if len(part.split()) >= 4]
        if len(parts) < 2 or not long_enough:
            continue
        chosen = rng.choice(long_enough)
        queries[doc_id] = parts[chosen]
        documents[doc_id] = "\n".join(part for i, part in enumerate(parts) if i != chosen)
        if len(queries) == PSEUDO_QUERIES:
            break
    runs = arms_of(list(documents.items()), queries, group, embedder)
    return {"runs": runs, "qrels": {source: {source: 1} for source in runs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collections", nargs="+", help="NAME=FOLDER[:SEPARATOR[:GROUP,GROUP...]] as for fusion_loo.py")
    parser.add_argument("--cache", type=Path, required=True, help="fusion_loo.py's cache of each collection's arms")
    parser.add_argument("--pseudo", action="store_true", help="also calibrate each store from pseudo-queries")
    args = parser.parse_args()
    specs = dict(spec.partition("=")[::2] for spec in args.collections)
    collections = {name: pickle.loads((args.cache / f"{name}.pickle").read_bytes()) for name in specs}

    curves = {name: curve(c) for name, c in collections.items()}
    best = {name: better_arm_r50(c) for name, c in collections.items()}
    share = {name: float(np.mean([dense_only_top(a) for a in c["runs"].values()])) for name, c in collections.items()}
    margins = {name: [value - best[name] for value in curves[name]] for name in collections}
    print("Recall@50 minus the better arm's, the dense arm's tail weight times m:\n")
    print("| collection | s | " + " | ".join(f"m={m:g}" for m in MULTIPLIERS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in MULTIPLIERS) + " |")
    for name in collections:
        print(f"| {name} | {share[name]:.3f} | " + " | ".join(f"{v:+.3f}" for v in margins[name]) + " |")

    values = sorted(set(share.values()))
    thresholds = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + [1.0]
    rules = [(t, lo, hi) for t in thresholds for lo in range(len(MULTIPLIERS)) for hi in range(len(MULTIPLIERS))]

    def value(rule: tuple[float, int, int], name: str) -> float:
        threshold, lo, hi = rule
        return margins[name][lo if share[name] < threshold else hi]

    def pick(names: list[str]) -> tuple[float, int, int]:
        def key(rule: tuple[float, int, int]) -> tuple[float, float]:
            return round(min(value(rule, n) for n in names), 3), float(np.mean([value(rule, n) for n in names]))

        return max(rules, key=key)

    rows = []
    for held_out in collections:
        rule = pick([name for name in collections if name != held_out])
        rows.append((value(rule, held_out), held_out, rule))
    print("\nThe rule m = lo if s < tau else hi, chosen on the other collections, worst first:\n")
    print("| held out | chosen on the others | R@50 margin |")
    print("| --- | --- | --- |")
    for margin, name, (threshold, lo, hi) in sorted(rows):
        rule_text = f"s < {threshold:.3f}: m={MULTIPLIERS[lo]:g}, else m={MULTIPLIERS[hi]:g}"
        print(f"| {name} | {rule_text} | {margin:+.3f} |")
    print(f"\nmean held out {np.mean([row[0] for row in rows]):+.4f}")
    in_sample = pick(list(collections))
    print(f"chosen on all ten: worst {min(value(in_sample, n) for n in collections):+.3f}")

    if not args.pseudo:
        return
    embedder = Embedder(EmbeddingSettings(query_backend="torch"))
    embedder.start()
    print("\nCalibrated from each store's pseudo-queries:\n")
    print("| collection | pseudo-queries | dense / BM25 pseudo R@50 | m chosen | real R@50 margin |")
    print("| --- | --- | --- | --- | --- |")
    for name, location in specs.items():
        folder, separator, groups = [*location.split(":"), None, None][:3]
        chosen_groups = set(groups.split(",")) if groups else None
        pseudo = pseudo_collection(Path(folder), separator or None, chosen_groups, embedder)
        pseudo_curve = curve(pseudo)
        # the best pseudo Recall@50; among ties, the multiplier closest to 1
        pick_m = max(range(len(MULTIPLIERS)), key=lambda i: (round(pseudo_curve[i], 4), -abs(np.log(MULTIPLIERS[i]))))
        arms = [measure(pseudo, lambda a, arm=arm: [i for i, _ in a[arm]])["r50"] for arm in ("dense", "bm25")]
        print(
            f"| {name} | {len(pseudo['runs'])} | {arms[0]:.3f} / {arms[1]:.3f} | {MULTIPLIERS[pick_m]:g} | "
            f"{margins[name][pick_m]:+.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
