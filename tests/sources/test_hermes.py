"""Hermes Agent state.db reader: per-session totals, profiles, live databases, discovery."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.sources._session_dbs import build, writer
from tests.sources._support import Sums, by_day, scan
from usageledger.cli.root import main
from usageledger.sources import _session_db, parse_whole, resolve_duplicates
from usageledger.sources._common import InvalidRecordError
from usageledger.sources.hermes import HermesParser, map_tokens, session_event
from usageledger.sources.opencode import DatabaseUnavailableError

PARSER = HermesParser()


def row(**values: Any) -> dict[str, Any]:
    """A ``sessions`` row as the reader sees it (absent columns are NULL)."""
    base: dict[str, Any] = {"id": "20250915_090000_a1b2c3", "started_at": 1757926800.0}
    return {**base, "model": "gpt-5", **values}


@pytest.fixture
def hermes_home(tmp_path: Path) -> Path:
    """A copy of the samples with state.db and profiles/work/state.db built."""
    return build("hermes", tmp_path / ".hermes")


def test_caches_are_apart_from_input_and_reasoning_is_inside_output() -> None:
    """input + cache_write is our input; cache_read is cached; output already holds reasoning."""
    values = row(
        input_tokens=300,
        output_tokens=2000,
        cache_read_tokens=10000,
        cache_write_tokens=1000,
        reasoning_tokens=500,
    )
    # input 300 + write 1000 = 1300; cached 10000; output 2000 (reasoning 500 inside); total 13300.
    event = session_event(values)
    assert event is not None
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (
        1300,
        10000,
        2000,
    )
    assert (event.reasoning_output_tokens, event.cache_write_tokens) == (500, 1000)
    assert event.total_tokens == 13300
    assert (event.event_key, event.session_id, event.model) == (
        "20250915_090000_a1b2c3",
        "20250915_090000_a1b2c3",
        "gpt-5",
    )
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (row(input_tokens=1, output_tokens=10, reasoning_tokens=20), "reasoning_tokens exceeds"),
        (row(input_tokens=-1, output_tokens=1), "input_tokens is negative"),
        (row(input_tokens=1.5, output_tokens=1), "input_tokens is not an integer"),
        (row(input_tokens=2**53, output_tokens=1), r"exceeds 2\^53"),
        (row(input_tokens=1, output_tokens=1, started_at=None), "missing start time"),
        (row(input_tokens=1, output_tokens=1, started_at="soon"), "not ISO-8601"),
        (row(input_tokens=1, output_tokens=1, id=None), "session without id"),
    ],
)
def test_inconsistent_or_hostile_rows_are_problems(values: dict[str, Any], reason: str) -> None:
    """A row that cannot be counted raises InvalidRecordError for the reader to report."""
    with pytest.raises(InvalidRecordError, match=reason):
        session_event(values)


def test_a_session_without_usage_and_null_counts_yield_nothing() -> None:
    """A session that never called the model (zeros or NULLs) is no event."""
    assert session_event(row(input_tokens=0, output_tokens=0)) is None
    assert session_event(row(input_tokens=None, output_tokens=None)) is None
    assert map_tokens(row(input_tokens=5, output_tokens=7)) == (5, 0, 7, 0, 0)


def test_started_at_may_be_seconds_milliseconds_or_iso_text() -> None:
    """Unix seconds (Hermes), milliseconds and ISO text all date the session at its start."""
    start = datetime(2025, 9, 15, 9, 0, tzinfo=UTC)
    for value in (1757926800, 1757926800.0, 1757926800000, "1757926800", "2025-09-15T09:00:00Z"):
        event = session_event(row(input_tokens=1, output_tokens=1, started_at=value))
        assert event is not None
        assert event.timestamp == start


def test_sample_totals_per_day_are_worked_out_by_hand(hermes_home: Path) -> None:
    """Both profiles' databases sum to the hand-computed totals; the copied session counts once."""
    events, problems = scan(PARSER, {"HERMES_HOME": str(hermes_home)}, Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15:
    #   a1b2c3 (openrouter): in 1200+2500=3700, cached 40000, out 900, write 2500
    #   d4e5f6 (codex):      in 5000,           cached 20000, out 3000 (reasoning 1800 inside)
    #   (a1b2c3 again in profiles/work: the same session, counted once)
    #   = in 8700, cached 60000, out 3900, reasoning 1800, write 2500; total 72600
    assert days["2025-09-15"] == Sums(8700, 60000, 3900, 1800, 2500)
    assert days["2025-09-15"].total == 72600
    # 2025-09-16:
    #   aaaaaa (no model):  in 100, out 50
    #   w00001 (anthropic): in 300+1000=1300, cached 10000, out 2000 (reasoning 500), write 1000
    #   = in 1400, cached 10000, out 2050, reasoning 500, write 1000; total 13450
    assert days["2025-09-16"] == Sums(1400, 10000, 2050, 500, 1000)
    assert {e.model for e in events} >= {"unknown", "claude-opus-4-1", "gpt-5"}
    assert [(Path(p.path).name, p.reason.split(":")[0]) for p in problems] == [
        ("state.db", "session 20250916_090000_bad001")
    ]


def test_discover_reads_hermes_home_and_its_profiles(tmp_path: Path, hermes_home: Path) -> None:
    """HERMES_HOME (comma-separated) wins over ~/.hermes; profiles/*/state.db are included."""
    main_db, work_db = hermes_home / "state.db", hermes_home / "profiles/work/state.db"
    assert PARSER.discover({"HERMES_HOME": str(hermes_home)}, tmp_path) == [work_db, main_db]
    assert PARSER.discover({}, tmp_path) == [work_db, main_db]  # the default ~/.hermes
    other = tmp_path / "other"
    (other / "profiles" / "empty").mkdir(parents=True)
    (other / "state.db-wal").write_bytes(b"")
    env = {"HERMES_HOME": f"{other}, {tmp_path / 'missing'}"}
    assert PARSER.discover(env, tmp_path) == []
    assert PARSER.discover({}, tmp_path / "nobody") == []  # an absent root is no error


def test_macos_uses_the_same_hermes_home(tmp_path: Path) -> None:
    """Hermes keeps ~/.hermes on macOS too (no Library path), so the default covers it."""
    (tmp_path / "Library" / "Application Support" / "hermes").mkdir(parents=True)
    assert PARSER.discover({}, tmp_path) == []


def test_rows_still_in_the_write_ahead_log_are_read(hermes_home: Path) -> None:
    """A session Hermes just committed into -wal (not yet checkpointed) is counted."""
    path = hermes_home / "state.db"
    conn = writer(path)
    try:
        conn.execute(
            "INSERT INTO sessions (id, source, model, started_at, input_tokens, output_tokens) "
            "VALUES ('20250917_100000_new001', 'cli', 'gpt-5', 1758103200, 11, 22)"
        )
        assert Path(f"{path}-wal").stat().st_size > 0
        keys = [e.event_key for e in parse_whole(PARSER, path).events]
    finally:
        conn.close()
    assert "20250917_100000_new001" in keys


def test_a_read_during_a_write_transaction_sees_the_last_commit(hermes_home: Path) -> None:
    """While Hermes holds an open write transaction, the read neither waits nor sees it."""
    path = hermes_home / "state.db"
    conn = writer(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE sessions SET output_tokens = 999999 WHERE id = '20250915_233000_d4e5f6'"
        )
        events = parse_whole(PARSER, path).events
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    (grown,) = [e for e in events if e.event_key == "20250915_233000_d4e5f6"]
    assert grown.output_tokens == 3000


def test_an_exclusively_locked_database_is_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback-journal database locked by its writer is 'cannot read now', not a crash."""
    monkeypatch.setattr(_session_db, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript((Path(__file__).parent / "samples/hermes/schema.sql").read_text())
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO sessions (id, source, started_at) VALUES ('s', 'cli', 1)")
    try:
        with pytest.raises(DatabaseUnavailableError, match="cannot read the database"):
            list(PARSER.read_database(str(path)))
    finally:
        conn.execute("COMMIT")
        conn.close()
    assert [e for p in PARSER.read_database(str(path)) for e in p.events] == []


def test_a_closed_database_is_read_without_being_changed(hermes_home: Path) -> None:
    """With Hermes not running, the read-only open writes nothing (no -wal, no -shm left)."""
    path = hermes_home / "profiles/work/state.db"
    before = path.read_bytes()
    assert len(parse_whole(PARSER, path).events) == 2
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_a_file_that_is_not_a_hermes_database_cannot_be_read_now(
    tmp_path: Path, content: bytes
) -> None:
    """No sessions table, or not SQLite: DatabaseUnavailableError (the scanner retries)."""
    path = tmp_path / "state.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseUnavailableError, match="cannot read the database"):
        list(PARSER.read_database(str(path)))


def test_an_older_schema_without_cache_columns_is_read(tmp_path: Path) -> None:
    """Hermes builds before cache accounting have no cache/reasoning columns: read as zero."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, model TEXT, started_at REAL, "
            "input_tokens INTEGER, output_tokens INTEGER)"
        )
        conn.execute("INSERT INTO sessions VALUES ('s1', 'gpt-4o', 1757926800, 40, 2)")
    conn.close()
    (event,) = parse_whole(PARSER, path).events
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (40, 0, 2)


def test_pages_hold_every_row_once(hermes_home: Path) -> None:
    """Read in pages of two rows, the database gives the rows of one read, in order."""
    path = str(hermes_home / "state.db")
    pages = list(PARSER.read_database(path, page_rows=2))
    assert [len(p.events) + len(p.problems) for p in pages] == [2, 1, 1]
    whole = list(PARSER.read_database(path))
    assert [e for p in pages for e in p.events] == [e for p in whole for e in p.events]


def test_a_grown_session_replaces_its_earlier_total(hermes_home: Path) -> None:
    """Policy "last": the session read again after it grew keeps only its new total."""
    path = hermes_home / "state.db"
    before = parse_whole(PARSER, path).events
    conn = writer(path)
    try:
        conn.execute(
            "UPDATE sessions SET input_tokens = input_tokens + 100, output_tokens = "
            "output_tokens + 10 WHERE id = '20250915_233000_d4e5f6'"
        )
    finally:
        conn.close()
    after = parse_whole(PARSER, path).events
    kept = resolve_duplicates(before + after, PARSER.duplicate_policy)
    (grown,) = [e for e in kept if e.event_key == "20250915_233000_d4e5f6"]
    assert (grown.input_tokens, grown.output_tokens) == (5100, 3010)
    assert len(kept) == len(after)


def report_daily(env: dict[str, str]) -> dict[str, dict[str, int]]:
    """``usageledger report daily --json --source hermes`` (scans first) as day → counts."""
    result = CliRunner().invoke(
        main, ["report", "daily", "--json", "--source", "hermes"], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    fields = ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")
    return {d["day"]: {f: d[f] for f in fields} for d in orjson.loads(result.stdout)["days"]}


def test_scan_then_growth_then_scan_holds_the_new_total_once(
    tmp_path: Path, hermes_home: Path
) -> None:
    """End to end: the ledger replaces a grown session's total instead of adding it again."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "HERMES_HOME": str(hermes_home),
    }
    first = report_daily(env)
    assert first["2025-09-15"] == {
        "input_tokens": 8700,
        "cached_input_tokens": 60000,
        "output_tokens": 3900,
        "total_tokens": 72600,
    }
    assert first["2025-09-16"]["total_tokens"] == 13450
    conn = writer(hermes_home / "state.db")  # Hermes keeps its writer open
    try:
        conn.execute(
            "UPDATE sessions SET input_tokens = 6000, output_tokens = 3500, "
            "cache_read_tokens = 25000 WHERE id = '20250915_233000_d4e5f6'"
        )
        second = report_daily(env)
    finally:
        conn.close()
    # d4e5f6 grew from (5000, 20000, 3000) to (6000, 25000, 3500): +1000, +5000, +500.
    assert second["2025-09-15"] == {
        "input_tokens": 9700,
        "cached_input_tokens": 65000,
        "output_tokens": 4400,
        "total_tokens": 79100,
    }
    assert second["2025-09-16"] == first["2025-09-16"]
