"""``db copy`` moves a whole ledger between SQLite and PostgreSQL, both ways, provably equal."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import Persona, throwaway_pg
from tests.ops.conftest import Cli
from tests.ops.support import document, parse, rows, seed_history
from usageledger.ledger import accounts
from usageledger.ops.backfill import apply_plan, create_plan
from usageledger.ops.checksums import table_digest
from usageledger.ops.copy import CopyRefused, copy_database
from usageledger.store.engine import Database, make_engine
from usageledger.store.tables import metadata


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test, dropped afterwards."""
    with throwaway_pg("ul_copy") as url:
        yield url


def fresh_url(engine_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on ``engine_name`` (a SQLite file, or a new PostgreSQL database)."""
    if engine_name == "sqlite":
        return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
    url: str = request.getfixturevalue("fresh_pg")
    return url


@pytest.fixture
def ledger(client: TestClient, alice: Persona, bob: Persona, db: Database) -> Database:
    """A ledger with uploads of two users and an applied backfill plan."""
    seed_history(client, alice)
    seed_history(client, bob)
    plan = create_plan(db, parse(document()), reason="copy test", now_ms=int(time.time() * 1000))
    apply_plan(db, plan.plan_id, now_ms=int(time.time() * 1000))
    return db


def digests(engine: Engine) -> dict[str, tuple[int, str]]:
    """Row count and digest of every ledger table."""
    with engine.connect() as conn:
        return {
            t.name: (d.rows, d.hexdigest())
            for t in metadata.sorted_tables
            for d in [table_digest(conn, t)]
        }


def test_a_ledger_copied_to_the_other_engine_and_back_is_identical(
    ledger: Database,
    engine: Engine,
    db_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """SQLite → PostgreSQL → SQLite (and PostgreSQL → SQLite → PostgreSQL) keeps every row."""
    here = "sqlite" if db_url.startswith("sqlite") else "postgres"
    there = "postgres" if here == "sqlite" else "sqlite"
    other = make_engine(fresh_url(there, request, tmp_path))
    back = make_engine(fresh_url(here, request, tmp_path))
    try:
        source = digests(engine)
        report = copy_database(engine, other, batch_size=97)
        assert report.ok
        assert {t.name: (t.rows, t.checksum) for t in report.tables} == source
        assert source["usage_buckets"][0] > 0
        assert source["backfill_plans_v2"][0] == 1
        for table in metadata.sorted_tables:
            assert Counter(rows(other, table)) == Counter(rows(engine, table)), table.name
        assert digests(other) == source

        assert copy_database(other, back).ok
        for table in metadata.sorted_tables:
            assert rows(back, table) == rows(engine, table), table.name

        for copy in (other, back):  # ids continue after the copied ones
            new_id = Database(copy).write(
                lambda conn: accounts.create_user(conn, "carol", time_zone="UTC", now_ms=1)
            )
            assert new_id == 3
    finally:
        other.dispose()
        back.dispose()


def test_copy_refuses_the_source_itself_and_a_target_with_rows(
    ledger: Database, engine: Engine, tmp_path: Path
) -> None:
    """A non-empty target is refused before anything is written to it."""
    with pytest.raises(CopyRefused, match="the configured database itself"):
        copy_database(engine, engine)
    target = make_engine(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        assert copy_database(engine, target).ok
        before = digests(target)
        with pytest.raises(CopyRefused, match="the target is not empty"):
            copy_database(engine, target)
        assert digests(target) == before
    finally:
        target.dispose()


def test_db_copy_on_the_command_line_reports_every_table(
    ledger: Database, cli: Cli, tmp_path: Path
) -> None:
    """`db copy --to URL` prints rows and checksums, exits 0, and refuses to copy twice."""
    target = f"sqlite:///{tmp_path / 'moved.db'}"
    result = cli("db", "copy", "--to", target)
    assert result.exit_code == 0, result.output
    assert "every table matches" in result.stdout
    assert "usage_buckets" in result.stdout
    again = cli("db", "copy", "--to", target)
    assert again.exit_code == 1
    assert "the target is not empty" in again.output
    stages = [orjson.loads(line)["stage"] for line in cli.evidence_path.read_bytes().splitlines()]
    assert stages == ["prepare", "copy", "verify", "prepare"]
