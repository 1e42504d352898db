"""`usageledger demo` seeds a realistic, idempotent history through the write path."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from tests.helpers import bucket_rows, daily_rows, expected_daily
from usageledger.demo import seed_history
from usageledger.store.engine import Database
from usageledger.store.tables import devices


def test_the_demo_history_has_devices_models_and_a_weekly_rhythm(
    db: Database, engine: Engine
) -> None:
    """Several devices and models; weekdays carry more usage than weekends."""
    summary = seed_history(db, days=84, end=date(2026, 11, 27), now_ms=1)
    assert summary.inserted == summary.buckets > 1000
    rows = bucket_rows(engine)
    with engine.connect() as conn:
        assert {r.name for r in conn.execute(select(devices.c.name))} == {
            "laptop",
            "desktop",
            "ci-runner",
        }
    assert len({key[3] for key in rows}) >= 5
    tz = ZoneInfo("Europe/Berlin")
    by_weekday: Counter[bool] = Counter()
    for key, value in rows.items():
        weekend = datetime.fromtimestamp(key[4], UTC).astimezone(tz).weekday() >= 5
        by_weekday[weekend] += value[5]  # total_tokens
    # Five weekdays against two weekend days: per day, weekdays are well above weekends.
    assert by_weekday[False] / 5 > 3 * by_weekday[True] / 2


def test_seeding_twice_changes_nothing(db: Database, engine: Engine) -> None:
    """Same seed, same values: the second run inserts nothing and rollups stay exact."""
    first = seed_history(db, days=20, end=date(2026, 11, 27), now_ms=1)
    before = bucket_rows(engine)
    second = seed_history(db, days=20, end=date(2026, 11, 27), now_ms=2)
    assert second.inserted == 0
    assert second.buckets == first.buckets
    assert bucket_rows(engine) == before
    user_ids = {key[0] for key in before}
    assert daily_rows(engine) == expected_daily(engine, dict.fromkeys(user_ids, "Europe/Berlin"))
