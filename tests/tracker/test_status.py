"""``tracker.status``: paths, last scan and push, pending buckets, per-source health."""

from __future__ import annotations

from pathlib import Path

from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import claude_line, jsonl, run_scan
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import save_login
from usageledger.tracker.status import ledger_status


def test_a_fresh_ledger_says_never_and_lists_files_to_scan(
    ledger: LocalLedger, logs: Path, empty_home: Path
) -> None:
    """Before any scan: no last scan or push, not logged in, files found but not scanned."""
    status = ledger_status(ledger, env=logs_env(logs), home=empty_home)
    assert status["ledger"] == str(ledger.path)
    assert (status["last_scan"], status["last_push"], status["server"]) == (None, None, None)
    assert status["pending_buckets"] == 0
    claude = next(s for s in status["sources"] if s["source"] == "claude")
    assert (claude["files_found"], claude["files_scanned"]) == (3, 0)
    assert any("not scanned yet" in w for w in status["warnings"])


def test_after_a_scan_it_shows_health_per_source(
    ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """Files scanned, problems, events and tokens per source; buckets pending upload."""
    env = logs_env(logs)
    summary = run_scan(ledger, env, empty_home, clock)
    save_login(ledger, "https://ledger.example", "ul_dev_x", now_ms=clock())
    status = ledger_status(ledger, env=env, home=empty_home)
    assert status["last_scan"] is not None
    assert status["server"] == "https://ledger.example"
    assert status["pending_buckets"] > 0
    for row in status["sources"]:
        scanned = summary.sources[row["source"]]
        assert row["files_found"] == row["files_scanned"] == scanned.files_found
        assert row["problems"] == len(scanned.problems)
        assert row["events"] > 0
        assert row["warning"] is None
    assert status["warnings"] == []


def test_it_warns_when_files_mention_usage_but_nothing_was_parsed(
    ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock
) -> None:
    """A Claude log whose usage the parser cannot read (a changed format) raises a warning."""
    changed = claude_line("m1", "2025-09-15T10:00:00Z")
    changed["message"]["usage"] = {"prompt": 5, "completion": 1}  # a format we do not know
    path = tmp_path / "claude" / "projects" / "p" / "s.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(jsonl([changed]))
    env = {"CLAUDE_CONFIG_DIR": str(tmp_path / "claude")}
    run_scan(ledger, env, empty_home, clock)
    status = ledger_status(ledger, env=env, home=empty_home)
    claude = next(s for s in status["sources"] if s["source"] == "claude")
    assert claude["total_tokens"] == 0
    assert claude["warning"] is not None
    assert "format may have changed" in claude["warning"]
