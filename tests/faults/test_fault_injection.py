"""Fault injection, proven: the real server over a real PostgreSQL behind a faulty network.

For every database fault the client gets a 503 or 504 with the documented code and a
Retry-After (never a hang, never a 500 with database text), the batch is all or nothing,
retrying once the database is healthy again converges to the exact totals, and
`usageledger attribute` blames the vendor. A bug of ours is blamed on the application, a
slow handler over a fast database is an application bottleneck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.faults.conftest import INTERNALS, ROUND_TRIP_S, Rig
from tests.faults.proxy import FaultProxy
from tests.helpers import bucket_rows, daily_rows, expected_daily, written_rows
from usageledger import attribution
from usageledger.buckets import COUNT_COLUMNS
from usageledger.cli.root import main
from usageledger.ledger.ingest import apply_batch
from usageledger.wire import parse_ingest

# Fault injection waits out real stalls: slow, so `make test-fast` leaves it to `make test`.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: The first batch (four buckets), accepted while the database is healthy.
FIRST = batch(*(bucket(slot=i, inp=100 + i) for i in range(4)))
#: The batch sent during the fault: two updates of the first batch's buckets, two new ones.
SECOND = batch(*(bucket(slot=i, inp=1000 + i, revision=2) for i in range(2, 6)))
#: `--slow-ms` for the verdicts: every healthy request here is far faster.
SLOW_MS = 1000
#: How long the slow handler dawdles: its database time stays far below a fifth of it.
HANDLER_DELAY_S = 2.5
#: Where ingest looks up the functions a test replaces with a buggy or slow one.
RECEIPTS = "usageledger.ledger.receipts."


@dataclass(frozen=True)
class Scenario:
    """A database fault, and what the client and the evidence line must show for it."""

    name: str
    inject: Callable[[FaultProxy], None]
    status: int
    code: str
    upstream: int
    key: bool = False  # send the batch with an Idempotency-Key


SCENARIOS = [
    Scenario(
        "stall mid-transaction",
        lambda proxy: proxy.stall_on(b"DELETE FROM usage_daily"),
        504,
        "DATABASE_TIMEOUT",
        504,
        key=True,
    ),
    Scenario(
        "stall at commit",
        lambda proxy: proxy.stall_on(b"DELETE FROM usage_daily", b"COMMIT"),
        504,
        "DATABASE_TIMEOUT",
        504,
    ),
    Scenario(
        "reset mid-transaction",
        lambda proxy: proxy.reset_on(b"DELETE FROM usage_daily"),
        503,
        "DATABASE_UNAVAILABLE",
        503,
        key=True,
    ),
    Scenario(
        "reset at commit",
        lambda proxy: proxy.reset_on(b"DELETE FROM usage_daily", b"COMMIT"),
        503,
        "DATABASE_UNAVAILABLE",
        503,
    ),
    Scenario("database down", FaultProxy.down, 503, "DATABASE_UNAVAILABLE", 503, key=True),
    Scenario(
        "database slower than the deadline",
        lambda proxy: proxy.latency(ROUND_TRIP_S + 0.5),
        504,
        "DATABASE_TIMEOUT",
        504,
    ),
]


def epoch(stamp: str) -> int:
    """Seconds since the epoch of an ISO 8601 ``...Z`` timestamp."""
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def expected_buckets(*batches: dict[str, Any]) -> dict[tuple[str, str, int], tuple[int, ...]]:
    """(source, model, start) → (revision, *counts) after applying ``batches`` in order."""
    facts: dict[tuple[str, str, int], tuple[int, ...]] = {}
    for body in batches:
        for item in body["buckets"]:
            key = (item["source"], item["model"], epoch(item["bucket_start"]))
            facts[key] = (item["revision"], *(item.get(c, 0) for c in COUNT_COLUMNS))
    return facts


def stored_buckets(rig: Rig) -> dict[tuple[str, str, int], tuple[int, ...]]:
    """``usage_buckets`` as (source, model, start) → (revision, *counts), around the proxy."""
    return {key[2:]: value for key, value in bucket_rows(rig.direct).items()}


def assert_database_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented error: status, code, Retry-After, the one shape, no internals."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert int(response.headers["retry-after"]) > 0
    text = response.text.lower()
    assert not [word for word in INTERNALS if word in text], response.text


def verdict_of(line: dict[str, Any], slow_ms: float = SLOW_MS) -> attribution.Attribution:
    """The attribution of one evidence line, read back the way `usageledger attribute` reads it."""
    parsed = attribution.parse_line(orjson.dumps(line))
    assert isinstance(parsed, attribution.EvidenceLine)
    return attribution.classify(parsed, slow_ms=slow_ms)


def retry_until_accepted(
    rig: Rig, who: Persona, body: dict[str, Any], headers: dict[str, str], attempts: int = 40
) -> httpx.Response:
    """What a well-behaved client does once the database is back: retry until accepted."""
    for _ in range(attempts):
        response = rig.ingest(who, body, **headers)
        if response.status_code == 200:
            return response
        # A lock or an in-flight claim left by the dropped connection clears within seconds.
        assert response.status_code in (409, 503, 504), response.text
        time.sleep(0.25)
    raise AssertionError(f"not accepted after {attempts} attempts")


def assert_exact_totals(rig: Rig, who: Persona) -> None:
    """The ledger holds exactly the two batches: facts, daily rollups, revisions, receipts."""
    assert stored_buckets(rig) == expected_buckets(FIRST, SECOND)
    daily = daily_rows(rig.direct)
    assert daily
    assert daily == expected_daily(rig.direct, {who.user_id: "Europe/Berlin"})
    revisions, buckets, _, receipts_written = written_rows(rig.direct)
    assert (revisions, buckets, receipts_written) == (8, 6, 2)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_database_fault_is_a_clean_retryable_error_blamed_on_the_vendor(
    rig: Rig, alice: Persona, scenario: Scenario
) -> None:
    """The client gets the documented 503/504, nothing is half-written, a retry once the
    database is back converges to the exact totals, and the verdict is `vendor`."""
    headers = {"Idempotency-Key": f"second-{scenario.name}"} if scenario.key else {}
    assert rig.ingest(alice, FIRST).status_code == 200
    before = rig.snapshot()

    scenario.inject(rig.proxy)
    failed = rig.ingest(alice, SECOND, **headers)
    rig.proxy.healthy()

    assert_database_error(failed, scenario.status, scenario.code)
    rig.wait_for_backends_to_settle()
    assert rig.snapshot() == before  # all or nothing: nothing of the batch, no stray receipt
    line = rig.evidence_line(failed.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["upstream_status"]) == (
        scenario.status,
        scenario.code,
        scenario.upstream,
    )
    assert 0 <= line["upstream_latency_ms"] <= line["latency_ms"]
    assert verdict_of(line).verdict == attribution.Verdict.VENDOR

    accepted = retry_until_accepted(rig, alice, SECOND, headers)
    assert accepted.json()["inserted"] + accepted.json()["updated"] == 4
    assert_exact_totals(rig, alice)


def test_a_reset_the_one_retry_absorbs_is_a_success_with_the_evidence_kept(
    rig: Rig, alice: Persona
) -> None:
    """A connection lost once mid-transaction is retried on a fresh one: the client gets 200,
    the batch is applied once, and the evidence line still shows the upstream's 503 (verdict ok)."""
    assert rig.ingest(alice, FIRST).status_code == 200
    rig.proxy.reset_on(b"DELETE FROM usage_daily", times=1)
    response = rig.ingest(alice, SECOND)
    assert response.status_code == 200, response.text
    assert rig.proxy.fired == 1
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["status"], line["upstream_status"]) == (200, 503)
    assert verdict_of(line).verdict == attribution.Verdict.OK
    assert_exact_totals(rig, alice)


@pytest.mark.parametrize(
    "key",
    [False, True],
    ids=["without key", "with key"],
)
def test_a_lost_commit_acknowledgement_is_absorbed_by_the_retry(
    rig: Rig, alice: Persona, key: bool
) -> None:
    """The server commits but its answer is lost: the one retry re-applies the batch, which
    changes nothing, so the client gets 200 and the ledger holds the batch exactly once."""
    headers = {"Idempotency-Key": "lost-ack"} if key else {}
    assert rig.ingest(alice, FIRST).status_code == 200
    rig.proxy.cut_after(b"DELETE FROM usage_daily", b"COMMIT", times=1)
    response = rig.ingest(alice, SECOND, **headers)
    rig.proxy.healthy()
    assert rig.proxy.fired == 1
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (response.status_code, line["upstream_status"]) == (200, 503), response.text
    assert verdict_of(line).verdict == attribution.Verdict.OK
    assert_exact_totals(rig, alice)


def test_a_bug_in_the_handler_is_blamed_on_the_application(
    rig: Rig, alice: Persona, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception of ours is a 500 without internals, rolls the batch back, and is
    `application`: the database answered every call."""
    assert rig.ingest(alice, FIRST).status_code == 200
    before = rig.snapshot()
    calls = []

    def buggy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected application bug")
        return apply_batch(*args, **kwargs)

    monkeypatch.setattr(RECEIPTS + "apply_batch", buggy)
    failed = rig.ingest(alice, SECOND, **{"Idempotency-Key": "bug-1"})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "injected" not in failed.text
    assert "RuntimeError" not in failed.text
    assert rig.snapshot() == before
    line = rig.evidence_line(failed.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["upstream_status"]) == (
        500,
        "INTERNAL_ERROR",
        200,
    )
    assert verdict_of(line).verdict == attribution.Verdict.APPLICATION

    retry_until_accepted(rig, alice, SECOND, {"Idempotency-Key": "bug-1"})
    assert_exact_totals(rig, alice)


def test_a_slow_handler_over_a_fast_database_is_an_application_bottleneck(
    rig: Rig, alice: Persona, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seconds spent outside the database make a slow request whose upstream share is small:
    `app_bottleneck`."""

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(HANDLER_DELAY_S)
        return parse_ingest(*args, **kwargs)

    monkeypatch.setattr(RECEIPTS + "parse_ingest", slow)
    response = rig.ingest(alice, FIRST)
    assert response.status_code == 200
    line = rig.evidence_line(response.headers["x-request-id"])
    assert line["latency_ms"] >= HANDLER_DELAY_S * 1000
    assert line["upstream_status"] == 200
    assert verdict_of(line).verdict == attribution.Verdict.APP_BOTTLENECK


def test_a_slow_database_is_never_an_application_bottleneck(rig: Rig, alice: Persona) -> None:
    """Latency added in the database makes a slow request whose time is the upstream's: no
    rule blames the application for it."""
    rig.proxy.latency(0.05)
    response = rig.ingest(alice, FIRST)
    assert response.status_code == 200
    line = rig.evidence_line(response.headers["x-request-id"])
    attributed = verdict_of(line, slow_ms=500)
    assert line["latency_ms"] >= 500
    assert (attributed.verdict, attributed.rule) == (
        attribution.Verdict.UNKNOWN,
        attribution.Rule.NO_RULE,
    )


def test_usageledger_attribute_gives_every_scenario_its_verdict(
    rig: Rig, alice: Persona, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over one server log holding every scenario, both `attribution.analyze` and the
    `usageledger attribute` command give each request its expected verdict."""
    expected: dict[str, tuple[int, str]] = {}

    def send(verdict: str, status: int, response: httpx.Response) -> None:
        assert response.status_code == status, response.text
        expected[response.headers["x-request-id"]] = (status, verdict)

    send("ok", 200, rig.ingest(alice, FIRST))
    send("unknown", 401, rig.request("POST", "/v1/ingest", json=FIRST))
    send(
        "application",
        401,
        rig.request("POST", "/v1/ingest", json=FIRST, headers={"Authorization": "Bearer x"}),
    )
    for scenario in SCENARIOS:
        scenario.inject(rig.proxy)
        send("vendor", scenario.status, rig.ingest(alice, SECOND))
        rig.proxy.healthy()
        rig.wait_for_backends_to_settle()
    rig.proxy.reset_on(b"DELETE FROM usage_daily", times=1)
    send("ok", 200, rig.ingest(alice, SECOND))
    rig.proxy.healthy()

    def buggy(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected application bug")

    monkeypatch.setattr(RECEIPTS + "apply_batch", buggy)
    send("application", 500, rig.ingest(alice, FIRST))
    monkeypatch.setattr(RECEIPTS + "apply_batch", apply_batch)

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(HANDLER_DELAY_S)
        return parse_ingest(*args, **kwargs)

    monkeypatch.setattr(RECEIPTS + "parse_ingest", slow)
    send("app_bottleneck", 200, rig.ingest(alice, FIRST))
    monkeypatch.setattr(RECEIPTS + "parse_ingest", parse_ingest)

    for request_id in expected:
        rig.evidence_line(request_id)  # every line is written
    with rig.evidence_path.open("rb") as stream:
        analysis = attribution.analyze(
            attribution.read_lines(stream), attribution.Options(slow_ms=SLOW_MS)
        )
    analyzed = {line.request_id: (line.status, a.verdict.value) for line, a in analysis.lines}
    assert analyzed == expected

    result = CliRunner().invoke(
        main,
        ["attribute", str(rig.evidence_path), "--slow-ms", str(SLOW_MS), "--explain", "--json"],
    )
    assert result.exit_code == 0, result.output
    *explained, report = (orjson.loads(raw) for raw in result.output.splitlines())
    assert {e["request_id"]: e["verdict"] for e in explained} == {
        request_id: verdict for request_id, (_, verdict) in expected.items()
    }
    assert report["verdicts"] == {
        "ok": 2,
        "vendor": len(SCENARIOS),
        "application": 2,
        "app_bottleneck": 1,
        "unknown": 1,
    }
    assert report["coverage"]["complete"] == len(expected)
