"""The OpenAPI schema documents every read endpoint's parameters and fields."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_persona
from usageledger.buckets import REVISION_LIMIT
from usageledger.config import Settings
from usageledger.ledger.receipts import MAX_IDEMPOTENCY_KEY
from usageledger.source_registry import SOURCE_NAME
from usageledger.store.engine import Database

pytestmark = pytest.mark.usefixtures("db_url")

READ_PATHS = (
    "/v1/usage/summary",
    "/v1/usage/daily",
    "/v1/usage/hourly",
    "/v1/usage/monthly",
    "/v1/usage/heatmap",
    "/v1/usage/models",
    "/v1/devices",
    "/v1/me",
    "/v1/leaderboard",
)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` (or the first ``$ref`` of an ``anyOf``) into the components."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        found: dict[str, Any] = schema["components"]["schemas"][name]
        return found
    for option in node.get("anyOf", []):
        if "$ref" in option:
            return resolve(schema, option)
    if node.get("type") == "array":
        return resolve(schema, node["items"])
    return node


def undocumented(schema: dict[str, Any], node: dict[str, Any], where: str) -> list[str]:
    """Every property under ``node`` (recursively) without a description."""
    missing: list[str] = []
    target = resolve(schema, node)
    for name, prop in target.get("properties", {}).items():
        if not prop.get("description"):
            missing.append(f"{where}.{name}")
        if prop is not target:
            inner = resolve(schema, prop)
            if inner is not prop and inner.get("properties"):
                missing.extend(undocumented(schema, inner, f"{where}.{name}"))
    return missing


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    """The served OpenAPI document."""
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def test_every_read_route_is_in_the_schema(openapi: dict[str, Any]) -> None:
    """All nine read paths are published (PATCH /v1/me included)."""
    assert set(READ_PATHS) <= set(openapi["paths"])
    assert "patch" in openapi["paths"]["/v1/me"]


def test_every_query_parameter_has_a_description(openapi: dict[str, Any]) -> None:
    """Each query parameter of each read route says what it means."""
    for path in READ_PATHS:
        for method, operation in openapi["paths"][path].items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    assert parameter.get("description"), (method, path, parameter["name"])


def test_every_response_field_has_a_description(openapi: dict[str, Any]) -> None:
    """Each field of each 200 response, nested ones included, has a description."""
    for path in READ_PATHS:
        for method, operation in openapi["paths"][path].items():
            content = operation["responses"]["200"]["content"]["application/json"]
            assert undocumented(openapi, content["schema"], f"{method} {path}") == []


def test_the_patch_body_fields_are_documented(openapi: dict[str, Any]) -> None:
    """The three changeable fields are described, and nothing else is accepted."""
    body = openapi["paths"]["/v1/me"]["patch"]["requestBody"]["content"]["application/json"]
    target = resolve(openapi, body["schema"])
    assert set(target["properties"]) == {"time_zone", "display_name", "leaderboard_opt_in"}
    assert target.get("additionalProperties") is False
    assert undocumented(openapi, body["schema"], "PATCH /v1/me") == []


def test_error_statuses_are_documented(openapi: dict[str, Any]) -> None:
    """401, 422 (with RANGE_TOO_LARGE) and 429 are listed on every read route."""
    for path in READ_PATHS:
        for operation in openapi["paths"][path].values():
            assert {"401", "422", "429"} <= set(operation["responses"]), path
            assert "RANGE_TOO_LARGE" in operation["responses"]["422"]["description"]


def test_every_declared_query_parameter_is_accepted(
    client: TestClient, db: Database, openapi: dict[str, Any]
) -> None:
    """The undeclared-parameter guard and the schema agree: no documented name is refused."""
    who = make_persona(db, "carol")
    for path in READ_PATHS:
        names = [
            p["name"]
            for p in openapi["paths"][path]["get"].get("parameters", [])
            if p["in"] == "query"
        ]
        for name in names:
            response = client.get(path, params={name: "x"}, headers=who.headers(read=True))
            if response.status_code == 422:
                assert "unknown query parameter" not in response.json()["error"]["message"], (
                    path,
                    name,
                )


def test_healthz_documents_its_database_errors(openapi: dict[str, Any]) -> None:
    """/healthz declares 503 and 504 with the one error shape, as it can answer both."""
    responses = openapi["paths"]["/healthz"]["get"]["responses"]
    for status in ("503", "504"):
        assert responses[status]["description"]
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorResponse")


def query_schema(openapi: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    """The schema of query parameter ``name`` of ``GET path``."""
    for parameter in openapi["paths"][path]["get"]["parameters"]:
        if parameter["name"] == name:
            found: dict[str, Any] = parameter["schema"]
            return found
    raise AssertionError(f"{path} has no parameter {name}")


def test_dates_months_zones_and_enums_are_declared(openapi: dict[str, Any]) -> None:
    """Every pattern, enum and bound the read routes enforce is in the schema."""
    for path, name in [
        ("/v1/usage/summary", "from"),
        ("/v1/usage/daily", "to"),
        ("/v1/usage/models", "from"),
        ("/v1/usage/hourly", "day"),
        ("/v1/usage/heatmap", "to"),
    ]:
        declared = query_schema(openapi, path, name)
        assert declared["format"] == "date", (path, name)
        assert declared["pattern"] == r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", (path, name)
    for name in ("from", "to"):
        assert query_schema(openapi, "/v1/usage/monthly", name)["pattern"] == (
            r"^[0-9]{4}-(0[1-9]|1[0-2])$"
        )
    tz = query_schema(openapi, "/v1/usage/daily", "tz")
    assert tz["pattern"].startswith("^[A-Za-z]")
    assert tz["anyOf"][0]["maxLength"] == 64
    weeks = query_schema(openapi, "/v1/usage/heatmap", "weeks")
    assert (weeks["minimum"], weeks["maximum"]) == (1, 104)
    assert query_schema(openapi, "/v1/leaderboard", "period")["enum"] == ["week", "month", "all"]
    limit = query_schema(openapi, "/v1/leaderboard", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 100)


def test_the_profile_patch_declares_its_caps(openapi: dict[str, Any]) -> None:
    """A display name of at most 64, a zone that is never null, at least one field."""
    patch = openapi["components"]["schemas"]["MePatch"]
    assert patch["minProperties"] == 1
    assert patch["properties"]["time_zone"]["type"] == "string"
    assert patch["properties"]["leaderboard_opt_in"]["type"] == "boolean"
    assert patch["properties"]["display_name"]["anyOf"][0]["maxLength"] == 64


def test_the_ingest_caps_are_declared(openapi: dict[str, Any], settings: Settings) -> None:
    """Idempotency-Key 1-255 printable, bucket_start RFC 3339, the source spelling, the model
    length and bucket count of the settings, and the revision's bound."""
    operation = openapi["paths"]["/v1/ingest"]["post"]
    (key,) = [p["schema"] for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert (key["minLength"], key["maxLength"]) == (1, MAX_IDEMPOTENCY_KEY)
    assert re.fullmatch(key["pattern"], "batch-2026-11-28 #1")
    assert not re.fullmatch(key["pattern"], "tab\there")
    for version in ("IngestV1", "IngestV2"):
        buckets = openapi["components"]["schemas"][version]["properties"]["buckets"]
        assert buckets["maxItems"] == settings.max_buckets
    for version in ("BucketV1", "BucketV2"):
        fields = openapi["components"]["schemas"][version]["properties"]
        assert fields["bucket_start"]["format"] == "date-time"
        assert re.fullmatch(fields["bucket_start"]["pattern"], "2026-11-28T10:30:00Z")
        assert not re.fullmatch(fields["bucket_start"]["pattern"], "2026-W48-6T10:30:00Z")
        assert fields["source"]["maxLength"] == 32
        assert fields["source"]["pattern"] == SOURCE_NAME.pattern
        assert fields["model"]["maxLength"] == settings.max_model_length
        (revision, _) = fields["revision"]["anyOf"]
        assert revision["minimum"] == 0
        assert revision["exclusiveMaximum"] == REVISION_LIMIT
