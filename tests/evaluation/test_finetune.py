"""`mimir-mcp finetune-reranker` on a tiny slice: real mining, real CrossEncoderTrainer, a model that loads."""

import pytest

from mimir_mcp.config import RerankerSettings
from mimir_mcp.evaluation.finetune import (
    BLEND_GRID,
    DevQuery,
    TrainingPlan,
    choose_blend,
    mine_pairs,
    run_finetune,
    split_queries,
)
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.rerank.blend import load_blend

from ..conftest import run_cli


@pytest.mark.anyio
async def test_finetune_saves_a_model_the_server_loads(tiny_beir, settings, tmp_path):
    from sentence_transformers import CrossEncoder  # here, not at the top: a unit run never loads torch

    output = tmp_path / "reranker"
    plan = TrainingPlan(epochs=1, hard_negatives=2, random_negatives=1, batch_size=8, max_length=64)
    report = await run_finetune(tiny_beir, output, settings=settings, plan=plan)
    # 5 train queries, one held out for the blend weight: 4 positives, 2 mined and 1 random negative each.
    assert report["train_queries"] == 4
    assert report["positives"] == 4 and report["pairs"] == 16
    assert set(report["timings"]) == {"index_s", "mine_s", "train_s", "blend_s", "eval_s"}
    blend = report["blend"]
    assert blend["dev_queries"] == 1 and set(blend["dev_ndcg@10"]) == {f"{w:g}" for w in BLEND_GRID}
    assert blend["dev_ndcg@10"][f"{blend['blend']:g}"] == max(blend["dev_ndcg@10"].values())
    assert load_blend(output) == blend["blend"]
    evaluation = report["evaluation"]
    assert evaluation["split"] == "test" and set(evaluation["methods"]) == {"hybrid", "hybrid+rerank"}
    assert "not_reranked" not in evaluation["methods"]["hybrid+rerank"]

    model = CrossEncoder(str(output), device="cpu")
    assert model.num_labels == 1 and model.max_length == 64
    scores = model.predict([("why do coral reefs bleach", "Coral reefs bleach"), ("q", "unrelated")])
    assert len(scores) == 2

    served = LocalCrossEncoder(RerankerSettings(model=str(output), backend="torch"))
    served.start()
    await served.wait_ready(60)
    assert served.status().state == "ready" and served.blend == blend["blend"]
    assert evaluation["reranker_blend"] == blend["blend"]


def test_split_queries_holds_out_a_seeded_disjoint_slice():
    queries = [(f"q{i}", f"text {i}") for i in range(20)]
    train, dev = split_queries(queries, 0.15, 12)
    assert len(dev) == 3 and len(train) == 17
    assert set(train).isdisjoint(dev) and set(train) | set(dev) == set(queries)
    assert split_queries(queries, 0.15, 12) == (train, dev)
    assert split_queries(queries, 0.0, 12) == (queries, [])
    assert split_queries(queries[:3], 0.5, 12) == (queries[:3], [])


def _dev(relevant: str, documents: list[str], fused_scores: list[float]) -> DevQuery:
    return DevQuery("q", {relevant: 1}, documents, documents, fused_scores)


def test_choose_blend_picks_the_weight_that_ranks_dev_best():
    # The hybrid ranks the relevant document last; a cross-encoder that puts it first should win outright.
    dev = [_dev("c", ["a", "b", "c"], [0.3, 0.2, 0.1])]
    weight, table = choose_blend(dev, [[0.1, 0.2, 0.9]])
    assert weight == 1.0 and table["1"] == 1.0 and table["0"] == pytest.approx(0.5)
    # A cross-encoder that is wrong everywhere: only the hybrid's own order (weight 0) is best.
    weight, table = choose_blend([_dev("a", ["a", "b", "c"], [0.3, 0.2, 0.1])], [[0.1, 0.2, 0.9]])
    assert table["0"] == 1.0 and table["1"] == pytest.approx(0.5)
    assert weight == max(w for w in BLEND_GRID if table[f"{w:g}"] == 1.0) < 1.0
    # Both right: a tie everywhere goes to the cross-encoder alone.
    weight, _ = choose_blend([_dev("a", ["a", "b"], [0.3, 0.2])], [[0.9, 0.1]])
    assert weight == 1.0


@pytest.mark.anyio
async def test_mined_negatives_are_never_relevant(tiny_beir, service):
    from mimir_mcp.evaluation.beir import load_dataset
    from mimir_mcp.evaluation.run import index_corpus

    dataset = load_dataset(tiny_beir, "train")
    service.start()
    owners = (await index_corpus(service, dataset, 256)).owners
    plan = TrainingPlan(hard_negatives=4, random_negatives=2, dev_fraction=0)
    rows = await mine_pairs(service, dataset, owners, plan)
    by_text = {doc.memory_text: doc.id for doc in dataset.corpus.values()}
    for query, document, label in zip(rows["query"], rows["document"], rows["label"], strict=True):
        query_id = next(qid for qid, text in dataset.queries.items() if text == query)
        relevant = by_text[document] in dataset.qrels[query_id]
        assert relevant == (label == 1.0)
    assert rows["label"].count(0.0) == 5 * (4 + 2)


def test_finetune_command(tiny_beir, tmp_path, cross_encoder_path):
    output = tmp_path / "cli-reranker"
    args = ["-m", "mimir_mcp", "finetune-reranker", "--dataset", str(tiny_beir), "--output", str(output)]
    smoke = [
        "--epochs",
        "1",
        "--hard-negatives",
        "1",
        "--random-negatives",
        "1",
        "--max-queries",
        "5",
        "--max-length",
        "64",
        "--eval-split",
        "",
    ]
    result = run_cli([*args, *smoke], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Five queries: one held out to choose the blend weight, four train.
    assert f"saved {output} (4 training queries, 12 pairs, 4 positive)" in result.stdout
    weight = load_blend(output)
    assert weight is not None and f"blend weight {weight:g} chosen on 1 held-out queries" in result.stdout
    assert (output / "config.json").exists()
    assert "mining hard negatives: 4/4" in result.stderr
