"""Bearer-token authentication: identity comes only from the token.

Read routes look every token up in the database, so a revoked token fails at once. Ingest
accepts a token this process has recently seen live (:class:`KnownTokens`) without that extra
read: its write transaction checks the token again under the user's lock, before it writes
anything (``ledger.receipts.ingest_request``), so revocation is still immediate there too.
Failed look-ups are budgeted per client address (``api/ratelimit.py``).
"""

from __future__ import annotations

import re

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from usageledger.api.context import AppContext
from usageledger.errors import Forbidden, Unauthenticated, ValidationFailed
from usageledger.ledger.accounts import Principal, authenticate_digest, hash_secret

bearer = HTTPBearer(auto_error=False, description="A device token (ul_dev_…) or read token.")
MAX_SECRET = 256
#: The dashboard's HttpOnly, SameSite=Strict cookie; accepted for GET requests only, so a
#: cross-site form can never write with it.
COOKIE = "ul_token"


#: A header or cookie that names a user: ``user_id``, ``user-id``, ``X-User-Id``, … exactly, so
#: that a proxy's own identity headers (``X-Goog-Authenticated-User-Id``) or a parent domain's
#: analytics cookies (``ajs_user_id``) pass.
USER_ID_NAME = re.compile(r"(?:x[-_])?user[-_]id", re.IGNORECASE)


def refuse_user_id(request: Request) -> None:
    """Refuse a request that tries to name its user in a header or a cookie: the user is
    always the token's owner (docs/design.md §2), so such a value is a mistake or an attack."""
    for where, names in (("header", request.headers.keys()), ("cookie", request.cookies)):
        for name in names:
            if USER_ID_NAME.fullmatch(name):
                raise ValidationFailed.at(
                    f"{where}.{name}",
                    f"{where} {name!r} is not accepted: the user is always the token's owner",
                )


def app_context(request: Request) -> AppContext:
    """The application's context."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def client_address(request: Request) -> str:
    """The client's address: the connection's peer. Never read from X-Forwarded-For here:
    uvicorn rewrites the peer from it only for a peer in ``USAGELEDGER_TRUSTED_PROXIES``
    (``usageledger serve`` passes the setting), so a client cannot pick a fresh address to
    reset its budget of failed look-ups."""
    return request.client.host if request.client is not None else "-"


def lookup(request: Request, secret: str) -> Principal | None:
    """The principal of ``secret`` read from the database, or None for an unknown or revoked
    token.

    A look-up that finds nothing spends the client address's failure budget; once that is
    spent, a token not seen live recently gets 429 at once, before the database is asked.
    """
    ctx = app_context(request)
    digest = hash_secret(secret)
    if ctx.known_tokens.get(digest) is None:
        ctx.auth_failures.ensure(client_address(request))
    found = ctx.db.read(lambda conn: authenticate_digest(conn, digest))
    if found is None:
        ctx.known_tokens.forget(digest)
        ctx.auth_failures.spend(client_address(request))
        return None
    ctx.known_tokens.put(digest, found)
    return found


def _secret(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
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
    return secret


def _admit(request: Request, found: Principal | None) -> Principal:
    if found is None:
        raise Unauthenticated("unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    app_context(request).limiter.check(found.token_id)
    return found


def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Principal:
    """The caller of a token-protected route; 401 for a missing, unknown or revoked token."""
    return _admit(request, lookup(request, _secret(request, credentials)))


async def device_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Principal:
    """A device token's caller; 403 for a read token.

    A token seen live recently is taken without a database read (and without a hop to a worker
    thread): the ingest transaction checks it again before writing.
    """
    secret = _secret(request, credentials)
    found = app_context(request).known_tokens.get(hash_secret(secret))
    if found is None:
        found = await run_in_threadpool(lookup, request, secret)
    found = _admit(request, found)
    if found.kind != "device":
        raise Forbidden("a read token cannot upload; use a device token")
    return found
