from mimir_mcp.fusion import rrf


def test_rrf_sums_reciprocal_ranks_exactly():
    fused = rrf({"dense": ["a", "b", "c"], "bm25": ["b", "d"]}, k=60)
    assert fused == [
        ("b", 1 / 62 + 1 / 61),
        ("a", 1 / 61),
        ("d", 1 / 62),
        ("c", 1 / 63),
    ]


def test_rrf_k_changes_the_scale_not_the_inputs():
    assert rrf({"x": ["a", "b"]}, k=1) == [("a", 1 / 2), ("b", 1 / 3)]


def test_rrf_ties_keep_first_seen_order():
    # a and b are each first in one arm: equal scores, and a was seen first.
    assert rrf({"dense": ["a"], "bm25": ["b"]}, k=60) == [("a", 1 / 61), ("b", 1 / 61)]


def test_rrf_weights_scale_each_arm():
    fused = rrf({"dense": ["a"], "bm25": ["b"]}, k=60, weights={"dense": 0.5, "bm25": 2.0})
    assert fused == [("b", 2.0 / 61), ("a", 0.5 / 61)]


def test_rrf_of_nothing_is_empty():
    assert rrf({"dense": [], "bm25": []}) == []


def test_rrf_rejects_k_below_one():
    import pytest

    with pytest.raises(ValueError):
        rrf({"dense": ["a"]}, k=0)
