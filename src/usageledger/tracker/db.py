"""The local ledger's connection: the standard library's ``sqlite3``, no ORM.

The tracker's commands run often (after a session, from a shell prompt, a cron job), so
their hot paths speak SQL to SQLite directly and start in tens of milliseconds. The schema is
not ours to make here: it is created and upgraded by the one Alembic history
(``store/migrations``), and :func:`needs_migration` — one ``SELECT`` of ``alembic_version``
compared with the head read from the migration files — decides whether SQLAlchemy and Alembic
load at all (only when the file is new or older than this usageledger).

Transactions mirror the server's ``store.engine.Database`` on SQLite: a read is one deferred
transaction (one WAL snapshot), a write ``BEGIN IMMEDIATE`` (the single write lock, waited for
up to the busy timeout); a database failure becomes a :class:`~usageledger.errors.LedgerError`
in our own words, never the database's text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from usageledger.errors import DatabaseError, ErrorCode, LedgerError

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
VERSION_TABLE = "alembic_version"


def _quote(name: str) -> str:
    # Column names are this module's constants, never input; quoted because one is "offset".
    return '"' + name.replace('"', '""') + '"'


def database_error(exc: sqlite3.Error) -> LedgerError:
    """Our own words for a SQLite failure, as ``store.engine.to_database_error`` words them."""
    text = str(exc).lower()
    code = str(getattr(exc, "sqlite_errorname", "") or "")
    if "locked" in text or "busy" in text:
        timeout = DatabaseError(
            "the database did not answer in time; retry later", code=ErrorCode.DATABASE_TIMEOUT
        )
        timeout.status = 504
        return timeout
    if code.startswith("SQLITE_READONLY") or "readonly" in text:
        return DatabaseError("the database is read-only; retry later")
    if code == "SQLITE_FULL" or "is full" in text:
        return DatabaseError("the database is full; retry later")
    if "unable to open" in text or "disk i/o" in text:
        return DatabaseError("the database is unavailable; retry later")
    return LedgerError(f"database error ({code or type(exc).__name__})")


class LocalDb:
    """One ``sqlite3`` connection to the ledger file, with read and write transactions."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise database_error(exc) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL (the server keeps FULL): see ``tracker.ledger.open_ledger``.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        except sqlite3.Error as exc:
            conn.close()
            raise database_error(exc) from exc
        self.path = path
        self.conn = conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a read transaction over one snapshot."""
        return self._run(fn, "BEGIN")

    def write(self, fn: Callable[[sqlite3.Connection], T], *, user_id: int | None = None) -> T:
        """Run ``fn`` in a write transaction (``BEGIN IMMEDIATE``: writers take turns).

        ``user_id`` is accepted for the server's ``Database.write`` signature: on SQLite the
        write lock already serializes every writer, so there is no per-user lock to take.
        """
        return self._run(fn, "BEGIN IMMEDIATE")

    def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        conn = self.conn
        try:
            conn.execute(begin)
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise database_error(exc) from exc

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def stored_revision(conn: sqlite3.Connection) -> str | None:
    """The Alembic revision the file is at, None for a new (empty) file."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if found is None:
        return None
    rows = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    if len(rows) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds {len(rows)} heads; the tree must be linear")
    return str(rows[0][0]) if rows else None


def needs_migration(conn: sqlite3.Connection) -> bool:
    """Whether the file is not at the head of the migration files (one cheap read)."""
    from usageledger.store.migrate import head_revision

    return stored_revision(conn) != head_revision()


def placeholders(count: int) -> str:
    """``?, ?, …`` for an ``IN (…)`` list of ``count`` values."""
    return ", ".join("?" * count)


def upsert_sql(
    table: str, columns: Sequence[str], key: Sequence[str], update: Sequence[str]
) -> str:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` of ``update`` (what ``store.dialect.upsert``
    builds for SQLite), with positional parameters in ``columns`` order."""
    cols = ", ".join(_quote(c) for c in columns)
    sets = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in update)
    return (
        f"INSERT INTO {table} ({cols}) VALUES ({placeholders(len(columns))}) "
        f"ON CONFLICT ({', '.join(_quote(c) for c in key)}) DO UPDATE SET {sets}"
    )


def upsert(
    conn: sqlite3.Connection,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows`` (all with the same keys), updating ``update`` on a key conflict."""
    if not rows:
        return
    columns = list(rows[0])
    conn.executemany(
        upsert_sql(table, columns, key, update), ([row[c] for c in columns] for row in rows)
    )


def chunks(items: Sequence[Any], size: int = 400) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (one ``IN (…)`` list each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
