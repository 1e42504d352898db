"""``tracker.status``: paths, last scan and push, pending buckets, per-source health."""

from __future__ import annotations

from pathlib import Path

from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import claude_line, jsonl, run_scan
from usageledger.sources import PARSERS
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import save_login
from usageledger.tracker.status import USAGE_MARKERS, ledger_status, mentions_usage


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
    logs_env_sources = {"codex", "claude", "gemini", "opencode"}  # the logs copied here
    summary = run_scan(ledger, env, empty_home, clock)
    save_login(ledger, "https://ledger.example", "ul_dev_x", now_ms=clock())
    status = ledger_status(ledger, env=env, home=empty_home)
    assert status["last_scan"] is not None
    assert status["server"] == "https://ledger.example"
    assert status["pending_buckets"] > 0
    assert [row["source"] for row in status["sources"]] == list(PARSERS)
    for row in status["sources"]:
        scanned = summary.sources[row["source"]]
        assert row["files_found"] == row["files_scanned"] == scanned.files_found
        assert row["problems"] == len(scanned.problems)
        assert (row["events"] > 0) == (row["source"] in logs_env_sources)
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


#: Where each source's sample logs live under tests/sources/samples.
SAMPLE_DIRS = {
    "codex": "codex",
    "claude": "claude",
    "gemini": "gemini",
    "opencode": "opencode",
    "copilot": "copilot",
    "amp": "amp",
    "every-code": "every-code",
    "droid": "droid",
    "hermes": "hermes",
    "goose": "goose",
    "qwen": "qwen",
    "kimi": "kimi",
    "kilo": "kilo",
    "openclaw": "openclaw",
    "pi": "pi",
    "cline": "vscode/Code/User/globalStorage/saoudrizwan.claude-dev",
    "roo-code": "vscode/Code/User/globalStorage/rooveterinaryinc.roo-cline",
    "kilo-code": "vscode/Code/User/globalStorage/kilocode.kilo-code",
}


def test_every_source_has_a_usage_marker_that_its_sample_logs_contain() -> None:
    """The format-drift warning works for every source: each parser has markers, and its
    sample files (databases as the SQL they are built from) contain one of them."""
    assert set(USAGE_MARKERS) == set(PARSERS) == set(SAMPLE_DIRS)
    samples = Path(__file__).parents[1] / "sources" / "samples"
    for source, folder in SAMPLE_DIRS.items():
        files = [p for p in (samples / folder).rglob("*") if p.is_file()]
        assert files, source
        hits = [p for p in files if any(m in p.read_bytes() for m in USAGE_MARKERS[source])]
        assert hits, f"no sample file of {source} contains {USAGE_MARKERS[source]}"


def test_a_file_that_mentions_usage_is_counted_for_a_new_source(tmp_path: Path) -> None:
    """``mentions_usage`` sniffs a source's own marker: Droid's ``tokenUsage`` is found, a
    settings file without it is not."""
    used = tmp_path / "a.settings.json"
    used.write_bytes(b'{"tokenUsage": {"inputTokens": 5}}')
    unused = tmp_path / "b.settings.json"
    unused.write_bytes(b'{"model": "x"}')
    assert mentions_usage("droid", [used, unused]) == 1
