import math

import pytest

from mimir_mcp.search.fusion import (
    arm_coverage,
    arm_weights,
    blend_scores,
    coverage_factor,
    rrf,
    score_gap_weight,
    top_z_weight,
    z_fusion,
)


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
    with pytest.raises(ValueError):
        rrf({"dense": ["a"]}, k=0)


def test_score_gap_weight_exact():
    assert score_gap_weight([10.0, 8.0, 5.0]) == pytest.approx(0.5**0.5)
    top10_only = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.09, 0.0]
    assert score_gap_weight(top10_only) == pytest.approx(0.9**0.5)
    assert score_gap_weight([4.0, 1.0]) == pytest.approx(0.75**0.5)
    assert score_gap_weight([0.5, 0.5]) == 0.05  # flat scores: floored, not silenced
    assert score_gap_weight([1.0]) is None  # one score: no evidence
    assert score_gap_weight([]) is None
    assert score_gap_weight([0.0, -1.0]) is None


def test_top_z_weight_exact():
    # rest [2, 1, 0]: mean 1, population sd sqrt(2/3); the top 4 stands 3 / sqrt(2/3) deviations above.
    z = 3 / math.sqrt(2 / 3)
    assert top_z_weight([4.0, 2.0, 1.0, 0.0]) == pytest.approx(z**2)
    assert top_z_weight([4.0, 2.0, 1.0, 0.0], power=1.0) == pytest.approx(z)
    # The scale of an arm's scores does not matter, only how far its best stands out.
    assert top_z_weight([400.0, 200.0, 100.0, 0.0]) == pytest.approx(z**2)
    # A best score that does not stand out (or sits below the rest's mean) is floored, not silenced.
    assert top_z_weight([1.0, 2.0, 0.0]) == pytest.approx(0.05**2)
    assert top_z_weight([3.0, 1.0, 1.0]) is None  # the rest are all equal: no spread to measure against
    assert top_z_weight([2.0, 1.0]) is None  # too few scores
    assert top_z_weight([]) is None


def test_top_z_weight_separates_a_standout_from_flat_scores():
    standout = [0.9] + [0.30 - 0.001 * i for i in range(99)]
    flat = [0.40 - 0.001 * i for i in range(100)]
    assert top_z_weight(standout) > 100 * top_z_weight(flat)


def test_arm_weights_exact():
    z = 3 / math.sqrt(2 / 3)
    weights = arm_weights({"dense": [0.8, 0.6], "bm25": [4.0, 1.0]}, confidence="score_gap")
    assert weights == pytest.approx({"dense": 0.5, "bm25": 0.75**0.5})
    assert arm_weights({"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [1.0, 2.0, 0.0]}) == pytest.approx(
        {"dense": z**2, "bm25": 0.05**2}
    )
    assert arm_weights({"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [1.0, 2.0, 0.0]}, z_power=1.0) == pytest.approx(
        {"dense": z, "bm25": 0.05}
    )
    # an arm without evidence takes the mean of the others
    assert arm_weights({"dense": [0.8, 0.6], "bm25": [3.0]}, confidence="score_gap") == pytest.approx(
        {"dense": 0.5, "bm25": 0.5}
    )
    assert arm_weights({"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [3.0]}) == pytest.approx({"dense": z**2, "bm25": z**2})
    assert arm_weights({"dense": [], "bm25": []}) == {"dense": 1.0, "bm25": 1.0}
    # fixed per-arm weights multiply
    assert arm_weights(
        {"dense": [0.8, 0.6], "bm25": [4.0, 1.0]}, {"bm25": 2.0}, confidence="score_gap"
    ) == pytest.approx({"dense": 0.5, "bm25": 2 * 0.75**0.5})


def test_coverage_factor_exact():
    assert coverage_factor(0.5, 4.0) == pytest.approx(0.0625)
    assert coverage_factor(0.6, 3.0) == pytest.approx(0.216)
    assert coverage_factor(1.7, 4.0) == 1.0  # BM25 can beat the average-document score: clipped to 1
    assert coverage_factor(-0.2, 2.0) == pytest.approx(0.05**2)  # floored, not silenced
    assert coverage_factor(None, 4.0) == 1.0  # unknown: no change
    assert coverage_factor(0.3, 0.0) == 1.0  # power 0 turns it off


def test_arm_coverage_exact():
    scores = {"dense": [0.7, 0.5], "bm25": [6.0, 2.0], "context": [9.0]}
    assert arm_coverage(scores, {"bm25": 8.0, "context": 12.0}) == {"dense": 0.7, "bm25": 0.75, "context": 0.75}
    # no hits; nothing attainable
    assert arm_coverage({"dense": [], "bm25": [6.0]}, {"bm25": 0.0}) == {"dense": None, "bm25": None}
    assert arm_coverage({"dense": [0.4], "bm25": []}, {"bm25": 3.0}) == {"dense": 0.4, "bm25": None}


def test_arm_weights_raise_each_arm_s_coverage_to_its_power_exactly():
    z = 3 / math.sqrt(2 / 3)  # top_z of [4, 2, 1, 0]: the rest have mean 1 and sd sqrt(2/3)
    scores = {"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [4.0, 2.0, 1.0, 0.0]}
    powers = {"dense": 3.0, "bm25": 4.0}
    weights = arm_weights(scores, coverage={"dense": 0.6, "bm25": 0.5}, coverage_power=powers)
    assert weights == pytest.approx({"dense": z**2 * 0.6**3, "bm25": z**2 * 0.5**4})
    # the same z-scores, but BM25's best hit matches a fraction of the query: dense leads
    assert weights["dense"] > 3 * weights["bm25"]
    # powers per arm, fixed weights and the no-evidence fallback combine; an arm without a power ignores coverage
    assert arm_weights(
        {"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [3.0]},
        {"bm25": 2.0},
        coverage={"dense": 0.5, "bm25": 0.1},
        coverage_power={"dense": 1.0},
    ) == pytest.approx({"dense": z**2 * 0.5, "bm25": 2 * z**2})
    # without coverage, or without powers, the stand-out alone
    assert arm_weights(scores, coverage_power=powers) == pytest.approx(arm_weights(scores))
    assert arm_weights(scores, coverage={"dense": 0.6, "bm25": 0.5}) == pytest.approx(arm_weights(scores))


def test_z_fusion_adds_standardized_scores_exactly():
    # dense [0.9, 0.5, 0.4]: min 0.4, population sd sqrt(0.14/3); bm25 [6, 2]: min 2, sd 2
    sd_dense = math.sqrt(((0.9 - 0.6) ** 2 + (0.5 - 0.6) ** 2 + (0.4 - 0.6) ** 2) / 3)
    fused = z_fusion(
        {"dense": [("a", 0.9), ("b", 0.5), ("c", 0.4)], "bm25": [("b", 6.0), ("d", 2.0)]}, weights={"dense": 2.0}
    )
    expected = {"a": 2 * 0.5 / sd_dense, "b": 2 * 0.1 / sd_dense + 2.0, "c": 0.0, "d": 0.0}
    assert dict(fused) == pytest.approx(expected)
    assert [item for item, _ in fused] == ["a", "b", "c", "d"]  # c and d tie at 0: first seen first
    # one candidate, or equal scores: each counts 1 (times the weight); an empty arm adds nothing
    assert z_fusion({"dense": [("a", 0.3)], "bm25": [("b", 5.0), ("c", 5.0)], "context": []}) == [
        ("a", 1.0),
        ("b", 1.0),
        ("c", 1.0),
    ]


def test_z_fusion_divides_an_arm_on_a_fixed_scale_by_its_spread_exactly():
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.4)]
    bm25 = [("b", 6.0), ("d", 2.0)]  # min 2, population sd 2
    fused = z_fusion({"dense": dense, "bm25": bm25}, weights={"dense": 2.0}, units={"dense": 0.1})
    assert dict(fused) == pytest.approx({"a": 2 * 0.5 / 0.1, "b": 2 * 0.1 / 0.1 + 2.0, "c": 0.0, "d": 0.0})
    # the same cosines twice as far apart count twice as much; standardized, they would count the same
    narrow, wide = [("a", 0.5), ("b", 0.25), ("c", 0.2)], [("a", 0.8), ("b", 0.3), ("c", 0.2)]
    assert dict(z_fusion({"dense": wide}, units={"dense": 0.1}))["a"] == pytest.approx(6.0)
    assert dict(z_fusion({"dense": narrow}, units={"dense": 0.1}))["a"] == pytest.approx(3.0)
    assert dict(z_fusion({"dense": wide}))["a"] == pytest.approx(dict(z_fusion({"dense": narrow}))["a"])
    # equal scores still give each candidate 1
    assert z_fusion({"dense": [("a", 0.3), ("b", 0.3)]}, units={"dense": 0.1}) == [("a", 1.0), ("b", 1.0)]


def test_top_z_weight_counts_the_stand_out_in_a_unit_when_given():
    scores = [0.9, 0.5, 0.4, 0.3]  # the rest: mean 0.4, population sd sqrt(0.02/3)
    assert top_z_weight(scores, power=1.0) == pytest.approx(0.5 / math.sqrt(0.02 / 3))
    assert top_z_weight(scores, power=1.0, unit=0.05) == pytest.approx(10.0)
    assert top_z_weight(scores, power=0.5, unit=0.05) == pytest.approx(10.0**0.5)
    # through arm_weights: only the arm named in units is counted in it
    weights = arm_weights({"dense": scores, "bm25": scores}, z_power=1.0, units={"dense": 0.05})
    assert weights == pytest.approx({"dense": 10.0, "bm25": 0.5 / math.sqrt(0.02 / 3)})


def test_blend_scores_standardizes_each_side_exactly():
    # rerank [3, 1, 2]: mean 2, population sd sqrt(2/3); first stage [0.3, 0.2, 0.1]: mean 0.2, sd sqrt(0.02/3).
    sd_r, sd_f = math.sqrt(2 / 3), math.sqrt(0.02 / 3)
    z_r = [1 / sd_r, -1 / sd_r, 0.0]
    z_f = [0.1 / sd_f, 0.0, -0.1 / sd_f]
    blended = blend_scores([3.0, 1.0, 2.0], [0.3, 0.2, 0.1], 0.25)
    assert blended == pytest.approx([0.25 * r + 0.75 * f for r, f in zip(z_r, z_f, strict=True)])
    assert blend_scores([3.0, 1.0, 2.0], [0.3, 0.2, 0.1], 1.0) == pytest.approx(z_r)
    assert blend_scores([3.0, 1.0, 2.0], [0.3, 0.2, 0.1], 0.0) == pytest.approx(z_f)


def test_blend_scores_edge_cases():
    assert blend_scores([], [], 0.5) == []
    # Equal scores carry no evidence: that side contributes nothing.
    assert blend_scores([0.7, 0.7], [2.0, 1.0], 0.5) == pytest.approx([0.5, -0.5])
    with pytest.raises(ValueError, match="same candidates"):
        blend_scores([1.0], [1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        blend_scores([1.0], [1.0], 1.5)
