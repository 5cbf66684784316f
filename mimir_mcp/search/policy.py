"""The fusion policy: the whole decision of how search combines its arms, in one object.

Which arms run for a query (dense, BM25, and BM25 reading each memory with its neighbours where the
namespace reads as a conversation), how much each counts for this query (how far its best hit stands
out, how fully it matches), and how their lists are fused (BM25's standardized scores and the cosines in
a unit from the namespace's cosine spread; RRF for comparison).
Search builds one ``FusionPolicy`` from its settings and calls it; research/ builds variants of it in
code and calls the same methods. The defaults are the shipped values, chosen leaving one collection
out (research/NOTES.md); the scoring math they call is the pure functions of ``fusion``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from mimir_mcp.config import SearchSettings
from mimir_mcp.lexical.analysis import count_words
from mimir_mcp.models import SearchFusion
from mimir_mcp.search.fusion import arm_coverage, arm_weights, rrf, z_fusion

K = TypeVar("K", bound=Hashable)

Arm = Literal["dense", "bm25", "context"]
ARMS: tuple[Arm, ...] = ("dense", "bm25", "context")
FusionMethod = Literal["zscore", "coverage", "top_z", "score_gap", "equal"]
ContextMode = Literal["auto", "on", "off"]

# The RRF ``coverage`` method's exponents of an arm's coverage in its weight (``fusion.coverage_factor``),
# chosen on SciFact, two WordNet sets and simulated weak arms; the other RRF methods ignore coverage.
RRF_COVERAGE_POWER: dict[str, float] = {"dense": 3.0, "bm25": 4.0, "context": 4.0}


class NamespaceStatistics(Protocol):
    """What the context rule reads of the namespaces a search reaches (a name, names, or None: all;
    ``LexicalIndex`` answers both)."""

    def coherence(self, scope: Sequence[str] | None = None) -> float | None: ...

    def mean_length(self, scope: Sequence[str] | None = None) -> float | None: ...


@dataclass(frozen=True)
class ContextDecision:
    """Whether the context rule calls for the context arm on this query, and what it read: the
    namespace's coherence and mean memory length (``None`` when not measured) and the query's words."""

    runs: bool
    coherence: float | None = None
    mean_terms: float | None = None
    query_words: int | None = None


@dataclass(frozen=True)
class FusedList(Generic[K]):
    """The fused first-stage order, best first, with what made it: each arm's weight for this query, its
    coverage, and the dense arm's unit."""

    order: list[tuple[K, float]]
    weights: dict[str, float]
    coverage: dict[str, float | None]
    context: bool  # whether the context arm was among the arms fused
    dense_unit: float | None = None  # the cosine the dense arm's scores were counted in; None: standardized


@dataclass(frozen=True)
class FusionPolicy:
    """How search fuses its arms; every parameter is a research knob with the shipped value as default."""

    method: FusionMethod = "zscore"
    """``zscore``: each arm's scores over its spread (``dense_unit_share``; BM25's standard deviation) added,
    weighted per query by ``confidence``. RRF weighted by the stand-out squared times coverage
    (``coverage``), by the stand-out alone (``top_z``), by the top-1/top-10 gap (``score_gap``), or plain
    (``equal``): comparisons kept for the lab."""
    rrf_k: int = 10
    """The RRF constant, for the RRF methods."""
    confidence: float = 0.5
    """Under ``zscore``, the exponent of each arm's per-query confidence in its weight: how many standard
    deviations its best hit stands above its other candidates times its coverage (``fusion.arm_weights``).
    0 weighs every query alike; 1 lets an arm that is sure of one hit outweigh the others; the square root
    keeps a weak arm from dragging the order down without letting one outlier decide it."""
    dense_unit_share: float | None = 0.25
    """Under ``zscore``, the dense arm's scores, and how far its best hit stands out, are counted in units of
    this share of the namespace's cosine spread (``LexicalIndex.cosine_spread`` of its memories), where BM25's
    are over their own standard deviation: a cosine means the same for every query, so a question the
    bi-encoder separates sharply (its answer far above the rest) moves the order further, and counts for
    more, than one whose candidates sit close together. Measured against the namespace's own memories,
    the unit follows its text and the model: in chat, whose turns lie far apart for the bi-encoder
    (0.13-0.15), a gap counts for less than among Wikipedia sentences that all sit close (0.08). BM25
    scores have no such scale. ``None``, or no spread measured (a namespace of few memories): standardized
    like the others."""
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    """Fixed per-arm weights, multiplying the per-query ones."""
    context_weight: float = 2.0
    """The context arm's fixed weight: BM25 over each memory read with its neighbours holds the memory's own
    words too, so where it runs it is the better lexical arm, and counts more than BM25 alone."""
    context: ContextMode = "auto"
    """``auto``: the context arm runs where ``context_runs`` says; ``on``: always; ``off``: never."""
    context_min_coherence: float = 0.05
    """The coherence (``LexicalIndex.coherence``) from which a namespace reads as a conversation."""
    context_max_terms: float | None = 50.0
    """... where its memories hold at most this many terms on average (their BM25 length): turns lean on
    the one before them; passages of prose stored in order are as coherent (0.08-0.09) but do not need
    their predecessor. ``None``: no length test."""
    context_query_words: int | None = 4
    """... or, in a namespace of longer memories, for a query of at most this many words: a keyword
    look-up ("exit status") names a topic its passage's neighbours hold, where a question in a sentence
    matches one passage's own words. Four words: the usual line between keyword and verbose queries
    (Bendersky and Croft, 2009), fixed before the collections that check it were built. ``None``: no
    such exception."""

    @classmethod
    def from_settings(cls, settings: SearchSettings) -> FusionPolicy:
        """The shipped policy under what a user may set: whether the context arm decides itself."""
        return cls(context=settings.context)

    # -- which arms run ---------------------------------------------------------------------------

    def context_runs(self, coherence: float | None, mean_terms: float | None, query_words: int | None) -> bool:
        """The context rule: under ``auto``, a namespace coherent enough (a conversation, a manual in
        order) whose memories are short enough (turns, not passages), or whose query is short enough (a
        keyword look-up). What a test needs unmeasured (``None``) does not pass it."""
        if self.context != "auto":
            return self.context == "on"
        if coherence is None or coherence < self.context_min_coherence:
            return False
        limit = self.context_max_terms
        short_memories = limit is None or (mean_terms is not None and mean_terms <= limit)
        most_words = self.context_query_words
        keyword_query = most_words is not None and query_words is not None and query_words <= most_words
        return short_memories or keyword_query

    def decide_context(
        self, query: str, scope: Sequence[str] | None, statistics: NamespaceStatistics | None
    ) -> ContextDecision:
        """``context_runs`` for ``query`` in the namespaces of ``scope`` (a name, names, or None: all),
        measuring them only where the mode needs it (coherence costs a sample of term sets);
        ``statistics`` None: no lexical arm runs, so nothing is measured."""
        words = count_words(query)
        if self.context == "off" or statistics is None:
            return ContextDecision(False, query_words=words)
        coherence, mean_terms = statistics.coherence(scope), statistics.mean_length(scope)
        return ContextDecision(self.context_runs(coherence, mean_terms, words), coherence, mean_terms, words)

    @staticmethod
    def arms(requested: Sequence[Arm], context_runs: bool) -> tuple[Arm, ...]:
        """The arms that run: those requested, the context arm only where the rule calls for it, or when it
        is the one arm asked for (evaluation measures it alone)."""
        alone = tuple(requested) == ("context",)
        return tuple(arm for arm in ARMS if arm in requested and (arm != "context" or context_runs or alone))

    # -- how much each counts, and the fusion -----------------------------------------------------

    def weights(
        self,
        scores: Mapping[str, Sequence[float]],
        coverage: Mapping[str, float | None] | None = None,
        units: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Each arm's weight for this query from its own ranked scores and coverage (``fusion.arm_weights``;
        the stand-out in the arm's unit where ``units`` names one), times its fixed weight; ``equal`` takes
        the fixed weights as they are."""
        fixed = {"dense": self.dense_weight, "bm25": self.bm25_weight, "context": self.context_weight}
        if self.method == "equal":
            return {arm: fixed[arm] for arm in scores}
        zscore = self.method == "zscore"
        if zscore:
            powers: dict[str, float] = dict.fromkeys(ARMS, self.confidence)
        else:
            powers = dict(RRF_COVERAGE_POWER) if self.method == "coverage" else {}
        return arm_weights(
            scores,
            fixed,
            confidence="score_gap" if self.method == "score_gap" else "top_z",
            z_power=self.confidence if zscore else 2.0,
            coverage=coverage,
            coverage_power=powers,
            units=units if zscore else None,
        )

    def dense_units(self, cosine_spread: float | None) -> dict[str, float] | None:
        """The dense arm's unit under ``zscore`` for a namespace of this cosine spread; None: standardized."""
        if self.method != "zscore" or self.dense_unit_share is None or not cosine_spread:
            return None
        return {"dense": self.dense_unit_share * cosine_spread}

    def fuse(
        self,
        arms: Mapping[str, Sequence[tuple[K, float]]],
        attainable: Mapping[str, float],
        cosine_spread: float | None = None,
    ) -> FusedList[K]:
        """The arms' ranked (id, score) lists fused: per-query weights from each arm's scores and coverage
        (a BM25 arm's over its ``attainable`` score), then ``zscore``'s scaled scores (the dense arm's in
        ``dense_units`` of the namespace's ``cosine_spread``), or RRF."""
        scores = {arm: [score for _, score in hits] for arm, hits in arms.items()}
        coverage = arm_coverage(scores, attainable)
        units = self.dense_units(cosine_spread)
        weights = self.weights(scores, coverage, units)
        if self.method == "zscore":
            order = z_fusion(arms, weights=weights, units=units)
        else:
            order = rrf({arm: [i for i, _ in hits] for arm, hits in arms.items()}, k=self.rrf_k, weights=weights)
        return FusedList(order, weights, coverage, "context" in arms, None if units is None else units["dense"])

    # -- how it is reported -----------------------------------------------------------------------

    def describe(self) -> str:
        """How the arms were fused, in words, for a search's message."""
        return "scaled scores" if self.method == "zscore" else f"RRF ({self.method})"

    def report(self, fused: FusedList[str], decision: ContextDecision) -> SearchFusion:
        """The search response's account of the fusion: the method, each arm's weights and coverage, and
        what the context rule read."""
        return SearchFusion(
            method=self.method,
            rrf_k=None if self.method == "zscore" else self.rrf_k,
            weights={arm: round(weight, 6) for arm, weight in fused.weights.items()},
            coverage={arm: None if value is None else round(value, 6) for arm, value in fused.coverage.items()},
            context=fused.context,
            coherence=None if decision.coherence is None else round(decision.coherence, 6),
            mean_terms=None if decision.mean_terms is None else round(decision.mean_terms, 2),
            query_words=decision.query_words,
            dense_unit=None if fused.dense_unit is None else round(fused.dense_unit, 6),
        )
