"""Every answer of the app, whoever produced it, carries the security headers and a true Allow.

The routes are walked from the app itself (and the static files from the package), so a route
added later is covered without touching this file.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.routing import Mount

from tests.conftest import Persona
from tests.factories import bucket
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.web.routes import STATIC

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def route_methods(client: TestClient) -> dict[str, set[str]]:
    """Every route path of the app with the methods it accepts (mounts excluded)."""
    paths: dict[str, set[str]] = {}
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if isinstance(route.original_route, Mount) or not route.path:
            continue
        paths.setdefault(route.path, set()).update(route.methods or ())
    return paths


def static_paths() -> list[str]:
    """Every file the dashboard serves under /static/."""
    return sorted(f"/static/{p.name}" for p in STATIC.iterdir() if p.is_file())


def answers(client: TestClient, alice: Persona) -> Iterator[tuple[str, httpx.Response]]:
    """Answers of every route, method and static file: with a token, without, and refused."""
    for path, methods in route_methods(client).items():
        for method in sorted(methods):
            for headers in ({}, alice.headers(read=True), alice.headers()):
                yield path, client.request(method, path, headers=headers)
    for path in static_paths():
        yield path, client.get(path)
        yield path, client.post(path)
    json = {"Content-Type": "application/json"}
    body = orjson.dumps({"schema_version": 2, "buckets": [bucket()]})
    yield "ingest", client.post("/v1/ingest", content=body, headers={**json, **alice.headers()})
    yield (
        "413",
        client.post("/v1/ingest", content=b"x" * 2_000_000, headers={**json, **alice.headers()}),
    )
    yield "422", client.get("/v1/usage/daily?from=nope", headers=alice.headers(read=True))
    yield "404", client.get("/v1/nothing-here")
    yield "static 404", client.get("/static/nothing-here.html")


def test_every_answer_has_nosniff_and_api_answers_are_not_stored(
    client: TestClient, alice: Persona
) -> None:
    """nosniff everywhere; no-store on every JSON answer (errors and ingest included)."""
    statuses = set()
    for where, response in answers(client, alice):
        statuses.add(response.status_code)
        assert response.headers.get("x-content-type-options") == "nosniff", where
        if response.headers.get("content-type", "").startswith("application/json"):
            assert response.headers.get("cache-control") == "no-store", where
    assert {200, 401, 403, 404, 405, 413, 422} <= statuses


def test_every_html_answer_has_a_content_security_policy(
    client: TestClient, alice: Persona
) -> None:
    """The pages, the static .html files and the API docs each carry a CSP."""
    html = [
        (where, r)
        for where, r in answers(client, alice)
        if r.headers.get("content-type", "").startswith("text/html")
    ]
    assert any(where == "/static/dashboard.html" for where, _ in html)
    for where, response in html:
        policy = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, where
        if where.startswith("/static/"):
            assert "script-src 'self'" in policy, where


def test_a_rate_limited_answer_is_not_stored(
    settings: Settings, engine: Engine, alice: Persona
) -> None:
    """429 carries no-store and nosniff like every other API answer."""
    tight = settings.model_copy(update={"rate_per_minute": 1, "rate_burst": 1})
    with TestClient(create_app(tight, engine=engine, evidence=EvidenceLogger("off"))) as client:
        client.get("/v1/me", headers=alice.headers(read=True))
        limited = client.get("/v1/me", headers=alice.headers(read=True))
    assert limited.status_code == 429
    assert limited.headers["cache-control"] == "no-store"
    assert limited.headers["x-content-type-options"] == "nosniff"


def test_every_path_answers_405_with_all_of_its_methods(client: TestClient) -> None:
    """A method a path does not take gets 405 and an Allow naming every method it does take."""
    checked = 0
    for path, methods in route_methods(client).items():
        for method in (m for m in METHODS if m not in methods):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == methods, (method, path)
            checked += 1
    assert route_methods(client)["/v1/me"] >= {"GET", "PATCH"}
    assert checked > 0


@pytest.mark.parametrize("path", static_paths())
def test_static_files_refuse_other_methods_with_allow(client: TestClient, path: str) -> None:
    """The static files take GET and HEAD only, and say so."""
    response = client.delete(path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD"}
