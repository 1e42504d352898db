"""Backfill plans written before schema v3 (six counts per bucket, six-count checksums) still
apply and roll back after the upgrade.

A plan stores its changes and snapshot as JSON with one key per count, and checksums of the
range over the counts of that day. The stored plans here are rewritten into the exact format
the previous release wrote: only the v2 counts, and the checksum computed as it computed it
(SHA-256 over ``[source, model, bucket_start, *six counts]`` lines of the non-zero buckets).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select, update

from tests.conftest import Persona
from tests.helpers import bucket_rows
from tests.ops.support import document, parse, seed_history
from usageledger.buckets import COUNT_COLUMNS, COUNTS_V2
from usageledger.ops.backfill import apply_plan, create_plan, rollback_plan
from usageledger.ops.checksums import facts_checksum
from usageledger.ops.verify import verify
from usageledger.store.engine import Database
from usageledger.store.tables import backfill_plans, usage_buckets


def now_ms() -> int:
    """The wall clock in ms."""
    return int(time.time() * 1000)


def old_checksum(conn: Connection, user_id: int, device_id: int, start: int, end: int) -> str:
    """The range checksum as the release before schema v3 computed it: six counts a line."""
    b = usage_buckets.c
    rows = conn.execute(
        select(b.source, b.model, b.bucket_start, *(b[c] for c in COUNTS_V2)).where(
            b.user_id == user_id,
            b.device_id == device_id,
            b.bucket_start >= start,
            b.bucket_start < end,
        )
    ).all()
    digest = hashlib.sha256()
    for row in sorted(tuple(r) for r in rows):
        if any(row[3:]):
            digest.update(orjson.dumps(list(row)) + b"\n")
    return digest.hexdigest()


def six_counts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plan entries as the previous release wrote them: only the v2 counts."""
    return [
        {
            **entry,
            "counts": None
            if entry["counts"] is None
            else {name: entry["counts"][name] for name in COUNTS_V2},
        }
        for entry in entries
    ]


@pytest.fixture
def alice_history(client: TestClient, alice: Persona) -> Persona:
    """Alice with three weeks of uploads (v1 and v2 buckets: every v3 count 0)."""
    seed_history(client, alice)
    return alice


def test_a_v2_bucket_checksums_as_it_did_before_v3() -> None:
    """Six counts and the same six followed by 17 zeros hash alike; a non-zero v3 count
    changes the line."""
    key = ("codex", "o3", 1_792_000_800)
    six = (100, 50, 20, 5, 170, 10)
    line = orjson.dumps([*key, *six]) + b"\n"
    expected = hashlib.sha256(line).hexdigest()
    padded = six + (0,) * (len(COUNT_COLUMNS) - len(six))
    assert facts_checksum({key: six}) == expected
    assert facts_checksum({key: padded}) == expected
    searched = (*padded[:-1], 1)
    assert facts_checksum({key: searched}) != expected


def test_a_plan_made_before_v3_applies_and_rolls_back(
    alice_history: Persona, db: Database, engine: Engine
) -> None:
    """Planned by the previous release (six counts, six-count checksums), applied and rolled
    back by this one; then a plan applied by the previous release rolls back too."""
    before = bucket_rows(engine)
    plan = create_plan(db, parse(document()), reason="old plan", now_ms=now_ms())

    def make_old(conn: Connection) -> None:
        row = conn.execute(
            select(backfill_plans).where(backfill_plans.c.plan_id == plan.plan_id)
        ).one()
        changes = orjson.loads(row.changes)
        changes["buckets"] = six_counts(changes["buckets"])
        checksum_before = old_checksum(
            conn, row.user_id, row.device_id, row.range_start, row.range_end
        )
        assert checksum_before == row.checksum_before  # v3 hashes v2 data as v2 did
        conn.execute(
            update(backfill_plans)
            .where(backfill_plans.c.plan_id == plan.plan_id)
            .values(changes=orjson.dumps(changes).decode(), checksum_before=checksum_before)
        )

    db.write(make_old, user_id=alice_history.user_id)
    applied = apply_plan(db, plan.plan_id, now_ms=now_ms())
    assert applied.state == "applied"
    assert verify(db).clean

    def old_snapshot(conn: Connection) -> None:
        row = conn.execute(
            select(backfill_plans).where(backfill_plans.c.plan_id == plan.plan_id)
        ).one()
        snapshot = orjson.loads(row.snapshot)
        snapshot["buckets"] = six_counts(snapshot["buckets"])
        after = old_checksum(conn, row.user_id, row.device_id, row.range_start, row.range_end)
        assert after == row.checksum_after
        conn.execute(
            update(backfill_plans)
            .where(backfill_plans.c.plan_id == plan.plan_id)
            .values(snapshot=orjson.dumps(snapshot).decode(), checksum_after=after)
        )

    db.write(old_snapshot, user_id=alice_history.user_id)
    rolled = rollback_plan(db, plan.plan_id, now_ms=now_ms())
    assert rolled.state == "rolled_back"
    assert verify(db).clean
    after = bucket_rows(engine)
    assert {k: v[1:] for k, v in after.items() if any(v[1:])} == {
        k: v[1:] for k, v in before.items() if any(v[1:])
    }
