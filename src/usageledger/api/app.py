"""``create_app(settings)``: the FastAPI application, built only when asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine

from usageledger import __version__
from usageledger.api import errors
from usageledger.api.auth import app_context
from usageledger.api.context import AppContext, name_function
from usageledger.api.errors import documented
from usageledger.api.ingest import REQUEST_SCHEMA
from usageledger.api.ingest import router as ingest_router
from usageledger.api.middleware import M1Middleware
from usageledger.api.openapi import declare_caps
from usageledger.api.ratelimit import RateLimiter
from usageledger.api.read import router as read_router
from usageledger.api.tokens import KnownTokens
from usageledger.config import Settings
from usageledger.ledger.receipts import KeyClaims
from usageledger.m1 import M1Logger
from usageledger.source_registry import SourceRegistry
from usageledger.store.engine import Database, make_engine
from usageledger.web.routes import router as web_router
from usageledger.web.routes import static_files

health = APIRouter()


@health.get(
    "/healthz",
    summary="Liveness and database writability",
    responses=documented(
        {
            503: "The database is down, read-only, or its file was deleted or replaced "
            "(DATABASE_UNAVAILABLE); see Retry-After.",
            504: "The database did not answer in time (DATABASE_TIMEOUT); see Retry-After.",
        }
    ),
)
def healthz(request: Request) -> dict[str, str]:
    """``{"status": "ok"}`` when an upload could commit now: the database answers, takes a
    write, and (SQLite) is still the file the server opened. Otherwise 503 or 504."""
    name_function("healthz")
    app_context(request).db.check_health()
    return {"status": "ok"}


def create_app(
    settings: Settings, *, engine: Engine | None = None, m1: M1Logger | None = None
) -> FastAPI:
    """Build the application over ``settings`` (an engine and a logger may be passed in)."""
    owns_engine = engine is None
    engine = engine or make_engine(
        settings.resolved_database_url,
        statement_timeout_ms=settings.statement_timeout_ms,
        pool_size=settings.db_pool_size,
        create=False,  # the server never makes an empty ledger where its file was
    )
    logger = m1 or M1Logger(settings.log_file)
    ctx = AppContext(
        settings=settings,
        db=Database(
            engine,
            retries=settings.db_retries,
            write_wait_s=settings.statement_timeout_ms / 1000,
        ),
        registry=SourceRegistry(settings.extra_source_names),
        m1=logger,
        limiter=RateLimiter(settings.rate_per_minute, settings.rate_burst),
        auth_failures=RateLimiter(
            settings.auth_failures_per_minute,
            settings.auth_failure_burst,
            message="too many unknown or revoked tokens from this address",
        ),
        claims=KeyClaims(),
        known_tokens=KnownTokens(),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            engine.dispose()
        if m1 is None:
            logger.close()

    app = FastAPI(
        title="usageledger",
        version=__version__,
        description="An exact, de-duplicated ledger of AI coding-assistant token usage.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.include_router(health)
    app.include_router(ingest_router)
    app.include_router(read_router)
    app.include_router(web_router)
    app.mount("/static", static_files(), name="static")
    app.add_middleware(M1Middleware, logger=logger)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(REQUEST_SCHEMA.get("$defs", {}))
        app.openapi_schema = declare_caps(schema, app.state.ctx.settings)
    return app.openapi_schema
