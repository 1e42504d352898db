"""The read API over HTTP, on SQLite and PostgreSQL: shapes, ranges, caps, filters, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import Engine

from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.helpers import daily_rows, evidence_lines, expected_daily
from usageledger.api import read_models as m
from usageledger.api.read import clock
from usageledger.ledger.prices_store import PriceBooks, load_prices
from usageledger.ledger.pricing import Price, PriceBook
from usageledger.store.engine import Database

pytestmark = pytest.mark.usefixtures("db_url")

#: "Now" for every test here: late evening UTC, already the next day in Berlin.
NOW = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)

ROUTES: dict[str, type[BaseModel]] = {
    "/v1/usage/summary": m.SummaryResponse,
    "/v1/usage/daily": m.DailyResponse,
    "/v1/usage/hourly": m.HourlyResponse,
    "/v1/usage/monthly": m.MonthlyResponse,
    "/v1/usage/heatmap": m.HeatmapResponse,
    "/v1/usage/models": m.ModelsResponse,
    "/v1/devices": m.DevicesResponse,
    "/v1/me": m.MeResponse,
    "/v1/leaderboard": m.LeaderboardResponse,
}


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    """The test client with the clock frozen at :data:`NOW`."""
    client.app.dependency_overrides[clock] = lambda: NOW  # type: ignore[attr-defined]
    yield client
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


def plain(when: datetime, tokens: int, **fields: Any) -> dict[str, Any]:
    """A bucket of ``tokens`` plain input tokens (nothing cached, no output) at ``when``."""
    return bucket(start=when, inp=tokens, cached=0, out=0, reasoning=0, cache_write=0, **fields)


def upload(client: TestClient, who: Persona, *items: dict[str, Any]) -> None:
    """Ingest buckets with the persona's device token (in batches of 500)."""
    for start in range(0, len(items), 500):
        response = client.post(
            "/v1/ingest",
            content=json.dumps(batch(*items[start : start + 500])),
            headers={"Content-Type": "application/json", **who.headers()},
        )
        assert response.status_code == 200, response.text


def get(client: TestClient, who: Persona, path: str, **params: Any) -> Any:
    """GET with the persona's read token."""
    return client.get(path, params=params, headers=who.headers(read=True))


def ok(client: TestClient, who: Persona, path: str, **params: Any) -> dict[str, Any]:
    """GET that must succeed; the JSON body."""
    response = get(client, who, path, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    return dict(error)


def at(text: str) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DDTHH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- shapes ------------------------------------------------------------------------------------


def test_every_read_route_answers_in_its_documented_shape(api: TestClient, alice: Persona) -> None:
    """Each route returns 200 with exactly the fields of its response model."""
    upload(api, alice, bucket(start=at("2026-11-20T10:00")))
    for path, model in ROUTES.items():
        body = ok(api, alice, path)
        model.model_validate(body)
        documented = {f.alias or name for name, f in model.model_fields.items()}
        assert set(body) == documented, path


def test_a_device_token_reads_its_users_data(api: TestClient, alice: Persona) -> None:
    """A device token is as good as a read token for reading."""
    upload(api, alice, plain(at("2026-11-20T10:00"), 7))
    body = api.get("/v1/usage/summary", headers=alice.headers()).json()
    assert body["totals"]["input_tokens"] == 7
    assert api.get("/v1/me", headers=alice.headers()).json()["token"] == {"kind": "device"}


def test_counts_are_integers_and_cost_is_a_six_place_string(
    api: TestClient, alice: Persona
) -> None:
    """Token counts are JSON integers; cost_usd is a decimal string with 6 places."""
    upload(api, alice, bucket(start=at("2026-11-20T10:00"), model="gpt-5"))
    body = ok(api, alice, "/v1/usage/summary")
    for line in [body["totals"], *body["by_model"]]:
        assert all(type(line[k]) is int for k in line if k.endswith("_tokens"))
        assert isinstance(line["cost_usd"], str)
        whole, frac = line["cost_usd"].split(".")
        assert (whole.isdigit(), len(frac)) == (True, 6)


def test_without_a_token_every_route_is_401_in_the_one_error_shape(api: TestClient) -> None:
    """No token, no data: 401 UNAUTHENTICATED everywhere, even with bad parameters."""
    for path in ROUTES:
        assert_error(api.get(path, params={"from": "nope"}), 401, "UNAUTHENTICATED")
    assert_error(api.patch("/v1/me", json={"display_name": "x"}), 401, "UNAUTHENTICATED")


# --- the range ---------------------------------------------------------------------------------


def test_without_from_and_to_the_range_is_the_last_30_local_days(
    api: TestClient, alice: Persona
) -> None:
    """The default range ends today in the request's zone: Berlin is already on the 29th."""
    body = ok(api, alice, "/v1/usage/daily")
    assert (body["from"], body["to"], body["tz"]) == ("2026-10-31", "2026-11-29", "Europe/Berlin")
    assert len(body["days"]) == 30
    utc = ok(api, alice, "/v1/usage/daily", tz="UTC")
    assert (utc["from"], utc["to"]) == ("2026-10-30", "2026-11-28")


def test_only_from_runs_to_today_and_only_to_starts_29_days_earlier(
    api: TestClient, alice: Persona
) -> None:
    """A missing end is filled from the other end or today."""
    assert ok(api, alice, "/v1/usage/summary", to="2026-06-30")["from"] == "2026-06-01"
    assert ok(api, alice, "/v1/usage/summary", **{"from": "2026-11-01"})["to"] == "2026-11-29"


def test_daily_has_one_row_per_local_day_with_zero_days(api: TestClient, alice: Persona) -> None:
    """Days without usage are rows of zeros; a bucket lands on its local day."""
    upload(api, alice, plain(at("2026-11-02T23:30"), 5))
    body = ok(api, alice, "/v1/usage/daily", **{"from": "2026-11-01", "to": "2026-11-04"})
    assert [d["day"] for d in body["days"]] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
    ]
    assert [d["input_tokens"] for d in body["days"]] == [0, 0, 5, 0]  # 00:30 in Berlin
    assert body["days"][0]["cost_usd"] == "0.000000"
    in_utc = ok(
        api, alice, "/v1/usage/daily", **{"from": "2026-11-01", "to": "2026-11-04"}, tz="UTC"
    )
    assert [d["input_tokens"] for d in in_utc["days"]] == [0, 5, 0, 0]


@pytest.mark.parametrize(
    ("zone", "day", "slots"),
    [
        ("Europe/Berlin", "2026-03-29", 46),
        ("Europe/Berlin", "2026-10-25", 50),
        ("Europe/Berlin", "2026-11-01", 48),
        ("America/New_York", "2026-03-08", 46),
        ("Asia/Kathmandu", "2026-11-01", 48),
        ("Australia/Lord_Howe", "2026-04-05", 49),
    ],
)
def test_hourly_has_every_half_hour_of_the_local_day(
    api: TestClient, alice: Persona, zone: str, day: str, slots: int
) -> None:
    """46, 48 or 50 slots on DST days (47/49 where clocks move by 30 minutes)."""
    body = ok(api, alice, "/v1/usage/hourly", day=day, tz=zone)
    assert len(body["slots"]) == slots
    starts = [datetime.fromisoformat(s["start"]) for s in body["slots"]]
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(starts))
    first_local = datetime.fromisoformat(body["slots"][0]["local_start"])
    assert first_local.date().isoformat() == day


def test_hourly_labels_repeat_when_the_clocks_go_back(api: TestClient, alice: Persona) -> None:
    """On 2026-10-25 in Berlin 02:00 and 02:30 happen twice, with different offsets."""
    upload(api, alice, plain(at("2026-10-25T00:30"), 3))
    body = ok(api, alice, "/v1/usage/hourly", day="2026-10-25")
    labels = [s["label"] for s in body["slots"]]
    assert labels.count("02:30") == 2
    hit = next(s for s in body["slots"] if s["input_tokens"])
    assert (hit["start"], hit["local_start"]) == (
        "2026-10-25T00:30:00Z",
        "2026-10-25T02:30:00+02:00",
    )
    assert body["totals"]["input_tokens"] == 3


def test_monthly_covers_whole_months(api: TestClient, alice: Persona) -> None:
    """Months are whole calendar months of local days; empty months are zeros."""
    upload(api, alice, plain(at("2026-09-30T22:30"), 9))
    body = ok(api, alice, "/v1/usage/monthly", **{"from": "2026-08", "to": "2026-11"})
    assert [(x["month"], x["input_tokens"]) for x in body["months"]] == [
        ("2026-08", 0),
        ("2026-09", 0),
        ("2026-10", 9),  # 00:30 on 1 October in Berlin
        ("2026-11", 0),
    ]
    default = ok(api, alice, "/v1/usage/monthly")
    assert (default["from"], default["to"]) == ("2026-10", "2026-11")


def test_heatmap_levels_and_streaks(api: TestClient, alice: Persona) -> None:
    """Levels scale to the busiest day; streaks count consecutive active days."""
    days = {
        "2026-11-16": 100,
        "2026-11-17": 400,
        "2026-11-18": 40,
        "2026-11-20": 1,
        "2026-11-21": 1,
    }
    upload(
        api,
        alice,
        *(plain(at(f"{d}T10:00"), n) for d, n in days.items()),
    )
    body = ok(api, alice, "/v1/usage/heatmap", to="2026-11-21", weeks=2)
    assert (body["from"], body["weeks"], len(body["cells"])) == ("2026-11-09", 2, 13)
    cells = {c["day"]: c for c in body["cells"]}
    assert [cells[d]["level"] for d in days] == [1, 4, 1, 1, 1]
    assert (cells["2026-11-09"]["weekday"], cells["2026-11-19"]["level"]) == (0, 0)
    assert (body["active_days"], body["longest_streak"], body["current_streak"]) == (5, 3, 2)
    assert (body["max_tokens"], body["totals"]["total_tokens"]) == (400, 542)


def test_the_current_streak_forgives_a_today_without_usage_yet(
    api: TestClient, alice: Persona
) -> None:
    """If today has no usage yet, a streak that reached yesterday still counts."""
    upload(api, alice, bucket(start=at("2026-11-27T10:00")), bucket(start=at("2026-11-28T00:00")))
    body = ok(api, alice, "/v1/usage/heatmap", weeks=1)  # today is the 29th in Berlin
    assert (body["to"], body["current_streak"]) == ("2026-11-29", 2)


def test_models_has_shares_and_sources(api: TestClient, alice: Persona) -> None:
    """Shares of total tokens per model and per source, busiest first."""
    upload(
        api,
        alice,
        plain(at("2026-11-20T10:00"), 300, model="gpt-5"),
        plain(at("2026-11-20T10:00"), 100, source="claude", model="claude-sonnet-4-5"),
    )
    body = ok(api, alice, "/v1/usage/models")
    assert [(x["model"], x["share"]) for x in body["models"]] == [
        ("gpt-5", "0.7500"),
        ("claude-sonnet-4-5", "0.2500"),
    ]
    assert [(x["source"], x["share"]) for x in body["sources"]] == [
        ("codex", "0.7500"),
        ("claude", "0.2500"),
    ]


# --- filters -----------------------------------------------------------------------------------


def test_source_model_and_device_filters(api: TestClient, alice: Persona, db: Database) -> None:
    """Each filter narrows every view the same way; an unknown device is a 422."""
    from usageledger.ledger import accounts

    second, _ = db.write(
        lambda c: accounts.issue_token(c, "alice", kind="device", device_name="desk", now_ms=1)
    )
    desk = Persona("alice", alice.user_id, second, alice.read_token)
    when = at("2026-11-20T10:00")
    upload(api, alice, plain(when, 1, model="gpt-5"))
    upload(api, alice, plain(when, 10, source="claude", model="claude-opus-4"))
    upload(api, desk, plain(when, 100, model="gpt-5"))

    def total(**params: str) -> int:
        return int(ok(api, alice, "/v1/usage/summary", **params)["totals"]["input_tokens"])

    assert total() == 111
    assert total(source="codex") == 101
    assert total(model="claude-opus-4") == 10
    assert total(device="desk") == 100
    assert total(device="laptop", source="codex") == 1
    assert total(source="gemini") == 0
    error = assert_error(
        get(api, alice, "/v1/usage/daily", device="nope"), 422, "VALIDATION_FAILED"
    )
    assert "'nope'" in error["message"]
    assert "/v1/devices" in error["message"]


# --- errors and caps ---------------------------------------------------------------------------


BAD_PARAMS = [
    ("/v1/usage/daily", {"from": "2026-13-01"}, "VALIDATION_FAILED", "from"),
    ("/v1/usage/daily", {"from": "2026-02-30"}, "VALIDATION_FAILED", "calendar"),
    ("/v1/usage/daily", {"to": "20261101"}, "VALIDATION_FAILED", "YYYY-MM-DD"),
    ("/v1/usage/daily", {"from": "2026-11-02", "to": "2026-11-01"}, "VALIDATION_FAILED", "after"),
    (
        "/v1/usage/summary",
        {"from": "0001-01-01", "to": "0001-01-02"},
        "VALIDATION_FAILED",
        "between",
    ),
    ("/v1/usage/summary", {"tz": "Mars/Olympus"}, "VALIDATION_FAILED", "Mars/Olympus"),
    ("/v1/usage/summary", {"tz": "../etc/passwd"}, "VALIDATION_FAILED", "time zone"),
    ("/v1/usage/monthly", {"from": "2026-1"}, "VALIDATION_FAILED", "YYYY-MM"),
    ("/v1/usage/monthly", {"from": "0000-01"}, "VALIDATION_FAILED", "between"),
    ("/v1/usage/monthly", {"from": "2026-11", "to": "2026-10"}, "VALIDATION_FAILED", "after"),
    ("/v1/usage/hourly", {"day": "yesterday"}, "VALIDATION_FAILED", "day"),
    ("/v1/usage/heatmap", {"weeks": "0"}, "VALIDATION_FAILED", "weeks"),
    ("/v1/usage/heatmap", {"weeks": "many"}, "VALIDATION_FAILED", "weeks"),
    ("/v1/leaderboard", {"period": "year"}, "VALIDATION_FAILED", "period"),
    ("/v1/leaderboard", {"limit": "1000"}, "VALIDATION_FAILED", "limit"),
    ("/v1/usage/daily", {"source": "x" * 40}, "VALIDATION_FAILED", "source"),
    ("/v1/usage/daily", {"model": "gpt\x00-5"}, "VALIDATION_FAILED", "control characters"),
    ("/v1/usage/hourly", {"tz": "Europe/Berlin\n"}, "VALIDATION_FAILED", "control characters"),
    ("/v1/usage/daily", {"from": "２０２６-11-01"}, "VALIDATION_FAILED", "YYYY-MM-DD"),
    ("/v1/usage/monthly", {"to": "２０２６-11"}, "VALIDATION_FAILED", "YYYY-MM"),
]


@pytest.mark.parametrize(("path", "params", "code", "named"), BAD_PARAMS)
def test_bad_parameters_are_422_with_a_clear_message(
    api: TestClient, alice: Persona, path: str, params: dict[str, str], code: str, named: str
) -> None:
    """A bad date, zone, month or number is refused in the one error shape, naming the problem."""
    error = assert_error(get(api, alice, path, **params), 422, code)
    assert named in error["message"]


def days_back(days: int, end: str = "2026-11-27") -> dict[str, str]:
    """``from``/``to`` covering ``days`` local days ending on ``end``."""
    last = datetime.fromisoformat(end).date()
    return {"from": (last - timedelta(days=days - 1)).isoformat(), "to": end}


CAPS = [
    ("/v1/usage/daily", days_back(800), days_back(801), "800 days"),
    ("/v1/usage/summary", days_back(800), days_back(801), "800 days"),
    ("/v1/usage/models", days_back(800), days_back(801), "800 days"),
    (
        "/v1/usage/monthly",
        {"from": "2023-12", "to": "2026-11"},
        {"from": "2023-11", "to": "2026-11"},
        "36 months",
    ),
    ("/v1/usage/heatmap", {"weeks": "104"}, {"weeks": "105"}, "104 weeks"),
    ("/v1/usage/daily", {"tz": "UTC", **days_back(93)}, {"tz": "UTC", **days_back(94)}, "93 days"),
    (
        "/v1/usage/monthly",
        {"tz": "UTC", "from": "2026-09", "to": "2026-11"},
        {"tz": "UTC", "from": "2026-08", "to": "2026-11"},
        "93 days",
    ),
    ("/v1/usage/heatmap", {"tz": "UTC", "weeks": "13"}, {"tz": "UTC", "weeks": "14"}, "93 days"),
]


@pytest.mark.parametrize(("path", "at_cap", "over_cap", "cap"), CAPS)
def test_a_range_over_its_cap_is_range_too_large_naming_the_cap(
    api: TestClient,
    alice: Persona,
    path: str,
    at_cap: dict[str, str],
    over_cap: dict[str, str],
    cap: str,
) -> None:
    """Exactly at the cap is served; one more is 422 RANGE_TOO_LARGE with the cap in the message."""
    assert get(api, alice, path, **at_cap).status_code == 200
    error = assert_error(get(api, alice, path, **over_cap), 422, "RANGE_TOO_LARGE")
    assert cap in error["message"]
    assert error["details"][0]["cap"] == int(cap.split()[0])


@pytest.mark.parametrize("path", list(ROUTES))
def test_an_undeclared_query_parameter_is_refused(
    api: TestClient, alice: Persona, path: str
) -> None:
    """Unknown keys are 422 naming the key and what the endpoint accepts."""
    error = assert_error(get(api, alice, path, colour="blue"), 422, "VALIDATION_FAILED")
    assert "'colour'" in error["message"]
    assert "accepts" in error["message"]


@pytest.mark.parametrize("path", list(ROUTES))
def test_user_id_in_the_query_is_refused(
    api: TestClient, alice: Persona, bob: Persona, path: str
) -> None:
    """The user is the token's: a user_id parameter is 422, never honoured."""
    error = assert_error(get(api, alice, path, user_id=str(bob.user_id)), 422, "VALIDATION_FAILED")
    assert "user_id" in error["message"]


def test_a_repeated_parameter_is_refused(api: TestClient, alice: Persona) -> None:
    """from=…&from=… is ambiguous, so it is refused."""
    response = api.get(
        "/v1/usage/daily?from=2026-11-01&from=2026-11-02", headers=alice.headers(read=True)
    )
    assert "more than once" in assert_error(response, 422, "VALIDATION_FAILED")["message"]


def test_a_refused_range_never_reaches_the_database(
    api: TestClient, alice: Persona, evidence_path: Any
) -> None:
    """An oversized range is refused after authentication, before any read of usage."""
    get(api, alice, "/v1/usage/daily", **{"from": "2020-01-01", "to": "2026-01-01"})
    line = evidence_lines(evidence_path)[-1]
    assert (line["function"], line["status"]) == ("usage_daily", 422)
    assert line["error_code"] == "RANGE_TOO_LARGE"


# --- cost --------------------------------------------------------------------------------------


def test_a_model_without_a_price_costs_nothing_and_is_listed(
    api: TestClient, alice: Persona
) -> None:
    """Unpriced usage is counted, costs 0 and is named in unpriced_models."""
    upload(
        api,
        alice,
        plain(at("2026-11-20T10:00"), 1_000_000, model="gpt-5"),
        plain(at("2026-11-20T10:00"), 5, model="house-model-9"),
    )
    for path in (
        "/v1/usage/summary",
        "/v1/usage/daily",
        "/v1/usage/hourly",
        "/v1/usage/monthly",
        "/v1/usage/models",
    ):
        params = {"day": "2026-11-20"} if path.endswith("hourly") else {}
        body = ok(api, alice, path, **params)
        assert body["unpriced_models"] == ["house-model-9"], path
        assert body["totals"]["cost_usd"] == "1.250000", path
        assert body["totals"]["input_tokens"] == 1_000_005, path


def test_a_day_is_priced_at_the_price_in_effect_on_that_local_day(
    api: TestClient, alice: Persona
) -> None:
    """o3 got cheaper on 2025-06-10: 22:30 UTC on the 9th is already the 10th in Berlin."""
    upload(
        api,
        alice,
        plain(at("2025-06-09T22:30"), 1_000_000, model="o3"),
    )
    window = {"from": "2025-06-09", "to": "2025-06-10"}
    assert ok(api, alice, "/v1/usage/summary", **window)["totals"]["cost_usd"] == "2.000000"
    in_utc = ok(api, alice, "/v1/usage/summary", **window, tz="UTC")
    assert in_utc["totals"]["cost_usd"] == "10.000000"


def test_a_loaded_price_overrides_the_shipped_one_on_the_next_request(
    api: TestClient, alice: Persona, db: Database
) -> None:
    """Prices in model_prices win over the shipped table, and the cache notices the load."""
    upload(
        api,
        alice,
        plain(at("2026-11-20T10:00"), 1_000_000, model="gpt-5"),
    )
    assert ok(api, alice, "/v1/usage/summary")["totals"]["cost_usd"] == "1.250000"
    deal = Price(
        model="gpt-5",
        effective_from=datetime(2026, 11, 1).date(),
        input=Decimal("0.5"),
        cached_input=Decimal("0.05"),
        cache_write=Decimal("0.5"),
        output=Decimal("4"),
        source="our contract",
        taken=datetime(2026, 11, 1).date(),
    )
    shipped = PriceBooks().shipped
    db.write(lambda c: load_prices(c, PriceBook([deal]), shipped, now_ms=1))
    assert ok(api, alice, "/v1/usage/summary")["totals"]["cost_usd"] == "0.500000"
    before = ok(api, alice, "/v1/usage/summary", **{"from": "2026-10-01", "to": "2026-10-31"})
    assert before["totals"]["cost_usd"] == "0.000000"


# --- devices and me ----------------------------------------------------------------------------


def test_devices_list_first_and_last_bucket_and_last_upload(
    api: TestClient, alice: Persona
) -> None:
    """Each device has its earliest and latest half-hour and its last upload time."""
    upload(
        api,
        alice,
        bucket(start=at("2026-10-03T07:00")),
        bucket(start=at("2026-10-03T09:30")),
        bucket(start=at("2026-11-21T22:30")),
        bucket(start=at("2026-11-21T20:00")),
    )
    body = ok(api, alice, "/v1/devices")
    (laptop,) = body["devices"]
    assert laptop["name"] == "laptop"
    assert (laptop["first_bucket"], laptop["last_bucket"]) == (
        "2026-10-03T07:00:00Z",
        "2026-11-21T22:30:00Z",
    )
    assert (laptop["first_day"], laptop["last_day"]) == ("2026-10-03", "2026-11-21")
    assert str(laptop["last_upload_at"]).endswith("Z")


def test_a_new_device_without_uploads_has_null_spans(api: TestClient, alice: Persona) -> None:
    """A device that never uploaded has no first or last bucket."""
    (laptop,) = ok(api, alice, "/v1/devices")["devices"]
    assert (laptop["first_bucket"], laptop["last_upload_at"]) == (None, None)


def test_me_shows_the_profile_and_patch_changes_it(api: TestClient, alice: Persona) -> None:
    """Display name and opt-in change; absent fields stay; null clears the display name."""
    assert ok(api, alice, "/v1/me")["display_name"] is None
    changed = api.patch(
        "/v1/me",
        json={"display_name": "  Alice L. ", "leaderboard_opt_in": True},
        headers=alice.headers(read=True),
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["display_name"], body["leaderboard_opt_in"], body["rebuilt_daily_rows"]) == (
        "Alice L.",
        True,
        0,
    )
    cleared = api.patch(
        "/v1/me", json={"display_name": None}, headers=alice.headers(read=True)
    ).json()
    assert (cleared["display_name"], cleared["leaderboard_opt_in"]) == (None, True)


def test_changing_the_time_zone_rebuilds_the_daily_rollups(
    api: TestClient, alice: Persona, engine: Engine
) -> None:
    """After PATCH time_zone, usage_daily equals the buckets summed by the new local day."""
    upload(
        api,
        alice,
        *(plain(at("2026-10-24T20:00") + timedelta(hours=5 * i), i + 1) for i in range(40)),
    )
    before = ok(api, alice, "/v1/usage/daily", **{"from": "2026-10-24", "to": "2026-11-02"})
    response = api.patch(
        "/v1/me", json={"time_zone": "Pacific/Kiritimati"}, headers=alice.headers(read=True)
    )
    assert response.status_code == 200, response.text
    assert daily_rows(engine) == expected_daily(engine, {alice.user_id: "Pacific/Kiritimati"})
    assert response.json()["rebuilt_daily_rows"] == len(daily_rows(engine)) > 0
    after = ok(api, alice, "/v1/usage/daily", **{"from": "2026-10-24", "to": "2026-11-02"})
    assert after["tz"] == "Pacific/Kiritimati"
    assert after["totals"] == before["totals"]
    assert [d["input_tokens"] for d in after["days"]] != [d["input_tokens"] for d in before["days"]]


BAD_BODIES = [
    ({"user_id": 2}, "user_id"),
    ({"display_name": "x", "user_id": 2}, "user_id"),
    ({}, "at least one"),
    ({"time_zone": "Nowhere/Land"}, "Nowhere/Land"),
    ({"time_zone": None}, "time_zone"),
    ({"leaderboard_opt_in": "yes"}, "leaderboard_opt_in"),
    ({"leaderboard_opt_in": None}, "leaderboard_opt_in"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": "anonymous #1"}, "reserved"),
    ({"display_name": "tab\there"}, "printable"),
]


@pytest.mark.parametrize(("payload", "named"), BAD_BODIES)
def test_a_bad_patch_is_422_and_changes_nothing(
    api: TestClient, alice: Persona, payload: dict[str, Any], named: str
) -> None:
    """Unknown fields (user_id too), nulls, bad zones and reserved names are refused."""
    before = ok(api, alice, "/v1/me")
    error = assert_error(
        api.patch("/v1/me", json=payload, headers=alice.headers(read=True)),
        422,
        "VALIDATION_FAILED",
    )
    assert named in error["message"]
    assert ok(api, alice, "/v1/me") == before


def test_every_read_request_writes_one_evidence_line_named_after_its_route(
    api: TestClient, alice: Persona, evidence_path: Any
) -> None:
    """Evidence lines name the read function and carry the database evidence."""
    for path in ROUTES:
        ok(api, alice, path)
    names = [line["function"] for line in evidence_lines(evidence_path)]
    assert names[-len(ROUTES) :] == [
        "usage_summary",
        "usage_daily",
        "usage_hourly",
        "usage_monthly",
        "usage_heatmap",
        "usage_models",
        "list_devices",
        "get_me",
        "get_leaderboard",
    ]
    assert all(
        line["upstream_status"] == 200 for line in evidence_lines(evidence_path)[-len(ROUTES) :]
    )
