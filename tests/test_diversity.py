"""Maximal marginal relevance: exact selections on small hand-made vectors, and a naive reference on random ones."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from mimir_mcp.search.diversity import mmr

# Two near-duplicates (0 and 1, cosine 0.99), one unrelated (2), one halfway (3).
NEAR_DUPLICATES = np.array([[1.0, 0.0], [0.99, math.sqrt(1 - 0.99**2)], [0.0, 1.0], [0.6, 0.8]])


def test_zero_diversity_is_the_relevance_order():
    relevance = [0.2, 0.9, 0.5, 0.7]
    assert mmr(relevance, NEAR_DUPLICATES, top_k=4, diversity=0.0) == [1, 3, 2, 0]
    assert mmr(relevance, NEAR_DUPLICATES, top_k=2, diversity=0.0) == [1, 3]


def test_zero_diversity_keeps_input_order_on_ties():
    assert mmr([0.5, 0.9, 0.5, 0.9], NEAR_DUPLICATES, top_k=4, diversity=0.0) == [1, 3, 0, 2]


def test_half_diversity_skips_the_near_duplicate():
    # Rescaled relevance [1, 0.875, 0, 0.375]. After 0, the duplicate scores 0.5 * 0.875 - 0.5 * 0.99 = -0.0575,
    # the halfway item 0.5 * 0.375 - 0.5 * 0.6 = -0.1125 and the unrelated one 0.5 * 0 - 0.5 * 0 = 0.
    # After 2, the halfway item's penalty rises to 0.8 (-0.2125) and the duplicate comes third.
    relevance = [0.9, 0.85, 0.5, 0.65]
    assert mmr(relevance, NEAR_DUPLICATES, top_k=4, diversity=0.0) == [0, 1, 3, 2]
    assert mmr(relevance, NEAR_DUPLICATES, top_k=4, diversity=0.5) == [0, 2, 1, 3]
    assert mmr(relevance, NEAR_DUPLICATES, top_k=2, diversity=0.5) == [0, 2]


def test_small_diversity_keeps_the_near_duplicate():
    # At 0.1 the duplicate scores 0.9 * 0.875 - 0.1 * 0.99 = 0.6885, well above the unrelated item's 0.
    assert mmr([0.9, 0.85, 0.5, 0.65], NEAR_DUPLICATES, top_k=2, diversity=0.1) == [0, 1]


def test_full_diversity_takes_the_most_relevant_then_the_most_dissimilar():
    vectors = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    # 1 first (most relevant); then 3 (cosine -0.995 to 1); then 2 (max cosine 0.0995) before 0 (0.995).
    assert mmr([0.2, 0.9, 0.5, 0.1], vectors, top_k=4, diversity=1.0) == [1, 3, 2, 0]
    # Past the first pick relevance no longer counts.
    assert mmr([0.8, 0.9, 0.1, 0.0], vectors, top_k=4, diversity=1.0) == [1, 3, 2, 0]


def test_full_diversity_breaks_ties_by_input_order():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    # After 0: 1, 2 and 3 have max cosine 0, 0 and -1; 3 wins; then 1 and 2 tie at 0 and 1 goes first.
    assert mmr([1.0, 0.0, 0.0, 0.0], vectors, top_k=4, diversity=1.0) == [0, 3, 1, 2]


def test_top_k_larger_than_the_candidates_returns_them_all():
    assert mmr([0.9, 0.85, 0.5, 0.65], NEAR_DUPLICATES, top_k=10, diversity=0.5) == [0, 2, 1, 3]
    assert mmr([0.3], np.array([[1.0, 2.0]]), top_k=5, diversity=0.5) == [0]


def test_empty_inputs_and_zero_top_k():
    assert mmr([], np.zeros((0, 3)), top_k=5, diversity=0.5) == []
    assert mmr([0.9, 0.85, 0.5, 0.65], NEAR_DUPLICATES, top_k=0, diversity=0.5) == []


def test_row_lengths_do_not_matter():
    scaled = NEAR_DUPLICATES * np.array([[3.0], [0.25], [7.0], [100.0]])
    relevance = [0.9, 0.85, 0.5, 0.65]
    assert mmr(relevance, scaled, top_k=4, diversity=0.5) == [0, 2, 1, 3]
    assert mmr(relevance, scaled.astype(np.float32), top_k=4, diversity=0.5) == [0, 2, 1, 3]


def test_zero_row_has_similarity_zero_to_everything():
    vectors = np.array([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    # After 0: the zero row has max cosine 0, the item at 53 degrees 0.6, the opposite one -1.
    assert mmr([1.0, 0.0, 0.0, 0.0], vectors, top_k=4, diversity=1.0) == [0, 3, 1, 2]
    # A zero row picked first penalizes nothing, so the next pick is a tie that input order settles.
    assert mmr([0.0, 1.0, 0.0, 0.0], vectors, top_k=4, diversity=1.0) == [1, 0, 3, 2]


def test_equal_relevance_leaves_diversity_to_decide():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # All rescaled to 1: after 0, the copy scores 0.5 - 0.5 = 0 and the other 0.5 - 0 = 0.5.
    assert mmr([3.0, 3.0, 3.0], vectors, top_k=3, diversity=0.5) == [0, 2, 1]
    assert mmr([-7.0, -7.0, -7.0], vectors, top_k=3, diversity=0.5) == [0, 2, 1]
    assert mmr([3.0, 3.0, 3.0], vectors, top_k=3, diversity=0.0) == [0, 1, 2]


def test_relevance_scale_does_not_change_the_trade_off():
    # Logits, probabilities and fused scores of the same order and relative gaps choose the same.
    relevance = [0.9, 0.85, 0.5, 0.65]
    logits = [8.0 * score - 3.0 for score in relevance]
    assert mmr(logits, NEAR_DUPLICATES, top_k=4, diversity=0.5) == [0, 2, 1, 3]
    # Unscaled, the duplicate's 0.5 * 85 would swamp any cosine and it would come second.
    assert mmr([90.0, 85.0, 50.0, 65.0], NEAR_DUPLICATES, top_k=2, diversity=0.5) == [0, 2]


@pytest.mark.parametrize("diversity", [-0.1, 1.1, math.nan])
def test_diversity_outside_zero_one_is_refused(diversity: float):
    with pytest.raises(ValueError, match="diversity"):
        mmr([0.5, 0.4], np.eye(2), top_k=2, diversity=diversity)


def test_bad_shapes_and_values_are_refused():
    with pytest.raises(ValueError, match="one row per relevance score"):
        mmr([0.5, 0.4, 0.3], np.eye(2), top_k=2, diversity=0.5)
    with pytest.raises(ValueError, match="one row per relevance score"):
        mmr([0.5, 0.4], np.array([1.0, 0.0]), top_k=2, diversity=0.5)
    with pytest.raises(ValueError, match="top_k"):
        mmr([0.5, 0.4], np.eye(2), top_k=-1, diversity=0.5)
    with pytest.raises(ValueError, match="finite"):
        mmr([0.5, math.nan], np.eye(2), top_k=2, diversity=0.5)
    with pytest.raises(ValueError, match="finite"):
        mmr([0.5, 0.4], np.array([[1.0, 0.0], [math.inf, 0.0]]), top_k=2, diversity=0.5)


def _reference_mmr(relevance: list[float], vectors: list[list[float]], top_k: int, diversity: float) -> list[int]:
    """MMR as the formula reads, in plain Python, to check the vectorized version against."""
    low, high = min(relevance), max(relevance)
    rescaled = [1.0 if high == low else (score - low) / (high - low) for score in relevance]
    lengths = [math.sqrt(sum(x * x for x in row)) for row in vectors]

    def cosine(i: int, j: int) -> float:
        if lengths[i] == 0 or lengths[j] == 0:
            return 0.0
        return sum(a * b for a, b in zip(vectors[i], vectors[j], strict=True)) / (lengths[i] * lengths[j])

    selected = [max(range(len(relevance)), key=lambda i: (relevance[i], -i))]
    while len(selected) < min(top_k, len(relevance)):
        rest = [i for i in range(len(relevance)) if i not in selected]

        def marginal(i: int) -> tuple[float, int]:
            penalty = max(cosine(i, j) for j in selected)
            return (1 - diversity) * rescaled[i] - diversity * penalty, -i

        selected.append(max(rest, key=marginal))
    return selected


def test_matches_the_formula_on_random_candidates():
    generator = random.Random(7)
    for _ in range(200):
        count = generator.randint(1, 12)
        relevance = [generator.uniform(-5, 5) for _ in range(count)]
        vectors = [[generator.gauss(0, 1) for _ in range(4)] for _ in range(count)]
        top_k = generator.randint(1, count + 2)
        diversity = generator.choice([0.0, 0.3, 0.5, 0.7, 1.0])
        expected = _reference_mmr(relevance, vectors, top_k, diversity)
        assert mmr(relevance, np.array(vectors), top_k=top_k, diversity=diversity) == expected
