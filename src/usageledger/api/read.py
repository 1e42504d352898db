"""The read API: usage views, devices, the caller's profile and the leaderboard.

Routes are thin: authenticate (a read or device token; the user comes only from the token),
refuse undeclared query parameters, take the declared ones as one model
(``read_params.py``), resolve and cap the range, then call one function of
``usageledger.ledger`` inside one read transaction and render its result.

The order of the checks is part of the API (docs/api.md): :func:`caller` authenticates and
judges the parameters' names before FastAPI validates their values into the route's model, and
the range is checked before the database is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection

from usageledger.api import read_models as m
from usageledger.api import read_params as p
from usageledger.api.auth import app_context, principal, refuse_user_id
from usageledger.api.context import name_function
from usageledger.api.errors import documented
from usageledger.errors import ValidationFailed
from usageledger.ledger import leaderboard, profile, queries, windows
from usageledger.ledger.accounts import Principal
from usageledger.ledger.prices_store import PriceBooks
from usageledger.ledger.pricing import PriceBook
from usageledger.ledger.queries import Filters
from usageledger.ledger.windows import Window

T = TypeVar("T")
router = APIRouter(tags=["read"])

_READ_ERRORS = {
    401: "Missing, unknown or revoked token (UNAUTHENTICATED).",
    422: "A bad or unknown query parameter, `from` after `to`, an unknown time zone or device "
    "(VALIDATION_FAILED), or a range over its cap (RANGE_TOO_LARGE).",
    429: "Too many requests for this token; see Retry-After (RATE_LIMITED).",
    503: "The database is unavailable; retry after Retry-After (DATABASE_UNAVAILABLE).",
    504: "The database timed out; retry after Retry-After (DATABASE_TIMEOUT).",
}
READ_ERRORS = documented(_READ_ERRORS)
PATCH_ERRORS = documented({**_READ_ERRORS, 400: "The body is not JSON (INVALID_JSON)."})


def clock() -> datetime:
    """The current time (a dependency, so tests can freeze it)."""
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(clock)]


def price_books(request: Request) -> PriceBooks:
    """The app's price-book cache, created on first use."""
    books: PriceBooks | None = getattr(request.app.state, "price_books", None)
    if books is None:
        books = request.app.state.price_books = PriceBooks()
    return books


def check_query(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a ``user_id`` (in the query, a header or a cookie), undeclared or repeated
    parameters and control characters."""
    refuse_user_id(request)
    seen: set[str] = set()
    for key in request.query_params:
        if key == "user_id":
            _refuse(key, "user_id is not accepted: the user is always the token's owner")
        if key not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            _refuse(key, f"unknown query parameter {key!r}; this endpoint accepts: {accepted}")
    for key, value in request.query_params.multi_items():
        if key in seen:
            _refuse(key, f"query parameter {key!r} is given more than once")
        if not value.isprintable():  # control characters (NUL above all) never reach SQL
            _refuse(key, f"query parameter {key!r} contains control characters")
        seen.add(key)


def _refuse(key: str, message: str) -> NoReturn:
    raise ValidationFailed.at(f"query.{key}", message)


def caller(params: type[p.QueryParams] = p.NoParams) -> Any:
    """Depends: the token's principal, after refusing query parameters other than the names of
    ``params`` (the route's query-parameter model)."""
    allowed = params.names()

    def dependency(request: Request, who: Principal = Depends(principal)) -> Principal:
        check_query(request, allowed)
        return who

    return Depends(dependency)


def _read(
    request: Request,
    who: Principal,
    resolve: Callable[[str], Window],
    run: Callable[[Connection, Window, PriceBooks], T],
) -> T:
    """Check the range before touching the database, then run ``run`` in one transaction."""
    resolve(who.time_zone)  # a bad or oversized range never reaches the database
    books = price_books(request)

    def go(conn: Connection) -> T:
        window = resolve(queries.user_time_zone(conn, who.user_id))
        return run(conn, window, books)

    return app_context(request).db.read(go)


def _usage(
    request: Request,
    who: Principal,
    resolve: Callable[[str], Window],
    filters: Filters,
    query: Callable[[Connection, int, Window, Filters, PriceBook], T],
) -> T:
    """One of the priced reads of ``ledger.queries`` (summary, daily, …) over the caller's usage
    in the window ``resolve`` gives, with ``filters``, at the prices of the transaction."""
    return _read(
        request,
        who,
        resolve,
        lambda conn, w, books: query(conn, who.user_id, w, filters, books.current(conn)),
    )


@router.get(
    "/v1/usage/summary",
    responses=READ_ERRORS,
    summary="Totals and per-model lines of a range of local days (≤ 800 days)",
)
def usage_summary(
    request: Request,
    now: Now,
    q: Annotated[p.DaysQuery, Query()],
    who: Principal = caller(p.DaysQuery),
) -> m.SummaryResponse:
    """Totals and one line per source and model, with cost and unpriced models."""
    name_function("usage_summary")
    result = _usage(
        request,
        who,
        lambda zone: q.window(zone, now, endpoint="summary"),
        q.filters(),
        queries.summary,
    )
    return m.render_summary(result)


@router.get(
    "/v1/usage/daily",
    responses=READ_ERRORS,
    summary="One line per local day of a range, zero days included (≤ 800 days)",
)
def usage_daily(
    request: Request,
    now: Now,
    q: Annotated[p.DaysQuery, Query()],
    who: Principal = caller(p.DaysQuery),
) -> m.DailyResponse:
    """Every local day of the range with counts and cost, and the range's totals."""
    name_function("usage_daily")
    result = _usage(
        request, who, lambda zone: q.window(zone, now, endpoint="daily"), q.filters(), queries.daily
    )
    return m.render_daily(result)


@router.get(
    "/v1/usage/hourly",
    responses=READ_ERRORS,
    summary="Every half-hour of one local day (46, 48 or 50 slots)",
)
def usage_hourly(
    request: Request,
    now: Now,
    q: Annotated[p.HourQuery, Query()],
    who: Principal = caller(p.HourQuery),
) -> m.HourlyResponse:
    """Every half-hour slot of the day with its UTC start, local label, counts and cost."""
    name_function("usage_hourly")
    result = _usage(request, who, lambda zone: q.window(zone, now), q.filters(), queries.hourly)
    return m.render_hourly(result)


@router.get(
    "/v1/usage/monthly",
    responses=READ_ERRORS,
    summary="One line per calendar month of local days (≤ 36 months)",
)
def usage_monthly(
    request: Request,
    now: Now,
    q: Annotated[p.MonthsQuery, Query()],
    who: Principal = caller(p.MonthsQuery),
) -> m.MonthlyResponse:
    """Every month of the range with counts and cost."""
    name_function("usage_monthly")
    result = _usage(request, who, lambda zone: q.window(zone, now), q.filters(), queries.monthly)
    return m.render_monthly(result)


@router.get(
    "/v1/usage/heatmap",
    responses=READ_ERRORS,
    summary="Day cells with a 0–4 level and streaks (≤ 104 weeks)",
)
def usage_heatmap(
    request: Request,
    now: Now,
    q: Annotated[p.HeatmapQuery, Query()],
    who: Principal = caller(p.HeatmapQuery),
) -> m.HeatmapResponse:
    """Total tokens per local day with a level, active days and streaks."""
    name_function("usage_heatmap")
    result = _read(
        request,
        who,
        lambda zone: q.window(zone, now),
        lambda conn, w, _: queries.heatmap(
            conn, who.user_id, w, q.filters(), today=windows.today_in(w.tz, now)
        ),
    )
    return m.render_heatmap(result)


@router.get(
    "/v1/usage/models",
    responses=READ_ERRORS,
    summary="Usage by source and model with shares of the total (≤ 800 days)",
)
def usage_models(
    request: Request,
    now: Now,
    q: Annotated[p.DaysQuery, Query()],
    who: Principal = caller(p.DaysQuery),
) -> m.ModelsResponse:
    """Counts, share of total tokens and cost per source and model, and per source."""
    name_function("usage_models")
    result = _usage(
        request,
        who,
        lambda zone: q.window(zone, now, endpoint="models"),
        q.filters(),
        queries.models,
    )
    return m.render_models(result)


@router.get(
    "/v1/devices",
    responses=READ_ERRORS,
    summary="Your devices with their first and last bucket and last upload",
)
def list_devices(request: Request, who: Principal = caller()) -> m.DevicesResponse:
    """Every device of the caller, by name."""
    name_function("list_devices")

    def go(conn: Connection) -> m.DevicesResponse:
        zone = queries.user_time_zone(conn, who.user_id)
        return m.render_devices(zone, profile.device_spans(conn, who.user_id, zone))

    return app_context(request).db.read(go)


@router.get(
    "/v1/me",
    responses=READ_ERRORS,
    summary="Your profile: time zone, display name, leaderboard opt-in",
)
def get_me(request: Request, who: Principal = caller()) -> m.MeResponse:
    """The caller's profile."""
    name_function("get_me")
    found = app_context(request).db.read(lambda conn: profile.get_profile(conn, who.user_id))
    return m.render_me(found, who)


@router.patch(
    "/v1/me",
    responses=PATCH_ERRORS,
    summary="Change your time zone, display name or leaderboard opt-in",
)
def patch_me(request: Request, body: m.MePatch, who: Principal = caller()) -> m.MePatchResponse:
    """Apply the given fields; a new time zone rebuilds your rollups in the same transaction."""
    name_function("patch_me")
    given = body.model_fields_set
    if not given:
        _refuse_body("send at least one of time_zone, display_name, leaderboard_opt_in")
    if "time_zone" in given and body.time_zone is None:
        _refuse_body("time_zone cannot be null")
    if "leaderboard_opt_in" in given and body.leaderboard_opt_in is None:
        _refuse_body("leaderboard_opt_in cannot be null")
    changes: dict[str, Any] = {
        "time_zone": body.time_zone,
        "leaderboard_opt_in": body.leaderboard_opt_in,
    }
    if "display_name" in given:
        changes["display_name"] = body.display_name
    found, rebuilt = app_context(request).db.write(
        lambda conn: profile.update_profile(conn, who.user_id, **changes), user_id=who.user_id
    )
    return m.render_me_patch(found, who, rebuilt)


def _refuse_body(message: str) -> NoReturn:
    raise ValidationFailed.at("body", message)


@router.get(
    "/v1/leaderboard",
    responses=READ_ERRORS,
    summary="A page of the latest leaderboard snapshot (opted-in users only)",
)
def get_leaderboard(
    request: Request,
    q: Annotated[p.LeaderboardQuery, Query()],
    who: Principal = caller(p.LeaderboardQuery),
) -> m.LeaderboardResponse:
    """Ranked display names with totals and cost; never a user name or id."""
    name_function("get_leaderboard")
    if q.period not in leaderboard.PERIODS:
        message = f"period must be one of {', '.join(leaderboard.PERIODS)}, got {q.period!r}"
        raise ValidationFailed.at("query.period", message, summary=f"period: {message}")
    board = app_context(request).db.read(
        lambda conn: leaderboard.read_board(
            conn, q.period, limit=q.limit, offset=q.offset, user_id=who.user_id
        )
    )
    return m.render_leaderboard(board, limit=q.limit, offset=q.offset)
