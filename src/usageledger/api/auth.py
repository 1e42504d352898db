"""Bearer-token authentication: identity comes only from the token."""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from usageledger.api.context import AppContext
from usageledger.errors import Forbidden, Unauthenticated
from usageledger.ledger.accounts import Principal, authenticate

bearer = HTTPBearer(auto_error=False, description="A device token (ul_dev_…) or read token.")
MAX_SECRET = 256
#: The dashboard's HttpOnly, SameSite=Strict cookie; accepted for GET requests only, so a
#: cross-site form can never write with it.
COOKIE = "ul_token"


def app_context(request: Request) -> AppContext:
    """The application's context."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Principal:
    """The caller of a token-protected route; 401 for a missing, unknown or revoked token."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        secret = credentials.credentials.strip()
    elif request.method == "GET" and request.cookies.get(COOKIE):
        secret = request.cookies[COOKIE].strip()
    else:
        raise Unauthenticated(
            "missing token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secret or len(secret) > MAX_SECRET:
        raise Unauthenticated("unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    ctx = app_context(request)
    found = ctx.db.read(lambda conn: authenticate(conn, secret))
    if found is None:
        raise Unauthenticated("unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    ctx.limiter.check(found.token_id)
    return found


def device_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Principal:
    """A device token's caller; 403 for a read token."""
    found = principal(request, credentials)
    if found.kind != "device":
        raise Forbidden("a read token cannot upload; use a device token")
    return found
