"""Every read view agrees: summary = Σ daily = Σ hourly = Σ models = Σ monthly (docs/design.md §5).

Hypothesis generates usage for two users across devices, sources, models (one with a price
change, one without a price), time zones with DST changes (including a 30-minute one and a
+05:45 zone) and, sometimes, a change of the user's time zone afterwards. Usage goes in
through the ledger's own write path; every count and the exact cost (to the femto-dollar)
must agree across the views, with an independent Python oracle, in the user's zone and in
another.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from usageledger.buckets import Counts, local_day
from usageledger.ledger import accounts, profile, queries, windows
from usageledger.ledger.costing import Tally, combine
from usageledger.ledger.ingest import BucketWrite, apply_batch
from usageledger.ledger.pricing import Cost, Price, PriceBook
from usageledger.ledger.queries import Filters
from usageledger.store.engine import Database

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC")
#: mystery-model has no price; the snapshot name resolves to gpt-5 (see changing_prices).
MODELS = ("gpt-5", "o3", "claude-sonnet-4-5", "mystery-model", "gpt-5-2025-08-07")
SOURCES = ("codex", "claude")
#: Two whole months around DST changes (March, October/November) or o3's price cut (June).
MONTH_PAIRS = (
    (date(2025, 3, 1), date(2025, 4, 30)),
    (date(2025, 6, 1), date(2025, 7, 31)),
    (date(2025, 10, 1), date(2025, 11, 30)),
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def changing_prices() -> PriceBook:
    """Prices that change every other day, so pricing a row on the wrong day shows in cost.

    o3 is first priced mid-March: its earlier usage is unpriced (never guessed).
    """
    prices = []
    for n, model in enumerate(("gpt-5", "o3", "claude-sonnet-4-5")):
        day = date(2025, 3, 15) if model == "o3" else date(2025, 2, 1)
        step = 0
        while day <= date(2026, 1, 31):
            rate = Decimal(n + 1) + Decimal(step) / 1000
            prices.append(
                Price(model, day, rate, rate / 10, rate * 2, rate * 8, source="test", taken=day)
            )
            day += timedelta(days=2)
            step += 1
    return PriceBook(prices)


BOOK = changing_prices()
names = itertools.count()


@st.composite
def usage(draw: st.DrawFn, first: date, last: date) -> list[tuple[int, str, str, int, Counts]]:
    """Buckets (device, source, model, start, counts) spilling a day over the months' edges."""
    lo = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) - 86400
    hi = int(datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp()) + 2 * 86400
    slot = st.integers(0, (hi - lo) // 1800 - 1).map(lambda i: lo + 1800 * i)
    # Dense near the DST and price-change edges too: some slots on the first days.
    edge = st.integers(0, 200).map(lambda i: lo + 1800 * i)
    items = draw(
        st.lists(
            st.tuples(
                st.integers(0, 1),
                st.sampled_from(SOURCES),
                st.sampled_from(MODELS),
                st.one_of(slot, edge),
                counts(),
            ),
            max_size=60,
        )
    )
    unique = {(d, s, m, t): c for d, s, m, t, c in items}  # one value per bucket key
    return [(d, s, m, t, c) for (d, s, m, t), c in unique.items()]


@st.composite
def counts(draw: st.DrawFn) -> Counts:
    """Counts that obey docs/design.md §3."""
    inp = draw(st.integers(0, 5_000_000))
    cached = draw(st.integers(0, 5_000_000))
    out = draw(st.integers(0, 500_000))
    return Counts(
        input_tokens=inp,
        cached_input_tokens=cached,
        output_tokens=out,
        reasoning_output_tokens=draw(st.integers(0, out)),
        total_tokens=inp + cached + out,
        cache_write_tokens=draw(st.integers(0, inp)),
    )


def ingest(db: Database, zone: str, items: Sequence[tuple[int, str, str, int, Counts]]) -> int:
    """A new user in ``zone`` with two devices, the items ingested through apply_batch."""
    name = f"u{next(names)}"

    def create(conn: Connection) -> tuple[int, list[int]]:
        user_id = accounts.create_user(conn, name, time_zone=zone, now_ms=1)
        return user_id, [accounts.ensure_device(conn, user_id, d, now_ms=1) for d in ("a", "b")]

    user_id, device_ids = db.write(create)
    for index, device_id in enumerate(device_ids):
        writes = [
            BucketWrite(source=s, model=m, bucket_start=t, revision=1, counts=c.as_dict())
            for d, s, m, t, c in items
            if d == index
        ]

        def apply(
            conn: Connection, device_id: int = device_id, writes: list[BucketWrite] = writes
        ) -> None:
            apply_batch(
                conn,
                user_id=user_id,
                device_id=device_id,
                tz=ZoneInfo(zone),
                writes=writes,
                origin="hypothesis",
                now_ms=1,
            )

        db.write(apply, user_id=user_id)
    return user_id


@dataclass
class Expected:
    """Counts and cost computed without the read side's code."""

    counts: Counts = field(default_factory=Counts)
    cost: Cost = field(default_factory=Cost)


def oracle(
    items: Sequence[tuple[int, str, str, int, Counts]], zone: str, first: date, last: date
) -> Expected:
    """Counts and cost computed in Python, bucket by bucket, priced on the local day."""
    total = Expected()
    tz = ZoneInfo(zone)
    for _, _, model, start, counted in items:
        day = local_day(start, tz)
        if first <= day <= last:
            total.counts = total.counts + counted
            total.cost.add(BOOK, model, day, counted.as_dict())
    return total


def same(a: Tally | Expected, b: Tally | Expected, what: str) -> None:
    """Two tallies agree on every count, the exact cost and the unpriced models."""
    assert a.counts == b.counts, what
    assert a.cost.usd == b.cost.usd, what
    assert a.cost.unpriced_models == b.cost.unpriced_models, what


def views(conn: Connection, user_id: int, zone: str, first: date, last: date) -> Tally:
    """Every view of the months in ``zone``; asserts they agree and returns the summary."""
    user_zone = queries.user_time_zone(conn, user_id)
    everything = Filters()
    window = windows.day_window(
        "summary", user_zone=user_zone, tz=zone, first=f"{first}", last=f"{last}", now=NOW
    )
    summary = queries.summary(conn, user_id, window, everything, BOOK)
    same(combine(t for _, _, t in summary.by_model), summary.totals, "by_model")
    daily = queries.daily(conn, user_id, window, everything, BOOK)
    same(combine(t for _, t in daily.days), summary.totals, "daily")
    same(daily.totals, summary.totals, "daily totals")
    models = queries.models(conn, user_id, window, everything, BOOK)
    same(combine(x.tally for _, _, x in models.models), summary.totals, "models")
    same(combine(x.tally for _, x in models.sources), summary.totals, "sources")
    months = windows.month_window(
        user_zone=user_zone, tz=zone, first=f"{first:%Y-%m}", last=f"{last:%Y-%m}", now=NOW
    )
    monthly = queries.monthly(conn, user_id, months, everything, BOOK)
    same(combine(t for _, t in monthly.months), summary.totals, "monthly")
    hours = Tally()
    for day in window.each_day():
        one = windows.hour_window(user_zone=user_zone, tz=zone, day=day.isoformat(), now=NOW)
        hourly = queries.hourly(conn, user_id, one, everything, BOOK)
        hours.merge(combine(t for _, t in hourly.slots))
    same(hours, summary.totals, "hourly")
    return summary.totals


@pytest.mark.usefixtures("db_url")
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    months=st.sampled_from(MONTH_PAIRS),
    zones=st.permutations(ZONES).map(lambda z: z[:2]),
    data=st.data(),
    switch=st.booleans(),
)
def test_every_view_agrees_in_the_users_zone_and_another(
    db: Database,
    months: tuple[date, date],
    zones: tuple[str, str],
    data: st.DataObject,
    switch: bool,
) -> None:
    """For two users, each view of two whole months equals the others and the oracle."""
    first, last = months
    users = []
    for zone in zones:
        items = data.draw(usage(first, last))
        users.append((ingest(db, zone, items), zone, items))
    if switch:  # the first user moves to the second's zone: a replay of their rollups
        user_id, zone, items = users[0]
        db.write(lambda c: profile.update_profile(c, user_id, time_zone=zones[1]), user_id=user_id)
        users[0] = (user_id, zones[1], items)
    for user_id, zone, items in users:
        other = next(z for z in ZONES if z != zone)
        for tz in (zone, other):
            totals = db.read(lambda c, tz=tz, user_id=user_id: views(c, user_id, tz, first, last))
            same(totals, oracle(items, tz, first, last), f"oracle {tz}")


def test_the_oracle_prices_on_the_local_day() -> None:
    """22:30 UTC on 2 June is 3 June in Berlin, where the test price is one step higher."""
    start = int(datetime(2025, 6, 2, 22, 30, tzinfo=UTC).timestamp())
    million = Counts(input_tokens=1_000_000, total_tokens=1_000_000)
    item = [(0, "codex", "gpt-5", start, million)]
    berlin = oracle(item, "Europe/Berlin", date(2025, 6, 1), date(2025, 6, 30))
    utc = oracle(item, "UTC", date(2025, 6, 1), date(2025, 6, 30))
    assert berlin.cost.usd - utc.cost.usd == Decimal("0.001")
