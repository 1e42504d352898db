"""The read side: bounded queries behind every usage endpoint (docs/design.md §5).

Rows come from the read model (:mod:`usageledger.ledger.readmodel`), the same SQL the
tracker's ``report`` runs on its local ledger: in the user's own time zone, ``usage_daily``
(its primary key leads with ``(user_id, day)``); in another zone, and for the half-hour view, a
bounded range of ``usage_buckets`` through its ``(user_id, bucket_start)`` index, grouped by the
local day with the same day rule as the rollups. Either way the result is a list of
:class:`~usageledger.ledger.costing.UsageRow`, and every endpoint prices it with the one
:func:`~usageledger.ledger.costing.tally`. Ranges are resolved and capped in
:mod:`usageledger.ledger.windows` before any SQL runs.

Each function runs inside the caller's read transaction, so the user's time zone and the
rows it selects are one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, select, text

from usageledger.buckets import COUNT_COLUMNS, HALF_HOUR, Counts, day_range
from usageledger.errors import NotFound, ValidationFailed
from usageledger.ledger.costing import Tally, UsageRow, combine, tally
from usageledger.ledger.pricing import PriceBook
from usageledger.ledger.readmodel import EPOCH as EPOCH  # the leaderboard's day numbers too
from usageledger.ledger.readmodel import Scope, Statement, bucket_statement, daily_statement
from usageledger.ledger.windows import Window
from usageledger.store.tables import devices, users


@dataclass(frozen=True, slots=True)
class Filters:
    """Optional filters: a source, a model, a device (by its name)."""

    source: str | None = None
    model: str | None = None
    device: str | None = None


def user_time_zone(conn: Connection, user_id: int) -> str:
    """The user's time zone, read in the caller's transaction."""
    zone = conn.execute(select(users.c.time_zone).where(users.c.user_id == user_id)).scalar()
    if zone is None:
        raise NotFound("no such user")
    return str(zone)


def device_id_named(conn: Connection, user_id: int, name: str) -> int:
    """The id of the user's device called ``name``; 422 when the user has none by that name."""
    found = conn.execute(
        select(devices.c.device_id).where(devices.c.user_id == user_id, devices.c.name == name)
    ).scalar()
    if found is None:
        message = f"you have no device named {name!r}; GET /v1/devices lists yours"
        raise ValidationFailed.at("query.device", message, summary=f"device: {message}")
    return int(found)


def _scope(conn: Connection, user_id: int, filters: Filters) -> Scope:
    device_id = None if filters.device is None else device_id_named(conn, user_id, filters.device)
    sources = () if filters.source is None else (filters.source,)
    return Scope(user_id, sources, filters.model, device_id)


def _run(conn: Connection, statement: Statement) -> list[UsageRow]:
    """Run one of the read model's statements (the same SQL the tracker runs on ``sqlite3``)."""
    result = conn.execute(text(statement.sql), statement.bind(conn.dialect.name))
    return statement.rows(result)


def day_rows(conn: Connection, user_id: int, window: Window, filters: Filters) -> list[UsageRow]:
    """Rows per local day, source and model of ``window`` (devices summed)."""
    scope = _scope(conn, user_id, filters)
    if window.from_buckets:
        start, end = day_range(window.first, window.last, window.tz)
        return _run(conn, bucket_statement(scope, window.tz, start, end))
    return _run(conn, daily_statement(scope, window.first, window.last))


def slot_rows(conn: Connection, user_id: int, window: Window, filters: Filters) -> list[UsageRow]:
    """Rows per half-hour, source and model of a one-day window (from ``usage_buckets``)."""
    scope = _scope(conn, user_id, filters)
    start, end = day_range(window.first, window.last, window.tz)
    return _run(conn, bucket_statement(scope, window.tz, start, end, slots=True))


# --- endpoint results ------------------------------------------------------------------------


@dataclass(slots=True)
class Summary:
    """Totals of a window and one line per (source, model)."""

    window: Window
    totals: Tally
    by_model: list[tuple[str, str, Tally]]


@dataclass(slots=True)
class Daily:
    """One tally per local day of the window, zero days included."""

    window: Window
    days: list[tuple[date, Tally]]
    totals: Tally


@dataclass(slots=True)
class Hourly:
    """One tally per half-hour slot of a local day (46, 48 or 50 slots)."""

    window: Window
    slots: list[tuple[int, Tally]]
    totals: Tally


@dataclass(slots=True)
class Monthly:
    """One tally per calendar month of the window."""

    window: Window
    months: list[tuple[date, Tally]]
    totals: Tally


@dataclass(slots=True)
class ModelShare:
    """A tally with its share of the window's total tokens."""

    tally: Tally
    share: tuple[int, int]  # (part, whole) of total_tokens; rendered by the API


@dataclass(slots=True)
class Models:
    """Usage by source and model, with shares of the total."""

    window: Window
    models: list[tuple[str, str, ModelShare]]
    sources: list[tuple[str, ModelShare]]
    totals: Tally


def _busiest_first(names: tuple[str, ...], group: Tally) -> tuple[int, tuple[str, ...]]:
    return (-group.counts.total_tokens, names)


def summary(
    conn: Connection, user_id: int, window: Window, filters: Filters, book: PriceBook
) -> Summary:
    """Totals and per-model lines of a window."""
    groups = tally(book, day_rows(conn, user_id, window, filters), lambda r: (r.source, r.model))
    order = sorted(groups, key=lambda k: _busiest_first(k, groups[k]))
    return Summary(window, combine(groups.values()), [(s, m, groups[(s, m)]) for s, m in order])


def daily(
    conn: Connection, user_id: int, window: Window, filters: Filters, book: PriceBook
) -> Daily:
    """Every local day of a window with its tally (a day without usage is all zeros)."""
    groups = tally(book, day_rows(conn, user_id, window, filters), lambda r: r.day)
    days = [(day, groups.get(day) or Tally()) for day in window.each_day()]
    return Daily(window, days, combine(groups.values()))


def slot_starts(window: Window) -> list[int]:
    """The UTC starts of the half-hours whose start lies in the window's local day."""
    start, end = day_range(window.first, window.last, window.tz)
    first = start + (-start) % HALF_HOUR  # a zone offset like +05:45 starts days mid-slot
    return list(range(first, end, HALF_HOUR))


def hourly(
    conn: Connection, user_id: int, window: Window, filters: Filters, book: PriceBook
) -> Hourly:
    """Every half-hour of one local day with its tally."""
    groups = tally(book, slot_rows(conn, user_id, window, filters), lambda r: r.slot)
    slots = [(start, groups.get(start) or Tally()) for start in slot_starts(window)]
    return Hourly(window, slots, combine(groups.values()))


def monthly(
    conn: Connection, user_id: int, window: Window, filters: Filters, book: PriceBook
) -> Monthly:
    """Every calendar month of a window of whole months with its tally."""
    groups = tally(book, day_rows(conn, user_id, window, filters), lambda r: r.day.replace(day=1))
    months: list[tuple[date, Tally]] = []
    month = window.first
    while month <= window.last:
        months.append((month, groups.get(month) or Tally()))
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return Monthly(window, months, combine(groups.values()))


def models(
    conn: Connection, user_id: int, window: Window, filters: Filters, book: PriceBook
) -> Models:
    """Usage by source and model, and by source, each with its share of total tokens."""
    groups = tally(book, day_rows(conn, user_id, window, filters), lambda r: (r.source, r.model))
    totals = combine(groups.values())
    whole = totals.counts.total_tokens
    by_source: dict[str, Tally] = {}
    for (source, _), group in groups.items():
        by_source.setdefault(source, Tally()).merge(group)
    lines = [
        (s, m, ModelShare(groups[(s, m)], (groups[(s, m)].counts.total_tokens, whole)))
        for s, m in sorted(groups, key=lambda k: _busiest_first(k, groups[k]))
    ]
    sources = [
        (s, ModelShare(by_source[s], (by_source[s].counts.total_tokens, whole)))
        for s in sorted(by_source, key=lambda k: _busiest_first((k,), by_source[k]))
    ]
    return Models(window, lines, sources, totals)


# --- heatmap -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Heatmap:
    """Total tokens per local day with a 0–4 level, and activity streaks."""

    window: Window
    weeks: int
    cells: list[tuple[date, int, int]]  # (day, total_tokens, level)
    active_days: int
    current_streak: int
    longest_streak: int
    max_tokens: int
    totals: Counts = field(default_factory=Counts)


def astuple_counts(counts: Counts) -> tuple[int, ...]:
    """The six counts in column order."""
    return (
        counts.input_tokens,
        counts.cached_input_tokens,
        counts.output_tokens,
        counts.reasoning_output_tokens,
        counts.total_tokens,
        counts.cache_write_tokens,
    )


def level(tokens: int, most: int) -> int:
    """0 without tokens, else ⌈4 × tokens / most⌉: the busiest day of the window is 4."""
    if tokens <= 0 or most <= 0:
        return 0
    return min(4, (4 * tokens + most - 1) // most)


def heatmap(
    conn: Connection,
    user_id: int,
    window: Window,
    filters: Filters,
    *,
    today: date,
) -> Heatmap:
    """Cells, levels and streaks of a window (streaks are counted inside the window)."""
    per_day: dict[date, int] = {}
    sums = [0] * len(COUNT_COLUMNS)
    for row in day_rows(conn, user_id, window, filters):
        per_day[row.day] = per_day.get(row.day, 0) + row.counts.total_tokens
        for i, value in enumerate(astuple_counts(row.counts)):
            sums[i] += value
    days = window.each_day()
    tokens = [per_day.get(d, 0) for d in days]
    most = max(tokens, default=0)
    cells = [(d, t, level(t, most)) for d, t in zip(days, tokens, strict=True)]
    longest = run = 0
    for t in tokens:
        run = run + 1 if t > 0 else 0
        longest = max(longest, run)
    current = 0
    ending = len(tokens) - 1
    if window.last == today and tokens and tokens[-1] == 0:
        ending -= 1  # today is not over: a streak that reached yesterday is still current
    while ending >= 0 and tokens[ending] > 0:
        current += 1
        ending -= 1
    active = sum(1 for t in tokens if t > 0)
    weeks = (window.last - window.first).days // 7 + 1  # the window starts on a Monday
    return Heatmap(window, weeks, cells, active, current, longest, most, Counts(*sums))
