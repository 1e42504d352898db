"""A realistic synthetic usage history for a demo user (``usageledger demo``).

Months of half-hour buckets from several devices, sources and models, with a working-hours
rhythm, quieter weekends and a slow upward trend. Deterministic for a given seed and end day,
and written through the normal write path (``ledger.ingest.apply_batch``), so rollups come
from the single rebuild path and running it again changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from usageledger.buckets import HALF_HOUR, day_start
from usageledger.ledger import accounts
from usageledger.ledger.ingest import BucketWrite, apply_batch, touch_device
from usageledger.store.engine import Database

#: (device, source, model, weight, size of a typical half-hour in tokens)
PROFILE: tuple[tuple[str, str, str, float, int], ...] = (
    ("laptop", "codex", "gpt-5-codex", 0.35, 180_000),
    ("laptop", "claude", "claude-sonnet-4-5", 0.30, 260_000),
    ("desktop", "claude", "claude-opus-4-1", 0.08, 120_000),
    ("desktop", "gemini", "gemini-2.5-pro", 0.12, 90_000),
    ("desktop", "codex", "gpt-5", 0.10, 70_000),
    ("ci-runner", "opencode", "claude-haiku-4-5", 0.05, 40_000),
)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What ``seed_history`` wrote."""

    user: str
    days: int
    buckets: int
    inserted: int


def _counts(rng: random.Random, size: int, source: str) -> dict[str, int]:
    total_in = int(size * rng.uniform(0.4, 1.6))
    cached = int(total_in * rng.uniform(0.55, 0.9))
    fresh = total_in - cached
    output = max(1, int(total_in * rng.uniform(0.02, 0.08)))
    reasoning = int(output * rng.uniform(0.2, 0.6)) if source in ("codex", "gemini") else 0
    cache_write = int(fresh * rng.uniform(0.3, 0.8)) if source in ("claude", "opencode") else 0
    return {
        "input_tokens": fresh,
        "cached_input_tokens": cached,
        "output_tokens": output,
        "reasoning_output_tokens": reasoning,
        "total_tokens": fresh + cached + output,
        "cache_write_tokens": cache_write,
    }


def _activity(local: datetime, day_index: int, days: int) -> float:
    """Probability of work in a local half-hour: office hours, quiet weekends, a trend."""
    hour = local.hour + local.minute / 60
    weekday = local.weekday()
    if weekday >= 5:
        base = 0.12 if 10 <= hour < 18 else 0.02
    elif 9 <= hour < 12.5 or 13.5 <= hour < 18.5:
        base = 0.75
    elif 20 <= hour < 23:
        base = 0.25
    else:
        base = 0.01
    return base * (0.6 + 0.6 * day_index / max(days, 1))


def generate(
    end: date, days: int, tz: ZoneInfo, seed: int, until: int | None = None
) -> Iterator[tuple[str, list[BucketWrite]]]:
    """Yield ``(device, writes)`` per device and day, oldest first; none after ``until``."""
    rng = random.Random(seed)
    first = end - timedelta(days=days - 1)
    for index in range(days):
        day = first + timedelta(days=index)
        start, stop = day_start(day, tz), day_start(day + timedelta(days=1), tz)
        vacation = rng.random() < 0.04
        per_device: dict[str, list[BucketWrite]] = {}
        for slot in range(start, stop, HALF_HOUR):
            local = datetime.fromtimestamp(slot, UTC).astimezone(tz)
            future = until is not None and slot > until
            chance = 0.0 if vacation or future else _activity(local, index, days)
            for device, source, model, weight, size in PROFILE:
                if rng.random() < chance * weight * 2.2:
                    per_device.setdefault(device, []).append(
                        BucketWrite(
                            source=source,
                            model=model,
                            bucket_start=slot,
                            revision=1,
                            counts=_counts(rng, size, source),
                        )
                    )
        yield from per_device.items()


def seed_history(
    db: Database,
    *,
    user: str = "demo",
    time_zone: str = "Europe/Berlin",
    days: int = 180,
    end: date | None = None,
    seed: int = 7,
    now_ms: int = 0,
    now: datetime | None = None,
) -> DemoSummary:
    """Create ``user`` if needed and write a synthetic history ending ``end`` (default today).

    Never a half-hour that has not ended by ``now`` (default: the real time), whatever ``end``
    says: ingest refuses future buckets, and so does the demo. Tests pass their own ``now``.
    """
    tz = ZoneInfo(time_zone)
    current = now or datetime.now(UTC)
    until = int(current.timestamp()) - HALF_HOUR
    end = end or current.astimezone(tz).date()

    def ensure(conn: Connection) -> tuple[int, str]:
        row = accounts.find_user(conn, user)
        if row is None:
            return accounts.create_user(conn, user, time_zone=time_zone, now_ms=now_ms), time_zone
        return int(row["user_id"]), str(row["time_zone"])

    user_id, zone_name = db.write(ensure)
    zone = ZoneInfo(zone_name)
    device_ids: dict[str, int] = {}
    buckets = inserted = 0
    for device, writes in generate(end, days, tz, seed, until):
        if device not in device_ids:

            def register(conn: Connection, name: str = device) -> int:
                return accounts.ensure_device(conn, user_id, name, now_ms=now_ms)

            device_ids[device] = db.write(register)

        def apply(
            conn: Connection,
            writes: list[BucketWrite] = writes,
            device_id: int = device_ids[device],
        ) -> int:
            outcome = apply_batch(
                conn,
                user_id=user_id,
                device_id=device_id,
                tz=zone,
                writes=writes,
                origin="demo",
                now_ms=now_ms,
            )
            touch_device(conn, user_id, device_id, now_ms)
            return outcome.inserted

        inserted += db.write(apply, user_id=user_id)
        buckets += len(writes)
    return DemoSummary(user=user, days=days, buckets=buckets, inserted=inserted)
