"""The sign-in form refuses odd bodies cleanly (no browser needed)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import Persona
from usageledger.api.auth import COOKIE
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ("a=1&b=2&c=3&d=4&e=5&f=6&token=x", 400, "too many fields"),
        ("token=", 401, "Enter a read token"),
        ("token=ul_read_unknown", 401, "unknown or revoked"),
        ("token=" + "x" * 5000, 413, "too large"),
    ],
)
def test_a_bad_sign_in_form_gets_a_page_with_a_message(
    client: TestClient, body: str, status: int, text: str
) -> None:
    """Too many fields, an empty, unknown or huge token: a clear message, no cookie."""
    response = client.post(
        "/login",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == status
    assert text in response.text
    assert "set-cookie" not in response.headers


def test_guessing_read_tokens_on_the_form_gets_429(settings: Settings, engine: Engine) -> None:
    """The form shares the per-address budget of failed look-ups: guess after guess is
    refused with 429 and Retry-After once it is spent."""
    strict = settings.model_copy(update={"auth_failures_per_minute": 1, "auth_failure_burst": 3})
    app = create_app(strict, engine=engine, evidence=EvidenceLogger("off"))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [
            client.post("/login", content=f"token=ul_read_guess{i}", headers=form).status_code
            for i in range(5)
        ]
        refused = client.post("/login", content="token=ul_read_guess", headers=form)
    assert statuses == [401, 401, 401, 429, 429]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "Too many unknown tokens" in refused.text


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.testserver"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ],
    ids=["foreign-origin", "null-origin", "cross-site", "sibling-subdomain", "same-site", "lie"],
)
def test_a_sign_in_posted_by_another_site_is_refused(
    client: TestClient, alice: Persona, headers: dict[str, str]
) -> None:
    """Login CSRF: another site's form cannot sign a victim in with its own read token."""
    response = client.post(
        "/login",
        content=f"token={alice.read_token}",
        headers={**FORM, **headers},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "another site" in response.text
    assert "set-cookie" not in response.headers


def test_a_plain_http_origin_cannot_post_to_the_https_site(
    alice: Persona, client: TestClient
) -> None:
    """A page injected into plain-text http://host (someone on the network) is another origin
    for the TLS site, even for a browser too old to send Sec-Fetch-Site."""
    response = client.post(
        "https://testserver/login",
        content=f"token={alice.read_token}",
        headers={**FORM, "Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://testserver:80"},
        {"Origin": "https://testserver"},  # TLS ended at a proxy the server does not trust
        {"Sec-Fetch-Site": "none"},
        # Chromium under "Referrer-Policy: no-referrer" sends Origin: null on its own form.
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
        {},  # curl or a script: no browser session to abuse
    ],
    ids=["same-origin", "default-port", "tls-proxy", "typed", "hidden-origin", "no-browser"],
)
def test_a_sign_in_from_this_site_or_no_browser_is_served(
    client: TestClient, alice: Persona, headers: dict[str, str]
) -> None:
    """The server's own form, and a client that is not a browser, still sign in."""
    response = client.post(
        "/login",
        content=f"token={alice.read_token}",
        headers={**FORM, **headers},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert COOKIE in response.headers["set-cookie"]


def test_a_sign_out_posted_by_another_site_is_refused(client: TestClient) -> None:
    """Another site cannot sign a person out either; this site's own form can."""
    foreign = client.post(
        "/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False
    )
    own = client.post(
        "/logout",
        headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers
    assert own.status_code == 303
    assert COOKIE in own.headers["set-cookie"]
