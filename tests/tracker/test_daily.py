"""The tracker's ``usage_daily`` rebuild (``sqlite3``) writes exactly the server's rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select

from tests.tracker.conftest import Clock
from tests.tracker.support import sa_engine
from usageledger.ledger import accounts, ingest
from usageledger.ledger.rollups import rebuild_days as server_rebuild_days
from usageledger.sources import UsageEvent
from usageledger.store.engine import Database
from usageledger.store.tables import usage_daily
from usageledger.tracker import events as tracker_events
from usageledger.tracker.daily import rebuild_days
from usageledger.tracker.events import store_events
from usageledger.tracker.ledger import DEVICE_NAME, LocalLedger

#: Around the 2025 DST changes of New York (03-09, 11-02) and Berlin (03-30, 10-26).
DAYS = [date(2025, 3, 8), date(2025, 3, 29), date(2025, 10, 25), date(2025, 11, 1)]
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham"]


def history() -> list[UsageEvent]:
    """An event every 30 minutes for three days from each of ``DAYS``."""
    out = []
    for first in DAYS:
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        for n in range(3 * 48):
            out.append(
                UsageEvent(
                    source="codex",
                    event_key=f"{first}-{n}",
                    timestamp=start + timedelta(minutes=30 * n + 7),
                    model="gpt-5" if n % 3 else "gpt-5-mini",
                    session_id="s",
                    project=None,
                    input_tokens=100 + n,
                    cached_input_tokens=n,
                    output_tokens=10 + n % 7,
                )
            )
    return out


def daily_rows(ledger: LocalLedger) -> list[tuple[object, ...]]:
    """Every usage_daily row, sorted."""
    with sa_engine(ledger) as engine, engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(usage_daily)))


@pytest.mark.parametrize("zone", ZONES)
def test_the_tracker_rebuild_equals_the_server_rebuild(
    ledger: LocalLedger, clock: Clock, zone: str
) -> None:
    """Across DST changes and odd offsets both rebuild paths write the same rows."""
    tz = ZoneInfo(zone)
    ledger.db.write(
        lambda conn: store_events(
            conn,
            user_id=ledger.user_id,
            device_id=ledger.device_id,
            tz=ZoneInfo("UTC"),
            events={"codex": history()},
            policies={"codex": "first"},
            now_ms=clock(),
        )
    )
    days = [first + timedelta(days=n) for first in DAYS for n in range(-1, 5)]
    ledger.db.write(lambda conn: conn.execute("DELETE FROM usage_daily"))
    ledger.db.write(lambda conn: rebuild_days(conn, ledger.user_id, tz, days))
    ours = daily_rows(ledger)
    with sa_engine(ledger) as engine:
        db = Database(engine)
        db.write(lambda conn: conn.execute(delete(usage_daily)))
        db.write(lambda conn: server_rebuild_days(conn, ledger.user_id, tz, days))
    assert ours == daily_rows(ledger)
    assert len(ours) > len(DAYS)


def test_the_tracker_copies_of_server_constants_are_equal() -> None:
    """The device-name rule and the bucket upsert's columns are the server's."""
    assert DEVICE_NAME.pattern == accounts.NAME.pattern
    assert tracker_events.BUCKET_VALUE_COLUMNS == ingest.BUCKET_VALUE_COLUMNS
