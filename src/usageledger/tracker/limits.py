"""``usageledger limits``: the vendors' own rate-limit windows, as the assistants recorded them.

Codex writes OpenAI's windows into its rollouts (``token_count`` events: ``rate_limits``,
read by ``sources.codex``); Claude Code sends Anthropic's to its status line
(``rate_limits.five_hour`` and ``.seven_day``, recorded by ``usageledger statusline``). Both
land in ``limit_observations``, append-only under ``(user, source, window, observed time)``:
a re-scan, a forked rollout replaying its parent or a status line run twice in one
millisecond inserts nothing it already has. Values are shown as observed, never estimated or
extrapolated; a window whose reset time has passed is marked, not recomputed. ``push`` does
not send them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from usageledger.buckets import from_epoch
from usageledger.sources.base import LimitObservation
from usageledger.tracker.db import placeholders

TABLE = "limit_observations"
COLUMNS = (
    "user_id",
    "source",
    "window_name",
    "observed_ms",
    "used_percent",
    "window_minutes",
    "resets_at_ms",
    "limit_id",
)
INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders(len(COLUMNS))}) "
    "ON CONFLICT (user_id, source, window_name, observed_ms) DO NOTHING"
)
#: Claude Code's status-line windows and their length in minutes.
CLAUDE_WINDOWS = {"five_hour": 300, "seven_day": 10080}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(when: datetime) -> int:
    """Unix milliseconds of an aware datetime (exact, no float rounding)."""
    since = when - _EPOCH
    return since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000


def observation_row(user_id: int, obs: LimitObservation) -> tuple[Any, ...]:
    """The ``limit_observations`` row of one observation, in :data:`COLUMNS` order."""
    return (
        user_id,
        obs.source,
        obs.window[:64],
        epoch_ms(obs.observed_at),
        obs.used_percent,
        obs.window_minutes,
        epoch_ms(obs.resets_at) if obs.resets_at is not None else None,
        obs.limit_id[:64] if obs.limit_id else None,
    )


def store_limits(
    conn: sqlite3.Connection, user_id: int, observations: Iterable[LimitObservation]
) -> int:
    """Insert the observations the ledger does not have yet; how many were new."""
    rows = [observation_row(user_id, obs) for obs in observations]
    if not rows:
        return 0
    before = conn.total_changes
    conn.executemany(INSERT, rows)
    return conn.total_changes - before


def store_changed_limits(
    conn: sqlite3.Connection, user_id: int, observations: Iterable[LimitObservation]
) -> int:
    """Insert each observation whose value differs from the newest stored one of its window.

    The status line runs after every message; storing the same percentage and reset time each
    time would fill the table with repeats and make every run write. A change is stored.
    """
    changed = []
    for obs in observations:
        newest = conn.execute(
            f"SELECT used_percent, resets_at_ms FROM {TABLE} WHERE user_id = ? AND source = ? "
            "AND window_name = ? ORDER BY observed_ms DESC LIMIT 1",
            (user_id, obs.source, obs.window[:64]),
        ).fetchone()
        resets = epoch_ms(obs.resets_at) if obs.resets_at is not None else None
        if newest is None or (float(newest[0]), newest[1]) != (obs.used_percent, resets):
            changed.append(obs)
    return store_limits(conn, user_id, changed)


def claude_limits(rate_limits: Any, observed_at: datetime) -> list[LimitObservation]:
    """The windows of Claude Code's status-line ``rate_limits`` object, observed now.

    ``{"five_hour": {"used_percentage": 23.5, "resets_at": 1738425600}, "seven_day": …}``;
    a window without a finite ``used_percentage`` is skipped, anything else is ignored.
    """
    if not isinstance(rate_limits, dict):
        return []
    out = []
    for name, value in rate_limits.items():
        if not isinstance(name, str) or not name or not isinstance(value, dict):
            continue
        used = _number(value.get("used_percentage"))
        if used is None:
            continue
        resets = _number(value.get("resets_at"))
        try:
            reset_time = from_epoch(int(resets)) if resets is not None and resets > 0 else None
        except (OverflowError, OSError, ValueError):
            reset_time = None
        out.append(
            LimitObservation(
                source="claude",
                window=name,
                observed_at=observed_at,
                used_percent=used,
                window_minutes=CLAUDE_WINDOWS.get(name),
                resets_at=reset_time,
            )
        )
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _iso(ms: int | None, tz: ZoneInfo) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat()


def _row(r: Sequence[Any], tz: ZoneInfo, now_ms: int) -> dict[str, Any]:
    source, window, observed, used, minutes, resets, limit_id = r
    return {
        "source": str(source),
        "window": str(window),
        "window_minutes": int(minutes) if minutes is not None else None,
        "used_percent": float(used),
        "observed_at": _iso(int(observed), tz),
        "resets_at": _iso(int(resets) if resets is not None else None, tz),
        # The vendor's value no longer applies once its window reset; we say so, nothing more.
        "reset_passed": resets is not None and int(resets) <= now_ms,
        "limit_id": limit_id,
    }


def build_limits(
    conn: sqlite3.Connection,
    user_id: int,
    *,
    tz: ZoneInfo,
    now_ms: int,
    sources: Sequence[str] = (),
    history: int = 0,
) -> dict[str, Any]:
    """The newest observation of every (source, window), and up to ``history`` older ones each.

    ``latest`` is ordered by source and window; each ``history`` list is newest first and
    includes the latest observation.
    """
    conditions = ["user_id = ?"]
    params: list[Any] = [user_id]
    if sources:
        conditions.append(f"source IN ({placeholders(len(sources))})")
        params.extend(sources)
    where = " AND ".join(conditions)
    cols = "source, window_name, observed_ms, used_percent, window_minutes, resets_at_ms, limit_id"
    latest = conn.execute(
        f"SELECT {cols} FROM {TABLE} AS o WHERE {where} AND observed_ms = ("
        f"SELECT MAX(observed_ms) FROM {TABLE} AS i WHERE i.user_id = o.user_id "
        "AND i.source = o.source AND i.window_name = o.window_name) "
        "ORDER BY source, window_name",
        params,
    ).fetchall()
    windows: list[dict[str, Any]] = []
    for row in latest:
        entry = _row(row, tz, now_ms)
        if history > 0:
            older = conn.execute(
                f"SELECT {cols} FROM {TABLE} WHERE user_id = ? AND source = ? AND window_name = ? "
                "ORDER BY observed_ms DESC LIMIT ?",
                (user_id, row[0], row[1], history),
            ).fetchall()
            entry["history"] = [
                {k: v for k, v in _row(r, tz, now_ms).items() if k not in ("source", "window")}
                for r in older
            ]
        windows.append(entry)
    return {"generated_at": _iso(now_ms, tz), "windows": windows}


def describe_reset(resets_at: str | None, now_ms: int) -> str:
    """``in 2h 13m``, ``passed`` or ``-``: how far the vendor's reset time is from now."""
    if resets_at is None:
        return "-"
    left = int(datetime.fromisoformat(resets_at).timestamp() * 1000) - now_ms
    if left <= 0:
        return "passed"
    return "in " + duration_text(left)


def duration_text(ms: int) -> str:
    """``3d 4h``, ``2h 13m`` or ``7m``: a duration rounded down to the minute."""
    minutes = max(ms, 0) // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins:02d}m"
    return f"{mins}m"
