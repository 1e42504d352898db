"""The OpenAPI schema documents every read endpoint's parameters and fields."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_persona
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
