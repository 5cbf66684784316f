"""`mimir-mcp eval` on a tiny BEIR folder, through the real remember/search path."""

import json

import pytest

from mimir_mcp.evaluation.beir import Dataset, Document, group_by_prefix, load_dataset, write_dataset
from mimir_mcp.evaluation.run import (
    METHODS,
    NAMESPACE_COLUMNS,
    Method,
    by_label,
    fit_to_bytes,
    format_table,
    method,
    namespace_lines,
    parse_methods,
    run_eval,
)

from ..conftest import run_cli


def test_load_dataset(tiny_beir):
    dataset = load_dataset(tiny_beir, "test")
    assert dataset.name == tiny_beir.name
    assert len(dataset.corpus) == 12 and len(dataset.queries) == 8
    assert dataset.qrels == {"q-monsoon": {"d-monsoon": 1}, "q-tsunami": {"d-tsunami": 1}, "q-geyser": {"d-geyser": 1}}
    assert list(dataset.judged_queries) == ["q-monsoon", "q-tsunami", "q-geyser"]
    assert dataset.corpus["d-coral"].memory_text.startswith("Coral\nCoral reefs bleach")
    assert "\x96" not in dataset.corpus["x0"].memory_text  # stray control characters are cleaned


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        load_dataset(tmp_path, "test")


def test_parse_methods():
    assert parse_methods("bm25, hybrid") == ["bm25", "hybrid"]
    assert parse_methods("hybrid+mmr0.3,hybrid+rerank@200,hybrid+rerank+mmr0.5@50") == [
        "hybrid+mmr0.3",
        "hybrid+rerank@200",
        "hybrid+rerank+mmr0.5@50",
    ]
    assert method("hybrid+rerank+mmr0.5@50") == Method(METHODS["hybrid"].arms, True, diversity=0.5, deadline_ms=50)
    assert method("hybrid+rerank+auto+recent0.25@90") == Method(
        METHODS["hybrid"].arms, True, deadline_ms=90, when="auto", prefer_recent=0.25
    )
    assert method("bm25+when") == Method(("bm25",), False, when="given")
    # The hybrid's name from when its fusion was RRF still reads, suffixes and all; only as the name.
    assert parse_methods("rrf,rrf+rerank+mmr0.5@50") == ["rrf", "rrf+rerank+mmr0.5@50"]
    assert method("rrf+rerank+mmr0.5@50") == method("hybrid+rerank+mmr0.5@50")
    assert method("rrf") == METHODS["hybrid"]
    for wrong in (
        "rrfx",
        "bm25+rrf",
        "bm25,magic",
        "hybrid+mmr0",
        "hybrid+mmr1.5",
        "bm25+mmr0.3",
        "hybrid@5",
        "hybrid@soon",
        "hybrid+recent2",
        "hybrid+soon",
    ):
        with pytest.raises(ValueError, match="unknown method"):
            parse_methods(wrong)


@pytest.mark.anyio
async def test_run_eval_reports_every_method(tiny_beir, settings, tmp_path):
    report = await run_eval(
        tiny_beir, split="test", methods=tuple(METHODS), settings=settings, data_dir=tmp_path / "ix"
    )
    assert report["queries"] == 3 and report["documents"] == 12
    assert set(report["methods"]) == set(METHODS)
    for name, figures in report["methods"].items():
        recalls = {"recall@5", "recall@10", "recall@50", "recall@100"}
        assert set(figures) == {"ndcg@10", *recalls, "mrr@10", "p50_ms", "p99_ms"}, name
        assert figures["recall@100"] == 1.0  # 12 documents: everything relevant is in the top 100
        assert figures["recall@5"] <= figures["recall@10"] <= figures["recall@50"] <= figures["recall@100"]
        assert 0 < figures["ndcg@10"] <= 1 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    # Each question shares words and meaning with exactly one document: both arms put it first.
    assert report["methods"]["bm25"]["ndcg@10"] == 1.0
    assert report["methods"]["dense"]["ndcg@10"] == 1.0
    assert report["methods"]["hybrid"]["mrr@10"] == 1.0
    assert "not_reranked" not in report["methods"]["hybrid+rerank"]
    assert report["methods"]["bm25"]["recall@5"] == 1.0  # first, so in the top 5
    assert report["format"] == "beir" and report["namespaces"] == 0 and report["empty_documents"] == 0
    table = format_table(report)
    assert "hybrid+rerank" in table and "nDCG@10" in table and "R@50" in table


def test_fit_cuts_at_a_character_boundary():
    assert fit_to_bytes("short", 100) == "short"
    assert fit_to_bytes("aé" * 10, 3) == "aé"  # "a" is 1 byte, "é" 2
    assert fit_to_bytes("aé" * 10, 5) == "aéa"  # the second "é" would end at byte 6: dropped, not split
    assert fit_to_bytes("ab " + "c" * 10, 3) == "ab"  # trailing space dropped


@pytest.mark.anyio
async def test_eval_cuts_documents_longer_than_a_memory_may_be(settings, tmp_path, capsys):
    """One document over MIMIR_LIMITS_MAX_TEXT_BYTES must not stop an evaluation: it is cut and counted."""
    folder = tmp_path / "long"
    long_text = "Geysers erupt when groundwater boils under pressure. " + "é" * 400
    corpus = [Document("geyser", "Geyser", long_text), Document("tide", "Tide", "The moon pulls the oceans.")]
    write_dataset(folder, corpus, {"q1": "why do geysers erupt"}, {"q1": {"geyser": 1}})
    limited = settings.model_copy(update={"limits": settings.limits.model_copy(update={"max_text_bytes": 200})})
    report = await run_eval(folder, split="test", methods=("bm25",), settings=limited, data_dir=tmp_path / "ix")
    assert report["documents"] == 2 and report["methods"]["bm25"]["ndcg@10"] == 1.0
    assert "1 document(s) longer than 200 bytes were cut to fit" in capsys.readouterr().err


@pytest.mark.anyio
async def test_eval_skips_empty_documents(settings, tmp_path, capsys):
    """Cranfield has empty documents; `remember` refuses them, so they are skipped and counted."""
    folder = tmp_path / "empty"
    corpus = [
        Document("geyser", "Geyser", "Geysers erupt when groundwater boils under pressure."),
        Document("blank", "", "   "),
        Document("noise", "", "\x96\x00"),  # nothing left once control characters are cleaned
        Document("tide", "Tide", "The moon pulls the oceans."),
    ]
    write_dataset(folder, corpus, {"q1": "why do geysers erupt"}, {"q1": {"geyser": 1}})
    report = await run_eval(folder, split="test", methods=("bm25",), settings=settings, data_dir=tmp_path / "ix")
    assert report["documents"] == 4 and report["empty_documents"] == 2 and report["cut_documents"] == 0
    assert report["methods"]["bm25"]["ndcg@10"] == 1.0
    assert "2 empty document(s) were skipped" in capsys.readouterr().err
    assert "4 documents, 2 empty skipped" in format_table(report)


def test_group_by_prefix():
    corpus = {doc_id: Document(doc_id, "", "text") for doc_id in ("26-D1:1", "26-D1:2", "41-D1:1")}
    dataset = Dataset(
        "pooled", corpus, {"26-q0": "?", "41-q3": "?"}, {"26-q0": {"26-D1:2": 1}, "41-q3": {"41-D1:1": 1}}
    )
    grouped = group_by_prefix(dataset, "-")
    assert grouped.document_groups == {"26-D1:1": "26", "26-D1:2": "26", "41-D1:1": "41"}
    assert grouped.query_groups == {"26-q0": "26", "41-q3": "41"}
    with pytest.raises(ValueError, match="document id '26-D1:1' does not start with a group followed by '/'"):
        group_by_prefix(dataset, "/")
    bad = Dataset("bad", {"_x-1": Document("_x-1", "", "text")}, {}, {})
    with pytest.raises(ValueError, match="'_x' is not a valid namespace"):
        group_by_prefix(bad, "-")


def test_by_label_averages_each_label():
    per_query = {
        "a": {"recall@5": 1.0, "recall@10": 1.0},
        "b": {"recall@5": 0.0, "recall@10": 0.5},
        "c": {"recall@5": 0.5, "recall@10": 1.0},
    }
    assert by_label(per_query, {"a": "10", "b": "2", "c": "2"}, ("recall@5", "recall@10")) == {
        "2": {"queries": 2, "recall@5": 0.25, "recall@10": 0.75},
        "10": {"queries": 1, "recall@5": 1.0, "recall@10": 1.0},
    }
    assert by_label(per_query, {"a": "x"}, ("recall@5",)) == {
        "x": {"queries": 1, "recall@5": 1.0},
        "": {"queries": 2, "recall@5": 0.25},
    }


def test_namespace_lines_table_or_worst_and_best():
    def row(ndcg: float) -> dict[str, float]:
        return {"queries": 3, "ndcg@10": ndcg, "recall@5": ndcg, "recall@10": 1.0}

    few = {"methods": {"bm25": {"by_namespace": {"a": row(0.5), "b": row(0.25)}}, "dense": {}}}
    lines = namespace_lines(few)
    assert lines[0] == "nDCG@10 / R@5 / R@10 by namespace (queries):"
    assert lines[1].split() == ["a", "(3)", "b", "(3)"]
    assert lines[2].split() == ["bm25", "0.500/0.500/1.000", "0.250/0.250/1.000"] and len(lines) == 3
    many = {"methods": {"hybrid": {"by_namespace": {f"n{i}": row(i / 20) for i in range(NAMESPACE_COLUMNS + 1)}}}}
    lines = namespace_lines(many)
    assert lines[0].startswith(f"nDCG@10 / R@5 / R@10 by namespace, worst and best of {NAMESPACE_COLUMNS + 1}")
    assert lines[1].split() == ["hybrid", "n0:", "0.000/0.000/1.000", f"n{NAMESPACE_COLUMNS}:", "0.400/0.400/1.000"]
    assert namespace_lines({"methods": {"bm25": {"ndcg@10": 0.5}}}) == []


def test_eval_command_writes_json(tiny_beir, tmp_path, cross_encoder_path):
    out = tmp_path / "figures.json"
    args = ["-m", "mimir_mcp", "eval", "--dataset", str(tiny_beir), "--methods", "bm25,hybrid+rerank"]
    result = run_cli([*args, "--reranker", str(cross_encoder_path), "--json", str(out)], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["dataset"] == tiny_beir.name and document["queries"] == 3
    assert set(document["methods"]) == {"bm25", "hybrid+rerank"}
    assert document["methods"]["bm25"]["ndcg@10"] == 1.0
    assert "indexing" in result.stderr  # progress is shown
    assert "hybrid+rerank" in result.stdout


def test_eval_command_reports_a_missing_reranker(tiny_beir, tmp_path, cross_encoder_path):
    args = ["-m", "mimir_mcp", "eval", "--dataset", str(tiny_beir), "--methods", "hybrid,hybrid+rerank"]
    result = run_cli([*args, "--reranker", str(tmp_path / "nope")], tmp_path, cross_encoder_path)
    assert result.returncode == 1
    assert "hybrid+rerank: not run" in result.stdout and "does not exist" in result.stdout


def test_eval_command_names_a_bad_dataset(tmp_path, cross_encoder_path):
    result = run_cli(["-m", "mimir_mcp", "eval", "--dataset", str(tmp_path)], tmp_path, cross_encoder_path)
    assert result.returncode == 2
    assert "is not a BEIR-format folder: missing corpus.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.anyio
async def test_eval_stores_each_memory_at_its_time_and_reads_phrases_at_the_datasets_clock(settings, tmp_path):
    """``created_at`` per document and ``clock.json``: each memory is stored at its time and the queries are
    asked at ``now``; ``+when`` gives each query's phrase apart, ``+auto`` finds it in the text, ``+recent``
    blends recency. Two billing decisions match q-billing equally but for their time."""
    folder = tmp_path / "timed"
    stored = {
        "adyen": ("2026-12-08T10:00:00Z", "Billing decision: the invoices moved to Adyen."),
        "stripe": ("2026-12-02T10:00:00Z", "Billing decision: the invoices go through Stripe."),
        "paypal": ("2026-11-20T10:00:00Z", "Billing decision: the invoices go through PayPal."),
    }
    write_dataset(
        folder,
        [Document(key, "", text) for key, (_, text) in stored.items()],
        {},
        {"q-billing": {"stripe": 1}, "q-adyen": {"adyen": 1}},
    )
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({**row, "created_at": stored[row["_id"]][0]}) + "\n" for row in rows)
    )
    queries = [
        {"_id": "q-billing", "text": "billing invoices last week", "when": "last week", "plain": "billing invoices"},
        {"_id": "q-adyen", "text": "Adyen"},
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "clock.json").write_text(json.dumps({"now": "2026-12-09T15:30:00+00:00", "tz": "Europe/London"}))
    dataset = load_dataset(folder)
    assert dataset.document_times["paypal"] == "2026-11-20T10:00:00Z" and dataset.tz == "Europe/London"
    assert dataset.query_when == {"q-billing": "last week"} and dataset.query_plain == {"q-billing": "billing invoices"}
    methods = ("bm25+when", "bm25+auto", "bm25+recent1")
    report = await run_eval(folder, methods=methods, settings=settings, data_dir=tmp_path / "ix")
    figures = report["methods"]
    # The phrase, given apart or found in the query, leaves Stripe's decision alone for q-billing.
    assert figures["bm25+when"]["mrr@10"] == figures["bm25+auto"]["mrr@10"] == 1.0
    # Recency alone (weight 1) orders q-billing's three matches by age: Adyen, then Stripe; q-adyen has one.
    assert figures["bm25+recent1"]["mrr@10"] == 0.75
