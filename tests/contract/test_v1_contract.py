"""The v1 payload contract: what an old client sends, and what it gets back, never changes.

Runs against the newest schema and code, on SQLite and PostgreSQL (docs/design.md §4, §7).
Stored values are read back twice: with plain SELECTs on the ledger's tables, and through the
read API (``GET /v1/usage/summary``), which must report a v1 bucket's cache writes as 0.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.helpers import bucket_rows, daily_rows, expected_daily, written_rows
from usageledger.buckets import COUNT_COLUMNS, COUNTS_BY_VERSION, COUNTS_V1
from usageledger.store.tables import bucket_revisions
from usageledger.wire import BucketV1, IngestV1

pytestmark = pytest.mark.usefixtures("db_url")

#: The v1 wire contract, written out by hand: changing any of these breaks deployed clients.
V1_COUNTS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)
V1_REQUIRED = frozenset({"bucket_start", "source", "model", *V1_COUNTS})
V1_OPTIONAL = frozenset({"revision"})
V1_BATCH = frozenset({"schema_version", "buckets"})
RESPONSE = frozenset({"request_id", "inserted", "updated", "unchanged", "stale", "conflicts"})
ERROR = frozenset({"code", "message", "request_id", "details"})
START = datetime(2026, 11, 1, 22, 0, tzinfo=UTC)  # near midnight: two local days in Berlin


def v1(**fields: Any) -> dict[str, Any]:
    """A valid v1 bucket (no cache_write_tokens)."""
    return bucket(cache_write=None, **fields)


def post(client: TestClient, who: Persona, body: Any) -> Any:
    """POST a body as JSON with the persona's device token, as an old client does."""
    return client.post(
        "/v1/ingest",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **who.headers()},
    )


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The one error shape, with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return dict(body["error"])


def sent_values(
    items: list[dict[str, Any]], who: Persona
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """What the ledger must hold for v1 items: key → (revision, five counts, then every later
    count 0: cache_write and the schema v3 counts)."""
    out = {}
    for item in items:
        start = int(datetime.fromisoformat(item["bucket_start"].replace("Z", "+00:00")).timestamp())
        key = (who.user_id, 1, item["source"], item["model"], start)
        later = (0,) * (len(COUNT_COLUMNS) - len(V1_COUNTS))
        out[key] = (item["revision"], *(item[c] for c in V1_COUNTS), *later)
    return out


def v1_items() -> list[dict[str, Any]]:
    """Buckets over two local days, two sources and two models, with distinct counts."""
    items = []
    for i in range(6):
        items.append(
            v1(
                start=START + timedelta(minutes=30 * i),
                source=("codex", "claude")[i % 2],
                model=("gpt-5-codex", "claude-sonnet-4-5")[i % 2],
                inp=100 + i,
                cached=10 * i,
                out=20 + i,
                reasoning=i,
                revision=1_700_000_000_000 + i,
            )
        )
    return items


def test_the_v1_allowlist_is_frozen() -> None:
    """v1 accepts exactly these fields (revision optional) and the five counts in this order."""
    assert COUNTS_V1 == V1_COUNTS
    assert COUNTS_BY_VERSION[1] == V1_COUNTS
    fields = BucketV1.model_fields
    assert set(fields) == V1_REQUIRED | V1_OPTIONAL
    assert {name for name, f in fields.items() if f.is_required()} == V1_REQUIRED
    assert set(IngestV1.model_fields) == V1_BATCH
    assert BucketV1.model_config.get("extra") == "forbid"
    assert IngestV1.model_config.get("extra") == "forbid"


def test_a_v1_batch_is_stored_as_sent_with_no_cache_writes(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Every v1 bucket reads back with its revision and counts, and cache_write_tokens 0."""
    items = v1_items()
    response = post(client, alice, batch(*items))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == RESPONSE
    assert (body["inserted"], body["updated"], body["unchanged"]) == (6, 0, 0)
    assert (body["stale"], body["conflicts"]) == (0, 0)
    assert body["request_id"] == response.headers["x-request-id"]
    assert bucket_rows(engine) == sent_values(items, alice)
    with engine.connect() as conn:
        revisions = conn.execute(select(bucket_revisions)).mappings().all()
    assert len(revisions) == 6
    assert all(r["cache_write_tokens"] == 0 for r in revisions)


def test_v1_aggregates_are_the_sums_of_its_buckets_by_local_day(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """usage_daily after a v1 upload equals the buckets summed by the user's local day."""
    post(client, alice, batch(*v1_items()))
    daily = daily_rows(engine)
    assert daily == expected_daily(engine, {alice.user_id: "Europe/Berlin"})
    assert len({key[1] for key in daily}) == 2  # the batch spans two Berlin days
    total = COUNT_COLUMNS.index("total_tokens")
    assert sum(v[total] for v in daily.values()) == sum(i["total_tokens"] for i in v1_items())


def test_the_read_api_reports_a_v1_upload_as_sent(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """GET /v1/usage/summary over the batch's local days returns its sums, cache writes 0."""
    items = v1_items()
    post(client, alice, batch(*items))
    response = client.get(
        "/v1/usage/summary",
        params={"from": "2026-11-01", "to": "2026-11-02"},
        headers=alice.headers(read=True),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    for name in V1_COUNTS:
        assert body["totals"][name] == sum(i[name] for i in items), name
    assert body["totals"]["cache_write_tokens"] == 0
    lines = {(line["source"], line["model"]): line for line in body["by_model"]}
    assert set(lines) == {(i["source"], i["model"]) for i in items}
    for (source, model), line in lines.items():
        mine = [i for i in items if (i["source"], i["model"]) == (source, model)]
        assert line["total_tokens"] == sum(i["total_tokens"] for i in mine)
        assert line["cache_write_tokens"] == 0


def test_a_v1_batch_sent_again_changes_nothing(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """Old clients retry: the same v1 batch is all unchanged and the facts stay put."""
    post(client, alice, batch(*v1_items()))
    facts, daily = bucket_rows(engine), daily_rows(engine)
    again = post(client, alice, batch(*v1_items())).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert bucket_rows(engine) == facts
    assert daily_rows(engine) == daily
    assert written_rows(engine)[0] == 6


def test_a_v1_bucket_equals_the_same_bucket_in_v2_without_cache_writes(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """A client upgraded to v2 re-sending a v1 value with cache_write_tokens 0 changes nothing."""
    post(client, alice, batch(v1(revision=10)))
    again = post(client, alice, batch(bucket(cache_write=0, revision=11))).json()
    assert again["unchanged"] == 1
    assert written_rows(engine)[0] == 1


def test_a_v2_client_can_supersede_what_a_v1_client_wrote(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """A newer v2 revision of a v1 bucket updates it; an older v1 retry is then stale."""
    post(client, alice, batch(v1(revision=10)))
    assert post(client, alice, batch(bucket(cache_write=30, revision=20))).json()["updated"] == 1
    assert post(client, alice, batch(v1(revision=15, inp=999))).json()["stale"] == 1
    (value,) = bucket_rows(engine).values()
    assert (value[0], value[1 + COUNT_COLUMNS.index("cache_write_tokens")]) == (20, 30)


#: (name, body, status, code, loc of the first problem, exact message, pattern or None).
#: A pattern only where the message lists something that grows additively (sources, versions).
V1_ERRORS: list[tuple[str, dict[str, Any], int, str, str | None, str | re.Pattern[str] | None]] = [
    (
        "v2 field in v1",
        batch(v1(cache_write_tokens=0), version=1),
        422,
        "UNKNOWN_FIELD",
        "buckets[0].cache_write_tokens",
        "buckets[0].cache_write_tokens: unknown field 'cache_write_tokens' in schema_version 1",
    ),
    (
        "user_id in the batch",
        {**batch(v1()), "user_id": 7},
        422,
        "UNKNOWN_FIELD",
        "user_id",
        "user_id: unknown field 'user_id' in schema_version 1",
    ),
    (
        "device_id in a bucket",
        batch(v1(device_id=3)),
        422,
        "UNKNOWN_FIELD",
        "buckets[0].device_id",
        "buckets[0].device_id: unknown field 'device_id' in schema_version 1",
    ),
    (
        "a missing count",
        batch({k: v for k, v in v1().items() if k != "output_tokens"}),
        422,
        "VALIDATION_FAILED",
        "buckets[0].output_tokens",
        None,
    ),
    ("a float count", batch(v1(input_tokens=1.0)), 422, "VALIDATION_FAILED", None, None),
    ("a negative count", batch(v1(inp=-1)), 422, "VALIDATION_FAILED", None, None),
    (
        "a broken total",
        batch(v1(total_tokens=999)),
        422,
        "TOKEN_EQUALITY_VIOLATED",
        "buckets[0].total_tokens",
        "buckets[0].total_tokens: total_tokens (999) must equal input_tokens + "
        "cached_input_tokens + output_tokens (170)",
    ),
    (
        "reasoning over output",
        batch(v1(reasoning=21)),
        422,
        "TOKEN_EQUALITY_VIOLATED",
        "buckets[0].reasoning_output_tokens",
        "buckets[0].reasoning_output_tokens: reasoning_output_tokens (21) must not exceed "
        "output_tokens (20)",
    ),
    (
        "an unknown source",
        batch(v1(source="cursor")),
        422,
        "UNKNOWN_SOURCE",
        "buckets[0].source",
        # The list grows when a source is registered; the rest of the message is fixed.
        re.compile(
            r"buckets\[0\]\.source: unknown source 'cursor'; known sources: "
            r"([a-z0-9_-]+, )*claude(, [a-z0-9_-]+)*, codex(, [a-z0-9_-]+)*, "
            r"gemini(, [a-z0-9_-]+)*, opencode(, [a-z0-9_-]+)*\. "
            r"An operator can register another with USAGELEDGER_EXTRA_SOURCES=name"
        ),
    ),
    (
        "a start off the half-hour",
        batch(v1(bucket_start="2026-11-01T10:15:00Z")),
        422,
        "BUCKET_START_INVALID",
        "buckets[0].bucket_start",
        "buckets[0].bucket_start: must be the start of a half-hour (:00 or :30, zero seconds)",
    ),
    (
        "schema_version as a string",
        {**batch(v1()), "schema_version": "1"},
        422,
        "UNSUPPORTED_SCHEMA_VERSION",
        "schema_version",
        re.compile(r"unsupported schema_version '1'; supported: 1, 2(, \d+)*"),
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code", "loc", "message"), V1_ERRORS, ids=[e[0] for e in V1_ERRORS]
)
def test_v1_errors_are_unchanged(
    client: TestClient,
    alice: Persona,
    engine: Engine,
    case: str,
    body: dict[str, Any],
    status: int,
    code: str,
    loc: str | None,
    message: str | re.Pattern[str] | None,
) -> None:
    """Each v1 mistake keeps its status, code, location and our own message; nothing is written."""
    error = error_of(post(client, alice, body), status)
    assert error["code"] == code, case
    if loc is not None:
        assert error["details"][0]["loc"] == loc
    if isinstance(message, str):
        assert error["message"] == message
    elif message is not None:
        assert message.fullmatch(error["message"]), error["message"]
    assert written_rows(engine) == (0, 0, 0, 0)


def test_one_bad_v1_bucket_rejects_the_whole_batch(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """All or nothing, with the bad bucket's index in the location."""
    body = batch(v1(slot=0), v1(slot=1), v1(slot=2, cache_write_tokens=0), version=1)
    error = error_of(post(client, alice, body), 422)
    assert error["code"] == "UNKNOWN_FIELD"
    assert error["details"][0]["loc"] == "buckets[2].cache_write_tokens"
    assert written_rows(engine) == (0, 0, 0, 0)
