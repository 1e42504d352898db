"""``usageledger report``: usage and cost per day, week, month, model, session or project.

Reports are plain dicts (the JSON shapes of docs/tracker.md); the CLI renders them as tables.

Daily, weekly, monthly, hourly and models read the server's read model
(:mod:`usageledger.ledger.readmodel`: the same SQL the read API runs): ``usage_daily`` when the
report's time zone is the ledger's, else ``usage_buckets`` grouped by local day in the asked
zone (hourly: per half-hour, each with its local day). Session and projects read
``usage_events`` grouped by session, project and half-hour (a half-hour's local day is
``buckets.local_day``, the same rule). Every row becomes a ``costing.UsageRow`` and is priced
once by the server's ``costing.Tally``; the row, breakdown and totals merge those tallies, so
a report's rows always add up to its totals, to the femto-dollar, and agree with the server's
views of the same usage. Logged costs (``--cost auto|logged``) are a layer on top
(:class:`ReportTally`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from usageledger.buckets import COUNT_COLUMNS, Counts, day_start, from_epoch, local_day
from usageledger.ledger.costing import Tally, UsageRow
from usageledger.ledger.pricing import Cost, PriceBook, format_usd
from usageledger.ledger.readmodel import (
    EPOCH,
    SUMS,
    Scope,
    bucket_range_sql,
    bucket_statement,
    daily_statement,
    day_number_sql,
    run_sqlite,
)
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
NO_PROJECT = "(no project)"
#: ``--cost``: ``auto`` takes the cost a log recorded where there is one and prices the rest
#: from the price table; ``calculate`` always prices tokens; ``logged`` shows only logged costs.
COST_MODES = ("auto", "calculate", "logged")
DEFAULT_COST_MODE = "auto"
#: The counts of events that logged their cost, and the sum of those costs in pico-dollars.
Logged = tuple[Counts, int]


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


def tally_dict(tally: Tally) -> dict[str, Any]:
    """A priced tally's JSON: the counts, ``cost_usd`` (6 decimals, a string), ``cost_mode``
    ``calculated`` and the unpriced models (``blocks`` and ``--cost calculate``)."""
    counts = tally.counts
    out: dict[str, Any] = {name: getattr(counts, name) for name in FIELDS}
    out["cost_usd"] = tally.cost_usd
    out["cost_mode"] = "calculated"
    out["unpriced_models"] = tally.unpriced_models
    return out


class ReportTally:
    """The tally of a report's row under one cost mode: the server's :class:`Tally` of its
    usage rows, and (unless calculating) the part whose events logged their cost.

    ``tally`` holds the counts and every token priced from the price table (what ``--cost
    calculate`` shows); ``rest`` the tokens without a logged cost, priced (``auto`` only);
    ``logged_pico`` the logged costs taken instead (pico-dollars, exact) and ``logged_tokens``
    their tokens.
    """

    __slots__ = ("logged_pico", "logged_tokens", "mode", "rest", "tally")

    def __init__(self, mode: str = "calculate") -> None:
        self.mode = mode
        self.tally = Tally()
        self.rest = Cost()
        self.logged_pico = 0
        self.logged_tokens = 0

    @property
    def total_tokens(self) -> int:
        """The row's total tokens."""
        return self.tally.counts.total_tokens

    def add(self, book: PriceBook, row: UsageRow, logged: Logged | None = None) -> None:
        """Price ``row`` and add it; ``logged``: the part of it whose events logged their cost."""
        self.tally.add(book, row)
        if self.mode == "calculate":
            return
        rest = row.counts
        if logged is not None:
            part, pico = logged
            self.logged_pico += pico
            self.logged_tokens += part.total_tokens
            rest = Counts(
                *(max(0, a - b) for a, b in zip(_values(rest), _values(part), strict=True))
            )
        if self.mode == "auto" and any(_values(rest)):
            self.rest.add(book, row.model, row.day, rest.as_dict())

    def merge(self, other: ReportTally) -> None:
        """Add another row's tally into this one (exact: nothing is priced again)."""
        self.tally.merge(other.tally)
        self.rest.merge(other.rest)
        self.logged_pico += other.logged_pico
        self.logged_tokens += other.logged_tokens

    def as_dict(self) -> dict[str, Any]:
        """The counts, ``cost_usd`` (6 decimals, a string), ``cost_mode``, the unpriced models.

        ``cost_mode`` says where ``cost_usd`` came from: ``calculated`` (prices), ``logged``
        (the logs' own costs) or ``mixed`` (under ``auto``: some tokens logged, some priced).
        Unless calculating, ``logged_cost_usd`` (None when nothing logged a cost),
        ``calculated_cost_usd`` and ``logged_tokens`` follow.
        """
        out = tally_dict(self.tally)
        if self.mode == "calculate":
            return out
        logged = Decimal(self.logged_pico).scaleb(-12)
        if self.mode == "logged":
            out["cost_usd"] = format_usd(logged)
            out["cost_mode"] = "logged"
            out["unpriced_models"] = []
        else:
            out["cost_usd"] = format_usd(self.rest.usd + logged)
            if not self.logged_tokens:
                out["cost_mode"] = "calculated"
            else:
                whole = self.logged_tokens >= self.total_tokens
                out["cost_mode"] = "logged" if whole else "mixed"
            out["unpriced_models"] = list(self.rest.unpriced_models)
        out["logged_cost_usd"] = format_usd(logged) if self.logged_tokens else None
        out["calculated_cost_usd"] = self.tally.cost_usd
        out["logged_tokens"] = self.logged_tokens
        return out


def _values(counts: Counts) -> tuple[int, ...]:
    """The counts in :data:`COUNT_COLUMNS` order."""
    return tuple(getattr(counts, name) for name in COUNT_COLUMNS)


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
        return {**header, **body}
    rows = usage_rows(conn, ledger, request)
    units = priced_units(book, rows, mode, logged_parts(conn, ledger, request, rows))
    if request.kind == "models":
        body = model_report(units, mode=mode)
    else:
        body = period_report(units, request.kind, request.start_of_week, tz=request.tz, mode=mode)
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


def _span(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest
) -> tuple[int, int] | None:
    """The request's ``[start, end)``, an unbounded side closed at the ledger's first or last
    half-hour (the day rule needs both ends); None when no half-hour can be in it."""
    start, end = _range(request)
    if start is None or end is None:
        first, last = conn.execute(
            "SELECT MIN(bucket_start), MAX(bucket_start) FROM usage_buckets WHERE user_id = ?",
            (ledger.user_id,),
        ).fetchone()
        if first is None:
            return None
        start = int(first) if start is None else start
        end = int(last) + 1 if end is None else end
    return (start, end) if start < end else None


def usage_rows(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest
) -> list[UsageRow]:
    """The read model's rows of the request: per local day, source and model (``hourly``: per
    half-hour too), with tokens, in the request's zone, range and sources.

    The same statements as the server's read API: ``usage_daily`` in the ledger's own zone,
    else the buckets grouped by local day in the asked zone (``hourly``: by half-hour).
    """
    scope = Scope(ledger.user_id, request.sources)
    if request.kind != "hourly" and request.time_zone == ledger.time_zone:
        statement = daily_statement(scope, request.since, request.until)
    else:
        span = _span(conn, ledger, request)
        if span is None:
            return []
        statement = bucket_statement(scope, request.tz, *span, slots=request.kind == "hourly")
    return [row for row in run_sqlite(conn, statement) if row.counts.total_tokens > 0]


def logged_parts(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest, rows: list[UsageRow]
) -> list[Logged | None]:
    """For each row, the part of it whose events logged their cost (unless calculating).

    The logged events are read from ``usage_events`` through its partial index (only events
    with a logged cost) and grouped by the same local day (or half-hour), source and model as
    the rows, with the read model's day rule.
    """
    if request.cost == "calculate" or not rows:
        return [None] * len(rows)
    span = _span(conn, ledger, request)
    if span is None:
        return [None] * len(rows)
    hourly = request.kind == "hourly"
    where, params = bucket_range_sql(Scope(ledger.user_id, request.sources), *span)
    key = "bucket_start" if hourly else day_number_sql(request.tz, *span)
    found: dict[tuple[Any, str, str], Logged] = {}
    for r in conn.execute(
        f"SELECT {key}, source, model, SUM(logged_cost_picousd), {SUMS} "
        f"FROM usage_events WHERE {where} AND logged_cost_picousd IS NOT NULL "
        "GROUP BY 1, source, model",
        params,
    ):
        at = int(r[0]) if hourly else EPOCH + timedelta(days=int(r[0]))
        counts = Counts(*(int(v or 0) for v in r[4:]))
        found[(at, str(r[1]), str(r[2]))] = (counts, int(r[3] or 0))
    return [found.get((r.slot if hourly else r.day, r.source, r.model)) for r in rows]


def priced_units(
    book: PriceBook, rows: Sequence[UsageRow], mode: str, logged: Sequence[Logged | None]
) -> list[tuple[UsageRow, ReportTally]]:
    """Each row with its own tally: priced once, then merged into rows, breakdowns, totals."""
    out = []
    for row, part in zip(rows, logged, strict=True):
        tally = ReportTally(mode)
        tally.add(book, row, part)
        out.append((row, tally))
    return out


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
    counts: Counts
    #: The sum of the events' logged costs (pico-dollars) when every event of the group logged
    #: one; None when none did, or when the report calculates.
    logged_pico: int | None = None


def event_groups(
    conn: sqlite3.Connection, ledger: LocalLedger, request: ReportRequest
) -> list[EventGroup]:
    """Sums of ``usage_events`` per session, project, model and half-hour in the range."""
    span = _span(conn, ledger, request)
    if span is None:
        return []
    where, params = bucket_range_sql(Scope(ledger.user_id, request.sources), *span)
    if request.session_id is not None:
        params["session_id"] = request.session_id
        where += " AND session_id = :session_id"
    # Unless calculating, events with and without a logged cost form separate groups.
    logged, split = (
        ("NULL", "")
        if request.cost == "calculate"
        else ("SUM(logged_cost_picousd)", ", logged_cost_picousd IS NULL")
    )
    rows = conn.execute(
        "SELECT source, session_id, project, model, bucket_start, MIN(event_ms), MAX(event_ms), "
        f"{logged}, {SUMS} FROM usage_events WHERE {where} "
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
            counts=Counts(*(int(v or 0) for v in r[8:])),
            logged_pico=None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


def _period_key(
    kind: str, start_of_week: int = 0, tz: ZoneInfo | None = None
) -> Callable[[UsageRow], tuple[str, dict[str, Any]]]:
    if kind == "daily":
        return lambda u: (u.day.isoformat(), {"day": u.day.isoformat()})
    if kind == "weekly":

        def week(u: UsageRow) -> tuple[str, dict[str, Any]]:
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

        def half_hour(u: UsageRow) -> tuple[str, dict[str, Any]]:
            start = u.slot or 0
            return f"{start:012d}", {
                "half_hour": from_epoch(start).astimezone(zone).isoformat(),
                "day": u.day.isoformat(),
            }

        return half_hour
    return lambda u: (u.day.strftime("%Y-%m"), {"month": u.day.strftime("%Y-%m")})


def period_report(
    units: Iterable[tuple[UsageRow, ReportTally]],
    kind: str,
    start_of_week: int = 0,
    *,
    tz: ZoneInfo | None = None,
    mode: str = DEFAULT_COST_MODE,
) -> dict[str, Any]:
    """Usage per local day, week, month or half-hour, with a per-model breakdown."""
    key_of = _period_key(kind, start_of_week, tz)
    rows: dict[str, tuple[dict[str, Any], ReportTally, dict[tuple[str, str], ReportTally]]] = {}
    totals = ReportTally(mode)
    for unit, priced in units:
        key, label = key_of(unit)
        if key not in rows:
            rows[key] = (label, ReportTally(mode), {})
        _, tally, models = rows[key]
        tally.merge(priced)
        models.setdefault((unit.source, unit.model), ReportTally(mode)).merge(priced)
        totals.merge(priced)
    out = []
    for key in sorted(rows):
        label, tally, models = rows[key]
        out.append({**label, **tally.as_dict(), "models": _breakdown(models)})
    return {PERIODS[kind]: out, "totals": totals.as_dict()}


def _breakdown(models: dict[tuple[str, str], ReportTally]) -> list[dict[str, Any]]:
    """Per ``(source, model)`` tallies as rows, in name order."""
    return [{"source": s, "model": m, **t.as_dict()} for (s, m), t in sorted(models.items())]


def model_report(
    units: Iterable[tuple[UsageRow, ReportTally]], *, mode: str = DEFAULT_COST_MODE
) -> dict[str, Any]:
    """Usage per source and model, most tokens first."""
    rows: dict[tuple[str, str], tuple[ReportTally, set[date]]] = {}
    totals = ReportTally(mode)
    for unit, priced in units:
        tally, days = rows.setdefault((unit.source, unit.model), (ReportTally(mode), set()))
        tally.merge(priced)
        totals.merge(priced)
        days.add(unit.day)
    out = [
        {"source": source, "model": model, "days": len(days), **tally.as_dict()}
        for (source, model), (tally, days) in sorted(
            rows.items(), key=lambda item: (-item[1][0].total_tokens, item[0])
        )
    ]
    return {"models": out, "totals": totals.as_dict()}


def _iso(ms: int, tz: ZoneInfo) -> str:
    return from_epoch(ms // 1000).astimezone(tz).isoformat()


@dataclass(slots=True)
class _Group:
    tally: ReportTally = field(default_factory=ReportTally)
    first_ms: int = 0
    last_ms: int = 0
    models: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    sessions: set[tuple[str, str]] = field(default_factory=set)
    project: str | None = None
    by_model: dict[tuple[str, str], ReportTally] = field(default_factory=dict)


def _grouped(
    groups: Iterable[EventGroup],
    book: PriceBook,
    key: Callable[[EventGroup], Any],
    tz: ZoneInfo,
    mode: str,
) -> tuple[dict[Any, _Group], ReportTally]:
    days: dict[int, date] = {}  # a half-hour's local day, as the read model's rule gives it
    out: dict[Any, _Group] = {}
    totals = ReportTally(mode)
    for g in groups:
        if g.counts.total_tokens <= 0:
            continue
        group = out.get(key(g))
        if group is None:
            group = out[key(g)] = _Group(ReportTally(mode), g.first_ms, g.last_ms)
        day = days.get(g.bucket_start)
        if day is None:
            day = days[g.bucket_start] = local_day(g.bucket_start, tz)
        priced = ReportTally(mode)
        logged = None if g.logged_pico is None else (g.counts, g.logged_pico)
        priced.add(book, UsageRow(day, g.source, g.model, g.counts), logged)
        group.tally.merge(priced)
        group.by_model.setdefault((g.source, g.model), ReportTally(mode)).merge(priced)
        totals.merge(priced)
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
            grouped.items(), key=lambda item: (-item[1].tally.total_tokens, item[0])
        )
    ]
    return {"projects": rows, "totals": totals.as_dict()}
