"""Commands of the read side: ``pricing load`` and ``leaderboard refresh``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from usageledger.cli import Env, console, now_ms, pass_env, run
from usageledger.cli_admin import database
from usageledger.ledger import leaderboard
from usageledger.ledger.prices_store import LoadResult, PriceBooks, load_prices
from usageledger.ledger.pricing import PriceBook, PricingError
from usageledger.m1 import M1Logger, job


@click.group("pricing")
def pricing_group() -> None:
    """Prices of the server: the shipped table plus the ones you load.

    \b
    Example:
      usageledger pricing load my-prices.json
    """


@pricing_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_env
def pricing_load(env: Env, file: Path) -> None:
    """Validate FILE as a whole, then upsert its prices by (model, effective_from).

    Nothing is written if any entry is invalid. Loading the same file again changes
    nothing. Costs are computed when read, so a loaded price applies to past days too.

    \b
    Example:
      usageledger pricing load my-prices.json
    """
    try:
        book = PriceBook.from_file(file)
    except PricingError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    db = database(env)
    shipped = PriceBooks().shipped
    logger = M1Logger(env.settings.log_file)

    def load() -> LoadResult:
        # The M1 line is written inside `run`, so a domain error is logged as what it is
        # before `run` turns it into exit status 1.
        with job(logger, "pricing_load") as evidence:
            loaded = db.write(lambda conn: load_prices(conn, book, shipped, now_ms=now_ms()))
            evidence.extra.update(added=loaded.added, updated=loaded.updated)
            return loaded

    try:
        result = run(load)
    except PricingError as exc:
        console.print(f"[red]error:[/red] {file}: {exc}")
        sys.exit(1)
    finally:
        db.engine.dispose()
        logger.close()
    click.echo(
        f"{file}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged"
    )


@click.group("leaderboard")
def leaderboard_group() -> None:
    """Leaderboard snapshots (week, month, all time) of users who opted in.

    \b
    Example:
      usageledger leaderboard refresh
    """


@leaderboard_group.command("refresh")
@click.option(
    "--at",
    "at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Build as of this UTC time instead of now (e.g. 2026-11-28T12:00:00).",
)
@pass_env
def leaderboard_refresh(env: Env, at: datetime | None) -> None:
    """Rebuild the week, month and all-time boards in one transaction.

    Weeks (Monday-Sunday) and months are UTC calendar periods containing the build time.
    Run it every few minutes to hourly (cron or a systemd timer); readers see the previous
    boards until the new ones commit.

    \b
    Example:
      usageledger leaderboard refresh
    """
    now = at.replace(tzinfo=UTC) if at is not None else datetime.now(UTC)
    db = database(env)
    book = PriceBooks()
    logger = M1Logger(env.settings.log_file)

    def refresh() -> dict[str, int]:
        with job(logger, "leaderboard_refresh") as evidence:
            built = db.write(lambda conn: leaderboard.refresh(conn, book.current(conn), now=now))
            evidence.extra.update(built)
            return built

    try:
        counted = run(refresh)
    finally:
        db.engine.dispose()
        logger.close()
    click.echo(", ".join(f"{period}: {n} entries" for period, n in counted.items()))


commands = [pricing_group, leaderboard_group]
