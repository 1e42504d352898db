"""The local ledger's write path: events → half-hour buckets → daily rollups, in one transaction.

``usage_events`` is the source of truth (docs/design.md §2): one row per assistant event under
``(user_id, source, event_key)``. Two copies of one event are resolved by the parser's
``duplicate_policy`` — "first" keeps the stored copy, "last" takes the newest read, "max"
keeps the copy with more tokens (then more output; a tie keeps the stored one), exactly as
``sources.resolve_duplicates`` does. ``usage_buckets`` rows of every touched
``(source, half-hour)`` are then recomputed from the events with one ``GROUP BY``; a bucket
whose value changed gets ``revision`` = now in Unix ms (always above its previous revision) so
that push sends it, and a bucket whose events all moved elsewhere is set to zeros rather than
deleted, so the server learns that too. Finally ``tracker.daily.rebuild_days`` recomputes the
touched local days. Every statement runs on the standard ``sqlite3`` (``tracker.db``).
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS, COUNTS_V2, floor_half_hour, local_day
from usageledger.sources import UsageEvent, resolve_duplicates
from usageledger.tracker.billing import event_counts
from usageledger.tracker.daily import rebuild_days
from usageledger.tracker.db import chunks, placeholders, upsert

KEY_LIMIT = 255  # usage_events.event_key and session_id are String(255)
MODEL_LIMIT = 128  # what the server accepts (USAGELEDGER_MAX_MODEL_LENGTH's default)
CHUNK = 400  # values per IN (...) list; SQLite allows 32766 parameters, PostgreSQL 65535
EVENT_VALUES = (
    "device_id",
    "model",
    "event_ms",
    "bucket_start",
    "session_id",
    "project",
    "logged_cost_picousd",  # the log's own cost (migration 0007); local only, never in buckets
)
EVENT_UPDATE = (*EVENT_VALUES, *COUNT_COLUMNS, "updated_at_ms")
#: What a bucket's upsert replaces (``ledger.ingest.BUCKET_VALUE_COLUMNS``; a test checks).
BUCKET_VALUE_COLUMNS = ("revision", *COUNT_COLUMNS, "updated_at_ms")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class WriteOutcome:
    """What one write did: events new and replaced per source, buckets changed, days rebuilt."""

    new: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    buckets_changed: int = 0
    days: set[date] = field(default_factory=set)


def short_key(value: str) -> str:
    """``value`` if it fits a 255-character key column, else a stable SHA-256 stand-in."""
    if len(value) <= KEY_LIMIT:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@functools.lru_cache(maxsize=1024)
def clean_model(model: str) -> str:
    """A model name the server accepts: printable, trimmed, at most 128 characters."""
    name = "".join(ch if ch.isprintable() else "?" for ch in model.strip())[:MODEL_LIMIT]
    return name.strip() or "unknown"


def event_row(event: UsageEvent, user_id: int, device_id: int, now_ms: int) -> dict[str, Any]:
    """The ``usage_events`` row of a parsed event."""
    since = event.timestamp - _EPOCH
    event_ms = since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000
    return {
        "user_id": user_id,
        "source": event.source,
        "event_key": short_key(event.event_key),
        "device_id": device_id,
        "model": clean_model(event.model),
        "event_ms": event_ms,
        "bucket_start": floor_half_hour(event_ms // 1000),
        "session_id": short_key(event.session_id) if event.session_id else "",
        "project": event.project,
        # The counts, and the same again under each billing class the request is in (v3).
        **event_counts(event, model=clean_model(event.model)),
        "logged_cost_picousd": event.logged_cost_picousd,
        "updated_at_ms": now_ms,
    }


def _values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in (*EVENT_VALUES, *COUNT_COLUMNS))


#: What identifies one copy of a response: where and when, and its counts as logs have always
#: been read. The rest of a row (the v3 billing counts, the logged cost) is what a newer
#: reader finds in the same line.
_SAME_COPY = (*(c for c in EVENT_VALUES if c != "logged_cost_picousd"), *COUNTS_V2)


def _reread(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any] | None:
    """The copy just read as it is to be stored, when it is the stored copy read again
    (perhaps by a newer reader that found more in it: one-hour writes, a billing class, a
    logged cost); None when it is another copy, for the duplicate policy to decide.

    Whatever the policy, the same response read again takes what the newer reader found, so
    events stored before a reader learned a field gain it on a re-read
    (``tracker.ledger.READER_GENERATION``). A logged cost is never dropped by a re-read.
    """
    if any(new[c] != old[c] for c in _SAME_COPY):
        return None
    if new["logged_cost_picousd"] is None:
        return {**new, "logged_cost_picousd": old["logged_cost_picousd"]}
    return new


def _wins(policy: str, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether the copy just read replaces the stored one under ``policy``."""
    if policy == "last":
        return True
    if policy == "max":
        return (new["total_tokens"], new["output_tokens"]) > (
            old["total_tokens"],
            old["output_tokens"],
        )
    return False  # "first": the stored copy stays


def store_events(
    conn: sqlite3.Connection,
    *,
    user_id: int,
    device_id: int,
    tz: ZoneInfo,
    events: Mapping[str, Sequence[UsageEvent]],
    policies: Mapping[str, str],
    now_ms: int,
) -> WriteOutcome:
    """Apply parsed events (per source, in read order) and derive buckets and rollups."""
    outcome = WriteOutcome()
    touched: dict[str, set[int]] = {}
    for source, batch in events.items():
        if not batch:
            continue
        policy = policies[source]
        rows = [event_row(e, user_id, device_id, now_ms) for e in resolve_duplicates(batch, policy)]
        stored = _stored_events(conn, user_id, source, [r["event_key"] for r in rows])
        writes: list[dict[str, Any]] = []
        halves = touched.setdefault(source, set())
        for row in rows:
            old = stored.get(row["event_key"])
            if old is None:
                outcome.new[source] = outcome.new.get(source, 0) + 1
            elif (again := _reread(row, old)) is not None:
                if _values(again) == _values(old):
                    continue
                row = again
                outcome.updated[source] = outcome.updated.get(source, 0) + 1
                halves.add(int(old["bucket_start"]))
            elif not _wins(policy, row, old):
                continue
            else:
                outcome.updated[source] = outcome.updated.get(source, 0) + 1
                halves.add(int(old["bucket_start"]))
            halves.add(row["bucket_start"])
            writes.append(row)
        if writes:
            upsert(conn, "usage_events", writes, ("user_id", "source", "event_key"), EVENT_UPDATE)
    changed = refresh_buckets(
        conn, user_id=user_id, device_id=device_id, touched=touched, now_ms=now_ms
    )
    outcome.buckets_changed = len(changed)
    outcome.days = {local_day(start, tz) for start in changed}
    if outcome.days:
        rebuild_days(conn, user_id, tz, outcome.days)
    return outcome


def _stored_events(
    conn: sqlite3.Connection, user_id: int, source: str, keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    columns = ("event_key", *EVENT_VALUES, *COUNT_COLUMNS)
    select = ", ".join(columns)
    for part in chunks(keys, CHUNK):
        rows = conn.execute(
            f"SELECT {select} FROM usage_events WHERE user_id = ? AND source = ? "
            f"AND event_key IN ({placeholders(len(part))})",
            (user_id, source, *part),
        )
        for row in rows:
            found[row[0]] = dict(zip(columns, row, strict=True))
    return found


def refresh_buckets(
    conn: sqlite3.Connection,
    *,
    user_id: int,
    device_id: int,
    touched: Mapping[str, Iterable[int]],
    now_ms: int,
) -> set[int]:
    """Recompute the buckets of touched ``(source, half-hour)`` pairs from ``usage_events``.

    Only buckets whose values changed are written, each with a revision above its previous
    one; a bucket left without events becomes zeros. Returns the half-hours that changed.
    """
    changed: set[int] = set()
    for source, halves in touched.items():
        for part in chunks(sorted(set(halves)), CHUNK):
            sums = _event_sums(conn, user_id, source, part)
            current = _current_buckets(conn, user_id, device_id, source, part)
            writes: list[dict[str, Any]] = []
            for key in sorted(set(sums) | set(current)):
                model, start = key
                values = sums.get(key, (0,) * len(COUNT_COLUMNS))
                old = current.get(key)
                if old is not None and old[1] == values:
                    continue
                if old is None and not any(values):
                    continue
                revision = now_ms if old is None else max(now_ms, old[0] + 1)
                writes.append(
                    {
                        "user_id": user_id,
                        "device_id": device_id,
                        "source": source,
                        "model": model,
                        "bucket_start": start,
                        "revision": revision,
                        **dict(zip(COUNT_COLUMNS, values, strict=True)),
                        "updated_at_ms": now_ms,
                    }
                )
                changed.add(start)
            if writes:
                upsert(conn, "usage_buckets", writes, BUCKET_KEY, BUCKET_VALUE_COLUMNS)
    return changed


def _event_sums(
    conn: sqlite3.Connection, user_id: int, source: str, starts: Sequence[int]
) -> dict[tuple[str, int], tuple[int, ...]]:
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT model, bucket_start, {sums} FROM usage_events "
        f"WHERE user_id = ? AND source = ? AND bucket_start IN ({placeholders(len(starts))}) "
        "GROUP BY model, bucket_start",
        (user_id, source, *starts),
    )
    return {(str(r[0]), int(r[1])): tuple(int(v or 0) for v in r[2:]) for r in rows}


def _current_buckets(
    conn: sqlite3.Connection, user_id: int, device_id: int, source: str, starts: Sequence[int]
) -> dict[tuple[str, int], tuple[int, tuple[int, ...]]]:
    counts = ", ".join(COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT model, bucket_start, revision, {counts} FROM usage_buckets "
        "WHERE user_id = ? AND device_id = ? AND source = ? "
        f"AND bucket_start IN ({placeholders(len(starts))})",
        (user_id, device_id, source, *starts),
    )
    return {(str(r[0]), int(r[1])): (int(r[2]), tuple(int(v) for v in r[3:])) for r in rows}
