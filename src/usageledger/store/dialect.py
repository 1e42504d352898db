"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Integer,
    Table,
    cast,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.sql.dml import Insert


def is_sqlite(conn: Connection) -> bool:
    """True on SQLite."""
    return conn.dialect.name == "sqlite"


def lock_user(conn: Connection, user_id: int, *, timeout_ms: int | None = None) -> None:
    """Serialize writes for one user until the transaction ends.

    SQLite needs nothing here: write transactions start with ``BEGIN IMMEDIATE``, which takes
    the database's single write lock. PostgreSQL locks the user's row of ``user_locks`` (made
    on the first write) with ``SELECT ... FOR UPDATE``. A row lock lives with the user's rows:
    on Citus it is taken in the user's shard, whichever node the writer entered through, where
    an advisory lock would be local to the entering node and let two writers in at once.

    ``timeout_ms`` bounds the wait, and every later statement of the transaction, with
    ``SET LOCAL statement_timeout`` and ``lock_timeout``: set inside the transaction, they hold
    however the connection was made (a pooler in transaction mode drops the connection's
    start-up options). ``statement_timeout`` is what bounds a lock wait on a Citus worker: the
    coordinator cancels the whole statement, whereas its ``lock_timeout`` covers only locks
    taken on the coordinator (docs/scaling.md). The result is a 504 ``DATABASE_TIMEOUT``.
    One round trip: the statements carry no parameters, so they go as one simple query.
    """
    if is_sqlite(conn):
        return
    uid = int(user_id)  # an int: safe to inline, which lets the statements share a round trip
    bound = ""
    if timeout_ms is not None:
        ms = int(timeout_ms)
        bound = f"SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; "
    # The INSERT waits only for a concurrent first write of the same user (an uncommitted row
    # with this key) and otherwise does nothing; the SELECT then takes (or waits for) the lock.
    conn.exec_driver_sql(
        f"{bound}INSERT INTO user_locks (user_id) VALUES ({uid}) ON CONFLICT (user_id) DO NOTHING;"
        f" SELECT user_id FROM user_locks WHERE user_id = {uid} FOR UPDATE"
    )


def insert_for(conn: Connection, table: Table) -> Insert:
    """A dialect-specific INSERT that supports ``on_conflict_*``.

    The dialect modules load on first use: the engine has loaded its own dialect already, and
    a SQLite-only command (``scan``) does not pay for importing PostgreSQL's.
    """
    if is_sqlite(conn):
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)


#: Upsert statements by (dialect, table, key, update): building one costs more than running it
#: on the hot paths (an upload's buckets and its receipt).
_UPSERTS: dict[tuple[str, Table, tuple[str, ...], tuple[str, ...]], Any] = {}


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows``; where ``key`` exists, overwrite the ``update`` columns."""
    if not rows:
        return
    cache_key = (conn.dialect.name, table, tuple(key), tuple(update))
    stmt = _UPSERTS.get(cache_key)
    if stmt is None:
        insert: Any = insert_for(conn, table)
        stmt = _UPSERTS[cache_key] = insert.on_conflict_do_update(
            index_elements=list(key), set_={c: insert.excluded[c] for c in update}
        )
    conn.execute(stmt, list(rows))


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any whose primary key already exists."""
    if not rows:
        return
    stmt: Any = insert_for(conn, table)
    conn.execute(stmt.on_conflict_do_nothing(), list(rows))


def epoch_day_to_date(expr: ColumnElement[int], conn: Connection) -> ColumnElement[Any]:
    """A SQL date from a day number counted from 1970-01-01."""
    if is_sqlite(conn):
        return type_coerce(func.date(expr * 86400, "unixepoch"), Date)
    return type_coerce(literal_column("DATE '1970-01-01'") + cast(expr, Integer), Date)


def set_local_timeout(conn: Connection, milliseconds: int) -> None:
    """Bound the current transaction's statements (PostgreSQL; SQLite has a busy timeout)."""
    if is_sqlite(conn):
        return
    conn.execute(text(f"SET LOCAL statement_timeout = {int(milliseconds)}"))
