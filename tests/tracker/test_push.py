"""``tracker.push`` over ``httpx.MockTransport``: batching, keys, retries, stops, privacy."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.tracker import support
from tests.tracker.conftest import Clock
from usageledger.sources import UsageEvent
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import Login
from usageledger.tracker.push import (
    TIMEOUT,
    PushError,
    RetryPolicy,
    Uploader,
    count_pending,
    push,
)
from usageledger.wire import BucketV2, BucketV3

LOGIN = Login("http://ledger.test", "ul_dev_secret", 1)
START = datetime(2025, 9, 1, tzinfo=UTC)
OK = {"request_id": "r", "inserted": 0, "updated": 0, "unchanged": 0, "stale": 0, "conflicts": 0}


def add_usage(ledger: LocalLedger, clock: Clock, halves: int, *, first: int = 0) -> None:
    """One Codex event in each of ``halves`` consecutive half-hours from START."""
    events = [
        UsageEvent(
            source="codex",
            event_key=f"e{n}",
            timestamp=START + timedelta(minutes=30 * n + 1),
            model="gpt-5-codex",
            session_id="secret-session",
            project="/home/alice/secret-project",
            input_tokens=100 + n,
            cached_input_tokens=10,
            output_tokens=5,
            reasoning_output_tokens=2,
        )
        for n in range(first, first + halves)
    ]
    support.store(ledger, {"codex": events}, clock(), {"codex": "first"})


class Server:
    """A scripted server: answers in order (the last one repeats) and records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers) or [httpx.Response(200, json=OK)]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record the request and give the next answer."""
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """Every request body, parsed."""
        return [orjson.loads(r.content) for r in self.requests]


def uploader(server: Server, sleeps: list[float], **policy: Any) -> Uploader:
    """An uploader over the scripted server that records its sleeps instead of sleeping."""
    return Uploader(
        LOGIN,
        transport=httpx.MockTransport(server),
        sleep=sleeps.append,
        rand=lambda: 0.5,
        policy=RetryPolicy(**policy),
        wall_clock=lambda: 1_000_000.0,
    )


def run(ledger: LocalLedger, clock: Clock, client: Uploader, **options: Any) -> Any:
    """Push with the test clock."""
    return push(ledger, LOGIN, clock=clock, uploader=client, **options)


def error(status: int, code: str, **headers: str) -> httpx.Response:
    """An error response in the server's one error shape."""
    body = {"error": {"code": code, "message": f"{code} message", "request_id": "r", "details": []}}
    return httpx.Response(status, json=body, headers=headers)


def test_pending_buckets_go_out_in_batches_of_at_most_500(
    ledger: LocalLedger, clock: Clock
) -> None:
    """1,200 buckets take three batches of 500, 500 and 200, each under 1 MiB (schema v2:
    plain Codex requests have no v3 counts)."""
    add_usage(ledger, clock, 1200)
    server, sleeps = Server(), []
    summary = run(ledger, clock, uploader(server, sleeps))
    assert [len(b["buckets"]) for b in server.bodies] == [500, 500, 200]
    assert all(b["schema_version"] == 2 for b in server.bodies)
    assert all(len(r.content) <= 1024 * 1024 for r in server.requests)
    assert (summary.batches, summary.buckets) == (3, 1200)
    assert ledger.db.read(lambda conn: count_pending(conn, ledger)) == 0


def test_a_byte_limit_splits_batches_too(ledger: LocalLedger, clock: Clock) -> None:
    """With a 20 kB limit, every body stays under it and nothing is lost."""
    add_usage(ledger, clock, 300)
    server, sleeps = Server(), []
    run(ledger, clock, uploader(server, sleeps), max_bytes=20_000)
    assert len(server.requests) > 1
    assert all(len(r.content) <= 20_000 for r in server.requests)
    assert sum(len(b["buckets"]) for b in server.bodies) == 300


def test_each_batch_carries_a_key_derived_from_its_bytes(ledger: LocalLedger, clock: Clock) -> None:
    """Idempotency-Key is a SHA-256 of the body, and the token goes in Authorization."""
    add_usage(ledger, clock, 3)
    server, sleeps = Server(), []
    run(ledger, clock, uploader(server, sleeps))
    request = server.requests[0]
    digest = hashlib.sha256(request.content).hexdigest()
    assert request.headers["Idempotency-Key"] == f"ul-push-{digest}"
    assert request.headers["Authorization"] == "Bearer ul_dev_secret"
    assert request.headers["Content-Type"] == "application/json"
    assert request.url == "http://ledger.test/v1/ingest"


def test_pushing_twice_uploads_nothing_new(ledger: LocalLedger, clock: Clock) -> None:
    """The second push sends no request at all."""
    add_usage(ledger, clock, 10)
    server, sleeps = Server(), []
    run(ledger, clock, uploader(server, sleeps))
    again = run(ledger, clock, uploader(server, sleeps))
    assert len(server.requests) == 1
    assert (again.pending, again.batches) == (0, 0)


def test_only_changed_buckets_are_sent_again(ledger: LocalLedger, clock: Clock) -> None:
    """After new usage in one half-hour, the next push sends exactly that bucket."""
    add_usage(ledger, clock, 10)
    server, sleeps = Server(), []
    run(ledger, clock, uploader(server, sleeps))
    add_usage(ledger, clock, 1, first=40)
    run(ledger, clock, uploader(server, sleeps))
    assert [len(b["buckets"]) for b in server.bodies] == [10, 1]


def test_5xx_is_retried_with_backoff_and_the_same_key(ledger: LocalLedger, clock: Clock) -> None:
    """Two 503s then a 200: three identical requests, sleeping 0.375 s and 0.75 s."""
    add_usage(ledger, clock, 2)
    server = Server(
        error(503, "DATABASE_UNAVAILABLE"),
        error(503, "DATABASE_UNAVAILABLE"),
        httpx.Response(200, json=OK),
    )
    sleeps: list[float] = []
    summary = run(ledger, clock, uploader(server, sleeps))
    assert len(server.requests) == 3
    assert len({r.content for r in server.requests}) == 1
    assert len({r.headers["Idempotency-Key"] for r in server.requests}) == 1
    assert sleeps == [0.375, 0.75]
    assert summary.attempts == 3


def test_backoff_grows_exponentially_up_to_its_ceiling() -> None:
    """Half fixed, half jitter: ceilings 0.5, 1, 2, 4 … capped at max_delay."""
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.backoff(n, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("7", 7.0),
        (format_datetime(datetime.fromtimestamp(1_000_012, UTC), usegmt=True), 12.0),
    ],
)
def test_429_waits_for_retry_after(
    ledger: LocalLedger, clock: Clock, header: str, wait: float
) -> None:
    """Retry-After in seconds or as an HTTP date is honoured before the retry."""
    add_usage(ledger, clock, 2)
    server = Server(
        error(429, "RATE_LIMITED", **{"Retry-After": header}), httpx.Response(200, json=OK)
    )
    sleeps: list[float] = []
    run(ledger, clock, uploader(server, sleeps))
    assert sleeps == [wait]
    assert len(server.requests) == 2


def test_a_huge_retry_after_is_capped(ledger: LocalLedger, clock: Clock) -> None:
    """A Retry-After of a day waits at most max_retry_after."""
    add_usage(ledger, clock, 1)
    server = Server(
        error(503, "DATABASE_TIMEOUT", **{"Retry-After": "86400"}), httpx.Response(200, json=OK)
    )
    sleeps: list[float] = []
    run(ledger, clock, uploader(server, sleeps, max_retry_after=60.0))
    assert sleeps == [60.0]


def test_network_errors_are_retried(ledger: LocalLedger, clock: Clock) -> None:
    """A refused connection and a read timeout are retried like a 503."""
    add_usage(ledger, clock, 1)
    server = Server(
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200, json=OK)
    )
    sleeps: list[float] = []
    summary = run(ledger, clock, uploader(server, sleeps))
    assert len(server.requests) == 3
    assert summary.batches == 1


def test_an_in_flight_key_is_retried(ledger: LocalLedger, clock: Clock) -> None:
    """409 IDEMPOTENCY_KEY_IN_FLIGHT means our own earlier attempt still runs: wait and retry."""
    add_usage(ledger, clock, 1)
    server = Server(
        error(409, "IDEMPOTENCY_KEY_IN_FLIGHT", **{"Retry-After": "1"}),
        httpx.Response(200, json=OK),
    )
    sleeps: list[float] = []
    run(ledger, clock, uploader(server, sleeps))
    assert sleeps == [1.0]


def test_it_gives_up_after_the_last_attempt_and_keeps_the_buckets_pending(
    ledger: LocalLedger, clock: Clock
) -> None:
    """Always 503: max_attempts requests, then PushError naming the code; nothing acknowledged."""
    add_usage(ledger, clock, 3)
    server, sleeps = Server(error(503, "DATABASE_UNAVAILABLE")), []
    with pytest.raises(PushError) as raised:
        run(ledger, clock, uploader(server, sleeps, max_attempts=4))
    assert len(server.requests) == 4
    assert len(sleeps) == 3
    assert raised.value.code == "DATABASE_UNAVAILABLE"
    assert "gave up after 4 attempts" in raised.value.message
    assert ledger.db.read(lambda conn: count_pending(conn, ledger)) == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (422, "VALIDATION_FAILED"),
        (401, "UNAUTHENTICATED"),
        (403, "FORBIDDEN"),
        (413, "PAYLOAD_TOO_LARGE"),
    ],
)
def test_a_4xx_stops_at_once_naming_the_servers_code(
    ledger: LocalLedger, clock: Clock, status: int, code: str
) -> None:
    """A client error is not retried; batches acknowledged before it stay acknowledged."""
    add_usage(ledger, clock, 7)
    server = Server(httpx.Response(200, json=OK), error(status, code))
    sleeps: list[float] = []
    with pytest.raises(PushError) as raised:
        run(ledger, clock, uploader(server, sleeps), max_buckets=5)
    assert len(server.requests) == 2
    assert sleeps == []
    assert (raised.value.status, raised.value.code) == (status, code)
    assert code in raised.value.message
    assert "batch 2" in raised.value.message
    assert ledger.db.read(lambda conn: count_pending(conn, ledger)) == 2


def test_an_error_that_is_not_ours_still_names_the_status(
    ledger: LocalLedger, clock: Clock
) -> None:
    """A proxy's HTML 404 stops the push with HTTP_404."""
    add_usage(ledger, clock, 1)
    server, sleeps = Server(httpx.Response(404, text="<html>nope</html>")), []
    with pytest.raises(PushError) as raised:
        run(ledger, clock, uploader(server, sleeps))
    assert raised.value.code == "HTTP_404"


def test_buckets_outside_the_servers_bounds_are_held_back(
    ledger: LocalLedger, clock: Clock
) -> None:
    """Usage dated before 2020 or in the future is not sent (the server would refuse the batch)."""
    add_usage(ledger, clock, 2)
    old = UsageEvent(
        source="codex",
        event_key="old",
        timestamp=datetime(2019, 5, 1, tzinfo=UTC),
        model="gpt-5",
        session_id="s",
        project=None,
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
    )
    support.store(ledger, {"codex": [old]}, clock(), {"codex": "first"})
    server, sleeps = Server(), []
    summary = run(ledger, clock, uploader(server, sleeps))
    assert (summary.buckets, summary.held_back) == (2, 1)


def test_the_wire_carries_no_project_session_or_identity(ledger: LocalLedger, clock: Clock) -> None:
    """Projects and sessions stay local: the schema has no such field and no body mentions them."""
    assert not {"project", "session_id", "user_id", "device_id"} & set(BucketV3.model_fields)
    schemas = {2: BucketV2, 3: BucketV3}
    add_usage(ledger, clock, 5)
    server, sleeps = Server(), []
    run(ledger, clock, uploader(server, sleeps))
    raw = b"".join(r.content for r in server.requests)
    assert b"secret-project" not in raw
    assert b"secret-session" not in raw
    for body in server.bodies:
        assert set(body) == {"schema_version", "buckets"}
        for bucket in body["buckets"]:
            assert set(bucket) == set(schemas[body["schema_version"]].model_fields)


def test_the_client_has_timeouts() -> None:
    """Connect and read timeouts are set (no push hangs forever)."""
    client = Uploader(LOGIN)
    try:
        assert client.client.timeout == TIMEOUT
        assert TIMEOUT.connect is not None
        assert TIMEOUT.read is not None
    finally:
        client.close()
