"""Admin commands: ``db``, ``users`` and ``tokens``."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from usageledger.cli import Env, console, fail, now_ms, pass_env, run
from usageledger.ledger import accounts
from usageledger.store.engine import Database
from usageledger.store.migrate import current_revision, head_revision, upgrade

out = Console()


def database(env: Env) -> Database:
    """The configured database, which must exist at the newest schema (exit 2 otherwise,
    creating nothing); disposed when the command ends."""
    return env.existing_database()


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@click.group()
def db() -> None:
    """Database schema commands.

    \b
    Example:
      USAGELEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1/ledger usageledger db upgrade
    """


@db.command("upgrade")
@click.option(
    "--hash-partitions",
    type=int,
    default=None,
    metavar="N",
    help="Empty PostgreSQL only: create every per-user table PARTITION BY HASH (user_id) in N "
    "partitions (docs/scaling.md).",
)
@pass_env
def db_upgrade(env: Env, hash_partitions: int | None) -> None:
    """Migrate the database to the newest schema (safe to run again).

    \b
    Example:
      usageledger db upgrade
      usageledger db upgrade --hash-partitions 16    # a new PostgreSQL database
    """
    engine = env.database.engine
    before = current_revision(engine)
    if hash_partitions is not None:
        from usageledger.store.partitioned import LayoutError, create_hash_partitioned

        try:
            create_hash_partitioned(engine, hash_partitions)
        except LayoutError as exc:
            fail(str(exc))
        out.print(
            f"database at revision {head_revision()} (was empty), every per-user table in "
            f"{hash_partitions} hash partitions by user_id"
        )
        return
    upgrade(engine)
    out.print(f"database at revision {head_revision()} (was {before or 'empty'})")


@db.command("distribute")
@click.option("--dry-run", is_flag=True, help="Print the Citus calls instead of running them.")
@pass_env
def db_distribute(env: Env, dry_run: bool) -> None:
    """Place every table on a Citus cluster: reference tables, then the per-user tables
    distributed by user_id and co-located (docs/scaling.md). Safe to run again.

    Needs PostgreSQL with the citus extension (exit 2 otherwise); --dry-run prints the calls
    on any PostgreSQL database, to review them before a cluster exists.

    \b
    Example:
      usageledger db distribute --dry-run
      usageledger db distribute
    """
    from usageledger.store import placement

    engine = env.existing_database().engine
    if engine.dialect.name != "postgresql":
        fail(
            "db distribute places tables on Citus, a PostgreSQL extension; this database is "
            f"{engine.dialect.name}. Move to PostgreSQL first (docs/operations.md)"
        )
    with engine.connect() as conn:
        version = placement.citus_version(conn)
        shapes = placement.reflect_shapes(conn)
        placed = placement.placed_tables(conn) if version is not None else set()
    problems = placement.check_placement(shapes, require_all=False)
    if problems:
        fail(
            "the schema does not fit the Citus placement:\n"
            + "\n".join(placement.describe(problems))
        )
    calls = placement.distribution_calls(shapes)
    if dry_run:
        for table, sql in calls:
            click.echo(sql + ("  -- placed already" if table in placed else ""))
        if version is None:
            console().print(
                "note: this database has no citus extension; `CREATE EXTENSION citus` and add "
                "the workers before running without --dry-run (docs/scaling.md)",
                highlight=False,
            )
        return
    if version is None:
        fail(
            "this database has no citus extension, so there is nothing to distribute over: "
            "one PostgreSQL needs no `db distribute`. For a cluster, install Citus, "
            "`CREATE EXTENSION citus` and add the workers, then run this again "
            "(see --dry-run and docs/scaling.md)"
        )
    try:
        done = placement.run_calls(engine, calls, placed=placed, echo=click.echo)
    except placement.CallFailed as exc:
        fail(f"{exc}; the tables before it are placed, run the command again after fixing it", 1)
    out.print(
        f"citus {version}: placed {len(done)} table(s), {len(placed)} were placed already; "
        "rebalance the shards with `SELECT citus_rebalance_start();`",
        highlight=False,
    )


@db.command("current")
@pass_env
def db_current(env: Env) -> None:
    """Print the schema revision of the database and the newest one.

    \b
    Example:
      usageledger db current
    """
    engine = env.existing_database(migrated=False).engine
    out.print(f"current: {current_revision(engine) or 'empty'}  head: {head_revision()}")


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
