"""What the server's commands share: the settings and a lazily built database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from usageledger.cli.errors import report, usage

if TYPE_CHECKING:
    from usageledger.config import Settings
    from usageledger.store.engine import Database

# The settings (pydantic-settings) and the database layer (SQLAlchemy) load inside the
# methods that use them: ``--help``, ``--version`` and the tracker's commands never do.


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
        schema): otherwise one error line and exit status 2, and no file is created. A
        database server that cannot be reached is exit status 1."""
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
            usage(
                f"no database at {path}; create it with `usageledger db upgrade` "
                "(or `usageledger serve`), or set USAGELEDGER_DATABASE_URL"
            )
        engine = make_engine(url, statement_timeout_ms=s.statement_timeout_ms, create=False)
        try:
            revision = current_revision(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            report(exc, f"cannot open the database {shown}")
        if migrated and revision != head_revision():
            engine.dispose()
            if revision is None:
                usage(f"the database {shown} has no schema; run `usageledger db upgrade`")
            usage(
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
                report(exc)
        return self._settings


pass_env = click.make_pass_decorator(Env, ensure=True)


def database(env: Env) -> Database:
    """The configured database, which must exist at the newest schema (exit 2 otherwise,
    creating nothing); disposed when the command ends."""
    return env.existing_database()


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)
