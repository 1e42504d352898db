"""Backfill as plan → apply → rollback: refusals, snapshots, new revisions, exact restores."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from tests.conftest import Persona
from tests.factories import batch, bucket, iso
from tests.helpers import bucket_rows, daily_rows, evidence_lines
from tests.ops.conftest import Cli
from tests.ops.support import (
    FROM,
    INSIDE,
    LISTED,
    NEW,
    TO,
    apply_at,
    counts,
    document,
    parse,
    post,
    seed_history,
)
from usageledger.buckets import COUNT_COLUMNS
from usageledger.errors import NotFound, ValidationFailed
from usageledger.ledger.ingest import BucketWrite
from usageledger.ops import backfill
from usageledger.ops.backfill import (
    PlanRefused,
    apply_plan,
    create_plan,
    get_plan,
    list_plans,
    rollback_plan,
)
from usageledger.ops.verify import verify
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions


def now_ms() -> int:
    """The wall clock in ms (revisions of a backfill are at least this)."""
    return int(time.time() * 1000)


def nonzero(rows: dict[tuple[Any, ...], tuple[int, ...]], skip: int = 0) -> dict[Any, Any]:
    """Rows whose counts are not all zero (a zero bucket counts as absent), revisions dropped."""
    return {k: v[skip:] for k, v in rows.items() if any(v[skip:])}


def revision_count(engine: Engine) -> int:
    """Rows in the revision log."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bucket_revisions)).scalar_one())


@pytest.fixture
def history(client: TestClient, alice: Persona, bob: Persona) -> tuple[Persona, Persona]:
    """Alice and Bob with three weeks of uploads."""
    seed_history(client, alice)
    seed_history(client, bob)
    return alice, bob


def key(who: Persona, when: Any, model: str, source: str = "codex") -> tuple[Any, ...]:
    """A bucket key of the persona's laptop."""
    return (who.user_id, 1, source, model, int(when.timestamp()))


def test_plan_apply_rollback_returns_every_count_to_its_value_before_the_plan(
    history: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """The full cycle: verify is clean after apply and after rollback; all counts come back."""
    alice, bob = history
    facts_before, daily_before = bucket_rows(engine), daily_rows(engine)
    log_before = revision_count(engine)

    plan = create_plan(db, parse(document()), reason="codex double count", now_ms=now_ms())
    assert plan.state == "planned"
    assert plan.affected_keys == 11  # one set, one added, nine zeroed
    assert (bucket_rows(engine), revision_count(engine)) == (facts_before, log_before)

    applied = apply_plan(db, plan.plan_id, now_ms=now_ms())
    assert applied.written == 11
    facts = bucket_rows(engine)
    assert facts[key(alice, LISTED, "gpt-5-codex")][1:] == tuple(counts(7, 0, 3, 1).values())
    assert facts[key(alice, NEW, "sonnet", "claude")][1:4] == (11, 2, 5)
    assert facts[key(alice, INSIDE, "o3")][1:] == (0,) * len(COUNT_COLUMNS)
    assert nonzero({k: v for k, v in facts.items() if k[0] == bob.user_id}, 1) == nonzero(
        {k: v for k, v in facts_before.items() if k[0] == bob.user_id}, 1
    )
    assert verify(db).clean
    with engine.connect() as conn:
        origins = conn.execute(
            select(bucket_revisions.c.origin, func.count()).group_by(bucket_revisions.c.origin)
        ).all()
    assert (f"backfill:{plan.plan_id}", 11) in [tuple(o) for o in origins]
    record = db.read(lambda conn: get_plan(conn, plan.plan_id))
    assert record["state"] == "applied"
    assert record["checksum_after"] == record["checksum_expected_after"]
    assert record["checksum_after"] != record["checksum_before"]
    assert len(record["snapshot"]["buckets"]) == 11

    rolled = rollback_plan(db, plan.plan_id, now_ms=now_ms())
    assert rolled.state == "rolled_back"
    assert verify(db).clean
    assert nonzero(bucket_rows(engine), 1) == nonzero(facts_before, 1)
    assert nonzero(daily_rows(engine)) == nonzero(daily_before)
    assert bucket_rows(engine)[key(alice, NEW, "sonnet", "claude")][1:] == (0,) * len(COUNT_COLUMNS)
    assert revision_count(engine) == log_before + 22  # the log keeps both steps


def test_apply_refuses_after_an_upload_changed_the_planned_range(
    history: tuple[Persona, Persona], client: TestClient, db: Database, engine: Engine
) -> None:
    """An upload elsewhere is fine; one inside the range makes apply refuse and change nothing."""
    alice, bob = history
    plan = create_plan(db, parse(document()), reason="fix", now_ms=now_ms())
    post(client, bob, batch(bucket(start=INSIDE, model="o3", inp=50, revision=9)))
    post(client, alice, batch(bucket(start=TO, model="o3", inp=50, revision=9)))  # after `to`
    post(client, alice, batch(bucket(start=INSIDE, model="o3", inp=50, revision=9)))
    facts = bucket_rows(engine)
    with pytest.raises(PlanRefused, match="changed since it was planned"):
        apply_plan(db, plan.plan_id, now_ms=now_ms())
    assert bucket_rows(engine) == facts
    assert db.read(lambda conn: get_plan(conn, plan.plan_id))["state"] == "planned"


def test_a_plan_applies_once_and_rolls_back_once(
    history: tuple[Persona, Persona], db: Database
) -> None:
    """Applying twice, rolling back a planned or rolled-back plan, re-applying: all refused."""
    plan = create_plan(db, parse(document()), reason="fix", now_ms=now_ms())
    with pytest.raises(PlanRefused, match="not applied"):
        rollback_plan(db, plan.plan_id, now_ms=now_ms())
    apply_plan(db, plan.plan_id, now_ms=now_ms())
    with pytest.raises(PlanRefused, match="is applied, not planned"):
        apply_plan(db, plan.plan_id, now_ms=now_ms())
    rollback_plan(db, plan.plan_id, now_ms=now_ms())
    with pytest.raises(PlanRefused, match="is rolled_back, not applied"):
        rollback_plan(db, plan.plan_id, now_ms=now_ms())
    with pytest.raises(PlanRefused, match="is rolled_back, not planned"):
        apply_plan(db, plan.plan_id, now_ms=now_ms())
    with pytest.raises(NotFound, match="no backfill plan"):
        apply_plan(db, "no-such-plan", now_ms=now_ms())


def test_rollback_refuses_when_the_device_uploaded_into_the_range_after_apply(
    history: tuple[Persona, Persona], client: TestClient, db: Database, engine: Engine
) -> None:
    """Rolling back would overwrite a newer upload, so it is refused and nothing changes."""
    alice, _ = history
    plan = create_plan(db, parse(document()), reason="fix", now_ms=now_ms())
    apply_plan(db, plan.plan_id, now_ms=now_ms())
    post(client, alice, batch(bucket(start=INSIDE, model="o3", inp=42, revision=10**15)))
    facts = bucket_rows(engine)
    with pytest.raises(PlanRefused, match="changed since it was applied"):
        rollback_plan(db, plan.plan_id, now_ms=now_ms())
    assert bucket_rows(engine) == facts
    assert verify(db).clean


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"owner": "alice"}, "Extra inputs are not permitted"),
        ({"from": "2026-10-21T00:10:00Z"}, "from: must be an RFC 3339 date-time"),
        ({"to": "2026-10-21"}, "to: must be an RFC 3339 date-time"),
        ({"from": "2026-W43-3T00:00:00Z"}, "from: must be an RFC 3339 date-time"),
        ({"to": "2026-10-23T00:00:00\x00Z"}, "to: must be an RFC 3339 date-time"),
        ({"buckets": [bucket(start=FROM, bucket_start="20261021T000000Z")]}, "half-hour start"),
        ({"to": iso(FROM - timedelta(hours=1))}, "to: must be after from"),
        ({"to": iso(FROM + timedelta(days=94))}, "limited to 93 days"),
        ({"buckets": [], "zero_missing": False}, "needs buckets to set or zero_missing"),
        ({"buckets": [bucket(start=TO)]}, "outside [from, to)"),
        ({"buckets": [{**bucket(start=FROM), "total_tokens": 1}]}, "total_tokens"),
        ({"buckets": [bucket(start=FROM, source="cursor")]}, "unknown source 'cursor'"),
        ({"buckets": [bucket(start=FROM), bucket(start=FROM)]}, "the same bucket twice"),
    ],
)
def test_a_bad_plan_file_is_refused_with_the_place_of_the_problem(
    change: dict[str, Any], message: str
) -> None:
    """Plan files follow the ingest rules; every problem is named."""
    plan = document(**change)
    for item in plan["buckets"]:
        item.pop("revision", None)
    with pytest.raises(ValidationFailed) as caught:
        parse(plan)
    text = caught.value.message + " ".join(str(d) for d in caught.value.details)
    assert message in text


def test_a_plan_that_changes_nothing_or_names_no_device_is_refused(
    history: tuple[Persona, Persona], db: Database
) -> None:
    """Setting values a bucket already has, or an unknown device, is an error."""
    same = bucket(start=LISTED, model="gpt-5-codex", inp=125)
    same.pop("revision")
    with pytest.raises(ValidationFailed, match="changes nothing"):
        create_plan(db, parse(document(buckets=[same], zero_missing=False)), reason="x", now_ms=1)
    with pytest.raises(NotFound, match="no device named 'phone'"):
        create_plan(db, parse(document(device="phone")), reason="x", now_ms=1)
    with pytest.raises(ValidationFailed, match="--reason"):
        create_plan(db, parse(document()), reason=" ", now_ms=1)


def test_the_backfill_commands_plan_show_apply_and_roll_back_with_evidence_lines(
    history: tuple[Persona, Persona], cli: Cli, tmp_path: Path
) -> None:
    """The CLI walks the cycle, refuses a second apply with exit 1, and logs every step."""
    path = tmp_path / "fix.json"
    path.write_bytes(orjson.dumps(document()))
    planned = cli("backfill", "plan", "--file", str(path), "--reason", "codex double count")
    assert planned.exit_code == 0, planned.output
    plan_id = planned.stdout.strip()
    listed = cli("plans", "list", "--user", "alice")
    assert plan_id in listed.stdout
    assert "planned" in listed.stdout
    shown = cli("plans", "show", plan_id)
    assert "codex double count" in shown.stdout
    assert "(not applied)" in shown.stdout
    assert cli("backfill", "apply", plan_id).exit_code == 0
    again = cli("backfill", "apply", plan_id)
    assert again.exit_code == 1
    assert "a plan is applied once" in again.output
    assert "absent" in cli("plans", "show", plan_id).stdout  # the added bucket's snapshot
    assert cli("verify").exit_code == 0
    rolled = cli("backfill", "rollback", plan_id)
    assert rolled.exit_code == 0, rolled.output
    assert cli("verify").exit_code == 0
    steps = [
        (line["stage"], line["status"], line["error_code"], line.get("plan_id"))
        for line in evidence_lines(cli.evidence_path)
        if line["function"] == "backfill"
    ]
    assert steps == [
        ("plan", 200, None, plan_id),
        ("apply", 200, None, plan_id),
        ("apply", 409, "VALIDATION_FAILED", plan_id),
        ("rollback", 200, None, plan_id),
    ]


def test_planning_from_a_malformed_file_prints_every_problem(cli: Cli, tmp_path: Path) -> None:
    """Each problem of the file is listed under the error, with exit status 2 (the command's
    own input is refused)."""
    path = tmp_path / "bad.json"
    path.write_bytes(
        orjson.dumps(document(to="soon", buckets=[bucket(start=TO, source="x", revision=None)]))
    )
    result = cli("backfill", "plan", "--file", str(path), "--reason", "r")
    assert result.exit_code == 2
    assert "to: must be an RFC 3339 date-time" in result.output
    assert "unknown source 'x'" in result.output


#: The largest revision the database stores, and the largest an upload may have.
COLUMN_MAX = 2**63 - 1
UPLOAD_MAX = 2**53 - 1
OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def repair_file(tmp_path: Path, inp: int = 7) -> Path:
    """A plan file that gives Alice's LISTED bucket the right values and touches nothing else."""
    fixed = bucket(
        start=LISTED, model="gpt-5-codex", inp=inp, cached=0, out=3, reasoning=1, cache_write=0
    )
    fixed.pop("revision")
    path = tmp_path / "repair.json"
    path.write_bytes(orjson.dumps(document(buckets=[fixed], zero_missing=False)))
    return path


def plan_and_apply(cli: Cli, path: Path) -> str:
    """Plan and apply a file through the CLI; the plan id."""
    planned = cli("backfill", "plan", "--file", str(path), "--reason", "runaway revision")
    assert planned.exit_code == 0, planned.output
    plan_id = planned.stdout.strip()
    applied = cli("backfill", "apply", plan_id)
    assert applied.exit_code == 0, applied.output
    return plan_id


def test_a_runaway_revision_is_repaired_by_a_plan_as_the_operations_doc_says(
    history: tuple[Persona, Persona], client: TestClient, cli: Cli, tmp_path: Path, engine: Engine
) -> None:
    """A stolen token writes the largest revision an upload may have: the device's own upload
    is then stale, and a plan writes the right value above it; verify is clean."""
    alice, _ = history
    listed = key(alice, LISTED, "gpt-5-codex")
    post(client, alice, batch(bucket(start=LISTED, inp=999_999, revision=UPLOAD_MAX)))
    honest = post(
        client, alice, batch(bucket(start=LISTED, inp=7, cache_write=0, revision=now_ms()))
    )
    assert honest["stale"] == 1
    assert bucket_rows(engine)[listed][:2] == (UPLOAD_MAX, 999_999)

    plan_and_apply(cli, repair_file(tmp_path))
    assert bucket_rows(engine)[listed] == (UPLOAD_MAX + 1, *counts(7, 0, 3, 1).values())
    assert cli("verify").exit_code == 0


def test_a_revision_at_the_column_maximum_is_refused_by_name_then_repaired_by_hand(
    history: tuple[Persona, Persona], db: Database, cli: Cli, tmp_path: Path, engine: Engine
) -> None:
    """A revision of 2^63 - 1 (a database written before the limit) leaves no room above it:
    plan refuses it by name with exit 1 (no overflow); the documented UPDATE and a replay
    make it repairable, and the plan then applies."""
    alice, _ = history
    listed = key(alice, LISTED, "gpt-5-codex")
    runaway = BucketWrite("codex", "gpt-5-codex", listed[4], COLUMN_MAX, counts(999_999))
    apply_at(db, alice, [runaway], now_ms=now_ms())
    path = repair_file(tmp_path)
    refused = cli("backfill", "plan", "--file", str(path), "--reason", "runaway revision")
    assert refused.exit_code == 1
    assert not isinstance(refused.exception, OverflowError)
    assert str(COLUMN_MAX) in refused.output
    assert "Repairing a runaway revision" in refused.output
    assert db.read(list_plans) == []

    (statement,) = [
        line
        for line in OPERATIONS_DOC.read_text().splitlines()
        if line.startswith("UPDATE bucket_revisions")
    ]
    with engine.begin() as conn:
        conn.execute(text(statement.rstrip(";")))
    assert cli("replay", "--user", "alice").exit_code == 0
    assert bucket_rows(engine)[listed][0] < now_ms()

    plan_and_apply(cli, path)
    assert bucket_rows(engine)[listed][1:] == tuple(counts(7, 0, 3, 1).values())
    assert cli("verify").exit_code == 0


def test_a_plan_made_before_the_limit_is_refused_at_apply_instead_of_overflowing(
    history: tuple[Persona, Persona],
    db: Database,
    cli: Cli,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apply meets a bucket at the column maximum (as a plan recorded by an earlier version
    can): exit 1 naming it, nothing changed, the plan still planned."""
    alice, _ = history
    listed = key(alice, LISTED, "gpt-5-codex")
    runaway = BucketWrite("codex", "gpt-5-codex", listed[4], COLUMN_MAX, counts(999_999))
    apply_at(db, alice, [runaway], now_ms=now_ms())
    fixed = bucket(
        start=LISTED, model="gpt-5-codex", inp=7, cached=0, out=3, reasoning=1, cache_write=0
    )
    fixed.pop("revision")
    spec = parse(document(buckets=[fixed], zero_missing=False))
    with monkeypatch.context() as patched:  # an earlier version planned without the check
        patched.setattr(backfill, "_refuse_unsupersedable", lambda *_args: None)
        plan = create_plan(db, spec, reason="before the limit", now_ms=now_ms())
    facts = bucket_rows(engine)
    result = cli("backfill", "apply", plan.plan_id)
    assert result.exit_code == 1
    assert not isinstance(result.exception, OverflowError)
    assert str(COLUMN_MAX) in result.output
    assert bucket_rows(engine) == facts
    assert db.read(lambda conn: get_plan(conn, plan.plan_id))["state"] == "planned"


def test_plans_are_kept_per_user_and_the_frozen_table_is_never_written(
    history: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """A plan lives in backfill_plans_v2 under its user (distributable by user_id); the table
    of revisions 0002-0004, with its UNIQUE (plan_id), stays empty."""
    alice, _ = history
    plan = create_plan(db, parse(document()), reason="fix", now_ms=now_ms())
    apply_plan(db, plan.plan_id, now_ms=now_ms())
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, plan_id, state FROM backfill_plans_v2")).all()
        frozen = conn.execute(text("SELECT COUNT(*) FROM backfill_plans")).scalar()
    assert [tuple(r) for r in rows] == [(alice.user_id, plan.plan_id, "applied")]
    assert frozen == 0


def test_a_plan_id_held_by_two_users_is_refused_not_guessed(
    history: tuple[Persona, Persona], db: Database, engine: Engine
) -> None:
    """Plan ids are unique per user only; should one repeat, apply names the problem and
    changes nothing rather than apply another user's plan."""
    alice, bob = history
    plan = create_plan(db, parse(document()), reason="fix", now_ms=now_ms())
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO backfill_plans_v2 (user_id, plan_id, device_id, reason, state,"
                " range_start, range_end, affected_keys, changes, checksum_before,"
                " checksum_expected_after, created_at_ms) SELECT :bob, plan_id, device_id,"
                " reason, state, range_start, range_end, affected_keys, changes,"
                " checksum_before, checksum_expected_after, created_at_ms"
                " FROM backfill_plans_v2 WHERE user_id = :alice"
            ),
            {"bob": bob.user_id, "alice": alice.user_id},
        )
    facts = bucket_rows(engine)
    with pytest.raises(PlanRefused, match="more than one user"):
        apply_plan(db, plan.plan_id, now_ms=now_ms())
    assert bucket_rows(engine) == facts
