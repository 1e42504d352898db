"""Goose sessions.db reader: accumulated totals, reasoning, cache, live databases, discovery."""

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
from usageledger.sources import parse_whole, resolve_duplicates
from usageledger.sources._common import InvalidRecordError
from usageledger.sources.goose import GooseParser, session_event
from usageledger.sources.opencode import DatabaseUnavailableError

PARSER = GooseParser()
DB = Path("data/sessions/sessions.db")


def row(**values: Any) -> dict[str, Any]:
    """A ``sessions`` row as the reader sees it (absent columns are NULL)."""
    base: dict[str, Any] = {
        "id": "20250915_1",
        "created_at": "2025-09-15 10:00:00",
        "model_config_json": '{"model_name":"claude-sonnet-4-20250514","context_limit":200000}',
        "working_dir": "/home/alice/proj-g",
    }
    return {**base, **values}


@pytest.fixture
def goose_root(tmp_path: Path) -> Path:
    """A copy of the samples (a GOOSE_PATH_ROOT) with data/sessions/sessions.db built."""
    return build("goose", tmp_path / "goose-root")


def test_the_session_total_is_the_accumulated_set_not_the_last_turn() -> None:
    """accumulated_* is the session; input_tokens/output_tokens are only the last turn."""
    values = row(
        total_tokens=52000,
        input_tokens=51000,
        output_tokens=1000,
        accumulated_total_tokens=186000,
        accumulated_input_tokens=180000,
        accumulated_output_tokens=6000,
        accumulated_cache_read_tokens=150000,
        accumulated_cache_write_tokens=12000,
    )
    event = session_event(values)
    assert event is not None
    # Goose's input 180000 holds both caches: 180000 - read 150000 = 30000 (write 12000 inside).
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (
        30000,
        150000,
        6000,
    )
    assert (event.cache_write_tokens, event.reasoning_output_tokens) == (12000, 0)
    assert event.total_tokens == 186000  # Goose's own accumulated total
    assert (event.event_key, event.model, event.project) == (
        "20250915_1",
        "claude-sonnet-4-20250514",
        "/home/alice/proj-g",
    )
    assert event.timestamp == datetime(2025, 9, 15, 10, 0, tzinfo=UTC)


def test_total_beyond_input_and_output_is_reasoning_added_to_output() -> None:
    """Gemini's output excludes thinking: total - (input + output) is reasoning, in output."""
    values = row(
        accumulated_total_tokens=26000,
        accumulated_input_tokens=20000,
        accumulated_output_tokens=3000,
    )
    event = session_event(values)
    assert event is not None
    # reasoning = 26000 - (20000 + 3000) = 3000; output = 3000 + 3000 = 6000; total 26000.
    assert (event.output_tokens, event.reasoning_output_tokens, event.total_tokens) == (
        6000,
        3000,
        26000,
    )
    short = session_event(row(accumulated_input_tokens=10, accumulated_output_tokens=5))
    assert short is not None
    assert (short.output_tokens, short.reasoning_output_tokens) == (5, 0)


def test_a_row_without_accumulated_totals_falls_back_to_the_plain_columns() -> None:
    """Sessions written before Goose kept accumulated_* carry their usage in the plain set."""
    event = session_event(row(total_tokens=780, input_tokens=700, output_tokens=80))
    assert event is not None
    assert (event.input_tokens, event.output_tokens, event.total_tokens) == (700, 80, 780)


def test_cache_larger_than_the_prompt_means_the_prompt_was_net() -> None:
    """A prompt smaller than its cache reads cannot include them: it is taken as net input."""
    values = row(
        accumulated_input_tokens=100,
        accumulated_output_tokens=10,
        accumulated_cache_read_tokens=5000,
        accumulated_cache_write_tokens=20,
    )
    event = session_event(values)
    assert event is not None
    # net: input 100 + write 20 = 120; cached 5000; output 10.
    assert (event.input_tokens, event.cached_input_tokens, event.cache_write_tokens) == (
        120,
        5000,
        20,
    )


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (row(accumulated_input_tokens=-5, accumulated_output_tokens=5), "is negative"),
        (row(accumulated_input_tokens="5", accumulated_output_tokens=5), "not an integer"),
        (row(input_tokens=5, created_at="yesterday-ish"), "not ISO-8601"),
        (row(input_tokens=5, created_at=None), "missing start time"),
        (row(input_tokens=5, model_config_json="{oops"), "model_config_json is not JSON"),
        (row(input_tokens=5, id=""), "session without id"),
    ],
)
def test_hostile_rows_are_problems(values: dict[str, Any], reason: str) -> None:
    """A row that cannot be counted raises InvalidRecordError for the reader to report."""
    with pytest.raises(InvalidRecordError, match=reason):
        session_event(values)


def test_a_model_missing_from_the_config_is_unknown() -> None:
    """No model_config_json, or one without model_name: the model is 'unknown'."""
    for config in (None, "", "[]", '{"context_limit": 1}', '{"model_name": "  "}'):
        event = session_event(row(input_tokens=1, model_config_json=config))
        assert event is not None
        assert event.model == "unknown"
    assert session_event(row(input_tokens=0, output_tokens=0)) is None


def test_created_at_in_every_shape_goose_has_written() -> None:
    """SQLite CURRENT_TIMESTAMP text, RFC 3339, and epoch seconds or milliseconds."""
    start = datetime(2025, 9, 15, 10, 0, tzinfo=UTC)
    for value in ("2025-09-15 10:00:00", "2025-09-15T10:00:00Z", 1757930400, 1757930400000):
        event = session_event(row(input_tokens=1, created_at=value))
        assert event is not None
        assert event.timestamp == start


def test_sample_totals_per_day_are_worked_out_by_hand(goose_root: Path) -> None:
    """The sample database sums to the hand-computed totals; bad rows are problems."""
    events, problems = scan(PARSER, {"GOOSE_PATH_ROOT": str(goose_root)}, Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15:
    #   20250915_1 (anthropic): in 180000-150000=30000, cached 150000, out 6000, write 12000
    #   20250915_2 (gemini):    in 20000, out 3000 + (26000-23000)=6000, reasoning 3000
    #   = in 50000, cached 150000, out 12000, reasoning 3000, write 12000; total 212000
    assert days["2025-09-15"] == Sums(50000, 150000, 12000, 3000, 12000)
    assert days["2025-09-15"].total == 212000
    # 2025-09-16: 20250916_1 (no accumulated_*): in 700, out 80 (total 780 = 700 + 80).
    assert days["2025-09-16"] == Sums(700, 0, 80)
    assert sorted(p.reason.split(":")[0] for p in problems) == [
        "session 20250916_3",
        "session 20250916_4",
    ]


def test_discover_finds_the_database_by_override_xdg_macos_and_legacy(tmp_path: Path) -> None:
    """GOOSE_PATH_ROOT wins; else XDG (~/.local/share), macOS and the legacy Block path."""
    linux = tmp_path / ".local/share/goose/sessions/sessions.db"
    macos = tmp_path / "Library/Application Support/goose/sessions/sessions.db"
    legacy = tmp_path / ".local/share/Block/goose/sessions/sessions.db"
    xdg = tmp_path / "xdg/goose/sessions/sessions.db"
    root = tmp_path / "root/data/sessions/sessions.db"
    assert PARSER.discover({}, tmp_path) == []  # absent roots are no error
    for path in (linux, macos, legacy, xdg, root):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    (tmp_path / ".local/share/goose/sessions/sessions.db-wal").write_bytes(b"")
    assert PARSER.discover({}, tmp_path) == sorted([linux, macos, legacy], key=str)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert PARSER.discover(env, tmp_path) == sorted([xdg, macos, legacy], key=str)
    assert PARSER.discover({"GOOSE_PATH_ROOT": str(tmp_path / "root")}, tmp_path) == [root]


def test_rows_still_in_the_write_ahead_log_are_read(goose_root: Path) -> None:
    """A session Goose just committed into -wal (not yet checkpointed) is counted."""
    path = goose_root / DB
    conn = writer(path)
    try:
        conn.execute(
            "INSERT INTO sessions (id, working_dir, created_at, accumulated_input_tokens, "
            "accumulated_output_tokens) VALUES ('20250917_1', '/w', '2025-09-17 08:00:00', 9, 1)"
        )
        assert Path(f"{path}-wal").stat().st_size > 0
        keys = [e.event_key for e in parse_whole(PARSER, path).events]
    finally:
        conn.close()
    assert "20250917_1" in keys


def test_a_read_during_a_write_transaction_sees_the_last_commit(goose_root: Path) -> None:
    """While Goose holds an open write transaction, the read neither waits nor sees it."""
    path = goose_root / DB
    conn = writer(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE sessions SET accumulated_output_tokens = 1 WHERE id = '20250915_1'")
        events = parse_whole(PARSER, path).events
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    (session,) = [e for e in events if e.event_key == "20250915_1"]
    assert session.output_tokens == 6000


def test_a_rollback_journal_database_with_a_pending_write_is_read(tmp_path: Path) -> None:
    """A writer holding RESERVED (not yet committing) still lets the read through."""
    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript((Path(__file__).parent / "samples/goose/schema.sql").read_text())
    conn.execute(
        "INSERT INTO sessions (id, working_dir, created_at, input_tokens, output_tokens) "
        "VALUES ('s1', '/w', '2025-09-15 10:00:00', 3, 4)"
    )
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE sessions SET input_tokens = 30 WHERE id = 's1'")
    try:
        (event,) = parse_whole(PARSER, path).events
    finally:
        conn.execute("COMMIT")
        conn.close()
    assert event.input_tokens == 3


def test_a_file_that_is_not_a_goose_database_cannot_be_read_now(tmp_path: Path) -> None:
    """A database without Goose's sessions table: DatabaseUnavailableError (retried later)."""
    path = tmp_path / "sessions.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sessions (name TEXT)")
    conn.close()
    with pytest.raises(DatabaseUnavailableError, match="not this tool's database"):
        list(PARSER.read_database(str(path)))


def test_a_grown_session_replaces_its_earlier_total(goose_root: Path) -> None:
    """Policy "last": the session read again after it grew keeps only its new total."""
    path = goose_root / DB
    before = parse_whole(PARSER, path).events
    conn = writer(path)
    try:
        conn.execute(
            "UPDATE sessions SET accumulated_input_tokens = 190000, accumulated_output_tokens "
            "= 7000, accumulated_total_tokens = 197000 WHERE id = '20250915_1'"
        )
    finally:
        conn.close()
    after = parse_whole(PARSER, path).events
    kept = resolve_duplicates(before + after, PARSER.duplicate_policy)
    (grown,) = [e for e in kept if e.event_key == "20250915_1"]
    assert (grown.input_tokens, grown.output_tokens) == (40000, 7000)
    assert len(kept) == len(after)


def test_scan_then_growth_then_scan_holds_the_new_total_once(
    tmp_path: Path, goose_root: Path
) -> None:
    """End to end: the ledger replaces a grown session's total instead of adding it again."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "GOOSE_PATH_ROOT": str(goose_root),
    }

    def totals() -> dict[str, int]:
        result = CliRunner().invoke(
            main, ["report", "daily", "--json", "--source", "goose"], env=env
        )
        assert result.exit_code == 0, result.output
        return {d["day"]: d["total_tokens"] for d in orjson.loads(result.stdout)["days"]}

    assert totals() == {"2025-09-15": 212000, "2025-09-16": 780}
    conn = writer(goose_root / DB)
    try:
        # 20250915_2 grows from total 26000 to 30000 (input 22000, output 4000).
        conn.execute(
            "UPDATE sessions SET accumulated_input_tokens = 22000, accumulated_output_tokens "
            "= 4000, accumulated_total_tokens = 30000 WHERE id = '20250915_2'"
        )
        assert totals() == {"2025-09-15": 216000, "2025-09-16": 780}
    finally:
        conn.close()
