"""The fault proxy itself, and the engine's round-trip deadline that a stalled proxy needs."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from bench.harness import libpq_url
from tests.faults.conftest import PG_PORT, db_url
from tests.faults.proxy import FaultProxy
from usageledger.store.engine import (
    classify,
    make_engine,
    round_trip_seconds,
    to_database_error,
)
from usageledger.store.pg import RoundTripTimeout

# Fault injection waits out real stalls: slow, so `make test-fast` leaves it to `make test`.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def proxied(proxy: FaultProxy, name: str) -> str:
    """A libpq URL of database ``name`` through ``proxy``."""
    return libpq_url(db_url(name, proxy.port))


def test_it_forwards_queries_while_healthy(faults_db: str) -> None:
    """A healthy proxy is transparent, with or without added latency."""
    with FaultProxy(PG_PORT) as proxy:
        with psycopg.connect(proxied(proxy, faults_db), connect_timeout=5) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
            proxy.latency(0.02)
            assert conn.execute("SELECT 'slow'").fetchone() == ("slow",)
        assert proxy.accepted == 1


def test_down_resets_open_connections_and_refuses_new_ones(faults_db: str) -> None:
    """A database that is down drops what was open and accepts nothing new until healthy."""
    with FaultProxy(PG_PORT) as proxy:
        conn = psycopg.connect(proxied(proxy, faults_db), connect_timeout=5)
        proxy.down()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proxied(proxy, faults_db), connect_timeout=5)
        proxy.healthy()
        with psycopg.connect(proxied(proxy, faults_db), connect_timeout=5) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)


def test_it_only_forwards_to_the_loopback_address() -> None:
    """The proxy refuses to point anywhere but 127.0.0.1."""
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(PG_PORT, upstream_host="10.0.0.1")


def test_it_stops_by_itself() -> None:
    """Past its lifetime the proxy closes everything, even if nobody stops it."""
    proxy = FaultProxy(PG_PORT, max_lifetime_s=0.2).start()
    deadline = time.monotonic() + 10
    while proxy.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proxy.running
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{proxy.port}/x", connect_timeout=2)


def test_a_stalled_round_trip_gives_up_at_the_deadline_and_is_a_504(faults_db: str) -> None:
    """Without an answer a statement fails after the round-trip deadline (never hangs), the
    connection is discarded, and the next statement gets a fresh one."""
    with FaultProxy(PG_PORT) as proxy:
        engine = make_engine(db_url(faults_db, proxy.port), statement_timeout_ms=500, pool_size=1)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
            proxy.stall_on(b"SELECT 2")
            started = time.monotonic()
            with pytest.raises(sa_exc.OperationalError) as raised, engine.connect() as conn:
                conn.execute(text("SELECT 2"))
            waited = time.monotonic() - started
            proxy.healthy()
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 3")).scalar() == 3
        finally:
            engine.dispose()
    assert isinstance(raised.value.orig, RoundTripTimeout)
    assert raised.value.connection_invalidated
    assert waited >= round_trip_seconds(500)
    assert classify(raised.value) == 504
    error = to_database_error(raised.value)
    assert (error.status, str(error.code)) == (504, "DATABASE_TIMEOUT")


def test_the_deadline_leaves_a_slow_but_answering_statement_to_the_server(
    faults_db: str,
) -> None:
    """A statement the server itself cancels at statement_timeout is the server's 504."""
    engine = make_engine(db_url(faults_db, PG_PORT), statement_timeout_ms=300, pool_size=1)
    try:
        with pytest.raises(sa_exc.OperationalError) as raised, engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()
    assert isinstance(raised.value.orig, psycopg.errors.QueryCanceled)
    assert classify(raised.value) == 504
