"""The write path: revision-ordered, idempotent application of a batch (docs/design.md §4).

For each bucket key the current revision decides: an older revision is ``stale``; equal
values are ``unchanged``; the same revision with other values is a ``conflict``; otherwise a
new row goes into the append-only ``bucket_revisions`` and ``usage_buckets`` takes the new
values. The touched local days are rebuilt in the same transaction, which the caller holds
under the per-user write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, insert, select, update

from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS, BucketWrite, local_day
from usageledger.ledger.rollups import rebuild_days
from usageledger.store.dialect import upsert
from usageledger.store.tables import bucket_revisions, devices, usage_buckets

__all__ = ["BucketWrite", "IngestOutcome", "apply_batch", "latest_per_key", "touch_device"]

#: Columns an upsert of ``usage_buckets`` overwrites (everything but the key).
BUCKET_VALUE_COLUMNS: tuple[str, ...] = ("revision", *COUNT_COLUMNS, "updated_at_ms")
#: The conflict target of that upsert: the bucket key, declared once in ``buckets.py``.
CONFLICT_TARGET: tuple[str, ...] = BUCKET_KEY


@dataclass(slots=True)
class IngestOutcome:
    """Per-outcome counts of an applied batch, and the local days it touched."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    conflicts: int = 0
    days: frozenset[date] = frozenset()

    def as_dict(self) -> dict[str, int]:
        """The counts as the API reports them."""
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "conflicts": self.conflicts,
        }


def latest_per_key(writes: Sequence[BucketWrite]) -> list[BucketWrite]:
    """Keep the highest revision per key; on a tie the later item wins."""
    chosen: dict[tuple[str, str, int], BucketWrite] = {}
    for write in writes:
        key = (write.source, write.model, write.bucket_start)
        current = chosen.get(key)
        if current is None or write.revision >= current.revision:
            chosen[key] = write
    return list(chosen.values())


def apply_batch(
    conn: Connection,
    *,
    user_id: int,
    device_id: int,
    tz: ZoneInfo,
    writes: Sequence[BucketWrite],
    origin: str,
    now_ms: int,
) -> IngestOutcome:
    """Apply bucket values for one device; the caller holds the user's write lock."""
    outcome = IngestOutcome()
    batch = latest_per_key(writes)
    # Items folded away inside the batch lost to a higher revision of the same key.
    outcome.stale += len(writes) - len(batch)
    if not batch:
        return outcome
    starts = sorted({w.bucket_start for w in batch})
    current: dict[tuple[str, str, int], tuple[int, tuple[int, ...]]] = {}
    for chunk_start in range(0, len(starts), 400):
        rows = conn.execute(
            _CURRENT,
            {
                "user_id": user_id,
                "device_id": device_id,
                "starts": starts[chunk_start : chunk_start + 400],
            },
        )
        for found in rows:
            stored_values = tuple(int(v) for v in found[4:])
            current[(found[0], found[1], int(found[2]))] = (int(found[3]), stored_values)

    revisions: list[dict[str, object]] = []
    changed: list[dict[str, object]] = []
    touched: set[date] = set()
    for write in batch:
        key = (write.source, write.model, write.bucket_start)
        # A writer of an older schema (a v2 backfill plan, say) leaves the newer counts out: 0.
        values = tuple(write.counts.get(c, 0) for c in COUNT_COLUMNS)
        existing = current.get(key)
        if existing is not None:
            revision, stored = existing
            if write.revision < revision:
                outcome.stale += 1
                continue
            if values == stored:
                outcome.unchanged += 1
                continue
            if write.revision == revision:
                outcome.conflicts += 1
                continue
            outcome.updated += 1
        else:
            outcome.inserted += 1
        row: dict[str, object] = {
            "user_id": user_id,
            "device_id": device_id,
            "source": write.source,
            "model": write.model,
            "bucket_start": write.bucket_start,
            "revision": write.revision,
            **write.counts,
        }
        revisions.append({**row, "received_at_ms": now_ms, "origin": origin})
        changed.append({**row, "updated_at_ms": now_ms})
        touched.add(local_day(write.bucket_start, tz))

    if revisions:
        conn.execute(insert(bucket_revisions), revisions)
        upsert(conn, usage_buckets, changed, CONFLICT_TARGET, BUCKET_VALUE_COLUMNS)
        rebuild_days(conn, user_id, tz, touched)
    outcome.days = frozenset(touched)
    return outcome


def touch_device(conn: Connection, user_id: int, device_id: int, now_ms: int) -> None:
    """Record that a device uploaded now."""
    conn.execute(_TOUCH, {"uid": user_id, "did": device_id, "now_ms": now_ms})


# Statements of the hot path, built once (building one costs more than running it).
_CURRENT = select(
    usage_buckets.c.source,
    usage_buckets.c.model,
    usage_buckets.c.bucket_start,
    usage_buckets.c.revision,
    *(usage_buckets.c[c] for c in COUNT_COLUMNS),
).where(
    usage_buckets.c.user_id == bindparam("user_id"),
    usage_buckets.c.device_id == bindparam("device_id"),
    usage_buckets.c.bucket_start.in_(bindparam("starts", expanding=True)),
)
_TOUCH = (
    update(devices)
    # (An UPDATE reserves bind names equal to column names for its SET clause.)
    .where(devices.c.user_id == bindparam("uid"), devices.c.device_id == bindparam("did"))
    .values(last_upload_at_ms=bindparam("now_ms"))
)
