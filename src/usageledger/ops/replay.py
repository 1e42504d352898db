"""``replay``: rebuild the derived tables from the source of truth (DESIGN §2).

Per user and per chunk of local days, in one write transaction under the user's write lock
(so ingest can keep running and no update is lost):

1. ``usage_buckets`` ← the winning revision of each key in ``bucket_revisions`` (the highest
   revision; its values; ``updated_at_ms`` = that revision's ``received_at_ms``). Set-based:
   one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` of the winners that differ from what is
   stored, then one ``DELETE`` of buckets that have no revision at all (only when the range
   has more buckets than logged keys).
2. ``usage_daily`` ← :func:`usageledger.ledger.rollups.rebuild_range`, the path ingest uses.

A bucket whose current revision row was deleted from the log follows the highest remaining
revision. Replaying twice changes nothing: the second run writes no bucket and rewrites the
same rollup rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, delete, func, literal, select, tuple_
from sqlalchemy.sql import ColumnElement, Select

from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS
from usageledger.ledger.ingest import BUCKET_VALUE_COLUMNS
from usageledger.ledger.rollups import rebuild_range
from usageledger.m1 import M1Logger
from usageledger.ops.jobs import NoProgress, Progress, Stages
from usageledger.ops.scope import (
    DEFAULT_CHUNK_DAYS,
    check_chunk_days,
    chunk_bounds,
    resolve_scopes,
    user_zone,
)
from usageledger.store.dialect import insert_for
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, usage_buckets, usage_daily


@dataclass(slots=True)
class ReplayReport:
    """What a replay did: users and chunks covered, buckets rewritten or removed, rollups."""

    users: int = 0
    chunks: int = 0
    buckets_written: int = 0
    buckets_deleted: int = 0
    daily_rows: int = 0
    per_user: dict[str, dict[str, int]] = field(default_factory=dict)


def same_key(a: Any, b: Any) -> ColumnElement[bool]:
    """SQL: ``a`` and ``b`` (tables or aliases with the bucket key) have the same key."""
    return and_(*(a.c[name] == b.c[name] for name in BUCKET_KEY))


def winners(user_id: int, start: int, end: int) -> Select[Any]:
    """SQL: the highest revision of each of the user's keys starting in ``[start, end)``.

    Columns: the key, ``revision``, the counts and ``received_at_ms``. The maximum comes from a
    window over the primary-key order, one pass over the range on both engines.
    """
    r = bucket_revisions.alias("r")
    series = [r.c[name] for name in BUCKET_KEY if name != "user_id"]
    ranked = (
        select(
            *(r.c[name] for name in BUCKET_KEY),
            r.c.revision,
            *(r.c[name] for name in COUNT_COLUMNS),
            r.c.received_at_ms,
            func.max(r.c.revision).over(partition_by=series).label("top"),
        )
        .where(r.c.user_id == user_id, r.c.bucket_start >= start, r.c.bucket_start < end)
        .subquery("ranked")
    )
    return select(*(c for c in ranked.c if c.name != "top")).where(
        ranked.c.revision == ranked.c.top
    )


def _in_range(table: Any, user_id: int, start: int, end: int) -> list[ColumnElement[bool]]:
    return [table.c.user_id == user_id, table.c.bucket_start >= start, table.c.bucket_start < end]


def rebuild_buckets(conn: Connection, user_id: int, start: int, end: int) -> tuple[int, int]:
    """Make the user's ``usage_buckets`` in ``[start, end)`` equal the winning revisions.

    Returns ``(written, deleted)``: buckets inserted or corrected, buckets without any revision
    removed. A bucket that already holds its winner is not touched: the winners are compared
    with the stored rows of the range as one hashed ``NOT IN`` set, so each side is read once.
    """
    compared = [*BUCKET_KEY, "revision", *COUNT_COLUMNS]
    best = winners(user_id, start, end).subquery("best")
    stored = select(*(usage_buckets.c[name] for name in compared)).where(
        *_in_range(usage_buckets, user_id, start, end)
    )
    changed = select(*best.c).where(tuple_(*(best.c[name] for name in compared)).not_in(stored))
    stmt: Any = insert_for(conn, usage_buckets).from_select(
        [*BUCKET_KEY, "revision", *COUNT_COLUMNS, "updated_at_ms"], changed
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=list(BUCKET_KEY),
        set_={name: stmt.excluded[name] for name in BUCKET_VALUE_COLUMNS},
    )
    # SQLAlchemy reads an INSERT's rowcount only when asked to preserve it.
    written = conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
    return max(written or 0, 0), _delete_orphans(conn, user_id, start, end)


def _delete_orphans(conn: Connection, user_id: int, start: int, end: int) -> int:
    """Delete the range's buckets that have no revision at all; return how many.

    Every logged key now has its bucket, so orphans exist exactly when the range holds more
    buckets than logged keys. Two cheap index counts decide whether the anti-join runs; an
    orphan only comes from a damaged or hand-edited table.
    """
    keys = (
        select(literal(1))
        .select_from(bucket_revisions)
        .where(*_in_range(bucket_revisions, user_id, start, end))
        .group_by(*(bucket_revisions.c[name] for name in BUCKET_KEY))
        .subquery()
    )
    logged = conn.execute(select(func.count()).select_from(keys)).scalar_one()
    stored = conn.execute(
        select(func.count()).where(*_in_range(usage_buckets, user_id, start, end))
    ).scalar_one()
    if stored == logged:
        return 0
    logged_keys = select(*(bucket_revisions.c[name] for name in BUCKET_KEY)).where(
        *_in_range(bucket_revisions, user_id, start, end)
    )
    key = tuple_(*(usage_buckets.c[name] for name in BUCKET_KEY))
    deleted = conn.execute(
        delete(usage_buckets).where(
            *_in_range(usage_buckets, user_id, start, end), key.not_in(logged_keys)
        )
    ).rowcount
    return max(deleted or 0, 0)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one chunk's transaction did."""

    written: int
    deleted: int
    daily_rows: int


def replay_chunk(conn: Connection, user_id: int, first: date, last: date) -> ChunkResult:
    """Rebuild one user's buckets and rollups for local days ``first`` … ``last``.

    The caller holds the user's write lock. The time zone is read here, under the lock, so a
    concurrent time-zone change cannot interleave.
    """
    tz = user_zone(conn, user_id)
    chunk = chunk_bounds(first, last, tz)
    written, deleted = rebuild_buckets(conn, user_id, chunk.start, chunk.end)
    rebuild_range(conn, user_id, tz, first, last)
    # Counted, not taken from rebuild_range: its INSERT's rowcount is not kept on PostgreSQL.
    daily = conn.execute(
        select(func.count()).where(
            usage_daily.c.user_id == user_id, usage_daily.c.day >= first, usage_daily.c.day <= last
        )
    ).scalar_one()
    return ChunkResult(written, deleted, int(daily))


def replay(
    db: Database,
    *,
    user: str | None = None,
    first: date | None = None,
    last: date | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    m1: M1Logger | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Rebuild ``usage_buckets`` and ``usage_daily`` for one user or all, over a day range."""
    check_chunk_days(chunk_days)
    progress = progress or NoProgress()
    stages = Stages(m1, "replay")
    report = ReplayReport()
    with stages.stage("scope") as run:
        scopes = db.read(lambda conn: resolve_scopes(conn, user, first, last))
        run.extra["users"] = len(scopes)
    for scope in scopes:
        chunks = scope.chunks(chunk_days)
        progress.user_started(scope.name, len(chunks))
        totals = {"chunks": 0, "buckets_written": 0, "buckets_deleted": 0, "daily_rows": 0}
        with stages.stage("rebuild") as run:
            run.extra["user_id"] = scope.user_id
            for lo, hi in chunks:
                done = db.write(
                    partial(_chunk, user_id=scope.user_id, first=lo, last=hi), user_id=scope.user_id
                )
                totals["chunks"] += 1
                totals["buckets_written"] += done.written
                totals["buckets_deleted"] += done.deleted
                totals["daily_rows"] += done.daily_rows
                progress.advance()
            run.extra.update(totals)
        report.users += 1
        report.chunks += totals["chunks"]
        report.buckets_written += totals["buckets_written"]
        report.buckets_deleted += totals["buckets_deleted"]
        report.daily_rows += totals["daily_rows"]
        report.per_user[scope.name] = totals
    return report


def _chunk(conn: Connection, *, user_id: int, first: date, last: date) -> ChunkResult:
    return replay_chunk(conn, user_id, first, last)
