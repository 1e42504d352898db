"""Start-up is a feature: which libraries each quick command loads, in a fresh interpreter.

``--help``, ``--version`` and the tracker's commands must not load the server's libraries
(the ORM, the migration tooling, the settings validators, the web framework, the PostgreSQL
driver) unless the local ledger needs a migration. Each command runs in its own interpreter
against a migrated ledger and the sample logs; the probe writes the modules it ended with.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import pytest

from tests.tracker.conftest import SAMPLES, logs_env
from usageledger.cli.root import COMMANDS, SUMMARIES, main
from usageledger.store.engine import make_engine
from usageledger.store.migrate import head_revision, upgrade

HEAVY = (
    "sqlalchemy",
    "alembic",
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
)
PROBE = """
import json, sys
from usageledger.cli.root import main
code = 0
try:
    main(sys.argv[2:], prog_name="usageledger")
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""
#: In this order: login and push before anything is pending (push then sends nothing).
TRACKER_RUNS: list[tuple[str, ...]] = [
    ("--help",),
    ("--version",),
    ("scan", "--help"),
    ("login", "--server", "http://127.0.0.1:9", "--token", "ul_dev_startup"),
    ("push", "--no-scan"),
    ("status",),
    ("scan",),
    ("scan", "--json"),
    ("report",),
    ("report", "daily", "--json"),
    ("report", "weekly", "--no-scan"),
    ("report", "monthly", "--no-scan", "--json"),
    ("report", "session", "--no-scan"),
    ("report", "models", "--no-scan"),
    ("report", "projects", "--no-scan"),
    ("report", "daily", "--timezone", "Asia/Tokyo", "--json"),
    ("scan", "--timezone", "Europe/Berlin"),
    ("status", "--json"),
    ("report", "hourly", "--since", "7d", "--no-scan", "--csv"),
    ("report", "weekly", "--since", "last-month", "--start-of-week", "sunday", "--breakdown"),
    ("config", "set", "report.breakdown", "true"),
    ("config", "show"),
    ("config", "get", "report.breakdown"),
    ("config", "path"),
    ("config", "unset", "report.breakdown"),
    ("init", "--yes", "--no-timer"),
    ("hook", "--wait", "claude"),
    ("blocks",),
    ("blocks", "--json", "--active", "--token-limit", "max", "--no-scan"),
    ("limits",),
    ("limits", "--json", "--history", "3", "--no-scan"),
    ("statusline", "--segments", "model,session,today,block,burn,context,limits"),
]
#: What a command reads on stdin (others read nothing): Claude Code's status-line input for
#: the sample session, ``{logs}`` standing for the copy of the sample logs.
STDIN = {
    "statusline": json.dumps(
        {
            "session_id": "11111111-aaaa-4aaa-8aaa-111111111111",
            "transcript_path": "{logs}/claude/projects/-home-alice-proj-b/"
            "11111111-aaaa-4aaa-8aaa-111111111111.jsonl",
            "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
            "rate_limits": {"five_hour": {"used_percentage": 12.5, "resets_at": 1790003600}},
        }
    )
}


def run(env: dict[str, str], tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run ``usageledger ARGS`` in a fresh interpreter; its exit code and loaded modules."""
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        env=env,
        input=STDIN.get(args[0], "").replace("{logs}", env.get("UL_TEST_LOGS", "")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(report.read_text())
    assert result["code"] in (0, None), (args, done.stdout, done.stderr)
    return result


def heavy(modules: list[str]) -> list[str]:
    """The top-level heavy libraries among ``modules``."""
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user with the sample logs, an empty home and a data directory in temp."""
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLES, logs)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGELEDGER")}
    return {
        **env,
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "COLUMNS": "120",
        "UL_TEST_LOGS": str(logs),
        **logs_env(logs),
    }


def make_ledger(env: dict[str, str], revision: str = "head") -> Path:
    """The ledger file of ``env`` created at ``revision`` through the Alembic history."""
    path = Path(env["USAGELEDGER_HOME"]) / "ledger.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()
    return path


def stored_revision(path: Path) -> str:
    """The revision in the file's ``alembic_version``."""
    with closing(sqlite3.connect(path)) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(revision)


def test_help_version_and_every_tracker_command_load_no_heavy_library(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """On a migrated ledger, none of SQLAlchemy, Alembic, pydantic, FastAPI, … is imported."""
    make_ledger(user_env)
    loaded = {args: heavy(run(user_env, tmp_path, *args)["modules"]) for args in TRACKER_RUNS}
    assert loaded == {args: [] for args in TRACKER_RUNS}


def test_the_probe_sees_a_heavy_library_when_a_command_loads_one(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """A server command's module loads SQLAlchemy and pydantic: the probe is not blind."""
    assert {"pydantic", "sqlalchemy"} <= set(
        heavy(run(user_env, tmp_path, "replay", "--help")["modules"])
    )


@pytest.mark.parametrize("revision", [None, "0001", "0002"])
def test_a_ledger_that_needs_a_migration_is_migrated_and_then_works(
    user_env: dict[str, str], tmp_path: Path, revision: str | None
) -> None:
    """A new or older file is brought to the head by Alembic; the next command needs none."""
    path = Path(user_env["USAGELEDGER_HOME"]) / "ledger.db"
    if revision is not None:
        make_ledger(user_env, revision)
    first = run(user_env, tmp_path, "scan", "--json")
    assert "alembic" in heavy(first["modules"])
    assert stored_revision(path) == head_revision()
    again = run(user_env, tmp_path, "report", "daily", "--json")
    assert heavy(again["modules"]) == []
    done = subprocess.run(
        [sys.executable, "-m", "usageledger", "report", "--json", "--no-scan"],
        env=user_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["totals"]["total_tokens"] > 0


def test_the_help_summaries_are_the_commands_own() -> None:
    """`usageledger --help` lists each command from SUMMARIES; each is its real short help."""
    ctx = click.Context(main)
    assert set(SUMMARIES) == set(COMMANDS)
    for name, summary in SUMMARIES.items():
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=500) == summary, name


def test_a_ledger_from_a_newer_usageledger_is_one_error_line(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """A revision this usageledger does not know: exit 1 and one line, no traceback."""
    path = make_ledger(user_env)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    done = subprocess.run(
        [sys.executable, "-m", "usageledger", "status"],
        env=user_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "cannot migrate the ledger" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_json_report_and_the_status_line_never_load_rich(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """rich draws tables and bars; a report written as JSON or CSV draws neither, so it never
    pays for importing rich (~35 ms), and neither does the status line."""
    make_ledger(user_env)
    run(user_env, tmp_path, "scan")  # the cold scan is done: the reports below read nothing new
    for args in (("report", "daily", "--json"), ("report", "daily", "--csv"), ("statusline",)):
        modules = run(user_env, tmp_path, *args)["modules"]
        assert not [m for m in modules if m.split(".")[0] == "rich"], args
    drawn = run(user_env, tmp_path, "report", "daily")["modules"]
    assert "rich" in drawn  # the table does load it: the check is not blind
