"""Usage a parser cannot count reaches the user: a problem in ``scan`` and in ``status``."""

from __future__ import annotations

from pathlib import Path

from tests.tracker.conftest import Clock
from tests.tracker.support import claude_line, jsonl, run_scan
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.status import ledger_status


def test_usage_on_a_non_assistant_line_is_a_problem_in_scan_and_status(
    ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock
) -> None:
    """A typeless line counts; a ``user`` line with usage is reported by both commands."""
    typeless = claude_line("m1", "2025-09-15T10:00:00Z", fresh=100, output=10)
    del typeless["type"]
    user = claude_line("m2", "2025-09-15T10:05:00Z", fresh=500, output=50)
    user["type"] = "user"
    path = tmp_path / "claude" / "projects" / "p" / "s.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(jsonl([typeless, user]))
    env = {"CLAUDE_CONFIG_DIR": str(tmp_path / "claude")}
    summary = run_scan(ledger, env, empty_home, clock)
    (problem,) = summary.sources["claude"].problems
    assert (problem.path, problem.line) == (str(path), 2)
    assert "not an assistant message" in problem.reason
    status = ledger_status(ledger, env=env, home=empty_home)
    claude = next(s for s in status["sources"] if s["source"] == "claude")
    assert (claude["events"], claude["total_tokens"], claude["problems"]) == (1, 110, 1)
