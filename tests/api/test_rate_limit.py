"""Fair sharing: the per-token budget stops a flood with 429 and never a normal tracker.

The limiter is a token bucket per API token (``api/ratelimit.py``). These tests give the app a
small budget from :class:`Settings` and a clock they move by hand, so nothing depends on how
fast the machine is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from bench.harness import ServeProcess
from tests.conftest import Persona, make_persona
from tests.factories import batch, bucket
from tests.helpers import evidence_lines
from usageledger.api.ratelimit import RateLimiter
from usageledger.config import Settings
from usageledger.errors import RateLimited
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts
from usageledger.server import create_app
from usageledger.store.engine import Database

#: Six requests a minute (one per 10 s), three at once.
PER_MINUTE, BURST = 6, 3


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """The limiter's clock."""
    return Clock()


@pytest.fixture
def small(settings: Settings, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    """A client of the app with a budget of 6 requests a minute and a burst of 3 per token."""
    tight = settings.model_copy(update={"rate_per_minute": PER_MINUTE, "rate_burst": BURST})
    logger = EvidenceLogger(tight.log_file)
    app = create_app(tight, engine=engine, evidence=logger)
    # The app's limiter, rebuilt from the same settings with a hand-moved clock.
    app.state.ctx.limiter = RateLimiter(tight.rate_per_minute, tight.rate_burst, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    logger.close()


def push(client: TestClient, token: str, slot: int = 0) -> Any:
    """Upload one bucket with ``token``."""
    return client.post(
        "/v1/ingest",
        content=orjson.dumps(batch(bucket(slot=slot))),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def test_a_flood_gets_429_with_retry_after(small: TestClient, alice: Persona) -> None:
    """Past the burst, a token gets 429 RATE_LIMITED with the wait in Retry-After."""
    statuses = [push(small, alice.device_token, slot=i).status_code for i in range(BURST)]
    assert statuses == [200] * BURST
    flooded = push(small, alice.device_token)
    assert flooded.status_code == 429
    error = flooded.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["request_id"] == flooded.headers["x-request-id"]
    assert flooded.headers["retry-after"] == "10"  # one request per 10 s refills the bucket


def test_a_flood_is_refused_before_anything_is_written(
    small: TestClient, alice: Persona, engine: Engine, evidence_path: Path
) -> None:
    """Every refused request leaves no bucket and one evidence line with error_code RATE_LIMITED."""
    results = [push(small, alice.device_token, slot=i).status_code for i in range(20)]
    assert results.count(200) == BURST
    assert results.count(429) == 20 - BURST
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT COUNT(*) FROM usage_buckets").scalar_one()
    assert stored == BURST
    limited = [
        line for line in evidence_lines(evidence_path) if line["error_code"] == "RATE_LIMITED"
    ]
    assert len(limited) == 20 - BURST
    assert {line["status"] for line in limited} == {429}


def test_waiting_retry_after_is_enough(small: TestClient, alice: Persona, clock: Clock) -> None:
    """A client that waits the advertised Retry-After gets through."""
    for i in range(BURST):
        push(small, alice.device_token, slot=i)
    refused = push(small, alice.device_token)
    assert refused.status_code == 429
    clock.advance(int(refused.headers["retry-after"]))
    assert push(small, alice.device_token).status_code == 200


def test_a_normal_push_cadence_never_meets_the_limit(
    small: TestClient, alice: Persona, clock: Clock
) -> None:
    """A push every 30 s with an immediate retry every fifth time stays within 6/min."""
    statuses = []
    for minute in range(60):
        for half in range(2):
            statuses.append(push(small, alice.device_token, slot=minute % 8).status_code)
            if (2 * minute + half) % 5 == 0:  # a retry right away (a lost response, say)
                statuses.append(push(small, alice.device_token, slot=minute % 8).status_code)
            clock.advance(30)
    assert set(statuses) == {200}
    assert len(statuses) == 144


def test_one_flooding_device_does_not_slow_another(
    small: TestClient, alice: Persona, bob: Persona, db: Database
) -> None:
    """Alice's laptop at 429 leaves her desktop, her read token and Bob untouched."""
    desktop, _ = db.write(
        lambda conn: accounts.issue_token(
            conn, "alice", kind="device", device_name="desktop", now_ms=1
        )
    )
    flood = [push(small, alice.device_token, slot=i).status_code for i in range(12)]
    assert flood.count(429) == 12 - BURST
    assert [push(small, desktop, slot=i).status_code for i in range(BURST)] == [200] * BURST
    assert [push(small, bob.device_token, slot=i).status_code for i in range(BURST)] == [
        200
    ] * BURST
    reads = [small.get("/v1/me", headers=alice.headers(read=True)) for _ in range(BURST)]
    assert [r.status_code for r in reads] == [200] * BURST
    assert push(small, alice.device_token).status_code == 429  # the flooder is still held


def test_an_unknown_token_gets_401_not_429(small: TestClient, db: Database) -> None:
    """Budgets belong to real tokens: a bogus token is refused as unauthenticated every time."""
    carol = make_persona(db, "carol")
    bogus = carol.device_token[:-4] + "xxxx"
    assert {push(small, bogus).status_code for _ in range(BURST + 3)} == {401}


def test_the_default_budget_never_limits_a_tracker_fleet_member() -> None:
    """With the shipped defaults, a day of pushes every minute plus a burst of 10 each half-hour
    never meets the limit."""
    fields = Settings.model_fields
    per_minute, burst = fields["rate_per_minute"].default, fields["rate_burst"].default
    clock = Clock()
    limiter = RateLimiter(per_minute, burst, clock=clock)
    for minute in range(24 * 60):
        pushes = 11 if minute % 30 == 0 else 1
        for _ in range(pushes):
            limiter.check(1)
        clock.advance(60)


def test_the_limiter_refuses_with_a_whole_number_of_seconds() -> None:
    """Retry-After is a whole number of seconds, at least 1, enough to refill one request."""
    clock = Clock()
    limiter = RateLimiter(per_minute=7, burst=1, clock=clock)
    limiter.check(5)
    with pytest.raises(RateLimited) as refused:
        limiter.check(5)
    wait = int(refused.value.headers["Retry-After"])
    assert wait == 9  # 60 / 7 = 8.57 s, rounded up
    clock.advance(wait)
    limiter.check(5)


#: Five failed look-ups at once from one address, then one a minute.
FAILURE_BURST = 5


@pytest.fixture
def guarded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """A client of the app with a budget of 5 failed token look-ups per client address."""
    strict = settings.model_copy(
        update={"auth_failures_per_minute": 1, "auth_failure_burst": FAILURE_BURST}
    )
    logger = EvidenceLogger(strict.log_file)
    app = create_app(strict, engine=engine, evidence=logger)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    logger.close()


def test_an_unknown_token_flood_from_one_address_gets_429_before_the_database(
    guarded: TestClient, evidence_path: Path
) -> None:
    """Past the failure burst, a guessed token gets 429 with Retry-After, and the refusal
    never reaches the database (its evidence line has no upstream status)."""
    statuses = [push(guarded, f"ul_dev_guess{i}").status_code for i in range(FAILURE_BURST + 5)]
    assert statuses == [401] * FAILURE_BURST + [429] * 5
    refused = push(guarded, "ul_dev_another_guess")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    lines = evidence_lines(evidence_path)
    assert [line["upstream_status"] for line in lines if line["status"] == 401] == [200] * 5
    assert {line["upstream_status"] for line in lines if line["status"] == 429} == {None}


def test_a_working_token_still_gets_in_from_a_flooding_address(
    guarded: TestClient, alice: Persona
) -> None:
    """Failed look-ups spend only the failure budget: a token seen working still uploads and
    reads, and a good token never spends the budget."""
    assert push(guarded, alice.device_token).status_code == 200
    for i in range(FAILURE_BURST + 3):
        push(guarded, f"ul_dev_guess{i}")
    assert push(guarded, "ul_dev_guess").status_code == 429
    assert push(guarded, alice.device_token, slot=1).status_code == 200
    assert guarded.get("/v1/me", headers=alice.headers()).status_code == 200


def test_good_tokens_never_spend_the_failure_budget(guarded: TestClient, alice: Persona) -> None:
    """Twenty good requests, then the whole failure budget is still there."""
    for slot in range(20):
        assert push(guarded, alice.device_token, slot=slot % 8).status_code == 200
    statuses = [push(guarded, f"ul_dev_guess{i}").status_code for i in range(FAILURE_BURST)]
    assert statuses == [401] * FAILURE_BURST


def test_a_revoked_token_spends_the_failure_budget_too(
    guarded: TestClient, alice: Persona, db: Database
) -> None:
    """A revoked token is a failed look-up like an unknown one."""
    from usageledger.ledger.accounts import hash_secret
    from usageledger.store.tables import api_tokens

    assert push(guarded, alice.device_token).status_code == 200

    def revoke(conn: Any) -> None:
        token_id = conn.execute(
            api_tokens.select().where(api_tokens.c.token_hash == hash_secret(alice.device_token))
        ).first()[0]
        accounts.revoke_token(conn, token_id, now_ms=2)

    db.write(revoke)
    statuses = [push(guarded, alice.device_token, slot=1).status_code for _ in range(8)]
    assert statuses[:FAILURE_BURST] == [401] * FAILURE_BURST
    assert set(statuses[FAILURE_BURST:]) == {429}


def test_the_failure_budget_refills() -> None:
    """A spent address budget comes back at the configured rate; spending never raises."""
    clock = Clock()
    failures = RateLimiter(per_minute=6, burst=2, clock=clock)
    failures.spend("10.0.0.1")
    failures.spend("10.0.0.1")
    failures.spend("10.0.0.1")  # past the budget: still no error, nothing below zero
    with pytest.raises(RateLimited):
        failures.ensure("10.0.0.1")
    failures.ensure("10.0.0.2")  # another address is untouched
    clock.advance(10)
    failures.ensure("10.0.0.1")


@contextmanager
def served(tmp_path: Path, trusted_proxies: str | None) -> Iterator[str]:
    """``usageledger serve`` (the real uvicorn) on SQLite with a failure budget of 2 per address,
    and uvicorn's own FORWARDED_ALLOW_IPS set to trust anyone (the setting must win); ``None``
    leaves USAGELEDGER_TRUSTED_PROXIES unset (its default)."""
    env: dict[str, str | None] = {
        "USAGELEDGER_HOME": str(tmp_path),
        "USAGELEDGER_LOG_FILE": "off",
        "USAGELEDGER_AUTH_FAILURE_BURST": "2",
        "USAGELEDGER_AUTH_FAILURES_PER_MINUTE": "0.01",
        "FORWARDED_ALLOW_IPS": "*",
        "USAGELEDGER_DATABASE_URL": None,
        "USAGELEDGER_TRUSTED_PROXIES": trusted_proxies,
    }
    with ServeProcess(env) as server:
        yield server.base


def guesses_from_rotating_addresses(base: str) -> list[int]:
    """Statuses of five guessed tokens, each claiming another client address."""
    return [
        httpx.get(
            f"{base}/v1/me",
            headers={
                "Authorization": f"Bearer ul_read_guess{i}",
                "X-Forwarded-For": f"203.0.113.{i}",
            },
        ).status_code
        for i in range(5)
    ]


@pytest.mark.slow
def test_x_forwarded_for_from_an_untrusted_peer_cannot_rotate_the_failure_budget(
    tmp_path: Path,
) -> None:
    """By default no proxy is trusted, not even a loopback peer: a client claiming a new
    address per guess still spends its own budget (uvicorn's FORWARDED_ALLOW_IPS=* in the
    environment changes nothing)."""
    with served(tmp_path, trusted_proxies=None) as base:
        assert guesses_from_rotating_addresses(base) == [401, 401, 429, 429, 429]


@pytest.mark.slow
def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    """Behind a configured proxy each real client has its own budget."""
    with served(tmp_path, trusted_proxies="127.0.0.1,::1") as base:
        assert guesses_from_rotating_addresses(base) == [401] * 5
