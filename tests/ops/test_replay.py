"""``replay`` rebuilds the derived tables from the revision log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, text, update

from tests.conftest import Persona
from tests.helpers import bucket_rows, daily_rows, evidence_lines, expected_daily
from tests.ops.support import (
    START,
    apply_at,
    counts,
    derived,
    document,
    parse,
    seed_history,
    upload_while_replaying,
    winners,
    zones_of,
)
from usageledger.errors import ValidationFailed
from usageledger.evidence import REQUIRED_FIELDS, EvidenceLogger
from usageledger.ledger.ingest import BucketWrite
from usageledger.ops.backfill import create_plan
from usageledger.ops.replay import replay
from usageledger.ops.verify import verify
from usageledger.store.engine import Database
from usageledger.store.tables import (
    bucket_revisions,
    usage_buckets,
    usage_daily,
    usage_events,
    users,
)


def wipe_derived(engine: Engine) -> None:
    """Lose both derived tables entirely."""
    with engine.begin() as conn:
        conn.execute(delete(usage_daily))
        conn.execute(delete(usage_buckets))


def test_replay_rebuilds_lost_derived_tables_row_for_row(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """After losing usage_buckets and usage_daily, replay restores every column of every row."""
    seed_history(client, alice)
    seed_history(client, bob)
    before = derived(engine)
    wipe_derived(engine)
    report = replay(db, chunk_days=7)
    assert derived(engine) == before
    assert report.users == 2
    assert report.buckets_written == len(before[0])
    assert report.daily_rows == len(before[1])


def test_replaying_twice_changes_nothing(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """A replay of consistent tables writes no bucket, and a second replay equals the first."""
    seed_history(client, alice)
    seed_history(client, bob)
    before = derived(engine)
    first = replay(db)
    after_first = derived(engine)
    second = replay(db)
    assert after_first == before
    assert derived(engine) == before
    assert (first.buckets_written, first.buckets_deleted) == (0, 0)
    assert (second.buckets_written, second.buckets_deleted) == (0, 0)


def test_buckets_follow_the_highest_revision_and_buckets_without_one_go(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Corrupted values, a deleted current revision and an orphan bucket are all repaired."""
    seed_history(client, alice)
    seed_history(client, bob)
    second_revision = START  # slot 0 got revision 2 in seed_history
    with engine.begin() as conn:
        conn.execute(
            update(usage_buckets)
            .where(usage_buckets.c.user_id == bob.user_id)
            .values(input_tokens=usage_buckets.c.input_tokens + 7)
        )
        conn.execute(
            delete(bucket_revisions).where(
                bucket_revisions.c.user_id == alice.user_id,
                bucket_revisions.c.bucket_start == int(second_revision.timestamp()),
                bucket_revisions.c.revision == 2,
            )
        )
        conn.execute(
            insert(usage_buckets).values(
                user_id=alice.user_id,
                device_id=1,
                source="codex",
                model="orphan",
                bucket_start=int((START + timedelta(days=3)).timestamp()),
                revision=1,
                updated_at_ms=1,
                **counts(5),
            )
        )
    report = replay(db)
    facts = bucket_rows(engine)
    assert facts == winners(engine)
    key = (alice.user_id, 1, "codex", "o3", int(second_revision.timestamp()))
    assert facts[key][:2] == (1, 100)  # the remaining revision 1 of that key
    assert report.buckets_deleted == 1
    assert daily_rows(engine) == expected_daily(engine, zones_of(alice, bob))
    assert verify(db).clean


def test_a_scoped_replay_repairs_only_its_user_and_days(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """--user and --from/--to limit the rebuild to those local days of that user."""
    seed_history(client, alice)
    seed_history(client, bob)
    good = daily_rows(engine)
    with engine.begin() as conn:
        conn.execute(update(usage_daily).values(output_tokens=usage_daily.c.output_tokens + 1))
    replay(db, user="alice", first=date(2026, 10, 25), last=date(2026, 10, 26))
    now = daily_rows(engine)
    repaired = {k for k in now if now[k] == good[k]}
    assert repaired == {
        k
        for k in good
        if k[0] == alice.user_id and date(2026, 10, 25) <= k[1] <= date(2026, 10, 26)
    }


def test_a_time_zone_change_is_a_replay_of_the_users_rollups(
    client: TestClient, alice: Persona, db: Database, engine: Engine
) -> None:
    """After alice moves to Tokyo, replay regroups her buckets by Tokyo days."""
    seed_history(client, alice)
    with engine.begin() as conn:
        conn.execute(update(users).values(time_zone="Asia/Tokyo"))
    replay(db)
    assert daily_rows(engine) == expected_daily(engine, {alice.user_id: "Asia/Tokyo"})
    assert verify(db).clean


def test_replay_and_http_ingest_run_concurrently_without_a_lost_update(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Uploads during one-day-chunk replays all land, and facts and rollups end exact."""
    seed_history(client, alice, days=8)
    seed_history(client, bob, days=8)
    rounds = 10
    hours = range(0, 8 * 24, 7)
    upload_while_replaying(
        client,
        db,
        (alice, bob),
        hours=hours,
        rounds=range(3, 3 + rounds),
        model=lambda _round: "live",
        replays=rounds // 2,
    )

    facts = bucket_rows(engine)
    assert facts == winners(engine)
    last = 2 + rounds
    for who in (alice, bob):
        for h in hours:
            key = (who.user_id, 1, "codex", "live", int((START + timedelta(hours=h)).timestamp()))
            assert facts[key][:2] == (last, last * 1000 + h)
    assert daily_rows(engine) == expected_daily(engine, zones_of(alice, bob))
    assert verify(db).clean


def test_replay_writes_one_evidence_line_per_stage_under_one_request_id(
    client: TestClient, alice: Persona, bob: Persona, db: Database, tmp_path: Path
) -> None:
    """A scope line and one rebuild line per user, with every evidence field and the counts."""
    seed_history(client, alice)
    seed_history(client, bob)
    path = tmp_path / "replay.log"
    logger = EvidenceLogger(str(path))
    replay(db, evidence=logger)
    logger.close()
    lines = evidence_lines(path)
    assert [(line["function"], line["stage"]) for line in lines] == [
        ("replay", "scope"),
        ("replay", "rebuild"),
        ("replay", "rebuild"),
    ]
    assert len({line["request_id"] for line in lines}) == 1
    for line in lines:
        assert set(REQUIRED_FIELDS) <= set(line)
        assert (line["status"], line["error_code"], line["upstream_status"]) == (200, None, 200)
    assert {line["user_id"] for line in lines[1:]} == {alice.user_id, bob.user_id}
    assert all(line["buckets_written"] == 0 for line in lines[1:])


@pytest.mark.parametrize("days", [0, 94])
def test_a_chunk_size_outside_one_to_ninety_three_days_is_refused(db: Database, days: int) -> None:
    """Chunks bound each transaction; an unbounded one is refused."""
    with pytest.raises(ValidationFailed, match="1-93 days"):
        replay(db, chunk_days=days)


def test_replay_with_no_history_does_nothing(alice: Persona, db: Database, engine: Engine) -> None:
    """A user without data has no scope; nothing is written."""
    report = replay(db)
    assert (report.users, report.chunks) == (0, 0)
    assert derived(engine) == ([], [])


KEYS = st.tuples(st.sampled_from(["o3", "gpt-5"]), st.integers(0, 200))
WRITES = st.lists(st.tuples(KEYS, st.integers(1, 5), st.integers(0, 1000)), min_size=1, max_size=30)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(WRITES, min_size=1, max_size=4))
def test_a_replay_equals_the_incremental_aggregates(
    alice: Persona,
    db: Database,
    engine: Engine,
    batches: list[list[tuple[tuple[str, int], int, int]]],
) -> None:
    """Whatever batches ingest applied, rebuilding from the log gives the same tables."""
    with engine.begin() as conn:
        for table in ("usage_daily", "usage_buckets", "bucket_revisions"):
            conn.execute(text(f"DELETE FROM {table}"))
    for number, items in enumerate(batches):
        writes = [
            BucketWrite(
                "codex",
                model,
                int((START + timedelta(hours=7 * slot)).timestamp()),
                revision,
                counts(value),
            )
            for (model, slot), revision, value in items
        ]
        apply_at(db, alice, writes, now_ms=1_000 + number)
    incremental = derived(engine)
    wipe_derived(engine)
    replay(db, chunk_days=5)
    assert derived(engine) == incremental


def test_replay_verify_and_backfill_refuse_a_local_ledger(
    alice: Persona, db: Database, engine: Engine
) -> None:
    """A tracker's ledger derives buckets from usage_events; replaying it would empty it."""
    with engine.begin() as conn:
        conn.execute(
            insert(usage_events).values(
                user_id=alice.user_id,
                source="codex",
                event_key="e1",
                device_id=1,
                model="o3",
                event_ms=1,
                bucket_start=int(START.timestamp()),
                session_id="s",
                updated_at_ms=1,
                **counts(5),
            )
        )
        conn.execute(
            insert(usage_buckets).values(
                user_id=alice.user_id,
                device_id=1,
                source="codex",
                model="o3",
                bucket_start=int(START.timestamp()),
                revision=0,
                updated_at_ms=1,
                **counts(5),
            )
        )
    for job in (lambda: replay(db), lambda: verify(db)):
        with pytest.raises(ValidationFailed, match="this is a local ledger"):
            job()
    with pytest.raises(ValidationFailed, match="this is a local ledger"):
        create_plan(db, parse(document()), reason="x", now_ms=1)
    assert len(bucket_rows(engine)) == 1
