"""``tracker.report``: every kind agrees on totals and cost; zones, ranges and sources filter."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import TOTAL_FIELDS, layer_sums, parsed_events, resolved, run_scan
from usageledger.buckets import floor_half_hour, local_day, to_epoch
from usageledger.ledger.pricing import Cost, PriceBook, format_usd
from usageledger.sources import UsageEvent
from usageledger.tracker.billing import event_counts
from usageledger.tracker.ledger import LocalLedger, change_time_zone
from usageledger.tracker.report import KINDS, ReportRequest, build_report

BOOK = PriceBook.load_default()


@pytest.fixture
def scanned(ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock) -> Any:
    """A ledger holding the sample logs, and the parsers' de-duplicated events."""
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    return ledger, resolved(parsed_events(env, empty_home))


def make(ledger: LocalLedger, kind: str, **options: Any) -> dict[str, Any]:
    """Build a report in the ledger's zone unless told otherwise."""
    options.setdefault("time_zone", ledger.time_zone)
    request = ReportRequest(kind=kind, **options)
    return ledger.db.read(lambda conn: build_report(conn, ledger, request, BOOK))


def rows_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's row list, whatever its kind."""
    for key in ("days", "weeks", "months", "half_hours", "models", "sessions", "projects"):
        if key in report:
            rows: list[dict[str, Any]] = report[key]
            return rows
    raise AssertionError("no rows")


def priced(events: list[UsageEvent], tz: ZoneInfo) -> str:
    """The cost of events, each priced on the local day of its half-hour, computed directly."""
    cost = Cost()
    for e in events:
        day = local_day(floor_half_hour(to_epoch(e.timestamp)), tz)
        # Each request by itself, with its one-hour writes and billing classes.
        cost.add(BOOK, e.model, day, event_counts(e))
    return format_usd(cost.usd)


@pytest.mark.parametrize("kind", KINDS)
def test_every_report_kind_has_the_ledgers_totals_and_cost(scanned: Any, kind: str) -> None:
    """Tokens and cost of every kind equal the events' sums and their directly computed cost."""
    ledger, events = scanned
    report = make(ledger, kind)
    events_sum, _, _ = layer_sums(ledger)
    totals = report["totals"]
    assert {f: totals[f] for f in TOTAL_FIELDS} == events_sum
    assert totals["cost_usd"] == priced(events, ledger.tz)


@pytest.mark.parametrize("kind", KINDS)
def test_rows_add_up_to_the_totals(scanned: Any, kind: str) -> None:
    """The rows' counts and exact costs sum to the totals row."""
    ledger, _ = scanned
    report = make(ledger, kind)
    rows = rows_of(report)
    assert rows
    for field in TOTAL_FIELDS:
        assert sum(r[field] for r in rows) == report["totals"][field]
    # Rows are rounded to 6 places; their sum may differ from the exact total by < 1e-6 per row.
    row_cost = sum(Decimal(r["cost_usd"]) for r in rows)
    assert abs(row_cost - Decimal(report["totals"]["cost_usd"])) <= Decimal("0.000001") * len(rows)


def test_daily_json_has_the_documented_fields(scanned: Any) -> None:
    """Each day row carries the day, the six counts and cost_usd as a 6-decimal string."""
    ledger, _ = scanned
    report = make(ledger, "daily")
    assert set(report) >= {"report", "timezone", "since", "until", "sources", "days", "totals"}
    day = report["days"][0]
    assert set(day) >= {"day", *TOTAL_FIELDS, "cost_usd", "unpriced_models", "models"}
    assert day["cost_usd"].count(".") == 1
    assert len(day["cost_usd"].split(".")[1]) == 6
    assert [d["day"] for d in report["days"]] == sorted(d["day"] for d in report["days"])


def test_a_foreign_zone_reads_buckets_and_agrees_with_the_rollups_in_that_zone(
    scanned: Any,
) -> None:
    """A report in another zone equals the ledger's own rollups once moved to that zone."""
    ledger, _ = scanned
    foreign = make(ledger, "daily", time_zone="Pacific/Kiritimati")
    ledger.db.write(lambda conn: change_time_zone(conn, ledger.user_id, "Pacific/Kiritimati"))
    moved = replace(ledger, time_zone="Pacific/Kiritimati")
    native = make(moved, "daily", time_zone="Pacific/Kiritimati")
    assert foreign["days"] == native["days"]
    assert foreign["totals"] == native["totals"]


def test_since_and_until_keep_only_their_days(scanned: Any) -> None:
    """The range is inclusive local days; other days are left out of rows and totals."""
    ledger, _ = scanned
    everything = make(ledger, "daily")
    one = make(ledger, "daily", since=date(2025, 9, 15), until=date(2025, 9, 15))
    assert [d["day"] for d in one["days"]] == ["2025-09-15"]
    expected = next(d for d in everything["days"] if d["day"] == "2025-09-15")
    assert one["totals"]["total_tokens"] == expected["total_tokens"]
    sessions = make(ledger, "session", since=date(2025, 9, 15), until=date(2025, 9, 15))
    assert sessions["totals"]["total_tokens"] == expected["total_tokens"]


def test_a_source_filter_keeps_only_that_source(scanned: Any) -> None:
    """--source codex reports Codex usage only, in every kind."""
    ledger, events = scanned
    codex = sum(e.total_tokens for e in events if e.source == "codex")
    for kind in KINDS:
        report = make(ledger, kind, sources=("codex",))
        assert report["totals"]["total_tokens"] == codex


def test_weeks_start_on_monday_and_months_are_calendar_months(scanned: Any) -> None:
    """2025-09-14 (a Sunday) is in the week of Monday 2025-09-08; all days are in 2025-09."""
    ledger, _ = scanned
    weeks = make(ledger, "weekly")["weeks"]
    assert [(w["week"], w["week_start"]) for w in weeks] == [
        ("2025-W37", "2025-09-08"),
        ("2025-W38", "2025-09-15"),
    ]
    assert [m["month"] for m in make(ledger, "monthly")["months"]] == ["2025-09"]


def test_sessions_and_projects_group_the_events(scanned: Any) -> None:
    """One row per (source, session) and per project, with the project kept locally."""
    ledger, events = scanned
    sessions = make(ledger, "session")["sessions"]
    assert len(sessions) == len({(e.source, e.session_id) for e in events})
    projects = make(ledger, "projects")["projects"]
    names = {p["project"] for p in projects}
    assert "/home/alice/proj-a" in names
    for row in sessions:
        assert row["first_event"] <= row["last_event"]


def test_an_empty_ledger_reports_zero(ledger: LocalLedger) -> None:
    """No usage: no rows, zero totals, cost 0.000000."""
    report = make(ledger, "daily")
    assert report["days"] == []
    assert report["totals"]["total_tokens"] == 0
    assert report["totals"]["cost_usd"] == "0.000000"
