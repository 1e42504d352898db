"""``tracker.scan`` with a pool of parsing processes: the same ledger as one process, or none.

A parallel scan must be invisible in the ledger: every row of every table equal to what a
one-process scan writes, on the sample logs and on a generated history of many files, with
duplicates across files whose winner depends on the order of writes. A scan with little to
read must not start a pool at all.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.scan import Corpus, append_mib, generate
from tests.tracker.conftest import START_MS, Clock, logs_env, new_ledger
from tests.tracker.support import claude_line, codex_lines, jsonl, run_scan
from usageledger.sources import UsageEvent
from usageledger.tracker import scan as scan_module
from usageledger.tracker.files import Chunk


def ledger_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a ledger file, sorted, by table."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            table: sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
            for table in tables
        }


def with_duplicates(root: Path) -> None:
    """Copies of one event in several files, whose stored copy depends on the order of writes.

    Claude keeps the copy with more tokens, the first on a tie (its session and project come
    from that file); Codex keeps the first copy (an archived rollout repeats a live one).
    """
    projects = root / "claude" / "projects"
    for n, cwd in enumerate(("/work/alpha", "/work/beta", "/work/gamma")):
        folder = projects / cwd.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"dup-{n}.jsonl").write_bytes(
            jsonl(
                [
                    claude_line("msg_tie", "2025-09-15T10:00:00Z", session=f"s-{n}", cwd=cwd),
                    claude_line(
                        "msg_max", "2025-09-15T10:01:00Z", fresh=100 + 10 * (n % 2), cwd=cwd
                    ),
                ]
            )
        )
    live = root / "codex" / "sessions" / "2025" / "09" / "15"
    archived = root / "codex" / "archived_sessions"
    live.mkdir(parents=True, exist_ok=True)
    archived.mkdir(parents=True, exist_ok=True)
    name = "rollout-2025-09-15T10-00-00-0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.jsonl"
    turns = [("2025-09-15T10:00:00Z", 500, 100, 20), ("2025-09-15T10:05:00Z", 900, 400, 30)]
    (live / name).write_bytes(jsonl(codex_lines("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", turns)))
    shutil.copy(live / name, archived / name)


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny tasks, lookahead and batches: many round trips and writes between results."""
    monkeypatch.setattr(scan_module, "TASK_BYTES", 2048)
    monkeypatch.setattr(scan_module, "LOOKAHEAD_BYTES", 16 * 1024)
    monkeypatch.setattr(scan_module, "POOL_AHEAD_BYTES", 8 * 1024)
    monkeypatch.setattr(scan_module, "BATCH_EVENTS", 7)


@pytest.mark.parametrize("corpus", ["samples", "generated"])
def test_a_parallel_scan_builds_the_same_ledger_as_one_process(
    tmp_path: Path,
    logs: Path,
    migrated_file: Path,
    small_pool: None,
    corpus: str,
) -> None:
    """Every row of every table is equal after a cold scan and after a rescan of appends."""
    (tmp_path / "home").mkdir()
    if corpus == "samples":
        root, env = logs, logs_env(logs)
    else:
        root = tmp_path / "generated"
        generated = generate(root, 8_000_000, seed=3)
        assert generated.files > 40
        with_duplicates(root)
        env = {**logs_env(root), "GEMINI_DATA_DIR": str(root / "none")}
    ledgers: dict[int, Path] = {}
    clocks = {workers: Clock() for workers in (1, 2)}
    opened = {
        workers: new_ledger(tmp_path / f"ledger-{workers}", migrated_file, clocks[workers])
        for workers in (1, 2)
    }
    try:
        for workers, ledger in opened.items():
            run_scan(ledger, env, tmp_path / "home", clocks[workers], workers=workers)
            ledgers[workers] = ledger.path
        assert ledger_rows(ledgers[1]) == ledger_rows(ledgers[2])
        assert ledger_rows(ledgers[1])["usage_events"]
        if corpus == "generated":
            append_mib(Corpus(root, 0, 0))
            with_duplicates(root)  # rewritten: read again from the start
        for workers, ledger in opened.items():
            summary = run_scan(ledger, env, tmp_path / "home", clocks[workers], workers=workers)
            assert not [p for p in summary.problems if "parser error" in p.reason]
        assert ledger_rows(ledgers[1]) == ledger_rows(ledgers[2])
    finally:
        for ledger in opened.values():
            ledger.close()


def test_a_scan_with_little_to_read_starts_no_pool(
    tmp_path: Path, logs: Path, migrated_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below ``POOL_MIN_BYTES`` the scan parses in its own process, however many CPUs."""

    def no_pool(*args: Any) -> Any:
        raise AssertionError("a pool was started")

    monkeypatch.setattr(scan_module, "parse_in_pool", no_pool)
    monkeypatch.setattr(scan_module, "cpu_count", lambda: 8)
    clock = Clock()
    ledger = new_ledger(tmp_path / "data", migrated_file, clock)
    try:
        summary = run_scan(ledger, logs_env(logs), tmp_path, clock)
        assert summary.events_new > 0
        monkeypatch.setattr(scan_module, "POOL_MIN_BYTES", 1)
        (logs / "claude" / "projects" / "-work-x").mkdir(parents=True)
        for n in range(2):
            path = logs / "claude" / "projects" / "-work-x" / f"s-{n}.jsonl"
            path.write_bytes(jsonl([claude_line(f"m-{n}", "2025-09-15T10:00:00Z")]))
        with pytest.raises(AssertionError, match="a pool was started"):
            run_scan(ledger, logs_env(logs), tmp_path, clock)
    finally:
        ledger.close()


def test_a_rescan_with_nothing_new_writes_nothing(tmp_path: Path, migrated_file: Path) -> None:
    """No transaction at all when no file changed (every cursor stays as it was)."""
    with_duplicates(tmp_path / "logs")  # whole lines only (a partial last line is re-read)
    env = {**logs_env(tmp_path / "logs"), "GEMINI_DATA_DIR": str(tmp_path / "none")}
    clock = Clock()
    ledger = new_ledger(tmp_path / "data", migrated_file, clock)
    writes: list[int] = []
    try:
        run_scan(ledger, env, tmp_path, clock)
        before = ledger_rows(ledger.path)
        run_scan(ledger, env, tmp_path, clock, after_write=lambda _: writes.append(1))
        assert writes == []
        assert ledger_rows(ledger.path) == before
    finally:
        ledger.close()


def test_events_cross_from_a_worker_unchanged() -> None:
    """Packed and unpacked chunks hold equal events, lone surrogates and big numbers too."""
    event = UsageEvent(
        source="claude",
        event_key="msg_1",
        timestamp=datetime(2025, 9, 15, 10, 0, 0, 123456, tzinfo=UTC),
        model="claude-sonnet-4-5",
        session_id="s-1",
        project=None,
        input_tokens=1,
        cached_input_tokens=2,
        output_tokens=3,
        reasoning_output_tokens=4,
        cache_write_tokens=5,
    )
    odd = [
        UsageEvent(**{**_fields(event), "event_key": "msg_\ud800"}),
        UsageEvent(**{**_fields(event), "input_tokens": 2**70}),
    ]
    for events in ([event], odd, []):
        chunk = scan_module.unpack(scan_module.pack(Chunk(events=list(events), offset=9)))
        assert chunk.events == events
        assert chunk.offset == 9


def _fields(event: UsageEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in scan_module.EVENT_FIELDS}


class Crash(Exception):
    """A simulated crash inside a scan's transaction."""


def test_a_crash_during_a_parallel_scan_stops_the_workers_and_loses_nothing(
    tmp_path: Path, logs: Path, migrated_file: Path, small_pool: None
) -> None:
    """The writer's failure ends the pool; the next scan completes the same ledger."""
    env = logs_env(logs)
    opened = {n: new_ledger(tmp_path / f"ledger-{n}", migrated_file, Clock()) for n in (1, 2)}
    calls = 0

    def crash(_: sqlite3.Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Crash

    try:
        with pytest.raises(Crash):
            run_scan(opened[2], env, tmp_path, Clock(), workers=2, after_write=crash)
        assert multiprocessing.active_children() == []
        run_scan(opened[2], env, tmp_path, Clock(), workers=2)
        run_scan(opened[1], env, tmp_path, Clock(), workers=1)
        mine, theirs = ledger_rows(opened[2].path), ledger_rows(opened[1].path)
        for table in ("usage_events", "scan_files"):
            assert [_counts(r) for r in mine[table]] == [_counts(r) for r in theirs[table]]
    finally:
        for ledger in opened.values():
            ledger.close()


def _counts(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row without its write times (the two ledgers' clocks differ after a crash)."""
    return tuple(v for v in row if not (isinstance(v, int) and v >= START_MS))


def _die(task: Any, chunk_bytes: int) -> Any:
    """A worker killed mid-task (out of memory, a signal)."""
    os._exit(9)


def test_a_dead_worker_leaves_its_files_to_the_writer(
    tmp_path: Path,
    logs: Path,
    migrated_file: Path,
    small_pool: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When a worker dies, the scan parses its files itself: the same ledger, no hang."""
    env = logs_env(logs)
    clocks = {n: Clock() for n in (1, 2)}
    opened = {n: new_ledger(tmp_path / f"ledger-{n}", migrated_file, clocks[n]) for n in (1, 2)}
    try:
        run_scan(opened[1], env, tmp_path, clocks[1], workers=1)
        monkeypatch.setattr(scan_module, "parse_task", _die)
        run_scan(opened[2], env, tmp_path, clocks[2], workers=2)
        assert multiprocessing.active_children() == []
        assert ledger_rows(opened[1].path) == ledger_rows(opened[2].path)
    finally:
        for ledger in opened.values():
            ledger.close()
