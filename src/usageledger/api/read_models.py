"""Response (and request) models of the read API: every field documented for OpenAPI.

The query parameters of the read routes are in ``read_params.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from usageledger.api.read_params import ZONE
from usageledger.buckets import from_epoch, iso_utc
from usageledger.config import TIME_ZONE_COLUMN_LENGTH
from usageledger.ledger import leaderboard, profile, queries
from usageledger.ledger.accounts import Principal
from usageledger.ledger.costing import Tally
from usageledger.ledger.windows import Window

COST_DOC = (
    "List-price cost in USD as a decimal string with 6 places (rounded half to even, once, "
    "from the exact sum); models without a price count as 0 and are named in unpriced_models."
)
UNPRICED_DOC = (
    "Sorted names (as logged) of models that had tokens but no price on their day; their "
    "tokens are counted, their cost is 0. Empty when everything was priced."
)


class Strict(BaseModel):
    """Base of every response and body model here: fields by name or alias, nothing undeclared."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


class TokenCounts(Strict):
    """The six token counts (docs/design.md §3); integers."""

    input_tokens: int = Field(
        description="Prompt tokens not read from a cache (cache writes included)."
    )
    cached_input_tokens: int = Field(description="Prompt tokens read from a cache.")
    output_tokens: int = Field(description="Completion tokens, reasoning included.")
    reasoning_output_tokens: int = Field(description="The reasoning part of output_tokens.")
    total_tokens: int = Field(description="input_tokens + cached_input_tokens + output_tokens.")
    cache_write_tokens: int = Field(description="The part of input_tokens written to a cache.")


class Priced(TokenCounts):
    """Token counts with their cost."""

    cost_usd: str = Field(description=COST_DOC, examples=["1.234567"])


class DayRange(Strict):
    """The local days a response covers."""

    from_: date = Field(alias="from", description="First local day covered (YYYY-MM-DD).")
    to: date = Field(description="Last local day covered (YYYY-MM-DD), inclusive.")
    tz: str = Field(description="IANA time zone the days are local to.")


class SummaryLine(Priced):
    """One source and model over the range."""

    source: str = Field(description="The assistant the usage came from, e.g. codex.")
    model: str = Field(description="The model name as the assistant logged it.")


class SummaryResponse(DayRange):
    """Totals of a range and one line per (source, model), busiest first."""

    totals: Priced = Field(description="Sums over the whole range (after filters).")
    by_model: list[SummaryLine] = Field(description="One line per source and model.")
    unpriced_models: list[str] = Field(description=UNPRICED_DOC)


class DayLine(Priced):
    """One local day."""

    day: date = Field(description="The local day (YYYY-MM-DD).")


class DailyResponse(DayRange):
    """One line per local day of the range, days without usage included (all zeros)."""

    days: list[DayLine] = Field(description="Every local day from `from` to `to`, in order.")
    totals: Priced = Field(description="Sums over the whole range (after filters).")
    unpriced_models: list[str] = Field(description=UNPRICED_DOC)


class SlotLine(Priced):
    """One half-hour of the local day."""

    start: str = Field(description="UTC start of the half-hour, ISO 8601 (…Z).")
    local_start: str = Field(description="The same instant in local time with its UTC offset.")
    label: str = Field(description="Local wall-clock time HH:MM (repeats on a day clocks go back).")


class HourlyResponse(Strict):
    """Every half-hour whose start lies in one local day: 48, or 46/50 on a DST change."""

    day: date = Field(description="The local day (YYYY-MM-DD).")
    tz: str = Field(description="IANA time zone of the day.")
    slots: list[SlotLine] = Field(description="Every half-hour of the day, in time order.")
    totals: Priced = Field(description="Sums over the day (after filters).")
    unpriced_models: list[str] = Field(description=UNPRICED_DOC)


class MonthLine(Priced):
    """One calendar month of local days."""

    month: str = Field(description="The month, YYYY-MM.")


class MonthlyResponse(Strict):
    """One line per calendar month of the range, months without usage included."""

    from_: str = Field(alias="from", description="First month covered (YYYY-MM).")
    to: str = Field(description="Last month covered (YYYY-MM), inclusive.")
    tz: str = Field(description="IANA time zone the months' days are local to.")
    months: list[MonthLine] = Field(description="Every month from `from` to `to`, in order.")
    totals: Priced = Field(description="Sums over the whole range (after filters).")
    unpriced_models: list[str] = Field(description=UNPRICED_DOC)


class HeatCell(Strict):
    """One local day of the heatmap."""

    day: date = Field(description="The local day (YYYY-MM-DD).")
    weekday: int = Field(description="0 = Monday … 6 = Sunday.")
    total_tokens: int = Field(description="Total tokens of the day.")
    level: int = Field(description="0 without tokens, else ceil(4 × total_tokens / max_tokens).")


class HeatmapResponse(DayRange):
    """Day cells of whole weeks (Monday first) ending on `to`, with streaks."""

    weeks: int = Field(description="Weeks covered; the first cell is a Monday.")
    cells: list[HeatCell] = Field(description="Every local day from `from` to `to`, in order.")
    max_tokens: int = Field(description="The busiest day's total tokens (level 4).")
    active_days: int = Field(description="Days with tokens.")
    current_streak: int = Field(
        description="Active days in a row ending on `to` (or the day before, when `to` is "
        "today and has no usage yet); counted inside the window."
    )
    longest_streak: int = Field(description="Longest run of active days inside the window.")
    totals: TokenCounts = Field(description="Sums over the window (after filters).")


class ModelLine(Priced):
    """One source and model with its share of the range's tokens."""

    source: str = Field(description="The assistant the usage came from.")
    model: str = Field(description="The model name as the assistant logged it.")
    share: str = Field(description="total_tokens / the range's total_tokens, 4 decimal places.")


class SourceLine(Priced):
    """One source with its share of the range's tokens."""

    source: str = Field(description="The assistant the usage came from.")
    share: str = Field(description="total_tokens / the range's total_tokens, 4 decimal places.")


class ModelsResponse(DayRange):
    """Usage by source and model, and by source, busiest first."""

    models: list[ModelLine] = Field(description="One line per source and model.")
    sources: list[SourceLine] = Field(description="One line per source.")
    totals: Priced = Field(description="Sums over the whole range (after filters).")
    unpriced_models: list[str] = Field(description=UNPRICED_DOC)


class DeviceLine(Strict):
    """One of the caller's devices."""

    name: str = Field(description="The device name (the `device` filter of the usage endpoints).")
    created_at: str = Field(description="When the device was registered, UTC ISO 8601.")
    last_upload_at: str | None = Field(
        description="Last accepted upload, UTC ISO 8601; null if none."
    )
    first_bucket: str | None = Field(
        description="UTC start of its earliest half-hour; null if none."
    )
    last_bucket: str | None = Field(description="UTC start of its latest half-hour; null if none.")
    first_day: date | None = Field(description="Local day (your time zone) of first_bucket.")
    last_day: date | None = Field(description="Local day (your time zone) of last_bucket.")


class DevicesResponse(Strict):
    """The caller's devices, by name."""

    time_zone: str = Field(description="Your time zone (first_day and last_day are local to it).")
    devices: list[DeviceLine] = Field(description="Every device of yours, by name.")


class TokenInfo(Strict):
    """The token that made this request."""

    kind: str = Field(description="`read` or `device`.")


class MeResponse(Strict):
    """The caller's own profile."""

    name: str = Field(description="Your user name (never shown to other users).")
    time_zone: str = Field(description="IANA time zone of your local days.")
    display_name: str | None = Field(description="Your name on the leaderboard; null if unset.")
    leaderboard_opt_in: bool = Field(description="Whether you appear on the leaderboard.")
    created_at: str = Field(description="When your user was created, UTC ISO 8601.")
    token: TokenInfo = Field(description="The token used for this request.")


class MePatch(Strict):
    """Fields to change; absent fields stay as they are."""

    # At least one field; time_zone and leaderboard_opt_in may be absent but not null (the
    # route refuses null with its own message, so the model takes it and the schema says so).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    time_zone: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "maxLength": TIME_ZONE_COLUMN_LENGTH, **ZONE}),
    ] = Field(
        default=None,
        description="IANA time zone. Changing it rebuilds your daily rollups (same transaction).",
        max_length=TIME_ZONE_COLUMN_LENGTH,
    )
    display_name: str | None = Field(
        default=None,
        description="1-64 printable characters; null clears it (shown as `anonymous #rank`).",
        max_length=profile.DISPLAY_NAME_MAX,
    )
    leaderboard_opt_in: Annotated[bool | None, WithJsonSchema({"type": "boolean"})] = Field(
        default=None, description="true to appear on the leaderboard, false to leave it."
    )


class MePatchResponse(MeResponse):
    """The profile after the change."""

    rebuilt_daily_rows: int = Field(
        description="usage_daily rows rebuilt by a time-zone change (0 when the zone is unchanged)."
    )


class LeaderboardEntry(Priced):
    """One place on the board (never a user name or id)."""

    rank: int = Field(description="1 = most total tokens.")
    display_name: str = Field(description="The user's display name, or `anonymous #<rank>`.")
    unpriced_tokens: int = Field(
        description="Tokens of this entry's models without a price: they count as 0 in its "
        "cost_usd, so a cost is complete only when this is 0."
    )


class LeaderboardResponse(Strict):
    """A page of the latest snapshot of a board."""

    period: str = Field(description="`week`, `month` or `all`.")
    period_start: date | None = Field(description="First UTC day of the period; null for all.")
    period_end: date | None = Field(description="Last UTC day of the period (for all: build day).")
    built_at: str | None = Field(description="When the snapshot was built; null if never built.")
    total_entries: int = Field(description="Entries on the whole board.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Entries skipped.")
    your_rank: int | None = Field(description="Your own rank, or null if you are not on it.")
    entries: list[LeaderboardEntry] = Field(description="The page, by rank.")
    unpriced_models: list[str] = Field(
        description="Your own models on this board that had tokens but no price (they count "
        "as 0 in your cost_usd). Other people's model names are never served."
    )


# --- rendering domain results ----------------------------------------------------------------


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _six(counts: Any) -> dict[str, int]:
    """The counts a response shows (:class:`TokenCounts`); the schema v3 billing subsets are
    priced into ``cost_usd``, not listed."""
    return {name: getattr(counts, name) for name in TokenCounts.model_fields}


def _priced(group: Tally) -> dict[str, Any]:
    return {**_six(group.counts), "cost_usd": group.cost_usd}


def _range(window: Window) -> dict[str, Any]:
    return {"from": window.first, "to": window.last, "tz": window.tz_name}


def share(part: int, whole: int) -> str:
    """``part / whole`` with 4 decimal places, half to even ("0.0000" when ``whole`` is 0)."""
    if whole <= 0:
        return "0.0000"
    return str((Decimal(part) / Decimal(whole)).quantize(_SHARE, rounding=ROUND_HALF_EVEN))


_SHARE = Decimal("0.0001")


def render_summary(result: queries.Summary) -> SummaryResponse:
    """The summary response."""
    return SummaryResponse.model_validate(
        {
            **_range(result.window),
            "totals": _priced(result.totals),
            "by_model": [{"source": s, "model": mo, **_priced(t)} for s, mo, t in result.by_model],
            "unpriced_models": result.totals.unpriced_models,
        }
    )


def render_daily(result: queries.Daily) -> DailyResponse:
    """The daily response."""
    return DailyResponse.model_validate(
        {
            **_range(result.window),
            "days": [{"day": d, **_priced(t)} for d, t in result.days],
            "totals": _priced(result.totals),
            "unpriced_models": result.totals.unpriced_models,
        }
    )


def render_hourly(result: queries.Hourly) -> HourlyResponse:
    """The hourly response: each slot's UTC start, local start and label."""
    zone = result.window.tz
    slots = []
    for start, group in result.slots:
        local = from_epoch(start).astimezone(zone)
        slots.append(
            {
                "start": iso_utc(start),
                "local_start": local.isoformat(),
                "label": local.strftime("%H:%M"),
                **_priced(group),
            }
        )
    return HourlyResponse.model_validate(
        {
            "day": result.window.first,
            "tz": result.window.tz_name,
            "slots": slots,
            "totals": _priced(result.totals),
            "unpriced_models": result.totals.unpriced_models,
        }
    )


def render_monthly(result: queries.Monthly) -> MonthlyResponse:
    """The monthly response."""
    window = result.window
    return MonthlyResponse.model_validate(
        {
            "from": f"{window.first:%Y-%m}",
            "to": f"{window.last:%Y-%m}",
            "tz": window.tz_name,
            "months": [{"month": f"{mo:%Y-%m}", **_priced(t)} for mo, t in result.months],
            "totals": _priced(result.totals),
            "unpriced_models": result.totals.unpriced_models,
        }
    )


def render_heatmap(result: queries.Heatmap) -> HeatmapResponse:
    """The heatmap response."""
    return HeatmapResponse.model_validate(
        {
            **_range(result.window),
            "weeks": result.weeks,
            "cells": [
                {"day": d, "weekday": d.weekday(), "total_tokens": t, "level": lv}
                for d, t, lv in result.cells
            ],
            "max_tokens": result.max_tokens,
            "active_days": result.active_days,
            "current_streak": result.current_streak,
            "longest_streak": result.longest_streak,
            "totals": _six(result.totals),
        }
    )


def render_models(result: queries.Models) -> ModelsResponse:
    """The models response."""
    return ModelsResponse.model_validate(
        {
            **_range(result.window),
            "models": [
                {"source": s, "model": mo, "share": share(*x.share), **_priced(x.tally)}
                for s, mo, x in result.models
            ],
            "sources": [
                {"source": s, "share": share(*x.share), **_priced(x.tally)}
                for s, x in result.sources
            ],
            "totals": _priced(result.totals),
            "unpriced_models": result.totals.unpriced_models,
        }
    )


def render_devices(time_zone: str, spans: list[profile.DeviceSpan]) -> DevicesResponse:
    """The devices response."""
    return DevicesResponse.model_validate(
        {
            "time_zone": time_zone,
            "devices": [
                {
                    "name": s.name,
                    "created_at": _iso_ms(s.created_at_ms),
                    "last_upload_at": _iso_ms(s.last_upload_at_ms),
                    "first_bucket": None if s.first_bucket is None else iso_utc(s.first_bucket),
                    "last_bucket": None if s.last_bucket is None else iso_utc(s.last_bucket),
                    "first_day": s.first_day,
                    "last_day": s.last_day,
                }
                for s in spans
            ],
        }
    )


def _me(found: profile.Profile, who: Principal) -> dict[str, Any]:
    return {
        "name": found.name,
        "time_zone": found.time_zone,
        "display_name": found.display_name,
        "leaderboard_opt_in": found.leaderboard_opt_in,
        "created_at": _iso_ms(found.created_at_ms),
        "token": {"kind": who.kind},
    }


def render_me(found: profile.Profile, who: Principal) -> MeResponse:
    """The profile response."""
    return MeResponse.model_validate(_me(found, who))


def render_me_patch(found: profile.Profile, who: Principal, rebuilt: int) -> MePatchResponse:
    """The profile after a change, with the rows a time-zone change rebuilt."""
    return MePatchResponse.model_validate({**_me(found, who), "rebuilt_daily_rows": rebuilt})


def render_leaderboard(board: leaderboard.Board, *, limit: int, offset: int) -> LeaderboardResponse:
    """A page of a board."""
    return LeaderboardResponse.model_validate(
        {
            "period": board.period,
            "period_start": board.period_start,
            "period_end": board.period_end,
            "built_at": _iso_ms(board.built_at_ms),
            "total_entries": board.total_entries,
            "limit": limit,
            "offset": offset,
            "your_rank": board.your_rank,
            "entries": [
                {
                    "rank": e.rank,
                    "display_name": e.display_name,
                    **_six(e.counts),
                    "cost_usd": e.cost_usd,
                    "unpriced_tokens": e.unpriced_tokens,
                }
                for e in board.entries
            ],
            "unpriced_models": list(board.unpriced_models),
        }
    )
