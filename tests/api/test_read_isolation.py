"""Isolation: one user's token never returns a byte of another user's data (alice × bob)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Persona
from tests.factories import batch, bucket
from usageledger.api.read import clock
from usageledger.ledger import accounts, leaderboard
from usageledger.ledger.prices_store import PriceBooks
from usageledger.store.engine import Database

pytestmark = pytest.mark.usefixtures("db_url")

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = "2026-11-24"  # in the week and the month of NOW
WHEN = "2026-11-24T10:00:00Z"
#: What only the owner may ever see: a model, a device, a count, a user name.
SECRETS = {
    "alice": ("alice-private-model", "alices-studio", "123456789", '"alice"'),
    "bob": ("bob-secret-model", "bobs-workstation", "987654321", '"bob"'),
}

REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("/v1/usage/summary", {}),
    ("/v1/usage/summary", {"tz": "UTC"}),
    ("/v1/usage/summary", {"model": "bob-secret-model"}),
    ("/v1/usage/summary", {"model": "alice-private-model"}),
    ("/v1/usage/daily", {}),
    ("/v1/usage/daily", {"tz": "Asia/Tokyo"}),
    ("/v1/usage/daily", {"device": "laptop"}),
    ("/v1/usage/hourly", {"day": DAY}),
    ("/v1/usage/hourly", {"day": DAY, "tz": "UTC"}),
    ("/v1/usage/monthly", {}),
    ("/v1/usage/monthly", {"tz": "UTC", "from": "2026-10"}),
    ("/v1/usage/heatmap", {}),
    ("/v1/usage/heatmap", {"tz": "UTC"}),
    ("/v1/usage/models", {}),
    ("/v1/usage/models", {"tz": "UTC", "source": "codex"}),
    ("/v1/devices", {}),
    ("/v1/me", {}),
    ("/v1/leaderboard", {"period": "week"}),
    ("/v1/leaderboard", {"period": "month"}),
    ("/v1/leaderboard", {"period": "all"}),
]


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    """The test client with the clock frozen at :data:`NOW`."""
    client.app.dependency_overrides[clock] = lambda: NOW  # type: ignore[attr-defined]
    yield client
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


def second_device(db: Database, who: Persona, device: str) -> Persona:
    """The persona with a device token for another device of theirs."""
    token, _ = db.write(
        lambda c: accounts.issue_token(c, who.name, kind="device", device_name=device, now_ms=1)
    )
    return Persona(who.name, who.user_id, token, who.read_token)


def fill(api: TestClient, db: Database, who: Persona) -> None:
    """Usage only ``who`` may see: a private model on a private device, and a shared model."""
    model, device, count, _ = SECRETS[who.name]
    other = second_device(db, who, device)
    items = [
        bucket(start=datetime.fromisoformat(WHEN), model=model, inp=int(count), cache_write=0),
        bucket(start=datetime.fromisoformat(WHEN), model="gpt-5", inp=1000 + who.user_id),
    ]
    for persona in (who, other):
        response = api.post(
            "/v1/ingest",
            content=json.dumps(batch(*items)),
            headers={"Content-Type": "application/json", **persona.headers()},
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def both(api: TestClient, db: Database, alice: Persona, bob: Persona) -> tuple[Persona, Persona]:
    """Alice and Bob with their own usage; Bob opted in to the leaderboard, Alice did not."""
    fill(api, db, alice)
    fill(api, db, bob)
    response = api.patch(
        "/v1/me", json={"leaderboard_opt_in": True}, headers=bob.headers(read=True)
    )
    assert response.status_code == 200
    db.write(lambda c: leaderboard.refresh(c, PriceBooks().shipped, now=NOW))
    return alice, bob


def responses(api: TestClient, who: Persona) -> Iterator[tuple[str, str]]:
    """Every request of the matrix with both of ``who``'s tokens: (label, body text)."""
    for read in (True, False):
        for path, params in REQUESTS:
            response = api.get(path, params=params, headers=who.headers(read=read))
            assert response.status_code == 200, (path, params, response.text[:300])
            yield f"{path} {params} read={read}", response.text


@pytest.mark.parametrize(("viewer", "other"), [("alice", "bob"), ("bob", "alice")])
def test_no_response_carries_the_other_users_data(
    api: TestClient, both: tuple[Persona, Persona], viewer: str, other: str
) -> None:
    """Every endpoint, both token kinds: no model, device, count or name of the other user."""
    who = both[0] if viewer == "alice" else both[1]
    for label, text in responses(api, who):
        for secret in SECRETS[other]:
            assert secret not in text, (label, secret)


def test_the_viewer_sees_their_own_data(api: TestClient, both: tuple[Persona, Persona]) -> None:
    """The matrix is not vacuous: each user's own private model shows up for them."""
    alice, bob = both
    for who in (alice, bob):
        body = api.get("/v1/usage/summary", headers=who.headers(read=True)).json()
        assert SECRETS[who.name][0] in {line["model"] for line in body["by_model"]}


def test_the_leaderboard_shows_only_opted_in_users_and_never_their_names(
    api: TestClient, both: tuple[Persona, Persona]
) -> None:
    """Bob (opted in, no display name) is "anonymous #1"; Alice (not opted in) is absent."""
    alice, bob = both
    for period in ("week", "month", "all"):
        body = api.get(
            "/v1/leaderboard", params={"period": period}, headers=alice.headers(read=True)
        ).json()
        assert [e["display_name"] for e in body["entries"]] == ["anonymous #1"]
        assert body["your_rank"] is None
        assert body["entries"][0]["input_tokens"] == 2 * (987654321 + 1000 + bob.user_id)
        mine = api.get("/v1/leaderboard", params={"period": period}, headers=bob.headers()).json()
        assert mine["your_rank"] == 1


def test_a_user_id_parameter_is_refused_on_every_route(
    api: TestClient, both: tuple[Persona, Persona]
) -> None:
    """user_id in the query is 422 everywhere; it never selects another user."""
    alice, bob = both
    for path, params in REQUESTS:
        asked = {**params, "user_id": str(bob.user_id)}
        response = api.get(path, params=asked, headers=alice.headers(read=True))
        assert response.status_code == 422, path
        assert response.json()["error"]["code"] == "VALIDATION_FAILED"


@pytest.mark.parametrize("header", ["X-User-Id", "User-ID", "x_user_id"])
def test_a_user_id_header_or_cookie_is_refused_on_every_route(
    api: TestClient, both: tuple[Persona, Persona], header: str
) -> None:
    """A user id smuggled in a header or a cookie is 422 too, never silently ignored."""
    alice, bob = both
    for path, params in REQUESTS:
        response = api.get(
            path, params=params, headers={**alice.headers(read=True), header: str(bob.user_id)}
        )
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["details"][0]["loc"] == f"header.{header.lower()}"
        api.cookies.set("user_id", str(bob.user_id))
        try:
            response = api.get(path, params=params, headers=alice.headers(read=True))
        finally:
            api.cookies.clear()
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["details"][0]["loc"] == "cookie.user_id"
    response = api.patch(
        "/v1/me",
        json={"display_name": "pwned"},
        headers={**alice.headers(read=True), header: str(bob.user_id)},
    )
    assert response.status_code == 422
    for who in (alice, bob):
        assert api.get("/v1/me", headers=who.headers()).json()["display_name"] is None


def test_names_that_only_contain_user_id_pass(
    api: TestClient, both: tuple[Persona, Persona]
) -> None:
    """A proxy's identity header or a parent domain's analytics cookie is not a user id."""
    alice, _ = both
    api.cookies.set("ajs_user_id", "someone")
    try:
        response = api.get(
            "/v1/me",
            headers={
                **alice.headers(read=True),
                "X-Goog-Authenticated-User-Id": "accounts.google.com:123",
                "X-User-Identity": "proxy",
            },
        )
    finally:
        api.cookies.clear()
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "alice"


def test_an_upload_naming_a_user_in_a_header_is_refused_and_writes_nothing(
    api: TestClient, both: tuple[Persona, Persona], db: Database
) -> None:
    """Ingest takes the user from the token too: X-User-Id is a 422 before the body is read."""
    alice, bob = both
    before = api.get("/v1/usage/summary", headers=alice.headers()).json()["totals"]
    response = api.post(
        "/v1/ingest",
        content=json.dumps(batch(bucket(start=datetime.fromisoformat(WHEN), inp=5))),
        headers={
            "Content-Type": "application/json",
            **alice.headers(),
            "X-User-Id": str(bob.user_id),
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == "header.x-user-id"
    assert api.get("/v1/usage/summary", headers=alice.headers()).json()["totals"] == before


def test_a_user_id_in_the_patch_body_is_refused(
    api: TestClient, both: tuple[Persona, Persona]
) -> None:
    """PATCH /v1/me with a user_id field is 422 and changes neither user."""
    alice, bob = both
    response = api.patch(
        "/v1/me",
        json={"user_id": bob.user_id, "display_name": "pwned"},
        headers=alice.headers(read=True),
    )
    assert response.status_code == 422
    for who in (alice, bob):
        assert api.get("/v1/me", headers=who.headers()).json()["display_name"] is None
