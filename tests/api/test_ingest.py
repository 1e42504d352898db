"""POST /v1/ingest over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.conftest import Persona
from tests.factories import batch, bucket, iso
from tests.helpers import bucket_rows, daily_rows, evidence_lines, expected_daily, written_rows
from tests.test_wire import HOSTILE_STARTS
from usageledger.ledger import accounts
from usageledger.ledger.receipts import _sha256, idempotency_key_hash
from usageledger.store.engine import Database
from usageledger.store.tables import api_tokens, bucket_revisions, devices, ingest_receipts
from usageledger.wire import IngestResponse

pytestmark = pytest.mark.usefixtures("db_url")


def post(client: TestClient, who: Persona, body: Any, **headers: str) -> Any:
    """POST a batch as JSON with the persona's device token."""
    # The standard library encodes integers beyond 64 bits, which hostile clients send.
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/v1/ingest",
        content=raw,
        headers={"Content-Type": "application/json", **who.headers(), **headers},
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    return dict(error)


def test_it_inserts_a_bucket_and_reports_counts(client: TestClient, alice: Persona) -> None:
    """A new bucket is inserted and the response has every count and the request id."""
    response = post(client, alice, batch(bucket()))
    assert response.status_code == 200
    body = response.json()
    IngestResponse.model_validate(body)
    assert body["inserted"] == 1
    assert body["request_id"] == response.headers["x-request-id"]


def test_the_same_batch_sent_fifty_times_gives_the_facts_of_one(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Re-sending absolute totals is harmless: one revision per key, same facts."""
    body = batch(*(bucket(slot=i, inp=100 + i) for i in range(10)))
    first = post(client, alice, body).json()
    facts = bucket_rows(engine)
    for _ in range(49):
        again = post(client, alice, body).json()
        assert again["unchanged"] == 10
        assert again["inserted"] == 0
    assert first["inserted"] == 10
    assert bucket_rows(engine) == facts
    revisions, buckets, _, receipts = written_rows(engine)
    assert (revisions, buckets, receipts) == (10, 10, 50)


def test_thirty_two_concurrent_identical_uploads_give_one_row_per_key(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Concurrent duplicates never 5xx and never double count."""
    body = batch(*(bucket(slot=i) for i in range(20)))
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda _: post(client, alice, body).status_code, range(32)))
    assert statuses == [200] * 32
    assert len(bucket_rows(engine)) == 20
    revisions, _, _, _ = written_rows(engine)
    assert revisions == 20


def test_revisions_order_versions_of_a_bucket(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Newer revisions update, older ones are stale, equal revisions with new values conflict."""
    assert post(client, alice, batch(bucket(revision=10, inp=100))).json()["inserted"] == 1
    assert post(client, alice, batch(bucket(revision=20, inp=200))).json()["updated"] == 1
    assert post(client, alice, batch(bucket(revision=15, inp=999))).json()["stale"] == 1
    assert post(client, alice, batch(bucket(revision=20, inp=300))).json()["conflicts"] == 1
    assert post(client, alice, batch(bucket(revision=30, inp=200))).json()["unchanged"] == 1
    (value,) = bucket_rows(engine).values()
    assert value[0] == 20
    assert value[1] == 200


def test_within_a_batch_the_highest_revision_wins(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Two items for one key: the higher revision is applied, ties go to the later item."""
    body = batch(bucket(revision=5, inp=500), bucket(revision=3, inp=300))
    reply = post(client, alice, body).json()
    assert (reply["inserted"], reply["stale"], reply["updated"]) == (1, 1, 0)
    assert next(iter(bucket_rows(engine).values()))[1] == 500
    tie = batch(
        bucket(revision=9, inp=11, cache_write=0), bucket(revision=9, inp=22, cache_write=0)
    )
    assert post(client, alice, tie).json()["updated"] == 1
    assert next(iter(bucket_rows(engine).values()))[1] == 22


def test_a_missing_revision_means_the_receive_time(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Without a revision the server's receive time in ms orders the value."""
    before = int(datetime.now(UTC).timestamp() * 1000)
    post(client, alice, batch(bucket(revision=None)))
    (value,) = bucket_rows(engine).values()
    assert value[0] >= before


def test_rollups_equal_sums_of_buckets_by_local_day(
    client: TestClient, alice: Persona, bob: Persona, engine: Engine
) -> None:
    """usage_daily is the sum of usage_buckets by each user's local day."""
    start = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # across Berlin's DST change
    items = [bucket(start=start + timedelta(minutes=30 * i), inp=i + 1) for i in range(60)]
    post(client, alice, batch(*items))
    post(client, bob, batch(*items))
    zones = {alice.user_id: "Europe/Berlin", bob.user_id: "America/New_York"}
    assert daily_rows(engine) == expected_daily(engine, zones)


def test_a_read_token_cannot_upload(client: TestClient, alice: Persona) -> None:
    """A read token gets 403."""
    response = client.post(
        "/v1/ingest",
        content=orjson.dumps(batch(bucket())),
        headers={"Content-Type": "application/json", **alice.headers(read=True)},
    )
    assert_error(response, 403, "FORBIDDEN")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer ul_dev_nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000],
)
def test_a_missing_or_unknown_token_gets_401(client: TestClient, authorization: str | None) -> None:
    """No token, a malformed header or an unknown token: 401, nothing written."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.post("/v1/ingest", content=orjson.dumps(batch(bucket())), headers=headers)
    assert_error(response, 401, "UNAUTHENTICATED")


def revoke(engine: Engine, secret: str) -> None:
    """Revoke the token whose secret is ``secret``."""
    from usageledger.ledger.accounts import hash_secret, revoke_token

    with engine.begin() as conn:
        token_id = conn.execute(
            select(api_tokens.c.token_id).where(api_tokens.c.token_hash == hash_secret(secret))
        ).scalar_one()
        revoke_token(conn, token_id, now_ms=2)


def test_a_revoked_token_fails_at_once(client: TestClient, alice: Persona, engine: Engine) -> None:
    """Revocation takes effect on the next request."""
    assert post(client, alice, batch(bucket())).status_code == 200
    revoke(engine, alice.device_token)
    assert_error(post(client, alice, batch(bucket(slot=1))), 401, "UNAUTHENTICATED")


def _future() -> str:
    return iso(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2))


HOSTILE: list[tuple[str, Any, int, str]] = [
    ("unknown top-level field", {**batch(bucket()), "user_id": 7}, 422, "UNKNOWN_FIELD"),
    ("unknown bucket field", batch(bucket(device_id=3)), 422, "UNKNOWN_FIELD"),
    ("v2 field in v1", batch(bucket(), version=1), 422, "UNKNOWN_FIELD"),
    ("unsupported version", batch(bucket(), version=4), 422, "UNSUPPORTED_SCHEMA_VERSION"),
    (
        "version as string",
        {**batch(bucket()), "schema_version": "2"},
        422,
        "UNSUPPORTED_SCHEMA_VERSION",
    ),
    (
        "version as bool",
        {**batch(bucket()), "schema_version": True},
        422,
        "UNSUPPORTED_SCHEMA_VERSION",
    ),
    ("missing version", {"buckets": [bucket()]}, 422, "UNSUPPORTED_SCHEMA_VERSION"),
    (
        "misaligned start",
        batch(bucket(bucket_start="2026-11-01T10:15:00Z")),
        422,
        "BUCKET_START_INVALID",
    ),
    (
        "seconds in start",
        batch(bucket(bucket_start="2026-11-01T10:00:01Z")),
        422,
        "BUCKET_START_INVALID",
    ),
    ("naive start", batch(bucket(bucket_start="2026-11-01T10:00:00")), 422, "BUCKET_START_INVALID"),
    ("garbage start", batch(bucket(bucket_start="yesterday")), 422, "BUCKET_START_INVALID"),
    (
        "before the floor",
        batch(bucket(bucket_start="2001-01-01T00:00:00Z")),
        422,
        "BUCKET_START_INVALID",
    ),
    ("negative count", batch(bucket(inp=-1)), 422, "VALIDATION_FAILED"),
    (
        "fractional count",
        batch(bucket(input_tokens=1.5, total_tokens=71.5)),
        422,
        "VALIDATION_FAILED",
    ),
    ("string count", batch(bucket(input_tokens="100")), 422, "VALIDATION_FAILED"),
    ("boolean count", batch(bucket(output_tokens=True)), 422, "VALIDATION_FAILED"),
    ("count at 2^53", batch(bucket(inp=2**53)), 422, "VALIDATION_FAILED"),
    ("count beyond 64 bits", batch(bucket(inp=2**70)), 422, "VALIDATION_FAILED"),
    ("revision at 2^53", batch(bucket(revision=2**53)), 422, "VALIDATION_FAILED"),
    ("revision at 2^63 - 1", batch(bucket(revision=2**63 - 1)), 422, "VALIDATION_FAILED"),
    ("negative revision", batch(bucket(revision=-1)), 422, "VALIDATION_FAILED"),
    ("broken total", batch(bucket(total_tokens=1)), 422, "TOKEN_EQUALITY_VIOLATED"),
    ("reasoning over output", batch(bucket(reasoning=21)), 422, "TOKEN_EQUALITY_VIOLATED"),
    ("cache write over input", batch(bucket(cache_write=101)), 422, "TOKEN_EQUALITY_VIOLATED"),
    ("unknown source", batch(bucket(source="cursor")), 422, "UNKNOWN_SOURCE"),
    ("model with a newline", batch(bucket(model="a\nb")), 422, "VALIDATION_FAILED"),
    ("empty model", batch(bucket(model="")), 422, "VALIDATION_FAILED"),
    ("huge model", batch(bucket(model="m" * 600)), 422, "VALIDATION_FAILED"),
    ("buckets not a list", {"schema_version": 2, "buckets": {"a": 1}}, 422, "VALIDATION_FAILED"),
    ("body is a list", [batch(bucket())], 422, "VALIDATION_FAILED"),
    ("501 buckets", batch(*(bucket(slot=i) for i in range(501))), 413, "PAYLOAD_TOO_LARGE"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code"), HOSTILE, ids=[case[0] for case in HOSTILE]
)
def test_hostile_batches_are_rejected_whole(
    client: TestClient,
    alice: Persona,
    engine: Engine,
    case: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    """Each bad batch gets its documented status and code, and nothing is written."""
    good = bucket(slot=5)
    if isinstance(body, dict) and isinstance(body.get("buckets"), list) and status == 422:
        body = {**body, "buckets": [good, *body["buckets"]]}  # one bad bucket sinks the batch
    before = written_rows(engine)
    error = assert_error(post(client, alice, body), status, code)
    assert written_rows(engine) == before
    if status == 422 and code not in ("UNSUPPORTED_SCHEMA_VERSION",) and case != "body is a list":
        assert error["details"], case


def test_a_future_bucket_is_rejected(client: TestClient, alice: Persona, engine: Engine) -> None:
    """A bucket more than 15 minutes ahead is refused."""
    error = assert_error(
        post(client, alice, batch(bucket(bucket_start=_future()))), 422, "BUCKET_START_INVALID"
    )
    assert "future" in error["message"]
    assert written_rows(engine) == (0, 0, 0, 0)


def test_the_error_names_the_bucket_index_and_field(client: TestClient, alice: Persona) -> None:
    """A 422 says which bucket and which field."""
    body = batch(bucket(slot=0), bucket(slot=1), bucket(slot=2, inp=-5))
    error = assert_error(post(client, alice, body), 422, "VALIDATION_FAILED")
    assert error["details"][0]["loc"] == "buckets[2].input_tokens"
    assert "buckets[2].input_tokens" in error["message"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "INVALID_JSON"),
        (b"   ", 400, "INVALID_JSON"),
        (b"{not json", 400, "INVALID_JSON"),
        (b'{"schema_version": NaN, "buckets": []}', 400, "INVALID_JSON"),
        (b"\xff\xfe\x00", 400, "INVALID_JSON"),
        (b"[" * 100_000, 400, "INVALID_JSON"),
    ],
)
def test_bodies_that_are_not_json_get_400(
    client: TestClient, alice: Persona, engine: Engine, raw: bytes, status: int, code: str
) -> None:
    """Empty, truncated, deeply nested or non-UTF-8 bodies are refused cleanly."""
    assert_error(post(client, alice, raw), status, code)
    assert written_rows(engine) == (0, 0, 0, 0)


def test_a_two_mebibyte_body_gets_413(client: TestClient, alice: Persona, engine: Engine) -> None:
    """Over 1 MiB is refused before parsing."""
    raw = b'{"schema_version": 2, "buckets": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_error(post(client, alice, raw), 413, "PAYLOAD_TOO_LARGE")
    assert written_rows(engine) == (0, 0, 0, 0)


def test_a_chunked_body_over_the_limit_gets_413(client: TestClient, alice: Persona) -> None:
    """Without Content-Length the limit is enforced while streaming."""

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    response = client.post(
        "/v1/ingest",
        content=chunks(),
        headers={"Content-Type": "application/json", **alice.headers()},
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_gets_415(
    client: TestClient, alice: Persona, content_type: str
) -> None:
    """Only application/json is accepted."""
    response = client.post(
        "/v1/ingest",
        content=orjson.dumps(batch(bucket())),
        headers={"Content-Type": content_type, **alice.headers()},
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_an_idempotency_key_replays_the_stored_response(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Same key and body: the stored response, and nothing applied twice."""
    body = batch(bucket(revision=None))
    first = post(client, alice, body, **{"Idempotency-Key": "push-1"})
    second = post(client, alice, body, **{"Idempotency-Key": "push-1"})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert written_rows(engine)[0] == 1


def test_an_idempotency_key_reused_with_another_body_gets_422(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Same key, other body: IDEMPOTENCY_KEY_REUSED, nothing applied."""
    post(client, alice, batch(bucket()), **{"Idempotency-Key": "k"})
    before = written_rows(engine)
    response = post(client, alice, batch(bucket(slot=3)), **{"Idempotency-Key": "k"})
    assert_error(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert written_rows(engine) == before


def test_idempotency_keys_are_scoped_per_user(
    client: TestClient, alice: Persona, bob: Persona
) -> None:
    """Bob may use the key Alice used."""
    assert post(client, alice, batch(bucket()), **{"Idempotency-Key": "same"}).status_code == 200
    response = post(client, bob, batch(bucket(slot=2)), **{"Idempotency-Key": "same"})
    assert response.status_code == 200
    assert response.json()["inserted"] == 1


def test_an_in_flight_idempotency_key_gets_409(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """While the first request holds the key, a duplicate gets 409 IN_FLIGHT (here a claim an
    earlier version left, keyed by the bare key's hash, on the same device)."""
    raw = orjson.dumps(batch(bucket()))
    with engine.begin() as conn:  # a first request that claimed the key and is still working
        conn.execute(
            ingest_receipts.insert().values(
                user_id=alice.user_id,
                request_id="first",
                device_id=1,
                idempotency_key_hash=_sha256(b"k1"),
                body_sha256=_sha256(raw),
                state="in_flight",
                created_at_ms=int(datetime.now(UTC).timestamp() * 1000),
            )
        )
    response = post(client, alice, raw, **{"Idempotency-Key": "k1"})
    assert_error(response, 409, "IDEMPOTENCY_KEY_IN_FLIGHT")
    assert written_rows(engine)[0] == 0


def test_every_request_writes_one_evidence_line_without_secrets(
    client: TestClient, alice: Persona, evidence_path: Any
) -> None:
    """One line per request with the eight fields; no token, key or body in it."""
    post(client, alice, batch(bucket()), **{"Idempotency-Key": "secret-key-123"})
    post(client, alice, b"{bad")
    client.get("/nope")
    lines = evidence_lines(evidence_path)
    assert len(lines) == 3
    for line in lines:
        for field in (
            "request_id",
            "function",
            "stage",
            "status",
            "latency_ms",
            "error_code",
            "upstream_status",
            "upstream_latency_ms",
        ):
            assert field in line
    ok, bad, missing = lines
    assert ok["function"] == "ingest"
    assert ok["status"] == 200
    assert ok["error_code"] is None
    assert ok["upstream_status"] == 200
    assert ok["upstream_latency_ms"] > 0
    assert bad["status"] == 400
    assert bad["error_code"] == "INVALID_JSON"
    assert missing["status"] == 404
    assert missing["upstream_status"] is None
    text = evidence_path.read_text()
    for secret in (alice.device_token, "secret-key-123", "gpt-5-codex", "Bearer"):
        assert secret not in text


def test_the_plaintext_secret_is_stored_nowhere(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Only a SHA-256 of a token is stored."""
    post(client, alice, batch(bucket()))
    with engine.connect() as conn:
        for table in (api_tokens, bucket_revisions):
            for row in conn.execute(select(table)):
                assert alice.device_token not in repr(tuple(row))
                assert alice.read_token not in repr(tuple(row))


def test_an_upload_with_an_idempotency_key_is_one_write_transaction(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """The key's lookup, the batch, the receipt and the token check commit together: one
    COMMIT per push (one fsync on SQLite), and no separate read for the token."""
    from sqlalchemy import event

    post(client, alice, batch(bucket()))  # the token is now known to this process
    commits: list[int] = []
    begins: list[int] = []

    def on_commit(_conn: Any) -> None:
        commits.append(1)

    def on_begin(_conn: Any) -> None:
        begins.append(1)

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "begin", on_begin)
    try:
        response = post(client, alice, batch(bucket(slot=1)), **{"Idempotency-Key": "one-tx"})
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "begin", on_begin)
    assert response.status_code == 200
    assert len(begins) == 1
    assert len(commits) == 1


def test_a_duplicate_of_a_running_request_gets_409_at_once(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """While this process is applying a key, the same key again is refused with 409 and
    Retry-After, without waiting for the first (the claim is held until after the request, so
    a request that waited would end in a timeout, not a 409); afterwards it replays."""
    body = batch(bucket())
    claims = client.app.state.ctx.claims  # type: ignore[attr-defined]
    with claims.hold(alice.user_id, idempotency_key_hash(1, "busy")):
        refused = post(client, alice, body, **{"Idempotency-Key": "busy"})
    assert_error(refused, 409, "IDEMPOTENCY_KEY_IN_FLIGHT")
    assert refused.headers["retry-after"] == "1"
    assert written_rows(engine)[0] == 0
    first = post(client, alice, body, **{"Idempotency-Key": "busy"})
    again = post(client, alice, body, **{"Idempotency-Key": "busy"})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"


def test_a_failed_upload_leaves_no_claim_on_its_key(
    client: TestClient, alice: Persona, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push that fails inside its transaction rolls everything back, the key included: the
    client's retry with the same key is applied at once (no 409, no expiry to wait for)."""
    from usageledger.ledger import receipts
    from usageledger.store.tables import ingest_receipts

    real = receipts.apply_batch

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(receipts, "apply_batch", broken)
    failed = post(client, alice, batch(bucket()), **{"Idempotency-Key": "retry-me"})
    assert failed.status_code == 500
    with engine.connect() as conn:
        assert conn.execute(select(ingest_receipts.c.request_id)).first() is None
    monkeypatch.setattr(receipts, "apply_batch", real)
    retried = post(client, alice, batch(bucket()), **{"Idempotency-Key": "retry-me"})
    assert retried.status_code == 200
    assert retried.json()["inserted"] == 1


def test_a_token_revoked_while_remembered_writes_nothing(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Ingest may take a token from memory, but its transaction checks it again: a token
    revoked since its last upload gets 401 and nothing of the batch (or its key) is stored."""
    assert post(client, alice, batch(bucket())).status_code == 200
    before = written_rows(engine)
    revoke(engine, alice.device_token)
    refused = post(client, alice, batch(bucket(slot=2)), **{"Idempotency-Key": "late"})
    assert_error(refused, 401, "UNAUTHENTICATED")
    assert written_rows(engine) == before
    assert_error(post(client, alice, batch(bucket(slot=2))), 401, "UNAUTHENTICATED")


def test_an_upload_reports_its_wait_for_the_write_lock_apart(
    client: TestClient, alice: Persona, evidence_path: Any
) -> None:
    """The evidence line of an upload carries db_wait_ms (queued for SQLite's write lock in this
    process; 0 on PostgreSQL), apart from the database time."""
    post(client, alice, batch(bucket()))
    (line,) = evidence_lines(evidence_path)
    assert isinstance(line["db_wait_ms"], float | int)
    assert 0 <= line["db_wait_ms"] <= line["latency_ms"]


def second_device(db: Database, who: Persona, name: str = "desktop") -> Persona:
    """Another device of the same user, with its own device token."""
    token, _ = db.write(
        lambda conn: accounts.issue_token(conn, who.name, kind="device", device_name=name, now_ms=1)
    )
    return Persona(who.name, who.user_id, token, who.read_token)


def device_id(engine: Engine, who: Persona, name: str) -> int:
    """The id of the persona's device called ``name``."""
    with engine.connect() as conn:
        found = conn.execute(
            select(devices.c.device_id).where(
                devices.c.user_id == who.user_id, devices.c.name == name
            )
        ).scalar_one()
    return int(found)


def test_two_devices_sending_the_same_batch_with_the_same_key_both_write(
    client: TestClient, alice: Persona, db: Database, engine: Engine
) -> None:
    """The tracker derives its key from the body, so two devices with the same usage send the
    same key: each device's batch is written, and each device keeps its own key."""
    desktop = second_device(db, alice)
    raw = orjson.dumps(batch(bucket(slot=0), bucket(slot=1)))
    key = {"Idempotency-Key": "push-3f9c"}
    first = post(client, alice, raw, **key)
    second = post(client, desktop, raw, **key)
    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert second.json()["inserted"] == 2
    laptop_id, desktop_id = device_id(engine, alice, "laptop"), device_id(engine, alice, "desktop")
    assert sorted(k[1] for k in bucket_rows(engine)) == [laptop_id] * 2 + [desktop_id] * 2
    retried = post(client, desktop, raw, **key)
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json() == second.json()
    reused = post(client, desktop, batch(bucket(slot=7)), **key)
    assert_error(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(bucket_rows(engine)) == 4


def test_a_key_in_flight_on_one_device_does_not_hold_up_another(
    client: TestClient, alice: Persona, db: Database, engine: Engine
) -> None:
    """Claims of running requests are per device: the laptop's key in flight gives the laptop
    409 and lets the desktop's request with the same key through."""
    desktop = second_device(db, alice)
    body = batch(bucket())
    claims = client.app.state.ctx.claims  # type: ignore[attr-defined]
    with claims.hold(alice.user_id, idempotency_key_hash(device_id(engine, alice, "laptop"), "k")):
        assert_error(
            post(client, alice, body, **{"Idempotency-Key": "k"}), 409, "IDEMPOTENCY_KEY_IN_FLIGHT"
        )
        other = post(client, desktop, body, **{"Idempotency-Key": "k"})
    assert other.status_code == 200
    assert other.json()["inserted"] == 1
    assert [k[1] for k in bucket_rows(engine)] == [device_id(engine, alice, "desktop")]


def test_a_receipt_of_an_earlier_version_counts_only_for_its_own_device(
    client: TestClient, alice: Persona, db: Database, engine: Engine
) -> None:
    """A receipt stored under the bare key's hash (before keys were scoped per device) still
    replays for the device that wrote it, and never swallows another device's batch."""
    desktop = second_device(db, alice)
    raw = orjson.dumps(batch(bucket()))
    stored = {
        "request_id": "old",
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "conflicts": 0,
    }
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    with engine.begin() as conn:
        conn.execute(
            ingest_receipts.insert().values(
                user_id=alice.user_id,
                request_id="old",
                device_id=device_id(engine, alice, "laptop"),
                idempotency_key_hash=_sha256(b"legacy"),
                body_sha256=_sha256(raw),
                state="done",
                response=orjson.dumps(stored).decode(),
                bucket_count=1,
                created_at_ms=now_ms,
                completed_at_ms=now_ms,
            )
        )
    replayed = post(client, alice, raw, **{"Idempotency-Key": "legacy"})
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == stored
    assert bucket_rows(engine) == {}
    applied = post(client, desktop, raw, **{"Idempotency-Key": "legacy"})
    assert "idempotent-replayed" not in applied.headers
    assert applied.json()["inserted"] == 1


@pytest.mark.parametrize(("case", "start"), HOSTILE_STARTS, ids=[c for c, _ in HOSTILE_STARTS])
def test_a_bucket_start_that_is_not_rfc_3339_writes_nothing(
    client: TestClient, alice: Persona, engine: Engine, case: str, start: str
) -> None:
    """Each hostile spelling of a start, in a v1 or a v2 batch after a good bucket: 422 naming
    ``buckets[1].bucket_start``, nothing written."""
    for cache_write in (None, 10):
        body = batch(bucket(cache_write=cache_write), bucket(slot=1, cache_write=cache_write))
        body["buckets"][1]["bucket_start"] = start
        error = assert_error(post(client, alice, body), 422, "BUCKET_START_INVALID")
        assert error["details"][0]["loc"] == "buckets[1].bucket_start", case
        assert written_rows(engine) == (0, 0, 0, 0)


def test_the_largest_revision_an_upload_may_have_is_two_to_the_53_minus_one(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """2^53 - 1 is stored; 2^53 is refused naming the bucket's revision, and nothing written."""
    assert post(client, alice, batch(bucket(revision=2**53 - 1))).status_code == 200
    before = written_rows(engine)
    error = assert_error(
        post(client, alice, batch(bucket(slot=1), bucket(slot=2, revision=2**53))),
        422,
        "VALIDATION_FAILED",
    )
    assert error["details"][0]["loc"] == "buckets[1].revision"
    assert written_rows(engine) == before
    (value,) = bucket_rows(engine).values()
    assert value[0] == 2**53 - 1
