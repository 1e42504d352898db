"""Database errors: what they become (a 503 where the database cannot take the write now) and
what they leave in logs (never a statement's parameters, never the failing row)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Persona
from tests.factories import batch, bucket
from usageledger.errors import DatabaseError, ErrorCode, LedgerError
from usageledger.store.engine import Database, make_engine, track_db
from usageledger.store.tables import users


def insert_user_twice(conn: Connection, name: str) -> None:
    """A real unique violation whose parameters (and PostgreSQL's DETAIL) carry ``name``."""
    for _ in range(2):
        conn.execute(insert(users).values(name=name, time_zone="UTC", created_at_ms=1))


def test_an_engine_keeps_parameters_out_of_its_error_text(db: Database) -> None:
    """The text of a failed statement names the statement but none of its values."""
    marker = f"PARAM{uuid.uuid4().hex[:10]}"
    with pytest.raises(DBAPIError) as failed, db.engine.begin() as conn:
        insert_user_twice(conn, marker)
    assert "hidden" in str(failed.value)
    assert marker not in str(failed.value).split("DETAIL")[0]


def test_a_database_error_in_a_request_logs_no_parameter_and_no_row(
    client: TestClient,
    alice: Persona,
    evidence_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A bug that meets a real database error is a 500 whose log line has a traceback and the
    error's SQLSTATE, but not the distinctive value the statement carried."""
    from usageledger.ledger import receipts

    marker = f"MODEL{uuid.uuid4().hex[:10]}"

    def failing(conn: Connection, **_kwargs: Any) -> Any:
        insert_user_twice(conn, marker)

    monkeypatch.setattr(receipts, "apply_batch", failing)
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/ingest", json=batch(bucket()), headers=alice.headers())
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    out, err = capfd.readouterr()
    logged = caplog.text + out + err + evidence_path.read_text()
    assert "Traceback" in caplog.text
    assert "IntegrityError" in caplog.text
    assert marker not in logged
    assert marker not in response.text


@pytest.mark.postgres
@pytest.mark.parametrize(
    "errcode", ["disk_full", "out_of_memory", "too_many_connections", "read_only_sql_transaction"]
)
def test_a_postgresql_server_that_cannot_take_the_write_now_is_a_503(
    pg_server_url: str, errcode: str
) -> None:
    """DiskFull (53100), the rest of class 53 and a read-only transaction (25006), raised by a
    real server, are 503 DATABASE_UNAVAILABLE with Retry-After, not a 500."""
    engine = make_engine(pg_server_url)
    db = Database(engine, retries=0)
    statement = f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{errcode}'; END $$"
    try:
        with track_db() as stats, pytest.raises(LedgerError) as failed:
            db.write(lambda conn: conn.execute(text(statement)))
    finally:
        engine.dispose()
    assert isinstance(failed.value, DatabaseError)
    assert (failed.value.status, failed.value.code) == (503, ErrorCode.DATABASE_UNAVAILABLE)
    assert failed.value.headers["Retry-After"]
    assert stats.worst_status == 503


def test_a_real_sqlite_full_error_is_a_503(tmp_path: Path) -> None:
    """SQLite's SQLITE_FULL (here from max_page_count) is 503 with Retry-After, not a 500."""
    engine = make_engine(f"sqlite:///{tmp_path / 'full.db'}")
    db = Database(engine, retries=0)

    def grow(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x BLOB)")
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        conn.exec_driver_sql("INSERT INTO t VALUES (randomblob(100000))")

    try:
        with pytest.raises(LedgerError) as failed:
            db.write(grow)
    finally:
        engine.dispose()
    assert (failed.value.status, failed.value.code) == (503, ErrorCode.DATABASE_UNAVAILABLE)
    assert failed.value.headers["Retry-After"]
