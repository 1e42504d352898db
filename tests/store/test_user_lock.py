"""The per-user write lock: a row lock in the user's own table row, bounded per transaction.

On PostgreSQL (and so on each Citus shard) writers of one user queue on their ``user_locks``
row; on SQLite nothing changes: ``BEGIN IMMEDIATE`` takes the database's one write lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, select, update

from bench.harness import libpq_url
from tests.conftest import Persona
from tests.factories import bucket
from usageledger.config import Settings
from usageledger.errors import DatabaseError, ErrorCode
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.tables import devices, user_locks


def raw_url(db_url: str) -> str:
    """The libpq URL of a test database."""
    return libpq_url(db_url)


@contextmanager
def holding_the_lock(db_url: str, user_id: int) -> Iterator[None]:
    """Hold ``user_id``'s write lock from a connection of its own until the block ends
    (SQLite: the database's write lock)."""
    if db_url.startswith("sqlite"):
        raw = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    with psycopg.connect(raw_url(db_url)) as raw:
        raw.execute(
            "INSERT INTO user_locks (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user_id,)
        )
        raw.commit()
        raw.execute("SELECT user_id FROM user_locks WHERE user_id = %s FOR UPDATE", (user_id,))
        yield
        raw.rollback()


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def waiting_on_a_lock(db_url: str) -> bool:
    """Whether some other backend of the test database waits for a lock on user_locks."""
    with psycopg.connect(raw_url(db_url), autocommit=True) as raw:
        row = raw.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%user_locks%'"
        ).fetchone()
    return bool(row and row[0])


def blocked(db_url: str, future: Future[object]) -> bool:
    """Whether the writer behind ``future`` is waiting for the lock (and has not finished)."""
    if db_url.startswith("sqlite"):
        time.sleep(0.3)  # SQLite shows no waiters; the writer must still be running after this
        return not future.done()
    return wait_until(lambda: waiting_on_a_lock(db_url)) and not future.done()


def read_counter(conn: Connection, user_id: int) -> int:
    """The test's counter: the user's device's ``last_upload_at_ms`` (0 when unset)."""
    found = conn.execute(
        select(devices.c.last_upload_at_ms).where(devices.c.user_id == user_id)
    ).scalar()
    return int(found or 0)


def test_two_writers_of_one_user_on_different_connections_are_serialised(
    db_url: str, db: Database, alice: Persona
) -> None:
    """The second writer waits until the first commits, then sees its write: no lost update."""
    other = Database(make_engine(db_url, statement_timeout_ms=20_000))
    first_in, release = threading.Event(), threading.Event()

    def bump(conn: Connection, *, hold: bool) -> int:
        seen = read_counter(conn, alice.user_id)
        if hold:
            first_in.set()
            release.wait(20)
        conn.execute(
            update(devices)
            .where(devices.c.user_id == alice.user_id)
            .values(last_upload_at_ms=seen + 1)
        )
        return seen

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(db.write, lambda c: bump(c, hold=True), user_id=alice.user_id)
        assert first_in.wait(20)
        second = pool.submit(other.write, lambda c: bump(c, hold=False), user_id=alice.user_id)
        assert blocked(db_url, second), "the second writer did not wait for the first"
        release.set()
        assert first.result(20) == 0
        assert second.result(20) == 1  # it read the first writer's committed value
    assert db.read(lambda conn: read_counter(conn, alice.user_id)) == 2
    other.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_writer_of_another_user_is_not_held_up(
    db_url: str, db: Database, alice: Persona, bob: Persona
) -> None:
    """While alice's lock is held elsewhere, bob's write commits at once."""
    with holding_the_lock(db_url, alice.user_id):
        assert db.write(lambda conn: read_counter(conn, bob.user_id), user_id=bob.user_id) == 0


def test_the_lock_row_exists_only_on_postgresql(db_url: str, db: Database, alice: Persona) -> None:
    """PostgreSQL makes one user_locks row per user on its first locked write; SQLite none."""
    for _ in range(2):
        db.write(lambda conn: read_counter(conn, alice.user_id), user_id=alice.user_id)
    rows = db.read(lambda conn: conn.execute(select(user_locks.c.user_id)).scalars().all())
    assert rows == ([] if db.is_sqlite else [alice.user_id])


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_lock_wait_is_bounded_by_the_transaction_itself(db_url: str, alice: Persona) -> None:
    """A session without timeouts (a pooler drops start-up options) still gives up on the lock
    when the server's statement timeout fires, set by the transaction (SET LOCAL), not when
    the client's round-trip deadline does."""
    engine = make_engine(db_url, statement_timeout_ms=300)

    @event.listens_for(engine, "connect")
    def _no_session_timeouts(dbapi_conn: psycopg.Connection[object], _rec: object) -> None:
        dbapi_conn.execute("SET statement_timeout = 0")
        dbapi_conn.execute("SET lock_timeout = 0")
        dbapi_conn.commit()

    db = Database(engine, retries=0)
    with holding_the_lock(db_url, alice.user_id), pytest.raises(DatabaseError) as caught:
        db.write(lambda conn: None, user_id=alice.user_id)
    assert caught.value.code == ErrorCode.DATABASE_TIMEOUT
    assert caught.value.status == 504
    cause = getattr(caught.value.__cause__, "orig", None)
    assert isinstance(cause, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable)
    engine.dispose()


@pytest.fixture
def impatient_client(settings: Settings, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The app over an engine whose statements (and lock waits) give up after 400 ms."""
    engine: Engine = make_engine(db_url, statement_timeout_ms=400)
    logger = EvidenceLogger(str(tmp_path / "impatient.log"))
    app = create_app(settings, engine=engine, evidence=logger)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    logger.close()
    engine.dispose()


def test_a_blocked_upload_gives_up_with_504_and_retry_after(
    db_url: str, impatient_client: TestClient, alice: Persona
) -> None:
    """An upload that cannot get its user's lock in time answers 504 DATABASE_TIMEOUT with
    Retry-After (the documented answer to a database that does not answer in time), and
    succeeds once the lock is free."""
    body = json.dumps({"schema_version": 2, "buckets": [bucket()]})
    headers = {"Content-Type": "application/json", **alice.headers()}
    with holding_the_lock(db_url, alice.user_id):
        response = impatient_client.post("/v1/ingest", content=body, headers=headers)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "DATABASE_TIMEOUT"
    assert int(response.headers["Retry-After"]) > 0
    again = impatient_client.post("/v1/ingest", content=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["inserted"] == 1
