"""The fusion policy: which arms run, their weights, the fusion, and its report, exactly."""

import math

import pytest

from mimir_mcp.config import SearchSettings
from mimir_mcp.lexical.analysis import count_words
from mimir_mcp.models import SearchFusion
from mimir_mcp.search.fusion import rrf, z_fusion
from mimir_mcp.search.policy import RRF_COVERAGE_POWER, ContextDecision, FusedList, FusionPolicy

SHIPPED = FusionPolicy()
Z = 3 / math.sqrt(2 / 3)  # top_z of [4, 2, 1, 0]: the rest have mean 1 and population sd sqrt(2/3)


class Statistics:
    """A namespace's coherence and mean length, counting how often each is read."""

    def __init__(self, coherence: float | None, mean_terms: float | None) -> None:
        self.values = coherence, mean_terms
        self.reads: list[str | None] = []

    def coherence(self, namespace: str | None = None) -> float | None:
        self.reads.append(namespace)
        return self.values[0]

    def mean_length(self, namespace: str | None = None) -> float | None:
        return self.values[1]


def test_the_shipped_policy_and_the_settings_it_is_built_from():
    assert SHIPPED == FusionPolicy(
        method="zscore",
        rrf_k=10,
        confidence=0.5,
        dense_unit_share=0.25,
        dense_weight=1.0,
        bm25_weight=1.0,
        context_weight=2.0,
        context="auto",
        context_min_coherence=0.05,
        context_max_terms=50.0,
        context_query_words=4,
    )
    assert RRF_COVERAGE_POWER == {"dense": 3.0, "bm25": 4.0, "context": 4.0}
    assert FusionPolicy.from_settings(SearchSettings()) == SHIPPED
    assert FusionPolicy.from_settings(SearchSettings(context="on")) == FusionPolicy(context="on")
    assert SHIPPED.describe() == "scaled scores"
    assert FusionPolicy(method="equal").describe() == "RRF (equal)"


def test_the_context_rule_wants_a_coherent_namespace_of_short_memories_or_a_keyword_query():
    """Search and research/fusion_loo.py both decide with ``context_runs``."""
    plain = FusionPolicy(context_query_words=None)  # no keyword exception
    no_length = FusionPolicy(context_max_terms=None, context_query_words=None)
    assert plain.context_runs(0.08, 20.0, None)  # a conversation
    assert not plain.context_runs(0.09, 117.0, None)  # prose stored in order: coherent, long
    assert no_length.context_runs(0.09, 117.0, None)  # without the length test
    assert not plain.context_runs(0.02, 8.0, None)  # short but unrelated memories
    assert plain.context_runs(0.05, 50.0, None)  # both bounds included
    assert not plain.context_runs(None, 20.0, None)  # too few memories to measure
    assert not plain.context_runs(0.08, None, None)
    assert no_length.context_runs(0.08, None, None)  # no length test: the length is not needed
    # the keyword-query exception: in a coherent namespace of long memories, a query of at most 4 words
    assert SHIPPED.context_runs(0.09, 117.0, 4)  # "operator, precedence" asked of a manual
    assert not SHIPPED.context_runs(0.09, 117.0, 5)  # a question in a sentence
    assert not plain.context_runs(0.09, 117.0, 2)  # no exception
    assert not SHIPPED.context_runs(0.09, 117.0, None)  # words not counted
    assert not SHIPPED.context_runs(0.02, 117.0, 1)  # not coherent: no exception either
    assert SHIPPED.context_runs(0.08, 20.0, 12)  # short memories: any query
    assert FusionPolicy(context_min_coherence=0.1).context_runs(0.08, 20.0, 2) is False
    # 'on' and 'off' overrule the rule
    assert FusionPolicy(context="on").context_runs(None, None, None)
    assert not FusionPolicy(context="off").context_runs(0.5, 10.0, 1)


def test_a_query_s_words_as_the_context_rule_counts_them():
    asked = ("exit status", "  operator,  precedence ", "How do I copy a file?", "")
    assert [count_words(q) for q in asked] == [2, 2, 6, 0]
    # Chinese and Japanese are written without spaces: a word per two characters, other letters beside them one
    # more, punctuation none; Korean is spaced and counted as English is.
    asked = (
        "会議はいつ決まりましたか",
        "会议什么时候决定的",
        "会议 日期",
        "Python3で会議",
        "会議はいつ？",
        "회의는 언제 결정되었나요",
    )
    assert [count_words(q) for q in asked] == [6, 5, 2, 3, 3, 3]
    manual = Statistics(0.09, 117.0)
    assert SHIPPED.decide_context("会议 日期", "perl", manual) == ContextDecision(True, 0.09, 117.0, 2)
    assert SHIPPED.decide_context("会議はいつ決まりましたか", "perl", manual) == ContextDecision(False, 0.09, 117.0, 6)


def test_the_decision_measures_the_namespace_only_where_it_is_needed():
    chat = Statistics(0.08, 20.0)
    assert SHIPPED.decide_context("where was the wedding?", "chat", chat) == ContextDecision(True, 0.08, 20.0, 4)
    assert chat.reads == ["chat"]
    # off: nothing measured, the query still counted; no lexical arm (no statistics): nothing measured either
    assert FusionPolicy(context="off").decide_context("a b c", "chat", chat) == ContextDecision(False, None, None, 3)
    assert SHIPPED.decide_context("a b c", "chat", None) == ContextDecision(False, None, None, 3)
    assert chat.reads == ["chat"]
    # on: measured (the response reports it) and run whatever it says
    facts = Statistics(0.01, 8.0)
    assert FusionPolicy(context="on").decide_context("a", None, facts) == ContextDecision(True, 0.01, 8.0, 1)
    assert facts.reads == [None]


def test_which_arms_run():
    every = ("dense", "bm25", "context")
    assert FusionPolicy.arms(every, True) == every
    assert FusionPolicy.arms(every, False) == ("dense", "bm25")
    assert FusionPolicy.arms(("bm25", "dense"), True) == ("dense", "bm25")  # in their fixed order
    # evaluation measures the context arm alone, whatever the rule says
    assert FusionPolicy.arms(("context",), False) == ("context",)
    assert FusionPolicy.arms(("bm25", "context"), False) == ("bm25",)
    assert FusionPolicy.arms(("dense",), True) == ("dense",)


def test_zscore_weighs_each_arm_by_the_square_root_of_its_stand_out_times_coverage_exactly():
    scores = {"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [4.0, 2.0, 1.0, 0.0], "context": [1.0, 2.0, 0.0]}
    weights = SHIPPED.weights(scores, {"dense": 0.64, "bm25": 0.25, "context": 2.0})
    # the square root of z times coverage; the context arm's deviations count twice; its best hit is
    # below its mean: z floored at 0.05; its coverage is clipped to 1 (the dense arm's scale is the fusion's)
    assert weights == pytest.approx({"dense": (Z * 0.64) ** 0.5, "bm25": (Z * 0.25) ** 0.5, "context": 2 * 0.05**0.5})
    # confidence 1: z times coverage, as before; 0: the fixed weights alone, whatever the scores
    assert FusionPolicy(confidence=1.0).weights(scores, {"dense": 0.64, "bm25": 0.25, "context": 2.0}) == (
        pytest.approx({"dense": Z * 0.64, "bm25": Z * 0.25, "context": 2 * 0.05})
    )
    assert FusionPolicy(confidence=0.0).weights(scores, {"dense": 0.64, "bm25": 0.25, "context": 2.0}) == (
        pytest.approx({"dense": 1.0, "bm25": 1.0, "context": 2.0})
    )
    # the lab's knobs: the exponent, fixed weights
    tuned = FusionPolicy(confidence=2.0, dense_weight=3.0, bm25_weight=2.0, context_weight=0.5)
    assert tuned.weights(scores, {"dense": 0.64, "bm25": 0.25, "context": 2.0}) == pytest.approx(
        {"dense": 3 * (Z * 0.64) ** 2, "bm25": 2 * (Z * 0.25) ** 2, "context": 0.5 * 0.05**2}
    )


def test_the_rrf_methods_weigh_exactly():
    scores = {"dense": [4.0, 2.0, 1.0, 0.0], "bm25": [4.0, 2.0, 1.0, 0.0]}
    coverage = {"dense": 0.6, "bm25": 0.5}
    # coverage: the stand-out squared times coverage cubed (dense) or to the fourth (BM25); no dense scale
    assert FusionPolicy(method="coverage").weights(scores, coverage) == pytest.approx(
        {"dense": Z**2 * 0.6**3, "bm25": Z**2 * 0.5**4}
    )
    # top_z: the stand-out squared, coverage ignored; score_gap: sqrt of the top-1/top-n drop
    assert FusionPolicy(method="top_z").weights(scores, coverage) == pytest.approx({"dense": Z**2, "bm25": Z**2})
    gap = FusionPolicy(method="score_gap").weights({"dense": [0.8, 0.6], "bm25": [4.0, 1.0]}, coverage)
    assert gap == pytest.approx({"dense": 0.5, "bm25": 0.75**0.5})
    # equal: the fixed weights as they are, for the arms that ran
    assert FusionPolicy(method="equal", bm25_weight=2.0).weights(scores, coverage) == {"dense": 1.0, "bm25": 2.0}


def test_fuse_weighs_and_fuses_exactly():
    dense = [(f"d{i}", 0.9 - 0.05 * i) for i in range(8)]
    bm25 = [(f"d{7 - i}", 8.0 - i) for i in range(8)]
    arms = {"dense": dense, "bm25": bm25}
    fused = SHIPPED.fuse(arms, {"bm25": 10.0}, cosine_spread=0.1)
    scores = {"dense": [s for _, s in dense], "bm25": [s for _, s in bm25]}
    coverage = {"dense": 0.9, "bm25": 0.8}
    unit = {"dense": 0.25 * 0.1}  # a quarter of the namespace's cosine spread
    assert SHIPPED.dense_units(0.1) == pytest.approx(unit)
    assert fused.coverage == pytest.approx(coverage)
    assert fused.weights == SHIPPED.weights(scores, fused.coverage, SHIPPED.dense_units(0.1))
    assert fused.context is False
    assert fused.dense_unit == pytest.approx(0.025)
    assert fused.order == z_fusion(arms, weights=fused.weights, units=SHIPPED.dense_units(0.1))
    assert [item for item, _ in fused.order] == [f"d{i}" for i in range(8)]  # the dense arm leads throughout
    # the dense arm's stand-out counted in the unit too: d0 is 0.2 above the mean of the rest, 8 units
    rest = [0.9 - 0.05 * i for i in range(1, 8)]
    stand_out = (0.9 - sum(rest) / 7) / 0.025
    assert fused.weights["dense"] == pytest.approx((stand_out * 0.9) ** 0.5)
    # the cosines over 0.025: d0 stands 0.35 above the last, as much as 14 of BM25's deviations
    alone = SHIPPED.fuse({"dense": dense}, {}, cosine_spread=0.1)
    assert dict(alone.order)["d0"] == pytest.approx(alone.weights["dense"] * 0.35 / 0.025)
    # the same query in a namespace whose memories lie four times as far apart: its gaps count a quarter
    wide = SHIPPED.fuse({"dense": dense}, {}, cosine_spread=0.4)
    assert dict(wide.order)["d0"] == pytest.approx(wide.weights["dense"] * 0.35 / 0.1)
    assert wide.weights["dense"] == pytest.approx(alone.weights["dense"] / 2)  # the square root of a quarter
    # unmeasured (a namespace of few memories), or no unit share: standardized, like BM25
    for unmeasured in (
        SHIPPED.fuse(arms, {"bm25": 10.0}),
        FusionPolicy(dense_unit_share=None).fuse(arms, {"bm25": 10.0}, 0.1),
    ):
        assert unmeasured.dense_unit is None
        assert unmeasured.order == z_fusion(arms, weights=unmeasured.weights)
    # a wider unit, or fixed weights favouring BM25, and its order leads instead
    for policy in (FusionPolicy(dense_unit_share=10.0), FusionPolicy(confidence=0.0, dense_weight=0.01)):
        lexical = policy.fuse(arms, {"bm25": 10.0}, cosine_spread=0.1)
        assert [item for item, _ in lexical.order] == [f"d{7 - i}" for i in range(8)]
    # RRF: ranks only, k from the policy
    equal = FusionPolicy(method="equal", rrf_k=60).fuse(arms, {"bm25": 10.0})
    assert equal.order == rrf({arm: [i for i, _ in hits] for arm, hits in arms.items()}, k=60)
    assert equal.order[0][1] == pytest.approx(1 / 61 + 1 / 68)
    # where the context arm is among the lists, it is fused too, at its own weight
    with_context = SHIPPED.fuse({**arms, "context": bm25}, {"bm25": 10.0, "context": 10.0})
    assert with_context.context is True
    assert with_context.weights["context"] == pytest.approx(2 * with_context.weights["bm25"])


def test_the_report_states_the_decision_rounded():
    fused = FusedList(
        order=[("a", 1.0)],
        weights={"dense": 1.23456789, "bm25": 0.5},
        coverage={"dense": 0.87654321, "bm25": None},
        context=True,
        dense_unit=0.0351234567,
    )
    decision = ContextDecision(True, coherence=0.0812345678, mean_terms=21.456, query_words=3)
    assert SHIPPED.report(fused, decision) == SearchFusion(
        method="zscore",
        weights={"dense": 1.234568, "bm25": 0.5},
        coverage={"dense": 0.876543, "bm25": None},
        context=True,
        coherence=0.081235,
        mean_terms=21.46,
        query_words=3,
        dense_unit=0.035123,
    )
    rrf_fused = FusedList([("a", 0.1)], {"dense": 1.0}, {"dense": None}, False)
    assert FusionPolicy(method="equal", rrf_k=60).report(rrf_fused, ContextDecision(False)) == SearchFusion(
        method="equal", rrf_k=60, weights={"dense": 1.0}, coverage={"dense": None}
    )
