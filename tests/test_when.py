"""Time phrases: exact boundaries on fixed clocks, across zones and daylight-saving changes, and the phrases a
query must not be mistaken for."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimir_mcp.search.when import EXAMPLES, TimeRange, WhenError, find_when, read_when, zone

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
AUCKLAND = ZoneInfo("Pacific/Auckland")
NOW = datetime(2026, 12, 9, 15, 30, tzinfo=LONDON)  # a Wednesday, GMT


def bounds(phrase: str, now: datetime = NOW, tz: tzinfo = LONDON) -> tuple[str | None, str | None]:
    found = read_when(phrase, now=now, tz=tz)
    return (found.start.isoformat() if found.start else None, found.end.isoformat() if found.end else None)


def refusal(phrase: str, now: datetime = NOW, tz: tzinfo = LONDON) -> str:
    with pytest.raises(WhenError) as caught:
        read_when(phrase, now=now, tz=tz)
    return str(caught.value)


DAY_8, DAY_9, DAY_10 = "2026-12-08T00:00:00+00:00", "2026-12-09T00:00:00+00:00", "2026-12-10T00:00:00+00:00"
MARCH_2026 = ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+01:00")
MAY_1_2026 = ("2026-05-01T00:00:00+01:00", "2026-05-02T00:00:00+01:00")
FIRST_HALF_OF_MARCH = ("2026-03-01T00:00:00+00:00", "2026-03-16T00:00:00+00:00")
LAST_WEEK = ("2026-11-30T00:00:00+00:00", "2026-12-07T00:00:00+00:00")
MONDAY = ("2026-12-07T00:00:00+00:00", "2026-12-08T00:00:00+00:00")


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        # ISO dates, months, years
        ("2026-03-04", ("2026-03-04T00:00:00+00:00", "2026-03-05T00:00:00+00:00")),
        ("2026-03", MARCH_2026),
        ("2026", ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        ("2026-07-04", ("2026-07-04T00:00:00+01:00", "2026-07-05T00:00:00+01:00")),
        # ranges: the whole of the last period is included
        ("2026-03-01..2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03-01 .. 2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03-01/2026-03-15", FIRST_HALF_OF_MARCH),
        ("from 2026-03-01 to 2026-03-15", FIRST_HALF_OF_MARCH),
        ("between 2026-03-01 and 2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03-01 to 2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03-01 - 2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03-01 until 2026-03-15", FIRST_HALF_OF_MARCH),
        ("2026-03/2026-04", ("2026-03-01T00:00:00+00:00", "2026-05-01T00:00:00+01:00")),
        ("2025..2026", ("2025-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        ("from March to May", ("2026-03-01T00:00:00+00:00", "2026-06-01T00:00:00+01:00")),
        ("between Monday and today", (MONDAY[0], DAY_10)),
        ("from 1 May 2026 to 3 May 2026", ("2026-05-01T00:00:00+01:00", "2026-05-04T00:00:00+01:00")),
        ("2026-03-04T10:00..2026-03-04T12:30", ("2026-03-04T10:00:00+00:00", "2026-03-04T12:30:00+00:00")),
        # days by name
        ("today", (DAY_9, DAY_10)),
        ("yesterday", (DAY_8, DAY_9)),
        ("the day before yesterday", ("2026-12-07T00:00:00+00:00", DAY_8)),
        ("day before yesterday", ("2026-12-07T00:00:00+00:00", DAY_8)),
        # weekdays: the most recent one strictly before today
        ("Monday", MONDAY),
        ("on Monday", MONDAY),
        ("last Monday", MONDAY),
        ("Tuesday", (DAY_8, DAY_9)),
        ("Wednesday", ("2026-12-02T00:00:00+00:00", "2026-12-03T00:00:00+00:00")),
        ("Thursday", ("2026-12-03T00:00:00+00:00", "2026-12-04T00:00:00+00:00")),
        # calendar periods
        ("this week", ("2026-12-07T00:00:00+00:00", "2026-12-14T00:00:00+00:00")),
        ("this month", ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        ("this year", ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        ("last week", LAST_WEEK),
        ("the previous week", LAST_WEEK),
        ("previous week", LAST_WEEK),
        ("during last week", LAST_WEEK),
        ("last month", ("2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00")),
        ("last year", ("2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")),
        # rolling windows: exact elapsed time back from now, open-ended
        ("the last 3 days", ("2026-12-06T15:30:00+00:00", None)),
        ("the past 3 days", ("2026-12-06T15:30:00+00:00", None)),
        ("last 3 days", ("2026-12-06T15:30:00+00:00", None)),
        ("past 3 days", ("2026-12-06T15:30:00+00:00", None)),
        ("in the last 3 days", ("2026-12-06T15:30:00+00:00", None)),
        ("in the last three days", ("2026-12-06T15:30:00+00:00", None)),
        ("over the past twelve hours", ("2026-12-09T03:30:00+00:00", None)),
        ("the last day", ("2026-12-08T15:30:00+00:00", None)),
        ("past 24 hours", ("2026-12-08T15:30:00+00:00", None)),
        ("the past week", ("2026-12-02T15:30:00+00:00", None)),
        ("past week", ("2026-12-02T15:30:00+00:00", None)),
        ("the last week", ("2026-12-02T15:30:00+00:00", None)),
        ("the last 2 weeks", ("2026-11-25T15:30:00+00:00", None)),
        ("within the last 90 minutes", ("2026-12-09T14:00:00+00:00", None)),
        ("the last 3 months", ("2026-09-09T15:30:00+01:00", None)),
        ("the last year", ("2025-12-09T15:30:00+00:00", None)),
        # "N units ago": the calendar period of that unit
        ("3 days ago", ("2026-12-06T00:00:00+00:00", "2026-12-07T00:00:00+00:00")),
        ("three days ago", ("2026-12-06T00:00:00+00:00", "2026-12-07T00:00:00+00:00")),
        ("a day ago", (DAY_8, DAY_9)),
        ("a week ago", LAST_WEEK),
        ("2 weeks ago", ("2026-11-23T00:00:00+00:00", "2026-11-30T00:00:00+00:00")),
        ("a month ago", ("2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00")),
        ("ten months ago", ("2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")),
        ("2 years ago", ("2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00")),
        # months by name: the most recent one that has begun
        ("March", MARCH_2026),
        ("in March", MARCH_2026),
        ("in March 2026", MARCH_2026),
        ("March 2026", MARCH_2026),
        ("Mar 2026", MARCH_2026),
        ("march of 2026", MARCH_2026),
        ("in March 2025", ("2025-03-01T00:00:00+00:00", "2025-04-01T00:00:00+01:00")),
        ("December", ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        ("Sept 2025", ("2025-09-01T00:00:00+01:00", "2025-10-01T00:00:00+01:00")),
        # dates in words: the most recent one not in the future
        ("the 1st of May", MAY_1_2026),
        ("1 May", MAY_1_2026),
        ("May 1", MAY_1_2026),
        ("May 1st 2026", MAY_1_2026),
        ("May 1st, 2026", MAY_1_2026),
        ("1 May 2026", MAY_1_2026),
        ("on the 1st of May", MAY_1_2026),
        ("9 December", (DAY_9, DAY_10)),
        ("10 December", ("2025-12-10T00:00:00+00:00", "2025-12-11T00:00:00+00:00")),
        # prefixes
        ("since Monday", (MONDAY[0], None)),
        ("since last week", (LAST_WEEK[0], None)),
        ("from yesterday", (DAY_8, None)),
        ("after last week", (LAST_WEEK[1], None)),
        ("after yesterday", (DAY_9, None)),
        ("before last week", (None, LAST_WEEK[0])),
        ("before the 1st of May", (None, MAY_1_2026[0])),
        ("until last week", (None, LAST_WEEK[1])),
        ("till yesterday", (None, DAY_9)),
        ("up to yesterday", (None, DAY_9)),
        ("by yesterday", (None, DAY_9)),
        ("since March", (MARCH_2026[0], None)),
        ("since 2025", ("2025-01-01T00:00:00+00:00", None)),
        ("since 3 hours ago", ("2026-12-09T12:30:00+00:00", None)),
        ("since an hour ago", ("2026-12-09T14:30:00+00:00", None)),
        # an ISO instant is a point: fine after a prefix
        ("since 2026-03-04T10:00", ("2026-03-04T10:00:00+00:00", None)),
        ("after 2026-03-04T10:00", ("2026-03-04T10:00:00+00:00", None)),
        ("before 2026-03-04T10:00", (None, "2026-03-04T10:00:00+00:00")),
        ("until 2026-03-04 10:00", (None, "2026-03-04T10:00:00+00:00")),
        ("after 2026-03-04T10:00+05:30", ("2026-03-04T04:30:00+00:00", None)),
        ("since 2026-07-04T10:00:00Z", ("2026-07-04T11:00:00+01:00", None)),
        # numeric dates that read one way only
        ("25/04/2026", ("2026-04-25T00:00:00+01:00", "2026-04-26T00:00:00+01:00")),
        ("04/25/2026", ("2026-04-25T00:00:00+01:00", "2026-04-26T00:00:00+01:00")),
        ("25.04.2026", ("2026-04-25T00:00:00+01:00", "2026-04-26T00:00:00+01:00")),
        ("25-04-26", ("2026-04-25T00:00:00+01:00", "2026-04-26T00:00:00+01:00")),
        ("04/04/2026", ("2026-04-04T00:00:00+01:00", "2026-04-05T00:00:00+01:00")),
        ("before 25/04/2026", (None, "2026-04-25T00:00:00+01:00")),
        # case, whitespace and a closing question mark or full stop
        ("  YESTERDAY?  ", (DAY_8, DAY_9)),
        ("Last   Week.", LAST_WEEK),
        ("Since  MONDAY", (MONDAY[0], None)),
    ],
)
def test_read_when(phrase: str, expected: tuple[str | None, str | None]):
    assert bounds(phrase) == expected


def test_read_when_keeps_the_phrase_as_written_and_answers_in_the_zone():
    found = read_when("  Last week? ", now=NOW.astimezone(UTC), tz=LONDON)
    assert found == TimeRange(datetime(2026, 11, 30, tzinfo=LONDON), datetime(2026, 12, 7, tzinfo=LONDON), "Last week?")
    assert found.start is not None and found.start.tzinfo is LONDON


@pytest.mark.parametrize(
    ("today", "phrase", "expected"),
    [
        # on a Monday, "Monday" is a week ago; on a Tuesday it is yesterday
        (datetime(2026, 12, 7, 9, 0), "Monday", ("2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00")),
        (datetime(2026, 12, 7, 9, 0), "on Monday", ("2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00")),
        (datetime(2026, 12, 8, 9, 0), "Monday", MONDAY),
        (datetime(2026, 12, 8, 9, 0), "Sunday", ("2026-12-06T00:00:00+00:00", "2026-12-07T00:00:00+00:00")),
        # within March, "March" is this March; before it, last year's
        (datetime(2026, 3, 1, 0, 0), "March", MARCH_2026),
        (datetime(2026, 3, 31, 23, 0), "in March", MARCH_2026),
        (datetime(2026, 2, 28, 23, 59), "in March", ("2025-03-01T00:00:00+00:00", "2025-04-01T00:00:00+01:00")),
        # a day of the month that has not come yet this year is last year's
        (datetime(2026, 5, 1, 8, 0), "1 May", MAY_1_2026),
        (datetime(2026, 4, 30, 23, 0), "1 May", ("2025-05-01T00:00:00+01:00", "2025-05-02T00:00:00+01:00")),
        (datetime(2026, 3, 1, 12, 0), "2 March", ("2025-03-02T00:00:00+00:00", "2025-03-03T00:00:00+00:00")),
        # a calendar step back from the 31st lands on the last day of a shorter month
        (datetime(2026, 3, 31, 12, 0), "a month ago", ("2026-02-01T00:00:00+00:00", MARCH_2026[0])),
        (datetime(2026, 3, 31, 12, 0), "the last month", ("2026-02-28T12:00:00+00:00", None)),
        (datetime(2028, 2, 29, 12, 0), "the last year", ("2027-02-28T12:00:00+00:00", None)),
        # weeks across a year end
        (datetime(2027, 1, 1, 12, 0), "this week", ("2026-12-28T00:00:00+00:00", "2027-01-04T00:00:00+00:00")),
        (datetime(2027, 1, 1, 12, 0), "last year", ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
        (datetime(2027, 1, 1, 12, 0), "last month", ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")),
    ],
)
def test_read_when_on_other_days(today: datetime, phrase: str, expected: tuple[str | None, str | None]):
    assert bounds(phrase, now=today.replace(tzinfo=LONDON)) == expected


INSTANT = datetime(2026, 12, 9, 20, 0, tzinfo=UTC)  # already 10 December in Kolkata and Auckland


@pytest.mark.parametrize(
    ("tz", "phrase", "expected"),
    [
        (UTC, "today", ("2026-12-09T00:00:00+00:00", "2026-12-10T00:00:00+00:00")),
        (LONDON, "today", ("2026-12-09T00:00:00+00:00", "2026-12-10T00:00:00+00:00")),
        (NEW_YORK, "today", ("2026-12-09T00:00:00-05:00", "2026-12-10T00:00:00-05:00")),
        (KOLKATA, "today", ("2026-12-10T00:00:00+05:30", "2026-12-11T00:00:00+05:30")),
        (AUCKLAND, "today", ("2026-12-10T00:00:00+13:00", "2026-12-11T00:00:00+13:00")),
        (KOLKATA, "yesterday", ("2026-12-09T00:00:00+05:30", "2026-12-10T00:00:00+05:30")),
        (NEW_YORK, "Wednesday", ("2026-12-02T00:00:00-05:00", "2026-12-03T00:00:00-05:00")),
        (AUCKLAND, "Wednesday", ("2026-12-09T00:00:00+13:00", "2026-12-10T00:00:00+13:00")),
        (KOLKATA, "this week", ("2026-12-07T00:00:00+05:30", "2026-12-14T00:00:00+05:30")),
        (AUCKLAND, "in March", ("2026-03-01T00:00:00+13:00", "2026-04-01T00:00:00+13:00")),
        (AUCKLAND, "the 1st of May", ("2026-05-01T00:00:00+12:00", "2026-05-02T00:00:00+12:00")),
        (NEW_YORK, "the last 3 hours", ("2026-12-09T12:00:00-05:00", None)),
        (KOLKATA, "since 2026-03-04T10:00", ("2026-03-04T10:00:00+05:30", None)),
        (KOLKATA, "after 2026-03-04T10:00Z", ("2026-03-04T15:30:00+05:30", None)),
    ],
)
def test_read_when_in_other_zones(tz: tzinfo, phrase: str, expected: tuple[str | None, str | None]):
    assert bounds(phrase, now=INSTANT, tz=tz) == expected


def test_month_names_are_read_in_the_local_calendar():
    # 28 February 11:30 UTC is already 1 March in Auckland: "March" is the March that has just begun.
    now = datetime(2026, 2, 28, 11, 30, tzinfo=UTC)
    assert bounds("March", now=now, tz=AUCKLAND) == ("2026-03-01T00:00:00+13:00", "2026-04-01T00:00:00+13:00")
    assert bounds("March", now=now, tz=UTC) == ("2025-03-01T00:00:00+00:00", "2025-04-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("now", "tz", "phrase", "expected", "hours"),
    [
        # London springs forward on 29 March 2026: that day has 23 hours, its week 167
        (
            datetime(2026, 3, 30, 12, 0),
            LONDON,
            "yesterday",
            ("2026-03-29T00:00:00+00:00", "2026-03-30T00:00:00+01:00"),
            23,
        ),
        (
            datetime(2026, 3, 30, 12, 0),
            LONDON,
            "last week",
            ("2026-03-23T00:00:00+00:00", "2026-03-30T00:00:00+01:00"),
            167,
        ),
        (
            datetime(2026, 3, 30, 12, 0),
            LONDON,
            "this week",
            ("2026-03-30T00:00:00+01:00", "2026-04-06T00:00:00+01:00"),
            168,
        ),
        (
            datetime(2026, 3, 30, 12, 0),
            LONDON,
            "2026-03",
            ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+01:00"),
            743,
        ),
        # New York falls back on 1 November 2026: 25 hours
        (
            datetime(2026, 11, 2, 9, 0),
            NEW_YORK,
            "yesterday",
            ("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"),
            25,
        ),
        (
            datetime(2026, 11, 2, 9, 0),
            NEW_YORK,
            "Sunday",
            ("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"),
            25,
        ),
        (
            datetime(2026, 11, 2, 9, 0),
            NEW_YORK,
            "2026-11-01",
            ("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"),
            25,
        ),
        # Auckland springs forward on 27 September 2026
        (
            datetime(2026, 9, 28, 12, 0),
            AUCKLAND,
            "yesterday",
            ("2026-09-27T00:00:00+12:00", "2026-09-28T00:00:00+13:00"),
            23,
        ),
    ],
)
def test_a_day_runs_from_local_midnight_to_local_midnight(
    now: datetime, tz: tzinfo, phrase: str, expected: tuple[str, str], hours: int
):
    found = read_when(phrase, now=now.replace(tzinfo=tz), tz=tz)
    assert (found.start and found.start.isoformat(), found.end and found.end.isoformat()) == expected
    assert found.start is not None and found.end is not None
    assert found.end.astimezone(UTC) - found.start.astimezone(UTC) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        # 2 days before 30 March 12:00 BST (11:00 UTC) is 28 March 11:00 GMT, not 12:00: elapsed time, not the clock
        ("the last 2 days", "2026-03-28T11:00:00+00:00"),
        ("the past 24 hours", "2026-03-29T12:00:00+01:00"),
        ("the last 36 hours", "2026-03-28T23:00:00+00:00"),
        ("the past week", "2026-03-23T11:00:00+00:00"),
    ],
)
def test_rolling_windows_are_elapsed_time_across_a_change(phrase: str, expected: str):
    assert bounds(phrase, now=datetime(2026, 3, 30, 12, 0, tzinfo=LONDON)) == (expected, None)


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("03/04/2026", "'03/04/2026' is ambiguous (3 April or March 4): write 2026-04-03 or '3 April 2026'"),
        ("since 03/04/2026", "'03/04/2026' is ambiguous (3 April or March 4): write 2026-04-03 or '3 April 2026'"),
        (
            "12/11/2025",
            "'12/11/2025' is ambiguous (12 November or December 11): write 2025-11-12 or '12 November 2025'",
        ),
        ("1.2.26", "'1.2.26' is ambiguous (1 February or January 2): write 2026-02-01 or '1 February 2026'"),
        (
            "03/04/2026..2026-05-01",
            "'03/04/2026' is ambiguous (3 April or March 4): write 2026-04-03 or '3 April 2026'",
        ),
    ],
)
def test_ambiguous_numeric_dates_are_refused(phrase: str, message: str):
    assert refusal(phrase) == message


@pytest.mark.parametrize(
    "phrase",
    [
        "blah",
        "in spring",
        "Q1",
        "last weekend",
        "since X",
        "5",
        "1st",
        "the 5th",
        "03/04",
        "31 April",
        "between Monday",
    ],
)
def test_unreadable_phrases_are_refused_with_examples(phrase: str):
    assert refusal(phrase) == (
        f"could not read {phrase!r} as a time; try 'yesterday', 'last week', 'since Monday', 'in March', "
        "'the last 3 days', 'before 1 May' or '2026-03-01..2026-03-15'"
    )


@pytest.mark.parametrize("phrase", ["", "   ", "?", " . "])
def test_an_empty_phrase_is_refused(phrase: str):
    assert refusal(phrase) == f"empty time phrase; try {EXAMPLES}"


@pytest.mark.parametrize(
    "phrase", ["2026-03-04T10:00", "2026-03-04 10:00", "2026-03-04T10:00+05:00", "in 2026-03-04T10:00", "now"]
)
def test_an_instant_alone_is_refused(phrase: str):
    assert refusal(phrase) == (
        f"{phrase!r} is an instant, not a period: use it after 'since', 'after', 'before' or 'until', "
        "or as one end of a range"
    )


@pytest.mark.parametrize(
    ("phrase", "start", "end"),
    [
        ("2026-03-15..2026-03-01", "2026-03-15T00:00:00+00:00", "2026-03-02T00:00:00+00:00"),
        ("from May 2026 to March 2026", "2026-05-01T00:00:00+01:00", "2026-04-01T00:00:00+01:00"),
        ("2026-03-04T10:00..2026-03-04T10:00", "2026-03-04T10:00:00+00:00", "2026-03-04T10:00:00+00:00"),
    ],
)
def test_a_range_that_ends_before_it_starts_is_refused(phrase: str, start: str, end: str):
    assert refusal(phrase) == f"{phrase!r} is an empty range: {start} is not before {end}"


@pytest.mark.parametrize("phrase", ["2026-02-30", "2026-13", "since 2026-00-10", "99999999 years ago"])
def test_impossible_dates_are_refused(phrase: str):
    assert refusal(phrase) == f"{phrase!r} is not a valid date or is out of range"


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        read_when("today", now=datetime(2026, 12, 9), tz=LONDON)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Europe/Paris", "Europe/Paris"),
        ("UTC", "UTC"),
        ("Asia/Kolkata", "Asia/Kolkata"),
        ("europe/paris", "Europe/Paris"),
    ],
)
def test_zone_by_iana_name(name: str, key: str):
    found = zone(name)
    assert isinstance(found, ZoneInfo) and found.key == key


@pytest.mark.parametrize("name", ["Mars/Base", "Europe", "", "../etc/passwd", "CEST"])
def test_an_unknown_zone_is_refused(name: str):
    with pytest.raises(WhenError) as caught:
        zone(name)
    assert str(caught.value) == f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"


def test_no_zone_is_the_servers_zone(monkeypatch: pytest.MonkeyPatch):
    import tzlocal

    monkeypatch.setattr(tzlocal, "get_localzone", lambda: ZoneInfo("Asia/Kolkata"))
    assert zone(None) == ZoneInfo("Asia/Kolkata")

    def unreadable() -> tzinfo:
        raise LookupError("no zone configured")

    monkeypatch.setattr(tzlocal, "get_localzone", unreadable)
    assert zone(None) == ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("query", "phrase", "expected", "rest"),
    [
        ("what did we decide last week about billing?", "last week", LAST_WEEK, "what did we decide about billing?"),
        ("Last week, what did we decide?", "Last week", LAST_WEEK, "what did we decide?"),
        ("what did we decide, last week?", "last week", LAST_WEEK, "what did we decide?"),
        ("what did we decide last week", "last week", LAST_WEEK, "what did we decide"),
        ("last week?", "last week", LAST_WEEK, ""),
        ("what happened yesterday?", "yesterday", (DAY_8, DAY_9), "what happened?"),
        (
            "what happened the day before yesterday?",
            "the day before yesterday",
            ("2026-12-07T00:00:00+00:00", DAY_8),
            "what happened?",
        ),
        ("what did we ship today", "today", (DAY_9, DAY_10), "what did we ship"),
        (
            "billing notes this month",
            "this month",
            ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
            "billing notes",
        ),
        ("since Monday what changed", "since Monday", (MONDAY[0], None), "what changed"),
        (
            "what did we decide on Tuesday about billing",
            "on Tuesday",
            (DAY_8, DAY_9),
            "what did we decide about billing",
        ),
        ("what did we decide last Monday", "last Monday", MONDAY, "what did we decide"),
        ("notes in March", "in March", MARCH_2026, "notes"),
        ("notes in March 2026 on pricing", "in March 2026", MARCH_2026, "notes on pricing"),
        ("March 2026 roadmap", "March 2026", MARCH_2026, "roadmap"),
        ("the minutes of March", "of March", MARCH_2026, "the minutes"),
        ("in may we decided", "in may", ("2026-05-01T00:00:00+01:00", "2026-06-01T00:00:00+01:00"), "we decided"),
        (
            "what changed in the last 3 days?",
            "in the last 3 days",
            ("2026-12-06T15:30:00+00:00", None),
            "what changed?",
        ),
        (
            "who spoke during the past week, and why",
            "during the past week",
            ("2026-12-02T15:30:00+00:00", None),
            "who spoke, and why",
        ),
        ("errors over the past 24 hours", "over the past 24 hours", ("2026-12-08T15:30:00+00:00", None), "errors"),
        (
            "decisions 3 weeks ago",
            "3 weeks ago",
            ("2026-11-16T00:00:00+00:00", "2026-11-23T00:00:00+00:00"),
            "decisions",
        ),
        (
            "what was decided before the 1st of May?",
            "before the 1st of May",
            (None, MAY_1_2026[0]),
            "what was decided?",
        ),
        ("what did we decide on the 1st of may", "on the 1st of may", MAY_1_2026, "what did we decide"),
        ("deploy May 1st", "May 1st", MAY_1_2026, "deploy"),
        ("since may 2026, what changed", "since may 2026", (MAY_1_2026[0], None), "what changed"),
        ("what shipped in 2025", "in 2025", ("2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"), "what shipped"),
        ("decisions since 2026-03-01", "since 2026-03-01", ("2026-03-01T00:00:00+00:00", None), "decisions"),
        ("on 2026-03-04 we met", "on 2026-03-04", ("2026-03-04T00:00:00+00:00", "2026-03-05T00:00:00+00:00"), "we met"),
        (
            "changes after 2026-03-04T10:00 to auth",
            "after 2026-03-04T10:00",
            ("2026-03-04T10:00:00+00:00", None),
            "changes to auth",
        ),
        (
            "what happened between 2026-03-01 and 2026-03-15",
            "between 2026-03-01 and 2026-03-15",
            FIRST_HALF_OF_MARCH,
            "what happened",
        ),
        ("notes from 2026-03-01..2026-03-15", "from 2026-03-01..2026-03-15", FIRST_HALF_OF_MARCH, "notes"),
        ("notes 2026-03-01 to 2026-03-15", "2026-03-01 to 2026-03-15", FIRST_HALF_OF_MARCH, "notes"),
        ("what happened from Monday to today", "from Monday to today", (MONDAY[0], DAY_10), "what happened"),
        (
            "deploy on 25/04/2026 failed",
            "on 25/04/2026",
            ("2026-04-25T00:00:00+01:00", "2026-04-26T00:00:00+01:00"),
            "deploy failed",
        ),
        ("up to yesterday the plan", "up to yesterday", (None, DAY_9), "the plan"),
        ("since an hour ago", "since an hour ago", ("2026-12-09T14:30:00+00:00", None), ""),
    ],
)
def test_find_when_finds_the_phrase(query: str, phrase: str, expected: tuple[str | None, str | None], rest: str):
    found = find_when(query, now=NOW, tz=LONDON)
    assert found is not None
    when, remaining = found
    assert (when.phrase, when.start and when.start.isoformat(), when.end and when.end.isoformat(), remaining) == (
        phrase,
        *expected,
        rest,
    )


@pytest.mark.parametrize(
    "query",
    [
        "we may decide",
        "the march on Washington",
        "what is the latest plan",
        "the second option",
        "now what",
        "recent decisions",
        "the current plan",
        "a second ago",
        "what about the past",
        "option 1 may work",  # "may" after a bare number is the verb
        "the 2 may differ",
        "the 2025 budget",  # a bare year without a preposition
        "a total of 2025 items",
        "version 1.2.2026",
        "build 2026.03.04",
        "my last day at work",
        "last minute changes",
        "the last day of the sprint",
        "this month's report",
        "last year's numbers",
        "since Jan joined",  # abbreviated month names only with a day or a year
        "the email from June",  # "from" and "by" do not qualify a bare month name: people are called June
        "notes by April",
        "the Monday standup",  # a bare weekday without a preposition
        "what did I say an hour ago",  # an instant is not a range
        "what happened on 03/04/2026",  # ambiguous: no guess
        "what happened 2026-03-15..2026-03-01",  # empty range
        "what did we decide yesterday and last week",  # two phrases: no choice between them
        "file-2026-03-04-notes",
        "",
    ],
)
def test_find_when_leaves_ordinary_words_alone(query: str):
    assert find_when(query, now=NOW, tz=LONDON) is None


def test_find_when_reads_in_the_given_zone():
    found = find_when("what did we do yesterday?", now=INSTANT, tz=KOLKATA)
    assert found is not None
    assert (found[0].start, found[0].end, found[1]) == (
        datetime(2026, 12, 9, tzinfo=KOLKATA),
        datetime(2026, 12, 10, tzinfo=KOLKATA),
        "what did we do?",
    )


GRAMMAR_WORDS = [
    *("since", "from", "after", "before", "until", "up to", "by", "in", "on", "of", "between", "and", "to", "the"),
    *("last", "past", "this", "previous", "ago", "a", "day", "days", "week", "month", "years", "hours", "may", "March"),
    *("Monday", "yesterday", "today", "1st", "3", "99999999999", "2026", "2026-03-04", "2026-02-30", "03/04/2026"),
    *("25/04/2026", "2026-03-04T10:00", "..", "-", "/", ",", "?", "what", "did", "we", "decide"),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(GRAMMAR_WORDS), st.text(max_size=4)), max_size=8))
def test_find_when_never_raises_and_read_when_raises_only_when_error(words: list[str]):
    query = " ".join(words)
    found = find_when(query, now=NOW, tz=LONDON)
    if found is not None:
        when, rest = found
        assert when.phrase in query and len(rest) < len(query)
        assert when.start is None or when.end is None or when.start < when.end
    try:
        read_when(query, now=NOW, tz=AUCKLAND)
    except WhenError:
        pass


def test_importing_the_module_does_not_import_dateparser():
    code = "import sys, mimir_mcp.search.when; print('dateparser' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
