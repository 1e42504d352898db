"""The read routes' query parameters: what each route accepts, and exactly how it refuses.

A table of bad queries per route, each with the whole error it gets: status, code, message and
every detail (``loc`` included), worked out from the rules in docs/api.md. The order of the
checks is part of the contract: the token first (401), then the names of the parameters
(undeclared, ``user_id``, repeated, control characters), then the values' types and lengths, then
the ranges and caps, and last what only the database knows (a device that is not yours).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Persona
from usageledger.api.read import clock

pytestmark = pytest.mark.usefixtures("db_url")

#: "Now" for every test here: 2026-11-28 23:30 UTC, already 2026-11-29 in Alice's Berlin.
NOW = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)

Query = list[tuple[str, str]]

#: What each route accepts, as its refusal of an undeclared parameter lists it (sorted).
ACCEPTS = {
    "/v1/usage/summary": "device, from, model, source, to, tz",
    "/v1/usage/daily": "device, from, model, source, to, tz",
    "/v1/usage/hourly": "day, device, model, source, tz",
    "/v1/usage/monthly": "device, from, model, source, to, tz",
    "/v1/usage/heatmap": "device, model, source, to, tz, weeks",
    "/v1/usage/models": "device, from, model, source, to, tz",
    "/v1/devices": "none",
    "/v1/me": "none",
    "/v1/leaderboard": "limit, offset, period",
}

#: The query parameters each route publishes in its OpenAPI operation, in order.
PARAMETERS = {
    "/v1/usage/summary": ["from", "to", "tz", "source", "model", "device"],
    "/v1/usage/daily": ["from", "to", "tz", "source", "model", "device"],
    "/v1/usage/hourly": ["day", "tz", "source", "model", "device"],
    "/v1/usage/monthly": ["from", "to", "tz", "source", "model", "device"],
    "/v1/usage/heatmap": ["to", "weeks", "tz", "source", "model", "device"],
    "/v1/usage/models": ["from", "to", "tz", "source", "model", "device"],
    "/v1/devices": [],
    "/v1/me": [],
    "/v1/leaderboard": ["period", "limit", "offset"],
}


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    """The test client with the clock frozen at :data:`NOW`."""
    client.app.dependency_overrides[clock] = lambda: NOW  # type: ignore[attr-defined]
    yield client
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


# --- the expected errors, one builder per kind of refusal -------------------------------------


def refused(loc: str, message: str, summary: str | None = None) -> dict[str, Any]:
    """A refusal by the server's own checks: one detail with its code."""
    detail = {"loc": loc, "message": message, "code": "VALIDATION_FAILED"}
    return {
        "status": 422,
        "code": "VALIDATION_FAILED",
        "message": summary or message,
        "details": [detail],
    }


def unknown(path: str, key: str) -> dict[str, Any]:
    """An undeclared parameter, named with what the route accepts."""
    accepted = ACCEPTS[path]
    return refused(
        f"query.{key}", f"unknown query parameter {key!r}; this endpoint accepts: {accepted}"
    )


def invalid(param: str, message: str) -> dict[str, Any]:
    """A value the range rules refuse; the message starts with the parameter's name."""
    return refused(f"query.{param}", message, f"{param}: {message}")


def too_large(param: str, message: str, cap: int, unit: str) -> dict[str, Any]:
    """A range over its cap: RANGE_TOO_LARGE with the cap and its unit."""
    detail = {"loc": f"query.{param}", "message": message, "cap": cap, "unit": unit}
    return {"status": 422, "code": "RANGE_TOO_LARGE", "message": message, "details": [detail]}


def typed(*problems: tuple[str, str]) -> dict[str, Any]:
    """Values of the wrong type or length: one detail per problem, in the parameters' order;
    the message is the first one's."""
    details = [{"loc": loc, "message": message} for loc, message in problems]
    first = f"{problems[0][0]}: {problems[0][1]}"
    return {"status": 422, "code": "VALIDATION_FAILED", "message": first, "details": details}


NOT_YOURS = "user_id is not accepted: the user is always the token's owner"
NOT_AN_INT = "Input should be a valid integer, unable to parse string as an integer"
ZONE_64 = "String should have at most 64 characters"

#: 2026-11-27 back 800 days: 730 to 2024-11-27, 27 more to 2024-10-31, 31 to 2024-09-30, 12
#: to 2024-09-18, so 2024-09-18 … 2026-11-27 is 801 days.
DAYS_801 = [("from", "2024-09-18"), ("to", "2026-11-27")]
#: 2026-08-26 … 2026-11-27: 6 days of August + 30 + 31 + 27 = 94 days.
DAYS_94_UTC = [("tz", "UTC"), ("from", "2026-08-26"), ("to", "2026-11-27")]

CASES: list[tuple[str, Query, dict[str, Any]]] = [
    # -- the names: checked before any value, whatever else is wrong
    *[(path, [("colour", "blue")], unknown(path, "colour")) for path in ACCEPTS],
    *[(path, [("user_id", "7")], refused("query.user_id", NOT_YOURS)) for path in ACCEPTS],
    *[
        (path, [("colour", "blue"), ("weeks", "many"), ("tz", "Z" * 65)], unknown(path, "colour"))
        for path in ACCEPTS
    ],
    (
        "/v1/usage/heatmap",
        [("weeks", "many"), ("colour", "blue")],
        unknown("/v1/usage/heatmap", "colour"),
    ),
    ("/v1/usage/summary", [("from_", "2026-11-01")], unknown("/v1/usage/summary", "from_")),
    ("/v1/usage/monthly", [("from_", "2026-11")], unknown("/v1/usage/monthly", "from_")),
    ("/v1/usage/hourly", [("from", "2026-11-01")], unknown("/v1/usage/hourly", "from")),
    ("/v1/usage/heatmap", [("from", "2026-11-01")], unknown("/v1/usage/heatmap", "from")),
    ("/v1/devices", [("tz", "UTC")], unknown("/v1/devices", "tz")),
    ("/v1/me", [("weeks", "1")], unknown("/v1/me", "weeks")),
    ("/v1/leaderboard", [("tz", "UTC")], unknown("/v1/leaderboard", "tz")),
    (
        "/v1/usage/daily",
        [("from", "2026-11-01"), ("from", "2026-11-02")],
        refused("query.from", "query parameter 'from' is given more than once"),
    ),
    (
        "/v1/leaderboard",
        [("limit", "5"), ("limit", "6")],
        refused("query.limit", "query parameter 'limit' is given more than once"),
    ),
    (
        "/v1/usage/models",
        [("source", "co\x01dex")],
        refused("query.source", "query parameter 'source' contains control characters"),
    ),
    (
        "/v1/leaderboard",
        [("period", "week\x00")],
        refused("query.period", "query parameter 'period' contains control characters"),
    ),
    # -- types and lengths: every problem at once, in the parameters' order
    ("/v1/usage/summary", [("tz", "Z" * 65)], typed(("query.tz", ZONE_64))),
    (
        "/v1/usage/daily",
        [("source", "x" * 33)],
        typed(("query.source", "String should have at most 32 characters")),
    ),
    (
        "/v1/usage/models",
        [("model", "m" * 129)],
        typed(("query.model", "String should have at most 128 characters")),
    ),
    ("/v1/usage/monthly", [("device", "d" * 65)], typed(("query.device", ZONE_64))),
    (
        "/v1/usage/hourly",
        [("source", "x" * 33), ("tz", "Z" * 65)],
        typed(("query.tz", ZONE_64), ("query.source", "String should have at most 32 characters")),
    ),
    ("/v1/usage/heatmap", [("weeks", "many")], typed(("query.weeks", NOT_AN_INT))),
    ("/v1/usage/heatmap", [("weeks", "")], typed(("query.weeks", NOT_AN_INT))),
    (
        "/v1/usage/heatmap",
        [("tz", "Z" * 65), ("weeks", "many")],
        typed(("query.weeks", NOT_AN_INT), ("query.tz", ZONE_64)),
    ),
    (
        "/v1/leaderboard",
        [("limit", "0")],
        typed(("query.limit", "Input should be greater than or equal to 1")),
    ),
    (
        "/v1/leaderboard",
        [("limit", "101")],
        typed(("query.limit", "Input should be less than or equal to 100")),
    ),
    (
        "/v1/leaderboard",
        [("offset", "1000001")],
        typed(("query.offset", "Input should be less than or equal to 1000000")),
    ),
    (
        "/v1/leaderboard",
        [("offset", "-1"), ("limit", "abc")],
        typed(
            ("query.limit", NOT_AN_INT),
            ("query.offset", "Input should be greater than or equal to 0"),
        ),
    ),
    # -- the values: days, months, zones, weeks, periods
    (
        "/v1/leaderboard",
        [("period", "year")],
        invalid("period", "period must be one of week, month, all, got 'year'"),
    ),
    (
        "/v1/usage/summary",
        [("from", "2026-13-01")],
        invalid("from", "not a calendar date: '2026-13-01'"),
    ),
    (
        "/v1/usage/summary",
        [("to", "20261101")],
        invalid("to", "expected a date written YYYY-MM-DD, got '20261101'"),
    ),
    (
        "/v1/usage/daily",
        [("from", "")],
        invalid("from", "expected a date written YYYY-MM-DD, got ''"),
    ),
    (
        "/v1/usage/daily",
        [("from", "2026-11-02"), ("to", "2026-11-01")],
        invalid("from", "from (2026-11-02) is after to (2026-11-01)"),
    ),
    (
        "/v1/usage/models",
        [("from", "1970-01-01")],
        invalid("from", "must be between 1970-01-02 and 9998-12-31, got 1970-01-01"),
    ),
    (
        "/v1/usage/summary",
        [("tz", "Mars/Olympus")],
        invalid("tz", "unknown time zone 'Mars/Olympus'; use an IANA name like Europe/Berlin"),
    ),
    (
        "/v1/usage/daily",
        [("tz", "")],
        invalid("tz", "unknown time zone ''; use an IANA name like Europe/Berlin"),
    ),
    (
        "/v1/usage/hourly",
        [("day", "yesterday")],
        invalid("day", "expected a date written YYYY-MM-DD, got 'yesterday'"),
    ),
    (
        "/v1/usage/monthly",
        [("from", "2026-1")],
        invalid("from", "expected a month written YYYY-MM, got '2026-1'"),
    ),
    (
        "/v1/usage/monthly",
        # 2026-11 to 2026-10: (2026 - 2026) × 12 + 10 - 11 + 1 = 0 months, under the cap.
        [("from", "2026-11"), ("to", "2026-10")],
        invalid("from", "from (2026-11) is after to (2026-10)"),
    ),
    ("/v1/usage/heatmap", [("weeks", "0")], invalid("weeks", "must be at least 1, got 0")),
    (
        "/v1/usage/heatmap",
        # 1970-01-04 is a Sunday: its week starts on Monday 1969-12-29, before 1970-01-02.
        [("to", "1970-01-04"), ("weeks", "1")],
        invalid("to", "the heatmap would start before 1970-01-02"),
    ),
    # -- the caps
    *[
        (
            f"/v1/usage/{name}",
            DAYS_801,
            too_large(
                "from",
                f"the range is 801 days; /v1/usage/{name} allows at most 800 days",
                800,
                "days",
            ),
        )
        for name in ("summary", "daily", "models")
    ],
    (
        "/v1/usage/monthly",
        # 2023-11 to 2026-11: (2026 - 2023) × 12 + 11 - 11 + 1 = 37 months.
        [("from", "2023-11"), ("to", "2026-11")],
        too_large(
            "from",
            "the range is 37 months; /v1/usage/monthly allows at most 36 months",
            36,
            "months",
        ),
    ),
    (
        "/v1/usage/heatmap",
        [("weeks", "105")],
        too_large(
            "weeks", "weeks is 105; /v1/usage/heatmap allows at most 104 weeks", 104, "weeks"
        ),
    ),
    (
        "/v1/usage/daily",
        DAYS_94_UTC,
        too_large(
            "tz",
            "the range is 94 days; a time zone other than your own (UTC) is served from "
            "half-hour buckets and capped at 93 days",
            93,
            "days",
        ),
    ),
    # -- what only the database knows, last
    (
        "/v1/usage/daily",
        [("device", "nope")],
        refused(
            "query.device",
            "you have no device named 'nope'; GET /v1/devices lists yours",
            "device: you have no device named 'nope'; GET /v1/devices lists yours",
        ),
    ),
]


def case_id(case: tuple[str, Query, dict[str, Any]]) -> str:
    """``summary?tz=ZZZ…`` for a case (long values cut)."""
    path, query, _ = case
    shown = "&".join(f"{k}={v[:8].encode('unicode_escape').decode()}" for k, v in query)
    return f"{path.rsplit('/', 1)[-1]}?{shown}"


def observed(api: TestClient, who: Persona | None, path: str, query: Query) -> dict[str, Any]:
    """The status and error body (without the request id) of ``GET path?query``."""
    headers = who.headers(read=True) if who is not None else {}
    response = api.get(path, params=query, headers=headers)
    body = response.json()
    assert set(body) == {"error"}, response.text[:300]
    error = body["error"]
    assert error.pop("request_id") == response.headers["x-request-id"]
    return {"status": response.status_code, **error}


@pytest.mark.parametrize(("path", "query", "expected"), CASES, ids=[case_id(c) for c in CASES])
def test_a_bad_query_gets_exactly_its_error(
    api: TestClient, alice: Persona, path: str, query: Query, expected: dict[str, Any]
) -> None:
    """Status, code, message and every detail with its ``loc``, as the table says."""
    assert observed(api, alice, path, query) == expected


@pytest.mark.parametrize("path", list(ACCEPTS))
def test_without_a_token_the_query_is_not_looked_at(api: TestClient, path: str) -> None:
    """No token is 401 before any parameter is judged, unknown or badly typed."""
    for query in ([("colour", "blue")], [("weeks", "many"), ("limit", "0")]):
        assert observed(api, None, path, query) == {
            "status": 401,
            "code": "UNAUTHENTICATED",
            "message": "missing token: send Authorization: Bearer <token>",
            "details": [],
        }


def test_every_parameter_reaches_its_route(api: TestClient, alice: Persona) -> None:
    """Each declared parameter, under its published name (``from``, not ``from_``), is used."""

    def ok(path: str, **params: str) -> dict[str, Any]:
        response = api.get(path, params=params, headers=alice.headers(read=True))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    window = {"from": "2026-11-01", "to": "2026-11-03", "tz": "UTC"}
    filters = {"source": "codex", "model": "gpt-5", "device": "laptop"}
    for name in ("summary", "daily", "models"):
        body = ok(f"/v1/usage/{name}", **window, **filters)
        assert (body["from"], body["to"], body["tz"]) == ("2026-11-01", "2026-11-03", "UTC")
    daily = ok("/v1/usage/daily", **window, **filters)
    assert [d["day"] for d in daily["days"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    monthly = ok("/v1/usage/monthly", **{"from": "2026-09", "to": "2026-10"}, **filters)
    assert [m["month"] for m in monthly["months"]] == ["2026-09", "2026-10"]
    hourly = ok("/v1/usage/hourly", day="2026-11-01", tz="Asia/Tokyo", **filters)
    # Tokyo has no daylight saving: 24 hours of two half-hours each.
    assert (hourly["day"], hourly["tz"], len(hourly["slots"])) == ("2026-11-01", "Asia/Tokyo", 48)
    heatmap = ok("/v1/usage/heatmap", to="2026-11-29", weeks="2", tz="Europe/Berlin", **filters)
    # 2026-11-29 is a Sunday: two whole weeks back to Monday 2026-11-16.
    assert (heatmap["from"], heatmap["to"], heatmap["weeks"]) == ("2026-11-16", "2026-11-29", 2)
    board = ok("/v1/leaderboard", period="month", limit="5", offset="2")
    assert (board["period"], board["limit"], board["offset"]) == ("month", 5, 2)


def test_the_published_parameters_and_their_order(client: TestClient) -> None:
    """Each read route publishes its query parameters by name, in order, none required."""
    document = client.get("/openapi.json").json()
    for path, names in PARAMETERS.items():
        parameters = document["paths"][path]["get"].get("parameters", [])
        query = [p for p in parameters if p["in"] == "query"]
        assert [p["name"] for p in query] == names, path
        assert not any(p["required"] for p in query), path
