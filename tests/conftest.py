"""Fixtures: a real database per test (SQLite file, or the local PostgreSQL), personas, apps.

``db_url`` runs a test on both engines. PostgreSQL tests need the server at
``USAGELEDGER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it is
unreachable they are skipped with the reason, unless ``USAGELEDGER_REQUIRE_POSTGRES=1`` (CI),
which turns the skip into a failure.

``--hash-partitions N`` (or ``USAGELEDGER_TEST_HASH_PARTITIONS=N``) adds a third engine to the
modules in :data:`HASH_PARTITIONED_MODULES`: PostgreSQL with every distributed table split into
N hash partitions by ``user_id`` (``store/partitioned.py``, docs/scaling.md), the layout that
proves each per-user statement reaches one partition, as Citus needs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text

from bench.harness import (
    PG_ADMIN,
    libpq_url,
    pg_database,
    pg_problem,
)
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade
from usageledger.store.tables import metadata

PG_ADMIN_URL = PG_ADMIN
REQUIRE_PG = os.environ.get("USAGELEDGER_REQUIRE_POSTGRES") == "1"
# Property tests assert behaviour, never speed: on a shared two-core machine generating an
# example can take longer than Hypothesis's time-based health check and per-example deadline
# allow, which would fail a correct test. Every other health check stays on.
hypothesis_settings.register_profile(
    "usageledger", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("usageledger")

#: The modules that also run on the hash-partitioned layout when it is asked for.
HASH_PARTITIONED_MODULES = (
    "tests/api/test_ingest.py",
    "tests/api/test_read_endpoints.py",
    "tests/ops/test_replay.py",
    "tests/ops/test_replay_paths.py",
    "tests/ops/test_verify.py",
)
HASH_ENV = "USAGELEDGER_TEST_HASH_PARTITIONS"

LOG_DIR = (
    Path(os.environ.get("USAGELEDGER_TEST_LOG_DIR", ""))
    if os.environ.get("USAGELEDGER_TEST_LOG_DIR")
    else None
)


def _pg_problem() -> str | None:
    problem = pg_problem()
    return None if problem is None else f"PostgreSQL tests skipped: {problem}"


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unreachable (fail it instead under
    ``USAGELEDGER_REQUIRE_POSTGRES=1``)."""
    problem = _pg_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(problem + " (USAGELEDGER_REQUIRE_POSTGRES=1)")
        pytest.skip(problem)


@contextmanager
def throwaway_pg(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database of the calling test (``bench.harness.pg_database``),
    dropped afterwards; skipped as :func:`require_postgres` says."""
    require_postgres()
    with pg_database(prefix) as url:
        yield url


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--hash-partitions N``: also run the listed modules on the hash-partitioned layout."""
    parser.addoption(
        "--hash-partitions",
        type=int,
        default=int(os.environ.get(HASH_ENV) or 0),
        help="also run the ingest, read, replay and verify tests on PostgreSQL with every "
        f"distributed table in N hash partitions by user_id (or {HASH_ENV}=N)",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front whether the PostgreSQL tests run."""
    problem = _pg_problem()
    lines = [problem or f"PostgreSQL tests run against {PG_ADMIN_URL}"]
    partitions = config.getoption("--hash-partitions")
    if partitions:
        lines.append(f"and on {partitions} hash partitions: {', '.join(HASH_PARTITIONED_MODULES)}")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the hash-partitioned runs only when asked for, and only in the listed modules."""
    wanted = bool(config.getoption("--hash-partitions"))
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        hashed = callspec is not None and callspec.params.get("db_url") == "postgres-hash"
        module = item.nodeid.split("::", 1)[0]
        (drop if hashed and not (wanted and module in HASH_PARTITIONED_MODULES) else keep).append(
            item
        )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_hash_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of the hash-partitioned layout for this session, dropped after."""
    from usageledger.store.partitioned import create_hash_partitioned

    with throwaway_pg("ul_test_hash") as url:
        engine = make_engine(url)
        create_hash_partitioned(engine, request.config.getoption("--hash-partitions") or 4)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with throwaway_pg("ul_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-hash", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database on each engine (``postgres-hash``: the hash-partitioned
    layout, kept only where asked for; see the module docstring)."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    fixture = "pg_hash_url" if request.param == "postgres-hash" else "pg_server_url"
    url: str = request.getfixturevalue(fixture)
    _truncate_all(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine over ``db_url``."""
    eng = make_engine(db_url, statement_timeout_ms=20_000)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Database:
    """The database boundary over ``engine``."""
    return Database(engine)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for a test server on ``db_url`` with generous rate limits (tests that probe
    bad tokens by the hundred, such as schemathesis, must not meet the per-address budget)."""
    return Settings(
        home=tmp_path / "home",
        database_url=libpq_url(db_url),
        log_file=str(tmp_path / "evidence.log"),
        rate_per_minute=60_000,
        rate_burst=10_000,
        auth_failures_per_minute=60_000,
        auth_failure_burst=10_000,
    )


@dataclass
class Persona:
    """A user with a device token and a read token."""

    name: str
    user_id: int
    device_token: str
    read_token: str

    def headers(self, *, read: bool = False) -> dict[str, str]:
        """Authorization headers for this persona's device (or read) token."""
        token = self.read_token if read else self.device_token
        return {"Authorization": f"Bearer {token}"}


def make_persona(db: Database, name: str, tz: str = "UTC", device: str = "laptop") -> Persona:
    """Create a user with a device and a read token."""

    def go(conn: Any) -> Persona:
        user_id = accounts.create_user(conn, name, time_zone=tz, now_ms=1)
        dev, _ = accounts.issue_token(conn, name, kind="device", device_name=device, now_ms=1)
        read, _ = accounts.issue_token(conn, name, kind="read", device_name=None, now_ms=1)
        return Persona(name, user_id, dev, read)

    return db.write(go)


@pytest.fixture
def alice(db: Database) -> Persona:
    """Alice, in Europe/Berlin."""
    return make_persona(db, "alice", "Europe/Berlin")


@pytest.fixture
def bob(db: Database) -> Persona:
    """Bob, in America/New_York."""
    return make_persona(db, "bob", "America/New_York")


@pytest.fixture
def evidence_path(settings: Settings) -> Path:
    """Where the test app writes its evidence lines."""
    return Path(settings.log_file)


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """A test client of the real app over the test database."""
    logger = EvidenceLogger(settings.log_file)
    app = create_app(settings, engine=engine, evidence=logger)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    logger.close()
    if LOG_DIR is not None:  # keep every log line for the log-privacy audit
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(settings.log_file, LOG_DIR / f"{uuid.uuid4().hex}.log")
