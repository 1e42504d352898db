"""Opencode message-file parser: token mapping, reasoning, re-saved messages, discovery."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from usageledger.sources import parse_whole, resolve_duplicates
from usageledger.sources.opencode import DatabaseUnavailableError, OpencodeParser, map_tokens

from ._support import Sums, by_day, sample_env, scan

PARSER = OpencodeParser()
SES = "ses_4a1b2c3d4e5fAbCdEfGh123456"


def tokens(
    i: int, o: int, r: int, read: int, write: int, total: int | None = None
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "input": i,
        "output": o,
        "reasoning": r,
        "cache": {"read": read, "write": write},
    }
    if total is not None:
        t["total"] = total
    return t


def message(toks: Any, **extra: Any) -> bytes:
    msg: dict[str, Any] = {
        "id": "msg_1",
        "sessionID": SES,
        "role": "assistant",
        "time": {"created": 1757926800000, "completed": 1757926804200},
        "modelID": "claude-sonnet-4-20250514",
        "providerID": "anthropic",
        "path": {"cwd": "/home/alice/proj-o", "root": "/home/alice/proj-o"},
        "cost": 0,
        "tokens": toks,
    }
    msg.update(extra)
    return orjson.dumps(msg)


def parse(raw: bytes, path: str = f"{SES}/msg_1.json") -> Any:
    return PARSER.parse(raw, path=path, state=None)


def test_it_adds_cache_write_to_input_and_reads_cache_read_as_cached() -> None:
    """Opencode input is net of both caches; our input adds the cache write back."""
    (event,) = parse(message(tokens(12, 300, 0, 20000, 1500))).events
    # input 12 + write 1500 = 1512; cached 20000; output 300; total 21812.
    assert (event.input_tokens, event.cache_write_tokens) == (1512, 1500)
    assert (event.cached_input_tokens, event.output_tokens) == (20000, 300)
    assert event.total_tokens == 21812
    assert event.event_key == "msg_1"
    assert (event.model, event.session_id, event.project) == (
        "claude-sonnet-4-20250514",
        SES,
        "/home/alice/proj-o",
    )
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("toks", "output", "reasoning"),
    [
        # current opencode: output excludes reasoning -> 150 + 100.
        (tokens(800, 150, 100, 3000, 0), 250, 100),
        # stored total 4050 = 800 + 150 + 100 + 3000: reasoning apart -> 150 + 100.
        (tokens(800, 150, 100, 3000, 0, total=4050), 250, 100),
        # stored total 1450 = 400 + 250 + 800: output already includes reasoning 50.
        (tokens(400, 250, 50, 800, 0, total=1450), 250, 50),
    ],
)
def test_reasoning_is_added_to_output_unless_the_total_shows_it_inside(
    toks: dict[str, Any], output: int, reasoning: int
) -> None:
    """Reasoning counts in output exactly once, whichever shape opencode stored."""
    (event,) = parse(message(toks)).events
    assert (event.output_tokens, event.reasoning_output_tokens) == (output, reasoning)


def test_map_tokens_rejects_reasoning_larger_than_an_output_that_contains_it() -> None:
    """A record claiming reasoning inside output cannot have more reasoning than output."""
    result = parse(message(tokens(0, 10, 50, 0, 0, total=10)))
    assert result.events == []
    assert "exceeds" in result.problems[0].reason
    assert map_tokens(tokens(1, 2, 3, 4, 5)) == (6, 4, 5, 3, 5)


def test_user_in_progress_and_unused_messages_yield_nothing() -> None:
    """User messages, and assistant messages with zero or no tokens, are not usage."""
    assert parse(message(None, role="user")).events == []
    assert parse(message(tokens(0, 0, 0, 0, 0))).events == []
    no_tokens = orjson.loads(message(None))
    del no_tokens["tokens"]
    assert parse(orjson.dumps(no_tokens)).events == []


def test_a_resaved_message_counts_once_and_the_last_copy_wins() -> None:
    """A stale copy of a message (a backup root, read first) is replaced by the later read."""
    events, _ = scan(PARSER, sample_env(), Path("/nonexistent"))
    (kept,) = [e for e in events if e.event_key == "msg_a00000000002Assistant0002"]
    assert kept.output_tokens == 300  # the backup copy had 100


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """The committed samples sum to the hand-computed totals per UTC day."""
    events, problems = scan(PARSER, sample_env(), Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15:
    #   msg 2 (anthropic): in 12+1500=1512, cached 20000, out 300,         write 1500
    #   msg 3 (openai):    in 800,          cached  3000, out 150+100=250, reasoning 100
    #   = in 2312, cached 23000, out 550, reasoning 100, write 1500; total 25862
    assert days["2025-09-15"] == Sums(2312, 23000, 550, 100, 1500)
    assert days["2025-09-15"].total == 25862
    # 2025-09-16: msg 4, total 1450 = 400+250+800 so reasoning 50 is inside output 250.
    assert days["2025-09-16"] == Sums(400, 800, 250, 50)
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("msg_a00000000006Assistant0006.json", None)
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"role": "assistant", "tokens": {"input": 1', "malformed JSON"),
        (b"\xff not json", "not valid UTF-8"),
        (b"[]", "message file is not an object"),
        (message(tokens(-1, 1, 0, 0, 0)), "tokens.input is negative"),
        (message({"input": 1}), "missing tokens.output"),
        (message(tokens(1, 1, 0, 0, 0), time={}), "missing timestamp"),
        (message(tokens(1, 1, 0, 0, 0), time=None), "time is not an object"),
    ],
)
def test_bad_files_are_problems(raw: bytes, reason: str) -> None:
    """Truncated, undecodable or inconsistent files are reported with their path."""
    result = parse(raw, path="x/msg_9.json")
    assert result.events == []
    assert [(p.path, p.line) for p in result.problems] == [("x/msg_9.json", None)]
    assert reason in result.problems[0].reason
    assert result.consumed == len(raw)


def test_missing_ids_fall_back_to_the_file_and_directory_names() -> None:
    """The message id and session id are taken from the storage path when absent."""
    raw = orjson.loads(message(tokens(1, 1, 0, 0, 0)))
    del raw["id"], raw["sessionID"], raw["modelID"]
    (event,) = parse(orjson.dumps(raw), path=f"/d/storage/message/{SES}/msg_x.json").events
    assert (event.event_key, event.session_id, event.model) == ("msg_x", SES, "unknown")


def test_policy_last_prefers_the_later_copy() -> None:
    """Two reads of one message resolve to the later read."""
    early = parse(message(tokens(1, 1, 0, 0, 0))).events
    late = parse(message(tokens(1, 9, 0, 0, 0))).events
    (kept,) = resolve_duplicates(early + late, PARSER.duplicate_policy)
    assert kept.output_tokens == 9


def test_discover_reads_the_data_dir_list_then_xdg_then_home(tmp_path: Path) -> None:
    """OPENCODE_DATA_DIR wins, then $XDG_DATA_HOME/opencode, then ~/.local/share/opencode."""
    default = tmp_path / ".local/share/opencode/storage/message/ses_1/msg_1.json"
    xdg = tmp_path / "xdg/opencode/storage/message/ses_2/msg_2.json"
    listed = tmp_path / "a/storage/message/ses_3/msg_3.json"
    for f in (default, xdg, listed):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"{}")
    (tmp_path / "a/storage/session").mkdir(parents=True)
    (tmp_path / "a/storage/session/ses_3.json").write_bytes(b"{}")
    assert PARSER.discover({}, tmp_path) == [default]
    assert PARSER.discover({"XDG_DATA_HOME": str(tmp_path / "xdg")}, tmp_path) == [xdg]
    env = {"OPENCODE_DATA_DIR": f"{tmp_path / 'a'}, {tmp_path / 'missing'}"}
    assert PARSER.discover(env, tmp_path) == [listed]


def test_it_keeps_no_prompt_or_reply_text() -> None:
    """Events carry counts and metadata only, never a stored system prompt or summary."""
    raw = message(
        tokens(1, 1, 0, 0, 0),
        system=["You are opencode, an interactive CLI tool"],
        summary={"title": "Refactor the auth module"},
    )
    text = repr(parse(raw).events)
    assert "interactive CLI" not in text
    assert "auth module" not in text


# --- opencode >= 1.2.0: the SQLite database ---------------------------------------------

SCHEMA = (
    "CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, "
    "time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL)"
)


def db_data(toks: Any, **extra: Any) -> str:
    """A ``message.data`` value: the message JSON without ``id`` and ``sessionID``."""
    msg = orjson.loads(message(toks, **extra))
    del msg["id"], msg["sessionID"]
    return orjson.dumps(msg).decode()


def make_db(path: Path, rows: list[tuple[str, str, int, str]]) -> sqlite3.Connection:
    """An opencode-shaped database in WAL mode; the writer stays open (as opencode's does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # rows stay in the -wal file
    conn.execute(SCHEMA)
    insert_rows(conn, rows)
    return conn


def insert_rows(conn: sqlite3.Connection, rows: list[tuple[str, str, int, str]]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO message VALUES (?, ?, ?, ?, ?)",
        [(mid, ses, created, created, data) for mid, ses, created, data in rows],
    )


def read_db(path: Path) -> Any:
    """All pages of a database read, as one result."""
    return parse_whole(PARSER, path)


def test_discover_finds_the_databases_of_each_data_dir(tmp_path: Path) -> None:
    """opencode.db and opencode-<channel>.db, not their -wal/-shm files or other databases."""
    root = tmp_path / "oc"
    for name in ("opencode.db", "opencode-canary.db", "opencode.db-wal", "other.db"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    found = PARSER.discover({"OPENCODE_DATA_DIR": str(root)}, tmp_path)
    assert found == [root / "opencode-canary.db", root / "opencode.db"]


def test_the_database_rows_map_like_the_message_files(tmp_path: Path) -> None:
    """Ids and sessions come from the row's columns; user and empty messages yield nothing."""
    path = tmp_path / "opencode.db"
    created = 1757926800000
    conn = make_db(
        path,
        [
            ("msg_u", SES, created, db_data(None, role="user")),
            ("msg_a", SES, created + 1, db_data(tokens(12, 300, 0, 20000, 1500))),
            ("msg_z", SES, created + 2, db_data(tokens(0, 0, 0, 0, 0))),
        ],
    )
    try:
        result = read_db(path)
    finally:
        conn.close()
    (event,) = result.events
    assert result.problems == []
    assert (event.event_key, event.session_id, event.project) == (
        "msg_a",
        SES,
        "/home/alice/proj-o",
    )
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (
        1512,
        20000,
        300,
    )
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, tzinfo=UTC)
    # The same message as a (pre-1.2) file gives the same event: one key for both copies.
    (from_file,) = parse(message(tokens(12, 300, 0, 20000, 1500), id="msg_a")).events
    assert from_file == event


def test_rows_still_in_the_write_ahead_log_are_read(tmp_path: Path) -> None:
    """opencode's writer keeps new rows in -wal until a checkpoint; a read-only read sees them."""
    path = tmp_path / "opencode.db"
    conn = make_db(path, [("msg_1", SES, 1757926800000, db_data(tokens(1, 2, 0, 0, 0)))])
    try:
        insert_rows(conn, [("msg_2", SES, 1757926900000, db_data(tokens(3, 4, 0, 0, 0)))])
        assert Path(f"{path}-wal").stat().st_size > 0
        keys = [e.event_key for e in read_db(path).events]
    finally:
        conn.close()
    assert keys == ["msg_1", "msg_2"]


def test_a_closed_database_is_read_read_only_without_changing_it(tmp_path: Path) -> None:
    """With opencode not running (no -wal/-shm), the read opens nothing for writing."""
    path = tmp_path / "opencode.db"
    make_db(path, [("msg_1", SES, 1757926800000, db_data(tokens(1, 2, 0, 0, 0)))]).close()
    before = path.read_bytes()
    assert [e.event_key for e in read_db(path).events] == ["msg_1"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ('{"role": "assistant", "tokens": {"input": 1', "malformed JSON"),
        ('["assistant"]', "not an object"),
        (db_data(tokens(-1, 2, 0, 0, 0)), "tokens.input"),
    ],
)
def test_a_bad_row_is_a_problem_naming_its_message(tmp_path: Path, data: str, reason: str) -> None:
    """Each unusable row is reported with its message id; the other rows still count."""
    path = tmp_path / "opencode.db"
    good = db_data(tokens(1, 2, 0, 0, 0))
    make_db(path, [("msg_bad", SES, 1, data), ("msg_ok", SES, 2, good)]).close()
    result = read_db(path)
    assert [e.event_key for e in result.events] == ["msg_ok"]
    (problem,) = result.problems
    assert problem.path == str(path)
    assert problem.reason.startswith("message msg_bad: ")
    assert reason in problem.reason


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_a_file_that_is_not_an_opencode_database_cannot_be_read_now(
    tmp_path: Path, content: bytes
) -> None:
    """No message table, or not SQLite: DatabaseUnavailableError (the scanner retries)."""
    path = tmp_path / "opencode.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseUnavailableError, match="cannot read the database"):
        list(PARSER.read_database(str(path)))


def test_pages_hold_every_row_once_in_creation_order(tmp_path: Path) -> None:
    """A database read in pages of two rows gives the rows of one read, in order."""
    path = tmp_path / "opencode.db"
    rows = [
        (f"msg_{n}", SES, 1757926800000 + n, db_data(tokens(n + 1, 1, 0, 0, 0))) for n in range(5)
    ]
    make_db(path, rows).close()
    pages = list(PARSER.read_database(str(path), page_rows=2))
    assert [len(page.events) for page in pages] == [2, 2, 1]
    assert [e.event_key for page in pages for e in page.events] == [r[0] for r in rows]


def test_an_older_schema_with_created_at_is_read(tmp_path: Path) -> None:
    """Early opencode databases name the creation column ``created_at``; a row whose JSON
    has no ``time`` takes its time from that column."""
    path = tmp_path / "opencode.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT, created_at INTEGER, data TEXT)"
    )
    data = orjson.loads(db_data(tokens(1, 2, 0, 0, 0)))
    del data["time"]
    conn.execute(
        "INSERT INTO message VALUES ('msg_1', 'ses_1', 1757926800000, ?)",
        (orjson.dumps(data).decode(),),
    )
    conn.commit()
    conn.close()
    (event,) = read_db(path).events
    assert (event.event_key, event.session_id) == ("msg_1", "ses_1")
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, tzinfo=UTC)
