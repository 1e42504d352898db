"""Our evidence is complete: every evidence line carries the eight fields, and its upstream fields
cover every database call of the request (connect, the token lookup, the Idempotency-Key
claim, every statement, COMMIT), measured on real requests to the real server."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.faults.conftest import PG_PORT, ROUND_TRIP_S, Rig, db_url
from usageledger import attribution
from usageledger.errors import DatabaseError, ErrorCode
from usageledger.evidence import REQUIRED_FIELDS, EvidenceLogger, job
from usageledger.store.engine import Database, make_engine, track_db

# Fault injection waits out real stalls: slow, so `make test-fast` leaves it to `make test`.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def verdict(line: dict[str, object]) -> attribution.Attribution:
    """The attribution of one evidence line, read back the way `usageledger attribute` reads it."""
    parsed = attribution.parse_line(orjson.dumps(line))
    assert isinstance(parsed, attribution.EvidenceLine)
    return attribution.classify(parsed)


def test_every_request_writes_one_line_with_the_eight_fields(rig: Rig, alice: Persona) -> None:
    """Successes, refusals and unmatched routes each write exactly one complete line."""
    body = batch(bucket())
    rig.request("GET", "/healthz")
    rig.request("GET", "/no/such/endpoint")
    rig.request("POST", "/v1/ingest", json=body)
    rig.request("POST", "/v1/ingest", json=body, headers={"Authorization": "Bearer ul_nope"})
    rig.request("POST", "/v1/ingest", json=body, headers=alice.headers(read=True))
    rig.request("POST", "/v1/ingest", content=b"x", headers=alice.headers())
    rig.request(
        "POST",
        "/v1/ingest",
        content=b"{not json",
        headers={"Content-Type": "application/json", **alice.headers()},
    )
    rig.ingest(alice, {"schema_version": 2, "buckets": [{"nope": 1}]})
    rig.ingest(alice, body)
    rig.ingest(alice, body, **{"Idempotency-Key": "k-1"})
    rig.ingest(alice, body, **{"Idempotency-Key": "k-1"})
    for request_id in rig.sent:
        line = rig.evidence_line(request_id)
        assert set(REQUIRED_FIELDS) <= set(line)
    lines = rig.evidence_lines()
    assert sorted(line["request_id"] for line in lines) == sorted(rig.sent)
    with rig.evidence_path.open("rb") as stream:
        report = attribution.report(attribution.analyze(attribution.read_lines(stream)))
    assert report["coverage"]["complete"] == len(rig.sent) == report["lines"]


def test_a_request_that_never_reached_the_database_has_a_null_upstream(rig: Rig) -> None:
    """A missing token and an unknown route make no database call, so no one is blamed."""
    missing = rig.request("POST", "/v1/ingest", json=batch(bucket()))
    unmatched = rig.request("GET", "/no/such/endpoint")
    assert (missing.status_code, unmatched.status_code) == (401, 404)
    for response in (missing, unmatched):
        line = rig.evidence_line(response.headers["x-request-id"])
        assert line["upstream_status"] is None
        assert line["upstream_latency_ms"] is None
        assert verdict(line).rule == attribution.Rule.NO_UPSTREAM_STATUS


def test_an_unknown_token_is_looked_up_in_the_database(rig: Rig) -> None:
    """A 401 for an unknown token reports the lookup it made: upstream 200, so `application`."""
    response = rig.request(
        "POST", "/v1/ingest", json=batch(bucket()), headers={"Authorization": "Bearer ul_nope"}
    )
    assert response.status_code == 401
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["upstream_status"]) == (
        401,
        "UNAUTHENTICATED",
        200,
    )
    assert 0 < line["upstream_latency_ms"] <= line["latency_ms"]
    assert verdict(line).verdict == attribution.Verdict.APPLICATION


def test_an_ingest_reports_its_database_time(rig: Rig, alice: Persona) -> None:
    """An accepted batch has upstream 200 and a database time within the request's time."""
    response = rig.ingest(alice, batch(bucket(), bucket(slot=1)), **{"Idempotency-Key": "k"})
    assert response.status_code == 200
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["upstream_status"]) == (200, None, 200)
    assert 0 < line["upstream_latency_ms"] <= line["latency_ms"]


def test_database_time_counts_every_round_trip(rig: Rig, alice: Persona) -> None:
    """With 50 ms added each way, a keyed ingest's round trips (the token lookup, the claim and
    the batch's transaction: at least sixteen) show up as at least 1.6 s of upstream time."""
    rig.proxy.latency(0.05)
    response = rig.ingest(alice, batch(bucket()), **{"Idempotency-Key": "slow-1"})
    assert response.status_code == 200
    line = rig.evidence_line(response.headers["x-request-id"])
    assert line["upstream_status"] == 200
    assert 16 * 2 * 50 <= line["upstream_latency_ms"] <= line["latency_ms"]


def test_a_stalled_idempotency_claim_is_counted(rig: Rig, alice: Persona) -> None:
    """A claim whose COMMIT is never answered is a 504 whose upstream time covers the wait."""
    rig.proxy.stall_on(b"INSERT INTO ingest_receipts", b"COMMIT")
    response = rig.ingest(alice, batch(bucket()), **{"Idempotency-Key": "claim-1"})
    assert response.status_code == 504
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["upstream_status"], line["error_code"]) == (504, "DATABASE_TIMEOUT")
    assert ROUND_TRIP_S * 1000 <= line["upstream_latency_ms"] <= line["latency_ms"]
    assert rig.proxy.fired == 1


def test_a_stalled_commit_is_counted(rig: Rig, alice: Persona) -> None:
    """The batch's COMMIT never answered is a 504 whose upstream time covers the wait."""
    rig.proxy.stall_on(b"DELETE FROM usage_daily", b"COMMIT")
    response = rig.ingest(alice, batch(bucket()))
    assert response.status_code == 504
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["upstream_status"], line["error_code"]) == (504, "DATABASE_TIMEOUT")
    assert ROUND_TRIP_S * 1000 <= line["upstream_latency_ms"] <= line["latency_ms"]


def test_a_reset_during_commit_is_counted(rig: Rig, alice: Persona) -> None:
    """A connection lost at COMMIT (and again on the one retry) is upstream 503."""
    rig.proxy.reset_on(b"DELETE FROM usage_daily", b"COMMIT")
    response = rig.ingest(alice, batch(bucket()))
    assert response.status_code == 503
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["upstream_status"], line["error_code"]) == (503, "DATABASE_UNAVAILABLE")
    assert rig.proxy.fired == 2  # the first attempt and the retry


def test_a_refused_connection_is_counted(rig: Rig, alice: Persona) -> None:
    """With the database down, the failed connects (pool checkout) are upstream 503."""
    rig.proxy.down()
    response = rig.ingest(alice, batch(bucket()))
    assert response.status_code == 503
    line = rig.evidence_line(response.headers["x-request-id"])
    assert (line["upstream_status"], line["error_code"]) == (503, "DATABASE_UNAVAILABLE")
    assert 0 <= line["upstream_latency_ms"] <= line["latency_ms"]


def test_an_exhausted_pool_is_counted_as_a_timeout(faults_db: str) -> None:
    """No free connection within the pool timeout is upstream 504 after waiting for it."""
    engine = make_engine(db_url(faults_db, PG_PORT), statement_timeout_ms=1000, pool_size=1)
    db = Database(engine, retries=0)
    held = [engine.connect(), engine.connect()]  # the pool and its overflow
    try:
        with track_db() as stats, pytest.raises(DatabaseError) as raised:
            db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
    assert (raised.value.status, raised.value.code) == (504, ErrorCode.DATABASE_TIMEOUT)
    assert stats.worst_status == 504
    assert stats.elapsed_ms >= 1000


def test_job_lines_carry_the_eight_fields_and_their_database_evidence(
    rig: Rig, tmp_path: Path
) -> None:
    """A job run writes one complete line: upstream 200 when it used the database, 503 when
    the database was down, null when it never touched it."""
    path = tmp_path / "jobs.log"
    logger = EvidenceLogger(str(path))
    engine = make_engine(db_url(rig.direct.url.database or "", rig.proxy.port), pool_size=1)
    db = Database(engine, retries=0)
    try:
        with job(logger, "probe"):
            db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        rig.proxy.down()
        with pytest.raises(DatabaseError), job(logger, "probe"):
            db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        with job(logger, "no_database"):
            pass
        rig.proxy.healthy()

        def stopped_by_ctrl_c() -> None:
            with job(logger, "interrupted"):
                db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            stopped_by_ctrl_c()

        def exits(code: int | None) -> None:
            with job(logger, f"exit_{code}"):
                raise SystemExit(code)

        for code in (0, None, 1):
            with pytest.raises(SystemExit):
                exits(code)
    finally:
        engine.dispose()
        logger.close()
    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    assert all(set(REQUIRED_FIELDS) <= set(line) for line in lines)
    assert [(x["status"], x["error_code"], x["upstream_status"]) for x in lines] == [
        (200, None, 200),
        (503, "DATABASE_UNAVAILABLE", 503),
        (200, None, None),
        (500, "INTERRUPTED", 200),
        (200, None, None),  # exit(0) and exit() inside a job are a finished job
        (200, None, None),
        (500, "INTERRUPTED", None),  # a failing exit is not
    ]
    assert verdict(lines[1]).verdict == attribution.Verdict.VENDOR
    # A job stopped half-way is never a success; the database had answered, so it is ours.
    assert verdict(lines[3]).verdict == attribution.Verdict.APPLICATION
