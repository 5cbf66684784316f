"""LoCoMo conversations as an agent stores them: one namespace per conversation, through the real
remember/search path."""

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from mimir_mcp.evaluation.beir import load_dataset, write_dataset
from mimir_mcp.evaluation.locomo import is_locomo_folder, load_locomo, session_time
from mimir_mcp.evaluation.run import format_table, index_corpus, open_dataset, rank_query, run_eval

from ..conftest import SHARED, run_cli

LOCOMO_DEV = SHARED / "datasets" / "locomo-dev"


def test_load_locomo(tiny_locomo):
    dataset = load_locomo(tiny_locomo)
    assert dataset.name == tiny_locomo.parent.name  # the folder above conversations/
    assert list(dataset.corpus) == ["11-D1:1", "11-D1:2", "11-D1:3", "11-D2:1", "11-D2:2", "22-D1:1", "22-D1:2"]
    assert dataset.corpus["11-D1:2"].memory_text == (
        "Ben: Congrats! I started pottery classes on Tuesdays. [shares a photo of a clay bowl on a wheel]"
    )
    assert dataset.corpus["11-D2:2"].memory_text == "Ann: Wow! Biscuit learned to sit, by the way."
    assert dataset.corpus["22-D1:2"].memory_text == (
        "Dee: My puppy Biscuit chews everything. [shares a photo of a dog chewing a shoe]"
    )
    assert dataset.corpus["11-D2:1"].metadata == {
        "dia_id": "D2:1",
        "session": 2,
        "session_date": "7:00 pm on 1 June, 2023",
    }
    assert dataset.document_groups["11-D2:2"] == "11" and dataset.document_groups["22-D1:1"] == "22"
    # Each turn is stored at its session's time, a second after the turn before; the questions are asked a
    # day after the last session of all.
    assert dataset.document_times["11-D1:1"] == "2023-05-08T13:56:00+00:00"
    assert dataset.document_times["11-D1:3"] == "2023-05-08T13:56:02+00:00"
    assert dataset.document_times["22-D1:2"] == "2022-03-02T10:00:01+00:00"
    assert (dataset.now, dataset.tz) == ("2023-06-02T19:00:01+00:00", "UTC")
    # q2's only evidence id is malformed: dropped; q3's "D1:3; D9:9" keeps the turn that exists
    assert list(dataset.judged_queries) == ["11-q0", "11-q1", "11-q3", "11-q4", "22-q0", "22-q1"]
    assert dataset.qrels["11-q3"] == {"11-D1:3": 1}
    assert dataset.qrels["11-q4"] == {"11-D1:1": 1, "11-D2:2": 1}
    assert dataset.qrels["22-q0"] == {"22-D1:1": 1}
    assert dataset.query_groups == {q: q.split("-")[0] for q in dataset.judged_queries}
    assert dataset.query_categories == {
        "11-q0": "4",
        "11-q1": "1",
        "11-q3": "2",
        "11-q4": "5",
        "22-q0": "1",
        "22-q1": "4",
    }


def test_open_dataset_detects_the_format(tiny_locomo, tiny_beir, tmp_path):
    assert is_locomo_folder(tiny_locomo) and is_locomo_folder(tiny_locomo.parent)  # or the folder above
    assert not is_locomo_folder(tiny_beir)
    assert open_dataset(tiny_locomo.parent)[1] == "locomo"
    assert open_dataset(tiny_beir)[1] == "beir"
    with pytest.raises(ValueError, match="one namespace per conversation already"):
        open_dataset(tiny_locomo, group_prefix="-")
    with pytest.raises(ValueError, match="one split, 'test'"):
        open_dataset(tiny_locomo, "train")
    with pytest.raises(FileNotFoundError, match="no LoCoMo conversation"):
        open_dataset(tmp_path, dataset_format="locomo")


@pytest.mark.skipif(not LOCOMO_DEV.exists(), reason="needs the shared locomo-dev folder")
def test_locomo_matches_the_beir_copy():
    """The shared folder's BEIR copy was made from the same conversations: same texts, ids and judgements."""
    beir = load_dataset(LOCOMO_DEV, "test")
    locomo = load_locomo(LOCOMO_DEV / "conversations")
    assert len(locomo.corpus) == 2960 and len(locomo.judged_queries) == 1018
    with (LOCOMO_DEV / "corpus.jsonl").open() as lines:
        rows = [json.loads(line) for line in lines]
    by_id = {row["_id"]: row["text"] for row in rows}
    # a caption, and a turn whose text has a double space before it
    assert locomo.corpus["26-D7:14"].memory_text == by_id["26-D7:14"]
    assert by_id["26-D7:14"].endswith(
        "can't agree more! [shares a photography of two little girls sitting on the steps with a dog]"
    )
    assert (
        locomo.corpus["26-D1:1"].memory_text
        == by_id["26-D1:1"]
        == "Caroline: Hey Mel! Good to see you! How have you been?"
    )
    assert {doc_id: doc.memory_text for doc_id, doc in locomo.corpus.items()} == {
        doc_id: doc.memory_text for doc_id, doc in beir.corpus.items()
    }
    assert locomo.judged_queries == beir.judged_queries
    assert locomo.qrels == beir.qrels


@pytest.mark.anyio
async def test_questions_search_only_their_own_conversation(tiny_locomo, service):
    dataset = load_locomo(tiny_locomo)
    indexed = await index_corpus(service, dataset, 4)
    assert sorted(doc for docs in indexed.owners.values() for doc in docs) == sorted(dataset.corpus)
    for name in ("bm25", "dense", "hybrid", "hybrid+rerank"):
        for query_id in dataset.judged_queries:
            ranking, response = await rank_query(service, dataset, indexed.owners, name, query_id, rerank_top_k=10)
            own = dataset.query_groups[query_id]
            assert ranking and all(doc.startswith(f"{own}-") for doc in ranking), (name, query_id, ranking)
            assert {hit.namespace for hit in response.hits} == {own}
    _, response = await rank_query(service, dataset, indexed.owners, "bm25", "11-q1", rerank_top_k=10)
    assert response.hits[0].metadata == {"dia_id": "D2:1", "session": 2, "session_date": "7:00 pm on 1 June, 2023"}
    # Pooled in one namespace, the other conversation's marathon turn does come up: the grouping is what keeps it out.
    pooled = dataclasses.replace(dataset, document_groups={}, query_groups={})
    indexed = await index_corpus(service, pooled, 4)
    ranking, _ = await rank_query(service, pooled, indexed.owners, "bm25", "11-q1", rerank_top_k=10)
    assert "22-D1:1" in ranking


@pytest.mark.anyio
async def test_eval_locomo_matches_the_beir_copy_grouped_by_prefix(tiny_locomo, settings, tmp_path):
    methods = ("bm25", "dense", "hybrid")
    report = await run_eval(tiny_locomo, methods=methods, settings=settings, data_dir=tmp_path / "a")
    assert report["format"] == "locomo" and report["namespaces"] == 2
    assert report["queries"] == 6 and report["documents"] == 7 and report["empty_documents"] == 0
    for figures in report["methods"].values():
        assert list(figures["by_category"]) == ["1", "2", "4", "5"]
        assert [row["queries"] for row in figures["by_category"].values()] == [2, 1, 2, 1]
        assert all(0 <= row["recall@5"] <= row["recall@10"] <= 1 for row in figures["by_category"].values())
        assert figures["recall@5"] <= figures["recall@10"] <= figures["recall@50"] <= figures["recall@100"] == 1.0
        conversations = figures["by_namespace"]
        assert list(conversations) == ["11", "22"] and sum(row["queries"] for row in conversations.values()) == 6
        weighted = sum(row["queries"] * row["ndcg@10"] for row in conversations.values()) / 6
        assert weighted == pytest.approx(figures["ndcg@10"], abs=1e-3)
    table = format_table(report)
    assert "2 namespaces" in table and "R@5 / R@10 by question category" in table
    assert "nDCG@10 / R@5 / R@10 by namespace (queries):" in table

    # The same conversations as a BEIR folder, grouped by the id's prefix: the same figures.
    dataset = load_locomo(tiny_locomo)
    folder = tmp_path / "beir"
    write_dataset(folder, dataset.corpus.values(), dataset.judged_queries, dataset.qrels)
    pooled = await run_eval(folder, methods=methods, settings=settings, data_dir=tmp_path / "b", group_prefix="-")
    assert pooled["format"] == "beir" and pooled["namespaces"] == 2
    for name in methods:
        timings = ("p50_ms", "p99_ms", "by_category")
        figures = {key: value for key, value in report["methods"][name].items() if key not in timings}
        assert figures == {key: value for key, value in pooled["methods"][name].items() if key not in timings}, name


def test_eval_command_runs_locomo(tiny_locomo, tmp_path, cross_encoder_path):
    out = tmp_path / "figures.json"
    args = ["-m", "mimir_mcp", "eval", "--dataset", str(tiny_locomo), "--methods", "bm25", "--json", str(out)]
    result = run_cli(args, tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["format"] == "locomo" and document["namespaces"] == 2 and document["queries"] == 6
    figures = document["methods"]["bm25"]
    assert {"recall@5", "recall@10", "recall@50", "recall@100", "by_category"} <= set(figures)
    assert figures["by_category"]["1"]["queries"] == 2
    assert "R@50" in result.stdout and "by question category" in result.stdout and "by namespace" in result.stdout
    assert set(figures["by_namespace"]) == {"11", "22"}


def test_session_time_reads_the_releases_shape_only():
    assert session_time("12:19 am on 4 January, 2024") == datetime(2024, 1, 4, 0, 19, tzinfo=UTC)
    assert session_time(" 1:56  PM on 8 May, 2023") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert session_time("8 May 2023") is None and session_time("") is None
