"""`mimir-mcp finetune-reranker` on a tiny slice: real mining, real CrossEncoderTrainer, a model that loads."""

import pytest
from sentence_transformers import CrossEncoder

from mimir_mcp.config import RerankerSettings
from mimir_mcp.evaluation.finetune import TrainingPlan, mine_pairs, run_finetune
from mimir_mcp.rerank import LocalCrossEncoder

from ..conftest import run_cli


@pytest.mark.anyio
async def test_finetune_saves_a_model_the_server_loads(tiny_beir, settings, tmp_path):
    output = tmp_path / "reranker"
    plan = TrainingPlan(epochs=1, hard_negatives=2, random_negatives=1, batch_size=8, max_length=64)
    report = await run_finetune(tiny_beir, output, settings=settings, plan=plan)
    # 5 train queries: 5 positives, 2 mined and 1 random negative each.
    assert report["positives"] == 5 and report["pairs"] == 20
    assert set(report["timings"]) == {"index_s", "mine_s", "train_s", "eval_s"}
    evaluation = report["evaluation"]
    assert evaluation["split"] == "test" and set(evaluation["methods"]) == {"rrf", "rrf+rerank"}
    assert "not_reranked" not in evaluation["methods"]["rrf+rerank"]

    model = CrossEncoder(str(output), device="cpu")
    assert model.num_labels == 1 and model.max_length == 64
    scores = model.predict([("why do coral reefs bleach", "Coral reefs bleach"), ("q", "unrelated")])
    assert len(scores) == 2

    served = LocalCrossEncoder(RerankerSettings(model=str(output), backend="torch"))
    served.start()
    await served.wait_ready(60)
    assert served.status().state == "ready"


@pytest.mark.anyio
async def test_mined_negatives_are_never_relevant(tiny_beir, service):
    from mimir_mcp.evaluation.beir import load_dataset
    from mimir_mcp.evaluation.run import index_corpus

    dataset = load_dataset(tiny_beir, "train")
    service.start()
    owners = await index_corpus(service, dataset, 256)
    rows = await mine_pairs(service, dataset, owners, TrainingPlan(hard_negatives=4, random_negatives=2))
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
        "3",
        "--max-length",
        "64",
        "--eval-split",
        "",
    ]
    result = run_cli([*args, *smoke], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"saved {output} (9 pairs, 3 positive)" in result.stdout
    assert (output / "config.json").exists()
    assert "mining hard negatives: 3/3" in result.stderr
