"""Kilo CLI parser: opencode's database reader and mapping under Kilo's name and paths."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources import database_reader, is_database, parse_whole
from usageledger.sources.kilo import KiloParser

from ._support import SAMPLES, Sums, by_day

PARSER = KiloParser()
SQL = SAMPLES / "kilo" / "kilo.sql"

# Worked by hand from kilo.sql (input = input + cache.write; cached = cache.read;
# output = output + reasoning, as no stored total says reasoning is already inside output):
# 2026-01-02  msg ...0002: in 100+20 = 120, cached 10, out 50+5 = 55, reasoning 5, write 20 (185)
#             msg ...0003: total 3500 = 2000+300+200+1000 (reasoning beside output):
#                          in 2000, cached 1000, out 300+200 = 500, reasoning 200 (3500)
#             day: in 2120, cached 1010, out 555, reasoning 205, write 20, total 3685
# 2026-01-03  msg ...0005: in 7, out 3 (10); ...0006 is still streaming (all zero): nothing
EXPECTED = {
    "2026-01-02": Sums(input=2120, cached=1010, output=555, reasoning=205, cache_write=20),
    "2026-01-03": Sums(input=7, output=3),
}


def make_db(root: Path, name: str = "kilo.db") -> Path:
    """Kilo's database from the committed SQL, in WAL mode as Kilo keeps it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SQL.read_text())
    conn.close()
    return path


def test_the_sample_database_adds_up_to_the_hand_worked_totals(tmp_path: Path) -> None:
    """Each day of the sample database equals the sums worked out by hand above."""
    db = make_db(tmp_path / "kilo")
    result = parse_whole(PARSER, db)
    assert by_day(result.events) == EXPECTED
    assert EXPECTED["2026-01-02"].total == 3685


def test_events_are_kilos_keyed_by_message_id_with_the_row_columns(tmp_path: Path) -> None:
    """The row's id and session_id fill the JSON that omits them; the source is kilo."""
    result = parse_whole(PARSER, make_db(tmp_path / "kilo"))
    first = result.events[0]
    assert first.source == "kilo"
    assert first.event_key == "msg_k00000000002Assistant0002"
    assert first.session_id == "ses_k1a2b3c4d5e6KiloSession01"
    assert (first.model, first.project) == ("claude-sonnet-4-20250514", "/home/alice/proj-k")


def test_a_malformed_row_is_a_problem_naming_its_message(tmp_path: Path) -> None:
    """A row whose JSON is cut is reported with its message id, and the rest still count."""
    result = parse_whole(PARSER, make_db(tmp_path / "kilo"))
    assert [p.reason.split(" (")[0] for p in result.problems] == [
        "message msg_k00000000004Broken000004: malformed JSON"
    ]


def test_rows_in_the_write_ahead_log_are_read_while_kilo_holds_a_write_lock(
    tmp_path: Path,
) -> None:
    """Committed rows not yet checkpointed are seen; an open write transaction does not block."""
    db = make_db(tmp_path / "kilo")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    data = {
        "role": "assistant",
        "time": {"created": 1767398600000},
        "modelID": "gpt-5",
        "tokens": {"input": 1, "output": 1, "reasoning": 0, "cache": {"read": 0, "write": 0}},
    }
    row = ("msg_k7", "ses_k1a2b3c4d5e6KiloSession01", 1767398600000, 1767398600000)
    writer.execute(
        "INSERT INTO message VALUES (?, ?, ?, ?, ?)", (*row, orjson.dumps(data).decode())
    )
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM message")  # uncommitted: must not be seen
    try:
        assert Path(f"{db}-wal").stat().st_size > 0
        result = parse_whole(PARSER, db)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert "msg_k7" in [e.event_key for e in result.events]
    assert len(result.events) == 4


def test_the_database_is_opened_read_only(tmp_path: Path) -> None:
    """Reading never writes: the file's bytes and modification time stay as they were."""
    db = make_db(tmp_path / "kilo")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    parse_whole(PARSER, db)
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_discovery_finds_kilo_databases_by_override_xdg_and_default(tmp_path: Path) -> None:
    """KILO_DATA_DIR wins; else $XDG_DATA_HOME/kilo; else ~/.local/share/kilo (and KILO_DB)."""
    home = tmp_path / "home"
    default = touch(home / ".local" / "share" / "kilo" / "kilo.db")
    channel = touch(home / ".local" / "share" / "kilo" / "kilo-fix-windows.db")
    legacy = touch(home / ".local" / "share" / "kilo" / "opencode-beta-2.db")
    touch(home / ".local" / "share" / "kilo" / "auth.json")
    touch(home / ".local" / "share" / "opencode" / "opencode.db")  # opencode's own, not Kilo's
    xdg = touch(tmp_path / "xdg" / "kilo" / "kilo.db")
    custom = touch(tmp_path / "custom" / "kilo.db")
    elsewhere = touch(tmp_path / "db" / "mine.db")
    assert PARSER.discover({}, home) == [channel, default, legacy]
    assert PARSER.discover({"XDG_DATA_HOME": str(tmp_path / "xdg")}, home) == [xdg]
    assert PARSER.discover({"KILO_DATA_DIR": str(tmp_path / "custom")}, home) == [custom]
    assert PARSER.discover({"KILO_DB": str(elsewhere)}, home) == [
        channel,
        default,
        legacy,
        elsewhere,
    ]
    named = touch(home / ".local" / "share" / "kilo" / "named.db")
    assert PARSER.discover({"KILO_DB": "named.db"}, home) == [channel, default, legacy, named]
    assert all(is_database(path) for path in (default, channel, legacy, elsewhere))
    assert database_reader(PARSER, default) is not None


def test_the_macos_location_is_the_same_local_share(tmp_path: Path) -> None:
    """Kilo uses ~/.local/share/kilo on macOS too (xdg-basedir): Library is not read."""
    touch(tmp_path / "Library" / "Application Support" / "kilo" / "kilo.db")
    assert PARSER.discover({}, tmp_path) == []


def test_an_absent_root_finds_nothing(tmp_path: Path) -> None:
    """No Kilo data dir: no files and no error."""
    assert PARSER.discover({}, tmp_path) == []
    assert PARSER.discover({"KILO_DATA_DIR": str(tmp_path / "missing")}, tmp_path) == []


def test_opencode_still_reads_only_its_own_databases(tmp_path: Path) -> None:
    """The shared database lookup keeps opencode's names: no kilo.db under opencode's dir."""
    from usageledger.sources.opencode import OpencodeParser

    root = tmp_path / "oc"
    own = touch(root / "opencode.db")
    touch(root / "kilo.db")
    assert OpencodeParser().discover({"OPENCODE_DATA_DIR": str(root)}, tmp_path) == [own]


def test_scan_then_report_daily_gives_the_hand_worked_days(tmp_path: Path) -> None:
    """usageledger scan into a temp ledger, then report daily --json, per day."""
    make_db(tmp_path / "kilo")
    run_env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "KILO_DATA_DIR": str(tmp_path / "kilo"),
    }
    runner = CliRunner()
    scanned = runner.invoke(main, ["scan", "--json"], env=run_env, catch_exceptions=False)
    assert scanned.exit_code == 0, scanned.output
    args = ["report", "daily", "--source", "kilo", "--no-scan", "--json"]
    result = runner.invoke(main, args, env=run_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    days: dict[str, Any] = {row["day"]: row for row in orjson.loads(result.stdout)["days"]}
    assert sorted(days) == sorted(EXPECTED)
    for day, sums in EXPECTED.items():
        row = days[day]
        got = (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"])
        assert got == (sums.input, sums.cached, sums.output)
        assert (row["reasoning_output_tokens"], row["cache_write_tokens"]) == (
            sums.reasoning,
            sums.cache_write,
        )
        assert row["total_tokens"] == sums.total
