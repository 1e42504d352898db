"""Vendor rate-limit windows: stored append-only by observation time, shown as observed."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
from click.testing import CliRunner

from tests.tracker.conftest import Clock, logs_env
from usageledger.cli.root import main
from usageledger.sources.base import LimitObservation
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.limits import (
    build_limits,
    claude_limits,
    describe_reset,
    store_changed_limits,
    store_limits,
)
from usageledger.tracker.scan import scan

ROLLOUT = (
    "codex/sessions/2025/09/15/"
    "rollout-2025-09-15T10-00-00-0199a000-0000-7000-8000-000000000001.jsonl"
)


def rows(ledger: LocalLedger) -> list[tuple[object, ...]]:
    """Every stored observation, in key order."""
    return ledger.db.read(
        lambda conn: conn.execute(
            "SELECT source, window_name, observed_ms, used_percent, window_minutes, resets_at_ms "
            "FROM limit_observations ORDER BY source, window_name, observed_ms"
        ).fetchall()
    )


def obs(
    window: str, minute: int, used: float, resets: int | None = 1_800_000_000
) -> LimitObservation:
    """A Claude observation at 2026-12-04 12:<minute> UTC."""
    return LimitObservation(
        source="claude",
        window=window,
        observed_at=datetime(2026, 12, 4, 12, minute, tzinfo=UTC),
        used_percent=used,
        window_minutes=300,
        resets_at=datetime.fromtimestamp(resets, UTC) if resets is not None else None,
    )


def test_a_scan_stores_codex_limits_once_and_a_rescan_adds_none(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """The sample rollouts' windows land once; a re-scan, and a re-read from byte 0, add none."""
    env = logs_env(logs)
    scan(ledger, env=env, home=empty_home, clock=clock, sources=["codex"])
    first = rows(ledger)
    assert first, "the sample rollouts carry rate_limits"
    assert {(r[0], r[1], r[3], r[4]) for r in first} >= {
        ("codex", "primary", 7.0, 300),
        ("codex", "secondary", 21.0, 10080),
    }
    # 2025-09-15T10:00:01.500Z, the first token_count of the rollout, resetting at 1757944800.
    assert ("codex", "primary", 1757930401500, 7.0, 300, 1757944800000) in first
    scan(ledger, env=env, home=empty_home, clock=clock, sources=["codex"])
    path = logs / ROLLOUT
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)  # a new inode: read again from byte 0
    os.utime(path, ns=(1, 1))
    scan(ledger, env=env, home=empty_home, clock=clock, sources=["codex"])
    assert rows(ledger) == first


def test_latest_and_history_are_shown_as_observed(ledger: LocalLedger) -> None:
    """The newest value per window first; history newest first; a passed reset is marked."""
    ledger.db.write(
        lambda conn: store_limits(
            conn,
            ledger.user_id,
            [obs("five_hour", 1, 10.0), obs("five_hour", 5, 12.5), obs("seven_day", 3, 40.0, None)],
        )
    )
    now = int(datetime(2026, 12, 4, 13, 0, tzinfo=UTC).timestamp() * 1000)
    tz = ledger.tz
    result = ledger.db.read(
        lambda conn: build_limits(conn, ledger.user_id, tz=tz, now_ms=now, history=5)
    )
    five, seven = result["windows"]
    assert (five["window"], five["used_percent"], five["observed_at"]) == (
        "five_hour",
        12.5,
        "2026-12-04T12:05:00+00:00",
    )
    assert [h["used_percent"] for h in five["history"]] == [12.5, 10.0]
    # 1_800_000_000 is 2027-01-15T08:00:00Z: still ahead of the clock.
    assert five["resets_at"] == "2027-01-15T08:00:00+00:00"
    assert five["reset_passed"] is False
    assert seven["resets_at"] is None
    assert seven["reset_passed"] is False
    later = int(datetime(2027, 1, 16, tzinfo=UTC).timestamp() * 1000)
    again = ledger.db.read(lambda conn: build_limits(conn, ledger.user_id, tz=tz, now_ms=later))
    assert again["windows"][0]["reset_passed"] is True
    assert "history" not in again["windows"][0]
    assert describe_reset(five["resets_at"], later) == "passed"
    assert describe_reset(five["resets_at"], now) == "in 41d 19h"


def test_the_same_time_twice_is_stored_once(ledger: LocalLedger) -> None:
    """The key is source, window and observation time: a repeat inserts nothing."""
    first = ledger.db.write(lambda c: store_limits(c, ledger.user_id, [obs("five_hour", 1, 10.0)]))
    again = ledger.db.write(lambda c: store_limits(c, ledger.user_id, [obs("five_hour", 1, 99.0)]))
    assert (first, again) == (1, 0)
    assert [r[3] for r in rows(ledger)] == [10.0]


def test_the_status_line_stores_a_window_only_when_its_value_changed(ledger: LocalLedger) -> None:
    """Same percentage and reset: nothing; a new percentage: one row."""
    store = store_changed_limits
    assert ledger.db.write(lambda c: store(c, ledger.user_id, [obs("five_hour", 1, 10.0)])) == 1
    assert ledger.db.write(lambda c: store(c, ledger.user_id, [obs("five_hour", 2, 10.0)])) == 0
    assert ledger.db.write(lambda c: store(c, ledger.user_id, [obs("five_hour", 3, 11.0)])) == 1


def test_claude_rate_limits_are_read_as_sent_and_junk_is_ignored() -> None:
    """five_hour and seven_day with used_percentage and resets_at; other shapes are skipped."""
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    sent = {
        "five_hour": {"used_percentage": 23.5, "resets_at": 1738425600},
        "seven_day": {"used_percentage": 41.2, "resets_at": 1738857600},
        "bogus": {"used_percentage": "lots"},
        "other": 5,
    }
    found = claude_limits(sent, now)
    assert [(o.window, o.used_percent, o.window_minutes, o.resets_at) for o in found] == [
        ("five_hour", 23.5, 300, datetime.fromtimestamp(1738425600, UTC)),
        ("seven_day", 41.2, 10080, datetime.fromtimestamp(1738857600, UTC)),
    ]
    assert all(o.observed_at == now and o.source == "claude" for o in found)
    assert claude_limits(None, now) == []
    assert claude_limits([1], now) == []


def test_limits_cli_prints_json_and_a_table(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """`limits --json` has one entry per window; the table names source and window."""
    scan(ledger, env=logs_env(logs), home=empty_home, clock=clock, sources=["codex"])
    env = {"USAGELEDGER_HOME": str(ledger.home), "HOME": str(empty_home), "COLUMNS": "200"}
    done = CliRunner().invoke(main, ["limits", "--json", "--no-scan", "--history", "2"], env=env)
    assert done.exit_code == 0, done.output
    windows = orjson.loads(done.stdout)["windows"]
    assert [(w["source"], w["window"]) for w in windows] == [
        ("codex", "primary"),
        ("codex", "secondary"),
    ]
    assert all(len(w["history"]) == 2 for w in windows)
    table = CliRunner().invoke(main, ["limits", "--no-scan"], env=env)
    assert table.exit_code == 0
    assert "primary" in table.stdout
    assert "secondary" in table.stdout


def test_push_never_reads_the_limit_observations() -> None:
    """`push` sends buckets only: its module does not name the observations' table."""
    import usageledger.tracker.push as push

    assert "limit_observations" not in Path(push.__file__).read_text(encoding="utf-8")


def test_the_table_is_append_only_keyed_by_source_window_and_time(ledger: LocalLedger) -> None:
    """The primary key of limit_observations is (user_id, source, window_name, observed_ms)."""
    info = ledger.db.read(
        lambda conn: conn.execute("PRAGMA table_info(limit_observations)").fetchall()
    )
    key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
    assert key == ["user_id", "source", "window_name", "observed_ms"]
    assert isinstance(ledger.db.conn, sqlite3.Connection)
