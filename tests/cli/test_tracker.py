"""The tracker's commands through the CLI: output, exit codes, files, and their docs."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from tests.tracker.conftest import LiveServer, logs_env
from tests.tracker.support import TOTAL_FIELDS, parsed_events, resolved, sums
from usageledger.cli.root import main
from usageledger.cli.tracker import commands

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "tracker.md"


def invoke(env: dict[str, str], *args: str, **options: Any) -> Result:
    """Run ``usageledger ARGS`` with ``env``."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, **options)


def test_scan_prints_a_summary_per_source_and_every_problem(cli_env: dict[str, str]) -> None:
    """The table names each source; each unreadable line is listed as path:line: reason."""
    result = invoke(cli_env, "scan")
    assert result.exit_code == 0, result.output
    for source in ("codex", "claude", "gemini", "opencode"):
        assert source in result.output
    listed = re.findall(r"^  (/\S+?)(?::(\d+))?: (.+)$", result.output, re.MULTILINE)
    assert len(listed) == 7
    assert "malformed JSON" in result.output
    assert "not valid UTF-8" in result.output


def test_scan_json_reports_new_events_then_none(cli_env: dict[str, str]) -> None:
    """The JSON summary counts new events; a second scan finds none."""
    first = orjson.loads(invoke(cli_env, "scan", "--json").stdout)
    again = orjson.loads(invoke(cli_env, "scan", "--json").stdout)
    assert sum(s["events_new"] for s in first["sources"]) > 0
    assert sum(s["events_new"] + s["events_updated"] for s in again["sources"]) == 0


def test_report_daily_json_totals_equal_the_parsers(cli_env: dict[str, str], logs: Path) -> None:
    """`report daily --json` scans first and its totals are the parsers' de-duplicated sums."""
    result = invoke(cli_env, "report", "daily", "--json")
    assert result.exit_code == 0, result.stderr
    report = orjson.loads(result.stdout)
    truth = sums(resolved(parsed_events(logs_env(logs), Path(cli_env["HOME"]))))
    assert {f: report["totals"][f] for f in TOTAL_FIELDS} == truth
    assert set(report["days"][0]) >= {"day", *TOTAL_FIELDS, "cost_usd"}


def test_report_prints_a_table_with_totals(cli_env: dict[str, str]) -> None:
    """The table has a row per day and a Total row with the cost."""
    result = invoke(cli_env, "report")
    assert result.exit_code == 0
    assert "Daily usage (UTC)" in result.stdout
    assert "2025-09-15" in result.stdout
    assert "Total" in result.stdout
    assert "Cost (USD)" in result.stdout


@pytest.mark.parametrize("kind", ["weekly", "monthly", "session", "models", "projects"])
def test_every_report_kind_runs(cli_env: dict[str, str], kind: str) -> None:
    """Each kind prints a table, and JSON with the same totals as daily."""
    daily = orjson.loads(invoke(cli_env, "report", "daily", "--json").stdout)
    assert invoke(cli_env, "report", kind, "--no-scan").exit_code == 0
    other = orjson.loads(invoke(cli_env, "report", kind, "--json", "--no-scan").stdout)
    assert other["totals"] == daily["totals"]


def test_no_scan_reports_what_the_ledger_has(cli_env: dict[str, str]) -> None:
    """With --no-scan an empty ledger stays empty."""
    report = orjson.loads(invoke(cli_env, "report", "--json", "--no-scan").stdout)
    assert report["days"] == []


@pytest.mark.parametrize(
    "args",
    [
        ("report", "--timezone", "Mars/Base"),
        ("report", "--since", "2025-09-16", "--until", "2025-09-15"),
        ("scan", "--timezone", "Nowhere/Town"),
    ],
)
def test_bad_options_exit_2_with_a_message(cli_env: dict[str, str], args: tuple[str, ...]) -> None:
    """An unknown zone or a reversed range is a usage error."""
    result = invoke(cli_env, *args)
    assert result.exit_code == 2
    assert "error" in result.stderr


def test_scan_timezone_moves_the_days(cli_env: dict[str, str]) -> None:
    """`scan --timezone` changes the ledger's zone; reports then use it."""
    invoke(cli_env, "scan", "--timezone", "Asia/Tokyo")
    report = orjson.loads(invoke(cli_env, "report", "--json", "--no-scan").stdout)
    assert report["timezone"] == "Asia/Tokyo"
    status = orjson.loads(invoke(cli_env, "status", "--json").stdout)
    assert status["time_zone"] == "Asia/Tokyo"


def test_login_writes_a_private_file(cli_env: dict[str, str]) -> None:
    """`login` saves login.json with mode 600."""
    result = invoke(cli_env, "login", "--server", "https://ledger.example", "--token", "ul_dev_x")
    assert result.exit_code == 0
    path = Path(cli_env["USAGELEDGER_HOME"]) / "login.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_login_asks_for_the_token_when_it_is_left_out(cli_env: dict[str, str]) -> None:
    """Without --token the token is read from a hidden prompt."""
    result = invoke(cli_env, "login", "--server", "https://ledger.example", input="ul_dev_y\n")
    assert result.exit_code == 0
    saved = orjson.loads((Path(cli_env["USAGELEDGER_HOME"]) / "login.json").read_bytes())
    assert saved["token"] == "ul_dev_y"


def test_login_refuses_a_read_token(cli_env: dict[str, str]) -> None:
    """A read token cannot push: exit 2 with the reason."""
    result = invoke(cli_env, "login", "--server", "https://x.example", "--token", "ul_read_x")
    assert result.exit_code == 2
    assert "read token" in result.stderr


def test_push_without_login_says_how_to_log_in(cli_env: dict[str, str]) -> None:
    """Exit 2 and the login command."""
    result = invoke(cli_env, "push")
    assert result.exit_code == 2
    assert "usageledger login" in result.stderr


def test_login_and_push_to_a_real_server(cli_env: dict[str, str], live_server: LiveServer) -> None:
    """Scan, push, push again: the first uploads every bucket, the second nothing."""
    invoke(cli_env, "login", "--server", live_server.url, "--token", live_server.token)
    first = orjson.loads(invoke(cli_env, "push", "--json").stdout)
    assert first["buckets"] > 0
    assert first["inserted"] == first["buckets"]
    again = invoke(cli_env, "push")
    assert "nothing to push" in again.stdout
    status = orjson.loads(invoke(cli_env, "status", "--json").stdout)
    assert status["pending_buckets"] == 0
    assert status["last_push"] is not None


def test_push_stops_on_a_refused_token_naming_the_code(
    cli_env: dict[str, str], live_server: LiveServer
) -> None:
    """A revoked or wrong token stops the push with UNAUTHENTICATED and exit 1."""
    invoke(cli_env, "login", "--server", live_server.url, "--token", "ul_dev_wrong")
    result = invoke(cli_env, "push")
    assert result.exit_code == 1
    assert "401 UNAUTHENTICATED" in result.stderr


def test_status_prints_the_ledger_and_sources(cli_env: dict[str, str]) -> None:
    """`status` shows the ledger path, last scan, pending buckets and a table of sources."""
    invoke(cli_env, "scan")
    result = invoke(cli_env, "status")
    assert result.exit_code == 0
    assert "ledger.db" in result.stdout
    assert "last scan" in result.stdout
    assert "pending" in result.stdout
    assert "opencode" in result.stdout


def test_every_tracker_command_and_option_is_documented() -> None:
    """docs/tracker.md names each command and each of its options."""
    text = DOCS.read_text(encoding="utf-8")
    for command in commands:
        assert f"usageledger {command.name}" in text, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    assert opt in text, f"{command.name} {opt}"


def test_every_help_has_an_example() -> None:
    """Each command's help shows an example invocation."""
    for command in commands:
        assert command.help is not None
        assert f"usageledger {command.name}" in command.help


def test_an_unusable_ledger_location_is_a_clear_error(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """USAGELEDGER_HOME naming a file, not a directory: exit 1 with a message, no traceback."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = invoke({**cli_env, "USAGELEDGER_HOME": str(blocker)}, "report")
    assert result.exit_code == 1
    assert "cannot open the ledger" in result.stderr
