"""Database commands: ``db upgrade``, ``db distribute``, ``db current`` and ``db copy``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from usageledger.cli.env import Env, pass_env
from usageledger.cli.errors import fail, run, usage
from usageledger.cli.jobs import OFFLINE_TIMEOUT_MS, job_log, progress
from usageledger.ops.copy import DEFAULT_BATCH, copy_database, database_url
from usageledger.store.engine import make_engine
from usageledger.store.migrate import current_revision, head_revision, upgrade

out = Console()
err = Console(stderr=True)


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
            usage(str(exc))
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
        usage(
            "db distribute places tables on Citus, a PostgreSQL extension; this database is "
            f"{engine.dialect.name}. Move to PostgreSQL first (docs/operations.md)"
        )
    with engine.connect() as conn:
        version = placement.citus_version(conn)
        shapes = placement.reflect_shapes(conn)
        placed = placement.placed_tables(conn) if version is not None else set()
    problems = placement.check_placement(shapes, require_all=False)
    if problems:
        usage(
            "the schema does not fit the Citus placement:\n"
            + "\n".join(placement.describe(problems))
        )
    calls = placement.distribution_calls(shapes)
    if dry_run:
        for table, sql in calls:
            click.echo(sql + ("  -- placed already" if table in placed else ""))
        if version is None:
            err.print(
                "note: this database has no citus extension; `CREATE EXTENSION citus` and add "
                "the workers before running without --dry-run (docs/scaling.md)",
                highlight=False,
            )
        return
    if version is None:
        usage(
            "this database has no citus extension, so there is nothing to distribute over: "
            "one PostgreSQL needs no `db distribute`. For a cluster, install Citus, "
            "`CREATE EXTENSION citus` and add the workers, then run this again "
            "(see --dry-run and docs/scaling.md)"
        )
    try:
        done = placement.run_calls(engine, calls, placed=placed, echo=click.echo)
    except placement.CallFailed as exc:
        fail(f"{exc}; the tables before it are placed, run the command again after fixing it")
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


@db.command("copy")
@click.option("--to", "target_url", required=True, help="The empty target database URL.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 50_000),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Rows per batch.",
)
@pass_env
def db_copy_command(env: Env, target_url: str, batch_size: int) -> None:
    """Copy the whole ledger to an empty database at --to, then verify it table by table.

    The target is migrated to the newest schema first; a target with any ledger rows is
    refused. Stop the server during a move (rows written after the copy starts are not
    copied). Prints each table's rows and checksum; exits 1 unless all match.

    \b
    Example:
      usageledger db copy --to postgresql://ledger@127.0.0.1:5432/ledger
    """
    url = run(lambda: database_url(target_url))
    env.existing_database()  # the source must be a migrated ledger; never create it
    source = make_engine(
        env.settings.resolved_database_url, statement_timeout_ms=OFFLINE_TIMEOUT_MS
    )
    target = make_engine(url, statement_timeout_ms=OFFLINE_TIMEOUT_MS)
    try:
        with job_log(env) as logger, progress("table") as bar:
            report = run(
                lambda: copy_database(
                    source, target, batch_size=batch_size, evidence=logger, progress=bar
                )
            )
    finally:
        source.dispose()
        target.dispose()
    table = Table("table", "rows", "target rows", "checksum", "match")
    for copied in report.tables:
        table.add_row(
            copied.name,
            str(copied.rows),
            str(copied.target_rows),
            copied.checksum[:16],
            "yes" if copied.ok else "NO",
        )
    out.print(table)
    if not report.ok:
        fail("the copy does not match the source; drop the target")
    click.echo(f"copied {sum(t.rows for t in report.tables)} rows; every table matches")


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [db]
