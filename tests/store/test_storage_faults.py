"""Storage faults under a running server: a deleted or replaced SQLite file, a read-only
database, a full disk. Each is a 503 ``DATABASE_UNAVAILABLE`` with ``Retry-After`` before
anything is acknowledged, ``/healthz`` says so, and nothing partial is written.

Every fault is real: files are deleted and replaced on disk, SQLite is opened read-only
(``mode=ro``, what SQLite falls back to when it may not write the file) or held to its
current size with ``PRAGMA max_page_count`` (a genuine ``SQLITE_FULL``), and PostgreSQL
sessions run with ``default_transaction_read_only``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from bench.harness import libpq_url
from tests.conftest import Persona, make_persona
from tests.factories import batch, bucket
from tests.helpers import evidence_lines, written_rows
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine


@dataclass
class Served:
    """A test client of the real app, the database under it and Alice."""

    client: TestClient
    direct: Engine
    alice: Persona
    evidence: Path

    def ingest(self, body: Any) -> Any:
        """POST a batch as Alice."""
        return self.client.post("/v1/ingest", json=body, headers=self.alice.headers())

    def line(self, response: Any) -> dict[str, Any]:
        """The evidence line of ``response``."""
        rid = response.headers["x-request-id"]
        return next(line for line in evidence_lines(self.evidence) if line["request_id"] == rid)


def settings_for(url: str, tmp_path: Path) -> Settings:
    """Settings of a test server on ``url``."""
    return Settings(
        home=tmp_path / "home",
        database_url=libpq_url(url),
        log_file=str(tmp_path / "evidence.log"),
        db_retries=1,
    )


@pytest.fixture
def sqlite_path(tmp_path: Path, sqlite_template: Path) -> Path:
    """A migrated SQLite file of this test's own, as ``server.db``."""
    path = tmp_path / "server.db"
    shutil.copy(sqlite_template, path)
    return path


@pytest.fixture
def on_sqlite(sqlite_path: Path, tmp_path: Path) -> Iterator[Served]:
    """The app as ``usageledger serve`` builds it (its own engine) over ``server.db``."""
    url = f"sqlite:///{sqlite_path}"
    direct = make_engine(url)
    alice = make_persona(Database(direct), "alice", "Europe/Berlin")
    settings = settings_for(url, tmp_path)
    logger = EvidenceLogger(settings.log_file)
    with TestClient(create_app(settings, evidence=logger), raise_server_exceptions=False) as client:
        yield Served(client, direct, alice, Path(settings.log_file))
    logger.close()
    direct.dispose()


def assert_unavailable(response: Any) -> None:
    """A 503 DATABASE_UNAVAILABLE in the one error shape, with Retry-After."""
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert int(response.headers["retry-after"]) > 0


def test_an_upload_after_the_database_file_is_deleted_is_refused(
    on_sqlite: Served, sqlite_path: Path
) -> None:
    """Deleting server.db and its -wal and -shm under the server turns uploads and /healthz
    into 503s (never an `inserted` that a restart loses), and no empty file appears."""
    assert on_sqlite.ingest(batch(bucket(slot=0))).status_code == 200
    assert on_sqlite.client.get("/healthz").status_code == 200
    on_sqlite.direct.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)

    refused = on_sqlite.ingest(batch(bucket(slot=1)))
    assert_unavailable(refused)
    line = on_sqlite.line(refused)
    assert (line["status"], line["error_code"]) == (503, "DATABASE_UNAVAILABLE")
    assert line["upstream_status"] == 503  # the database's fault, for `attribute`
    health = on_sqlite.client.get("/healthz")
    assert_unavailable(health)
    assert "deleted" in health.json()["error"]["message"]
    assert not sqlite_path.exists()


def test_an_upload_after_only_the_write_ahead_log_is_deleted_is_refused(
    on_sqlite: Served, sqlite_path: Path
) -> None:
    """Deleting server.db-wal and -shm (the main file stays) would send every later commit to
    an unlinked log that the next start never reads: uploads and /healthz get 503 instead."""
    assert on_sqlite.ingest(batch(bucket(slot=0))).status_code == 200
    assert on_sqlite.client.get("/healthz").status_code == 200
    on_sqlite.direct.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{sqlite_path}{suffix}").unlink()

    assert_unavailable(on_sqlite.ingest(batch(bucket(slot=1))))
    health = on_sqlite.client.get("/healthz")
    assert_unavailable(health)
    assert "write-ahead log" in health.json()["error"]["message"]


def test_a_database_path_that_cannot_be_reached_is_a_503_not_a_500(
    on_sqlite: Served, sqlite_path: Path, tmp_path: Path
) -> None:
    """A stat that fails for another reason than a missing file (here ELOOP: a symlink loop
    where the file was) is a retryable 503, not a traceback; it is not latched, so the file
    put back serves again without a restart."""
    assert on_sqlite.ingest(batch(bucket(slot=0))).status_code == 200
    aside = tmp_path / "aside.db"
    sqlite_path.rename(aside)
    sqlite_path.symlink_to(sqlite_path.name)  # server.db -> server.db
    refused = on_sqlite.ingest(batch(bucket(slot=1)))
    assert_unavailable(refused)
    assert "cannot be reached" in refused.json()["error"]["message"]

    sqlite_path.unlink()
    aside.rename(sqlite_path)
    assert on_sqlite.ingest(batch(bucket(slot=1))).status_code == 200


def test_an_upload_after_the_database_file_is_replaced_is_refused(
    on_sqlite: Served, sqlite_path: Path, tmp_path: Path
) -> None:
    """A file moved over server.db (a restore done under a running server) is not the file
    the server's connections write to: uploads and /healthz get 503 until a restart."""
    assert on_sqlite.ingest(batch(bucket(slot=0))).status_code == 200
    copy = tmp_path / "copy.db"
    shutil.copy(sqlite_path, copy)
    os.replace(copy, sqlite_path)

    assert_unavailable(on_sqlite.ingest(batch(bucket(slot=1))))
    health = on_sqlite.client.get("/healthz")
    assert_unavailable(health)
    assert "replaced" in health.json()["error"]["message"]
    # Nothing was committed to the new file either.
    assert written_rows(make_engine(f"sqlite:///{sqlite_path}"))[0] == 1


def test_a_server_restarted_on_the_restored_file_serves_again(
    sqlite_path: Path, tmp_path: Path
) -> None:
    """The refusal lasts until a restart: a new app over the restored file is healthy."""
    url = f"sqlite:///{sqlite_path}"
    settings = settings_for(url, tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        backup = tmp_path / "backup.db"
        shutil.copy(sqlite_path, backup)
        os.replace(backup, sqlite_path)
        assert client.get("/healthz").status_code == 503
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200


def test_the_server_never_creates_an_empty_database_where_its_file_was(
    sqlite_path: Path, tmp_path: Path
) -> None:
    """Started on a missing file, the server answers 503 and leaves the path empty."""
    sqlite_path.unlink()
    settings = settings_for(f"sqlite:///{sqlite_path}", tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_unavailable(client.get("/healthz"))
        upload = client.post(
            "/v1/ingest", json=batch(bucket()), headers={"Authorization": "Bearer ul_dev_x"}
        )
        assert_unavailable(upload)
    assert not sqlite_path.exists()


def read_only_engine(db_url: str) -> Engine:
    """An engine whose every session is read-only: SQLite opened with ``mode=ro``, PostgreSQL
    sessions with ``default_transaction_read_only``."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        return make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    engine = make_engine(db_url)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = on")
        dbapi_conn.commit()

    return engine


def test_a_read_only_database_fails_healthz_and_refuses_uploads(
    db: Database, db_url: str, settings: Settings
) -> None:
    """/healthz is not ok on a database that answers but cannot write, and an upload gets 503
    with Retry-After instead of a 500; nothing is written."""
    alice = make_persona(db, "alice", "Europe/Berlin")
    engine = read_only_engine(db_url)
    try:
        app = create_app(settings, engine=engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            health = client.get("/healthz")
            assert_unavailable(health)
            assert "read-only" in health.json()["error"]["message"]
            refused = client.post("/v1/ingest", json=batch(bucket()), headers=alice.headers())
            assert_unavailable(refused)
            assert client.get("/v1/me", headers=alice.headers(read=True)).status_code == 200
    finally:
        engine.dispose()
    assert written_rows(db.engine) == (0, 0, 0, 0)


def test_a_full_disk_is_a_503_and_leaves_nothing_half_written(
    sqlite_path: Path, tmp_path: Path
) -> None:
    """SQLite's `database or disk is full` is a 503 with Retry-After (not a 500), and the
    batch that met it is wholly rolled back."""
    url = f"sqlite:///{sqlite_path}"
    direct = make_engine(url)
    alice = make_persona(Database(direct), "alice", "Europe/Berlin")
    with direct.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    full = make_engine(url)

    @event.listens_for(full, "connect")
    def _no_room(dbapi_conn: Any, _record: Any) -> None:
        # The file may not grow by a single page: SQLite's own SQLITE_FULL, as on a full disk.
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    settings = settings_for(url, tmp_path)
    try:
        with TestClient(create_app(settings, engine=full), raise_server_exceptions=False) as c:
            big = batch(*(bucket(slot=i, model=f"model-{i % 40}") for i in range(500)))
            refused = c.post("/v1/ingest", json=big, headers=alice.headers())
            assert_unavailable(refused)
            assert "full" in refused.json()["error"]["message"]
    finally:
        full.dispose()
    assert written_rows(direct) == (0, 0, 0, 0)
    direct.dispose()
