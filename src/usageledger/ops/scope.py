"""Which users and local days a job covers, and how it cuts them into bounded chunks.

A job runs per user over that user's local days (their time zone), in chunks of at most
:data:`MAX_CHUNK_DAYS` days per transaction, so a long history never holds the user's write
lock for long. Without ``--from``/``--to`` the scope is the user's whole history: every day
that has a revision, a bucket or a rollup row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, literal, select

from usageledger.buckets import day_range, local_day
from usageledger.errors import ValidationFailed
from usageledger.ledger.accounts import require_user
from usageledger.store.tables import (
    bucket_revisions,
    usage_buckets,
    usage_daily,
    usage_events,
    users,
)

DEFAULT_CHUNK_DAYS = 62
MAX_CHUNK_DAYS = 93


@dataclass(frozen=True, slots=True)
class UserScope:
    """One user's local days ``first`` … ``last`` (inclusive) in time zone ``tz``."""

    user_id: int
    name: str
    tz: ZoneInfo
    first: date
    last: date

    def chunks(self, days: int) -> list[tuple[date, date]]:
        """``(first, last)`` runs of at most ``days`` local days covering the scope."""
        out: list[tuple[date, date]] = []
        cursor = self.first
        while cursor <= self.last:
            end = min(cursor + timedelta(days=days - 1), self.last)
            out.append((cursor, end))
            cursor = end + timedelta(days=1)
        return out


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of one user's local days, with its ``[start, end)`` in epoch seconds."""

    first: date
    last: date
    start: int
    end: int


def chunk_bounds(first: date, last: date, tz: ZoneInfo) -> Chunk:
    """The chunk of local days ``first`` … ``last`` in ``tz``."""
    start, end = day_range(first, last, tz)
    return Chunk(first, last, start, end)


def check_chunk_days(days: int) -> None:
    """Refuse a chunk size outside 1 … :data:`MAX_CHUNK_DAYS`."""
    if not 1 <= days <= MAX_CHUNK_DAYS:
        raise ValidationFailed(f"chunk size must be 1-{MAX_CHUNK_DAYS} days, not {days}")


def resolve_scopes(
    conn: Connection,
    user_name: str | None,
    first: date | None,
    last: date | None,
) -> list[UserScope]:
    """The scope of each user (one, or every user by name), clipped to ``first``/``last``.

    A user with no data in the range is left out.
    """
    if first is not None and last is not None and first > last:
        raise ValidationFailed(f"--from {first} is after --to {last}")
    require_server_ledger(conn)
    if user_name is not None:
        rows = [require_user(conn, user_name)]
    else:
        rows = [dict(r) for r in conn.execute(select(users).order_by(users.c.name)).mappings()]
    scopes: list[UserScope] = []
    for row in rows:
        tz = ZoneInfo(str(row["time_zone"]))
        bounds = history_bounds(conn, int(row["user_id"]), tz)
        if bounds is None:
            continue
        lo = max(bounds[0], first) if first is not None else bounds[0]
        hi = min(bounds[1], last) if last is not None else bounds[1]
        if lo <= hi:
            scopes.append(UserScope(int(row["user_id"]), str(row["name"]), tz, lo, hi))
    return scopes


def require_server_ledger(conn: Connection) -> None:
    """Refuse a tracker's local ledger, whose buckets derive from ``usage_events``.

    A local ledger has no revision log, so every bucket would look like one without a
    revision: a replay would empty it and verify would report all of it.
    """
    if conn.execute(select(literal(1)).select_from(usage_events).limit(1)).first() is not None:
        raise ValidationFailed(
            "this is a local ledger (its source of truth is usage_events, not bucket_revisions);"
            " replay, verify and backfill work on a server ledger: check USAGELEDGER_DATABASE_URL"
        )


def history_bounds(conn: Connection, user_id: int, tz: ZoneInfo) -> tuple[date, date] | None:
    """The first and last local day with any revision, bucket or rollup row of the user."""
    days: list[date] = []
    for table in (bucket_revisions, usage_buckets):
        lo, hi = conn.execute(
            select(func.min(table.c.bucket_start), func.max(table.c.bucket_start)).where(
                table.c.user_id == user_id
            )
        ).one()
        if lo is not None:
            days += [local_day(int(lo), tz), local_day(int(hi), tz)]
    lo_day, hi_day = conn.execute(
        select(func.min(usage_daily.c.day), func.max(usage_daily.c.day)).where(
            usage_daily.c.user_id == user_id
        )
    ).one()
    if lo_day is not None:
        days += [lo_day, hi_day]
    return (min(days), max(days)) if days else None


def user_zone(conn: Connection, user_id: int) -> ZoneInfo:
    """The user's current time zone (read under the caller's lock, it cannot change under it)."""
    name = conn.execute(select(users.c.time_zone).where(users.c.user_id == user_id)).scalar_one()
    return ZoneInfo(str(name))
