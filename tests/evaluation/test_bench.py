"""`mimir-mcp bench --quick` as a smoke test, so the benchmark cannot rot; figures are not asserted."""

import json

import pytest

from mimir_mcp.evaluation.bench import Corpus, kendall_tau, percentile

from ..conftest import run_cli


def test_percentile_and_kendall_tau():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 4.8
    assert kendall_tau([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == 1.0
    assert kendall_tau([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == -1.0


def test_corpus_grows_beyond_its_documents(tmp_path):
    corpus = Corpus(tmp_path / "missing")
    assert corpus.source == "bundled sample text"
    grown = corpus.documents_for(len(corpus.documents) + 50)
    assert len(grown) == len(corpus.documents) + 50 and len(set(grown[-50:])) == 50


def test_bench_quick_reports_every_section(tmp_path, cross_encoder_path):
    out = tmp_path / "bench.json"
    args = ["-m", "mimir_mcp", "bench", "--quick", "--dataset", str(tmp_path / "no-dataset")]
    result = run_cli([*args, "--reranker", str(cross_encoder_path), "--json", str(out)], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["rerank"]["20"]) == {
        "p50_ms",
        "p95_ms",
        "stock_p50_ms",
        "speedup",
        "top10_agreement",
        "kendall_tau",
    }
    assert report["rerank"]["backend"] == "onnx-int8"  # the default backend, found in the run's copies and timed
    assert 0.0 <= report["rerank"]["20"]["top10_agreement"] <= 1.0
    assert set(report["lexical"]["1000"]) >= {"p50_ms", "rank_bm25_p50_ms", "speedup"}
    assert set(report["search"]["500"]) == {
        "p50_ms",
        "p95_ms",
        "rerank50_p50_ms",
        "rerank50_warm_p50_ms",
        "disk_bytes_per_memory",
        "restart_first_search_ms",
        "restart_hybrid_ms",
        "restart_rss_mb",
        "list_page_ms",
        "forget_ms",
        "forgotten",
        "export_per_s",
    }
    assert report["search"]["500"]["forgotten"] == 50 and report["search"]["500"]["restart_rss_mb"] > 0
    assert report["search"]["500"]["export_per_s"] > 0
    # Searches are timed on the configured backends once ready: the default ONNX copies of both models.
    assert report["search"]["query_backend"] == "onnx"
    assert report["search"]["reranker_backend"] == "onnx-int8"
    assert set(report["remember"]) >= {"per_s", "naive_per_s"}
    startup = report["startup"]
    assert set(startup) == {
        "empty_initialize_ms",
        "empty_first_search_ms",
        "empty_rss_mb",
        "initialize_ms",
        "first_search_ms",
        "first_search_dense",
        "first_hybrid_ms",
        "memories",
    }
    assert startup["memories"] == 100 and startup["first_hybrid_ms"] >= startup["first_search_ms"]
    assert report["memory"]["rss_mb"] > 0
    assert "rerank" in result.stdout and "initialize" in result.stdout


def test_bench_sizes_read_as_memory_counts_and_bad_ones_are_named():
    import argparse

    from mimir_mcp.cli.evaluate import memory_counts

    assert memory_counts("1k,10k,100k,1m") == [1_000, 10_000, 100_000, 1_000_000]
    assert memory_counts("2500, 0.5m") == [2_500, 500_000]
    for bad, says in (("ten", "'ten'"), ("50", "at least 100"), ("1k,", "''")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            memory_counts(bad)


def test_bench_keeps_its_stores_and_inserts_only_what_they_lack(tmp_path, cross_encoder_path):
    """`--stores DIR`: a million memories take an hour to insert; a second run reuses the store, adding back
    only the memories its restart forgot."""
    args = ["-m", "mimir_mcp", "bench", "--quick", "--only", "search", "--dataset", str(tmp_path / "no-dataset")]
    args += ["--reranker", str(cross_encoder_path), "--stores", str(tmp_path / "stores")]
    first = run_cli(args, tmp_path, cross_encoder_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "search 500: inserted 500" in first.stderr
    second = run_cli(args, tmp_path, cross_encoder_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "search 500: inserted 50" in second.stderr and "inserted 500" not in second.stderr
    assert (tmp_path / "stores" / "search-500").is_dir() and "forget 50 by filter" in second.stdout
