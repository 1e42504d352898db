"""Push sends each batch in the lowest schema that carries it, and names an old server.

A bucket whose schema v3 counts are all 0 goes out as v2, which every server reads; a bucket
with one-hour writes, a long-context or fast request or a web search needs v3. Against the
real server (loopback) both arrive with their counts; against a server older than v3 (its
answer to a v3 batch, as that release wrote it) the v2 buckets arrive first and the push
stops with one line saying the server must be upgraded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.tracker import support
from tests.tracker.conftest import Clock, LiveServer
from tests.tracker.test_push_server import buckets_of
from usageledger.buckets import COUNT_COLUMNS
from usageledger.sources import UsageEvent
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import Login
from usageledger.tracker.push import PushError, Uploader, push

START = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)  # before the test clock


def event(n: int, **extra: Any) -> UsageEvent:
    """A Claude response in half-hour ``n`` after START."""
    return UsageEvent(
        source="claude",
        event_key=f"m{n}:r{n}",
        timestamp=START + timedelta(minutes=30 * n + 5),
        model="claude-sonnet-4-5",
        session_id="s",
        project="/p",
        input_tokens=1_000,
        cached_input_tokens=100,
        output_tokens=50,
        **extra,
    )


def store(ledger: LocalLedger, clock: Clock, events: list[UsageEvent]) -> None:
    """Store events in the local ledger (buckets follow)."""
    support.store(ledger, {"claude": events}, clock(), {"claude": "max"})


class Recording(httpx.BaseTransport):
    """The real HTTP transport, keeping each request body it sends."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Record and forward."""
        self.bodies.append(orjson.loads(request.read()))
        return self.inner.handle_request(request)

    def close(self) -> None:
        """Close the real transport."""
        self.inner.close()


MIXED = [
    event(0),
    event(1, web_search_requests=2),
    event(2),
    event(3, cache_write_tokens=400, cache_write_1h_tokens=400),
]


def test_each_batch_goes_in_the_lowest_schema_it_needs(
    live_server: LiveServer, ledger: LocalLedger, clock: Clock
) -> None:
    """Two plain buckets go as one v2 batch (six counts each), the two that need v3 as one
    v3 batch; the server stores all four with their counts (2 searches, 400 one-hour
    writes)."""
    store(ledger, clock, MIXED)
    transport = Recording()
    login = Login(live_server.url, live_server.token, 1)
    client = Uploader(login, transport=transport)
    try:
        summary = push(ledger, login, clock=clock, uploader=client)
    finally:
        client.close()
    assert summary.buckets == 4
    assert [(b["schema_version"], len(b["buckets"])) for b in transport.bodies] == [(2, 2), (3, 2)]
    assert all("cache_write_1h_tokens" not in b for b in transport.bodies[0]["buckets"])
    stored = buckets_of(live_server.engine, live_server.user_id)
    assert len(stored) == 4
    searches = COUNT_COLUMNS.index("web_search_requests")
    one_hour = COUNT_COLUMNS.index("cache_write_1h_tokens")
    assert sorted(v[searches] for v in stored.values()) == [0, 0, 0, 2]
    assert sorted(v[one_hour] for v in stored.values()) == [0, 0, 0, 400]


def test_a_server_older_than_v3_gets_what_it_reads_and_the_push_says_to_upgrade(
    ledger: LocalLedger, clock: Clock
) -> None:
    """The release before v3 answers a v3 batch with 422 UNSUPPORTED_SCHEMA_VERSION
    ("supported: 1, 2"); the v2 batch before it is acknowledged, and the error is one line."""
    store(ledger, clock, MIXED)
    seen: list[int] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        version = orjson.loads(request.read())["schema_version"]
        seen.append(version)
        if version == 3:
            message = "unsupported schema_version 3; supported: 1, 2"
            return httpx.Response(
                422,
                json={
                    "error": {
                        "code": "UNSUPPORTED_SCHEMA_VERSION",
                        "message": message,
                        "request_id": "r",
                        "details": [{"loc": "schema_version", "message": "must be 1 or 2"}],
                    }
                },
            )
        return httpx.Response(
            200,
            json={
                "request_id": "r",
                "inserted": 2,
                "updated": 0,
                "unchanged": 0,
                "stale": 0,
                "conflicts": 0,
            },
        )

    login = Login("http://old.test", "ul_dev_secret", 1)
    client = Uploader(login, transport=httpx.MockTransport(old_server), sleep=lambda _: None)
    with pytest.raises(PushError) as caught:
        push(ledger, login, clock=clock, uploader=client)
    client.close()
    assert seen == [2, 3]
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the server at http://old.test does not read schema v3")
    assert "upgrade the server" in message
    assert "(2 buckets were acknowledged before it)" in message
    assert caught.value.code == "UNSUPPORTED_SCHEMA_VERSION"
