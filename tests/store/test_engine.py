"""The database boundary on SQLite: this process's writers queue for the one write lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from usageledger.errors import DatabaseError, ErrorCode
from usageledger.store.engine import Database, WriterQueue, make_engine, track_db


@pytest.fixture
def tight(tmp_path: Path) -> Database:
    """A SQLite database whose busy timeout (100 ms) is far shorter than a burst of writers."""
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", statement_timeout_ms=100)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE hits (n INTEGER NOT NULL)"))
    return Database(engine, write_wait_s=30.0)


def test_concurrent_sqlite_writers_serialize_without_database_is_locked(tight: Database) -> None:
    """24 threads × 10 writes that each hold the write lock 5 ms: every one commits, none
    meets SQLite's busy timeout (100 ms, a fraction of the whole burst)."""

    def hit(conn: Connection) -> None:
        conn.execute(text("INSERT INTO hits (n) VALUES (1)"))
        time.sleep(0.005)  # a write transaction that takes a while

    def worker(_: int) -> int:
        for _ in range(10):
            tight.write(hit)
        return 10

    with ThreadPoolExecutor(24) as pool:
        done = sum(pool.map(worker, range(24)))
    count = tight.read(lambda conn: conn.execute(text("SELECT COUNT(*) FROM hits")).scalar())
    assert done == count == 240
    tight.engine.dispose()


def test_reads_do_not_queue_behind_a_writer(tight: Database) -> None:
    """While one write transaction is open, a read in another thread answers at once (WAL)."""
    inside, release = threading.Event(), threading.Event()

    def slow_write(conn: Connection) -> None:
        conn.execute(text("INSERT INTO hits (n) VALUES (1)"))
        inside.set()
        release.wait(5)

    writer = threading.Thread(target=lambda: tight.write(slow_write))
    writer.start()
    assert inside.wait(5)
    started = time.perf_counter()
    count = tight.read(lambda conn: conn.execute(text("SELECT COUNT(*) FROM hits")).scalar())
    assert count == 0
    assert time.perf_counter() - started < 0.5
    release.set()
    writer.join()
    tight.engine.dispose()


def test_a_writer_that_waits_too_long_gets_504_with_evidence(tmp_path: Path) -> None:
    """No write slot within write_wait_s: DATABASE_TIMEOUT (504), recorded as upstream 504."""
    db = Database(make_engine(f"sqlite:///{tmp_path / 'w.db'}"), write_wait_s=0.05)
    assert db.writers is not None
    assert db.writers.acquire(1.0)  # another writer holds the slot
    try:
        with track_db() as stats, pytest.raises(DatabaseError) as refused:
            db.write(lambda conn: conn.execute(text("SELECT 1")))
    finally:
        db.writers.release()
    assert refused.value.status == 504
    assert refused.value.code == ErrorCode.DATABASE_TIMEOUT
    assert stats.worst_status == 504
    assert db.write(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1  # free again
    db.engine.dispose()


def test_time_queued_for_the_write_slot_is_reported_apart_from_database_time(
    tmp_path: Path,
) -> None:
    """A write that waited 100 ms for the slot reports it as wait_ms, not as database time."""
    db = Database(make_engine(f"sqlite:///{tmp_path / 'w.db'}"))
    assert db.writers is not None
    assert db.writers.acquire(1.0)
    threading.Timer(0.1, db.writers.release).start()
    with track_db() as stats:
        db.write(lambda conn: conn.execute(text("SELECT 1")))
    assert stats.wait_ms >= 90
    assert stats.elapsed_ms < stats.wait_ms
    db.engine.dispose()


def test_the_writer_queue_serves_writers_in_arrival_order() -> None:
    """Waiters get the slot first come, first served (threading.Lock lets newcomers barge)."""
    queue = WriterQueue()
    assert queue.acquire(1.0)
    order: list[int] = []

    def wait(n: int) -> None:
        assert queue.acquire(5.0)
        order.append(n)
        queue.release()

    threads = []
    for n in range(8):
        thread = threading.Thread(target=wait, args=(n,))
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # let it join the queue before the next one arrives
    queue.release()
    for thread in threads:
        thread.join()
    assert order == list(range(8))


def test_a_waiter_that_times_out_leaves_the_queue_working() -> None:
    """A timed-out waiter is removed; the next release goes to the one behind it."""
    queue = WriterQueue()
    assert queue.acquire(1.0)
    assert not queue.acquire(0.01)
    got = threading.Event()
    thread = threading.Thread(target=lambda: queue.acquire(5.0) and got.set())
    thread.start()
    time.sleep(0.02)
    queue.release()
    thread.join()
    assert got.is_set()
    queue.release()
    assert queue.acquire(0.01)


def test_postgresql_has_no_process_writer_queue(db: Database) -> None:
    """Only SQLite queues writers in the process; PostgreSQL serializes per user instead."""
    assert (db.writers is None) == (not db.is_sqlite)


def test_a_sqlite_command_does_not_import_psycopg(tmp_path: Path) -> None:
    """Opening and using a SQLite engine leaves psycopg unloaded (a fresh interpreter)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    probe = (
        "import sys\n"
        "from sqlalchemy import text\n"
        "from usageledger.store.engine import Database, make_engine\n"
        f"db = Database(make_engine({url!r}))\n"
        "db.write(lambda c: c.execute(text('CREATE TABLE t (x INTEGER)')))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_only_full_or_normal_synchronous_is_accepted(tmp_path: Path) -> None:
    """A SQLite engine syncs FULL or NORMAL; anything else is refused before connecting."""
    with pytest.raises(ValueError, match="FULL, NORMAL"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="OFF")
