"""`usageledger statusline`: one current line, read incrementally, never broken, never waiting.

The figures are worked out by hand from a transcript at fixed times, the round price book of
test_blocks ($1 per million input tokens, $2 per million output tokens) and a fixed clock.
"""

from __future__ import annotations

import fcntl
import io
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.tracker.test_blocks import BOOK, add, ms
from usageledger.cli.root import main
from usageledger.tracker import scan as scan_module
from usageledger.tracker import statusline as sl
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.scan import scan

NOW = ms("2026-03-02 21:35")
SESSION = "5e55105e-0000-4000-8000-000000000001"
ALL = "model,session,today,block,burn,context,limits"


def line(when: str, request: str, inp: int, out: int, **extra: Any) -> bytes:
    """One assistant line of the transcript (model m1, session SESSION)."""
    record = {
        "type": "assistant",
        "sessionId": SESSION,
        "requestId": request,
        "timestamp": when,
        "cwd": "/work/proj",
        "message": {
            "id": f"msg_{request}",
            "role": "assistant",
            "model": "m1",
            "usage": {"input_tokens": inp, "output_tokens": out, **extra},
        },
    }
    return orjson.dumps(record) + b"\n"


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    """A session transcript: 21:05 100k in + 50k out ($0.20), 21:20 200k in ($0.20)."""
    path = tmp_path / "claude" / "projects" / "-work-proj" / f"{SESSION}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        line("2026-03-02T21:05:00Z", "r1", 100_000, 50_000)
        + line("2026-03-02T21:20:00Z", "r2", 200_000, 0)
    )
    return path


def given(transcript: Path | str | None, **extra: Any) -> bytes:
    """Claude Code's input for the session."""
    data: dict[str, Any] = {
        "session_id": SESSION,
        "transcript_path": str(transcript) if transcript is not None else None,
        "model": {"id": "claude-opus-4-1", "display_name": "Opus 4.1"},
        "workspace": {"current_dir": "/work/proj"},
        "cost": {"total_cost_usd": 0.42},
        "context_window": {"context_window_size": 1_000_000},
        **extra,
    }
    return orjson.dumps(data)


def run(ledger: LocalLedger, stdin: bytes, segments: str = ALL, **options: Any) -> str:
    """The line for ``stdin`` at NOW, without colour unless the env says otherwise."""
    options.setdefault("env", {"NO_COLOR": "1"})
    return sl.status_line(
        io.BytesIO(stdin),
        home=lambda: ledger.home,
        clock=lambda: NOW,
        segments=segments,
        book=lambda: BOOK,
        **options,
    )


RATE_LIMITS = {
    "five_hour": {"used_percentage": 23.5, "resets_at": 1772500000},
    "seven_day": {"used_percentage": 41, "resets_at": 1772900000},
}


def test_the_line_shows_every_figure_worked_out_by_hand(
    ledger: LocalLedger, transcript: Path
) -> None:
    """Session $0.40, today $1.40 (with $1 of codex at 10:00), block 21:00 with 4h25m left,
    $0.80/h (40 cents in the 30 minutes since 21:05), context 200k of 1M, the limits as sent."""
    add(ledger, ("2026-03-02 10:00", 1_000_000, 0), source="codex")
    text = run(ledger, given(transcript, rate_limits=RATE_LIMITS))
    assert text == (
        "Opus 4.1 | $0.40 session | $1.40 today | $0.40 block (4h 25m left) | $0.80/h"
        " | ctx 200.0k (20%) | 5h 23.5% 7d 41%"
    )


def test_each_run_reads_only_what_is_new_through_the_scan_cursor(
    ledger: LocalLedger, transcript: Path, tmp_path: Path
) -> None:
    """A line appended after the first run is counted at once; a full scan then adds nothing."""
    run(ledger, given(transcript), segments="session")
    with transcript.open("ab") as handle:
        handle.write(line("2026-03-02T21:30:00Z", "r3", 100_000, 0))
    assert run(ledger, given(transcript), segments="session") == "$0.50 session"
    size = transcript.stat().st_size
    cursor = ledger.db.read(
        lambda c: c.execute(
            'SELECT "offset", source FROM scan_files WHERE path = ?', (str(transcript),)
        ).fetchone()
    )
    assert cursor == (size, "claude")
    env = {"CLAUDE_CONFIG_DIR": str(tmp_path / "claude")}
    summary = scan(ledger, env=env, home=tmp_path, clock=lambda: NOW, sources=["claude"])
    assert summary.events_new == 0
    assert summary.sources["claude"].bytes_read == 0


def test_sub_agent_files_of_the_session_are_read_too(ledger: LocalLedger, transcript: Path) -> None:
    """Claude Code writes sub-agents under <session>/: their cost is the session's."""
    agent = transcript.with_suffix("") / "subagents" / "agent-1.jsonl"
    agent.parent.mkdir(parents=True)
    agent.write_bytes(line("2026-03-02T21:25:00Z", "r9", 0, 500_000))
    assert run(ledger, given(transcript), segments="session") == "$1.40 session"


def test_segments_are_chosen_and_ordered_and_colour_follows_no_color(
    ledger: LocalLedger, transcript: Path
) -> None:
    """--segments picks and orders; colour codes appear unless NO_COLOR is set."""
    assert run(ledger, given(transcript), segments="burn,model") == "$0.80/h | Opus 4.1"
    coloured = run(ledger, given(transcript), segments="model", env={})
    assert coloured == "\x1b[36mOpus 4.1\x1b[0m"
    assert "\x1b[" not in run(ledger, given(transcript), env={"NO_COLOR": "1"})


def test_rate_limits_sent_are_recorded_as_observations(
    ledger: LocalLedger, transcript: Path
) -> None:
    """Claude Code's five_hour and seven_day land in limit_observations at the run's time."""
    run(ledger, given(transcript, rate_limits=RATE_LIMITS))
    run(ledger, given(transcript, rate_limits=RATE_LIMITS))  # unchanged: not stored again
    stored = ledger.db.read(
        lambda c: c.execute(
            "SELECT source, window_name, observed_ms, used_percent, resets_at_ms "
            "FROM limit_observations ORDER BY window_name"
        ).fetchall()
    )
    assert stored == [
        ("claude", "five_hour", NOW, 23.5, 1772500000000),
        ("claude", "seven_day", NOW, 41.0, 1772900000000),
    ]


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        (b"", "no input"),
        (b"this is not json", "input is not JSON"),
        (b"[1, 2, 3]", "input is not a JSON object"),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", "input too large"),
    ],
)
def test_input_that_is_not_claude_codes_gives_the_fallback(
    ledger: LocalLedger, stdin: bytes, reason: str
) -> None:
    """Empty, not JSON, not an object or huge: one short line naming why."""
    assert run(ledger, stdin) == f"usageledger: {reason}"


def test_missing_fields_and_a_missing_transcript_still_answer(ledger: LocalLedger) -> None:
    """No session, model or transcript: what is known is shown; a transcript that does not
    exist reads nothing and breaks nothing."""
    add(ledger, ("2026-03-02 21:10", 1_000_000, 0), source="codex")
    assert run(ledger, b"{}", segments="model,session,today,block") == (
        "$1.00 today | $1.00 block (4h 25m left)"
    )
    gone = given("/nowhere/at/all.jsonl")
    assert run(ledger, gone, segments="model,session,context") == "Opus 4.1 | $0.00 session"
    odd = orjson.dumps({"model": 7, "session_id": ["x"], "transcript_path": {"a": 1}})
    assert run(ledger, odd, segments="model,session,today") == "$1.00 today"


def test_an_unknown_segment_or_a_broken_ledger_gives_the_fallback(
    ledger: LocalLedger, transcript: Path, tmp_path: Path
) -> None:
    """A bad --segments value, or a ledger that is not a database: a line, never a raise."""
    assert run(ledger, given(transcript), segments="model,weather") == (
        "usageledger: unknown segment 'weather'"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ledger.db").write_bytes(b"this is not a database" * 100)
    text = sl.status_line(
        io.BytesIO(given(transcript)),
        home=lambda: broken,
        env={},
        clock=lambda: NOW,
        segments=ALL,
        book=lambda: BOOK,
    )
    assert text.startswith("Opus 4.1 | usageledger: unavailable (")


def test_a_held_write_lock_is_not_waited_for(ledger: LocalLedger, transcript: Path) -> None:
    """Another writer holds the ledger: the line comes from the ledger as it stands (the
    transcript stays unread for the next run), and the connection has no busy timeout."""
    add(ledger, ("2026-03-02 21:10", 1_000_000, 0), source="codex")
    with closing(sqlite3.connect(ledger.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        text = run(ledger, given(transcript), segments="session,today")
        other.execute("ROLLBACK")
    assert text == "$0.00 session | $1.00 today"
    assert run(ledger, given(transcript), segments="session,today") == (
        "$0.40 session | $1.40 today"
    )
    opened = sl.open_quick(ledger.home, NOW)
    try:
        assert opened.db.conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
    finally:
        opened.close()


def test_a_running_scan_is_not_waited_for(ledger: LocalLedger, transcript: Path) -> None:
    """While a scan holds scan.lock the status line reads nothing new and still answers."""
    fd = os.open(ledger.home / "scan.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert run(ledger, given(transcript), segments="model,session") == (
            "Opus 4.1 | $0.00 session"
        )
    finally:
        os.close(fd)
    assert run(ledger, given(transcript), segments="session") == "$0.40 session"


def test_a_new_ledger_is_created_on_the_first_run(
    tmp_path: Path, transcript: Path, migrated_file: Path
) -> None:
    """No ledger yet: it is made (and migrated) like any tracker command's, then answered from."""
    home = tmp_path / "fresh"
    text = sl.status_line(
        io.BytesIO(given(transcript)),
        home=lambda: home,
        env={"NO_COLOR": "1"},
        clock=lambda: NOW,
        segments="session",
        book=lambda: BOOK,
    )
    assert text == "$0.40 session"
    assert (home / "ledger.db").exists()


def test_the_status_lines_cursor_columns_are_the_scanners() -> None:
    """Both write scan_files rows with the same columns: one tuple, in tracker.files."""
    assert sl.CURSOR_COLUMNS is scan_module.CURSOR_COLUMNS


@pytest.mark.parametrize(
    "stdin", [b"not json", b"", b"{}", b"{" + b"x" * (2 * 1024 * 1024), b'{"transcript_path": 5}']
)
def test_the_command_always_prints_one_line_and_exits_0(
    ledger: LocalLedger, tmp_path: Path, stdin: bytes
) -> None:
    """Through the CLI: whatever arrives on stdin, exit status 0 and a single line."""
    env = {"USAGELEDGER_HOME": str(ledger.home), "HOME": str(tmp_path), "NO_COLOR": "1"}
    done = CliRunner().invoke(main, ["statusline"], input=stdin, env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.count("\n") == 1
    assert done.stdout.strip()


def test_a_bad_setting_still_prints_a_line(tmp_path: Path) -> None:
    """USAGELEDGER_HOME that is not usable: the fallback, exit 0."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {"USAGELEDGER_HOME": str(blocker), "HOME": str(tmp_path)}
    done = CliRunner().invoke(main, ["statusline"], input=given(None), env=env)
    assert done.exit_code == 0
    assert done.stdout.startswith("Opus 4.1 | usageledger: unavailable")
