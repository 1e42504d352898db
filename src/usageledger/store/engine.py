"""Engines and the database boundary: connections, transactions, retries and evidence.

Every database call is timed and classified into an HTTP-style upstream status (docs/design.md §6):
200 ok, 503 unavailable, 504 timeout, 409 conflict (after retries), 500 other. The numbers
accumulate in the :class:`DbStats` of the current context, which the evidence line of the request
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

A SQLite file deleted or replaced while the server runs is invisible to SQLite: the open
connections go on writing to the unlinked file, and everything they commit vanishes at the next
start. :class:`SqliteFile` remembers which file (device and inode) the database is, and every
transaction compares it with what the path holds now before it commits; a mismatch rolls back
and answers 503 until the server is restarted on a restored file (it never switches files by
itself, so it cannot start serving an empty or older file behind the operator's back).

Engines are built with ``hide_parameters=True``: a database error's text then never carries the
statement's parameters (a model name, a token hash), wherever it is logged.
"""

from __future__ import annotations

import logging
import os
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
from urllib.parse import quote

from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from usageledger.errors import DatabaseError, ErrorCode, LedgerError
from usageledger.store.dialect import lock_user

T = TypeVar("T")
log = logging.getLogger("usageledger.store")


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
        if "is full" in text:  # SQLITE_FULL: "database or disk is full"
            return 503
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return 503
    return 500


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database layer (SQLAlchemy, sqlite3 or psycopg), whose
    text may quote a row or a statement."""
    module = type(exc).__module__
    return isinstance(exc, sa_exc.SQLAlchemyError | sqlite3.Error) or module.startswith("psycopg")


def describe_database_error(exc: BaseException) -> str:
    """What a database error is, for a log: its classes and SQLSTATE or SQLite error name,
    never its text (PostgreSQL's ``DETAIL`` quotes the failing row, a model name included)."""
    orig: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
    parts = [type(exc).__name__]
    if orig is not exc:
        parts.append(f"from {type(orig).__module__}.{type(orig).__qualname__}")
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    if code:
        parts.append(f"({code})")
    return " ".join(parts)


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


#: The engine execution option that carries ``make_engine``'s statement timeout in ms.
STATEMENT_TIMEOUT_OPTION = "usageledger_statement_timeout_ms"

#: SQLite's ``synchronous`` settings an engine may use (WAL mode either way).
SQLITE_SYNC = ("FULL", "NORMAL")


def make_engine(
    url: str,
    *,
    statement_timeout_ms: int = 10_000,
    pool_size: int = 10,
    sqlite_synchronous: str = "FULL",
    create: bool = True,
) -> Engine:
    """Build an instrumented engine for a SQLite or PostgreSQL URL.

    ``sqlite_synchronous`` is ``FULL`` (an acknowledged commit survives a power loss: the
    server) or ``NORMAL`` (it may be lost, never corrupted: the local ledger, whose scans
    redo what was lost); PostgreSQL ignores it. With ``create=False`` a SQLite file that does
    not exist is an error (``unable to open``, a 503) instead of a new, empty database: the
    server and the CLI's commands open only a ledger that is there.
    """
    if sqlite_synchronous not in SQLITE_SYNC:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNC)}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, statement_timeout_ms, sqlite_synchronous, create=create)
    else:
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            hide_parameters=True,
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

        @event.listens_for(engine, "checkout")
        def _server_default_access_mode(dbapi_conn: Any, _rec: Any, _proxy: Any) -> None:
            # A read sets READ ONLY and SQLAlchemy "resets" it to READ WRITE on return, which
            # would make every later transaction on the connection override the server's
            # default_transaction_read_only (what a provider sets on a full disk). Back to the
            # server's default, so that a read-only database refuses writes on every connection.
            if dbapi_conn.read_only is not None:
                dbapi_conn.read_only = None

    engine.update_execution_options(**{STATEMENT_TIMEOUT_OPTION: statement_timeout_ms})
    _instrument(engine)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL, an in-memory or a ``file:`` URI database)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database).expanduser()


def _sqlite_engine(url: str, busy_timeout_ms: int, synchronous: str, *, create: bool) -> Engine:
    parsed = make_url(url)
    path = sqlite_file(url)
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    memory = not parsed.database or parsed.database == ":memory:"
    engine = create_engine(
        parsed,
        hide_parameters=True,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        poolclass=NullPool if memory else None,
    )

    if path is not None and not create:

        @event.listens_for(engine, "do_connect")
        def _existing_only(_dialect: Any, _rec: Any, cargs: Any, cparams: Any) -> None:
            # mode=rw: open the file read-write, never create it (SQLite's default would make
            # a new, empty database where a deleted one was).
            cargs[0] = f"file:{quote(str(cargs[0]))}?mode=rw"
            cparams["uri"] = True

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
        return unavailable(f"{_unavailable_reason(exc)}; retry later")
    return LedgerError("internal error", code=ErrorCode.INTERNAL_ERROR)


def _unavailable_reason(exc: BaseException) -> str:
    """Our own words for why the database cannot take the request (never its text)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    code = str(getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None) or "")
    if code.startswith("SQLITE_READONLY") or code == "25006":
        return "the database is read-only"
    if code == "SQLITE_FULL" or code == "53100":
        return "the database is full"
    return "the database is unavailable"


def unavailable(message: str) -> DatabaseError:
    """A 503 ``DATABASE_UNAVAILABLE`` with ``Retry-After`` and a client-safe ``message``."""
    return DatabaseError(message, code=ErrorCode.DATABASE_UNAVAILABLE, headers={"Retry-After": "5"})


class SqliteFile:
    """Which file a SQLite database is (device and inode), to notice it deleted or replaced.

    The identity is taken when the :class:`Database` is built (or, for a file that is not there
    yet, the first time it is seen). Once the path holds no file or another one, every check
    fails until the process restarts: the connections still open are writing to the old file,
    whose data the next start will not see.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        self.problem: str | None = None
        self._lock = threading.Lock()
        self.identity = self._identify()

    def _identify(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # EACCES, EIO, ESTALE, ENOTDIR: maybe passing, so not latched
            raise unavailable(
                f"the database file cannot be reached ({exc.strerror}); retry later"
            ) from exc
        return st.st_dev, st.st_ino

    def _wal_is_gone(self) -> bool:
        try:
            os.stat(f"{self.path}-wal")
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise unavailable(
                f"the database file cannot be reached ({exc.strerror}); retry later"
            ) from exc
        return False

    def check(self, *, in_write: bool = False) -> None:
        """Raise a 503 :class:`DatabaseError` when the file is gone or is another file (one
        ``stat`` of the path).

        ``in_write``: the caller holds a write transaction, so SQLite has the write-ahead log
        (``-wal``) open and it must exist; if it does not, someone deleted it, and what this
        transaction writes would go to the unlinked log and be lost at the next start (one
        more ``stat``). Outside a transaction the log may rightly be absent (SQLite removes it
        when the last connection closes), so it is not checked there.
        """
        if self.problem is None:
            now = self._identify()
            wal_gone = in_write and now is not None and now == self.identity and self._wal_is_gone()
            with self._lock:
                if self.identity is None and self.problem is None:
                    self.identity = now
                elif (now != self.identity or wal_gone) and self.problem is None:
                    what = (
                        "'s write-ahead log (-wal) was deleted"
                        if wal_gone
                        else " was deleted"
                        if now is None
                        else " was replaced by another file"
                    )
                    self.problem = f"the database file{what} while the server ran"
                    log.error(
                        "%s: %s; refusing every transaction until a restart on a restored file",
                        self.path,
                        self.problem,
                    )
        if self.problem is not None:
            raise unavailable(f"{self.problem}; retry later")
        if self.identity is None:  # not there yet (never created, or not restored yet)
            raise unavailable("the database file is missing; retry later")

    def check_writable(self) -> None:
        """Raise a 503 when the process may not write the file (mode bits, a read-only
        mount). Root passes the mode bits; the write probe in ``Database.check_health``
        still catches a read-only open."""
        if not os.access(self.path, os.W_OK):
            raise unavailable("the database file is read-only; retry later")


class Database:
    """The database boundary: timed connections, serialized write transactions, retries."""

    def __init__(self, engine: Engine, *, retries: int = 3, write_wait_s: float = 10.0) -> None:
        self.engine = engine
        self.retries = retries
        #: SQLite: this process's writers queue here, at most ``write_wait_s`` (the busy
        #: timeout's equivalent), before they take SQLite's write lock.
        self.writers = WriterQueue() if self.is_sqlite else None
        self.write_wait_s = write_wait_s
        path = sqlite_file(str(engine.url)) if self.is_sqlite else None
        #: SQLite on a file: which file it is, checked before every commit.
        self.file = SqliteFile(path.resolve()) if path is not None else None
        #: PostgreSQL: the bound on a wait for the per-user lock (and the statements after it),
        #: set per transaction; the engine's statement timeout (``make_engine``).
        self.lock_timeout_ms: int | None = engine.get_execution_options().get(
            STATEMENT_TIMEOUT_OPTION
        )

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

    def check_health(self) -> None:
        """Raise a 503 :class:`DatabaseError` unless a write could commit now.

        SQLite: the file is the one opened and writable, and a write transaction can start and
        write (``BEGIN IMMEDIATE``, then a delete of no row, which commits nothing): a
        read-only open or ``PRAGMA query_only`` fails there. PostgreSQL:
        ``SHOW transaction_read_only`` (a read-only default or a standby says ``on``). A
        database that answers but cannot take a write is not healthy: every upload would fail.
        """
        if self.file is not None:
            try:
                self.file.check()
                self.file.check_writable()
            except DatabaseError:
                _record(0.0, 503)
                raise

        def probe(conn: Connection) -> None:
            if self.is_sqlite:
                conn.exec_driver_sql("DELETE FROM alembic_version WHERE 0")
            elif conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
                _record(0.0, 503)
                raise unavailable("the database is read-only; retry later")

        self._run(probe, write=True, user_id=None)

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
                            lock_user(conn, user_id, timeout_ms=self.lock_timeout_ms)
                        result = fn(conn)
                        if self.file is not None:
                            self._check_file(self.file, in_write=write)
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

    @staticmethod
    def _check_file(file: SqliteFile, *, in_write: bool) -> None:
        # Before COMMIT acknowledges anything: a write to a deleted file would be lost.
        try:
            file.check(in_write=in_write)
        except DatabaseError:
            _record(0.0, 503)
            raise


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
