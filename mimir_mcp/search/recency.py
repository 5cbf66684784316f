"""``prefer_recent``: of memories that match about as well, the newer first. Each candidate's score (fused or
reranked) is scaled to 0-1 within the candidates (the best 1, the least 0: a gap keeps its size relative to the
spread of the candidates), and blended with a half-life decay of its age (from its last update, else its
creation): ``(1 - w) * relevance + w * 0.5 ** (age / half_life)``."""

from __future__ import annotations

from datetime import datetime

from mimir_mcp.models import MemoryRecord
from mimir_mcp.search.stages import Candidate

SECONDS_PER_DAY = 86_400.0


def decay(age_days: float, half_life_days: float) -> float:
    """1 for a memory stored now, 0.5 at one half-life; a time in the future counts as now."""
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


def age_days(record: MemoryRecord, now: datetime) -> float | None:
    """Days since the memory was stored or last updated (None: a time that cannot be read)."""
    stamps = [stamp for stamp in (record.created_at, record.updated_at) if stamp]
    try:
        latest = max(datetime.fromisoformat(stamp).timestamp() for stamp in stamps)
    except ValueError:
        return None
    return (now.timestamp() - latest) / SECONDS_PER_DAY


def prefer_recent(
    pool: list[Candidate], records: dict[str, MemoryRecord], now: datetime, *, weight: float, half_life_days: float
) -> list[Candidate]:
    """``pool`` reordered by relevance blended with recency; each candidate keeps its age and recency part."""
    if not pool:
        return pool
    scores = [item.score for item in pool]
    low, span = min(scores), max(scores) - min(scores)
    for item, score in zip(pool, scores, strict=True):
        relevance = (score - low) / span if span > 0 else 1.0
        record = records.get(item.id)
        age = None if record is None else age_days(record, now)
        item.age_days = age
        item.recency = 0.0 if age is None else weight * decay(age, half_life_days)
        item.final = (1 - weight) * relevance + item.recency
    return sorted(pool, key=lambda item: -(item.final or 0.0))
