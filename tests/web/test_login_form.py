"""The sign-in form refuses odd bodies cleanly (no browser needed)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


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
