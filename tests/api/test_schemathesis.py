"""Every operation of our OpenAPI schema, fuzzed by schemathesis on SQLite and PostgreSQL.

Schemathesis reads ``/openapi.json`` from the real app (over the test database of the
``client`` fixture) and, per operation, sends the schema's examples, its coverage cases and
fuzzed requests, valid and invalid (``GenerationMode.POSITIVE`` and ``NEGATIVE``). Each request
carries a real token: a device token for ``POST /v1/ingest``, a read token elsewhere, so the
fuzzer reaches the handlers instead of bouncing off 401. Every check schemathesis has runs (its
``--checks all``): no 5xx, every status, header and content type declared, every body matching
its declared schema (errors included), invalid input refused with a 4xx, valid input accepted,
auth enforced (``ignored_auth`` re-sends without and with a bogus token and expects 401), other
methods answered 405 with a true ``Allow``.

One check is narrowed: a schema-valid request may still get a 422 for a rule no JSON Schema can
state (:data:`BEYOND_SCHEMA`: a range's length, ``from`` after ``to``, a zone tzdata does not
know, another user's device, the token equalities, a half-hour's alignment, printable Unicode).
Everything a schema can state (dates, months, enums, lengths, caps, patterns) is declared, so a
422 anywhere else fails the run.

Generation is derandomized (a fixed seed per operation), so a failure reproduces on re-run.
Requests a fuzzer does not produce (other media types, bodies over 1 MiB, header bytes outside
ASCII, an Idempotency-Key in flight, a rate-limited token) are sent by hand below, and their
responses are validated against the same schema.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as ALL_CHECKS
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from tests.conftest import Persona
from tests.factories import bucket
from usageledger.api.ratelimit import RateLimiter
from usageledger.config import Settings
from usageledger.server import create_app
from usageledger.store.tables import ingest_receipts

#: Fuzzed examples per operation, valid and invalid together (the coverage phase adds its own
#: deterministic cases: every parameter missing, of the wrong type, at its bounds …).
MAX_EXAMPLES = 200

#: What every response must satisfy, whoever produced the request.
SHAPE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

#: (error code, where, what) of the 422s a schema-valid request may get: rules no JSON Schema
#: can state. ``where`` and ``what`` are regular expressions over each problem's ``loc`` and
#: ``message``; every problem of the response must be one of these.
BEYOND_SCHEMA = [
    ("RANGE_TOO_LARGE", r"query\.(from|to|weeks|tz)", r"."),
    ("VALIDATION_FAILED", r"query\.(from|to)", r"is after to"),
    ("VALIDATION_FAILED", r"query\.(from|to|day)", r"must be between|would start before"),
    ("VALIDATION_FAILED", r"query\.tz|body\.time_zone", r"unknown time zone"),
    ("VALIDATION_FAILED", r"query\.device", r"no device|/v1/devices"),
    ("VALIDATION_FAILED", r"body\.display_name", r"printable|reserved|expand|taken"),
    ("TOKEN_EQUALITY_VIOLATED", r"buckets\[\d+\]\.\w+", r"."),
    ("BUCKET_START_INVALID", r"buckets\[\d+\]\.bucket_start", r"half-hour|future|floor"),
    ("UNKNOWN_SOURCE", r"buckets\[\d+\]\.source", r"."),
    ("VALIDATION_FAILED", r"buckets\[\d+\]\.model", r"printable"),
    ("VALIDATION_FAILED", r"query\.(tz|source|model|device)", r"contains control characters"),
    ("IDEMPOTENCY_KEY_REUSED", r"", r"different body"),  # the key was used before in the run
    # JSON Schema's "integer" takes 2.0; the wire takes only integer literals (docs/design.md §4).
    ("VALIDATION_FAILED", r"buckets\[\d+\]\.\w+", r"valid integer"),
    ("UNSUPPORTED_SCHEMA_VERSION", r"schema_version", r"must be 1 or 2"),
]


def beyond_schema(response: Any) -> bool:
    """Whether ``response`` is a 422 naming only rules of :data:`BEYOND_SCHEMA`."""
    if response.status_code != 422:
        return False
    error = orjson.loads(response.content)["error"]
    problems = error["details"] or [{"loc": "", "message": error["message"]}]
    return all(
        any(
            (problem.get("code") or error["code"]) == code
            and re.fullmatch(where, problem["loc"])
            and re.search(what, problem["message"])
            for code, where, what in BEYOND_SCHEMA
        )
        for problem in problems
    )


def positive_data_acceptance_beyond_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's ``positive_data_acceptance``, but a 422 for a rule of
    :data:`BEYOND_SCHEMA` is an acceptable answer to a schema-valid request."""
    if beyond_schema(response):
        return None
    return positive_data_acceptance(ctx, response, case)


#: Every check schemathesis has, with ``positive_data_acceptance`` narrowed as above.
CHECKS = [
    positive_data_acceptance_beyond_schema if check is positive_data_acceptance else check
    for check in ALL_CHECKS.get_all()
]


def load_schema() -> Any:
    """Our OpenAPI schema, read from an app whose database is never opened."""
    app = create_app(
        Settings(home=Path(tempfile.gettempdir()), database_url="sqlite://", log_file="off")
    )
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        # Tokens come from AliceTokens; random Authorization values would only meet 401.
        with_security_parameters=False,
    )
    # Over max_buckets (the schema's maxItems) is 413 before validation, as docs/design.md §4 says.
    rejection = loaded.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return loaded


schema = load_schema()

#: Stand-ins the auth provider sets; the test swaps in Alice's real tokens just before sending.
#: (Schemathesis builds some cases while pytest collects, before any database exists.)
DEVICE_TOKEN, READ_TOKEN = "alice-device-token", "alice-read-token"


@schema.auth(refresh_interval=None)
class AliceTokens:
    """A device token for ingest, a read token elsewhere; absent when a case drops the header."""

    def get(self, case: Any, context: Any) -> str:
        """The stand-in for this operation's token."""
        return DEVICE_TOKEN if case.path == "/v1/ingest" else READ_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        """Send it as a bearer token."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def with_real_token(case: Any, who: Persona) -> None:
    """Replace the stand-in token of ``case`` (if it has one) with the persona's real one."""
    real = {DEVICE_TOKEN: who.device_token, READ_TOKEN: who.read_token}
    headers = case.headers or {}
    scheme, _, secret = str(headers.get("Authorization", "")).partition(" ")
    if scheme == "Bearer" and secret in real:
        headers["Authorization"] = f"Bearer {real[secret]}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_honours_its_schema(case: Any, client: TestClient, alice: Persona) -> None:
    """No request, valid or hostile, gets a 5xx or a response its schema does not declare."""
    with_real_token(case, alice)
    case.call_and_validate(checks=CHECKS, app=client.app)


def test_the_fuzzed_schema_is_the_one_the_test_app_serves(client: TestClient) -> None:
    """The schema was loaded from a database-less app; the app under test serves the same."""
    assert client.get("/openapi.json").json() == schema.raw_schema


def bucket_body(count: int = 1) -> bytes:
    """A valid v2 batch of ``count`` buckets, as JSON bytes."""
    items = [bucket(slot=i) for i in range(count)]
    return orjson.dumps({"schema_version": 2, "buckets": items})


JSON = {"Content-Type": "application/json"}

#: (name, method, path, token kind, extra headers, body, status, code) of requests the fuzzer
#: cannot produce: other media types, oversized bodies, hostile header bytes.
EDGES: list[tuple[str, str, str, str | None, dict[str, Any], bytes | None, int, str]] = [
    (
        "text/plain",
        "POST",
        "/v1/ingest",
        "device",
        {"Content-Type": "text/plain"},
        bucket_body(),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    (
        "no content type",
        "POST",
        "/v1/ingest",
        "device",
        {},
        bucket_body(),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    (
        "json with charset",
        "POST",
        "/v1/ingest",
        "device",
        {"Content-Type": "Application/JSON; charset=utf-8"},
        bucket_body(),
        200,
        "",
    ),
    (
        "two mebibytes",
        "POST",
        "/v1/ingest",
        "device",
        JSON,
        b'{"schema_version": 2, "buckets": [], "pad": "' + b"x" * 2_097_152 + b'"}',
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    (
        "501 buckets",
        "POST",
        "/v1/ingest",
        "device",
        JSON,
        bucket_body(501),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    ("not json", "POST", "/v1/ingest", "device", JSON, b"{nope", 400, "INVALID_JSON"),
    ("not utf-8", "POST", "/v1/ingest", "device", JSON, b"\xff\xfe{", 400, "INVALID_JSON"),
    ("read token uploads", "POST", "/v1/ingest", "read", JSON, bucket_body(), 403, "FORBIDDEN"),
    (
        "idempotency key of 256",
        "POST",
        "/v1/ingest",
        "device",
        {**JSON, "Idempotency-Key": "k" * 256},
        bucket_body(),
        422,
        "VALIDATION_FAILED",
    ),
    (
        "idempotency key with C1 byte",
        "POST",
        "/v1/ingest",
        "device",
        {**JSON, "Idempotency-Key": b"a\x85b"},
        bucket_body(),
        422,
        "VALIDATION_FAILED",
    ),
    (
        "token with latin-1 bytes",
        "GET",
        "/v1/me",
        None,
        {"Authorization": b"Bearer ul_read_\xe9\xff"},
        None,
        401,
        "UNAUTHENTICATED",
    ),
    (
        "basic auth",
        "GET",
        "/v1/devices",
        None,
        {"Authorization": "Basic dXNlcjpwYXNz"},
        None,
        401,
        "UNAUTHENTICATED",
    ),
    (
        "oversized token",
        "GET",
        "/v1/usage/daily",
        None,
        {"Authorization": "Bearer " + "x" * 5000},
        None,
        401,
        "UNAUTHENTICATED",
    ),
    (
        "range over the cap",
        "GET",
        "/v1/usage/daily?from=2020-01-01&to=2026-01-01",
        "read",
        {},
        None,
        422,
        "RANGE_TOO_LARGE",
    ),
    ("patch with bad json", "PATCH", "/v1/me", "read", JSON, b"{nope", 400, "INVALID_JSON"),
    ("patch not utf-8", "PATCH", "/v1/me", "read", JSON, b"\xff\xfe{", 400, "INVALID_JSON"),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "kind", "headers", "body", "status", "code"),
    EDGES,
    ids=[edge[0] for edge in EDGES],
)
def test_hostile_edges_are_answered_as_the_schema_declares(
    client: TestClient,
    alice: Persona,
    name: str,
    method: str,
    path: str,
    kind: str | None,
    headers: dict[str, Any],
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    """Media types, oversized bodies and hostile header bytes get their documented answer."""
    sent = dict(headers)
    if kind is not None:
        sent.update(alice.headers(read=kind == "read"))
    response = client.request(method, path, content=body, headers=sent)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    operation = schema[path.split("?")[0]][method]
    operation.Case().validate_response(response, checks=SHAPE_CHECKS)


def test_an_in_flight_key_and_a_rate_limit_are_answered_as_declared(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """409 IDEMPOTENCY_KEY_IN_FLIGHT and 429 RATE_LIMITED conform to the schema too."""
    raw = bucket_body()
    with engine.begin() as conn:  # a first request that claimed the key and is still working
        conn.execute(
            ingest_receipts.insert().values(
                user_id=alice.user_id,
                request_id="first",
                device_id=1,
                idempotency_key_hash=hashlib.sha256(b"busy").hexdigest(),
                body_sha256=hashlib.sha256(raw).hexdigest(),
                state="in_flight",
                created_at_ms=int(time.time() * 1000),
            )
        )
    operation = schema["/v1/ingest"]["POST"]
    busy = client.post(
        "/v1/ingest", content=raw, headers={**JSON, "Idempotency-Key": "busy", **alice.headers()}
    )
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    operation.Case().validate_response(busy, checks=SHAPE_CHECKS)

    client.app.state.ctx.limiter = RateLimiter(60, 1, clock=lambda: 0.0)
    assert client.post("/v1/ingest", content=raw, headers={**JSON, **alice.headers()}).is_success
    limited = client.post("/v1/ingest", content=raw, headers={**JSON, **alice.headers()})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    operation.Case().validate_response(limited, checks=SHAPE_CHECKS)
