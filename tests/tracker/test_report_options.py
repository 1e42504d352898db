"""Report options: --breakdown, session --id, hourly, --csv, day shortcuts, --start-of-week."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from usageledger.cli.root import main
from usageledger.tracker.report import KINDS, resolve_day, week_day

#: 2025-09-17 12:00 UTC, a Wednesday two days after the samples' busiest day.
NOW_MS = 1_758_110_400_000


@pytest.fixture
def env(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sample logs' user (``cli_env``) with the clock at NOW_MS."""
    monkeypatch.setattr("usageledger.cli.tracker.clock", lambda: NOW_MS)
    return cli_env


def invoke(env: dict[str, str], *args: str) -> Result:
    """Run ``usageledger ARGS``."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def report_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``usageledger report ARGS --json`` parsed."""
    result = invoke(env, "report", *args, "--json")
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = orjson.loads(result.stdout)
    return parsed


TODAY = date(2025, 9, 17)


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("today", date(2025, 9, 17), date(2025, 9, 17)),
        ("yesterday", date(2025, 9, 16), date(2025, 9, 16)),
        ("7d", date(2025, 9, 11), date(2025, 9, 17)),
        ("30d", date(2025, 8, 19), date(2025, 9, 17)),
        ("this-week", date(2025, 9, 15), date(2025, 9, 21)),
        ("last-week", date(2025, 9, 8), date(2025, 9, 14)),
        ("this-month", date(2025, 9, 1), date(2025, 9, 30)),
        ("last-month", date(2025, 8, 1), date(2025, 8, 31)),
        ("2025-01-02", date(2025, 1, 2), date(2025, 1, 2)),
    ],
)
def test_each_day_shortcut_means_its_calendar_range(text: str, first: date, last: date) -> None:
    """Shortcuts count from the given today; weeks start on Monday by default."""
    assert resolve_day(text, TODAY) == (first, last)


def test_weeks_of_the_shortcuts_start_on_the_asked_day() -> None:
    """With Sunday first, this week of Wednesday 2025-09-17 starts on Sunday 2025-09-14."""
    assert resolve_day("this-week", TODAY, start_of_week=week_day("sunday")) == (
        date(2025, 9, 14),
        date(2025, 9, 20),
    )
    assert resolve_day("last-month", date(2025, 1, 15)) == (date(2024, 12, 1), date(2024, 12, 31))


@pytest.mark.parametrize("text", ["tomorrow", "0d", "2025-13-01", "20250101", ""])
def test_an_unknown_day_is_refused_with_the_accepted_forms(text: str) -> None:
    """A word, date or count that means no day raises ValueError listing what is accepted."""
    with pytest.raises(ValueError, match="last-month"):
        resolve_day(text, TODAY)


def test_since_shortcuts_count_from_the_clock_in_the_reports_zone(env: dict[str, str]) -> None:
    """--since last-week alone is that whole week; yesterday in Tokyo is a different day."""
    week = report_json(env, "daily", "--since", "last-week")
    assert (week["since"], week["until"]) == ("2025-09-08", "2025-09-14")
    assert [d["day"] for d in week["days"]] == ["2025-09-14"]
    seven = report_json(env, "daily", "--since", "7d", "--no-scan")
    assert (seven["since"], seven["until"]) == ("2025-09-11", "2025-09-17")
    # Ten characters like a date, but shortcuts: each ends where its month does.
    last_month = report_json(env, "daily", "--since", "last-month", "--no-scan")
    assert (last_month["since"], last_month["until"]) == ("2025-08-01", "2025-08-31")
    assert last_month["days"] == []
    this_month = report_json(env, "daily", "--since", "this-month", "--no-scan")
    assert (this_month["since"], this_month["until"]) == ("2025-09-01", "2025-09-30")
    dated = report_json(env, "daily", "--since", "2025-09-15", "--no-scan")
    assert (dated["since"], dated["until"]) == ("2025-09-15", None)  # a date alone stays open
    late = {**env, "TZ": "UTC"}
    tokyo = report_json(late, "daily", "--since", "today", "--timezone", "Pacific/Kiritimati")
    assert tokyo["since"] == "2025-09-18"  # 12:00 UTC is already the 18th at UTC+14


def test_a_bad_shortcut_exits_2(env: dict[str, str]) -> None:
    """An unknown --since word is a usage error naming the accepted forms."""
    result = invoke(env, "report", "--since", "someday", "--no-scan")
    assert result.exit_code == 2
    assert "this-month" in result.stderr


def test_start_of_week_moves_the_weekly_rows(env: dict[str, str]) -> None:
    """Sunday-first weeks put Sunday 2025-09-14 at the start of its own week."""
    monday = report_json(env, "weekly")
    sunday = report_json(env, "weekly", "--start-of-week", "sunday", "--no-scan")
    assert monday["weeks"][0]["week_start"] == "2025-09-08"
    assert monday["start_of_week"] == "monday"
    assert sunday["start_of_week"] == "sunday"
    assert [w["week_start"] for w in sunday["weeks"]] == ["2025-09-14"]
    assert sunday["weeks"][0]["week"] == "2025-W38"
    assert sunday["totals"] == monday["totals"]
    bad = invoke(env, "report", "weekly", "--start-of-week", "someday", "--no-scan")
    assert bad.exit_code == 2


def test_breakdown_prints_a_row_per_model_under_each_day(env: dict[str, str]) -> None:
    """Each model of a day appears on its own line with its source; without it, none do."""
    plain = invoke(env, "report", "daily")
    broken = invoke(env, "report", "daily", "--breakdown", "--no-scan")
    assert "└ gpt-5 (codex)" in broken.stdout
    assert "└ gemini-2.5-pro (gemini)" in broken.stdout
    assert "└ " not in plain.stdout


def test_session_breakdown_rows_add_up_to_the_session(env: dict[str, str]) -> None:
    """The additive ``breakdown`` of each session sums to the session's own counts."""
    report = report_json(env, "session")
    for session in report["sessions"]:
        parts = session["breakdown"]
        assert {p["model"] for p in parts} == set(session["models"])
        assert sum(p["total_tokens"] for p in parts) == session["total_tokens"]


def test_session_id_keeps_only_that_session(env: dict[str, str]) -> None:
    """`report session --id ID` has one row, the same as in the full report."""
    everything = report_json(env, "session")
    wanted = everything["sessions"][1]
    one = report_json(env, "session", "--id", wanted["session_id"], "--no-scan")
    assert one["session_id"] == wanted["session_id"]
    assert [s["session_id"] for s in one["sessions"]] == [wanted["session_id"]]
    assert one["sessions"][0]["total_tokens"] == wanted["total_tokens"]


def test_an_unknown_session_id_exits_1_and_id_needs_the_session_kind(env: dict[str, str]) -> None:
    """No such session: exit 1 naming it; --id on another kind: exit 2."""
    missing = invoke(env, "report", "session", "--id", "no-such-session")
    assert missing.exit_code == 1
    assert "no-such-session" in missing.stderr
    assert invoke(env, "report", "daily", "--id", "x", "--no-scan").exit_code == 2


def test_hourly_reports_the_half_hours_of_a_day(env: dict[str, str]) -> None:
    """Each row is one stored half-hour of 2025-09-15; they add up to that day's total."""
    hourly = report_json(env, "hourly", "--since", "2025-09-15", "--until", "2025-09-15")
    daily = report_json(env, "daily", "--since", "2025-09-15", "--until", "2025-09-15")
    starts = [h["half_hour"] for h in hourly["half_hours"]]
    assert starts == sorted(starts)
    assert all(s[14:16] in ("00", "30") and s.startswith("2025-09-15") for s in starts)
    assert hourly["totals"] == daily["totals"]


def test_hourly_without_a_range_is_today(env: dict[str, str]) -> None:
    """With the clock on 2025-09-17, a bare `report hourly` covers that day only."""
    hourly = report_json(env, "hourly")
    assert (hourly["since"], hourly["until"]) == ("2025-09-17", "2025-09-17")
    assert hourly["half_hours"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_csv_has_a_header_and_one_line_per_json_row(env: dict[str, str], kind: str) -> None:
    """Every kind prints CSV whose lines match the JSON rows and whose sums match its totals."""
    range_ = ["--since", "2025-09-15", "--until", "2025-09-15"] if kind == "hourly" else []
    result = invoke(env, "report", kind, "--csv", *range_)
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    report = report_json(env, kind, "--no-scan", *range_)
    rows = next(v for k, v in report.items() if isinstance(v, list) and k != "sources")
    assert len(lines) == len(rows)
    assert sum(int(line["total_tokens"]) for line in lines) == report["totals"]["total_tokens"]


def test_csv_breakdown_adds_source_and_model_lines(env: dict[str, str]) -> None:
    """With --breakdown, each day line is followed by its per-model lines."""
    result = invoke(env, "report", "daily", "--csv", "--breakdown")
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    own = [line for line in lines if not line["model"]]
    parts = [line for line in lines if line["model"]]
    assert sum(int(p["total_tokens"]) for p in parts) == sum(int(o["total_tokens"]) for o in own)
    assert {"source", "model", "day", "cost_usd"} <= set(lines[0])


def test_json_and_csv_together_are_refused(env: dict[str, str]) -> None:
    """--json with --csv is a usage error."""
    assert invoke(env, "report", "--json", "--csv", "--no-scan").exit_code == 2
