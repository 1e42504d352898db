"""The admin CLI: db upgrade, users and tokens, on both engines."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from usageledger.cli import main
from usageledger.ledger.accounts import authenticate
from usageledger.store.tables import api_tokens, devices


@pytest.fixture
def cli(db_url: str, tmp_path: object) -> CliRunner:
    """A runner whose environment points at the test database."""
    return CliRunner(
        env={
            "USAGELEDGER_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
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
    """A taken name or an unknown time zone is a clear error with exit status 1."""
    assert cli.invoke(main, ["users", "create", "alice", "--tz", "Europe/Berlin"]).exit_code == 0
    again = cli.invoke(main, ["users", "create", "alice"])
    assert again.exit_code == 1
    assert "already exists" in again.output
    bad = cli.invoke(main, ["users", "create", "bob", "--tz", "Mars/Olympus"])
    assert bad.exit_code == 1
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
    assert both.exit_code == 1


def test_a_device_token_needs_a_device_and_a_known_user(cli: CliRunner) -> None:
    """Missing --device or an unknown user are errors."""
    cli.invoke(main, ["users", "create", "alice"])
    assert cli.invoke(main, ["tokens", "issue", "--user", "alice"]).exit_code == 1
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
