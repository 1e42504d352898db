"""``usage_daily`` of the local ledger, rebuilt from ``usage_buckets`` over ``sqlite3``.

The same statement as the server's single rebuild path (``ledger.rollups.rebuild_range``),
written for SQLite alone so that the tracker's write path needs no SQLAlchemy: the rows of the
touched local days are deleted and re-inserted from one ``GROUP BY`` of the buckets. The day
rule is not restated: it is the read model's ``day_number_sql`` (the day every report and read
endpoint groups by), whose offsets come from ``buckets.utc_offsets`` exactly as the server's
expression gets them, and ``tests/tracker/test_daily.py`` checks both paths write the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import date
from zoneinfo import ZoneInfo

from usageledger.buckets import COUNT_COLUMNS, contiguous_runs, day_range
from usageledger.ledger.readmodel import day_number_sql


def rebuild_days(conn: sqlite3.Connection, user_id: int, tz: ZoneInfo, days: Iterable[date]) -> int:
    """Recompute the user's ``usage_daily`` rows for ``days``; return the rows written."""
    written = 0
    for first, last in contiguous_runs(days):
        written += rebuild_range(conn, user_id, tz, first, last)
    return written


def rebuild_range(
    conn: sqlite3.Connection, user_id: int, tz: ZoneInfo, first: date, last: date
) -> int:
    """Recompute the user's ``usage_daily`` rows for local days ``first`` … ``last``."""
    start, end = day_range(first, last, tz)
    conn.execute(
        "DELETE FROM usage_daily WHERE user_id = ? AND day >= ? AND day <= ?",
        (user_id, first.isoformat(), last.isoformat()),
    )
    day = day_number_sql(tz, start, end)
    counts = ", ".join(COUNT_COLUMNS)
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    cursor = conn.execute(
        f"INSERT INTO usage_daily (user_id, day, device_id, source, model, {counts}) "
        f"SELECT user_id, date({day} * 86400, 'unixepoch'), device_id, source, model, {sums} "
        "FROM usage_buckets WHERE user_id = ? AND bucket_start >= ? AND bucket_start < ? "
        f"GROUP BY user_id, {day}, device_id, source, model",
        (user_id, start, end),
    )
    return max(cursor.rowcount, 0)
