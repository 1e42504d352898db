"""``tracker.scan``: incremental reads, replaced and deleted files, crashes, bad input."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import (
    claude_line,
    codex_lines,
    event_count,
    jsonl,
    layer_sums,
    parsed_events,
    resolved,
    run_scan,
    sa_engine,
    sums,
)
from usageledger.sources import opencode as opencode_module
from usageledger.store.tables import scan_files, usage_buckets
from usageledger.tracker import scan as scan_module
from usageledger.tracker.ledger import LocalLedger


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Only Claude and Codex logs, in temp dirs; the other sources find nothing."""
    nothing = str(tmp_path / "nothing")
    return {
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "CODEX_HOME": str(tmp_path / "codex"),
        "GEMINI_DATA_DIR": nothing,
        "OPENCODE_DATA_DIR": nothing,
    }


def claude_file(env: dict[str, str], name: str = "s-1") -> Path:
    """The path of a Claude transcript (its directory created)."""
    path = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "-work-project" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def lines(*ids: str, minute: int = 0) -> bytes:
    """Claude lines for message ids, one minute apart."""
    return jsonl(
        claude_line(mid, f"2025-09-15T10:{minute + n:02d}:00Z", fresh=100 * (n + 1))
        for n, mid in enumerate(ids)
    )


def expected(env: dict[str, str], home: Path) -> dict[str, int]:
    """What the parsers say the totals are, for the files as they are now."""
    return sums(resolved(parsed_events(env, home)))


def assert_layers(ledger: LocalLedger, totals: dict[str, int]) -> None:
    """Events, buckets and daily rollups all hold exactly ``totals``."""
    events, buckets, daily = layer_sums(ledger)
    assert events == totals
    assert buckets == totals
    assert daily == totals


def test_a_scan_stores_exactly_the_parsers_events(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """Every layer of the ledger equals the sum of the parsers' de-duplicated events."""
    env = logs_env(logs)
    summary = run_scan(ledger, env, empty_home, clock)
    truth = resolved(parsed_events(env, empty_home))
    assert_layers(ledger, sums(truth))
    assert event_count(ledger) == len(truth)
    assert summary.events_new == len(truth)


def test_a_second_scan_finds_nothing_new(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """Scanning unchanged logs again adds and updates nothing."""
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    before = layer_sums(ledger)
    again = run_scan(ledger, env, empty_home, clock)
    assert (again.events_new, again.events_updated) == (0, 0)
    assert layer_sums(ledger) == before


def test_it_reads_only_the_appended_bytes(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """After lines are appended, the rescan reads exactly those bytes."""
    path = claude_file(env)
    path.write_bytes(lines("m1", "m2"))
    run_scan(ledger, env, empty_home, clock)
    extra = lines("m3", minute=5)
    with path.open("ab") as handle:
        handle.write(extra)
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["claude"].bytes_read == len(extra)
    assert summary.events_new == 1
    assert_layers(ledger, expected(env, empty_home))


def test_an_unfinished_last_line_waits_for_its_newline(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """A half-written line is not consumed; once complete it is read once."""
    path = claude_file(env)
    whole = lines("m1", "m2")
    cut = whole.index(b"\n") + 20
    path.write_bytes(whole[:cut])
    first = run_scan(ledger, env, empty_home, clock)
    assert first.events_new == 1
    assert not first.problems
    with path.open("ab") as handle:
        handle.write(whole[cut:])
    second = run_scan(ledger, env, empty_home, clock)
    assert second.events_new == 1
    assert_layers(ledger, expected(env, empty_home))


def test_a_replaced_file_is_read_again_without_double_counting(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """A file replaced by a new inode holding old and new events counts each event once."""
    path = claude_file(env)
    path.write_bytes(lines("m1", "m2"))
    run_scan(ledger, env, empty_home, clock)
    before = os.stat(path).st_ino
    replacement = path.with_suffix(".tmp")
    replacement.write_bytes(lines("m1", "m2", "m3"))
    os.replace(replacement, path)
    assert os.stat(path).st_ino != before
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["claude"].bytes_read == path.stat().st_size
    assert (summary.events_new, summary.events_updated) == (1, 0)
    assert_layers(ledger, expected(env, empty_home))


def test_a_file_rewritten_in_place_with_another_head_is_read_from_the_start(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """Same inode, bigger, but a different first 4 KiB: the whole file is read again."""
    path = claude_file(env)
    path.write_bytes(lines("m1"))
    run_scan(ledger, env, empty_home, clock)
    with path.open("r+b") as handle:  # same inode
        handle.write(lines("m9", "m1", "m2"))
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["claude"].bytes_read == path.stat().st_size
    assert summary.events_new == 2
    # m1 was re-read with other counts; "max" keeps the larger copy.
    truth = resolved({"claude": [*parsed_first(lines("m1")), *parsed_first(path.read_bytes())]})
    assert_layers(ledger, sums(truth))


def parsed_first(data: bytes) -> list[Any]:
    """Claude events of ``data`` parsed whole."""
    from usageledger.sources import PARSERS

    return PARSERS["claude"].parse(data, path="x.jsonl", state=None).events


def test_a_shrunken_file_is_read_again_and_its_history_kept(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """Truncating a file re-reads it from 0; events already stored stay."""
    path = claude_file(env)
    path.write_bytes(lines("m1", "m2", "m3"))
    run_scan(ledger, env, empty_home, clock)
    before = layer_sums(ledger)
    path.write_bytes(lines("m1"))
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["claude"].bytes_read == path.stat().st_size
    assert (summary.events_new, summary.events_updated) == (0, 0)
    assert layer_sums(ledger) == before


def test_a_deleted_file_keeps_its_events_and_drops_its_cursor(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """The assistants delete old logs; the ledger keeps what they recorded."""
    path = claude_file(env)
    path.write_bytes(lines("m1", "m2"))
    claude_file(env, "s-2").write_bytes(lines("m7", minute=30))
    run_scan(ledger, env, empty_home, clock)
    before = layer_sums(ledger)
    path.unlink()
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["claude"].files_gone == 1
    assert layer_sums(ledger) == before
    with sa_engine(ledger) as engine, engine.connect() as conn:
        paths = set(conn.execute(select(scan_files.c.path)).scalars())
    assert str(path) not in paths


def test_a_moved_file_counts_once(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """Codex archives a session by moving its file: its events are not counted twice."""
    sessions = Path(env["CODEX_HOME"]) / "sessions" / "2025" / "09" / "15"
    sessions.mkdir(parents=True)
    name = "rollout-2025-09-15T10-00-00-0199a000-0000-7000-8000-00000000000a.jsonl"
    turns = [("2025-09-15T10:00:05Z", 1000, 200, 50), ("2025-09-15T10:40:00Z", 300, 900, 70)]
    (sessions / name).write_bytes(jsonl(codex_lines("sess-a", turns)))
    run_scan(ledger, env, empty_home, clock)
    before = layer_sums(ledger)
    archive = Path(env["CODEX_HOME"]) / "archived_sessions"
    archive.mkdir()
    os.rename(sessions / name, archive / name)
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["codex"].files_gone == 1
    assert summary.events_new == 0
    assert layer_sums(ledger) == before


class Crash(Exception):
    """A simulated crash inside a scan's transaction."""


@pytest.mark.parametrize("crash_at", [1, 2, 5])
def test_a_crash_inside_a_batch_neither_loses_nor_double_counts(
    ledger: LocalLedger,
    logs: Path,
    empty_home: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    crash_at: int,
) -> None:
    """Raising after a batch's events are written rolls the batch back; a rescan is exact."""
    monkeypatch.setattr(scan_module, "BATCH_EVENTS", 2)
    env = logs_env(logs)
    batches = 0

    def crash(conn: sqlite3.Connection) -> None:
        nonlocal batches
        batches += 1
        if batches == crash_at:
            raise Crash

    with pytest.raises(Crash):
        run_scan(ledger, env, empty_home, clock, after_write=crash)
    run_scan(ledger, env, empty_home, clock)
    truth = resolved(parsed_events(env, empty_home))
    assert_layers(ledger, sums(truth))
    assert event_count(ledger) == len(truth)


@pytest.mark.parametrize("chunk", [64, 333, 4096])
def test_small_chunks_and_batches_give_the_same_ledger(
    ledger: LocalLedger,
    logs: Path,
    empty_home: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    """Reading in small chunks with a transaction per event equals reading whole files."""
    monkeypatch.setattr(scan_module, "BATCH_EVENTS", 1)
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock, chunk_bytes=chunk)
    assert_layers(ledger, sums(resolved(parsed_events(env, empty_home))))


def test_bad_lines_are_listed_with_file_line_and_reason(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """Malformed JSON and bad counts are problems with their line; good lines still count."""
    path = claude_file(env)
    bad = claude_line("m2", "2025-09-15T10:01:00Z")
    bad["message"]["usage"]["output_tokens"] = -1
    path.write_bytes(lines("m1") + b"{not json\n" + jsonl([bad]) + lines("m3", minute=3))
    summary = run_scan(ledger, env, empty_home, clock)
    found = [(p.path, p.line) for p in summary.problems]
    assert found == [(str(path), 2), (str(path), 3)]
    assert all(p.reason for p in summary.problems)
    assert summary.events_new == 2


def test_a_huge_line_is_skipped_and_reported_without_stopping_the_file(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """A 17 MiB line becomes one problem (with its line number); the lines after it count."""
    path = claude_file(env)
    huge = b'{"type":"user","text":"' + b"x" * (17 * 1024 * 1024) + b'"}\n'
    path.write_bytes(lines("m1") + huge + lines("m2", minute=2))
    summary = run_scan(ledger, env, empty_home, clock, chunk_bytes=1024 * 1024)
    assert [(p.line, "16 MiB" in p.reason) for p in summary.problems] == [(2, True)]
    assert summary.events_new == 2
    extra = lines("m3", minute=4)
    with path.open("ab") as handle:
        handle.write(extra)
    again = run_scan(ledger, env, empty_home, clock, chunk_bytes=1024 * 1024)
    assert again.events_new == 1
    assert again.sources["claude"].bytes_read == len(extra)


def test_a_line_longer_than_a_chunk_is_still_read(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """A 3 MiB line with 1 MiB chunks is read whole and parsed like any other."""
    path = claude_file(env)
    long_line = claude_line("m2", "2025-09-15T10:01:00Z")
    long_line["message"]["content"] = [{"type": "text", "text": "y" * (3 * 1024 * 1024)}]
    path.write_bytes(lines("m1") + jsonl([long_line]) + lines("m3", minute=3))
    summary = run_scan(ledger, env, empty_home, clock, chunk_bytes=1024 * 1024)
    assert not summary.problems
    assert summary.events_new == 3


def test_a_whole_file_format_is_read_again_when_it_changes(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """An opencode message rewritten with more tokens replaces its event ("last" wins)."""
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    message = next((logs / "opencode").rglob("msg_a00000000003*.json"))
    data = orjson.loads(message.read_bytes())
    data["tokens"]["output"] += 1000
    message.write_bytes(orjson.dumps(data))
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.sources["opencode"].files_read == 1
    assert (summary.events_new, summary.events_updated) == (0, 1)
    assert_layers(ledger, sums(resolved(parsed_events(env, empty_home))))


def test_an_unchanged_bucket_keeps_its_revision_and_a_changed_one_gets_a_newer_one(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """Only buckets whose value changed get a new revision (so push sends only them)."""
    path = claude_file(env)
    path.write_bytes(lines("m1") + jsonl([claude_line("m5", "2025-09-15T12:00:00Z")]))
    run_scan(ledger, env, empty_home, clock)
    before = bucket_revisions(ledger)
    with path.open("ab") as handle:
        handle.write(jsonl([claude_line("m6", "2025-09-15T12:10:00Z")]))
    run_scan(ledger, env, empty_home, clock)
    after = bucket_revisions(ledger)
    ten, twelve = sorted(before)
    assert after[ten] == before[ten]
    assert after[twelve] > before[twelve]


def bucket_revisions(ledger: LocalLedger) -> dict[int, int]:
    """Revision of each bucket by its start."""
    with sa_engine(ledger) as engine, engine.connect() as conn:
        rows = conn.execute(select(usage_buckets.c.bucket_start, usage_buckets.c.revision))
        return {int(start): int(revision) for start, revision in rows}


def test_an_event_that_moves_to_another_half_hour_leaves_a_zero_bucket(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """When the larger copy of an event is in another half-hour, the old bucket becomes 0."""
    path = claude_file(env)
    path.write_bytes(jsonl([claude_line("m1", "2025-09-15T10:29:59Z", output=10)]))
    run_scan(ledger, env, empty_home, clock)
    with path.open("ab") as handle:
        handle.write(jsonl([claude_line("m1", "2025-09-15T10:30:01Z", output=50)]))
    summary = run_scan(ledger, env, empty_home, clock)
    assert summary.events_updated == 1
    with sa_engine(ledger) as engine, engine.connect() as conn:
        rows = conn.execute(select(usage_buckets.c.bucket_start, usage_buckets.c.total_tokens))
        by_start = {int(s): int(t) for s, t in rows}
    assert sorted(by_start.values()) == [0, 150]
    assert_layers(ledger, expected(env, empty_home))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_problem_not_a_failure(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock
) -> None:
    """A file without read permission is listed as a problem; the others are read."""
    locked = claude_file(env, "locked")
    locked.write_bytes(lines("m1"))
    locked.chmod(0)
    claude_file(env, "open").write_bytes(lines("m2"))
    summary = run_scan(ledger, env, empty_home, clock)
    assert [p.path for p in summary.problems] == [str(locked)]
    assert summary.events_new == 1


def test_a_scan_of_one_source_leaves_the_others_cursors(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """`scan --source claude` neither reads nor forgets the other sources' files."""
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    before = cursor_paths(ledger)
    summary = run_scan(ledger, env, empty_home, clock, sources=["claude"])
    assert list(summary.sources) == ["claude"]
    assert cursor_paths(ledger) == before


def cursor_paths(ledger: LocalLedger) -> set[str]:
    """Paths with a cursor."""
    with sa_engine(ledger) as engine, engine.connect() as conn:
        return set(conn.execute(select(scan_files.c.path)).scalars())


class Recorder:
    """A progress sink that remembers what it was told."""

    def __init__(self) -> None:
        self.total = -1
        self.done = 0

    def start(self, total_bytes: int, files: int) -> None:
        """Remember the total."""
        self.total = total_bytes

    def advance(self, nbytes: int) -> None:
        """Add up what was read."""
        self.done += nbytes


def test_progress_counts_every_planned_byte(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """The progress bar's total is the bytes to read, and it reaches that total."""
    recorder = Recorder()
    summary = run_scan(ledger, logs_env(logs), empty_home, clock, progress=recorder)
    assert recorder.total == summary.bytes_planned > 0
    assert recorder.done == recorder.total


def test_the_progress_bar_draws_on_a_terminal() -> None:
    """On a terminal, a scan above the threshold shows a bar that starts, moves and stops."""
    import io

    from rich.console import Console

    from usageledger.tracker.render import ScanProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    bar = ScanProgress(lambda: console, threshold=10)
    bar.start(100, 3)
    bar.advance(60)
    bar.advance(40)
    bar.stop()
    assert bar.progress is None
    quiet = ScanProgress(lambda: Console(file=io.StringIO()), threshold=10)
    quiet.start(100, 3)
    assert quiet.progress is None


def test_a_short_scan_never_makes_a_console() -> None:
    """Below the threshold the bar never asks for its console, so a scan that prints nothing
    (``report --json``) does not load rich."""
    from usageledger.tracker.render import ScanProgress

    def no_console() -> Any:
        raise AssertionError("a console was made for a short scan")

    bar = ScanProgress(no_console, threshold=10)
    bar.start(9, 1)
    bar.advance(9)
    bar.stop()
    assert bar.progress is None


def test_a_source_that_cannot_be_listed_keeps_its_cursors(
    ledger: LocalLedger,
    logs: Path,
    empty_home: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When listing a source fails, that is a problem, and its files are not treated as gone."""
    from usageledger.sources import PARSERS

    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    before = cursor_paths(ledger)

    def broken(env: Any, home: Any) -> list[Path]:
        raise OSError("input/output error")

    monkeypatch.setattr(PARSERS["claude"], "discover", broken)
    summary = run_scan(ledger, env, empty_home, clock)
    assert [p.reason for p in summary.sources["claude"].problems] == [
        "cannot list files (input/output error)"
    ]
    assert summary.sources["claude"].files_gone == 0
    assert cursor_paths(ledger) == before


def opencode_db(root: Path) -> sqlite3.Connection:
    """An opencode >= 1.2 database under ``root``, in WAL mode, its writer left open."""
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "opencode.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(
        "CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, "
        "time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL)"
    )
    return conn


def opencode_row(conn: sqlite3.Connection, mid: str, created: int, output: int) -> None:
    data = {
        "role": "assistant",
        "modelID": "gpt-5",
        "time": {"created": created},
        "tokens": {"input": 10, "output": output, "reasoning": 0, "cache": {"read": 0, "write": 0}},
    }
    conn.execute(
        "INSERT OR REPLACE INTO message VALUES (?, 'ses_db', ?, ?, ?)",
        (mid, created, created, orjson.dumps(data).decode()),
    )


def test_an_opencode_database_counts_with_its_leftover_files_once(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """A message in both a frozen JSON file and opencode.db counts once (the database's copy);
    a row still in the write-ahead log is found by the next scan."""
    env = logs_env(logs)
    leftover = next((logs / "opencode").rglob("msg_a00000000003*.json"))
    mid = orjson.loads(leftover.read_bytes())["id"]
    conn = opencode_db(logs / "opencode")
    try:
        opencode_row(conn, mid, 1757926800000, output=5000)  # the same message, finished
        opencode_row(conn, "msg_db_only", 1757926900000, output=70)
        first = run_scan(ledger, env, empty_home, clock)
        assert [p for p in first.problems if p.path.endswith(".db")] == []
        assert_layers(ledger, expected(env, empty_home))
        opencode_row(conn, "msg_db_later", 1757927000000, output=30)  # lands in the -wal file
        again = run_scan(ledger, env, empty_home, clock)
    finally:
        conn.close()
    assert again.sources["opencode"].files_read == 1
    assert (again.events_new, again.events_updated) == (1, 0)
    assert_layers(ledger, expected(env, empty_home))
    keys = {e.event_key for e in resolved(parsed_events(env, empty_home)) if e.source == "opencode"}
    assert {mid, "msg_db_only", "msg_db_later"} <= keys


def test_an_unreadable_opencode_database_is_tried_again_next_scan(
    ledger: LocalLedger, env: dict[str, str], empty_home: Path, clock: Clock, tmp_path: Path
) -> None:
    """A database that cannot be read now is a problem each scan until it can be read."""
    root = tmp_path / "opencode"
    env = {**env, "OPENCODE_DATA_DIR": str(root)}
    root.mkdir()
    (root / "opencode.db").write_bytes(b"half-written" * 100)
    for _ in range(2):
        summary = run_scan(ledger, env, empty_home, clock)
        (problem,) = summary.problems
        assert problem.path == str(root / "opencode.db")
        assert "cannot read the database" in problem.reason
    (root / "opencode.db").unlink()
    conn = opencode_db(root)
    try:
        opencode_row(conn, "msg_1", 1757926800000, output=70)
        summary = run_scan(ledger, env, empty_home, clock)
    finally:
        conn.close()
    assert summary.problems == []
    assert summary.events_new == 1
    assert_layers(ledger, expected(env, empty_home))


def test_a_crash_between_pages_of_a_database_reads_it_again(
    ledger: LocalLedger,
    env: dict[str, str],
    empty_home: Path,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages committed before a crash leave the database unfinished: the next scan of the
    unchanged database reads it again, and every message counts once."""
    monkeypatch.setattr(opencode_module, "PAGE_ROWS", 2)
    monkeypatch.setattr(scan_module, "BATCH_EVENTS", 2)
    root = tmp_path / "opencode"
    env = {**env, "OPENCODE_DATA_DIR": str(root)}
    conn = opencode_db(root)
    try:
        for n in range(7):
            opencode_row(conn, f"msg_{n}", 1757926800000 + n * 60_000, output=10 + n)
        batches = 0

        def crash(_conn: sqlite3.Connection) -> None:
            nonlocal batches
            batches += 1
            if batches == 2:
                raise Crash

        with pytest.raises(Crash):
            run_scan(ledger, env, empty_home, clock, after_write=crash)
        assert event_count(ledger) == 2  # the first page's batch was committed
        summary = run_scan(ledger, env, empty_home, clock)
        unchanged = run_scan(ledger, env, empty_home, clock)
    finally:
        conn.close()  # a checkpoint: the database changes on disk, not in content
    assert summary.sources["opencode"].files_read == 1
    assert unchanged.sources["opencode"].files_read == 0
    assert event_count(ledger) == 7
    assert_layers(ledger, expected(env, empty_home))
    after_checkpoint = run_scan(ledger, env, empty_home, clock)
    assert (after_checkpoint.events_new, after_checkpoint.events_updated) == (0, 0)
