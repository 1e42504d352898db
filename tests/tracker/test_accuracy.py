"""End to end: the sample logs through `usageledger report daily --json`, as they change.

The ledger keeps every event it ever read (a deleted log keeps its history), so the truth
after each change is the parsers' events of every version of the logs seen so far, with
duplicates resolved by each source's policy.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import orjson
from click.testing import CliRunner

from tests.tracker.conftest import logs_env
from tests.tracker.support import TOTAL_FIELDS, claude_line, jsonl, parsed_events, sums
from usageledger.cli.root import main
from usageledger.sources import PARSERS, UsageEvent, resolve_duplicates


class Truth:
    """Every parse of the logs so far, resolved as the ledger must resolve them."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env, self.home = env, home
        self.seen: dict[str, list[UsageEvent]] = defaultdict(list)

    def observe(self) -> list[UsageEvent]:
        """Parse the logs as they are now and return the resolved union with earlier parses."""
        for name, events in parsed_events(self.env, self.home).items():
            self.seen[name] += events
        kept: list[UsageEvent] = []
        for name, events in self.seen.items():
            kept += resolve_duplicates(events, PARSERS[name].duplicate_policy)
        return kept


def by_day(events: list[UsageEvent]) -> dict[str, dict[str, int]]:
    """Sums per UTC day."""
    days: dict[str, list[UsageEvent]] = defaultdict(list)
    for e in events:
        days[e.timestamp.date().isoformat()].append(e)
    return {day: sums(found) for day, found in sorted(days.items())}


def report_daily(env: dict[str, str]) -> dict[str, dict[str, int]]:
    """`usageledger report daily --json` (which scans first) as day → counts, plus totals."""
    result = CliRunner().invoke(main, ["report", "daily", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    days = {row["day"]: {f: row[f] for f in TOTAL_FIELDS} for row in report["days"]}
    days["totals"] = {f: report["totals"][f] for f in TOTAL_FIELDS}
    return days


def expect(truth: list[UsageEvent]) -> dict[str, dict[str, int]]:
    """The report the truth implies."""
    return {**by_day(truth), "totals": sums(truth)}


def test_reports_stay_exact_through_appends_deletes_and_replacements(
    cli_env: dict[str, str], logs: Path
) -> None:
    """Scan, append, delete, replace, append to a replaced file: exact totals each time."""
    truth = Truth(logs_env(logs), Path(cli_env["HOME"]))
    assert report_daily(cli_env) == expect(truth.observe())

    # Append: a new Claude response and a Codex token count (files ending with a newline).
    transcript = next((logs / "claude").rglob("11111111-*.jsonl"))
    with transcript.open("ab") as handle:
        handle.write(jsonl([claude_line("msg-new-1", "2025-09-17T08:00:00Z", fresh=321)]))
    rollout = next((logs / "codex" / "sessions").rglob("*0002.jsonl"))
    count = {
        "timestamp": "2025-09-17T09:00:00Z",
        "type": "event_msg",
        "payload": {
            "type": "token_count",
            "info": {
                "total_token_usage": {
                    "input_tokens": 90000,
                    "cached_input_tokens": 100,
                    "output_tokens": 9000,
                    "reasoning_output_tokens": 0,
                },
                "last_token_usage": {
                    "input_tokens": 700,
                    "cached_input_tokens": 100,
                    "output_tokens": 70,
                    "reasoning_output_tokens": 7,
                },
            },
        },
    }
    with rollout.open("ab") as handle:
        handle.write(jsonl([count]))
    assert report_daily(cli_env) == expect(truth.observe())

    # Delete: an archived duplicate and a transcript with events found nowhere else.
    next((logs / "codex" / "archived_sessions").glob("*.jsonl")).unlink()
    next((logs / "claude").rglob("22222222-*.jsonl")).unlink()
    assert report_daily(cli_env) == expect(truth.observe())

    # Replace: a sub-agent transcript rewritten to a new inode with one more response.
    agent = next((logs / "claude").rglob("agent-*.jsonl"))
    inode = agent.stat().st_ino
    fresh = agent.with_name("agent.tmp")
    extra = jsonl([claude_line("msg-agent-2", "2025-09-17T10:00:00Z", fresh=55, session="a")])
    fresh.write_bytes(agent.read_bytes() + extra)
    os.replace(fresh, agent)
    assert agent.stat().st_ino != inode
    assert report_daily(cli_env) == expect(truth.observe())

    # Append to the replaced file: read on from its new cursor.
    with agent.open("ab") as handle:
        handle.write(jsonl([claude_line("msg-agent-3", "2025-09-17T10:31:00Z", output=77)]))
    assert report_daily(cli_env) == expect(truth.observe())
