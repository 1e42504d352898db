"""The composition root: the one place that puts the API and the dashboard together.

``create_app(settings)`` builds the FastAPI application (the ``api/`` routers, the ``web/``
pages and static files, the middleware, the shared context); ``app_from_environment`` is the
factory ``usageledger serve`` hands to uvicorn (``usageledger.server:app_from_environment``).
It sits above ``api/`` and ``web/`` so that neither imports the other's way up; see the map in
docs/architecture.md.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine

from usageledger import __version__
from usageledger.api import errors
from usageledger.api.context import AppContext
from usageledger.api.health import router as health_router
from usageledger.api.ingest import REQUEST_SCHEMA
from usageledger.api.ingest import router as ingest_router
from usageledger.api.middleware import EvidenceMiddleware
from usageledger.api.openapi import declare_caps
from usageledger.api.ratelimit import RateLimiter
from usageledger.api.read import router as read_router
from usageledger.api.tokens import KnownTokens
from usageledger.config import Settings, load_settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger.receipts import KeyClaims
from usageledger.source_registry import SourceRegistry
from usageledger.store.engine import Database, make_engine
from usageledger.web.routes import router as web_router
from usageledger.web.routes import static_files


def create_app(
    settings: Settings, *, engine: Engine | None = None, evidence: EvidenceLogger | None = None
) -> FastAPI:
    """Build the application over ``settings`` (an engine and a logger may be passed in)."""
    owns_engine = engine is None
    engine = engine or make_engine(
        settings.resolved_database_url,
        statement_timeout_ms=settings.statement_timeout_ms,
        pool_size=settings.db_pool_size,
        create=False,  # the server never makes an empty ledger where its file was
    )
    logger = evidence or EvidenceLogger(settings.log_file)
    ctx = AppContext(
        settings=settings,
        db=Database(
            engine,
            retries=settings.db_retries,
            write_wait_s=settings.statement_timeout_ms / 1000,
        ),
        registry=SourceRegistry(settings.extra_source_names),
        evidence=logger,
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
        if evidence is None:
            logger.close()

    app = FastAPI(
        title="usageledger",
        version=__version__,
        description="An exact, de-duplicated ledger of AI coding-assistant token usage.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.include_router(health_router)
    app.include_router(ingest_router)
    app.include_router(read_router)
    app.include_router(web_router)
    app.mount("/static", static_files(), name="static")
    app.add_middleware(EvidenceMiddleware, logger=logger)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(REQUEST_SCHEMA.get("$defs", {}))
        app.openapi_schema = declare_caps(schema, app.state.ctx.settings)
    return app.openapi_schema


def app_from_environment() -> FastAPI:
    """Build the app from ``USAGELEDGER_*`` settings (called by uvicorn in each worker)."""
    app = create_app(load_settings())
    # Everything built so far (modules, the app, the schemas) lives as long as the process.
    # Freezing it keeps the collector from walking it again on every full collection, which
    # a batch of 500 buckets (a few thousand short-lived objects) otherwise triggers often:
    # validating one took 3.2 ms with the app's heap walked, 2.2 ms with it frozen.
    gc.collect()
    gc.freeze()
    return app
