"""Leaderboard snapshots: built by a job, read by ``GET /v1/leaderboard``.

:func:`refresh` computes the week, month and all-time boards of the users who opted in and
replaces ``leaderboard_snapshots`` and ``leaderboard_unpriced`` in one transaction (delete +
insert), so a reader sees the old boards or the new ones, never a mix. The read side only ever
reads snapshots.

- **Periods** are UTC calendar terms: the ISO week (Monday–Sunday) and the calendar month
  containing the build time, and all time. Week and month sum ``usage_buckets`` of each
  opted-in user over that UTC range (a bounded index range per user), priced on each
  bucket's UTC day; all time sums the user's ``usage_daily``, priced on its local day.
- **Ranking**: most ``total_tokens`` first; ties by cost, then display name. Users without
  tokens in a period are left out.
- **Names**: the display name, or ``anonymous #<rank>`` when the user has none. A user name
  or id is never served (``user_id`` is stored only to find the caller's own rank). A name
  counts as none when its user does not hold its key (``users.display_name_key``: a look-alike
  of a name another user held when keys were introduced) or when it looks like
  ``anonymous #…`` (:func:`~usageledger.confusables.is_reserved`, checked here too,
  because names set before the check compared folds may look like one): the board never
  shows two entries that look alike, nor a named user as one of the anonymous ones.
- **Unpriced usage**: a model without a price costs 0. Each entry carries how many of its
  tokens had no price (``unpriced_tokens``, a count like its totals); the models' names are
  kept per period and user in ``leaderboard_unpriced`` and served only to that user, because
  a model's name is not part of what opting in shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, insert, select

from usageledger.buckets import COUNT_COLUMNS, Counts, day_range
from usageledger.confusables import ANONYMOUS_PREFIX, is_reserved
from usageledger.ledger.costing import Tally, UsageRow, combine, tally
from usageledger.ledger.pricing import PriceBook
from usageledger.ledger.queries import EPOCH

# The rollups' own local-day expression, so a day means the same thing in SQL everywhere.
from usageledger.ledger.rollups import _day_number as local_day_number
from usageledger.store.tables import (
    leaderboard_snapshots,
    leaderboard_unpriced,
    usage_buckets,
    usage_daily,
    users,
)

PERIODS = ("week", "month", "all")
UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a board."""

    rank: int
    display_name: str
    counts: Counts
    cost_usd: str
    unpriced_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Board:
    """A page of one period's board and what it covers."""

    period: str
    period_start: date | None
    period_end: date | None
    built_at_ms: int | None
    total_entries: int
    entries: list[Entry]
    your_rank: int | None
    #: The caller's own models on this board that had tokens but no price (they cost 0).
    unpriced_models: tuple[str, ...] = ()


def period_bounds(period: str, today: date) -> tuple[date | None, date]:
    """First and last UTC day of ``period`` around ``today`` (all time has no first day)."""
    if period == "week":
        monday = today - timedelta(days=today.weekday())
        return monday, monday + timedelta(days=6)
    if period == "month":
        first = today.replace(day=1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    return None, today


def _utc_rows(conn: Connection, user_id: int, first: date, last: date) -> list[UsageRow]:
    start, end = day_range(first, last, UTC_ZONE)
    number = local_day_number(UTC_ZONE, start, end)
    sums = [func.sum(usage_buckets.c[name]) for name in COUNT_COLUMNS]
    query = (
        select(number, usage_buckets.c.model, *sums)
        .where(
            usage_buckets.c.user_id == user_id,
            usage_buckets.c.bucket_start >= start,
            usage_buckets.c.bucket_start < end,
        )
        .group_by(number, usage_buckets.c.model)
    )
    return [
        UsageRow(EPOCH + timedelta(days=int(r[0])), "", r[1], Counts(*(int(v) for v in r[2:])))
        for r in conn.execute(query)
    ]


def _all_time_rows(conn: Connection, user_id: int) -> list[UsageRow]:
    sums = [func.sum(usage_daily.c[name]) for name in COUNT_COLUMNS]
    query = (
        select(usage_daily.c.day, usage_daily.c.model, *sums)
        .where(usage_daily.c.user_id == user_id)
        .group_by(usage_daily.c.day, usage_daily.c.model)
    )
    return [UsageRow(r[0], "", r[1], Counts(*(int(v) for v in r[2:]))) for r in conn.execute(query)]


def _rank(tallies: list[tuple[int, str | None, Tally]]) -> list[tuple[int, str | None, Tally]]:
    def order(item: tuple[int, str | None, Tally]) -> tuple[int, Decimal, str, int]:
        user_id, name, group = item
        # Unnamed users sort after named ones on a tie; the id only makes the order total.
        return (-group.counts.total_tokens, -group.cost.usd, name or "\uffff", user_id)

    return sorted((t for t in tallies if t[2].counts.total_tokens > 0), key=order)


def shown_name(display_name: str | None, key: str | None) -> str | None:
    """The name a board shows for a user, or None for ``anonymous #<rank>`` (see above)."""
    if display_name is None or key is None or is_reserved(display_name):
        return None
    return display_name


def refresh(conn: Connection, book: PriceBook, *, now: datetime) -> dict[str, int]:
    """Rebuild every board from the opted-in users' usage; return entries per period.

    Run it in one write transaction: the boards are replaced all at once.
    """
    today = now.astimezone(UTC).date()
    members = [
        (int(r[0]), shown_name(r[1], r[2]))
        for r in conn.execute(
            select(users.c.user_id, users.c.display_name, users.c.display_name_key)
            .where(users.c.leaderboard_opt_in.is_(True))
            .order_by(users.c.user_id)
        )
    ]
    built_at_ms = int(now.timestamp() * 1000)
    rows: list[dict[str, Any]] = []
    unpriced: list[dict[str, Any]] = []
    counted: dict[str, int] = {}
    for period in PERIODS:
        first, last = period_bounds(period, today)
        tallies: list[tuple[int, str | None, Tally]] = []
        for user_id, display_name in members:
            if first is None:
                usage = _all_time_rows(conn, user_id)
            else:
                usage = _utc_rows(conn, user_id, first, last)
            tallies.append(
                (user_id, display_name, combine(tally(book, usage, lambda _: 0).values()))
            )
        ranked = _rank(tallies)
        counted[period] = len(ranked)
        for rank, (user_id, display_name, group) in enumerate(ranked, start=1):
            rows.append(
                {
                    "period": period,
                    "rank": rank,
                    "period_start": first,
                    "period_end": last,
                    "user_id": user_id,
                    "display_name": display_name or f"{ANONYMOUS_PREFIX}{rank}",
                    **group.counts.as_dict(),
                    "cost_usd": group.cost_usd,
                    "built_at_ms": built_at_ms,
                    "unpriced_tokens": group.cost.unpriced_tokens,
                }
            )
            unpriced += [
                {"period": period, "user_id": user_id, "model": model}
                for model in group.cost.unpriced_models
            ]
    conn.execute(delete(leaderboard_snapshots))
    conn.execute(delete(leaderboard_unpriced))
    if rows:
        conn.execute(insert(leaderboard_snapshots), rows)
    if unpriced:
        conn.execute(insert(leaderboard_unpriced), unpriced)
    return counted


def read_board(conn: Connection, period: str, *, limit: int, offset: int, user_id: int) -> Board:
    """A page of the latest snapshot of ``period`` and the caller's own rank, if any."""
    snap = leaderboard_snapshots.c
    head = conn.execute(
        select(
            func.count(),
            func.min(snap.period_start),
            func.min(snap.period_end),
            func.max(snap.built_at_ms),
        ).where(snap.period == period)
    ).one()
    page = conn.execute(
        select(
            snap.rank,
            snap.display_name,
            snap.cost_usd,
            snap.unpriced_tokens,
            *(snap[c] for c in COUNT_COLUMNS),
        )
        .where(snap.period == period)
        .order_by(snap.rank)
        .limit(limit)
        .offset(offset)
    )
    entries = [
        Entry(int(r[0]), str(r[1]), Counts(*(int(v) for v in r[4:])), str(r[2]), int(r[3]))
        for r in page
    ]
    mine = conn.execute(
        select(snap.rank).where(snap.period == period, snap.user_id == user_id)
    ).scalar()
    unpriced = conn.execute(
        select(leaderboard_unpriced.c.model)
        .where(leaderboard_unpriced.c.period == period, leaderboard_unpriced.c.user_id == user_id)
        .order_by(leaderboard_unpriced.c.model)
    ).scalars()
    return Board(
        period=period,
        period_start=head[1],
        period_end=head[2],
        built_at_ms=None if head[3] is None else int(head[3]),
        total_entries=int(head[0]),
        entries=entries,
        your_rank=None if mine is None else int(mine),
        unpriced_models=tuple(unpriced),
    )
