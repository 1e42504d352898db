"""``retention``: delete what the ledger no longer needs, in bounded batches (docs/design.md §2).

* ``ingest_receipts`` created more than N days ago (default 30). They serve the 24-hour
  Idempotency-Key replay and the audit of recent requests; after N days they are only bulk.
* ``bucket_revisions`` received more than M days ago (default 90) that are *superseded*: a
  later revision of the same key is the current one in ``usage_buckets`` and that current
  revision is itself in the log. A current revision is never deleted, nor a revision of a
  key without a bucket, nor one whose successor is missing from the log, so a replay after
  retention rebuilds exactly the same facts and aggregates.

Each batch (default 5,000 rows) is one short transaction; revisions are deleted per user
under the user's write lock, walking the primary key so no row is scanned twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, delete, exists, func, literal, select, tuple_

from usageledger.buckets import BUCKET_KEY
from usageledger.errors import ValidationFailed
from usageledger.evidence import EvidenceLogger
from usageledger.ops.jobs import NoProgress, Progress, Stages
from usageledger.ops.replay import same_key
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, ingest_receipts, usage_buckets, users

DAY_MS = 86_400_000
DEFAULT_RECEIPTS_DAYS = 30
DEFAULT_REVISIONS_DAYS = 90
DEFAULT_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Rows deleted (or, in a dry run, that would be) and the cut-offs used."""

    receipts: int
    revisions: int
    receipts_before_ms: int
    revisions_before_ms: int
    dry_run: bool


def superseded(user_id: int, before_ms: int) -> Any:
    """SQL: the user's revisions received before ``before_ms`` that retention may delete."""
    r = bucket_revisions.alias("r")
    current = usage_buckets.alias("current")
    logged = bucket_revisions.alias("logged")
    return (
        select(*(r.c[name] for name in (*BUCKET_KEY, "revision")))
        .select_from(r.join(current, same_key(current, r)))
        .where(
            r.c.user_id == user_id,
            r.c.received_at_ms < before_ms,
            r.c.revision < current.c.revision,
            exists(
                select(literal(1)).where(
                    same_key(logged, current), logged.c.revision == current.c.revision
                )
            ),
        )
    )


_PK = (*BUCKET_KEY, "revision")


def _revision_batch(
    conn: Connection, *, user_id: int, before_ms: int, after: tuple[Any, ...] | None, size: int
) -> tuple[int, tuple[Any, ...] | None]:
    """Delete the next ``size`` deletable revisions after key ``after``; return (n, last key)."""
    query = superseded(user_id, before_ms)
    columns = query.selected_columns
    key = tuple_(*(columns[name] for name in _PK))
    if after is not None:
        query = query.where(key > tuple_(*(literal(v) for v in after)))
    query = query.order_by(*(columns[name] for name in _PK)).limit(size)
    keys = [tuple(row) for row in conn.execute(query)]
    if not keys:
        return 0, None
    pk = tuple_(*(bucket_revisions.c[name] for name in _PK))
    # The same query as a subquery: the user's lock keeps the set unchanged in between. The
    # user named on the DELETE itself lets a partitioned or Citus layout prune to one
    # partition or shard (the subquery's own filter does not).
    conn.execute(
        delete(bucket_revisions).where(bucket_revisions.c.user_id == user_id, pk.in_(query))
    )
    return len(keys), keys[-1]


def _receipt_batch(conn: Connection, *, before_ms: int, size: int) -> int:
    old = (
        select(ingest_receipts.c.user_id, ingest_receipts.c.request_id)
        .where(ingest_receipts.c.created_at_ms < before_ms)
        .order_by(ingest_receipts.c.created_at_ms)
        .limit(size)
    )
    pk = tuple_(ingest_receipts.c.user_id, ingest_receipts.c.request_id)
    deleted = conn.execute(delete(ingest_receipts).where(pk.in_(old))).rowcount
    return max(deleted or 0, 0)


def run_retention(
    db: Database,
    *,
    now_ms: int,
    receipts_days: int = DEFAULT_RECEIPTS_DAYS,
    revisions_days: int = DEFAULT_REVISIONS_DAYS,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    evidence: EvidenceLogger | None = None,
    progress: Progress | None = None,
) -> RetentionReport:
    """Delete old receipts and old superseded revisions (or count them with ``dry_run``)."""
    if receipts_days < 1 or revisions_days < 1:
        raise ValidationFailed("retention windows must be at least 1 day")
    if not 1 <= batch_size <= 50_000:
        raise ValidationFailed("the batch size must be 1-50000 rows")
    progress = progress or NoProgress()
    receipts_before = now_ms - receipts_days * DAY_MS
    revisions_before = now_ms - revisions_days * DAY_MS
    stages = Stages(evidence, "retention")

    with stages.stage("receipts") as run:
        receipts = 0
        if dry_run:
            old = select(ingest_receipts).where(ingest_receipts.c.created_at_ms < receipts_before)
            receipts = db.read(partial(_count, query=old))
        else:
            while True:
                n = db.write(partial(_receipt_batch, before_ms=receipts_before, size=batch_size))
                receipts += n
                if n < batch_size:
                    break
        run.extra.update(deleted=receipts, dry_run=int(dry_run))

    with stages.stage("revisions") as run:
        revisions = 0
        people = db.read(
            lambda conn: [
                (int(r.user_id), str(r.name))
                for r in conn.execute(select(users.c.user_id, users.c.name).order_by(users.c.name))
            ]
        )
        for user_id, name in people:
            progress.user_started(name, 1)
            if dry_run:
                query = superseded(user_id, revisions_before)
                revisions += db.read(partial(_count, query=query))
            else:
                revisions += _delete_superseded(db, user_id, revisions_before, batch_size)
            progress.advance()
        run.extra.update(deleted=revisions, dry_run=int(dry_run))
    return RetentionReport(receipts, revisions, receipts_before, revisions_before, dry_run)


def _count(conn: Connection, *, query: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def _delete_superseded(db: Database, user_id: int, before_ms: int, size: int) -> int:
    """Delete one user's deletable revisions, a batch per transaction, walking the key."""
    deleted = 0
    after: tuple[Any, ...] | None = None
    while True:
        n, after = db.write(
            partial(_revision_batch, user_id=user_id, before_ms=before_ms, after=after, size=size),
            user_id=user_id,
        )
        deleted += n
        if n < size:
            return deleted
