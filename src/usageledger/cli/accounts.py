"""Account commands: ``users`` (create, list) and ``tokens`` (issue, list, revoke)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from usageledger.cli.env import Env, database, now_ms, pass_env
from usageledger.cli.errors import run, usage
from usageledger.ledger import accounts

out = Console()


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@click.group()
def users() -> None:
    """Create and list users.

    \b
    Example:
      usageledger users create alice --tz Europe/Berlin
    """


@users.command("create")
@click.argument("name")
@click.option("--tz", "time_zone", default=None, help="IANA time zone (default: UTC).")
@pass_env
def users_create(env: Env, name: str, time_zone: str | None) -> None:
    """Create a user NAME whose days are local days in --tz.

    \b
    Example:
      usageledger users create alice --tz Europe/Berlin
    """
    database_ = database(env)
    zone = time_zone or env.settings.default_time_zone
    run(
        lambda: database_.write(
            lambda c: accounts.create_user(c, name, time_zone=zone, now_ms=now_ms())
        )
    )
    out.print(f"created user {name} ({zone})")


@users.command("list")
@pass_env
def users_list(env: Env) -> None:
    """List users.

    \b
    Example:
      usageledger users list
    """
    rows = database(env).read(accounts.list_users)
    table = Table("name", "time zone", "display name", "leaderboard", "created")
    for row in rows:
        table.add_row(
            row["name"],
            row["time_zone"],
            row["display_name"] or "",
            "yes" if row["leaderboard_opt_in"] else "no",
            _when(row["created_at_ms"]),
        )
    out.print(table)


@click.group()
def tokens() -> None:
    """Issue, list and revoke API tokens.

    \b
    Example:
      usageledger tokens issue --user alice --device laptop
    """


@tokens.command("issue")
@click.option("--user", "user_name", required=True, help="The user the token belongs to.")
@click.option("--device", "device_name", default=None, help="Device name (device tokens).")
@click.option("--kind", type=click.Choice(["device", "read"]), default="device", show_default=True)
@pass_env
def tokens_issue(env: Env, user_name: str, device_name: str | None, kind: str) -> None:
    """Issue a token and print its secret once (it is stored only as a SHA-256).

    A device name that exists is reused, so a reinstall continues the same history.

    \b
    Examples:
      usageledger tokens issue --user alice --device laptop
      usageledger tokens issue --user alice --kind read
    """
    # The command line's own shape is checked before the database is opened.
    if kind == "device" and not device_name:
        usage("a device token needs --device NAME")
    if kind == "read" and device_name:
        usage("a read token belongs to the user, not to a device: leave out --device")
    database_ = database(env)
    secret, token_id = run(
        lambda: database_.write(
            lambda c: accounts.issue_token(
                c, user_name, kind=kind, device_name=device_name, now_ms=now_ms()
            )
        )
    )
    click.echo(secret)
    Console(stderr=True).print(
        f"token {token_id} ({kind}) for {user_name}"
        + (f" on {device_name}" if device_name else "")
        + ": store the secret above now, it is not shown again"
    )


@tokens.command("list")
@click.option("--user", "user_name", default=None, help="Only this user's tokens.")
@pass_env
def tokens_list(env: Env, user_name: str | None) -> None:
    """List tokens (id, prefix, kind, user, device, created, revoked); never secrets.

    \b
    Example:
      usageledger tokens list --user alice
    """
    rows = database(env).read(lambda c: accounts.list_tokens(c, user_name))
    table = Table("id", "prefix", "kind", "user", "device", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row["token_id"]),
            row["display_prefix"] + "…",
            row["kind"],
            row["user"],
            row["device"] or "",
            _when(row["created_at_ms"]),
            _when(row["revoked_at_ms"]),
        )
    out.print(table)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@pass_env
def tokens_revoke(env: Env, token_id: int) -> None:
    """Revoke token TOKEN_ID at once (see `tokens list` for ids).

    \b
    Example:
      usageledger tokens revoke 3
    """
    database_ = database(env)
    run(lambda: database_.write(lambda c: accounts.revoke_token(c, token_id, now_ms=now_ms())))
    out.print(f"revoked token {token_id}")


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [users, tokens]
