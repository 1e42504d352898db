"""Per-app and per-request context shared by the middleware, the routes and the handlers."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from usageledger.api.ratelimit import RateLimiter
from usageledger.api.tokens import KnownTokens
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger.receipts import KeyClaims
from usageledger.source_registry import SourceRegistry
from usageledger.store.engine import Database


@dataclass(slots=True)
class AppContext:
    """What every route needs, built once by ``usageledger.server.create_app``."""

    settings: Settings
    db: Database
    registry: SourceRegistry
    evidence: EvidenceLogger
    limiter: RateLimiter
    #: Failed token look-ups per client address (see ``api/ratelimit.py``).
    auth_failures: RateLimiter
    #: Idempotency-Keys being applied by this process right now.
    claims: KeyClaims
    #: Tokens seen live recently (ingest re-checks them in its transaction).
    known_tokens: KnownTokens


@dataclass(slots=True)
class RequestContext:
    """Evidence of the current request, filled in as it goes."""

    request_id: str
    function: str = "unmatched"
    error_code: str | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("usageledger_request", default=None)


def request_context() -> RequestContext:
    """The current request's context (a placeholder outside a request)."""
    ctx = current_request.get()
    return ctx if ctx is not None else RequestContext(request_id="-")


def name_function(name: str) -> None:
    """Name the current request's ``function`` for its evidence line."""
    request_context().function = name
