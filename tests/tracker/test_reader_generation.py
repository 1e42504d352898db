"""Events stored by an older reading of the logs gain what is read now.

A ledger scanned before the parsers read one-hour cache writes, billing classes and logged
costs holds those events with the new columns at their defaults (0 and NULL). Opening it
with this usageledger forgets its file cursors once (``READER_GENERATION`` in ``PRAGMA
user_version``), and the next scan reads the logs again: the same responses read again take
what is read now, whatever the duplicate policy, and the buckets they change get new
revisions, so a push sends them.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import run_scan
from tests.tracker.test_billing_rules import FOUR_RESPONSES, response, write_logs
from usageledger.buckets import COUNT_COLUMNS, COUNTS_V2
from usageledger.tracker.ledger import READER_GENERATION, LocalLedger, open_ledger

V3_ONLY = [c for c in COUNT_COLUMNS if c not in COUNTS_V2]


def sums(path: Path, table: str, columns: list[str]) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            f"SELECT {', '.join(f'COALESCE(SUM({c}), 0)' for c in columns)} FROM {table}"
        ).fetchone()
    return dict(zip(columns, (int(v) for v in row), strict=True))


def as_an_older_reading_left_it(path: Path) -> None:
    """The v3 counts and logged costs at their migration defaults, the older generation."""
    with closing(sqlite3.connect(path)) as conn, conn:
        zeros = ", ".join(f"{c} = 0" for c in V3_ONLY)
        conn.execute(f"UPDATE usage_events SET {zeros}, logged_cost_picousd = NULL")
        conn.execute(f"UPDATE usage_buckets SET {zeros}")
        conn.execute("PRAGMA user_version = 0")


def reopen(ledger: LocalLedger, clock: Clock) -> LocalLedger:
    ledger.close()
    return open_ledger(ledger.home, now_ms=clock(), env={}, hostname="test-host")


def test_an_older_readings_events_gain_the_new_fields_on_the_next_scan(
    ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock
) -> None:
    root = tmp_path / "logs"
    lines: list[dict[str, Any]] = [*FOUR_RESPONSES]
    lines[3] = {**lines[3], "costUSD": 0.0125}  # an older Claude Code logged its cost
    write_logs(root, lines)
    run_scan(ledger, logs_env(root), empty_home, clock)
    read_now = sums(ledger.path, "usage_events", [*V3_ONLY, "logged_cost_picousd"])
    # Responses 2 and 3 wrote 20,000 one-hour tokens each; response 1 is over 200k.
    assert read_now["cache_write_1h_tokens"] == 40_000
    assert read_now["long_context_input_tokens"] == 10_000 + 4_000
    assert read_now["logged_cost_picousd"] == 12_500_000_000  # $0.0125 in pico-dollars
    with closing(sqlite3.connect(ledger.path)) as conn:
        revisions = dict(conn.execute("SELECT bucket_start, revision FROM usage_buckets"))

    as_an_older_reading_left_it(ledger.path)
    assert sums(ledger.path, "usage_events", ["cache_write_1h_tokens"]) == {
        "cache_write_1h_tokens": 0
    }
    ledger = reopen(ledger, clock)
    try:
        with closing(sqlite3.connect(ledger.path)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM scan_files").fetchone() == (0,)
            assert conn.execute("PRAGMA user_version").fetchone() == (READER_GENERATION,)
        summary = run_scan(ledger, logs_env(root), empty_home, clock)
        assert summary.events_new == 0
        assert summary.events_updated == 4  # every response read again gained something

        assert sums(ledger.path, "usage_events", [*V3_ONLY, "logged_cost_picousd"]) == read_now
        assert sums(ledger.path, "usage_buckets", V3_ONLY) == sums(
            ledger.path, "usage_events", V3_ONLY
        )
        with closing(sqlite3.connect(ledger.path)) as conn:
            extra = " + ".join(V3_ONLY)
            rows = conn.execute(f"SELECT bucket_start, revision, {extra} FROM usage_buckets")
            changed = {start: revision > revisions[start] for start, revision, _ in rows}
            rows = conn.execute(f"SELECT bucket_start, {extra} FROM usage_buckets")
            gained = {start: total > 0 for start, total in rows}
        # A bucket whose v3 counts the re-read filled has a new revision (push sends it); the
        # 11:00 one (response 4: no one-hour writes, under 200k) is unchanged and keeps its own.
        assert changed == gained
        assert sorted(gained.values()) == [False, True, True]
    finally:
        ledger.close()


def test_the_cursors_are_forgotten_once(
    ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock
) -> None:
    root = tmp_path / "logs"
    write_logs(root, FOUR_RESPONSES)
    run_scan(ledger, logs_env(root), empty_home, clock)
    ledger = reopen(ledger, clock)
    try:
        with closing(sqlite3.connect(ledger.path)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM scan_files").fetchone() == (1,)
        assert run_scan(ledger, logs_env(root), empty_home, clock).sources["claude"].files_read == 0
    finally:
        ledger.close()


def test_a_reread_never_drops_a_logged_cost_and_another_copy_follows_the_policy(
    ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock
) -> None:
    """Claude's policy keeps the copy with more tokens: a smaller copy of the same response
    (a streamed partial, say) does not replace it, and the same copy read again without its
    ``costUSD`` keeps the stored cost."""
    root = tmp_path / "logs"
    full = {**response(9, "2026-12-04T12:00:00Z", "claude-sonnet-4-5", fresh=100, output=50)}
    write_logs(root, [{**full, "costUSD": 0.5}])
    run_scan(ledger, logs_env(root), empty_home, clock)

    transcript = root / "claude" / "projects" / "-home-u-proj" / "s-billing.jsonl"
    partial = response(9, "2026-12-04T12:00:00Z", "claude-sonnet-4-5", fresh=100, output=10)
    with transcript.open("ab") as handle:
        handle.write(orjson.dumps(full) + b"\n" + orjson.dumps(partial) + b"\n")
    summary = run_scan(ledger, logs_env(root), empty_home, clock)

    assert summary.events_updated == 0
    stored = sums(ledger.path, "usage_events", ["output_tokens", "logged_cost_picousd"])
    assert stored == {"output_tokens": 50, "logged_cost_picousd": 500_000_000_000}
