"""A call's `when`, applied: the phrase read against the server's clock in the caller's zone (``when.read_when``),
or with ``"auto"`` found inside the query (``when.find_when``), and the range intersected with the call's
``created_after``/``created_before``. One home for ``search`` and ``list_memories``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from mimir_mcp.config import SearchSettings
from mimir_mcp.errors import InvalidInputError
from mimir_mcp.models import TimeRangeRead
from mimir_mcp.search.when import AUTO, TimeRange, WhenError, find_when, normalized, read_when, zone


def clock(settings: SearchSettings) -> datetime:
    """What time it is for time phrases and recency: the configured fixed time (evaluations, tests) or now."""
    return settings.now or datetime.now(UTC)


@dataclass(frozen=True)
class TimeScope:
    """The bounds a call searches or lists within (Unix seconds), the query to search, and the range shown."""

    created_after: float | None
    created_before: float | None
    query: str | None
    shown: TimeRangeRead | None = None
    # Found by 'auto' rather than asked for: a guess, dropped when nothing was stored in it.
    guessed: bool = False


def caller_zone(tz: str | None, settings: SearchSettings) -> tzinfo:
    """The zone a phrase is read in: the call's ``tz``, else the configured one, else the server's."""
    try:
        return zone(tz if tz is not None else settings.timezone)
    except WhenError as exc:
        raise InvalidInputError("tz" if tz is not None else "search.timezone", str(exc)) from exc


def time_scope(
    when: str | None,
    tz: str | None,
    settings: SearchSettings,
    *,
    query: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
) -> TimeScope:
    """Apply ``when`` (None or 'off': the call's own bounds and query unchanged)."""
    when = normalized(when)
    if when is None:
        if tz is not None:
            caller_zone(tz, settings)  # a bad zone is refused even when unused
        return TimeScope(created_after, created_before, query)
    local, now = caller_zone(tz, settings), clock(settings)
    searched = query
    if when == AUTO:
        if query is None:
            raise InvalidInputError("when", "'auto' finds a time phrase in a search's query; give a phrase here")
        found = find_when(query, now=now, tz=local)
        if found is None:
            return TimeScope(created_after, created_before, query)
        read, searched = found
    else:
        try:
            read = read_when(when, now=now, tz=local)
        except WhenError as exc:
            raise InvalidInputError("when", str(exc)) from exc
    after = _latest(created_after, None if read.start is None else read.start.timestamp())
    before = _earliest(created_before, None if read.end is None else read.end.timestamp())
    shown = TimeRangeRead(
        start=_local(read.start, local),
        end=_local(read.end, local),
        phrase=read.phrase,
        query=searched if searched != query else None,
    )
    if after is not None and before is not None and after >= before:
        if searched == query:
            raise InvalidInputError(
                "when", f"{_shown_range(read, local)} does not overlap created_after/created_before; nothing can match"
            )
        note = "Not applied: it does not overlap created_after/created_before."
        return TimeScope(created_after, created_before, query, shown.model_copy(update={"note": note, "query": None}))
    return TimeScope(after, before, searched, shown, guessed=searched != query)


def _local(moment: datetime | None, local: tzinfo) -> str | None:
    return None if moment is None else moment.astimezone(local).isoformat(timespec="seconds")


def _shown_range(read: TimeRange, local: tzinfo) -> str:
    return f"'{read.phrase}' ({_local(read.start, local) or 'any time'} to {_local(read.end, local) or 'now'})"


def _latest(*bounds: float | None) -> float | None:
    given = [bound for bound in bounds if bound is not None]
    return max(given) if given else None


def _earliest(*bounds: float | None) -> float | None:
    given = [bound for bound in bounds if bound is not None]
    return min(given) if given else None
