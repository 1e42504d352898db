"""The tracker's commands: ``scan``, ``report``, ``login``, ``push`` and ``status``.

Thin: each parses its options, opens the local ledger under ``USAGELEDGER_HOME`` and calls
one function of ``usageledger.tracker``. The assistants' logs are found through their own
variables (``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``GEMINI_DATA_DIR``, ``OPENCODE_DATA_DIR``, …)
and the home directory, as docs/tracker.md lists.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from usageledger.cli.errors import fail, usage
from usageledger.errors import LedgerError
from usageledger.settings_rules import SettingsError, check_time_zone
from usageledger.sources import PARSERS
from usageledger.tracker import render
from usageledger.tracker.ledger import LocalLedger, open_ledger
from usageledger.tracker.login import LoginError, load_login, save_login
from usageledger.tracker.report import COST_MODES, DEFAULT_COST_MODE, KINDS
from usageledger.tracker.scan import ScanSummary
from usageledger.tracker.scan import scan as scan_logs
from usageledger.tracker.settings import TrackerSettings, load_tracker_settings

if TYPE_CHECKING:
    from rich.console import Console

# ``push`` (httpx), ``status`` and the report's price book load inside their commands, so
# ``scan`` — the command a shell prompt or a cron job runs — starts without them. None of
# these commands loads pydantic, SQLAlchemy or Alembic (``tests/test_startup.py``): the
# settings are read by ``tracker.settings``, the ledger is spoken to with ``sqlite3``, and
# only a ledger that needs a migration loads the migration machinery.


@cache
def out() -> Console:
    """Standard output's console, made on first use (rich costs ~35 ms to import, and a
    ``--json`` or ``--csv`` report never draws)."""
    from rich.console import Console

    return Console(soft_wrap=True)


@cache
def err() -> Console:
    """Standard error's console, made on first use."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


SOURCE_CHOICE = click.Choice(sorted(PARSERS))


def clock() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_time_zone(value)
    except ValueError as exc:
        usage(str(exc))
    return value


def _settings() -> TrackerSettings:
    """The tracker's settings from the environment (exit 2 naming a bad one)."""
    try:
        return load_tracker_settings()
    except SettingsError as exc:
        usage(str(exc))


@contextmanager
def opened(time_zone: str | None = None) -> Iterator[LocalLedger]:
    """The local ledger under ``USAGELEDGER_HOME``, closed afterwards.

    A database failure (the file locked past the busy timeout, a full disk) becomes a message
    and exit status 1; nothing half-written stays behind (every write is one transaction).
    """
    settings = _settings()
    home = settings.home
    env: dict[str, str] = dict(os.environ)
    if settings.time_zone and not env.get("USAGELEDGER_DEFAULT_TIME_ZONE"):
        env["USAGELEDGER_DEFAULT_TIME_ZONE"] = settings.time_zone  # a new ledger's zone
    try:
        ledger = open_ledger(home, now_ms=clock(), time_zone=_zone(time_zone), env=env)
    except (LedgerError, sqlite3.Error, OSError) as exc:
        fail(f"cannot open the ledger in {home}: {_reason(exc)}")
    try:
        yield ledger
    except (LedgerError, sqlite3.Error) as exc:
        fail(f"the ledger {ledger.path}: {_reason(exc)}")
    finally:
        ledger.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LedgerError):
        return exc.message
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def _note_problems(summary: ScanSummary) -> None:
    if summary.problems:
        err().print(
            f"[yellow]scan: {len(summary.problems)} line(s) or file(s) could not be read; "
            "`usageledger scan` lists them[/yellow]"
        )


def _run_scan(ledger: LocalLedger, sources: tuple[str, ...] = ()) -> ScanSummary:
    bar = render.ScanProgress(err)
    try:
        return scan_logs(
            ledger,
            env=os.environ,
            home=Path.home(),
            clock=clock,
            sources=sources or _settings().sources or None,
            progress=bar,
        )
    finally:
        bar.stop()


def _dump(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.command()
@click.option("--source", "sources", multiple=True, type=SOURCE_CHOICE, help="Only this source.")
@click.option(
    "--timezone",
    "time_zone",
    metavar="ZONE",
    help="Set the ledger's time zone (IANA name); rebuilds the daily rollups in it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def scan(sources: tuple[str, ...], time_zone: str | None, as_json: bool) -> None:
    """Read what is new in the assistants' logs into the local ledger.

    Only bytes added since the last scan are read; a replaced or truncated file is read
    again from its start without counting anything twice. Every line or file that could not
    be read is listed with the reason.

    \b
    Examples:
      usageledger scan
      usageledger scan --source claude --source codex
      usageledger scan --timezone Europe/Berlin
    """
    with opened(time_zone) as ledger:
        summary = _run_scan(ledger, sources)
    if as_json:
        _dump(summary.as_dict())
        return
    out().print(render.scan_table(summary))
    render.print_problems(out(), summary)


DAY_HELP = "YYYY-MM-DD, today, yesterday, 7d, 30d, this-week, last-week, this-month, last-month."


@click.command()
@click.argument("kind", type=click.Choice(KINDS), default="daily")
@click.option("--since", metavar="DAY", help=f"First day: {DAY_HELP}")
@click.option("--until", metavar="DAY", help=f"Last day: {DAY_HELP}")
@click.option("--timezone", "time_zone", metavar="ZONE", help="Days in this zone (IANA name).")
@click.option("--source", "sources", multiple=True, type=SOURCE_CHOICE, help="Only this source.")
@click.option("--id", "session_id", metavar="ID", help="session: only this session.")
@click.option(
    "--start-of-week",
    metavar="DAY",
    help="The day weeks start on (weekly, this-week, last-week); default monday.",
)
@click.option("--breakdown", is_flag=True, default=None, help="A row per model under each row.")
@click.option(
    "--cost",
    "cost_mode",
    type=click.Choice(COST_MODES),
    default=DEFAULT_COST_MODE,
    show_default=True,
    help="auto: the cost a log recorded, else priced from tokens; calculate: always priced; "
    "logged: only recorded costs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in docs/tracker.md).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one line per row).")
@click.option("--no-scan", is_flag=True, help="Report what the ledger has; do not scan first.")
def report(
    kind: str,
    since: str | None,
    until: str | None,
    time_zone: str | None,
    sources: tuple[str, ...],
    session_id: str | None,
    start_of_week: str | None,
    breakdown: bool | None,
    cost_mode: str,
    as_json: bool,
    as_csv: bool,
    no_scan: bool,
) -> None:
    """Usage and cost per day, week, month, session, model or project (scans first).

    KIND is daily (default), weekly, monthly, hourly (half-hours; today unless --since or
    --until), session, models or projects. Days are local days in the ledger's time zone
    unless --timezone says otherwise; shortcuts such as 7d or last-month count from today
    in that zone, and --since alone with a range (last-week) means that whole range.

    \b
    Examples:
      usageledger report
      usageledger report weekly --since 2025-09-01 --start-of-week sunday
      usageledger report daily --since last-month --breakdown
      usageledger report hourly --since yesterday
      usageledger report session --id 0199a1b2-… --breakdown
      usageledger report monthly --csv > usage.csv
      usageledger report daily --json --timezone America/New_York
      usageledger report monthly --cost calculate
    """
    if as_json and as_csv:
        usage("--json and --csv cannot be used together")
    if session_id is not None and kind != "session":
        usage("--id is for `usageledger report session`")
    from usageledger.tracker.report import week_day

    settings = _settings()
    try:
        first_weekday = week_day(start_of_week or settings.start_of_week)
    except ValueError as exc:
        usage(f"--start-of-week: {exc}")
    with opened() as ledger:
        if not no_scan:
            _note_problems(_run_scan(ledger))
        from usageledger.ledger.pricing import default_book
        from usageledger.tracker.report import ReportRequest, build_report

        zone = _zone(time_zone) or settings.time_zone or ledger.time_zone
        first, last = _days(since, until, zone, first_weekday, hourly=kind == "hourly")
        request = ReportRequest(
            kind=kind,
            time_zone=zone,
            since=first,
            until=last,
            sources=sources or settings.sources,
            session_id=session_id,
            start_of_week=first_weekday,
            cost=cost_mode,
        )
        book = settings.price_book(default_book())
        result = ledger.db.read(lambda conn: build_report(conn, ledger, request, book))
    if session_id is not None and not result["sessions"]:
        fail(f"no session {session_id!r} in the ledger (in that range and those sources)")
    shown = breakdown if breakdown is not None else settings.breakdown
    if as_json:
        _dump(result)
        return
    if as_csv:
        click.echo(render.report_csv(result, breakdown=shown, columns=settings.columns), nl=False)
        return
    table = render.report_table(
        result, width=out().width, breakdown=shown, columns=settings.columns
    )
    out().print(table)
    note = render.unpriced_note(result)
    if note:
        err().print(f"[yellow]{note}[/yellow]", highlight=False)


def _days(
    since: str | None, until: str | None, zone: str, start_of_week: int, *, hourly: bool
) -> tuple[date | None, date | None]:
    """``--since`` and ``--until`` as days (shortcuts counted from today in ``zone``).

    ``--since`` alone with a shortcut means its whole range (``--since last-week``); an
    hourly report with neither is today's.
    """
    from usageledger.buckets import local_day
    from usageledger.tracker.report import resolve_day

    today = local_day(clock() // 1000, check_time_zone(zone))
    if hourly and since is None and until is None:
        return today, today
    first = last = None
    try:
        if since is not None:
            first, end = resolve_day(since, today, start_of_week=start_of_week)
            if until is None and not _is_date(since):
                last = end
        if until is not None:
            _, last = resolve_day(until, today, start_of_week=start_of_week)
    except ValueError as exc:
        usage(f"--since/--until: {exc}")
    if first and last and first > last:
        usage("--since is after --until")
    return first, last


def _is_date(text: str) -> bool:
    """A calendar date (``2025-09-01``), not a shortcut (``last-month`` is ten characters too)."""
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


@click.command()
@click.option(
    "--server",
    metavar="URL",
    help="The server's base URL, e.g. https://ledger.example (default: the config's server).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    prompt="Device token",
    hide_input=True,
    help="This device's token (ul_dev_…); asked for when left out, so it stays out of history.",
)
def login(server: str | None, token: str) -> None:
    """Save the server and this device's token for `usageledger push` (file mode 600).

    Another server or token clears what the old one acknowledged, so the next push sends
    every bucket once.

    \b
    Examples:
      usageledger login --server https://ledger.example.com
      usageledger login --server http://127.0.0.1:8787 --token ul_dev_…
    """
    server = server or _settings().server
    if not server:
        usage("--server is required (or set `server` with `usageledger config set server URL`)")
    with opened() as ledger:
        try:
            cleared = save_login(ledger, server, token, now_ms=clock())
        except LoginError as exc:
            usage(str(exc))
        saved = load_login(ledger.home)
    assert saved is not None
    out().print(f"logged in to {saved.server}; the token is in {ledger.home / 'login.json'}")
    if cleared:
        out().print("another server or token: the next push sends every bucket once")


@click.command()
@click.option("--no-scan", is_flag=True, help="Push what the ledger has; do not scan first.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def push(no_scan: bool, as_json: bool) -> None:
    """Upload the half-hour buckets the server has not acknowledged (scans first).

    Batches of at most 500 buckets; retried with backoff on 429, 5xx and network errors;
    an interrupted push resumes where it stopped. Never uploads projects or sessions.

    \b
    Examples:
      usageledger push
      usageledger push --no-scan --json
    """
    from usageledger.tracker.push import PushError
    from usageledger.tracker.push import push as push_buckets

    with opened() as ledger:
        try:
            saved = load_login(ledger.home)
        except LoginError as exc:
            usage(str(exc))
        if saved is None:
            usage("not logged in; run `usageledger login --server URL` first")
        if not no_scan:
            _note_problems(_run_scan(ledger))
        try:
            summary = push_buckets(ledger, saved, clock=clock)
        except PushError as exc:
            fail(exc.message)
    if as_json:
        _dump(summary.as_dict())
        return
    outcomes = ", ".join(f"{v} {k}" for k, v in summary.outcomes.items())
    if summary.batches == 0:
        out().print(f"nothing to push to {summary.server}")
    else:
        out().print(
            f"pushed {summary.buckets} bucket(s) in {summary.batches} batch(es) to "
            f"{summary.server}: {outcomes}"
        )
    if summary.held_back:
        out().print(
            f"[yellow]{summary.held_back} bucket(s) held back: before 2020 or in the future[/]"
        )
    if summary.outcomes["stale"] or summary.outcomes["conflicts"]:
        out().print(
            "[yellow]the server kept newer values for some buckets (stale/conflicts): "
            "is another machine using this device token?[/yellow]"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """The ledger's path, last scan and push, pending buckets and per-source health.

    \b
    Examples:
      usageledger status
      usageledger status --json
    """
    from usageledger.tracker.hook import last_errors
    from usageledger.tracker.status import ledger_status

    with opened() as ledger:
        result = ledger_status(ledger, env=os.environ, home=Path.home())
        result["hook_errors"] = last_errors(ledger.home)
    if as_json:
        _dump(result)
        return
    out().print(f"ledger      {result['ledger']}", highlight=False)
    out().print(f"device      {result['device']} (time zone {result['time_zone']})")
    out().print(f"last scan   {result['last_scan'] or 'never'}")
    out().print(f"last push   {result['last_push'] or 'never'}")
    out().print(f"server      {result['server'] or 'not logged in'}", highlight=False)
    out().print(f"pending     {result['pending_buckets']:,} bucket(s)")
    out().print(render.status_table(result))
    for warning in result["warnings"]:
        out().print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for error in result["hook_errors"][-3:]:
        out().print(f"[red]hook error:[/red] {error['where']}: {error['message']}", highlight=False)


def _token_limit(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.strip().lower() == "max":
        return "max"
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        usage(f"--token-limit {value!r}: give a positive number of tokens or max")
    return limit


@click.command()
@click.option("--active", is_flag=True, help="Only the block now is in.")
@click.option("--recent", is_flag=True, help="Only the blocks of the last 3 days.")
@click.option(
    "--token-limit",
    metavar="N|max",
    help="Warn when a block's projection passes N tokens (max: the largest past block).",
)
@click.option("--source", "sources", multiple=True, type=SOURCE_CHOICE, help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in docs/tracker.md).")
@click.option("--no-scan", is_flag=True, help="Report what the ledger has; do not scan first.")
def blocks(
    active: bool,
    recent: bool,
    token_limit: str | None,
    sources: tuple[str, ...],
    as_json: bool,
    no_scan: bool,
) -> None:
    """Usage in 5-hour windows: tokens, cost, burn rate and projection (scans first).

    A block starts at its first event's hour (UTC, floored) and ends 5 hours later; the next
    event at or after its end starts the next block. docs/tracker.md says where this differs
    from ccusage.

    \b
    Examples:
      usageledger blocks --recent
      usageledger blocks --active --token-limit max
      usageledger blocks --json --source claude
    """
    from usageledger.ledger.pricing import default_book
    from usageledger.tracker.blocks import build_blocks

    limit = _token_limit(token_limit)
    with opened() as ledger:
        if not no_scan:
            _note_problems(_run_scan(ledger))
        now = clock()
        book = default_book()
        result = ledger.db.read(
            lambda conn: build_blocks(
                conn,
                ledger.user_id,
                book,
                ledger.tz,
                now_ms=now,
                active_only=active,
                recent=recent,
                token_limit=limit,
                sources=sources,
            )
        )
    if as_json:
        _dump(result)
        return
    out().print(_blocks_table(result))
    for block in result["blocks"]:
        if block.get("exceeds_token_limit") and block["active"]:
            projected = (block["projection"] or {}).get("total_tokens", block["total_tokens"])
            err().print(
                f"[yellow]warning:[/yellow] the active block is projected to reach "
                f"{projected:,} tokens, past the limit of {result['token_limit']:,}",
                highlight=False,
            )


def _blocks_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    limited = result["token_limit"] is not None
    table = Table(title=f"5-hour blocks ({result['timezone']})", title_justify="left")
    for name in ("Start", "Status", "Models", "Tokens", "Cost", "Burn /h", "Projected"):
        table.add_column(name, justify="right" if name not in ("Start", "Models") else "left")
    if limited:
        table.add_column("% of limit", justify="right")
    for b in result["blocks"]:
        left = b["remaining_minutes"]
        status = f"active, {left // 60}h {left % 60:02d}m left" if b["active"] else ""
        projected = b["projection"]
        row = [
            b["start"][:16].replace("T", " "),
            status,
            ", ".join(b["models"]),
            f"{b['total_tokens']:,}",
            f"${float(b['cost_usd']):,.2f}",
            f"${float(b['burn_rate']['cost_per_hour_usd']):,.2f}" if b["burn_rate"] else "-",
            (
                f"{projected['total_tokens']:,} / ${float(projected['cost_usd']):,.2f}"
                if projected
                else "-"
            ),
        ]
        if limited:
            percent = b.get("token_limit_percent")
            row.append(f"{percent}%" if percent is not None else "-")
        table.add_row(*row)
    return table


@click.command()
@click.option(
    "--history",
    default=0,
    type=click.IntRange(0, 100_000),
    metavar="N",
    help="Also list the N newest observations of each window.",
)
@click.option("--source", "sources", multiple=True, type=SOURCE_CHOICE, help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in docs/tracker.md).")
@click.option("--no-scan", is_flag=True, help="Show what the ledger has; do not scan first.")
def limits(history: int, sources: tuple[str, ...], as_json: bool, no_scan: bool) -> None:
    """The vendors' own rate-limit windows as the assistants recorded them (scans first).

    Codex records them in its rollouts; Claude Code sends them to `usageledger statusline`.
    Shown as observed, never estimated: a window whose reset time has passed is marked.

    \b
    Examples:
      usageledger limits
      usageledger limits --history 20 --source codex --json
    """
    from usageledger.tracker.limits import build_limits, describe_reset

    with opened() as ledger:
        if not no_scan:
            _note_problems(_run_scan(ledger))
        now = clock()
        result = ledger.db.read(
            lambda conn: build_limits(
                conn, ledger.user_id, tz=ledger.tz, now_ms=now, sources=sources, history=history
            )
        )
    if as_json:
        _dump(result)
        return
    if not result["windows"]:
        out().print("no rate-limit windows recorded yet")
        return
    from rich.table import Table

    table = Table(title="Rate-limit windows, as observed", title_justify="left")
    for name in ("Source", "Window", "Length", "Used", "Observed", "Resets"):
        table.add_column(name, justify="right" if name in ("Length", "Used") else "left")
    for w in result["windows"]:
        minutes = w["window_minutes"]
        rows = [w, *w.get("history", [])[1:]]
        for index, obs in enumerate(rows):
            table.add_row(
                w["source"] if index == 0 else "",
                w["window"] if index == 0 else "",
                _minutes(minutes) if index == 0 else "",
                f"{obs['used_percent']:g}%",
                obs["observed_at"][:19].replace("T", " "),
                describe_reset(obs["resets_at"], now),
            )
    out().print(table)


def _minutes(minutes: int | None) -> str:
    if minutes is None:
        return "-"
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [scan, report, login, push, status, blocks, limits]
