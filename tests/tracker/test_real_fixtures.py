"""The real log fixtures through the tracker: ``scan`` into a temp ledger, then ``report``.

The fixtures are read in place: each source's directory variable points at the fixtures or
at a temp directory whose ``projects`` entry, or whose ``sessions/rollout-*.jsonl`` files, are
symlinks into the real logs beside the repository (read-only there), so nothing is copied. The
report's per-day totals must equal the numbers of ``tests/sources/_real.py`` (the owners'
statements, else ccusage's), and no source may report a problem in ``scan`` or ``status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.sources import _real
from tests.sources._real import REAL, needs_real
from usageledger.cli.root import main

pytestmark = needs_real


def linked(root: Path, entry: str, target: Path) -> Path:
    """``root`` holding ``entry`` as a symlink to ``target``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / entry).symlink_to(target.resolve(), target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def real_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every source pointed at the real fixtures in place; home and ledger in temp."""
    tmp = tmp_path_factory.mktemp("real")
    (tmp / "home").mkdir()
    claude_dirs = [
        linked(tmp / "claude-spotter", "projects", REAL / "claude" / "spotter"),
        linked(tmp / "claude-ccusage", "projects", REAL / "claude" / "ccusage"),
    ]
    # Codex only reads rollout-*.jsonl: the peers' files get that name through their links.
    sessions = tmp / "codex" / "sessions"
    sessions.mkdir(parents=True)
    for path in sorted((REAL / "codex").glob("*/*.jsonl")):
        name = path.name if path.name.startswith("rollout-") else f"rollout-{path.name}"
        (sessions / name).symlink_to(path.resolve())
    opencode_dirs = [REAL / "opencode" / name for name in ("tokscale", "constructed")]
    return {
        "HOME": str(tmp / "home"),
        "USAGELEDGER_HOME": str(tmp / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "CLAUDE_CONFIG_DIR": ",".join(map(str, claude_dirs)),
        "CODEX_HOME": str(tmp / "codex"),
        "GEMINI_DATA_DIR": str(REAL / "gemini" / "constructed"),
        "OPENCODE_DATA_DIR": ",".join(map(str, opencode_dirs)),
    }


def invoke(env: dict[str, str], *args: str) -> Any:
    """``usageledger ARGS --json`` with ``env``, as parsed JSON."""
    result = CliRunner().invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


@pytest.fixture(scope="module")
def scanned(real_env: dict[str, str]) -> dict[str, Any]:
    """The summary of one ``usageledger scan`` of the fixtures, per source."""
    summary = invoke(real_env, "scan")
    return {row["source"]: row for row in summary["sources"]}


def report(env: dict[str, str], source: str) -> dict[str, _real.Day]:
    """``usageledger report daily --source SOURCE --no-scan`` as day → counts."""
    found = invoke(env, "report", "daily", "--source", source, "--no-scan")
    return {row["day"]: {f: row[f] for f in _real.FIELDS} for row in found["days"]}


def test_the_scan_reads_every_fixture_and_reports_no_problem(scanned: dict[str, Any]) -> None:
    """Every source found its fixture files, stored events, and had nothing to complain of."""
    for source in ("claude", "codex", "gemini", "opencode"):
        row = scanned[source]
        assert row["files_found"] == row["files_read"] > 0, row
        assert row["events_new"] > 0, row
        assert row["problems"] == [], row


def test_the_codex_report_matches_the_owners_and_ccusage(
    real_env: dict[str, str], scanned: dict[str, Any]
) -> None:
    """34,239,227 tokens on 2026-02-23; the fork, alpha and tokscale days as ccusage has them."""
    expected = {
        **_real.CODEX_LOCALPUSH,
        **_real.CODEX_BRANCH,
        **_real.CODEX_ALPHA,
        **_real.CODEX_TOKSCALE,
    }
    days = report(real_env, "codex")
    assert days == dict(sorted(expected.items()))
    assert days["2026-02-23"]["total_tokens"] == 34_239_227


def test_the_claude_report_matches_ccusage(
    real_env: dict[str, str], scanned: dict[str, Any]
) -> None:
    """Streaming copies once, lines without ``type`` counted: the days ccusage reports."""
    expected = {**_real.CLAUDE_SPOTTER, **_real.CLAUDE_CCUSAGE}
    assert report(real_env, "claude") == dict(sorted(expected.items()))


def test_the_gemini_and_opencode_reports_match_their_fixtures(
    real_env: dict[str, str], scanned: dict[str, Any]
) -> None:
    """Gemini's listed token vectors; Opencode's rows without role, database over stale file."""
    assert report(real_env, "gemini") == _real.GEMINI
    expected = {**_real.OPENCODE_TOKSCALE, **_real.OPENCODE_CONSTRUCTED}
    assert report(real_env, "opencode") == dict(sorted(expected.items()))


def test_status_shows_no_problem_for_the_fixtures(
    real_env: dict[str, str], scanned: dict[str, Any]
) -> None:
    """``usageledger status`` agrees: every file scanned, no problem, no warning."""
    status = invoke(real_env, "status")
    fixtures = {"codex", "claude", "gemini", "opencode"}  # the sources the real logs cover
    for row in status["sources"]:
        assert row["files_found"] == row["files_scanned"], row
        assert (row["files_found"] > 0) == (row["source"] in fixtures), row
        assert (row["problems"], row["warning"]) == (0, None), row
