"""The single rebuild path of the derived tables (docs/design.md §2).

``usage_daily`` rows for a user's local days are always recomputed from ``usage_buckets`` by
:func:`rebuild_days`, whether the caller is ingest (the touched days), a time-zone change or
``replay`` (every day). Days are local days in the user's time zone; a bucket belongs to the
local day of its start.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Connection, case, delete, func, insert, literal_column, select

from usageledger.buckets import COUNT_COLUMNS, contiguous_runs, day_range, utc_offsets
from usageledger.store.dialect import epoch_day_to_date
from usageledger.store.tables import usage_buckets, usage_daily


def rebuild_days(conn: Connection, user_id: int, tz: ZoneInfo, days: Iterable[date]) -> int:
    """Recompute the user's ``usage_daily`` rows for ``days``; return the rows written."""
    written = 0
    for first, last in contiguous_runs(days):
        written += rebuild_range(conn, user_id, tz, first, last)
    return written


def _day_number(tz: ZoneInfo, start: int, end: int) -> Any:
    """SQL: the local day number (days since 1970-01-01) of ``bucket_start`` in ``tz``.

    Offsets are inlined as integer literals so that the same expression can be grouped on
    (PostgreSQL matches GROUP BY expressions textually; bound parameters would differ).
    """
    col = usage_buckets.c.bucket_start
    segments = utc_offsets(start, end, tz)

    def number(offset: int) -> Any:
        return (col + literal_column(str(int(offset)), BigInteger)) // literal_column(
            "86400", BigInteger
        )

    if len(segments) == 1:
        return number(segments[0][1])
    whens = [
        (col < literal_column(str(int(nxt_start)), BigInteger), number(offset))
        for (_, offset), (nxt_start, _) in pairwise(segments)
    ]
    return case(*whens, else_=number(segments[-1][1]))


def rebuild_range(conn: Connection, user_id: int, tz: ZoneInfo, first: date, last: date) -> int:
    """Recompute the user's ``usage_daily`` rows for local days ``first`` … ``last``."""
    start, end = day_range(first, last, tz)
    conn.execute(
        delete(usage_daily).where(
            usage_daily.c.user_id == user_id,
            usage_daily.c.day >= first,
            usage_daily.c.day <= last,
        )
    )
    day_number = _day_number(tz, start, end)
    sums = [func.sum(usage_buckets.c[name]) for name in COUNT_COLUMNS]
    source = (
        select(
            usage_buckets.c.user_id,
            epoch_day_to_date(day_number, conn),
            usage_buckets.c.device_id,
            usage_buckets.c.source,
            usage_buckets.c.model,
            *sums,
        )
        .where(
            usage_buckets.c.user_id == user_id,
            usage_buckets.c.bucket_start >= start,
            usage_buckets.c.bucket_start < end,
        )
        .group_by(
            usage_buckets.c.user_id,
            day_number,
            usage_buckets.c.device_id,
            usage_buckets.c.source,
            usage_buckets.c.model,
        )
    )
    result = conn.execute(
        insert(usage_daily)
        .from_select(["user_id", "day", "device_id", "source", "model", *COUNT_COLUMNS], source)
        .execution_options(preserve_rowcount=True)
    )
    return max(result.rowcount or 0, 0)
