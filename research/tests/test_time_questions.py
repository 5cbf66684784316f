"""research/time_questions.py: a team's notes over 180 days and questions with time phrases, judged by the
range rules its README states. The rules are derived again here, from the files alone, and every judgement
is checked against them."""

import calendar
import json
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mimir_mcp.evaluation.beir import load_dataset
from tests.conftest import PYTHON

SCRIPT = Path(__file__).resolve().parents[1] / "time_questions.py"
MONTH_NUMBERS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
WEEKDAY_NUMBERS = {name.lower(): number for number, name in enumerate(calendar.day_name)}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def build(folder: Path) -> Path:
    made = subprocess.run([PYTHON, str(SCRIPT), "--out", str(folder)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("time-questions") / "set")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def moment(text: str) -> datetime:
    assert STAMP.fullmatch(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return day_start(date(year, month, 1)), day_start(date(*following, 1))


def most_recent(today: date, month: int, day: int) -> date:
    """The latest date with this month and day that is not after today."""
    year = today.year
    while date(year, month, day) > today:
        year -= 1
    return date(year, month, day)


def expected_range(when: str, now: datetime) -> tuple[datetime | None, datetime]:
    """The range a time phrase stands for at ``now``, by the README's rules (UTC, weeks from Monday)."""
    phrase = when.lower()
    today = now.date()
    monday = today - timedelta(days=today.weekday())
    if phrase == "yesterday":
        return day_start(today - timedelta(days=1)), day_start(today)
    if phrase == "this week":
        return day_start(monday), day_start(monday + timedelta(weeks=1))
    if phrase == "last week":
        return day_start(monday - timedelta(weeks=1)), day_start(monday)
    if phrase == "this month":
        return month_bounds(today.year, today.month)
    if phrase == "last month":
        return month_bounds(today.year - 1, 12) if today.month == 1 else month_bounds(today.year, today.month - 1)
    if (match := re.fullmatch(r"in ([a-z]+)", phrase)) and match[1] in MONTH_NUMBERS:
        month = MONTH_NUMBERS[match[1]]
        return month_bounds(today.year if month <= today.month else today.year - 1, month)
    if match := re.fullmatch(r"(\d+) weeks ago", phrase):
        then = (now - timedelta(weeks=int(match[1]))).date()
        return day_start(then - timedelta(days=then.weekday())), day_start(then + timedelta(days=7 - then.weekday()))
    if (match := re.fullmatch(r"(on|since) ([a-z]+)", phrase)) and match[2] in WEEKDAY_NUMBERS:
        back = next(
            days for days in range(1, 8) if (today - timedelta(days=days)).weekday() == WEEKDAY_NUMBERS[match[2]]
        )
        day = today - timedelta(days=back)
        return day_start(day), (day_start(day + timedelta(days=1)) if match[1] == "on" else now)
    if match := re.fullmatch(r"since (\d+) ([a-z]+)", phrase):
        return day_start(most_recent(today, MONTH_NUMBERS[match[2]], int(match[1]))), now
    if match := re.fullmatch(r"(?:in|over) the (?:last|past) (\d+) days", phrase):
        return now - timedelta(hours=24 * int(match[1])), now
    if match := re.fullmatch(r"before the (\d+)(st|nd|rd|th) of ([a-z]+)", phrase):
        number = int(match[1])
        assert match[2] == {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(number, "th")
        return None, day_start(most_recent(today, MONTH_NUMBERS[match[3]], number))
    if match := re.fullmatch(r"(\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d)", phrase):
        first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
        return day_start(first), day_start(last) + timedelta(days=1)
    raise AssertionError(f"no rule reads {when!r}")


def test_the_rules_read_as_the_readme_says():
    """A few phrases at a Thursday's clock, worked out by hand."""
    now = datetime(2026, 6, 25, 16, tzinfo=UTC)
    assert expected_range("yesterday", now) == (datetime(2026, 6, 24, tzinfo=UTC), datetime(2026, 6, 25, tzinfo=UTC))
    assert expected_range("last week", now) == (datetime(2026, 6, 15, tzinfo=UTC), datetime(2026, 6, 22, tzinfo=UTC))
    assert expected_range("2 weeks ago", now)[0] == datetime(2026, 6, 8, tzinfo=UTC)
    assert expected_range("since Thursday", now) == (datetime(2026, 6, 18, tzinfo=UTC), now)
    assert expected_range("on Monday", now)[0] == datetime(2026, 6, 22, tzinfo=UTC)
    assert expected_range("in December", now) == (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert expected_range("before the 1st of May", now) == (None, datetime(2026, 5, 1, tzinfo=UTC))
    assert expected_range("in the past 3 days", now) == (datetime(2026, 6, 22, 16, tzinfo=UTC), now)
    assert expected_range("2026-03-02..2026-03-15", now)[1] == datetime(2026, 3, 16, tzinfo=UTC)


def test_the_folder_is_a_beir_set_of_the_promised_size(built):
    dataset = load_dataset(built, "test")
    assert 400 <= len(dataset.corpus) <= 600
    assert 200 <= len(dataset.queries) <= 300
    assert set(dataset.judged_queries) == set(dataset.queries)  # every query has a relevant memory
    queries = read_rows(built / "queries.jsonl")
    corpus = read_rows(built / "corpus.jsonl")
    assert len({row["_id"] for row in queries}) == len(queries) == len(dataset.queries)
    assert len({row["_id"] for row in corpus}) == len(corpus) == len(dataset.corpus)
    kinds = [row["category"] for row in queries]
    revisions = json.loads((built / "revisions.json").read_text(encoding="utf-8"))
    assert 50 <= len(revisions) <= 60 and all(3 <= len(notes) <= 5 for notes in revisions.values())
    assert kinds.count("latest") == len(revisions)
    assert 20 <= kinds.count("plain") <= 40
    assert kinds.count("dated") >= 150
    assert {row["phrase"] for row in queries if row["category"] == "dated"} >= {
        "yesterday",
        "this-week",
        "last-week",
        "in-month",
        "since-weekday",
        "on-weekday",
        "before",
        "iso",
    }
    assert "latest" in (built / "README.md").read_text(encoding="utf-8")


def test_memories_lie_in_the_180_days_before_the_clock(built):
    clock = json.loads((built / "clock.json").read_text(encoding="utf-8"))
    now = moment(clock["now"])
    assert clock["tz"] == "UTC" and now.weekday() in (1, 2, 3, 4)
    for row in read_rows(built / "corpus.jsonl"):
        assert now - timedelta(days=180) <= moment(row["created_at"]) < now, row


def test_dated_questions_hold_their_answers_and_leave_another_revision_out(built):
    now = moment(json.loads((built / "clock.json").read_text(encoding="utf-8"))["now"])
    created = {row["_id"]: moment(row["created_at"]) for row in read_rows(built / "corpus.jsonl")}
    revisions = json.loads((built / "revisions.json").read_text(encoding="utf-8"))
    relevant = load_dataset(built, "test").qrels
    dated = [row for row in read_rows(built / "queries.jsonl") if row["category"] == "dated"]
    for row in dated:
        start, end = expected_range(row["when"], now)
        recorded = [moment(bound) if bound else None for bound in row["range"]]
        assert recorded == [start, end], row

        def inside(note_id: str, start: datetime | None = start, end: datetime = end) -> bool:
            return (start is None or start <= created[note_id]) and created[note_id] < end

        topic = [note["id"] for note in revisions[row["topic"]]]
        held = [note_id for note_id in topic if inside(note_id)]
        expected = held[-1:] if row["when"].lower().startswith("before") else held
        assert set(relevant[row["_id"]]) == set(expected) and 1 <= len(expected) <= 2, row
        assert set(relevant[row["_id"]].values()) == {1}
        assert any(not inside(note_id) for note_id in topic), row
        if row["phrase"] == "iso":  # given beside the question, never in it
            assert row["text"] == row["plain"]
        else:
            assert row["text"].count(row["when"]) == 1, row
            without = row["text"].replace(row["when"] + ", ", "").replace(" " + row["when"], "")
            assert without.lower() == row["plain"].lower() and row["plain"][0].isupper(), row


def test_latest_questions_judge_the_topics_newest_revision(built):
    created = {row["_id"]: moment(row["created_at"]) for row in read_rows(built / "corpus.jsonl")}
    revisions = json.loads((built / "revisions.json").read_text(encoding="utf-8"))
    relevant = load_dataset(built, "test").qrels
    for row in read_rows(built / "queries.jsonl"):
        if row["category"] == "dated":
            continue
        assert row["when"] is None and row["text"] == row["plain"], row
        if row["category"] == "latest":
            newest = max((note["id"] for note in revisions[row["topic"]]), key=created.__getitem__)
            assert relevant[row["_id"]] == {newest: 2}, row
        else:
            assert len(relevant[row["_id"]]) == 1, row


def test_two_builds_are_byte_identical(built, tmp_path):
    again = build(tmp_path / "again")
    names = sorted(str(path.relative_to(built)) for path in built.rglob("*") if path.is_file())
    assert names == sorted(str(path.relative_to(again)) for path in again.rglob("*") if path.is_file())
    assert all((built / name).read_bytes() == (again / name).read_bytes() for name in names)
