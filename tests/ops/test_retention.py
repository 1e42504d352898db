"""``retention`` deletes old receipts and old superseded revisions, never a current one."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, Table, delete, func, select

from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.helpers import evidence_lines
from tests.ops.conftest import Cli
from tests.ops.support import START, apply_at, counts, derived, rows
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger.accounts import authenticate
from usageledger.ledger.ingest import BucketWrite
from usageledger.ledger.receipts import ingest_request
from usageledger.ops.replay import replay
from usageledger.ops.retention import run_retention
from usageledger.ops.verify import verify
from usageledger.source_registry import SourceRegistry
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, ingest_receipts, usage_buckets, usage_daily

DAY_MS = 86_400_000
NOW_MS = int(time.time() * 1000)


def slot(n: int) -> int:
    """The start of the n-th half-hour of the test history."""
    return int(START.timestamp()) + 1800 * n


def history(db: Database, who: Persona, plan: dict[int, list[int]]) -> None:
    """For each slot, one revision per age (days ago), the youngest last and current."""
    for n, ages in plan.items():
        for revision, age in enumerate(ages, start=1):
            write = BucketWrite("codex", "o3", slot(n), revision, counts(100 * revision + n))
            apply_at(db, who, [write], now_ms=NOW_MS - age * DAY_MS)


def old_receipts(db: Database, who: Persona, settings: Settings, days_ago: int, n: int) -> None:
    """``n`` accepted uploads received ``days_ago`` days ago (each leaves a receipt)."""
    principal = db.read(lambda conn: authenticate(conn, who.device_token))
    assert principal is not None
    when = datetime.now(UTC) - timedelta(days=days_ago)
    for i in range(n):
        start = when.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1 + i)
        ingest_request(
            db,
            principal,
            orjson.dumps(batch(bucket(start=start, revision=None))),
            request_id=str(uuid.uuid4()),
            idempotency_key=None,
            settings=settings,
            registry=SourceRegistry(),
            now=when,
        )


def count(engine: Engine, table: Table) -> int:
    """Rows in a table."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def current_revisions(engine: Engine) -> set[tuple[object, ...]]:
    """(key, revision) of every bucket."""
    with engine.connect() as conn:
        return {
            tuple(r)
            for r in conn.execute(
                select(
                    usage_buckets.c.user_id,
                    usage_buckets.c.device_id,
                    usage_buckets.c.source,
                    usage_buckets.c.model,
                    usage_buckets.c.bucket_start,
                    usage_buckets.c.revision,
                )
            )
        }


def logged_revisions(engine: Engine) -> set[tuple[object, ...]]:
    """(key, revision) of every row of the log."""
    with engine.connect() as conn:
        return {
            tuple(r)
            for r in conn.execute(
                select(
                    bucket_revisions.c.user_id,
                    bucket_revisions.c.device_id,
                    bucket_revisions.c.source,
                    bucket_revisions.c.model,
                    bucket_revisions.c.bucket_start,
                    bucket_revisions.c.revision,
                )
            )
        }


def test_retention_deletes_old_receipts_and_old_superseded_revisions_in_batches(
    alice: Persona, bob: Persona, db: Database, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """Exactly the deletable rows go, four per transaction; a dry run only counts them."""
    plan = {n: [200, 100, 1] for n in range(10)}  # two superseded old revisions each
    plan.update({n: [200] for n in range(10, 15)})  # old but current: kept
    plan.update({n: [200, 10] for n in range(15, 20)})  # one superseded old revision each
    plan.update({n: [200, 60, 5] for n in range(20, 22)})  # the 60-day one is inside 90 days
    plan.update({n: [200, 100] for n in (30, 31)})  # safety cases below
    history(db, alice, plan)
    history(db, bob, {n: [120, 0] for n in range(3)})
    with engine.begin() as conn:  # slot 30 loses its bucket, slot 31 its current revision
        conn.execute(delete(usage_buckets).where(usage_buckets.c.bucket_start == slot(30)))
        conn.execute(
            delete(bucket_revisions).where(
                bucket_revisions.c.bucket_start == slot(31), bucket_revisions.c.revision == 2
            )
        )
    old_receipts(db, alice, settings, days_ago=40, n=2)
    old_receipts(db, bob, settings, days_ago=20, n=1)
    currents = current_revisions(engine)
    log_before = logged_revisions(engine)

    dry = run_retention(db, now_ms=NOW_MS, dry_run=True)
    assert (dry.receipts, dry.revisions) == (2, 30)
    assert logged_revisions(engine) == log_before

    path = tmp_path / "retention.log"
    logger = EvidenceLogger(str(path))
    done = run_retention(db, now_ms=NOW_MS, batch_size=4, evidence=logger)
    logger.close()
    assert (done.receipts, done.revisions) == (2, 30)
    assert count(engine, ingest_receipts) == 1
    remaining = logged_revisions(engine)
    assert {c for c in currents if c[4] != slot(31)} <= remaining  # slot 31's was deleted above
    assert len(log_before - remaining) == 30
    assert {(*k[:5], 1) for k in log_before if k[4] in (slot(30), slot(31))} <= remaining
    lines = evidence_lines(path)
    assert [(x["stage"], x["deleted"], x["dry_run"]) for x in lines] == [
        ("receipts", 2, 0),
        ("revisions", 30, 0),
    ]
    again = run_retention(db, now_ms=NOW_MS, batch_size=4)
    assert (again.receipts, again.revisions) == (0, 0)


def test_a_replay_after_retention_reproduces_the_same_facts_and_aggregates(
    alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Retention keeps every current revision, so the derived tables rebuild identically."""
    history(db, alice, {n: [300, 200, 100, 3][: 1 + n % 4] for n in range(0, 96 * 3, 5)})
    history(db, bob, {n: [150, 95, 91][: 1 + n % 3] for n in range(0, 96 * 2, 3)})
    before = derived(engine)
    assert verify(db).clean
    report = run_retention(db, now_ms=NOW_MS, batch_size=7)
    assert report.revisions > 0
    with engine.begin() as conn:
        conn.execute(delete(usage_daily))
        conn.execute(delete(usage_buckets))
    replay(db)
    assert derived(engine) == before
    assert rows(engine, bucket_revisions)  # the log still holds every current value
    assert verify(db).clean


@pytest.mark.parametrize("option", ["--receipts-days", "--revisions-days"])
def test_a_window_shorter_than_a_day_is_refused(cli: Cli, option: str) -> None:
    """Windows are whole days, at least one."""
    result = cli("retention", "run", option, "0")
    assert result.exit_code == 2
    assert "0 is not in the range x>=1" in result.output


def test_retention_on_the_command_line_prints_the_counts(
    alice: Persona, db: Database, engine: Engine, settings: Settings, cli: Cli
) -> None:
    """A dry run says what it would delete; a run deletes it and says so."""
    history(db, alice, {n: [200, 1] for n in range(4)})
    old_receipts(db, alice, settings, days_ago=45, n=3)
    dry = cli("retention", "run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "ingest_receipts: would delete 3" in dry.stdout
    assert "bucket_revisions: would delete 4 superseded" in dry.stdout
    real = cli("retention", "run", "--receipts-days", "30", "--revisions-days", "90")
    assert real.exit_code == 0, real.output
    assert "ingest_receipts: deleted 3" in real.stdout
    assert "bucket_revisions: deleted 4 superseded" in real.stdout
    assert count(engine, ingest_receipts) == 0
