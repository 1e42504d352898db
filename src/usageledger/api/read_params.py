"""The read routes' query parameters: one model per route, taken as ``Annotated[Model, Query()]``.

Each model accepts its fields' published names (``from``, never ``from_``) and nothing else
(``extra="forbid"``); :meth:`QueryParams.names` is the allowlist ``api/read.py`` checks before
the values are validated, so that an unknown name is refused with its own message whatever
else is wrong. A range model also turns its fields into the capped :class:`Window` of its route.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from usageledger.config import MODEL_COLUMN_LENGTH, TIME_ZONE_COLUMN_LENGTH
from usageledger.ledger import leaderboard, queries, windows
from usageledger.ledger.windows import Window

#: What the schema declares of a day, a month and a time zone. Only declared: the server
#: checks them itself (``ledger/windows.py``), so that its messages stay its own. A range's
#: length, ``from`` after ``to``, a day outside 1970-01-02…9998-12-31, a zone tzdata does not
#: know or a device that is not yours cannot be said in a schema: they are 422s the fuzzing
#: test (tests/api/test_schemathesis.py) accepts from schema-valid requests.
DAY: dict[str, JsonValue] = {
    "format": "date",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "maxLength": 10,
}
MONTH: dict[str, JsonValue] = {"pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])$", "maxLength": 7}
ZONE: dict[str, JsonValue] = {"pattern": r"^[A-Za-z][A-Za-z0-9_+/-]*$"}


class QueryParams(BaseModel):
    """Base of the read routes' query-parameter models: declared names only."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def names(cls) -> frozenset[str]:
        """The parameter names a request may use."""
        return frozenset(field.alias or name for name, field in cls.model_fields.items())


class NoParams(QueryParams):
    """A route without query parameters."""


class Filtered(QueryParams):
    """The time zone and the filters every usage route takes, after its range's own fields.

    A route's model lists this base first (``class DaysQuery(Filtered, DayBounds)``): pydantic
    lays fields out from the last base to the first, so the range comes first in the schema and
    in the errors, as each route declares it.
    """

    tz: str | None = Field(
        default=None,
        description="IANA time zone of the local days (default: yours). Another zone is served "
        f"from half-hour buckets and capped at {windows.FOREIGN_TZ_CAP_DAYS} days.",
        max_length=TIME_ZONE_COLUMN_LENGTH,
        json_schema_extra=ZONE,
    )
    source: str | None = Field(
        default=None, description="Only this source (e.g. codex).", max_length=32
    )
    model: str | None = Field(
        default=None,
        description="Only this model, exactly as logged.",
        max_length=MODEL_COLUMN_LENGTH,
    )
    device: str | None = Field(
        default=None,
        description="Only this device of yours, by name (see /v1/devices).",
        max_length=64,
    )

    def filters(self) -> queries.Filters:
        """The source, model and device filters."""
        return queries.Filters(self.source, self.model, self.device)


class DayBounds(QueryParams):
    """A range of local days, ``from`` … ``to``."""

    from_: str | None = Field(
        default=None,
        alias="from",
        description="First local day, YYYY-MM-DD (default: 29 days before `to`).",
        json_schema_extra=DAY,
    )
    to: str | None = Field(
        default=None,
        description="Last local day, YYYY-MM-DD, inclusive (default: today in `tz`).",
        json_schema_extra=DAY,
    )


class DaysQuery(Filtered, DayBounds):
    """``/v1/usage/summary``, ``daily`` and ``models``: a range of local days and filters."""

    def window(self, user_zone: str, now: datetime, *, endpoint: str) -> Window:
        """The range of local days, capped for ``endpoint`` (``summary``, …)."""
        return windows.day_window(
            endpoint, user_zone=user_zone, tz=self.tz, first=self.from_, last=self.to, now=now
        )


class OneDay(QueryParams):
    """One local day."""

    day: str | None = Field(
        default=None,
        description="The local day, YYYY-MM-DD (default: today in `tz`).",
        json_schema_extra=DAY,
    )


class HourQuery(Filtered, OneDay):
    """``/v1/usage/hourly``: one local day and filters."""

    def window(self, user_zone: str, now: datetime) -> Window:
        """The one local day."""
        return windows.hour_window(user_zone=user_zone, tz=self.tz, day=self.day, now=now)


class MonthBounds(QueryParams):
    """A range of whole months, ``from`` … ``to``."""

    from_: str | None = Field(
        default=None,
        alias="from",
        description="First month, YYYY-MM (default: the month of 29 days ago).",
        json_schema_extra=MONTH,
    )
    to: str | None = Field(
        default=None,
        description="Last month, YYYY-MM, inclusive (default: this month).",
        json_schema_extra=MONTH,
    )


class MonthsQuery(Filtered, MonthBounds):
    """``/v1/usage/monthly``: a range of months and filters."""

    def window(self, user_zone: str, now: datetime) -> Window:
        """The whole months' local days, capped."""
        return windows.month_window(
            user_zone=user_zone, tz=self.tz, first=self.from_, last=self.to, now=now
        )


class HeatmapBounds(QueryParams):
    """Whole weeks ending on ``to``."""

    to: str | None = Field(
        default=None,
        description="Last local day, YYYY-MM-DD, inclusive (default: today in `tz`).",
        json_schema_extra=DAY,
    )
    weeks: int | None = Field(
        default=None,
        description=f"Weeks to show, 1–{windows.WEEK_CAP} (default: {windows.DEFAULT_WEEKS}; "
        f"{windows.DEFAULT_FOREIGN_WEEKS} in another time zone).",
        # Declared, not enforced here: past the cap is RANGE_TOO_LARGE, not a bad value.
        json_schema_extra={"minimum": 1, "maximum": windows.WEEK_CAP},
    )


class HeatmapQuery(Filtered, HeatmapBounds):
    """``/v1/usage/heatmap``: weeks ending on a day, and filters."""

    def window(self, user_zone: str, now: datetime) -> Window:
        """Whole weeks (Monday first) ending on ``to``, capped."""
        return windows.heatmap_window(
            user_zone=user_zone, tz=self.tz, last=self.to, weeks=self.weeks, now=now
        )


class LeaderboardQuery(QueryParams):
    """``/v1/leaderboard``: a board and a page of it."""

    period: str = Field(
        default="week",
        description="`week` (UTC ISO week), `month` (UTC calendar month) or `all`.",
        # Declared, not enforced here: the route names the periods in its own message.
        json_schema_extra={"enum": list(leaderboard.PERIODS)},
    )
    limit: int = Field(default=50, ge=1, le=100, description="Entries per page, 1–100.")
    offset: int = Field(default=0, ge=0, le=1_000_000, description="Entries to skip (for paging).")
