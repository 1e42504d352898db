"""The admin CLI: db upgrade, users and tokens, on both engines."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from bench.harness import create_database, drop_database, libpq_url, scratch_name
from usageledger.cli.root import main
from usageledger.ledger.accounts import authenticate
from usageledger.store.tables import api_tokens, devices


@pytest.fixture
def cli(db_url: str, tmp_path: object) -> CliRunner:
    """A runner whose environment points at the test database."""
    return CliRunner(
        env={
            "USAGELEDGER_DATABASE_URL": libpq_url(db_url),
            "USAGELEDGER_HOME": str(tmp_path),
            "USAGELEDGER_LOG_FILE": "off",
        }
    )


def test_db_upgrade_is_idempotent(cli: CliRunner) -> None:
    """`db upgrade` on a current database says so and succeeds."""
    result = cli.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output
    current = cli.invoke(main, ["db", "current"])
    assert "current: 0" in current.output


def test_users_create_rejects_a_duplicate_and_a_bad_zone(cli: CliRunner) -> None:
    """A taken name or an unknown time zone is a clear error with exit status 2 (the
    command's own input is refused)."""
    assert cli.invoke(main, ["users", "create", "alice", "--tz", "Europe/Berlin"]).exit_code == 0
    again = cli.invoke(main, ["users", "create", "alice"])
    assert again.exit_code == 2
    assert "already exists" in again.output
    bad = cli.invoke(main, ["users", "create", "bob", "--tz", "Mars/Olympus"])
    assert bad.exit_code == 2
    assert "unknown time zone" in bad.output
    listed = cli.invoke(main, ["users", "list"])
    assert "alice" in listed.output
    assert "bob" not in listed.output


def test_tokens_issue_prints_a_prefixed_secret_once_and_reuses_the_device(
    cli: CliRunner, engine: Engine
) -> None:
    """Issuing twice for one device name gives two tokens on the same device."""
    cli.invoke(main, ["users", "create", "alice"])
    first = cli.invoke(main, ["tokens", "issue", "--user", "alice", "--device", "laptop"])
    second = cli.invoke(main, ["tokens", "issue", "--user", "alice", "--device", "laptop"])
    assert first.exit_code == second.exit_code == 0
    secrets = [
        re.search(r"ul_dev_[A-Za-z0-9_-]+", r.stdout).group(0)  # type: ignore[union-attr]
        for r in (first, second)
    ]
    assert secrets[0] != secrets[1]
    with engine.connect() as conn:
        assert conn.execute(select(devices)).all().__len__() == 1
        principals = [authenticate(conn, s) for s in secrets]
    assert all(p is not None and p.device_id == 1 for p in principals)
    listed = cli.invoke(main, ["tokens", "list", "--user", "alice"])
    assert secrets[0] not in listed.output
    assert "ul_dev_" in listed.output


def test_a_read_token_has_no_device(cli: CliRunner, engine: Engine) -> None:
    """`--kind read` issues a ul_read_ token bound to the user only."""
    cli.invoke(main, ["users", "create", "alice"])
    result = cli.invoke(main, ["tokens", "issue", "--user", "alice", "--kind", "read"])
    assert result.stdout.startswith("ul_read_")
    with engine.connect() as conn:
        principal = authenticate(conn, result.stdout.strip())
    assert principal is not None
    assert principal.kind == "read"
    assert principal.device_id is None
    both = cli.invoke(
        main, ["tokens", "issue", "--user", "alice", "--kind", "read", "--device", "x"]
    )
    assert both.exit_code == 2


def test_a_device_token_needs_a_device_and_a_known_user(cli: CliRunner) -> None:
    """Missing --device is a usage error (2); an unknown user is not there (1)."""
    cli.invoke(main, ["users", "create", "alice"])
    assert cli.invoke(main, ["tokens", "issue", "--user", "alice"]).exit_code == 2
    unknown = cli.invoke(main, ["tokens", "issue", "--user", "zed", "--device", "d"])
    assert unknown.exit_code == 1
    assert "no user named" in unknown.output


def test_tokens_revoke_takes_effect_at_once(cli: CliRunner, engine: Engine) -> None:
    """A revoked token no longer authenticates; revoking an unknown id fails."""
    cli.invoke(main, ["users", "create", "alice"])
    secret = cli.invoke(
        main, ["tokens", "issue", "--user", "alice", "--device", "d"]
    ).stdout.strip()
    with engine.connect() as conn:
        token_id = conn.execute(select(api_tokens.c.token_id)).scalar_one()
    assert cli.invoke(main, ["tokens", "revoke", str(token_id)]).exit_code == 0
    with engine.connect() as conn:
        assert authenticate(conn, secret) is None
    assert cli.invoke(main, ["tokens", "revoke", "999"]).exit_code == 1


def test_a_bad_setting_stops_the_command_with_its_name(tmp_path: object) -> None:
    """An invalid environment value exits 2 naming the variable."""
    runner = CliRunner(env={"USAGELEDGER_MAX_BUCKETS": "lots", "USAGELEDGER_HOME": str(tmp_path)})
    result = runner.invoke(main, ["users", "list"])
    assert result.exit_code == 2
    assert "USAGELEDGER_MAX_BUCKETS" in result.output


#: Commands that need a ledger that is there; each must refuse a missing or empty one.
NEEDS_A_LEDGER = [
    ["users", "list"],
    ["users", "create", "carol"],
    ["tokens", "list"],
    ["tokens", "revoke", "1"],
    ["verify"],
    ["replay"],
    ["plans", "list"],
    ["retention", "run", "--dry-run"],
    ["leaderboard", "refresh"],
    ["db", "current"],
]


def sqlite_cli(path: Path, tmp_path: Path) -> CliRunner:
    """A runner pointed at the SQLite file ``path``."""
    return CliRunner(
        env={
            "USAGELEDGER_DATABASE_URL": f"sqlite:///{path}",
            "USAGELEDGER_HOME": str(tmp_path),
            "USAGELEDGER_LOG_FILE": "off",
        }
    )


def assert_one_line_exit_2(result: Result, *words: str) -> None:
    """Exit status 2 with one error line naming ``words``, and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("args", NEEDS_A_LEDGER, ids=" ".join)
def test_a_command_on_a_missing_sqlite_file_says_so_and_creates_nothing(
    args: list[str], tmp_path: Path
) -> None:
    """One line naming the file and `db upgrade`, exit status 2, and no file (or folder)."""
    path = tmp_path / "data" / "server.db"
    result = sqlite_cli(path, tmp_path).invoke(main, args)
    assert_one_line_exit_2(result, str(path), "db upgrade")
    assert not path.parent.exists()


@pytest.mark.parametrize(
    "args", [a for a in NEEDS_A_LEDGER if a != ["db", "current"]], ids=" ".join
)
def test_a_command_on_an_unmigrated_sqlite_file_says_to_upgrade(
    args: list[str], tmp_path: Path
) -> None:
    """A file with no schema (or an old one) is refused with a pointer to `db upgrade`."""
    path = tmp_path / "server.db"
    sqlite3.connect(path).close()
    result = sqlite_cli(path, tmp_path).invoke(main, args)
    assert_one_line_exit_2(result, "db upgrade")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_db_current_reports_an_empty_file_and_db_upgrade_creates_a_missing_one(
    tmp_path: Path,
) -> None:
    """The commands meant to look at or make a ledger still do: `db current` on an empty file
    says `empty`, `db upgrade` creates and migrates a missing file."""
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    current = sqlite_cli(empty, tmp_path).invoke(main, ["db", "current"])
    assert current.exit_code == 0
    assert "current: empty" in current.output
    fresh = tmp_path / "new" / "server.db"
    runner = sqlite_cli(fresh, tmp_path)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["users", "list"]).exit_code == 0


def test_db_copy_from_a_missing_source_creates_nothing(tmp_path: Path) -> None:
    """`db copy` refuses a missing source before it touches either side."""
    source, target = tmp_path / "server.db", tmp_path / "target.db"
    result = sqlite_cli(source, tmp_path).invoke(
        main, ["db", "copy", "--to", f"sqlite:///{target}"]
    )
    assert_one_line_exit_2(result, "no database")
    assert not source.exists()
    assert not target.exists()


@pytest.mark.postgres
def test_a_command_on_a_missing_or_unmigrated_postgresql_database_is_one_line(
    pg_server_url: str, tmp_path: Path
) -> None:
    """A database that does not exist, or has no schema, is one error line and exit 2."""
    base = libpq_url(pg_server_url.rsplit("/", 1)[0])
    name = scratch_name("ul_cli")

    def runner(database: str) -> CliRunner:
        return CliRunner(
            env={
                "USAGELEDGER_DATABASE_URL": f"{base}/{database}",
                "USAGELEDGER_HOME": str(tmp_path),
                "USAGELEDGER_LOG_FILE": "off",
            }
        )

    missing = runner(name).invoke(main, ["users", "list"])
    assert_one_line_exit_2(missing, "cannot open the database", name)
    create_database(name)
    try:
        for args in (["users", "list"], ["verify"], ["tokens", "list"]):
            assert_one_line_exit_2(runner(name).invoke(main, args), "no schema", "db upgrade")
    finally:
        drop_database(name)
