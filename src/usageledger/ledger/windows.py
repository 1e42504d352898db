"""Read ranges: parsing, defaults and caps of every read endpoint (docs/design.md §5).

A :class:`Window` is a run of local days in one time zone. In the user's own time zone it is
served from ``usage_daily``; in any other zone from a bounded range of ``usage_buckets``
(``from_buckets``), which is why such a window is capped at :data:`FOREIGN_TZ_CAP_DAYS`.
Every cap is checked here, and an oversized request is refused with
:class:`~usageledger.errors.RangeTooLarge` naming the cap, before any SQL runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from usageledger.config import check_time_zone
from usageledger.errors import RangeTooLarge, ValidationFailed

#: Longest range, in local days, of the day-based endpoints.
DAY_CAPS: dict[str, int] = {"summary": 800, "daily": 800, "models": 800}
MONTH_CAP = 36
WEEK_CAP = 104
#: A time zone other than the user's is served from ``usage_buckets``: at most this many days.
FOREIGN_TZ_CAP_DAYS = 93
DEFAULT_DAYS = 30
DEFAULT_WEEKS = 52
DEFAULT_FOREIGN_WEEKS = 13
#: Dates outside these are refused: they cannot be turned into epoch seconds in every zone.
MIN_DAY = date(1970, 1, 2)
MAX_DAY = date(9998, 12, 31)

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Window:
    """Local days ``first`` … ``last`` (inclusive) in time zone ``tz_name``."""

    first: date
    last: date
    tz: ZoneInfo
    tz_name: str
    #: True when the zone is not the user's: rows come from ``usage_buckets``, not ``usage_daily``.
    from_buckets: bool

    @property
    def days(self) -> int:
        """How many local days the window covers."""
        return (self.last - self.first).days + 1

    def each_day(self) -> list[date]:
        """Every local day of the window, in order."""
        return [self.first + timedelta(days=i) for i in range(self.days)]


def _invalid(param: str, message: str) -> ValidationFailed:
    return ValidationFailed.at(f"query.{param}", message, summary=f"{param}: {message}")


def _too_large(param: str, message: str, cap: int, unit: str) -> RangeTooLarge:
    return RangeTooLarge(
        message,
        details=[{"loc": f"query.{param}", "message": message, "cap": cap, "unit": unit}],
    )


def parse_day(param: str, text: str) -> date:
    """A ``YYYY-MM-DD`` query value, or a 422 naming the parameter."""
    if not _DAY.fullmatch(text):
        raise _invalid(param, f"expected a date written YYYY-MM-DD, got {text!r}")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _invalid(param, f"not a calendar date: {text!r}") from None
    if not MIN_DAY <= day <= MAX_DAY:
        raise _invalid(param, f"must be between {MIN_DAY} and {MAX_DAY}, got {text}")
    return day


def parse_month(param: str, text: str) -> date:
    """A ``YYYY-MM`` query value as the first day of that month, or a 422."""
    if not _MONTH.fullmatch(text) or not 1 <= int(text[5:]) <= 12:
        raise _invalid(param, f"expected a month written YYYY-MM, got {text!r}")
    if text < f"{MIN_DAY:%Y-%m}":  # also year 0000, which no date can hold
        raise _invalid(param, f"must be between {MIN_DAY:%Y-%m} and {MAX_DAY:%Y-%m}, got {text}")
    first = date(int(text[:4]), int(text[5:]), 1)
    if not MIN_DAY.replace(day=1) <= first <= MAX_DAY.replace(day=1):
        raise _invalid(param, f"must be between {MIN_DAY:%Y-%m} and {MAX_DAY:%Y-%m}, got {text}")
    return first


def resolve_zone(requested: str | None, user_zone: str) -> tuple[ZoneInfo, str, bool]:
    """``(zone, name, foreign)`` for the ``tz`` parameter; absent means the user's zone."""
    name = user_zone if requested is None else requested
    try:
        zone = check_time_zone(name)
    except ValueError as exc:
        raise _invalid("tz", str(exc)) from None
    return zone, name, name != user_zone


def today_in(zone: ZoneInfo, now: datetime) -> date:
    """The local date of ``now`` in ``zone``."""
    return now.astimezone(zone).date()


def _window(first: date, last: date, zone: ZoneInfo, name: str, foreign: bool) -> Window:
    if first > last:
        raise _invalid("from", f"from ({first}) is after to ({last})")
    window = Window(first, last, zone, name, foreign)
    if foreign and window.days > FOREIGN_TZ_CAP_DAYS:
        raise _too_large(
            "tz",
            f"the range is {window.days} days; a time zone other than your own ({name}) is "
            f"served from half-hour buckets and capped at {FOREIGN_TZ_CAP_DAYS} days",
            FOREIGN_TZ_CAP_DAYS,
            "days",
        )
    return window


def day_window(
    endpoint: str,
    *,
    user_zone: str,
    tz: str | None,
    first: str | None,
    last: str | None,
    now: datetime,
) -> Window:
    """The window of a day-based endpoint: defaults to the last 30 local days, capped."""
    zone, name, foreign = resolve_zone(tz, user_zone)
    end = parse_day("to", last) if last is not None else today_in(zone, now)
    if first is not None:
        start = parse_day("from", first)
    else:
        start = max(end - timedelta(days=DEFAULT_DAYS - 1), MIN_DAY)
    cap = DAY_CAPS[endpoint]
    if start <= end and (end - start).days + 1 > cap:
        days = (end - start).days + 1
        raise _too_large(
            "from",
            f"the range is {days} days; /v1/usage/{endpoint} allows at most {cap} days",
            cap,
            "days",
        )
    return _window(start, end, zone, name, foreign)


def month_window(
    *, user_zone: str, tz: str | None, first: str | None, last: str | None, now: datetime
) -> Window:
    """Whole months ``from`` … ``to`` (``YYYY-MM``); defaults to the months of the last 30 days."""
    zone, name, foreign = resolve_zone(tz, user_zone)
    today = today_in(zone, now)
    end_month = parse_month("to", last) if last is not None else today.replace(day=1)
    if first is not None:
        start = parse_month("from", first)
    else:
        start = max(today - timedelta(days=DEFAULT_DAYS - 1), MIN_DAY).replace(day=1)
    months = (end_month.year - start.year) * 12 + end_month.month - start.month + 1
    if months > MONTH_CAP:
        raise _too_large(
            "from",
            f"the range is {months} months; /v1/usage/monthly allows at most {MONTH_CAP} months",
            MONTH_CAP,
            "months",
        )
    if start > end_month:
        raise _invalid("from", f"from ({start:%Y-%m}) is after to ({end_month:%Y-%m})")
    return _window(start, month_end(end_month), zone, name, foreign)


def month_end(first: date) -> date:
    """The last day of the month starting at ``first``."""
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - timedelta(days=1)


def heatmap_window(
    *, user_zone: str, tz: str | None, last: str | None, weeks: int | None, now: datetime
) -> Window:
    """``weeks`` weeks (Monday-based) ending on ``to`` (default 52, 13 in another zone)."""
    zone, name, foreign = resolve_zone(tz, user_zone)
    end = parse_day("to", last) if last is not None else today_in(zone, now)
    if weeks is None:
        weeks = DEFAULT_FOREIGN_WEEKS if foreign else DEFAULT_WEEKS
    if weeks < 1:
        raise _invalid("weeks", f"must be at least 1, got {weeks}")
    if weeks > WEEK_CAP:
        raise _too_large(
            "weeks",
            f"weeks is {weeks}; /v1/usage/heatmap allows at most {WEEK_CAP} weeks",
            WEEK_CAP,
            "weeks",
        )
    start = end - timedelta(days=end.weekday()) - timedelta(weeks=weeks - 1)
    if start < MIN_DAY:
        raise _invalid("to", f"the heatmap would start before {MIN_DAY}")
    return _window(start, end, zone, name, foreign)


def hour_window(*, user_zone: str, tz: str | None, day: str | None, now: datetime) -> Window:
    """One local day (default: today in the zone); always served from ``usage_buckets``."""
    zone, name, _ = resolve_zone(tz, user_zone)
    the_day = parse_day("day", day) if day is not None else today_in(zone, now)
    return Window(the_day, the_day, zone, name, True)
