"""The caller's own account: profile (``/v1/me``) and devices (``/v1/devices``).

Changing the time zone changes which local day every bucket belongs to, so it is a replay
of the user's rollups: :func:`update_profile` rebuilds ``usage_daily`` over the user's whole
history through the single rebuild path (``rollups.rebuild_range``), in the same transaction
as the update. Run it under ``Database.write(fn, user_id=…)`` so no ingest of the same user
interleaves.

Display names are unique by look, not by spelling: two users cannot hold names with the same
:func:`~usageledger.confusables.fold` (so ``alice``, ``аlice`` with a Cyrillic ``а``,
``ALICE`` and ``AIice`` are one name). The fold is stored beside the name in
``users.display_name_key`` under a unique index, so of two concurrent claims of one name
exactly one commits, on SQLite and PostgreSQL alike. A name kept from before the key existed
whose fold another user already held (migration 0004) has no key: it stays the user's own, is
not shown on the leaderboard, and is claimed again, like any new name, when set again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from usageledger.buckets import day_range, local_day
from usageledger.config import check_time_zone
from usageledger.confusables import ANONYMOUS_PREFIX, fold, is_reserved
from usageledger.errors import NotFound, ValidationFailed
from usageledger.ledger.rollups import rebuild_range
from usageledger.store.tables import devices, usage_buckets, usage_daily, users

DISPLAY_NAME_MAX = 64
#: The width of ``users.display_name_key``: compatibility forms can expand a name (``ﷺ`` is
#: eighteen letters), and a name whose fold does not fit is refused.
DISPLAY_NAME_KEY_MAX = 256


@dataclass(frozen=True, slots=True)
class Profile:
    """What a user may see and change about themselves."""

    name: str
    time_zone: str
    display_name: str | None
    leaderboard_opt_in: bool
    created_at_ms: int


#: Marks "not given" for ``display_name``, where ``None`` means "clear it".
UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class DeviceSpan:
    """A device with the first and last bucket it uploaded and its last upload time."""

    name: str
    created_at_ms: int
    last_upload_at_ms: int | None
    first_day: date | None
    last_day: date | None
    first_bucket: int | None
    last_bucket: int | None


def get_profile(conn: Connection, user_id: int) -> Profile:
    """The user's profile."""
    row = conn.execute(select(users).where(users.c.user_id == user_id)).mappings().first()
    if row is None:
        raise NotFound("no such user")
    return Profile(
        name=str(row["name"]),
        time_zone=str(row["time_zone"]),
        display_name=row["display_name"],
        leaderboard_opt_in=bool(row["leaderboard_opt_in"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed.at(f"body.{field}", message, summary=f"{field}: {message}")


def check_display_name(name: str) -> str:
    """A display name as stored: trimmed, 1–64 printable characters, not like "anonymous #…".

    The reserved check compares folds (:func:`~usageledger.confusables.is_reserved`),
    so homoglyphs, fullwidth letters, case and combining marks do not get around it.
    """
    trimmed = name.strip()
    if not 1 <= len(trimmed) <= DISPLAY_NAME_MAX or not trimmed.isprintable():
        raise _invalid("display_name", f"use 1-{DISPLAY_NAME_MAX} printable characters")
    if is_reserved(trimmed):
        raise _invalid(
            "display_name",
            "names that look like 'anonymous' are reserved: the leaderboard shows users "
            f"without a display name as '{ANONYMOUS_PREFIX}<rank>'",
        )
    return trimmed


def display_name_key(name: str) -> str:
    """The stored key of a checked display name: its fold (equal keys look alike)."""
    key = fold(name)
    if not key:  # only blanks and invisible characters, such as Hangul fillers
        raise _invalid("display_name", "use at least one visible character")
    if len(key) > DISPLAY_NAME_KEY_MAX:
        raise _invalid("display_name", "use fewer characters that expand (such as ligatures)")
    return key


def _taken() -> ValidationFailed:
    return _invalid(
        "display_name", "is taken: another user has this name or one that looks like it"
    )


def claim_display_name(conn: Connection, user_id: int, name: str | None) -> None:
    """Set (or, with None, clear) the user's display name and its key.

    The look-up of the key gives the usual answer; the unique index decides a race: a
    concurrent claim that committed first makes this UPDATE fail (PostgreSQL waits for that
    transaction, SQLite's writers are serialized anyway), and the savepoint turns the failure
    into the same 422 instead of an aborted transaction.
    """
    if name is None:
        values: dict[str, Any] = {"display_name": None, "display_name_key": None}
    else:
        values = {"display_name": name, "display_name_key": display_name_key(name)}
        holder = conn.execute(
            select(users.c.user_id).where(
                users.c.display_name_key == values["display_name_key"],
                users.c.user_id != user_id,
            )
        ).first()
        if holder is not None:
            raise _taken()
    try:
        with conn.begin_nested():
            conn.execute(update(users).where(users.c.user_id == user_id).values(**values))
    except IntegrityError:
        raise _taken() from None


def update_profile(
    conn: Connection,
    user_id: int,
    *,
    time_zone: str | None = None,
    display_name: Any = UNSET,
    leaderboard_opt_in: bool | None = None,
) -> tuple[Profile, int]:
    """Apply the given changes; return the new profile and the ``usage_daily`` rows rebuilt."""
    values: dict[str, Any] = {}
    name = UNSET
    if display_name is not UNSET:
        name = None if display_name is None else check_display_name(display_name)
    if leaderboard_opt_in is not None:
        values["leaderboard_opt_in"] = leaderboard_opt_in
    before = get_profile(conn, user_id)
    rebuilt = 0
    if time_zone is not None:
        try:
            check_time_zone(time_zone)
        except ValueError as exc:
            raise _invalid("time_zone", str(exc)) from None
        values["time_zone"] = time_zone
    if name is not UNSET:
        claim_display_name(conn, user_id, name)
    if values:
        conn.execute(update(users).where(users.c.user_id == user_id).values(**values))
    if time_zone is not None and time_zone != before.time_zone:
        rebuilt = rebuild_history(conn, user_id, before.time_zone, time_zone)
    return get_profile(conn, user_id), rebuilt


def rebuild_history(conn: Connection, user_id: int, old_zone: str, new_zone: str) -> int:
    """Rebuild every ``usage_daily`` row of the user for ``new_zone``; return the rows it has now.

    The range covers the user's first to last bucket in both zones (and any stored day), so
    rows of days that exist only in the old zone are deleted too.
    """
    lo, hi = conn.execute(
        select(
            func.min(usage_buckets.c.bucket_start), func.max(usage_buckets.c.bucket_start)
        ).where(usage_buckets.c.user_id == user_id)
    ).one()
    first_day, last_day = conn.execute(
        select(func.min(usage_daily.c.day), func.max(usage_daily.c.day)).where(
            usage_daily.c.user_id == user_id
        )
    ).one()
    days: list[date] = [d for d in (first_day, last_day) if d is not None]
    zones = (check_time_zone(old_zone), check_time_zone(new_zone))
    for edge in (lo, hi):
        if edge is not None:
            days.extend(local_day(int(edge), zone) for zone in zones)
    if not days:
        return 0
    # The range covers the user's whole history, so its INSERT's row count (kept on both
    # engines with preserve_rowcount) is every daily row the user now has.
    return rebuild_range(conn, user_id, zones[1], min(days), max(days))


def device_spans(conn: Connection, user_id: int, time_zone: str) -> list[DeviceSpan]:
    """The user's devices, each with its first and last bucket (by name).

    The first and last local day come from ``usage_daily``; the exact first and last bucket
    are then read from one local day of ``usage_buckets`` each, so the cost is bounded by
    the number of devices, not by the history.
    """
    zone = check_time_zone(time_zone)
    spans = {
        int(r[0]): (r[1], r[2])
        for r in conn.execute(
            select(
                usage_daily.c.device_id, func.min(usage_daily.c.day), func.max(usage_daily.c.day)
            )
            .where(usage_daily.c.user_id == user_id)
            .group_by(usage_daily.c.device_id)
        )
    }
    rows = conn.execute(
        select(devices).where(devices.c.user_id == user_id).order_by(devices.c.name)
    ).mappings()
    found: list[DeviceSpan] = []
    for row in rows:
        device_id = int(row["device_id"])
        first_day, last_day = spans.get(device_id, (None, None))
        first = _edge(conn, user_id, device_id, first_day, zone, func.min)
        last = _edge(conn, user_id, device_id, last_day, zone, func.max)
        found.append(
            DeviceSpan(
                name=str(row["name"]),
                created_at_ms=int(row["created_at_ms"]),
                last_upload_at_ms=row["last_upload_at_ms"],
                first_day=first_day,
                last_day=last_day,
                first_bucket=first,
                last_bucket=last,
            )
        )
    return found


def _edge(
    conn: Connection, user_id: int, device_id: int, day: date | None, zone: Any, agg: Any
) -> int | None:
    if day is None:
        return None
    start, end = day_range(day, day, zone)
    value = conn.execute(
        select(agg(usage_buckets.c.bucket_start)).where(
            usage_buckets.c.user_id == user_id,
            usage_buckets.c.bucket_start >= start,
            usage_buckets.c.bucket_start < end,
            usage_buckets.c.device_id == device_id,
        )
    ).scalar()
    return None if value is None else int(value)
