"""The read model's day rule in SQL is ``buckets.local_day``, on SQLite and PostgreSQL.

``day_number_sql`` is what the server's read API, the tracker's ``report`` and both
``usage_daily`` rebuilds group half-hours by. Every half-hour of a year (and the quarter-hours
a +05:45 or +12:45 zone starts its days on) must land on the day ``buckets.local_day`` gives,
through the standard ``sqlite3`` and through SQLAlchemy on each engine.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from usageledger.buckets import day_range, local_day
from usageledger.ledger.readmodel import EPOCH, day_number_sql

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute DST change
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
)
FIRST, LAST = date(2025, 1, 1), date(2025, 12, 31)


def starts(tz: ZoneInfo) -> tuple[int, int, list[int]]:
    """The year's ``[start, end)`` in ``tz`` and every quarter-hour start in it."""
    start, end = day_range(FIRST, LAST, tz)
    return start, end, list(range(start, end, 900))


def numbers_sql(tz: ZoneInfo, start: int, end: int, values: list[int]) -> str:
    """``SELECT bucket_start, <day number>`` over ``values`` (a CTE both engines accept)."""
    rows = ", ".join(f"({v})" for v in values)
    day = day_number_sql(tz, start, end)
    return f"WITH t(bucket_start) AS (VALUES {rows}) SELECT bucket_start, {day} FROM t"


@pytest.mark.parametrize("zone", ZONES)
def test_the_sql_day_is_the_local_day_through_sqlite3(zone: str) -> None:
    """Standard ``sqlite3`` (the tracker's connection)."""
    tz = ZoneInfo(zone)
    start, end, values = starts(tz)
    with sqlite3.connect(":memory:") as conn:
        got = dict(conn.execute(numbers_sql(tz, start, end, values)).fetchall())
    assert {s: EPOCH + timedelta(days=n) for s, n in got.items()} == {
        s: local_day(s, tz) for s in values
    }


@pytest.mark.parametrize("zone", ZONES)
def test_the_sql_day_is_the_local_day_through_sqlalchemy(engine: Engine, zone: str) -> None:
    """SQLAlchemy's ``text()`` (the server's connection), on SQLite and PostgreSQL."""
    tz = ZoneInfo(zone)
    start, end, values = starts(tz)
    with engine.connect() as conn:
        got = {int(s): int(n) for s, n in conn.execute(text(numbers_sql(tz, start, end, values)))}
    assert {s: EPOCH + timedelta(days=n) for s, n in got.items()} == {
        s: local_day(s, tz) for s in values
    }


def test_berlins_autumn_change_makes_a_day_of_fifty_half_hours() -> None:
    """2025-10-26 in Berlin runs from 10-25 22:00 UTC (00:00 CEST) to 10-26 23:00 UTC (00:00
    CET): 25 hours, 50 half-hours; its neighbours have 48 each."""
    tz = ZoneInfo("Europe/Berlin")
    start = int(datetime(2025, 10, 24, 22, tzinfo=UTC).timestamp())  # 10-25 00:00 CEST
    end = int(datetime(2025, 10, 27, 23, tzinfo=UTC).timestamp())  # 10-28 00:00 CET
    values = list(range(start, end, 1800))
    with sqlite3.connect(":memory:") as conn:
        got = conn.execute(numbers_sql(tz, start, end, values)).fetchall()
    per_day = Counter(EPOCH + timedelta(days=n) for _, n in got)
    # 24 + 25 + 24 hours = 73 hours = 146 half-hours.
    assert per_day == {date(2025, 10, 25): 48, date(2025, 10, 26): 50, date(2025, 10, 27): 48}
