"""Engines and the database boundary: connections, transactions, retries and evidence.

Every database call is timed and classified into an HTTP-style upstream status (DESIGN §6):
200 ok, 503 unavailable, 504 timeout, 409 conflict (after retries), 500 other. The numbers
accumulate in the :class:`DbStats` of the current context, which the M1 line of the request
or job reports. Nothing here is built at import time.

On PostgreSQL every round trip also has a client-side deadline (``store.pg.DeadlineConnection``):
``statement_timeout`` is enforced by the server, so it cannot fire when the server, or anything
between it and us, stops answering; TCP keepalives only notice a dead peer, not a hung one.

On SQLite the writers of one process queue on a first-come, first-served lock
(:class:`WriterQueue`) before they ``BEGIN IMMEDIATE``: SQLite has one write lock, and threads
that contend for it inside SQLite poll with sleeps of up to 100 ms (its busy handler), so a
burst of writers wastes most of the time the lock is free. Processes still meet at SQLite's
lock and its busy timeout. The time spent queued is reported as ``DbStats.wait_ms``, apart
from the database time.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from usageledger.errors import DatabaseError, ErrorCode, LedgerError
from usageledger.store.dialect import lock_user

T = TypeVar("T")


@dataclass(slots=True)
class DbStats:
    """Database evidence of one request or job: calls, time spent, worst outcome."""

    calls: int = 0
    elapsed_ms: float = 0.0
    worst_status: int | None = None
    #: Time spent queued for this process's SQLite writer slot (not database time).
    wait_ms: float = 0.0

    def record(self, elapsed_ms: float, status: int) -> None:
        """Add one database call's time and outcome."""
        self.calls += 1
        self.elapsed_ms += elapsed_ms
        if self.worst_status is None or _severity(status) > _severity(self.worst_status):
            self.worst_status = status


def _severity(status: int) -> int:
    # 504 and 503 are the upstream's fault and outrank a conflict or a generic 500.
    return {200: 0, 409: 1, 500: 2, 503: 3, 504: 4}.get(status, 2)


_current_stats: ContextVar[DbStats | None] = ContextVar("usageledger_db_stats", default=None)


@contextmanager
def track_db() -> Iterator[DbStats]:
    """Collect the database evidence of the calls made inside the block."""
    stats = DbStats()
    token = _current_stats.set(stats)
    try:
        yield stats
    finally:
        _current_stats.reset(token)


def _record(elapsed_ms: float, status: int) -> None:
    stats = _current_stats.get()
    if stats is not None:
        stats.record(elapsed_ms, status)


def _record_wait(elapsed_ms: float) -> None:
    stats = _current_stats.get()
    if stats is not None:
        stats.wait_ms += elapsed_ms


def classify(exc: BaseException) -> int:
    """The upstream status of a database exception."""
    orig: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted: no connection in time
        return 504
    if isinstance(orig, WriterQueueTimeout):
        return 504
    if "psycopg" in sys.modules:  # a psycopg error exists only once psycopg is loaded
        from usageledger.store.pg import postgres_status

        status = postgres_status(orig)
        if status is not None:
            return status
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        if "locked" in text or "busy" in text:
            return 504
        if "unable to open" in text or "disk i/o" in text or "readonly" in text:
            return 503
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return 503
    return 500


class WriterQueueTimeout(Exception):
    """The SQLite writer slot did not come free within the busy timeout (a 504)."""


class WriterQueue:
    """A first-come, first-served lock for the writers of one process (used on SQLite).

    ``threading.Lock`` lets a newly arrived thread overtake the ones already waiting, which
    shows up as a long tail of waits in a burst; here the slot is handed to the oldest waiter.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout_s: float) -> bool:
        """Take the slot, waiting at most ``timeout_s``; False when it did not come free."""
        with self._mutex:
            if not self._busy:
                self._busy = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout_s):
            return True  # release() handed the slot over: it stays busy
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:
                # The slot was handed over between the timeout and the mutex: give it on.
                self._release_locked()
            return False

    def release(self) -> None:
        """Hand the slot to the oldest waiter, or free it."""
        with self._mutex:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._waiters:
            self._waiters.popleft().release()
        else:
            self._busy = False


def round_trip_seconds(statement_timeout_ms: int) -> float:
    """The client-side deadline of one round trip: the statement timeout plus a grace period
    (half of it, at least 1 s) in which the server's own cancellation normally arrives."""
    seconds = statement_timeout_ms / 1000
    return seconds + max(1.0, seconds / 2)


#: SQLite's ``synchronous`` settings an engine may use (WAL mode either way).
SQLITE_SYNC = ("FULL", "NORMAL")


def make_engine(
    url: str,
    *,
    statement_timeout_ms: int = 10_000,
    pool_size: int = 10,
    sqlite_synchronous: str = "FULL",
) -> Engine:
    """Build an instrumented engine for a SQLite or PostgreSQL URL.

    ``sqlite_synchronous`` is ``FULL`` (an acknowledged commit survives a power loss: the
    server) or ``NORMAL`` (it may be lost, never corrupted: the local ledger, whose scans
    redo what was lost); PostgreSQL ignores it.
    """
    if sqlite_synchronous not in SQLITE_SYNC:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNC)}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, statement_timeout_ms, sqlite_synchronous)
    else:
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=max(1.0, statement_timeout_ms / 1000),
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, statement_timeout_ms // 2000),
                "options": f"-c statement_timeout={statement_timeout_ms}"
                f" -c lock_timeout={statement_timeout_ms}"
                f" -c idle_in_transaction_session_timeout={statement_timeout_ms * 6}",
            },
        )
        from usageledger.store.pg import connect_with_deadline

        round_trip_s = round_trip_seconds(statement_timeout_ms)

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _rec: Any, cargs: Any, cparams: Any) -> Any:
            # connect_timeout bounds the connection itself; the deadline bounds what follows.
            return connect_with_deadline(cargs, cparams, round_trip_s)

    _instrument(engine)
    return engine


def _sqlite_engine(url: str, busy_timeout_ms: int, synchronous: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    memory = not database or database == ":memory:"
    engine = create_engine(
        parsed,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        poolclass=NullPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, so writes can say IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _instrument(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, *_args: Any) -> None:
        conn.info.setdefault("ul_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Connection, *_args: Any) -> None:
        started = conn.info.get("ul_started")
        if started:
            _record((time.perf_counter() - started.pop()) * 1000, 200)

    @event.listens_for(engine, "handle_error")
    def _error(context: Any) -> None:
        conn = context.connection
        started = conn.info.get("ul_started") if conn is not None else None
        elapsed = (time.perf_counter() - started.pop()) * 1000 if started else 0.0
        _record(elapsed, classify(context.original_exception))


def to_database_error(exc: BaseException) -> LedgerError:
    """A client-safe error for a database failure (never the database's own text)."""
    status = classify(exc)
    if status == 504:
        timeout = DatabaseError(
            "the database did not answer in time; retry later",
            code=ErrorCode.DATABASE_TIMEOUT,
            headers={"Retry-After": "5"},
        )
        timeout.status = 504
        return timeout
    if status in (503, 409):
        return DatabaseError(
            "the database is unavailable; retry later",
            code=ErrorCode.DATABASE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    return LedgerError("internal error", code=ErrorCode.INTERNAL_ERROR)


class Database:
    """The database boundary: timed connections, serialized write transactions, retries."""

    def __init__(self, engine: Engine, *, retries: int = 3, write_wait_s: float = 10.0) -> None:
        self.engine = engine
        self.retries = retries
        #: SQLite: this process's writers queue here, at most ``write_wait_s`` (the busy
        #: timeout's equivalent), before they take SQLite's write lock.
        self.writers = WriterQueue() if self.is_sqlite else None
        self.write_wait_s = write_wait_s

    @property
    def is_sqlite(self) -> bool:
        """True on SQLite."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        started = time.perf_counter()
        try:
            conn = self.engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            _record((time.perf_counter() - started) * 1000, classify(exc))
            raise
        _record((time.perf_counter() - started) * 1000, 200)
        try:
            # A start time left by an earlier checkout's failure must not be popped by ours.
            conn.info["ul_started"] = []
            if write and self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            elif not write and not self.is_sqlite:
                # One snapshot for every statement of a read (SQLite's deferred transaction
                # already reads one WAL snapshot): a board refreshed or a time zone changed
                # between two statements of a response must not mix old and new rows.
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            yield conn
        finally:
            conn.close()

    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a read-only transaction over one snapshot (PostgreSQL: REPEATABLE READ
        READ ONLY); database failures become :class:`DatabaseError`."""
        return self._run(fn, write=False, user_id=None)

    def write(self, fn: Callable[[Connection], T], *, user_id: int | None = None) -> T:
        """Run ``fn`` in a write transaction, serialized per user, retried on conflicts."""
        return self._run(fn, write=True, user_id=user_id)

    @contextmanager
    def _writer_slot(self, write: bool) -> Iterator[None]:
        queue = self.writers if write else None
        if queue is None:
            yield
            return
        started = time.perf_counter()
        acquired = queue.acquire(self.write_wait_s)
        waited_ms = (time.perf_counter() - started) * 1000
        if not acquired:
            # As SQLite's busy timeout would have: the write slot stayed taken too long.
            _record(waited_ms, 504)
            raise to_database_error(
                WriterQueueTimeout(f"no write slot within {self.write_wait_s:g} s")
            )
        _record_wait(waited_ms)
        try:
            yield
        finally:
            queue.release()

    def _run(self, fn: Callable[[Connection], T], *, write: bool, user_id: int | None) -> T:
        attempt = 0
        while True:
            try:
                with self._writer_slot(write), self._connect(write=write) as conn:
                    transaction = conn.begin()
                    try:
                        if write and user_id is not None:
                            lock_user(conn, user_id)
                        result = fn(conn)
                    except BaseException:
                        _end(conn, transaction, commit=False)
                        raise
                    _end(conn, transaction, commit=True)
                    return result
            except sa_exc.SQLAlchemyError as exc:
                status = classify(exc)
                retryable = status == 409 or (status == 503 and attempt == 0)
                if retryable and attempt < self.retries:
                    attempt += 1
                    time.sleep(random.uniform(0.005, 0.05) * attempt)
                    continue
                raise to_database_error(exc) from exc


def _end(conn: Connection, transaction: RootTransaction, *, commit: bool) -> None:
    """Commit or roll back, timed like a statement; a failure is recorded by ``handle_error``,
    which pops the start time pushed here."""
    if conn.invalidated or not transaction.is_active:
        # The connection is gone, or ``fn`` ended the transaction: there is nothing to send.
        transaction.close()
        return
    started: list[float] = conn.info.setdefault("ul_started", [])
    started.append(time.perf_counter())
    if commit:
        transaction.commit()
    else:
        transaction.rollback()
    if started:
        _record((time.perf_counter() - started.pop()) * 1000, 200)
