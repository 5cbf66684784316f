"""``prefer_recent``'s arithmetic, exact: the half-life decay, the age from the last update, and the blend of
each candidate's scaled score with recency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mimir_mcp.models import MemoryRecord
from mimir_mcp.search.recency import age_days, decay, prefer_recent
from mimir_mcp.search.stages import Candidate

NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def record(memory_id: str, created_at: str, updated_at: str | None = None) -> MemoryRecord:
    return MemoryRecord(id=memory_id, text=memory_id, namespace="n", created_at=created_at, updated_at=updated_at)


def test_decay_halves_at_each_half_life_and_counts_the_future_as_now():
    assert decay(0, 30) == 1.0
    assert decay(30, 30) == 0.5
    assert decay(90, 30) == 0.125
    assert decay(-5, 30) == 1.0


def test_age_counts_from_the_last_update():
    assert age_days(record("a", "2026-12-08T12:00:00+00:00"), NOW) == 1.0
    assert age_days(record("b", "2026-11-09T12:00:00Z", updated_at="2026-12-07T12:00:00Z"), NOW) == 2.0
    assert age_days(record("c", "not a time"), NOW) is None


def test_the_newer_of_two_close_matches_wins_and_a_clear_best_holds():
    records = {
        "best-old": record("best-old", "2026-06-12T12:00:00Z"),  # 180 days old
        "close-new": record("close-new", "2026-12-09T12:00:00Z"),
        "close-old": record("close-old", "2026-06-12T12:00:00Z"),
        "least": record("least", "2026-12-09T12:00:00Z"),
    }
    pool = [
        Candidate("best-old", 10.0),
        Candidate("close-old", 5.2),
        Candidate("close-new", 5.0),
        Candidate("least", 0.0),
    ]
    ordered = prefer_recent(pool, records, NOW, weight=0.2, half_life_days=30)
    # relevance: 1, 0.52, 0.5, 0; recency: 0.2 * decay(180) = 0.003125 for the old, 0.2 for the new ones.
    assert [item.id for item in ordered] == ["best-old", "close-new", "close-old", "least"]
    finals = {item.id: item.final for item in ordered}
    assert finals["best-old"] == pytest.approx(0.8 + 0.2 / 64)
    assert finals["close-new"] == pytest.approx(0.8 * 0.5 + 0.2)
    assert finals["close-old"] == pytest.approx(0.8 * 0.52 + 0.2 / 64)
    assert finals["least"] == pytest.approx(0.2)
    assert {item.id: item.age_days for item in ordered} == {
        "best-old": 180.0,
        "close-new": 0.0,
        "close-old": 180.0,
        "least": 0.0,
    }
    assert ordered[0].score == ordered[0].final  # the final order's score is the blend


def test_a_candidate_whose_record_is_gone_gets_no_recency():
    ordered = prefer_recent(
        [Candidate("gone", 1.0), Candidate("here", 0.5)],
        {"here": record("here", "2026-12-09T12:00:00Z")},
        NOW,
        weight=0.5,
        half_life_days=30,
    )
    assert [(item.id, item.recency, item.age_days) for item in ordered] == [("gone", 0.0, None), ("here", 0.5, 0.0)]
    assert [item.final for item in ordered] == [0.5, 0.5]
