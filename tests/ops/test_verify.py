"""``verify`` reports exactly the derived rows that differ from a rebuild; replay repairs them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert, select, update

from tests.conftest import Persona
from tests.helpers import evidence_lines
from tests.ops.conftest import Cli
from tests.ops.support import START, counts, seed_history
from usageledger.ops.replay import replay
from usageledger.ops.verify import Drift, verify
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, usage_buckets, usage_daily

ALICE_DAY = date(2026, 10, 23)
SLOT_ZERO = int(START.timestamp())  # 2026-10-20T00:00Z: revision 2 in seed_history
BOB_SLOT = int((START + timedelta(hours=50)).timestamp())  # revision 1 only


@pytest.fixture
def seeded(client: TestClient, alice: Persona, bob: Persona) -> tuple[Persona, Persona]:
    """Alice and Bob with a few weeks of uploads."""
    seed_history(client, alice)
    seed_history(client, bob)
    return alice, bob


def corrupt(engine: Engine, alice: Persona, bob: Persona) -> None:
    """Change one rollup row, change one bucket row, delete one current revision."""
    with engine.begin() as conn:
        conn.execute(
            update(usage_daily)
            .where(
                usage_daily.c.user_id == alice.user_id,
                usage_daily.c.day == ALICE_DAY,
                usage_daily.c.model == "o3",
            )
            .values(input_tokens=usage_daily.c.input_tokens + 1)
        )
        conn.execute(
            update(usage_buckets)
            .where(usage_buckets.c.user_id == bob.user_id, usage_buckets.c.bucket_start == BOB_SLOT)
            .values(output_tokens=999)
        )
        conn.execute(
            delete(bucket_revisions).where(
                bucket_revisions.c.user_id == alice.user_id,
                bucket_revisions.c.bucket_start == SLOT_ZERO,
                bucket_revisions.c.revision == 2,
            )
        )


def where(drift: Drift) -> tuple[str, str, str, str]:
    """The identity of a drift: table, user, bucket or day, model."""
    return drift.table, drift.user, drift.at, drift.model


def test_a_consistent_ledger_verifies_clean(seeded: tuple[Persona, Persona], db: Database) -> None:
    """Right after ingest, the derived tables equal a fresh rebuild."""
    report = verify(db)
    assert report.clean
    assert report.users == 2
    assert report.buckets > 0
    assert report.days > 0


def test_verify_reports_exactly_the_corrupted_rows_and_replay_repairs_them(
    seeded: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """A changed rollup, a changed bucket and a deleted current revision: four rows, no more."""
    alice, bob = seeded
    with engine.connect() as conn:
        stored_rollup = conn.execute(
            select(usage_daily.c.input_tokens).where(
                usage_daily.c.user_id == alice.user_id,
                usage_daily.c.day == ALICE_DAY,
                usage_daily.c.model == "o3",
            )
        ).scalar_one()
    corrupt(engine, alice, bob)
    drifts = verify(db).drifts
    assert sorted(where(d) for d in drifts) == sorted(
        [
            ("usage_daily", "alice", "2026-10-23", "o3"),
            ("usage_buckets", "bob", "2026-10-22T02:00:00Z", "o3"),
            # The deleted revision was current: the bucket and its day no longer match the log.
            ("usage_buckets", "alice", "2026-10-20T00:00:00Z", "o3"),
            ("usage_daily", "alice", "2026-10-20", "o3"),
        ]
    )
    found = {where(d): d for d in drifts}
    rollup = found["usage_daily", "alice", "2026-10-23", "o3"]
    assert rollup.stored is not None
    assert rollup.expected is not None
    assert rollup.stored["input_tokens"] == stored_rollup + 1
    assert rollup.expected["input_tokens"] == stored_rollup
    assert rollup.describe() == (
        f"input_tokens={stored_rollup + 1}",
        f"input_tokens={stored_rollup}",
    )
    bucket = found["usage_buckets", "bob", "2026-10-22T02:00:00Z", "o3"]
    assert bucket.describe() == ("output_tokens=999", "output_tokens=20")
    assert (bucket.device, bucket.source) == ("laptop", "codex")
    revision = found["usage_buckets", "alice", "2026-10-20T00:00:00Z", "o3"]
    assert revision.describe()[0].startswith("revision=2 input_tokens=1000")
    assert revision.describe()[1].startswith("revision=1 input_tokens=100")

    replay(db)
    assert verify(db).clean
    with engine.connect() as conn:
        now = conn.execute(
            select(usage_buckets.c.revision, usage_buckets.c.input_tokens).where(
                usage_buckets.c.user_id == alice.user_id,
                usage_buckets.c.bucket_start == SLOT_ZERO,
            )
        ).one()
    assert tuple(now) == (1, 100)  # the bucket follows the highest remaining revision


def test_a_bucket_without_any_revision_is_reported_missing_from_the_log(
    seeded: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """An orphan bucket is expected to be missing; replay removes it."""
    alice, _ = seeded
    late = int((START + timedelta(days=5, minutes=30)).timestamp())
    with engine.begin() as conn:
        conn.execute(
            insert(usage_buckets).values(
                user_id=alice.user_id,
                device_id=1,
                source="claude",
                model="ghost",
                bucket_start=late,
                revision=1,
                updated_at_ms=1,
                **counts(3),
            )
        )
    drifts = verify(db, user="alice").drifts
    assert [(d.table, d.model, d.expected) for d in drifts] == [("usage_buckets", "ghost", None)]
    assert drifts[0].describe()[1] == "missing"
    replay(db, user="alice")
    assert verify(db).clean


def test_a_deleted_superseded_revision_is_not_a_difference(
    seeded: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """Only current revisions shape the derived tables, so losing an old one changes nothing."""
    alice, _ = seeded
    with engine.begin() as conn:
        conn.execute(
            delete(bucket_revisions).where(
                bucket_revisions.c.user_id == alice.user_id,
                bucket_revisions.c.bucket_start == SLOT_ZERO,
                bucket_revisions.c.revision == 1,
            )
        )
    assert verify(db).clean


def test_verify_on_the_command_line_prints_each_difference_and_exits_one(
    seeded: tuple[Persona, Persona], engine: Engine, cli: Cli
) -> None:
    """Exit 0 and "no difference" when clean; one line per difference and exit 1 otherwise."""
    alice, bob = seeded
    clean = cli("verify")
    assert clean.exit_code == 0, clean.output
    assert "no difference" in clean.output
    corrupt(engine, alice, bob)
    dirty = cli("verify", "--user", "bob")
    assert dirty.exit_code == 1
    lines = [line for line in dirty.stdout.splitlines() if line.startswith("usage_")]
    assert lines == [
        "usage_buckets\tuser=bob\tat=2026-10-22T02:00:00Z\tdevice=laptop\tsource=codex\t"
        "model=o3\tstored: output_tokens=999\texpected: output_tokens=20"
    ]
    assert "1 difference(s)" in dirty.stdout
    compared = [
        x
        for x in evidence_lines(cli.evidence_path)
        if (x["function"], x["stage"]) == ("verify", "compare")
    ]
    assert [(x["user_id"], x["drifts"], x["status"]) for x in compared[-1:]] == [
        (bob.user_id, 1, 200)
    ]
    assert cli("replay").exit_code == 0
    assert cli("verify").exit_code == 0


def test_verify_refuses_an_unknown_user_and_a_reversed_range(cli: Cli) -> None:
    """Bad scopes are clear errors: a user who is not there exits 1, a range that cannot be
    (the command's own input) exits 2."""
    unknown = cli("verify", "--user", "nobody")
    assert unknown.exit_code == 1
    assert "no user named 'nobody'" in unknown.output
    reversed_ = cli("verify", "--from", "2026-11-02", "--to", "2026-11-01")
    assert reversed_.exit_code == 2
    assert "is after --to" in reversed_.output
