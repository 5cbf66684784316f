"""Metrics against hand-computed values."""

import pytest

from mimir_mcp.evaluation.metrics import dcg, mean, median, mrr_at_k, ndcg_at_k, recall_at_k


def test_dcg_linear_gain():
    # 3/log2(2) + 2/log2(3) + 0 + 1/log2(5)
    assert dcg([3, 2, 0, 1]) == pytest.approx(3 + 1.2618595071429148 + 0.43067655807339306, abs=1e-12)


def test_ndcg_binary():
    # DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) = 1.6309297535714575
    assert ndcg_at_k(["d1", "d2", "d3"], {"d1": 1, "d3": 1}, 10) == pytest.approx(0.9197207891481876, abs=1e-12)


def test_ndcg_graded_and_cut_off():
    # ranking b, a with a=2, b=1: DCG = 1 + 2/log2(3); IDCG = 2 + 1/log2(3)
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx(0.8597186998521972, abs=1e-12)
    # only the first k count: the relevant document at rank 3 is outside k=2
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert ndcg_at_k(["a"], {"a": 1}, 10) == 1.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 1}, 10) == pytest.approx(0.6309297535714575, abs=1e-12)


def test_recall_and_mrr():
    assert recall_at_k(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0
    assert mrr_at_k(["x", "y", "a"], {"a": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert mrr_at_k(["a", "b"], {"b": 1, "a": 1}, 10) == 1.0


def test_median():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert median([]) == 0.0


def test_mean():
    assert mean([1.0, 0.0, 0.5]) == 0.5
    assert mean([0.1] * 10) == 0.1  # summed exactly (fsum): plain sum() would give 0.09999999999999999
    assert mean([]) == 0.0
