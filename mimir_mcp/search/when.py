"""Time phrases for search: "last week" or "since 1 May" read as a half-open range of instants.

Agents ask "what did we decide last week?"; the words name a calendar period in the user's zone, and filtering on
it needs exact boundaries: local midnights, weeks from Monday, days of 23 or 25 hours at a daylight-saving change.
Structure (prefixes, ranges, rolling windows, calendar periods) is read here; dates in words ("the 1st of May",
"March 2026") are read by dateparser, imported only when a phrase needs it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache

EXAMPLES = (
    "'yesterday', 'last week', 'since Monday', 'in March', 'the last 3 days', 'before 1 May' "
    "or '2026-03-01..2026-03-15'"
)
WORD_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
MONTHS = (
    *("january", "february", "march", "april", "may", "june"),
    *("july", "august", "september", "october", "november", "december"),
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Regex fragments shared by read_when (whole phrases) and find_when (phrases inside a query).
NUMBER = rf"(?:\d+|an?|{'|'.join(WORD_NUMBERS)})"
UNIT = r"(?:minute|hour|day|week|month|year)s?"
MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?"
    r"|nov(?:ember)?|dec(?:ember)?)"
)
DAY = r"(?:the\s+)?\d{1,2}(?:st|nd|rd|th)?"
YEAR_TAIL = r",?\s+(?:of\s+)?\d{4}"
ISO_DATE = r"\d{4}-\d{2}(?:-\d{2}(?:[t\s]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}(?::?\d{2})?)?)?)?"
ISO = rf"(?:\d{{4}}|{ISO_DATE})"
NUMERIC = r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})"
ROLLING = rf"(?:(?:in|over|during|within)\s+)?(the\s+)?(last|past)\s+(?:({NUMBER})\s+)?({UNIT})"
PREFIXES = r"since|from|after|before|until|till|up\s+to|by|in|on|during|of"

Span = tuple[datetime, datetime]  # [start, end); a point in time has start == end
# The two `when` values that are not phrases: find one in the query; no time bound.
AUTO, OFF = "auto", "off"


class WhenError(ValueError):
    """A phrase that cannot be read; the message says what was not understood and gives examples."""


class _NotUnderstood(WhenError):
    """No rule of the grammar matches; a range or prefix reading may then try another split."""


class _Instant(WhenError):
    """A point in time where a period is needed."""


@dataclass(frozen=True)
class TimeRange:
    """Instants from ``start`` (inclusive) to ``end`` (exclusive), aware; ``None`` leaves that side open."""

    start: datetime | None
    end: datetime | None
    phrase: str


def normalized(when: str | None) -> str | None:
    """``when`` as it is applied: None for no time bound (``'off'``, or none given), ``'auto'`` in any case,
    else the phrase, stripped."""
    if when is None or when.strip().lower() == OFF:
        return None
    return AUTO if when.strip().lower() == AUTO else when.strip()


def zone(name: str | None) -> tzinfo:
    """The IANA zone whose calendar a phrase is read in; ``None`` is the server's own zone (UTC if unknown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    if name is None:
        try:
            import tzlocal

            return tzlocal.get_localzone()
        except Exception:  # a host without a readable zone configuration; tzlocal raises several kinds
            return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        same = [key for key in available_timezones() if key.lower() == name.strip().lower()]
        if len(same) == 1:  # agents write "utc" or "europe/paris"
            return ZoneInfo(same[0])
        raise WhenError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'") from None


def read_when(phrase: str, *, now: datetime, tz: tzinfo) -> TimeRange:
    """Read a time phrase as a range in the calendar of ``tz``, relative to the aware instant ``now``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    text = " ".join(phrase.lower().split()).rstrip("?.").strip()
    if not text:
        raise WhenError(f"empty time phrase; try {EXAMPLES}")
    try:
        start, end = _read(text, now.astimezone(tz), tz)
    except _NotUnderstood:
        raise WhenError(f"could not read {phrase.strip()!r} as a time; try {EXAMPLES}") from None
    except _Instant:
        raise WhenError(
            f"{phrase.strip()!r} is an instant, not a period: use it after 'since', 'after', 'before' or 'until', "
            "or as one end of a range"
        ) from None
    except WhenError:
        raise
    except (ValueError, OverflowError) as error:  # 2026-02-30, 10000 years ago
        raise WhenError(f"{phrase.strip()!r} is not a valid date or is out of range") from error
    if start is not None and end is not None and start.astimezone(UTC) >= end.astimezone(UTC):
        raise WhenError(f"{phrase.strip()!r} is an empty range: {start.isoformat()} is not before {end.isoformat()}")
    return TimeRange(start, end, phrase.strip())


def _read(text: str, now: datetime, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The bounds a whole phrase names: a rolling window, a range, or a period with or without a prefix."""
    if rolling := re.fullmatch(ROLLING, text):
        the, last, count, unit = rolling.groups()
        if the or count or last == "past" or unit.rstrip("s") in ("minute", "hour", "day"):
            return _rolling_start(_count(count or "1"), unit.rstrip("s"), now, tz), None
    if (span := _range(text, now, tz)) is not None:
        return span
    prefix = re.match(rf"({PREFIXES})\s+(.+)", text)
    start, end = _span(prefix.group(2) if prefix else text, now, tz)
    word = " ".join(prefix.group(1).split()) if prefix else ""
    since, until = (start, None), (None, end)
    bounds = {"since": since, "from": since, "after": (end, None), "before": (None, start), "until": until}
    if word in bounds or word in ("till", "up to", "by"):
        return bounds.get(word, until)
    if start == end:
        raise _Instant(text)
    return start, end


def _range(text: str, now: datetime, tz: tzinfo) -> Span | None:
    """``X..Y``, ``X/Y`` (ISO), ``from X to Y``, ``between X and Y``, ``X to Y``, ``X - Y``: start of X to end of Y."""
    lead = re.match(r"(between|from|in|during|on)\s+", text)
    body = text[lead.end() :] if lead else text
    separator = r"\s+and\s+" if lead and lead.group(1) == "between" else r"\s*\.\.\s*|\s+(?:to|until|till|-|–)\s+|/"
    for cut in re.finditer(separator, body):
        left, right = body[: cut.start()], body[cut.end() :]
        if cut.group() == "/" and not (re.fullmatch(ISO, left) and re.fullmatch(ISO, right)):
            continue  # a slash also separates the parts of 25/04/2026
        try:
            return _span(left, now, tz)[0], _span(right, now, tz)[1]
        except _NotUnderstood:
            continue
    return None


def _span(text: str, now: datetime, tz: tzinfo) -> Span:
    """One period (or point) named by a phrase without prefix: the core of the grammar."""
    for pattern, read in _CORES:
        if match := re.fullmatch(pattern, text):
            return read(match, now, tz)
    if re.fullmatch(r"(?:the\s+)?[\d\s/.,-]*\d(?:st|nd|rd|th)?", text):
        raise _NotUnderstood(text)  # dateparser would read "5" as May and "1st" as January
    from dateparser.date import DateDataParser

    settings = {
        "RELATIVE_BASE": now.replace(tzinfo=None),
        "PREFER_DATES_FROM": "past",  # "1 May" is the last one, not the next
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_TIME_AS_PERIOD": True,
    }
    data = DateDataParser(languages=["en"], settings=settings).get_date_data(text)
    if data.date_obj is None or data.period not in ("time", "day", "week", "month", "year"):
        raise _NotUnderstood(text)
    if data.period == "time":
        point = data.date_obj.astimezone(tz) if data.date_obj.tzinfo else data.date_obj.replace(tzinfo=tz)
        return point, point
    return _period(data.period, data.date_obj.date(), tz)


def _numeric(match: re.Match[str], now: datetime, tz: tzinfo) -> Span:
    """25/04/2026 and 04/25/2026 are clear; 03/04/2026 is refused rather than guessed."""
    first, second, year_text = int(match.group(1)), int(match.group(2)), match.group(3)
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    if first != second and first <= 12 and second <= 12:
        raise WhenError(
            f"{match.group()!r} is ambiguous ({first} {MONTHS[second - 1].title()} or {MONTHS[first - 1].title()} "
            f"{second}): write {year:04d}-{second:02d}-{first:02d} or '{first} {MONTHS[second - 1].title()} {year}'"
        )
    day, month = (first, second) if first > 12 else (second, first)
    return _period("day", date(year, month, day), tz)


def _iso(match: re.Match[str], now: datetime, tz: tzinfo) -> Span:
    text = match.group()
    if len(text) > 10:
        point = datetime.fromisoformat(text.upper().replace(" ", "T"))
        point = point.astimezone(tz) if point.tzinfo else point.replace(tzinfo=tz)
        return point, point
    parts = [int(part) for part in text.split("-")]
    return _period(("year", "month", "day")[len(parts) - 1], date(*(parts + [1, 1])[:3]), tz)


def _ago(match: re.Match[str], now: datetime, tz: tzinfo) -> Span:
    count, unit = _count(match.group(1)), match.group(2).rstrip("s")
    if unit in ("minute", "hour"):
        point = _rolling_start(count, unit, now, tz)
        return point, point
    return _period(unit, _shift(now.date(), unit, -count), tz)


def _weekday(match: re.Match[str], now: datetime, tz: tzinfo) -> Span:
    """The most recent such day strictly before today: on a Monday, "Monday" is a week ago."""
    back = (now.weekday() - WEEKDAYS.index(match.group(1))) % 7 or 7
    return _period("day", now.date() - timedelta(days=back), tz)


_CORES: list[tuple[str, Callable[[re.Match[str], datetime, tzinfo], Span]]] = [
    (ISO, _iso),
    (NUMERIC, _numeric),
    (r"today", lambda m, now, tz: _period("day", now.date(), tz)),
    (r"yesterday", lambda m, now, tz: _period("day", now.date() - timedelta(days=1), tz)),
    (r"(?:the\s+)?day\s+before\s+yesterday", lambda m, now, tz: _period("day", now.date() - timedelta(days=2), tz)),
    (r"this\s+(week|month|year)", lambda m, now, tz: _period(m.group(1), now.date(), tz)),
    (
        r"(?:last|(?:the\s+)?previous)\s+(week|month|year)",
        lambda m, now, tz: _period(m.group(1), _shift(now.date(), m.group(1), -1), tz),
    ),
    (rf"({NUMBER})\s+({UNIT})\s+ago", _ago),
    (rf"(?:last\s+)?({'|'.join(WEEKDAYS)})", _weekday),
]


def _count(word: str) -> int:
    return WORD_NUMBERS.index(word) + 1 if word in WORD_NUMBERS else 1 if word in ("a", "an") else int(word)


def _local(day: date, tz: tzinfo) -> datetime:
    """Local midnight of ``day``; zoneinfo gives it the offset in force then."""
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _shift(day: date, unit: str, count: int) -> date:
    """``day`` moved by whole calendar units; a month step keeps the day of month where it exists (31 Mar -> 28 Feb)."""
    if unit in ("day", "week"):
        return day + timedelta(days=count * (7 if unit == "week" else 1))
    year, month_index = divmod(day.year * 12 + day.month - 1 + count * (12 if unit == "year" else 1), 12)
    return date(year, month_index + 1, min(day.day, calendar.monthrange(year, month_index + 1)[1]))


def _period(unit: str, day: date, tz: tzinfo) -> Span:
    """The calendar day, Monday week, month or year containing ``day``, from local midnight to local midnight."""
    first = {
        "day": day,
        "week": day - timedelta(days=day.weekday()),
        "month": day.replace(day=1),
        "year": day.replace(month=1, day=1),
    }[unit]
    return _local(first, tz), _local(_shift(first, unit, 1), tz)


def _rolling_start(count: int, unit: str, now: datetime, tz: tzinfo) -> datetime:
    """Exact elapsed time for fixed units (a day is 24 hours here); months and years step back on the calendar."""
    if unit in ("month", "year"):
        return datetime.combine(_shift(now.date(), unit, -count), now.time(), tzinfo=tz)
    elapsed = timedelta(**{f"{unit}s": count})
    return (now.astimezone(UTC) - elapsed).astimezone(tz)


# find_when: the same grammar, with words that are also ordinary English held to stricter company.
_BOUND = r"in|since|before|after|until|till|during|of|on"
_FREE_CORES = (
    ISO_DATE,
    r"\d{1,2}[/.]\d{1,2}[/.]\d{4}",
    r"today|yesterday|(?:the\s+)?day\s+before\s+yesterday",
    r"(?:this|last|(?:the\s+)?previous)\s+(?:week|month|year)",
    rf"{NUMBER}\s+(?:hour|day|week|month|year)s?\s+ago",
    rf"last\s+(?:{'|'.join(WEEKDAYS)})",
    rf"{DAY}\s+(?:of\s+)?{MONTH}(?:{YEAR_TAIL})?",
    rf"{MONTH}\s+{DAY}(?:{YEAR_TAIL})?",
    rf"{MONTH}{YEAR_TAIL}",
)
_ENDPOINT = rf"(?:{'|'.join(_FREE_CORES)}|{'|'.join(MONTHS)}|{'|'.join(WEEKDAYS)}|\d{{4}})"
_FIND_BODIES = (
    *(rf"(?:(?:{PREFIXES})\s+)?(?:{core})" for core in _FREE_CORES),
    rf"(?:(?:in|over|during|within)\s+)?(?:the\s+(?:last|past)\s+(?:{NUMBER}\s+)?|(?:last|past)\s+{NUMBER}\s+|past\s+)"
    r"(?:hour|day|week|month|year)s?",
    rf"(?:{_BOUND})\s+(?:{'|'.join(MONTHS)}|{'|'.join(WEEKDAYS)})",
    r"(?:in|since|before|after|until|till|during)\s+\d{4}",
    rf"from\s+{_ENDPOINT}\s+(?:to|until|till)\s+{_ENDPOINT}",
    rf"between\s+{_ENDPOINT}\s+and\s+{_ENDPOINT}",
    rf"(?:(?:from|in|during)\s+)?{ISO}(?:\s*\.\.\s*|/|\s+(?:to|-|–)\s+){ISO}",
)


@cache
def _find_patterns() -> list[re.Pattern[str]]:
    """Compiled on first use: tens of milliseconds that server start-up need not pay."""
    boundaries = r"(?<![\w'’/.-])(?:{})(?![\w'’/-]|\.\d|\s+of\b)"
    return [re.compile(boundaries.format(body), re.IGNORECASE) for body in _FIND_BODIES]


def find_when(query: str, *, now: datetime, tz: tzinfo) -> tuple[TimeRange, str] | None:
    """The one time phrase in a search query, and the query without it; ``None`` when there is none, or more than
    one, or it cannot be read. Precision over recall: a false positive filters an agent's search wrongly."""
    spans = {(match.start(), match.end()) for pattern in _find_patterns() for match in pattern.finditer(query)}
    chosen: list[tuple[int, int, TimeRange]] = []
    for start, end in sorted(spans, key=lambda span: (span[0] - span[1], span[0])):  # longest first
        if any(start < other_end and other_start < end for other_start, other_end, _ in chosen):
            continue
        phrase = query[start:end]
        if re.search(r"\bmay\b", phrase, re.IGNORECASE) and not re.search(
            rf"\d(?:st|nd|rd|th)\b|\bof\b|\d{{4}}|^(?:{_BOUND}|since|from|by|until|till)\b", phrase, re.IGNORECASE
        ):
            continue  # "option 1 may work": "may" with a bare number is the verb
        try:
            chosen.append((start, end, read_when(phrase, now=now, tz=tz)))
        except WhenError:
            return None
    if len(chosen) != 1:
        return None
    start, end, found = chosen[0]
    return found, _without(query, start, end)


def _without(query: str, start: int, end: int) -> str:
    """The query with ``query[start:end]`` cut out and the whitespace and punctuation around the cut tidied."""
    left, right = query[:start].rstrip(), query[end:].lstrip()
    if not left:
        return right.lstrip(",;:-.?! ")
    if not right:
        return left.rstrip(",;:-").rstrip()
    if right[0] in ",;:.?!)":
        return left.rstrip(",;:") + right
    return f"{left} {right}"
