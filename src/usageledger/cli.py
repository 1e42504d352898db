"""The ``usageledger`` command: thin commands over the library (STYLE habit 1)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from usageledger.errors import LedgerError

if TYPE_CHECKING:
    from rich.console import Console

    from usageledger.config import Settings
    from usageledger.store.engine import Database

# The settings (pydantic-settings) and the database layer (SQLAlchemy) load inside the
# methods that use them: ``--help``, ``--version`` and the tracker's commands never do.

T = TypeVar("T")


@cache
def console() -> Console:
    """Standard error's console for messages, made on first use: rich costs ~35 ms to import
    and most runs print no error."""
    from rich.console import Console

    return Console(stderr=True)


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``message`` as one error line and exit with ``status`` (2: cannot run at all)."""
    console().print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    sys.exit(status)


class Env:
    """Settings and a lazily built database for one CLI invocation (disposed at exit)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        """The configured server database, built on first use; a SQLite file that is not there
        is created. Only the commands that make a ledger use this (``db upgrade``, ``demo``):
        every other one uses :meth:`existing_database`."""
        if self._database is None:
            from usageledger.store.engine import Database, make_engine

            s = self.settings
            engine = make_engine(
                s.resolved_database_url, statement_timeout_ms=s.statement_timeout_ms
            )
            self._database = Database(engine, retries=s.db_retries)
        return self._database

    def existing_database(self, *, migrated: bool = True) -> Database:
        """The configured database, which must exist (and, with ``migrated``, be at the newest
        schema): otherwise one error line and exit status 2, and no file is created."""
        if self._database is not None:
            return self._database
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        from usageledger.store.engine import Database, make_engine, sqlite_file
        from usageledger.store.migrate import current_revision, head_revision

        s = self.settings
        url = s.resolved_database_url
        shown = make_url(url).render_as_string(hide_password=True)
        path = sqlite_file(url)
        if path is not None and not path.is_file():
            fail(
                f"no database at {path}; create it with `usageledger db upgrade` "
                "(or `usageledger serve`), or set USAGELEDGER_DATABASE_URL"
            )
        engine = make_engine(url, statement_timeout_ms=s.statement_timeout_ms, create=False)
        try:
            revision = current_revision(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            fail(f"cannot open the database {shown}: {_first_line(exc)}")
        if migrated and revision != head_revision():
            engine.dispose()
            if revision is None:
                fail(f"the database {shown} has no schema; run `usageledger db upgrade`")
            fail(
                f"the database {shown} is at schema revision {revision}, not {head_revision()}; "
                "run `usageledger db upgrade` (or a newer usageledger)"
            )
        self._database = Database(engine, retries=s.db_retries)
        return self._database

    def close(self) -> None:
        """Release the database's connections."""
        if self._database is not None:
            self._database.engine.dispose()
            self._database = None

    @property
    def settings(self) -> Settings:
        """The settings, read from the environment on first use (exit 2 when invalid)."""
        if self._settings is None:
            from usageledger.config import SettingsError, load_settings

            try:
                self._settings = load_settings()
            except SettingsError as exc:
                console().print(f"[red]error:[/red] {exc}")
                sys.exit(2)
        return self._settings


pass_env = click.make_pass_decorator(Env, ensure=True)


def _first_line(exc: BaseException) -> str:
    """The driver's own reason a connection failed, on one line (a connection error carries
    no statement, so no parameters; a password is never part of it)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[-1] if lines else type(orig).__name__


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def run(fn: Callable[[], T]) -> T:
    """Run a domain call; a domain error becomes its message (and details) and exit status 1."""
    try:
        return fn()
    except LedgerError as exc:
        _report(exc)


def _report(exc: LedgerError) -> NoReturn:
    console().print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
    for detail in exc.details[1:]:
        console().print(
            f"  {detail.get('loc')}: {detail.get('message')}", highlight=False, soft_wrap=True
        )
    sys.exit(1)


#: Every command: name -> (module, attribute). Modules load only when their command runs, so
#: a quick command (``scan``, ``status``) does not pay for the server's imports.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("usageledger.cli_serve", "serve"),
    "demo": ("usageledger.cli_serve", "demo"),
    "db": ("usageledger.cli_admin", "db"),
    "users": ("usageledger.cli_admin", "users"),
    "tokens": ("usageledger.cli_admin", "tokens"),
    "attribute": ("usageledger.cli_attribute", "attribute"),
    "replay": ("usageledger.cli_ops", "replay"),
    "verify": ("usageledger.cli_ops", "verify"),
    "backfill": ("usageledger.cli_ops", "backfill"),
    "plans": ("usageledger.cli_ops", "plans"),
    "retention": ("usageledger.cli_ops", "retention"),
    "scan": ("usageledger.cli_tracker", "scan"),
    "report": ("usageledger.cli_tracker", "report"),
    "login": ("usageledger.cli_tracker", "login"),
    "push": ("usageledger.cli_tracker", "push"),
    "status": ("usageledger.cli_tracker", "status"),
    "statusline": ("usageledger.cli_statusline", "statusline"),
    "blocks": ("usageledger.cli_tracker", "blocks"),
    "limits": ("usageledger.cli_tracker", "limits"),
    "config": ("usageledger.cli_setup", "config_group"),
    "init": ("usageledger.cli_setup", "init"),
    "hook": ("usageledger.cli_setup", "hook"),
    "pricing": ("usageledger.cli_read", "pricing_group"),
    "prices": ("usageledger.cli_read", "prices_group"),
    "leaderboard": ("usageledger.cli_read", "leaderboard_group"),
}
#: Every command's one-line help, so that ``usageledger --help`` lists the commands without
#: importing them (that would load the server's libraries); a test checks each equals the
#: command's own short help.
SUMMARIES: dict[str, str] = {
    "attribute": "Attribute incidents in M1 log lines to vendor, application or unknown.",
    "backfill": "Change a device's buckets safely: plan, apply, roll back.",
    "blocks": "Usage in 5-hour windows: tokens, cost, burn rate and projection (scans first).",
    "config": "Read and change the config file (defaults below flags and environment variables).",
    "db": "Database schema commands.",
    "demo": "Seed a realistic synthetic history (devices, models, weekly rhythm) for a demo user.",
    "hook": "What `usageledger init` makes each assistant run: returns at once, scans detached.",
    "init": "Wire each installed assistant's own hooks to a quick, detached scan (and push).",
    "leaderboard": "Leaderboard snapshots (week, month, all time) of users who opted in.",
    "limits": "The vendors' own rate-limit windows as the assistants recorded them (scans first).",
    "login": "Save the server and this device's token for `usageledger push` (file mode 600).",
    "plans": "List and show backfill plans.",
    "pricing": "Prices of the server: the shipped table plus the ones you load.",
    "prices": "Prices from maintained sources, and the models that still have none.",
    "push": "Upload the half-hour buckets the server has not acknowledged (scans first).",
    "replay": "Rebuild usage_buckets and usage_daily from bucket_revisions.",
    "report": "Usage and cost per day, week, month, session, model or project (scans first).",
    "retention": "Delete data the ledger no longer needs (receipts, superseded revisions).",
    "scan": "Read what is new in the assistants' logs into the local ledger.",
    "serve": "Run the server.",
    "status": "The ledger's path, last scan and push, pending buckets and per-source health.",
    "statusline": "One status line for Claude Code's statusLine command (its JSON on stdin).",
    "tokens": "Issue, list and revoke API tokens.",
    "users": "Create and list users.",
    "verify": (
        "Compare usage_buckets and usage_daily with a fresh rebuild; exit 1 on any difference."
    ),
}
#: Modules that add subcommands to a group defined elsewhere (``db copy`` lives with the ops).
EXTENDS: dict[str, tuple[str, ...]] = {"db": ("usageledger.cli_ops",)}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module (and any module extending it) and return it."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            module, attribute = COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            for extension in EXTENDS.get(cmd_name, ()):
                importlib.import_module(extension)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from :data:`SUMMARIES`, importing no command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in SUMMARIES:
                # A stand-in command shortens the line exactly as the real one's would be.
                stand_in = click.Command(name, help=SUMMARIES[name])
                rows.append((name, stand_in.get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a domain error that no command turned into a message (a database
        outage in a listing) is one error line and exit status 1, never a traceback."""
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            _report(exc)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="usageledger")
@click.pass_context
def main(ctx: click.Context) -> None:
    """An exact, de-duplicated ledger of AI coding-assistant token usage.

    \b
    Example:
      usageledger serve --demo        # run the server with a demo user on SQLite
    """
    env = ctx.ensure_object(Env)
    ctx.call_on_close(env.close)
