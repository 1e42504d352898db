"""The ``usageledger`` command: thin commands over the library (STYLE habit 1)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from usageledger.config import Settings, SettingsError, load_settings
from usageledger.errors import LedgerError
from usageledger.store.engine import Database, make_engine

T = TypeVar("T")
console = Console(stderr=True)


class Env:
    """Settings and a lazily built database for one CLI invocation (disposed at exit)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        """The configured server database, built on first use."""
        if self._database is None:
            s = self.settings
            engine = make_engine(
                s.resolved_database_url, statement_timeout_ms=s.statement_timeout_ms
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
            try:
                self._settings = load_settings()
            except SettingsError as exc:
                console.print(f"[red]error:[/red] {exc}")
                sys.exit(2)
        return self._settings


pass_env = click.make_pass_decorator(Env, ensure=True)


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def run(fn: Callable[[], T]) -> T:
    """Run a domain call; a domain error becomes a red message and exit status 1."""
    try:
        return fn()
    except LedgerError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _register() -> None:
    from usageledger.cli_admin import db, tokens, users
    from usageledger.cli_serve import demo, serve

    for command in (serve, demo, db, users, tokens):
        main.add_command(command)
    # Commands of optional feature modules, each owning its own file.
    for module, name in (
        ("usageledger.cli_attribute", "attribute"),
        ("usageledger.cli_ops", "commands"),
        ("usageledger.cli_tracker", "commands"),
        ("usageledger.cli_read", "commands"),
    ):
        _optional(module, name)


def _optional(module: str, name: str) -> None:
    import importlib

    try:
        loaded: Any = importlib.import_module(module)
    except ModuleNotFoundError:
        return
    found = getattr(loaded, name)
    for command in found if isinstance(found, list | tuple) else [found]:
        main.add_command(command)


_register()
