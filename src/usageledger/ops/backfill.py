"""``backfill``: plan → apply → rollback of a device's bucket values (the stop rule of
docs/design.md §6).

* **plan** records the scope (user, device, ``[start, end)``), the resolved changes (the
  bucket values to set, zeros included), the number of affected keys, the checksum of the
  range now and the checksum it must have after apply. Nothing else is written.
* **apply** refuses unless the plan is ``planned`` and the range still has its checksum
  before; it snapshots the values it replaces, writes the changes as *new revisions*
  (``revision = max(highest revision of the key + 1, now in ms)``, ``origin =
  backfill:<plan_id>``) through :func:`usageledger.ledger.ingest.apply_batch` — which also
  rebuilds the touched days — and records the checksum after, which must equal the expected
  one (otherwise the transaction is rolled back).
* **rollback** refuses unless the plan is ``applied`` and the range still has the checksum
  apply left; it writes the snapshot back as new revisions (``origin = rollback:<plan_id>``)
  and checks that the range has its checksum before again.

A revision at the largest the database stores (``2**63 - 1``, which only a database written
before uploads were limited to revisions below ``2**53`` can hold) cannot be superseded: plan,
apply and rollback refuse such a bucket by name instead of overflowing the column, and
docs/operations.md ("Repairing a runaway revision") says how to repair it by hand.

The log keeps every step. A bucket the plan created did not exist before; an append-only
ledger cannot delete it, so rollback sets it to zero, which every total counts as absent (and
so do the checksums, :mod:`usageledger.ops.checksums`). A device's tracker that later sends a
value with a newer revision wins over a backfilled value, as for any other revision.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, update

from usageledger.buckets import COUNT_COLUMNS, STORED_REVISION_MAX, iso_utc
from usageledger.errors import ErrorCode, LedgerError, NotFound, ValidationFailed
from usageledger.evidence import EvidenceLogger
from usageledger.ledger.accounts import require_user
from usageledger.ledger.ingest import BucketWrite, apply_batch
from usageledger.ops.checksums import FactKey, Facts, facts_checksum, range_checksum, range_facts
from usageledger.ops.jobs import Stages
from usageledger.ops.plan_file import PlanSpec
from usageledger.ops.scope import require_server_ledger, user_zone
from usageledger.store.engine import Database
from usageledger.store.tables import backfill_plans, bucket_revisions, devices, users

ZEROS: tuple[int, ...] = (0,) * len(COUNT_COLUMNS)


class PlanRefused(LedgerError):
    """A plan cannot be applied or rolled back as asked; nothing was changed."""

    status = 409
    code = ErrorCode.VALIDATION_FAILED


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A plan after a step: its id, state, affected keys and the per-outcome write counts."""

    plan_id: str
    state: str
    affected_keys: int
    written: int = 0


def create_plan(
    db: Database,
    spec: PlanSpec,
    *,
    reason: str,
    now_ms: int,
    evidence: EvidenceLogger | None = None,
) -> PlanResult:
    """Record a plan for ``spec``; refuse one that would change nothing."""
    if not reason.strip():
        raise ValidationFailed("a plan needs a --reason (it is kept with the plan for audit)")
    stages = Stages(evidence, "backfill")
    with stages.stage("plan") as run:
        user_id = int(db.read(lambda conn: require_user(conn, spec.user))["user_id"])
        result = db.write(
            lambda conn: _plan(conn, user_id, spec, reason=reason, now_ms=now_ms),
            user_id=user_id,
        )
        run.extra.update(plan_id=result.plan_id, affected_keys=result.affected_keys)
    return result


def _plan(
    conn: Connection, user_id: int, spec: PlanSpec, *, reason: str, now_ms: int
) -> PlanResult:
    require_server_ledger(conn)
    device_id = _device_id(conn, user_id, spec.device)
    current = range_facts(conn, user_id, device_id, spec.start, spec.end)
    changes: Facts = {}
    for key, counts in spec.buckets.items():
        if current.get(key, ZEROS) != counts:
            changes[key] = counts
    if spec.zero_missing:
        for key, counts in current.items():
            if key not in spec.buckets and any(counts):
                changes[key] = ZEROS
    if not changes:
        raise ValidationFailed(
            "the plan changes nothing: every bucket in it already has the given values"
        )
    _refuse_unsupersedable(
        _stored_revisions(conn, user_id, device_id, spec.start, spec.end), changes
    )
    plan_id = str(uuid.uuid4())
    conn.execute(
        insert(backfill_plans).values(
            user_id=user_id,
            plan_id=plan_id,
            device_id=device_id,
            reason=reason,
            state="planned",
            range_start=spec.start,
            range_end=spec.end,
            affected_keys=len(changes),
            changes=orjson.dumps(
                {"zero_missing": spec.zero_missing, "buckets": _entries(changes)}
            ).decode(),
            checksum_before=facts_checksum(current),
            checksum_expected_after=facts_checksum({**current, **changes}),
            created_at_ms=now_ms,
        )
    )
    return PlanResult(plan_id, "planned", len(changes))


def _device_id(conn: Connection, user_id: int, name: str) -> int:
    found = conn.execute(
        select(devices.c.device_id).where(devices.c.user_id == user_id, devices.c.name == name)
    ).scalar()
    if found is None:
        raise NotFound(f"the user has no device named {name!r}")
    return int(found)


def _entries(values: Mapping[FactKey, tuple[int, ...] | None]) -> list[dict[str, Any]]:
    return [
        {
            "source": source,
            "model": model,
            "bucket_start": start,
            "counts": None if counts is None else dict(zip(COUNT_COLUMNS, counts, strict=True)),
        }
        for (source, model, start), counts in sorted(values.items())
    ]


def _from_entries(entries: list[dict[str, Any]]) -> dict[FactKey, tuple[int, ...] | None]:
    """The bucket values of a stored plan or snapshot. A plan made before a schema added
    counts (v2's six, before v3) lacks them: they are 0, as in the ledger then."""
    return {
        (str(e["source"]), str(e["model"]), int(e["bucket_start"])): (
            None
            if e["counts"] is None
            else tuple(int(e["counts"].get(c, 0)) for c in COUNT_COLUMNS)
        )
        for e in entries
    }


def apply_plan(
    db: Database, plan_id: str, *, now_ms: int, evidence: EvidenceLogger | None = None
) -> PlanResult:
    """Apply a plan once, if its range is as the plan saw it."""
    return _run_step(db, plan_id, "apply", _apply, now_ms=now_ms, evidence=evidence)


def _run_step(
    db: Database,
    plan_id: str,
    stage: str,
    step: Callable[[Connection, int, str, int], PlanResult],
    *,
    now_ms: int,
    evidence: EvidenceLogger | None,
) -> PlanResult:
    """Run ``step`` of a plan in one write transaction under its user's lock, as a job stage."""
    stages = Stages(evidence, "backfill")
    with stages.stage(stage) as run:
        run.extra["plan_id"] = plan_id
        user_id = _plan_owner(db, plan_id)
        result = db.write(lambda conn: step(conn, user_id, plan_id, now_ms), user_id=user_id)
        run.extra.update(affected_keys=result.affected_keys, written=result.written)
    return result


def _apply(conn: Connection, user_id: int, plan_id: str, now_ms: int) -> PlanResult:
    plan = _locked_plan(conn, user_id, plan_id)
    if plan["state"] != "planned":
        raise PlanRefused(
            f"plan {plan_id} is {plan['state']}, not planned: a plan is applied once; "
            "make a new plan for further changes"
        )
    user_id, device_id = int(plan["user_id"]), int(plan["device_id"])
    start, end = int(plan["range_start"]), int(plan["range_end"])
    current = range_facts(conn, user_id, device_id, start, end)
    if facts_checksum(current) != plan["checksum_before"]:
        raise PlanRefused(
            f"the data of plan {plan_id} changed since it was planned (an upload or another "
            "plan touched its range); nothing was applied. Make a new plan from the current "
            "data with `usageledger backfill plan`"
        )
    changes = _from_entries(orjson.loads(plan["changes"])["buckets"])
    revisions = _stored_revisions(conn, user_id, device_id, start, end)
    snapshot = {key: current.get(key) for key in changes}  # None: the bucket did not exist
    snapshot_entries = [
        {**entry, "revision": revisions.get(key)}
        for entry, key in zip(_entries(snapshot), sorted(snapshot), strict=True)
    ]
    written = _write(conn, plan, changes, revisions, origin=f"backfill:{plan_id}", now_ms=now_ms)
    after = range_checksum(conn, user_id, device_id, start, end)
    if after != plan["checksum_expected_after"]:
        raise LedgerError(  # rolls the transaction back: nothing is changed
            f"applying plan {plan_id} did not give the expected checksum; nothing was applied",
            code=ErrorCode.INTERNAL_ERROR,
        )
    conn.execute(
        update(backfill_plans)
        .where(backfill_plans.c.user_id == user_id, backfill_plans.c.plan_id == plan_id)
        .values(
            state="applied",
            snapshot=orjson.dumps({"buckets": snapshot_entries}).decode(),
            checksum_after=after,
            applied_at_ms=now_ms,
        )
    )
    return PlanResult(plan_id, "applied", int(plan["affected_keys"]), written)


def rollback_plan(
    db: Database, plan_id: str, *, now_ms: int, evidence: EvidenceLogger | None = None
) -> PlanResult:
    """Restore what an applied plan replaced, if its range is as apply left it."""
    return _run_step(db, plan_id, "rollback", _rollback, now_ms=now_ms, evidence=evidence)


def _rollback(conn: Connection, user_id: int, plan_id: str, now_ms: int) -> PlanResult:
    plan = _locked_plan(conn, user_id, plan_id)
    if plan["state"] != "applied":
        raise PlanRefused(
            f"plan {plan_id} is {plan['state']}, not applied: only an applied plan can be "
            "rolled back, once"
        )
    user_id, device_id = int(plan["user_id"]), int(plan["device_id"])
    start, end = int(plan["range_start"]), int(plan["range_end"])
    if range_checksum(conn, user_id, device_id, start, end) != plan["checksum_after"]:
        raise PlanRefused(
            f"the data of plan {plan_id} changed since it was applied (an upload or another "
            "plan touched its range); rolling back would overwrite that, so nothing was "
            "changed. Make a new plan for the values you want"
        )
    snapshot = _from_entries(orjson.loads(plan["snapshot"])["buckets"])
    restore = {key: counts if counts is not None else ZEROS for key, counts in snapshot.items()}
    revisions = _stored_revisions(conn, user_id, device_id, start, end)
    written = _write(conn, plan, restore, revisions, origin=f"rollback:{plan_id}", now_ms=now_ms)
    if range_checksum(conn, user_id, device_id, start, end) != plan["checksum_before"]:
        raise LedgerError(
            f"rolling back plan {plan_id} did not restore the checksum before; nothing changed",
            code=ErrorCode.INTERNAL_ERROR,
        )
    conn.execute(
        update(backfill_plans)
        .where(backfill_plans.c.user_id == user_id, backfill_plans.c.plan_id == plan_id)
        .values(state="rolled_back", rolled_back_at_ms=now_ms)
    )
    return PlanResult(plan_id, "rolled_back", int(plan["affected_keys"]), written)


def _write(
    conn: Connection,
    plan: Mapping[str, Any],
    values: Mapping[FactKey, tuple[int, ...] | None],
    revisions: Mapping[FactKey, int],
    *,
    origin: str,
    now_ms: int,
) -> int:
    """Write ``values`` as new revisions through the ingest path; return the rows written."""
    _refuse_unsupersedable(revisions, values)
    writes = [
        BucketWrite(
            source=source,
            model=model,
            bucket_start=start,
            revision=max(revisions.get((source, model, start), 0) + 1, now_ms),
            counts=dict(zip(COUNT_COLUMNS, counts or ZEROS, strict=True)),
        )
        for (source, model, start), counts in sorted(values.items())
    ]
    user_id = int(plan["user_id"])
    outcome = apply_batch(
        conn,
        user_id=user_id,
        device_id=int(plan["device_id"]),
        tz=user_zone(conn, user_id),
        writes=writes,
        origin=origin,
        now_ms=now_ms,
    )
    return outcome.inserted + outcome.updated


def _refuse_unsupersedable(revisions: Mapping[FactKey, int], keys: Iterable[FactKey]) -> None:
    """Refuse when a key's highest revision leaves no room for a new one above it.

    A new revision is the highest + 1; at the column's maximum that would overflow it (and
    a write at the same revision would be a conflict, not applied).
    """
    stuck = sorted(key for key in keys if revisions.get(key, 0) >= STORED_REVISION_MAX)
    if stuck:
        source, model, start = stuck[0]
        raise PlanRefused(
            f"{len(stuck)} bucket(s) of the plan have revision {STORED_REVISION_MAX}, the "
            f"largest the database stores (the first: {source} {model} at {iso_utc(start)}), "
            "so no new revision can replace them; nothing was changed. Repair them as "
            "docs/operations.md says under 'Repairing a runaway revision'"
        )


def _stored_revisions(
    conn: Connection, user_id: int, device_id: int, start: int, end: int
) -> dict[FactKey, int]:
    """The highest revision in the log of each of the device's keys in the range."""
    r = bucket_revisions.c
    rows = conn.execute(
        select(r.source, r.model, r.bucket_start, func.max(r.revision))
        .where(
            r.user_id == user_id,
            r.device_id == device_id,
            r.bucket_start >= start,
            r.bucket_start < end,
        )
        .group_by(r.source, r.model, r.bucket_start)
    )
    return {(str(row[0]), str(row[1]), int(row[2])): int(row[3]) for row in rows}


def _plan_owner(db: Database, plan_id: str) -> int:
    """The user of a plan: the one lookup by plan id alone (on Citus it asks every shard, once
    per command); every later statement names the user, so it goes to that user's shard."""
    found = db.read(
        lambda conn: (
            conn.execute(
                select(backfill_plans.c.user_id).where(backfill_plans.c.plan_id == plan_id).limit(2)
            )
            .scalars()
            .all()
        )
    )
    if not found:
        raise NotFound(f"no backfill plan {plan_id!r}; see `usageledger plans list`")
    if len(found) > 1:
        # The key is (user_id, plan_id); a random UUID twice is not expected, but never guess.
        raise PlanRefused(f"plan id {plan_id!r} belongs to more than one user; nothing was done")
    return int(found[0])


def _locked_plan(conn: Connection, user_id: int, plan_id: str) -> dict[str, Any]:
    """The plan row, read under its user's write lock (held by the caller)."""
    row = conn.execute(
        select(backfill_plans).where(
            backfill_plans.c.user_id == user_id, backfill_plans.c.plan_id == plan_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no backfill plan {plan_id!r}; see `usageledger plans list`")
    return dict(row._mapping)


def list_plans(conn: Connection, user: str | None = None) -> list[dict[str, Any]]:
    """Plans, newest first, with their user and device names."""
    query = (
        select(
            backfill_plans,
            users.c.name.label("user"),
            devices.c.name.label("device"),
        )
        .join(users, users.c.user_id == backfill_plans.c.user_id)
        .join(
            devices,
            (devices.c.user_id == backfill_plans.c.user_id)
            & (devices.c.device_id == backfill_plans.c.device_id),
        )
        .order_by(backfill_plans.c.created_at_ms.desc(), backfill_plans.c.plan_id)
    )
    if user is not None:
        query = query.where(users.c.name == user)
    return [dict(r) for r in conn.execute(query).mappings()]


def get_plan(conn: Connection, plan_id: str) -> dict[str, Any]:
    """One plan with its user and device names, and its changes and snapshot decoded."""
    for plan in list_plans(conn):
        if plan["plan_id"] == plan_id:
            plan["changes"] = orjson.loads(plan["changes"])
            plan["snapshot"] = orjson.loads(plan["snapshot"]) if plan["snapshot"] else None
            return plan
    raise NotFound(f"no backfill plan {plan_id!r}; see `usageledger plans list`")
