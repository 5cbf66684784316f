"""Admission control for the cross-encoder: one model, many searches, a time budget.

The cross-encoder scores one search at a time (two at once on a small CPU are slower than two in a
row), so under load reranked searches queue for it. Before a search joins the queue it predicts when its
own scoring would end, from the work already queued and the measured cost of scoring on this machine.
When that is later than ``reranker.budget_s``, it reranks fewer candidates (the best-fused ones, as many
as fit) or, when not even ``MIN_CANDIDATES`` fit, none (alone in the queue, that minimum), and
says so. Searches are served in arrival order and every search is judged by the same rule, whichever
client sent it, so one client's burst delays no one beyond the budget and nobody's search waits for ever.

Cost is counted in estimated tokens per (query, text) pair, so a queue of long memories is not taken for
a queue of short ones; seconds per token is a moving average of measured runs, so it follows how much of
the CPU other work leaves to the model. A search alone in the queue on a busy CPU is trimmed too, once it
would take longer than the budget and half again its time on an idle machine.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from mimir_mcp.config import RerankerSettings
from mimir_mcp.status_models import RerankQueueStatus

# Fewest candidates worth reranking under load: a search that cannot score this many within the budget
# is answered in the hybrid's order.
MIN_CANDIDATES = 10
# A pair costs its tokens plus a fixed share for the run itself (tokenizing, one graph run per pair).
PAIR_OVERHEAD_TOKENS = 16
# Seconds per token assumed until the first run is measured: about what the int8 MiniLM-L6 measures on a
# laptop core, so the first searches under load are neither all trimmed nor all admitted.
PRIOR_SECONDS_PER_TOKEN = 1e-4
# Weight of the newest run in the moving average: a slower run counts more than a faster one, since
# underestimating makes searches late and overestimating only trims them more.
SMOOTHING_UP = 0.6
SMOOTHING_DOWN = 0.2
# Alone in the queue, a search may take this many times its candidates' scoring time on an idle machine.
IDLE_SLACK = 1.5
# Share of the budget one model call after a search's first may take.
CHUNK_SHARE = 0.1
# Characters per token for English text under a WordPiece vocabulary, roughly.
CHARS_PER_TOKEN = 4


@dataclass(eq=False)
class Ticket:
    """One search's place in the queue: its predicted work, and when it started scoring."""

    tokens: float
    deadline: float | None = None
    started: float | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True)
class Admission:
    """How many of the requested candidates a search may rerank now, and why.

    ``count`` is 0 when reranking is skipped; ``ticket`` is then ``None``. ``queued`` searches and
    ``wait_s`` seconds of predicted scoring were ahead of it when it asked; ``full_s`` is how long scoring
    every candidate would have taken at the current pace, ``slowdown`` that pace against the fastest
    measured here (how busy the CPU is with other work).
    """

    count: int
    requested: int
    queued: int
    wait_s: float
    full_s: float
    slowdown: float
    budget_s: float
    minimum: int
    ticket: Ticket | None
    # Set when the search's own deadline (``deadline_ms``), not ``reranker.budget_s``, bounded the scoring.
    deadline_s: float | None = None
    # Estimated tokens of each requested pair, 0 for a cached one: what the caller's runs are measured by.
    pair_tokens: tuple[float, ...] = ()

    @property
    def trimmed(self) -> bool:
        return 0 < self.count < self.requested

    @property
    def skipped(self) -> bool:
        return self.count == 0 and self.requested > 0

    def _load(self) -> str:
        if not self.queued:
            return f"the CPU is busy with other work (scoring runs {self.slowdown:.1f}x slower than its best here)"
        searches = "search was" if self.queued == 1 else "searches were"
        return f"{self.queued} {searches} queued for the cross-encoder (about {self.wait_s:.1f} s of scoring)"

    @property
    def limit(self) -> str:
        """The time limit that bounded this search's scoring, in words."""
        if self.deadline_s is not None:
            return f"the search's deadline_ms ({self.deadline_s * 1000:.0f} ms were left of it for reranking)"
        return f"reranker.budget_s ({self.budget_s:g} s)"

    def describe(self, count: int, *, stopped: bool = False) -> str | None:
        """Why ``count`` (the candidates actually scored) is fewer than asked, for the search's ``message``;
        ``None`` when every candidate was scored. ``stopped``: scoring ran past its prediction and ended at
        the search's time limit."""
        if 0 < count < self.requested:
            why = (
                "the cross-encoder ran slower than predicted, so scoring stopped at the search's time limit, "
                f"{self.limit}"
                if stopped
                else f"scoring all {self.requested} would have ended after about {self.wait_s + self.full_s:.1f} s, "
                f"past {self.limit}"
            )
            if self.deadline_s is not None and not self.queued:
                return f"Only the top {count} of {self.requested} candidates were reranked: {why}"
            head = f"Under load, only the top {count} of {self.requested} candidates were reranked"
            return f"{head}: {self._load()}, and {why}"
        if count == 0 and self.requested:
            if self.deadline_s is not None and not self.queued:
                return (
                    f"not even the top {self.minimum} candidates could be scored within {self.limit}, at about "
                    f"{self.full_s / self.requested * 1000:.0f} ms per candidate; this answer is in the hybrid's order"
                )
            return (
                f"the cross-encoder was busy: {self._load()}, so not even the top {self.minimum} could be scored "
                f"within {self.limit}; this answer is in the hybrid's order"
            )
        return None

    @property
    def note(self) -> str | None:
        """Why fewer candidates are admitted than asked; ``None`` if none."""
        return self.describe(self.count)


class RerankQueue:
    """The cross-encoder's queue: who is scoring, who waits, and how long that will take.

    Deciding and joining happen without an ``await`` between them, so searches arriving together on the
    event loop each see the others. Not thread-safe: use it from the server's event loop only.
    """

    def __init__(
        self,
        settings: RerankerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_candidates: int = MIN_CANDIDATES,
    ) -> None:
        self.budget_s = settings.budget_s
        self.min_candidates = min_candidates
        self.max_tokens = settings.max_length or 512
        self.seconds_per_token = PRIOR_SECONDS_PER_TOKEN
        # The fastest run measured: what scoring costs when the CPU is not shared.
        self.fastest_seconds_per_token: float | None = None
        self.measured_runs = 0
        self._backend: str | None = None
        self._calibrated: set[str] = set()
        self._clock = clock
        self._tickets: deque[Ticket] = deque()
        # Expected end of runs whose caller gave up (a timeout): their thread still holds the CPU.
        self._abandoned: list[float] = []
        # What admission decided since start: every candidate scored, fewer (trimmed), or none (skipped).
        self.decisions = {"full": 0, "trimmed": 0, "skipped": 0}

    def tokens(self, query: str, text: str) -> float:
        """Estimated cost of one pair: its tokens (capped where the model truncates) plus a fixed share."""
        estimate = (len(query) + len(text)) / CHARS_PER_TOKEN
        return min(float(self.max_tokens), estimate) + PAIR_OVERHEAD_TOKENS

    @property
    def queued(self) -> int:
        """Searches (and ``rerank`` calls) scoring or waiting to."""
        return len(self._tickets)

    def pending_seconds(self) -> float:
        """Predicted seconds until everything queued now has been scored."""
        now = self._clock()
        self._abandoned = [end for end in self._abandoned if end > now]
        pending = sum(end - now for end in self._abandoned)
        for ticket in self._tickets:
            cost = ticket.tokens * self.seconds_per_token
            left = cost if ticket.started is None else max(0.0, cost - (now - ticket.started))
            # A search stops scoring at its deadline, however slow the model runs.
            pending += left if ticket.deadline is None else min(left, max(0.0, ticket.deadline - now))
        return pending

    def now(self) -> float:
        return self._clock()

    def fits(self, ticket: Ticket, tokens: float) -> bool:
        """Whether scoring ``tokens`` more, starting now, ends by the ticket's deadline."""
        return ticket.deadline is None or self._clock() + tokens * self.seconds_per_token <= ticket.deadline

    def chunk_size(self, tokens: float) -> int:
        """Pairs per model call after the first, for pairs of about ``tokens`` each: a tenth of the budget
        at the current pace, so a search that runs late overshoots its deadline by little."""
        if tokens * self.seconds_per_token <= 0:  # cached pairs cost nothing: all of them in one call
            return 1 << 30
        return max(1, int(CHUNK_SHARE * self.budget_s / (tokens * self.seconds_per_token)))

    def wait_limit(self, ticket: Ticket, tokens: float) -> float:
        """Seconds the ticket may wait for its turn and still score ``tokens`` by its deadline."""
        if ticket.deadline is None:
            return math.inf
        return max(0.0, ticket.deadline - self._clock() - tokens * self.seconds_per_token)

    def admit(
        self,
        query: str,
        texts: list[str],
        *,
        trim: bool = True,
        deadline_s: float | None = None,
        cached: Sequence[bool] | None = None,
    ) -> Admission:
        """Decide how many of ``texts`` (best first) to score, and join the queue for them.

        A search may take until ``budget_s`` from now, waiting included. Alone in the queue, on a CPU
        not so busy that scoring takes more than ``IDLE_SLACK`` times its time on an idle machine, it gets
        every candidate, past the budget if need be: a search that asks for many gets them when nothing
        else is going on. Otherwise the candidates that fit are scored, or none when fewer than
        ``min_candidates`` fit (alone, it scores ``min_candidates`` anyway). ``trim=False`` (the ``rerank``
        tool) takes them all and waits. ``deadline_s``: the seconds left of the search's own deadline; scoring
        then ends by it, however empty the queue, and fewer than ``min_candidates`` means none. ``cached``:
        which texts already have a score (the score cache), which costs nothing.
        """
        tokens = [0.0 if cached and cached[i] else self.tokens(query, text) for i, text in enumerate(texts)]
        costs = [count * self.seconds_per_token for count in tokens]
        queued = self.queued
        wait = self.pending_seconds()
        fastest = self.fastest_seconds_per_token or self.seconds_per_token
        # Alone on a CPU that is not busy, a search gets all it asks for, past the budget if need be.
        alone = max(self.budget_s, IDLE_SLACK * sum(tokens) * fastest)
        allowed = alone if not queued and sum(costs) <= alone else self.budget_s
        bounded = deadline_s is not None and deadline_s < allowed
        if bounded:
            assert deadline_s is not None
            allowed = max(deadline_s, 0.0)
        count = len(texts)
        if trim and wait + sum(costs) > allowed:
            room, count = allowed - wait, 0
            for cost in costs:
                if room < cost:
                    break
                room -= cost
                count += 1
            if count < min(self.min_candidates, len(texts)):
                # Alone, it scores the fewest worth scoring anyway: nobody waits for it, and each run keeps
                # the measured pace current (without runs, a pessimistic estimate would never recover).
                count = 0 if queued or bounded else min(self.min_candidates, len(texts))
        if texts:
            self.decisions["full" if count == len(texts) else "trimmed" if count else "skipped"] += 1
        ticket = None
        if count:
            deadline = self._clock() + allowed if trim else None
            ticket = Ticket(tokens=sum(tokens[:count]), deadline=deadline)
            self._tickets.append(ticket)
        return Admission(
            count=count,
            requested=len(texts),
            queued=queued,
            wait_s=wait,
            full_s=sum(costs),
            slowdown=self.seconds_per_token / fastest,
            budget_s=self.budget_s,
            minimum=min(self.min_candidates, len(texts)),
            ticket=ticket,
            deadline_s=allowed if bounded else None,
            pair_tokens=tuple(tokens),
        )

    async def wait_turn(self, ticket: Ticket) -> None:
        """Wait until every search ahead of ``ticket`` has been scored (arrival order)."""
        if self._tickets and self._tickets[0] is not ticket:
            await ticket.ready.wait()
        ticket.started = self._clock()

    def done(self, ticket: Ticket, *, completed: bool) -> None:
        """Leave the queue; wakes the next search.

        A run abandoned mid-way (its caller timed out) keeps the CPU busy in its thread until it ends,
        so its predicted remainder still counts as work ahead of later searches.
        """
        if ticket.started is not None and not completed:
            self._abandoned.append(ticket.started + ticket.tokens * self.seconds_per_token)
        try:
            self._tickets.remove(ticket)
        except ValueError:
            pass
        if self._tickets and self._tickets[0].started is None:
            self._tickets[0].ready.set()

    def release(self, ticket: Ticket) -> None:
        """Give up a place that was never used."""
        self.done(ticket, completed=False)

    def status(self) -> RerankQueueStatus:
        """The queue as ``status`` shows it: computed from what is in memory, no waiting."""
        return RerankQueueStatus(
            queued=self.queued,
            pending_s=round(self.pending_seconds(), 3),
            budget_s=self.budget_s,
            ms_per_1k_tokens=round(self.seconds_per_token * 1e6, 2),
            fastest_ms_per_1k_tokens=None
            if self.fastest_seconds_per_token is None
            else round(self.fastest_seconds_per_token * 1e6, 2),
            measured_runs=self.measured_runs,
            full=self.decisions["full"],
            trimmed=self.decisions["trimmed"],
            skipped=self.decisions["skipped"],
        )

    def calibrate(self, query: str, texts: Sequence[str], seconds: float, backend: str) -> None:
        """Take a timing made when ``backend`` became ready as the pace, once per backend: it replaces the
        prior guess (or the previous backend's pace), and searches scored from then on refine it."""
        if backend in self._calibrated:
            return
        self._calibrated.add(backend)
        self.observe(sum(self.tokens(query, text) for text in texts), seconds, backend)

    def observe(self, tokens: float, seconds: float, backend: str | None) -> None:
        """Fold one measured run into seconds per token; a new backend (the int8 copy replacing torch)
        starts the average again from its own first run."""
        if tokens <= 0 or seconds <= 0:
            return
        measured = seconds / tokens
        if self.measured_runs == 0 or backend != self._backend:
            self.seconds_per_token = self.fastest_seconds_per_token = measured
        else:
            weight = SMOOTHING_UP if measured > self.seconds_per_token else SMOOTHING_DOWN
            self.seconds_per_token = (1 - weight) * self.seconds_per_token + weight * measured
            self.fastest_seconds_per_token = min(self.fastest_seconds_per_token or measured, measured)
        self._backend = backend
        self.measured_runs += 1
