"""The read model: the SQL behind every per-day, per-half-hour and per-model usage view.

The server's read API (:mod:`usageledger.ledger.queries`, over SQLAlchemy) and the tracker's
``report`` (:mod:`usageledger.tracker.report`, over the standard ``sqlite3``) run the very same
statements, built here as SQL text with named parameters (``:user_id``), which both
``sqlite3`` and SQLAlchemy's ``text()`` accept. Their rows become the same
:class:`~usageledger.ledger.costing.UsageRow`, priced by the one
:func:`~usageledger.ledger.costing.tally`. Nothing here imports SQLAlchemy, so the tracker's
start-up does not pay for it.

Rows come from two places only:

* in the time zone the rollups used, ``usage_daily`` (its primary key leads with
  ``(user_id, day)``) — :func:`daily_statement`;
* in another zone, and per half-hour, a bounded range of ``usage_buckets`` through its
  ``(user_id, bucket_start)`` index — :func:`bucket_statement`.

The local day of a bucket is one rule everywhere: the local date of its start, in SQL
:func:`day_number_sql` (the offsets of :func:`usageledger.buckets.utc_offsets` inlined as
integer literals), which ``usage_daily``'s rebuild on both sides uses too; in Python
:func:`usageledger.buckets.local_day`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from itertools import pairwise
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from usageledger.buckets import COUNT_COLUMNS, Counts, utc_offsets
from usageledger.ledger.costing import UsageRow

EPOCH = date(1970, 1, 1)
#: ``SUM(input_tokens), …`` in :data:`COUNT_COLUMNS` order: the counts of every statement.
SUMS = ", ".join(f"SUM({name})" for name in COUNT_COLUMNS)


# Named tuples, not dataclasses: this module is on the tracker's start-up, and a named tuple
# class is several times cheaper to create.
class Scope(NamedTuple):
    """Whose rows, narrowed to some sources, one model, one device (``None``: every one)."""

    user_id: int
    sources: tuple[str, ...] = ()
    model: str | None = None
    device_id: int | None = None


class Statement(NamedTuple):
    """One read: SQL text with named parameters, and how its rows are read.

    ``shape`` is ``day`` (a ``day`` column), ``day_number`` (days since 1970-01-01) or
    ``slot`` (a half-hour's start, then its day number); the counts follow source and model.
    """

    sql: str
    params: dict[str, Any]
    shape: str = "day"

    def bind(self, dialect: str) -> dict[str, Any]:
        """The parameters for ``dialect``: SQLite stores days as ``YYYY-MM-DD`` text."""
        if dialect != "sqlite":
            return dict(self.params)
        return {k: v.isoformat() if isinstance(v, date) else v for k, v in self.params.items()}

    def rows(self, result: Iterable[Sequence[Any]]) -> list[UsageRow]:
        """The result's rows as :class:`UsageRow` (sums of PostgreSQL are ``Decimal``s)."""
        out: list[UsageRow] = []
        if self.shape == "slot":
            for r in result:
                day = EPOCH + timedelta(days=int(r[1]))
                out.append(UsageRow(day, str(r[2]), str(r[3]), _counts(r[4:]), slot=int(r[0])))
            return out
        for r in result:
            first = r[0]
            if self.shape == "day_number":
                day = EPOCH + timedelta(days=int(first))
            else:
                day = first if isinstance(first, date) else date.fromisoformat(str(first))
            out.append(UsageRow(day, str(r[1]), str(r[2]), _counts(r[3:])))
        return out


def _counts(values: Sequence[Any]) -> Counts:
    return Counts(*(int(v or 0) for v in values))


def day_number_sql(tz: ZoneInfo, start: int, end: int) -> str:
    """SQL: the local day number (days since 1970-01-01) of ``bucket_start`` in ``tz`` over
    ``[start, end)``.

    The offsets come from :func:`usageledger.buckets.utc_offsets` and are inlined as integer
    literals, so the expression needs no parameters (PostgreSQL can group by it) and means the
    same on SQLite and PostgreSQL (integer division of non-negative integers).
    """
    segments = utc_offsets(start, end, tz)

    def number(offset: int) -> str:
        return f"((bucket_start + {int(offset)}) / 86400)"

    if len(segments) == 1:
        return number(segments[0][1])
    whens = " ".join(
        f"WHEN bucket_start < {int(nxt_start)} THEN {number(offset)}"
        for (_, offset), (nxt_start, _) in pairwise(segments)
    )
    return f"CASE {whens} ELSE {number(segments[-1][1])} END"


def scope_sql(scope: Scope, params: dict[str, Any], *, buckets: bool) -> str:
    """`` AND …`` conditions of ``scope`` beyond the user (their parameters go to ``params``).

    On ``usage_buckets`` the device is compared as ``device_id + 0``: an indexable device
    condition lures PostgreSQL onto the primary key (user, device, source, model, start),
    whose scan spans the device's whole history whatever the time range, where the bounded
    ``(user_id, bucket_start)`` range is what a read must use.
    """
    out = ""
    if scope.sources:
        names = []
        for i, source in enumerate(scope.sources):
            params[f"source_{i}"] = source
            names.append(f":source_{i}")
        out += f" AND source IN ({', '.join(names)})"
    if scope.model is not None:
        params["model"] = scope.model
        out += " AND model = :model"
    if scope.device_id is not None:
        params["device_id"] = scope.device_id
        out += f" AND {'device_id + 0' if buckets else 'device_id'} = :device_id"
    return out


def daily_statement(scope: Scope, first: date | None, last: date | None) -> Statement:
    """Rows per day, source and model of ``usage_daily`` (devices summed), days ``first`` …
    ``last`` (``None``: unbounded on that side); days in the zone the rollups used."""
    params: dict[str, Any] = {"user_id": scope.user_id}
    where = "user_id = :user_id"
    if first is not None:
        params["first"] = first
        where += " AND day >= :first"
    if last is not None:
        params["last"] = last
        where += " AND day <= :last"
    where += scope_sql(scope, params, buckets=False)
    sql = (
        f"SELECT day, source, model, {SUMS} FROM usage_daily WHERE {where} "
        "GROUP BY day, source, model"
    )
    return Statement(sql, params, "day")


def bucket_range_sql(scope: Scope, start: int, end: int) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` of the scope's rows with ``start <= bucket_start < end`` (epoch seconds),
    and its parameters: a bounded range of the ``(user_id, bucket_start)`` index of
    ``usage_buckets`` (and of ``usage_events``)."""
    params: dict[str, Any] = {"user_id": scope.user_id, "start": start, "end": end}
    where = "user_id = :user_id AND bucket_start >= :start AND bucket_start < :end"
    return where + scope_sql(scope, params, buckets=True), params


def bucket_statement(
    scope: Scope, tz: ZoneInfo, start: int, end: int, *, slots: bool = False
) -> Statement:
    """Rows per local day (in ``tz``), source and model of the buckets starting in
    ``[start, end)`` (epoch seconds), grouped in SQL by :func:`day_number_sql`; with
    ``slots``, rows per half-hour, source and model, each with its local day."""
    where, params = bucket_range_sql(scope, start, end)
    day = day_number_sql(tz, start, end)
    if slots:
        columns, groups, shape = f"bucket_start, {day}", "bucket_start", "slot"
    else:
        columns, groups, shape = day, "1", "day_number"
    sql = (
        f"SELECT {columns}, source, model, {SUMS} FROM usage_buckets WHERE {where} "
        f"GROUP BY {groups}, source, model"
    )
    return Statement(sql, params, shape)


def run_sqlite(conn: sqlite3.Connection, statement: Statement) -> list[UsageRow]:
    """Run ``statement`` on a standard ``sqlite3`` connection (the tracker's ledger)."""
    return statement.rows(conn.execute(statement.sql, statement.bind("sqlite")))
