"""Fixtures of the fault-injection tests: the real server over a real PostgreSQL database,
reached through :class:`~tests.faults.proxy.FaultProxy`.

``rig`` runs ``create_app`` under uvicorn in a thread on 127.0.0.1 (``bench.harness.serve_app``),
its engine connected to PostgreSQL through the proxy, and gives the test an httpx client with a
bounded timeout, a direct engine that bypasses the proxy (to check what was really written),
and the evidence lines.
The database is this module's own: made by ``bench.harness.pg_database``, migrated, and dropped
at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url

from bench.harness import pg_database, pg_problem, serve_app
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, Persona, make_persona
from tests.faults.proxy import LOOPBACK, FaultProxy
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine, round_trip_seconds
from usageledger.store.migrate import upgrade
from usageledger.store.tables import (
    bucket_revisions,
    ingest_receipts,
    metadata,
    usage_buckets,
    usage_daily,
)

pytestmark = pytest.mark.postgres

#: The server's database settings in these tests: short, but generous for a busy machine.
STATEMENT_TIMEOUT_MS = 1500
DB_RETRIES = 1
#: The client-side deadline of one round trip the server's engine gets from make_engine.
ROUND_TRIP_S = round_trip_seconds(STATEMENT_TIMEOUT_MS)
#: Every HTTP call is bounded by this; a call that hits it failed the "never a hang" promise.
CLIENT_TIMEOUT_S = 30.0
#: Words of database internals that must never reach a client.
INTERNALS = ("psycopg", "sql", "connection", "select ", "insert ", "traceback", "postgres")

WRITTEN_TABLES = (bucket_revisions, usage_buckets, usage_daily, ingest_receipts)
#: The port of the test PostgreSQL server, which the proxy forwards to.
PG_PORT = make_url(PG_ADMIN_URL).port or 5432


def _pg_problem() -> str | None:
    url = make_url(PG_ADMIN_URL)
    if url.host not in (LOOPBACK, "localhost"):
        return f"fault-injection tests need PostgreSQL on {LOOPBACK}, not {url.host}"
    problem = pg_problem()
    return None if problem is None else f"fault-injection tests skipped: {problem}"


@pytest.fixture(scope="session")
def faults_db() -> Iterator[str]:
    """A fresh, migrated database of its own (its name), dropped at the end of the session."""
    problem = _pg_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(problem + " (USAGELEDGER_REQUIRE_POSTGRES=1)")
        pytest.skip(problem)
    with pg_database("ul_faults") as url:
        name = make_url(url).database
        assert name is not None
        engine = make_engine(db_url(name, PG_PORT))
        upgrade(engine)
        engine.dispose()
        yield name


def db_url(name: str, port: int) -> str:
    """The SQLAlchemy URL of database ``name`` on the loopback ``port``."""
    user = make_url(PG_ADMIN_URL).username or "postgres"
    # No TLS, so that the proxy can see which statement a connection is sending.
    return f"postgresql+psycopg://{user}@{LOOPBACK}:{port}/{name}?sslmode=disable"


def _send_statement_text_every_time(engine: Engine) -> None:
    """psycopg prepares a statement after five runs and then sends only its name; the proxy
    triggers on statement text, so these tests' connections do not prepare. (``executemany``
    always prepares: the bucket inserts are sent by name after a connection's first batch, so
    the tests trigger on the statements that follow them, such as ``DELETE FROM usage_daily``.)
    """

    @event.listens_for(engine, "do_connect", insert=True)
    def _no_prepare(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["prepare_threshold"] = None


@dataclass
class Rig:
    """The running server, its proxy, a client and a way around the proxy."""

    base_url: str
    proxy: FaultProxy
    direct: Engine
    db: Database
    evidence_path: Path
    http: httpx.Client
    settings: Settings
    sent: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One bounded HTTP call; it must return (with any status) before the client timeout."""
        started = time.monotonic()
        response = self.http.request(method, path, **kwargs)
        assert time.monotonic() - started < CLIENT_TIMEOUT_S
        self.sent.append(response.headers["x-request-id"])
        return response

    def ingest(self, who: Persona, body: Any, **headers: str) -> httpx.Response:
        """POST a batch as JSON with the persona's device token."""
        return self.request(
            "POST",
            "/v1/ingest",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", **who.headers(), **headers},
        )

    def evidence_line(self, request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The request's evidence line (it is written just after the response, so wait for it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [line for line in self.evidence_lines() if line.get("request_id") == request_id]
            if lines or time.monotonic() > deadline:
                assert len(lines) == 1, f"{len(lines)} evidence lines for request {request_id}"
                return lines[0]
            time.sleep(0.02)

    def evidence_lines(self) -> list[dict[str, Any]]:
        """Every evidence line written so far."""
        if not self.evidence_path.exists():
            return []
        raw = self.evidence_path.read_bytes()
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the four tables ingest writes, read around the proxy."""
        with self.direct.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
                for table in WRITTEN_TABLES
            }

    def wait_for_backends_to_settle(self, timeout_s: float = 15.0) -> None:
        """Wait until no session of this database is left in an open transaction (a dropped
        connection's backend rolls back once it notices), so a check sees settled data."""
        name = self.direct.url.database
        deadline = time.monotonic() + timeout_s
        query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"
            " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
        )
        while time.monotonic() < deadline:
            with self.direct.connect() as conn:
                if conn.execute(query, {"name": name}).scalar_one() == 0:
                    return
            time.sleep(0.05)


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def rig(faults_db: str, tmp_path: Path) -> Iterator[Rig]:
    """The real server over PostgreSQL through a healthy fault proxy, and a bounded client."""
    direct = make_engine(db_url(faults_db, PG_PORT), statement_timeout_ms=20_000, pool_size=2)
    _truncate(direct)
    with FaultProxy(PG_PORT) as proxy:
        settings = Settings(
            home=tmp_path / "home",
            database_url=db_url(faults_db, proxy.port),
            log_file=str(tmp_path / "evidence.log"),
            statement_timeout_ms=STATEMENT_TIMEOUT_MS,
            db_retries=DB_RETRIES,
            db_pool_size=4,
            rate_per_minute=60_000,
            rate_burst=10_000,
        )
        engine = make_engine(
            settings.resolved_database_url,
            statement_timeout_ms=settings.statement_timeout_ms,
            pool_size=settings.db_pool_size,
        )
        _send_statement_text_every_time(engine)
        logger = EvidenceLogger(settings.log_file)
        app = create_app(settings, engine=engine, evidence=logger)
        try:
            with (
                serve_app(app, log_level="critical") as running,
                httpx.Client(base_url=running.base_url, timeout=CLIENT_TIMEOUT_S) as http,
            ):
                yield Rig(
                    base_url=running.base_url,
                    proxy=proxy,
                    direct=direct,
                    db=Database(direct),
                    evidence_path=Path(settings.log_file),
                    http=http,
                    settings=settings,
                )
        finally:
            engine.dispose()
            logger.close()
    direct.dispose()


@pytest.fixture
def alice(rig: Rig) -> Persona:
    """Alice, in Europe/Berlin, created around the proxy."""
    return make_persona(rig.db, "alice", "Europe/Berlin")


@pytest.fixture
def bob(rig: Rig) -> Persona:
    """Bob, in America/New_York, created around the proxy."""
    return make_persona(rig.db, "bob", "America/New_York")
