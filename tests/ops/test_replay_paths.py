"""Replay's two bucket paths (fill an empty chunk, compare a stored one) agree with ingest."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert

from tests.conftest import Persona
from tests.helpers import bucket_rows, daily_rows, expected_daily
from tests.ops.support import (
    START,
    apply_at,
    counts,
    derived,
    seed_history,
    upload_while_replaying,
    winners,
    zones_of,
)
from usageledger.ledger.ingest import BucketWrite
from usageledger.ops.replay import logged_series, replay
from usageledger.ops.verify import verify
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, usage_buckets, usage_daily

DEVICES = (1, 2, 3)
SOURCES = ("claude", "codex")
MODELS = ("gpt-5", "o3", "sonnet")


def seed_series(db: Database, who: Persona, *, days: int = 30) -> int:
    """Ingest every device × source × model series every 7 hours, then newer values for some.

    Returns how many buckets the history has.
    """
    keys = 0
    for device in DEVICES:
        for round_, step in ((1, 7), (2, 21), (3, 42)):
            writes = [
                BucketWrite(
                    source,
                    model,
                    int((START + timedelta(hours=h)).timestamp()),
                    round_,
                    counts(round_ * 1000 + h + device, out=device),
                )
                for source in SOURCES
                for model in MODELS
                for h in range(0, days * 24, step)
            ]
            apply_at(db, who, writes, now_ms=round_ * 10 + device, device_id=device)
            keys += len(writes) if round_ == 1 else 0
    return keys


def test_replay_into_empty_partly_empty_and_correct_tables_equals_ingest(
    alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Filled from nothing, from half of it, or compared in place: every row as ingest left it."""
    keys = seed_series(db, alice) + seed_series(db, bob)
    ingested = derived(engine)

    over_existing = replay(db, chunk_days=4)
    assert derived(engine) == ingested
    assert (over_existing.buckets_written, over_existing.buckets_deleted) == (0, 0)

    with engine.begin() as conn:
        conn.execute(delete(usage_daily))
        conn.execute(delete(usage_buckets))
    from_empty = replay(db, chunk_days=4)
    assert derived(engine) == ingested
    assert from_empty.buckets_written == keys
    assert from_empty.daily_rows == len(ingested[1])

    middle = int((START + timedelta(days=13)).timestamp())
    with engine.begin() as conn:
        conn.execute(delete(usage_daily).where(usage_daily.c.user_id == alice.user_id))
        conn.execute(delete(usage_buckets).where(usage_buckets.c.bucket_start < middle))
    partly = replay(db, chunk_days=4)
    assert derived(engine) == ingested
    assert partly.buckets_written == sum(1 for row in ingested[0] if row[4] < middle)

    again = replay(db, chunk_days=4)
    assert derived(engine) == ingested
    assert (again.buckets_written, again.buckets_deleted) == (0, 0)
    assert verify(db).clean


def test_the_highest_revision_wins_whatever_order_the_log_was_written_in(
    alice: Persona, db: Database, engine: Engine
) -> None:
    """Revisions 2, 7 and 4 of one key: the bucket takes 7's values and its receive time."""
    start = int(START.timestamp())
    with engine.begin() as conn:
        for revision, received in ((2, 500), (7, 300), (4, 900)):
            conn.execute(
                insert(bucket_revisions).values(
                    user_id=alice.user_id,
                    device_id=1,
                    source="codex",
                    model="o3",
                    bucket_start=start,
                    revision=revision,
                    received_at_ms=received,
                    origin="test",
                    **counts(revision * 10),
                )
            )
    replay(db)
    assert bucket_rows(engine) == {
        (alice.user_id, 1, "codex", "o3", start): (7, *counts(70).values()),
    }
    with engine.connect() as conn:
        stamped = conn.execute(usage_buckets.select()).mappings().one()["updated_at_ms"]
    assert stamped == 300


def test_a_stored_series_without_any_revision_is_removed(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Buckets of a series the log never saw go, even for bob, who has no revision at all."""
    seed_history(client, alice, days=3)
    ghost = int((START + timedelta(hours=5)).timestamp())
    with engine.begin() as conn:
        for who in (alice, bob):
            conn.execute(
                insert(usage_buckets).values(
                    user_id=who.user_id,
                    device_id=99,
                    source="claude",
                    model="ghost",
                    bucket_start=ghost,
                    revision=1,
                    updated_at_ms=1,
                    **counts(5),
                )
            )
    report = replay(db)
    assert report.buckets_deleted == 2
    assert bucket_rows(engine) == winners(engine)
    assert verify(db).clean


def test_logged_series_lists_each_series_of_the_user_once_in_key_order(
    alice: Persona, bob: Persona, db: Database
) -> None:
    """Three devices × two sources × three models for alice; bob's one series is not hers."""
    seed_series(db, alice, days=2)
    apply_at(
        db, bob, [BucketWrite("opencode", "zeta", int(START.timestamp()), 1, counts(1))], now_ms=1
    )
    listed = db.read(lambda conn: logged_series(conn, alice.user_id))
    assert listed == tuple((d, s, m) for d in DEVICES for s in SOURCES for m in MODELS)
    assert db.read(lambda conn: logged_series(conn, bob.user_id)) == ((1, "opencode", "zeta"),)


def test_replay_into_wiped_tables_while_uploads_add_new_series_loses_nothing(
    client: TestClient, alice: Persona, bob: Persona, db: Database, engine: Engine
) -> None:
    """Uploads of new models land while one-day chunks are being filled from the log."""
    seed_history(client, alice, days=6)
    seed_history(client, bob, days=6)
    with engine.begin() as conn:
        conn.execute(delete(usage_daily))
        conn.execute(delete(usage_buckets))
    upload_while_replaying(
        client,
        db,
        (alice, bob),
        hours=range(0, 6 * 24, 5),
        rounds=range(3, 9),
        model=lambda round_: f"live-{round_ % 3}",
        replays=1,
    )

    assert bucket_rows(engine) == winners(engine)
    assert daily_rows(engine) == expected_daily(engine, zones_of(alice, bob))
    assert verify(db).clean
