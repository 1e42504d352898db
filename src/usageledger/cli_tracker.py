"""The tracker's commands: ``scan``, ``report``, ``login``, ``push`` and ``status``.

Thin: each parses its options, opens the local ledger under ``USAGELEDGER_HOME`` and calls
one function of ``usageledger.tracker``. The assistants' logs are found through their own
variables (``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``GEMINI_DATA_DIR``, ``OPENCODE_DATA_DIR``, …)
and the home directory, as docs/tracker.md lists.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson
from rich.console import Console

from usageledger.errors import LedgerError
from usageledger.settings_rules import SettingsError, check_time_zone
from usageledger.sources import PARSERS
from usageledger.tracker import render
from usageledger.tracker.ledger import LocalLedger, open_ledger
from usageledger.tracker.login import LoginError, load_login, save_login
from usageledger.tracker.report import KINDS
from usageledger.tracker.scan import ScanSummary
from usageledger.tracker.scan import scan as scan_logs
from usageledger.tracker.settings import TrackerSettings, load_tracker_settings

# ``push`` (httpx), ``status`` and the report's price book load inside their commands, so
# ``scan`` — the command a shell prompt or a cron job runs — starts without them. None of
# these commands loads pydantic, SQLAlchemy or Alembic (``tests/test_startup.py``): the
# settings are read by ``tracker.settings``, the ledger is spoken to with ``sqlite3``, and
# only a ledger that needs a migration loads the migration machinery.

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
SOURCE_CHOICE = click.Choice(sorted(PARSERS))


def clock() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


def _fail(message: str, status: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(status)


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_time_zone(value)
    except ValueError as exc:
        _fail(str(exc), 2)
    return value


def _settings() -> TrackerSettings:
    """The tracker's settings from the environment (exit 2 naming a bad one)."""
    try:
        return load_tracker_settings()
    except SettingsError as exc:
        _fail(str(exc), 2)


@contextmanager
def opened(time_zone: str | None = None) -> Iterator[LocalLedger]:
    """The local ledger under ``USAGELEDGER_HOME``, closed afterwards.

    A database failure (the file locked past the busy timeout, a full disk) becomes a message
    and exit status 1; nothing half-written stays behind (every write is one transaction).
    """
    home = _settings().home
    try:
        ledger = open_ledger(home, now_ms=clock(), time_zone=_zone(time_zone))
    except (LedgerError, sqlite3.Error, OSError) as exc:
        _fail(f"cannot open the ledger in {home}: {_reason(exc)}")
    try:
        yield ledger
    except (LedgerError, sqlite3.Error) as exc:
        _fail(f"the ledger {ledger.path}: {_reason(exc)}")
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
        err.print(
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
            sources=sources or None,
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
    out.print(render.scan_table(summary))
    render.print_problems(out, summary)


@click.command()
@click.argument("kind", type=click.Choice(KINDS), default="daily")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help="First day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help="Last day.")
@click.option("--timezone", "time_zone", metavar="ZONE", help="Days in this zone (IANA name).")
@click.option("--source", "sources", multiple=True, type=SOURCE_CHOICE, help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in docs/tracker.md).")
@click.option("--no-scan", is_flag=True, help="Report what the ledger has; do not scan first.")
def report(
    kind: str,
    since: Any,
    until: Any,
    time_zone: str | None,
    sources: tuple[str, ...],
    as_json: bool,
    no_scan: bool,
) -> None:
    """Usage and cost per day, week, month, session, model or project (scans first).

    KIND is daily (default), weekly, monthly, session, models or projects. Days are local
    days in the ledger's time zone unless --timezone says otherwise.

    \b
    Examples:
      usageledger report
      usageledger report weekly --since 2025-09-01
      usageledger report daily --json --timezone America/New_York
      usageledger report session --source claude --no-scan
    """
    first: date | None = since.date() if since else None
    last: date | None = until.date() if until else None
    if first and last and first > last:
        _fail("--since is after --until", 2)
    with opened() as ledger:
        if not no_scan:
            _note_problems(_run_scan(ledger))
        from usageledger.ledger.pricing import PriceBook
        from usageledger.tracker.report import ReportRequest, build_report

        request = ReportRequest(
            kind=kind,
            time_zone=_zone(time_zone) or ledger.time_zone,
            since=first,
            until=last,
            sources=sources,
        )
        book = PriceBook.load_default()
        result = ledger.db.read(lambda conn: build_report(conn, ledger, request, book))
    if as_json:
        _dump(result)
        return
    out.print(render.report_table(result, width=out.width))
    note = render.unpriced_note(result)
    if note:
        err.print(f"[yellow]{note}[/yellow]", highlight=False)


@click.command()
@click.option(
    "--server",
    required=True,
    metavar="URL",
    help="The server's base URL, e.g. https://ledger.example",
)
@click.option(
    "--token",
    metavar="TOKEN",
    prompt="Device token",
    hide_input=True,
    help="This device's token (ul_dev_…); asked for when left out, so it stays out of history.",
)
def login(server: str, token: str) -> None:
    """Save the server and this device's token for `usageledger push` (file mode 600).

    Another server or token clears what the old one acknowledged, so the next push sends
    every bucket once.

    \b
    Examples:
      usageledger login --server https://ledger.example.com
      usageledger login --server http://127.0.0.1:8787 --token ul_dev_…
    """
    with opened() as ledger:
        try:
            cleared = save_login(ledger, server, token, now_ms=clock())
        except LoginError as exc:
            _fail(str(exc), 2)
        saved = load_login(ledger.home)
    assert saved is not None
    out.print(f"logged in to {saved.server}; the token is in {ledger.home / 'login.json'}")
    if cleared:
        out.print("another server or token: the next push sends every bucket once")


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
            _fail(str(exc), 2)
        if saved is None:
            _fail("not logged in; run `usageledger login --server URL` first", 2)
        if not no_scan:
            _note_problems(_run_scan(ledger))
        try:
            summary = push_buckets(ledger, saved, clock=clock)
        except PushError as exc:
            _fail(exc.message)
    if as_json:
        _dump(summary.as_dict())
        return
    outcomes = ", ".join(f"{v} {k}" for k, v in summary.outcomes.items())
    if summary.batches == 0:
        out.print(f"nothing to push to {summary.server}")
    else:
        out.print(
            f"pushed {summary.buckets} bucket(s) in {summary.batches} batch(es) to "
            f"{summary.server}: {outcomes}"
        )
    if summary.held_back:
        out.print(
            f"[yellow]{summary.held_back} bucket(s) held back: before 2020 or in the future[/]"
        )
    if summary.outcomes["stale"] or summary.outcomes["conflicts"]:
        out.print(
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
    from usageledger.tracker.status import ledger_status

    with opened() as ledger:
        result = ledger_status(ledger, env=os.environ, home=Path.home())
    if as_json:
        _dump(result)
        return
    out.print(f"ledger      {result['ledger']}", highlight=False)
    out.print(f"device      {result['device']} (time zone {result['time_zone']})")
    out.print(f"last scan   {result['last_scan'] or 'never'}")
    out.print(f"last push   {result['last_push'] or 'never'}")
    out.print(f"server      {result['server'] or 'not logged in'}", highlight=False)
    out.print(f"pending     {result['pending_buckets']:,} bucket(s)")
    out.print(render.status_table(result))
    for warning in result["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


commands = [scan, report, login, push, status]
