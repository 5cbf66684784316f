"""Ideas measured for issue 35 beside the shipped fusion (research/NOTES.md, "Issue 35", the ideas that
did not make the default), each on the cached arms of ``research/fusion_loo.py`` (its ``--cache`` and the same
``NAME=FOLDER[:SEPARATOR[:GROUPS]]`` collections).

- ``learned``: per-query arm weights ``w_arm = exp(theta_arm . (1, log z, log coverage))`` (z: how many
  standard deviations the arm's best hit stands above its other candidates; coverage as the search's),
  all three arms fused on every query, ``theta`` fitted on the other collections by the softmax
  likelihood of the relevant candidates (each collection weighing alike) and measured on the one left
  out.
- ``agreement``: how well each plain arm's top 10 is supported by the other arm's standardized scores;
  an arm that is right should see its top hits supported more than it supports the other's.
- ``chain``: how much of a namespace's neighbour likeness is owed to the immediate predecessor
  (``(adjacent - two back) / (adjacent - distant)``, idf-weighted term overlap as ``coherence``), and the
  held-out figures of the shipped fusion with the context arm also requiring that share.
- ``length``: BM25's length normalization ``b`` (0.75 shipped; 0.5, 0.25, 0): the lexical arms searched
  again with it (the cached dense arm kept), each arm alone and the shipped fusion, nDCG@10 and Recall@5,
  @10 and @50. Where every memory of a block carries the same title (WikiQA), the query's words in it
  match every memory alike and ``b`` alone orders them: the shortest first.

    python research/fusion_ideas.py learned --cache /tmp/loo NAME=FOLDER ...
"""

from __future__ import annotations

import argparse
import math
import pickle
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from fusion_loo import Arms, alone, collection_inputs, fuse, lexical_arms_of, measure, runs_context

from mimir_mcp.evaluation.beir import load_dataset
from mimir_mcp.evaluation.run import fit_to_bytes, score_ranking
from mimir_mcp.lexical import bm25
from mimir_mcp.lexical.analysis import analyze
from mimir_mcp.lexical.bm25 import bm25_idf
from mimir_mcp.search.fusion import arm_coverage, top_z_weight, z_fusion
from mimir_mcp.search.policy import ARMS, FusionPolicy

SHIPPED = FusionPolicy()


def standardized(hits: list[tuple[str, float]]) -> dict[str, float]:
    """An arm's candidates as ``z_fusion`` standardizes them: ``(s - min) / sd``."""
    return dict(z_fusion({"arm": hits}))


def features(arms: Arms) -> np.ndarray:
    """Each arm's (1, log z, log coverage) for one query."""
    scores = {arm: [score for _, score in arms[arm]] for arm in ARMS}
    coverage = arm_coverage(scores, arms["attainable"])
    rows = []
    for arm in ARMS:
        z = top_z_weight(scores[arm], power=1.0) or 1.0
        c = coverage.get(arm)
        rows.append([1.0, math.log(z), math.log(1.0 if c is None else max(min(c, 1.0), 0.05))])
    return np.array(rows)


def packed(collection: dict) -> list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Per query: its candidates, their standardized scores per arm, the arm features, their gains."""
    out = []
    for qid, arms in collection["runs"].items():
        ids = list(dict.fromkeys(item for arm in ARMS for item, _ in arms[arm]))
        per_arm = [standardized(arms[arm]) for arm in ARMS]
        z = np.array([[values.get(item, 0.0) for values in per_arm] for item in ids])
        gains = np.array([max(collection["qrels"][qid].get(item, 0), 0) for item in ids], dtype=float)
        out.append((ids, z, features(arms), gains))
    return out


def fit(training: list[list[tuple]], l2: float = 1e-3) -> np.ndarray:
    """``theta`` maximizing the mean (per collection) log-likelihood of the relevant candidates."""
    import torch

    theta = torch.zeros(len(ARMS), 3, dtype=torch.float64, requires_grad=True)
    batches = []
    for rows in training:
        kept = [row for row in rows if row[3].sum() > 0]
        width = max(len(row[0]) for row in kept)
        z = torch.zeros(len(kept), width, len(ARMS), dtype=torch.float64)
        target = torch.zeros(len(kept), width, dtype=torch.float64)
        mask = torch.zeros(len(kept), width, dtype=torch.bool)
        for k, (ids, scores, _, gains) in enumerate(kept):
            z[k, : len(ids)] = torch.from_numpy(scores)
            target[k, : len(ids)] = torch.from_numpy(gains / gains.sum())
            mask[k, : len(ids)] = True
        batches.append((z, torch.from_numpy(np.stack([row[2] for row in kept])), target, mask))
    optimizer = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.zeros((), dtype=torch.float64)
        for z, phi, target, mask in batches:
            weights = torch.exp((phi * theta).sum(2))
            scores = (z * weights[:, None, :]).sum(2).masked_fill(~mask, -1e9)
            loss = loss - (target * torch.log_softmax(scores, 1)).sum(1).mean()
        loss = loss / len(batches) + l2 * (theta[:, 1:] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach().numpy()


def learned(collections: dict[str, dict]) -> None:
    data = {name: packed(c) for name, c in collections.items()}
    rows = []
    for held_out, collection in collections.items():
        theta = fit([rows_ for name, rows_ in data.items() if name != held_out])
        ranked = {}
        for qid, (ids, z, phi, _) in zip(collection["runs"], data[held_out], strict=True):
            order = np.argsort(-(z @ np.exp((phi * theta).sum(1))), kind="stable")
            ranked[qid] = [ids[i] for i in order]
        ndcg = float(np.mean([score_ranking(ranked[q], collection["qrels"][q])["ndcg@10"] for q in ranked]))
        best = max(alone(collection, arm)["ndcg"] for arm in ARMS)
        shipped = measure(collection, lambda a: fuse(a, SHIPPED))["ndcg"]
        rows.append((ndcg - best, held_out, ndcg, best, shipped - best))
    print("| held out | learned nDCG@10 | best arm | margin | shipped margin |\n| --- | --- | --- | --- | --- |")
    for margin, name, ndcg, best, shipped in sorted(rows):
        print(f"| {name} | {ndcg:.4f} | {best:.4f} | {margin:+.4f} | {shipped:+.4f} |")
    met = sum(r[0] >= -0.005 for r in rows)
    print(f"\nmean {np.mean([r[0] for r in rows]):+.4f}, {met} of {len(rows)} within 0.005")


def agreement(collections: dict[str, dict]) -> None:
    print("| collection | BM25's support of the dense top 10 | the dense arm's of BM25's | dense - BM25 nDCG@10 |")
    print("| --- | --- | --- | --- |")
    for name, c in collections.items():
        support = {"dense": [], "bm25": []}
        for arms in c["runs"].values():
            for arm, other in (("dense", "bm25"), ("bm25", "dense")):
                theirs = standardized(arms[other])
                own_top = [item for item, _ in arms[arm][:10]]
                their_top = sorted(theirs.values(), reverse=True)[: len(own_top)]
                if own_top and their_top and sum(their_top) > 0:
                    support[arm].append(np.mean([theirs.get(i, 0.0) for i in own_top]) / np.mean(their_top))
        gap = alone(c, "dense")["ndcg"] - alone(c, "bm25")["ndcg"]
        print(f"| {name} | {np.mean(support['dense']):.3f} | {np.mean(support['bm25']):.3f} | {gap:+.3f} |")


def chain_shares(folder: Path, separator: str | None, groups: set[str] | None) -> dict[str, float]:
    """Each namespace's share of its neighbour likeness owed to the immediate predecessor."""
    dataset = load_dataset(folder)
    members: dict[str, list[set[str]]] = {}
    for doc in dataset.corpus.values():
        group = doc.id.split(separator, 1)[0] if separator else "all"
        if groups is None or group in groups:
            members.setdefault(group, []).append(set(analyze(fit_to_bytes(doc.memory_text, 32 * 1024))))
    shares = {}
    for group, terms in members.items():
        frequency, size = Counter(t for s in terms for t in s), len(terms)
        weight = {t: bm25_idf(n, size) ** 2 for t, n in frequency.items()}

        def overlap(a: int, b: int, terms: list[set[str]] = terms, weight: dict[str, float] = weight) -> float:
            norm = math.sqrt(sum(weight[t] for t in terms[a]) * sum(weight[t] for t in terms[b]))
            return sum(weight[t] for t in terms[a] & terms[b]) / norm if norm else 0.0

        sample = list(range(2, size, max(1, size // 1000)))[:1000]
        adjacent, two_back = (np.mean([overlap(i, i - k) for i in sample]) for k in (1, 2))
        distant = np.mean([overlap(i, (i + size // 2) % size) for i in sample])
        shares[group] = float((adjacent - two_back) / (adjacent - distant)) if adjacent - distant > 1e-6 else 0.0
    return shares


def chain(collections: dict[str, dict], specs: dict[str, tuple]) -> None:
    shares = {name: chain_shares(*specs[name]) for name in collections}
    print("| collection | share owed to the predecessor, per namespace |\n| --- | --- |")
    for name, values in shares.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values.values())} |")
    for least in (0.0, 0.2, 0.25, 0.3, 0.4):
        margins = {}
        for name, c in collections.items():
            separator = specs[name][1]

            def runs(arms: Arms, qid: str, name: str = name, separator: str | None = separator) -> bool:
                group = qid.split(separator, 1)[0] if separator else "all"
                return runs_context(arms, SHIPPED) and shares[name][group] >= least  # noqa: B023 (used at once)

            ranked = {
                qid: fuse(arms, replace(SHIPPED, context="on" if runs(arms, qid) else "off"))
                for qid, arms in c["runs"].items()
            }
            used = ARMS if all(runs(arms, qid) for qid, arms in c["runs"].items()) else ("dense", "bm25")
            best = max(alone(c, arm)["ndcg"] for arm in used)
            ndcg = np.mean([score_ranking(ranked[q], c["qrels"][q])["ndcg@10"] for q in ranked])
            margins[name] = float(ndcg) - best
        worst = sorted(margins.items(), key=lambda item: item[1])[:3]
        print(
            f"\ncontext arm also from a share of {least:g}: mean {np.mean(list(margins.values())):+.4f}, "
            f"{sum(v >= -0.005 for v in margins.values())} of {len(margins)} within 0.005; worst "
            + ", ".join(f"{n} {v:+.4f}" for n, v in worst)
        )


LENGTH_NORMS = (0.75, 0.5, 0.25, 0.0)


def length(collections: dict[str, dict], specs: dict[str, tuple]) -> None:
    print("| collection | b | BM25 | dense | context | hybrid | R@5 | R@10 | R@50 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    shipped = bm25.B
    hybrids: dict[str, dict[float, float]] = {}
    try:
        for name, c in collections.items():
            for norm in LENGTH_NORMS:
                bm25.B = norm
                documents, queries, group, _ = collection_inputs(*specs[name])
                lexical = lexical_arms_of(documents, queries, group)
                again = {"runs": {q: {**arms, **lexical[q]} for q, arms in c["runs"].items()}, "qrels": c["qrels"]}
                alone_ndcg = {arm: alone(again, arm)["ndcg"] for arm in ARMS}
                hybrid = measure(again, lambda arms: fuse(arms, SHIPPED))
                hybrids.setdefault(name, {})[norm] = hybrid["ndcg"]
                cells = [f"{alone_ndcg[arm]:.4f}" for arm in ("bm25", "dense", "context")]
                cells += [f"{hybrid[key]:.4f}" for key in ("ndcg", "r5", "r10", "r50")]
                print(f"| {name} | {norm:g} | {' | '.join(cells)} |")
    finally:
        bm25.B = shipped
    # b chosen leaving each collection out: the value whose hybrid is within 0.005 of the shipped b's on the
    # most other collections, ties by the mean gain; then measured on the one left out.
    print(
        "\n| held out | b chosen on the others | hybrid nDCG@10 | at b 0.75 | gain |\n| --- | --- | --- | --- | --- |"
    )
    gains = {}
    for name in hybrids:
        others = [other for other in hybrids if other != name]

        def merit(norm: float, others: list[str] = others) -> tuple[int, float]:
            change = [hybrids[o][norm] - hybrids[o][shipped] for o in others]
            return sum(value >= -0.005 for value in change), round(float(np.mean(change)), 4)

        chosen = max(LENGTH_NORMS, key=merit)
        gains[name] = hybrids[name][chosen] - hybrids[name][shipped]
        print(
            f"| {name} | {chosen:g} | {hybrids[name][chosen]:.4f} | {hybrids[name][shipped]:.4f} | {gains[name]:+.4f} |"
        )
    print(f"\nheld out: mean gain {np.mean(list(gains.values())):+.4f}, worst {min(gains.values()):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("idea", choices=("learned", "agreement", "chain", "length"))
    parser.add_argument("collections", nargs="+", help="NAME=FOLDER[:SEPARATOR[:GROUP,GROUP...]], as fusion_loo.py")
    parser.add_argument("--cache", type=Path, required=True, help="fusion_loo.py's cache of each collection's arms")
    args = parser.parse_args()
    collections, specs = {}, {}
    for spec in args.collections:
        name, _, location = spec.partition("=")
        folder, separator, groups = [*location.split(":"), None, None][:3]
        collections[name] = pickle.loads((args.cache / f"{name}.pickle").read_bytes())
        specs[name] = (Path(folder), separator or None, set(groups.split(",")) if groups else None)
    if args.idea == "chain":
        chain(collections, specs)
    elif args.idea == "length":
        length(collections, specs)
    else:
        {"learned": learned, "agreement": agreement}[args.idea](collections)


if __name__ == "__main__":
    main()
