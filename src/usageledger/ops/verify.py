"""``verify``: recompute the derived tables aside and report every difference (docs/design.md §6).

For each user and chunk of local days, the expected ``usage_buckets`` (the highest revision of
each key in ``bucket_revisions``) and the expected ``usage_daily`` (sums of those expected
buckets by local day, computed with :mod:`zoneinfo`) are built in Python, independently of the
SQL that ingest and replay use, and compared row by row with what is stored. Nothing is
written. Each chunk is read under the user's write lock, so a concurrent ingest is seen either
entirely or not at all and cannot show up as a false difference.

What verify can and cannot see: a derived row that differs from a fresh rebuild (a corrupted
bucket or rollup, a bucket without any revision, a bucket still holding a revision that was
deleted from the log). A deleted revision that was *not* current changes no derived value, so
it is not a difference. ``updated_at_ms`` is bookkeeping and is not compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from usageledger.buckets import COUNT_COLUMNS, iso_utc, local_day
from usageledger.evidence import EvidenceLogger
from usageledger.ops.jobs import NoProgress, Progress, Stages
from usageledger.ops.scope import (
    DEFAULT_CHUNK_DAYS,
    UserScope,
    check_chunk_days,
    chunk_bounds,
    resolve_scopes,
    user_zone,
)
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, devices, usage_buckets, usage_daily

BUCKETS = "usage_buckets"
DAILY = "usage_daily"

SeriesKey = tuple[int, str, str, int]  # device_id, source, model, bucket_start
DayKey = tuple[date, int, str, str]  # day, device_id, source, model


@dataclass(frozen=True, slots=True)
class Drift:
    """One derived row that differs from its rebuild; ``None`` means the row is missing."""

    user: str
    table: str
    at: str  # the bucket start (usage_buckets) or the local day (usage_daily)
    device: str
    source: str
    model: str
    stored: dict[str, int] | None
    expected: dict[str, int] | None

    def describe(self) -> tuple[str, str]:
        """``(stored, expected)`` as text: the differing fields, or ``missing``."""
        return _show(self.stored, self.expected), _show(self.expected, self.stored)


def _show(values: Mapping[str, int] | None, other: Mapping[str, int] | None) -> str:
    if values is None:
        return "missing"
    names = [n for n in values if other is None or other.get(n) != values[n]]
    return " ".join(f"{n}={values[n]}" for n in names)


@dataclass(slots=True)
class VerifyReport:
    """What verify compared and every difference it found."""

    users: int = 0
    chunks: int = 0
    buckets: int = 0
    days: int = 0
    drifts: list[Drift] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when the derived tables equal a fresh rebuild."""
        return not self.drifts


@dataclass(frozen=True, slots=True)
class ChunkCheck:
    """The differences in one chunk, and how many rows were compared."""

    drifts: list[Drift]
    buckets: int
    days: int


def verify_chunk(conn: Connection, scope: UserScope, first: date, last: date) -> ChunkCheck:
    """Compare one user's stored buckets and rollups for local days ``first`` … ``last``."""
    uid = scope.user_id
    tz = user_zone(conn, uid)
    chunk = chunk_bounds(first, last, tz)
    names = {
        int(r.device_id): str(r.name)
        for r in conn.execute(
            select(devices.c.device_id, devices.c.name).where(devices.c.user_id == uid)
        )
    }
    in_range = (chunk.start, chunk.end)
    expected_buckets = _winners(conn, uid, *in_range)
    stored_buckets = _stored_buckets(conn, uid, *in_range)
    expected_daily = _daily_from(expected_buckets, tz)
    stored_daily = _stored_daily(conn, uid, first, last)

    drifts: list[Drift] = []
    for key in sorted(expected_buckets.keys() | stored_buckets.keys()):
        want, have = expected_buckets.get(key), stored_buckets.get(key)
        if want != have:
            device_id, source, model, start = key
            drifts.append(
                Drift(
                    scope.name,
                    BUCKETS,
                    iso_utc(start),
                    names.get(device_id, str(device_id)),
                    source,
                    model,
                    have,
                    want,
                )
            )
    for day_key in sorted(expected_daily.keys() | stored_daily.keys()):
        want, have = expected_daily.get(day_key), stored_daily.get(day_key)
        if want != have:
            day, device_id, source, model = day_key
            drifts.append(
                Drift(
                    scope.name,
                    DAILY,
                    day.isoformat(),
                    names.get(device_id, str(device_id)),
                    source,
                    model,
                    have,
                    want,
                )
            )
    return ChunkCheck(drifts, len(expected_buckets), len(expected_daily))


def _winners(
    conn: Connection, user_id: int, start: int, end: int
) -> dict[SeriesKey, dict[str, int]]:
    """The highest revision of each key, from every revision (not the replay SQL)."""
    r = bucket_revisions.c
    best: dict[SeriesKey, dict[str, int]] = {}
    rows = conn.execute(
        select(
            r.device_id,
            r.source,
            r.model,
            r.bucket_start,
            r.revision,
            *(r[c] for c in COUNT_COLUMNS),
        ).where(r.user_id == user_id, r.bucket_start >= start, r.bucket_start < end)
    )
    for row in rows:
        key: SeriesKey = (int(row[0]), str(row[1]), str(row[2]), int(row[3]))
        revision = int(row[4])
        current = best.get(key)
        if current is None or revision > current["revision"]:
            best[key] = {
                "revision": revision,
                **dict(zip(COUNT_COLUMNS, map(int, row[5:]), strict=True)),
            }
    return best


def _stored_buckets(
    conn: Connection, user_id: int, start: int, end: int
) -> dict[SeriesKey, dict[str, int]]:
    b = usage_buckets.c
    rows = conn.execute(
        select(
            b.device_id,
            b.source,
            b.model,
            b.bucket_start,
            b.revision,
            *(b[c] for c in COUNT_COLUMNS),
        ).where(b.user_id == user_id, b.bucket_start >= start, b.bucket_start < end)
    )
    return {
        (int(row[0]), str(row[1]), str(row[2]), int(row[3])): {
            "revision": int(row[4]),
            **dict(zip(COUNT_COLUMNS, map(int, row[5:]), strict=True)),
        }
        for row in rows
    }


def _daily_from(
    buckets: Mapping[SeriesKey, Mapping[str, int]], tz: ZoneInfo
) -> dict[DayKey, dict[str, int]]:
    days: dict[int, date] = {}
    sums: dict[DayKey, dict[str, int]] = {}
    for (device_id, source, model, start), values in buckets.items():
        day = days.get(start)
        if day is None:
            day = days[start] = local_day(start, tz)
        acc = sums.setdefault((day, device_id, source, model), dict.fromkeys(COUNT_COLUMNS, 0))
        for name in COUNT_COLUMNS:
            acc[name] += values[name]
    return sums


def _stored_daily(
    conn: Connection, user_id: int, first: date, last: date
) -> dict[DayKey, dict[str, int]]:
    d = usage_daily.c
    rows = conn.execute(
        select(d.day, d.device_id, d.source, d.model, *(d[c] for c in COUNT_COLUMNS)).where(
            d.user_id == user_id, d.day >= first, d.day <= last
        )
    )
    return {
        (row[0], int(row[1]), str(row[2]), str(row[3])): dict(
            zip(COUNT_COLUMNS, map(int, row[4:]), strict=True)
        )
        for row in rows
    }


def verify(
    db: Database,
    *,
    user: str | None = None,
    first: date | None = None,
    last: date | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    evidence: EvidenceLogger | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Compare the derived tables of one user or all with a fresh rebuild; write nothing."""
    check_chunk_days(chunk_days)
    progress = progress or NoProgress()
    stages = Stages(evidence, "verify")
    report = VerifyReport()
    with stages.stage("scope") as run:
        scopes = db.read(lambda conn: resolve_scopes(conn, user, first, last))
        run.extra["users"] = len(scopes)
    for scope in scopes:
        chunks = scope.chunks(chunk_days)
        progress.user_started(scope.name, len(chunks))
        with stages.stage("compare") as run:
            run.extra["user_id"] = scope.user_id
            found = 0
            for lo, hi in chunks:
                # Under the user's write lock for a consistent view; nothing is written.
                check = db.write(
                    partial(verify_chunk, scope=scope, first=lo, last=hi), user_id=scope.user_id
                )
                report.chunks += 1
                report.buckets += check.buckets
                report.days += check.days
                report.drifts += check.drifts
                found += len(check.drifts)
                progress.advance()
            run.extra.update(chunks=len(chunks), drifts=found)
        report.users += 1
    return report
