"""``usageledger report``: usage and cost per day, week, month, model, session or project.

Reports are plain dicts (the JSON shapes of docs/tracker.md); the CLI renders them as tables.
Every row is priced the same way: each ``(model, local day)`` unit goes through
``PriceBook.match`` and ``Cost`` once, and that price is added to the row, the breakdown and
the totals, so a report's rows always add up to its totals, to the femto-dollar.

Where the numbers come from: daily, weekly, monthly and models read ``usage_daily`` when the
report's time zone is the ledger's, else ``usage_buckets`` (half-hours re-assigned to local
days in the asked zone). Hourly reads ``usage_buckets`` as they are, one row per half-hour.
Session and projects read ``usage_events`` grouped by session and project (with their
half-hour, so every report puts a token on the same local day).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from usageledger.buckets import COUNT_COLUMNS, day_start, from_epoch, local_day
from usageledger.ledger.pricing import Cost, Price, PriceBook, format_usd
from usageledger.tracker.db import placeholders
from usageledger.tracker.ledger import LocalLedger

KINDS = ("daily", "weekly", "monthly", "hourly", "session", "models", "projects")
#: Kinds whose rows are periods (each with a per-model breakdown under ``models``).
PERIODS = {"daily": "days", "weekly": "weeks", "monthly": "months", "hourly": "half_hours"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: ``--since``/``--until`` words; ``Nd`` (``7d``, ``30d``) is the last N days, today included.
SHORTCUTS = (
    "today",
    "yesterday",
    "this-week",
    "last-week",
    "this-month",
    "last-month",
)
_LAST_DAYS = re.compile(r"^(\d{1,4})d$")
#: The order counts appear in JSON rows and table columns.
FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)
_INDEX = {name: COUNT_COLUMNS.index(name) for name in FIELDS}
_TOTAL = COUNT_COLUMNS.index("total_tokens")
NO_PROJECT = "(no project)"
#: ``--cost``: ``auto`` takes the cost a log recorded where there is one and prices the rest
#: from the price table; ``calculate`` always prices tokens; ``logged`` shows only logged costs.
COST_MODES = ("auto", "calculate", "logged")
DEFAULT_COST_MODE = "auto"
#: The counts of events that logged their cost, and the sum of those costs in pico-dollars.
Logged = tuple[tuple[int, ...], int]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What to report: the kind, an inclusive local-day range, a zone and sources."""

    kind: str
    time_zone: str
    since: date | None = None
    until: date | None = None
    sources: tuple[str, ...] = ()
    #: ``session`` only: just this session (any source).
    session_id: str | None = None
    #: The first day of a week for ``weekly``: 0 is Monday (ISO), 6 is Sunday.
    start_of_week: int = 0
    #: Where costs come from: one of :data:`COST_MODES` (the CLI's default is
    #: :data:`DEFAULT_COST_MODE`; the status line keeps ``calculate``).
    cost: str = "calculate"

    @property
    def tz(self) -> ZoneInfo:
        """The report's time zone."""
        return ZoneInfo(self.time_zone)


@dataclass(slots=True)
class Tally:
    """Token counts (``COUNT_COLUMNS`` order) and their exact cost under one cost mode.

    ``cost`` holds the tokens priced from the price table (all of them under ``calculate``, those
    without a logged cost under ``auto``, none under ``logged``); ``logged_pico`` the logged
    costs taken instead (pico-dollars, exact) and ``logged_tokens`` their tokens; ``calculated``
    every token priced, the number ``--cost calculate`` would show (kept unless calculating).
    """

    #: ``calculate`` unless a report asks otherwise (``blocks`` and the status line price
    #: tokens only; docs/tracker.md).
    mode: str = "calculate"
    counts: list[int] = field(default_factory=lambda: [0] * len(COUNT_COLUMNS))
    cost: Cost = field(default_factory=Cost)
    calculated: Cost = field(default_factory=Cost)
    logged_pico: int = 0
    logged_tokens: int = 0

    def add(
        self, model: str, counts: Sequence[int], price: Price | None, logged: Logged | None = None
    ) -> None:
        """Add one priced unit; ``logged``: the part of it whose events logged their cost."""
        for i, value in enumerate(counts):
            self.counts[i] += value
        row = dict(zip(COUNT_COLUMNS, counts, strict=True))
        if self.mode == "calculate":
            self.cost.add_priced(model, row, price)
            return
        self.calculated.add_priced(model, row, price)
        if logged is not None:
            logged_counts, pico = logged
            self.logged_pico += pico
            self.logged_tokens += logged_counts[_TOTAL]
            row = {c: max(0, row[c] - v) for c, v in zip(COUNT_COLUMNS, logged_counts, strict=True)}
        if self.mode == "auto" and any(row.values()):
            self.cost.add_priced(model, row, price)

    def as_dict(self) -> dict[str, Any]:
        """The counts, ``cost_usd`` (6 decimals, a string), ``cost_mode``, the unpriced models.

        ``cost_mode`` says where ``cost_usd`` came from: ``calculated`` (prices), ``logged``
        (the logs' own costs) or ``mixed`` (under ``auto``: some tokens logged, some priced).
        Unless calculating, ``logged_cost_usd`` (None when nothing logged a cost),
        ``calculated_cost_usd`` and ``logged_tokens`` follow.
        """
        out: dict[str, Any] = {name: self.counts[_INDEX[name]] for name in FIELDS}
        if self.mode == "calculate":
            out["cost_usd"] = format_usd(self.cost.usd)
            out["cost_mode"] = "calculated"
            out["unpriced_models"] = list(self.cost.unpriced_models)
            return out
        logged = Decimal(self.logged_pico).scaleb(-12)
        if self.mode == "logged":
            out["cost_usd"] = format_usd(logged)
            out["cost_mode"] = "logged"
            out["unpriced_models"] = []
        else:
            out["cost_usd"] = format_usd(self.cost.usd + logged)
            if not self.logged_tokens:
                out["cost_mode"] = "calculated"
            else:
                whole = self.logged_tokens >= self.counts[_TOTAL]
                out["cost_mode"] = "logged" if whole else "mixed"
            out["unpriced_models"] = list(self.cost.unpriced_models)
        out["logged_cost_usd"] = format_usd(logged) if self.logged_tokens else None
        out["calculated_cost_usd"] = format_usd(self.calculated.usd)
        out["logged_tokens"] = self.logged_tokens
        return out


@dataclass(frozen=True, slots=True)
class Unit:
    """Tokens of one source and model on one local day (the unit that gets priced)."""

    day: date
    source: str
    model: str
    counts: tuple[int, ...]
    #: The half-hour's UTC start (epoch seconds), for ``hourly`` only.
    start: int | None = None
    #: The part of ``counts`` whose events logged their cost, and that cost (``--cost``
    #: ``auto``/``logged`` only).
    logged: Logged | None = None


def build_report(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest, book: PriceBook
) -> dict[str, Any]:
    """The report ``request`` asks for, as its JSON shape."""
    header: dict[str, Any] = {
        "report": request.kind,
        "timezone": request.time_zone,
        "since": request.since.isoformat() if request.since else None,
        "until": request.until.isoformat() if request.until else None,
        "sources": list(request.sources) or None,
    }
    if request.kind == "weekly":
        header["start_of_week"] = WEEKDAYS[request.start_of_week]
    if request.session_id is not None:
        header["session_id"] = request.session_id
    header["cost"] = request.cost
    mode = request.cost
    if request.kind in ("session", "projects"):
        groups = event_groups(conn, ledger, request)
        build = session_report if request.kind == "session" else project_report
        body = build(groups, book, request.tz, mode=mode)
    elif request.kind == "models":
        body = model_report(day_units(conn, ledger, request), book, mode=mode)
    elif request.kind == "hourly":
        units = half_hour_units(conn, ledger, request)
        body = period_report(units, book, "hourly", tz=request.tz, mode=mode)
    else:
        units = day_units(conn, ledger, request)
        body = period_report(units, book, request.kind, request.start_of_week, mode=mode)
    return {**header, **body}


def resolve_day(text: str, today: date, *, start_of_week: int = 0) -> tuple[date, date]:
    """The first and last day a ``--since``/``--until`` value means, relative to ``today``.

    A date (``2025-09-01``) is one day; ``today`` and ``yesterday`` are one day; ``7d`` (any
    ``Nd``) is the last N days, today included; ``this-week``, ``last-week``, ``this-month``
    and ``last-month`` are calendar ranges, weeks starting on ``start_of_week`` (0: Monday).
    ``--since`` takes the first day, ``--until`` the last. ``ValueError`` names what is
    accepted.
    """
    value = text.strip().lower()
    days = _LAST_DAYS.match(value)
    if days and int(days.group(1)) > 0:
        return today - timedelta(days=int(days.group(1)) - 1), today
    if value == "today":
        return today, today
    if value == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if value in ("this-week", "last-week"):
        start = today - timedelta(days=(today.weekday() - start_of_week) % 7)
        if value == "last-week":
            start -= timedelta(days=7)
        return start, start + timedelta(days=6)
    if value in ("this-month", "last-month"):
        first = today.replace(day=1)
        if value == "last-month":
            first = (first - timedelta(days=1)).replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or len(value) != 10:
        raise ValueError(
            f"{text!r} is not a day: use YYYY-MM-DD, {', '.join(SHORTCUTS)} or Nd (7d, 30d)"
        )
    return day, day


def week_day(name: str) -> int:
    """0 for ``monday`` … 6 for ``sunday`` (also ``mon`` … ``sun``); ``ValueError`` else."""
    value = name.strip().lower()
    for index, day in enumerate(WEEKDAYS):
        if value in (day, day[:3]):
            return index
    raise ValueError(f"{name!r} is not a day of the week; use monday … sunday")


def _range(request: ReportRequest) -> tuple[int | None, int | None]:
    """``[start, end)`` epoch seconds of the request's local days (None: unbounded)."""
    start = day_start(request.since, request.tz) if request.since else None
    end = day_start(request.until + timedelta(days=1), request.tz) if request.until else None
    return start, end


def _in_range(ledger: LocalLedger, request: ReportRequest) -> tuple[list[str], list[Any]]:
    """The conditions (and their parameters) of this user's half-hours in the request's range."""
    conditions: list[str] = ["user_id = ?"]
    params: list[Any] = [ledger.user_id]
    start, end = _range(request)
    if start is not None:
        conditions.append("bucket_start >= ?")
        params.append(start)
    if end is not None:
        conditions.append("bucket_start < ?")
        params.append(end)
    return conditions, params


def _where(
    conditions: list[str], params: list[Any], column: str, request: ReportRequest
) -> tuple[str, list[Any]]:
    """The ``WHERE`` of a report's query: the user, ``conditions`` and the sources."""
    if request.sources:
        conditions.append(f"{column} IN ({placeholders(len(request.sources))})")
        params.extend(request.sources)
    return " AND ".join(conditions), params


def day_units(conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest) -> list[Unit]:
    """Tokens per local day, source and model in the request's zone and range."""
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    if request.time_zone == ledger.time_zone:
        conditions: list[str] = ["user_id = ?"]
        params: list[Any] = [ledger.user_id]
        if request.since:
            conditions.append("day >= ?")
            params.append(request.since.isoformat())
        if request.until:
            conditions.append("day <= ?")
            params.append(request.until.isoformat())
        where, params = _where(conditions, params, "source", request)
        rows = conn.execute(
            f"SELECT day, source, model, {sums} FROM usage_daily WHERE {where} "
            "GROUP BY day, source, model",
            params,
        )
        units = [
            Unit(
                date.fromisoformat(row[0]), str(row[1]), str(row[2]), tuple(int(v) for v in row[3:])
            )
            for row in rows
        ]
        return _with_logged(conn, ledger, request, [u for u in units if u.counts[_TOTAL] > 0])
    conditions, params = _in_range(ledger, request)
    where, params = _where(conditions, params, "source", request)
    rows = conn.execute(
        f"SELECT bucket_start, source, model, {sums} FROM usage_buckets WHERE {where} "
        "GROUP BY bucket_start, source, model",
        params,
    )
    totals: dict[tuple[date, str, str], list[int]] = {}
    days = _DayCache(request.tz)
    for row in rows:
        acc = totals.setdefault(
            (days(int(row[0])), str(row[1]), str(row[2])), [0] * len(COUNT_COLUMNS)
        )
        for i, value in enumerate(row[3:]):
            acc[i] += int(value)
    units = [Unit(k[0], k[1], k[2], tuple(v)) for k, v in sorted(totals.items()) if v[_TOTAL] > 0]
    return _with_logged(conn, ledger, request, units)


def half_hour_units(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest
) -> list[Unit]:
    """Tokens per half-hour, source and model in the request's range (as stored)."""
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    conditions, params = _in_range(ledger, request)
    where, params = _where(conditions, params, "source", request)
    rows = conn.execute(
        f"SELECT bucket_start, source, model, {sums} FROM usage_buckets WHERE {where} "
        "GROUP BY bucket_start, source, model ORDER BY bucket_start, source, model",
        params,
    )
    days = _DayCache(request.tz)
    units = [
        Unit(days(int(r[0])), str(r[1]), str(r[2]), tuple(int(v) for v in r[3:]), start=int(r[0]))
        for r in rows
    ]
    return _with_logged(conn, ledger, request, [u for u in units if u.counts[_TOTAL] > 0])


def _with_logged(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest, units: list[Unit]
) -> list[Unit]:
    """``units`` with the part of each whose events logged their cost (unless calculating).

    The logged events are read from ``usage_events`` through its partial index (only events
    with a logged cost), per half-hour, and put on the unit of the same local day (or
    half-hour), source and model: the same assignment the rollups and buckets make.
    """
    if request.cost == "calculate" or not units:
        return units
    conditions, params = _in_range(ledger, request)
    conditions.append("logged_cost_picousd IS NOT NULL")
    where, params = _where(conditions, params, "source", request)
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT bucket_start, source, model, SUM(logged_cost_picousd), {sums} "
        f"FROM usage_events WHERE {where} GROUP BY bucket_start, source, model",
        params,
    )
    hourly = request.kind == "hourly"
    days = _DayCache(request.tz)
    found: dict[tuple[Any, str, str], tuple[list[int], int]] = {}
    for row in rows:
        start = int(row[0])
        key = (start if hourly else days(start), str(row[1]), str(row[2]))
        counts, pico = found.get(key, ([0] * len(COUNT_COLUMNS), 0))
        for i, value in enumerate(row[4:]):
            counts[i] += int(value or 0)
        found[key] = (counts, pico + int(row[3] or 0))
    if not found:
        return units
    out = []
    for unit in units:
        part = found.get((unit.start if hourly else unit.day, unit.source, unit.model))
        logged = (tuple(part[0]), part[1]) if part is not None else None
        out.append(replace(unit, logged=logged) if logged is not None else unit)
    return out


class _DayCache:
    """Local day of a half-hour start, memoised (reports see each half-hour many times)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.days: dict[int, date] = {}

    def __call__(self, start: int) -> date:
        day = self.days.get(start)
        if day is None:
            day = self.days[start] = local_day(start, self.tz)
        return day


@dataclass(frozen=True, slots=True)
class EventGroup:
    """Events of one session, project, model and half-hour."""

    source: str
    session_id: str
    project: str | None
    model: str
    bucket_start: int
    first_ms: int
    last_ms: int
    counts: tuple[int, ...]
    #: The sum of the events' logged costs (pico-dollars) when every event of the group logged
    #: one; None when none did, or when the report calculates.
    logged_pico: int | None = None


def event_groups(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest
) -> list[EventGroup]:
    """Sums of ``usage_events`` per session, project, model and half-hour in the range."""
    conditions, params = _in_range(ledger, request)
    if request.session_id is not None:
        conditions.append("session_id = ?")
        params.append(request.session_id)
    where, params = _where(conditions, params, "source", request)
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    # Unless calculating, events with and without a logged cost form separate groups.
    logged, split = (
        ("NULL", "")
        if request.cost == "calculate"
        else ("SUM(logged_cost_picousd)", ", logged_cost_picousd IS NULL")
    )
    rows = conn.execute(
        "SELECT source, session_id, project, model, bucket_start, MIN(event_ms), MAX(event_ms), "
        f"{logged}, {sums} FROM usage_events WHERE {where} "
        f"GROUP BY source, session_id, project, model, bucket_start{split} "
        "ORDER BY MIN(event_ms)",
        params,
    )
    return [
        EventGroup(
            source=str(r[0]),
            session_id=str(r[1]),
            project=r[2],
            model=str(r[3]),
            bucket_start=int(r[4]),
            first_ms=int(r[5]),
            last_ms=int(r[6]),
            counts=tuple(int(v) for v in r[8:]),
            logged_pico=None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


class Pricer:
    """``PriceBook.match`` memoised per (model, day): the single place a unit gets its price."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self.cache: dict[tuple[str, date], Price | None] = {}

    def __call__(self, model: str, day: date) -> Price | None:
        key = (model, day)
        if key not in self.cache:
            self.cache[key] = self.book.match(model, day)
        return self.cache[key]


def _period_key(
    kind: str, start_of_week: int = 0, tz: ZoneInfo | None = None
) -> Callable[[Unit], tuple[str, dict[str, Any]]]:
    if kind == "daily":
        return lambda u: (u.day.isoformat(), {"day": u.day.isoformat()})
    if kind == "weekly":

        def week(u: Unit) -> tuple[str, dict[str, Any]]:
            start = u.day - timedelta(days=(u.day.weekday() - start_of_week) % 7)
            # A week is named by the ISO week holding its middle day (its Thursday when
            # weeks start on Monday), so a Sunday-first week gets the number most of it has.
            year, number, _ = (start + timedelta(days=3)).isocalendar()
            return start.isoformat(), {
                "week": f"{year}-W{number:02d}",
                "week_start": start.isoformat(),
            }

        return week
    if kind == "hourly":
        zone = tz or ZoneInfo("UTC")

        def half_hour(u: Unit) -> tuple[str, dict[str, Any]]:
            start = u.start or 0
            return f"{start:012d}", {
                "half_hour": from_epoch(start).astimezone(zone).isoformat(),
                "day": u.day.isoformat(),
            }

        return half_hour
    return lambda u: (u.day.strftime("%Y-%m"), {"month": u.day.strftime("%Y-%m")})


def period_report(
    units: Iterable[Unit],
    book: PriceBook,
    kind: str,
    start_of_week: int = 0,
    *,
    tz: ZoneInfo | None = None,
    mode: str = DEFAULT_COST_MODE,
) -> dict[str, Any]:
    """Usage per local day, week, month or half-hour, with a per-model breakdown."""
    key_of = _period_key(kind, start_of_week, tz)
    price = Pricer(book)
    rows: dict[str, tuple[dict[str, Any], Tally, dict[tuple[str, str], Tally]]] = {}
    totals = Tally(mode)
    for unit in units:
        key, label = key_of(unit)
        if key not in rows:
            rows[key] = (label, Tally(mode), {})
        _, tally, models = rows[key]
        found = price(unit.model, unit.day)
        tally.add(unit.model, unit.counts, found, unit.logged)
        by_model = models.setdefault((unit.source, unit.model), Tally(mode))
        by_model.add(unit.model, unit.counts, found, unit.logged)
        totals.add(unit.model, unit.counts, found, unit.logged)
    out = []
    for key in sorted(rows):
        label, tally, models = rows[key]
        out.append({**label, **tally.as_dict(), "models": _breakdown(models)})
    return {PERIODS[kind]: out, "totals": totals.as_dict()}


def _breakdown(models: dict[tuple[str, str], Tally]) -> list[dict[str, Any]]:
    """Per ``(source, model)`` tallies as rows, in name order."""
    return [{"source": s, "model": m, **t.as_dict()} for (s, m), t in sorted(models.items())]


def model_report(
    units: Iterable[Unit], book: PriceBook, *, mode: str = DEFAULT_COST_MODE
) -> dict[str, Any]:
    """Usage per source and model, most tokens first."""
    price = Pricer(book)
    rows: dict[tuple[str, str], tuple[Tally, set[date]]] = {}
    totals = Tally(mode)
    for unit in units:
        tally, days = rows.setdefault((unit.source, unit.model), (Tally(mode), set()))
        found = price(unit.model, unit.day)
        tally.add(unit.model, unit.counts, found, unit.logged)
        totals.add(unit.model, unit.counts, found, unit.logged)
        days.add(unit.day)
    out = [
        {"source": source, "model": model, "days": len(days), **tally.as_dict()}
        for (source, model), (tally, days) in sorted(
            rows.items(), key=lambda item: (-item[1][0].counts[_TOTAL], item[0])
        )
    ]
    return {"models": out, "totals": totals.as_dict()}


def _iso(ms: int, tz: ZoneInfo) -> str:
    return from_epoch(ms // 1000).astimezone(tz).isoformat()


@dataclass(slots=True)
class _Group:
    tally: Tally = field(default_factory=Tally)
    first_ms: int = 0
    last_ms: int = 0
    models: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    sessions: set[tuple[str, str]] = field(default_factory=set)
    project: str | None = None
    by_model: dict[tuple[str, str], Tally] = field(default_factory=dict)


def _grouped(
    groups: Iterable[EventGroup],
    book: PriceBook,
    key: Callable[[EventGroup], Any],
    tz: ZoneInfo,
    mode: str,
) -> tuple[dict[Any, _Group], Tally]:
    price = Pricer(book)
    days = _DayCache(tz)
    out: dict[Any, _Group] = {}
    totals = Tally(mode)
    for g in groups:
        if g.counts[_TOTAL] <= 0:
            continue
        group = out.get(key(g))
        if group is None:
            group = out[key(g)] = _Group(tally=Tally(mode), first_ms=g.first_ms, last_ms=g.last_ms)
        found = price(g.model, days(g.bucket_start))
        logged = None if g.logged_pico is None else (g.counts, g.logged_pico)
        group.tally.add(g.model, g.counts, found, logged)
        by_model = group.by_model.setdefault((g.source, g.model), Tally(mode))
        by_model.add(g.model, g.counts, found, logged)
        totals.add(g.model, g.counts, found, logged)
        group.first_ms = min(group.first_ms, g.first_ms)
        group.last_ms = max(group.last_ms, g.last_ms)
        group.models.add(g.model)
        group.sources.add(g.source)
        group.sessions.add((g.source, g.session_id))
        group.project = group.project or g.project
    return out, totals


def session_report(
    groups: Sequence[EventGroup],
    book: PriceBook,
    tz: ZoneInfo,
    *,
    mode: str = DEFAULT_COST_MODE,
) -> dict[str, Any]:
    """Usage per ``(source, session_id)``, oldest session first."""
    grouped, totals = _grouped(groups, book, lambda g: (g.source, g.session_id), tz, mode)
    rows = [
        {
            "source": source,
            "session_id": session,
            "project": group.project,
            "first_event": _iso(group.first_ms, tz),
            "last_event": _iso(group.last_ms, tz),
            "models": sorted(group.models),
            **group.tally.as_dict(),
            "breakdown": _breakdown(group.by_model),
        }
        for (source, session), group in sorted(
            grouped.items(), key=lambda item: (item[1].first_ms, item[0])
        )
    ]
    return {"sessions": rows, "totals": totals.as_dict()}


def project_report(
    groups: Sequence[EventGroup],
    book: PriceBook,
    tz: ZoneInfo,
    *,
    mode: str = DEFAULT_COST_MODE,
) -> dict[str, Any]:
    """Usage per project (the directory the assistant ran in), most tokens first."""
    grouped, totals = _grouped(groups, book, lambda g: g.project or NO_PROJECT, tz, mode)
    rows = [
        {
            "project": project,
            "sources": sorted(group.sources),
            "sessions": len(group.sessions),
            "first_event": _iso(group.first_ms, tz),
            "last_event": _iso(group.last_ms, tz),
            "models": sorted(group.models),
            **group.tally.as_dict(),
            "breakdown": _breakdown(group.by_model),
        }
        for project, group in sorted(
            grouped.items(), key=lambda item: (-item[1].tally.counts[_TOTAL], item[0])
        )
    ]
    return {"projects": rows, "totals": totals.as_dict()}
