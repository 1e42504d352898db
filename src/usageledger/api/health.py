"""``GET /healthz``: liveness and database writability."""

from __future__ import annotations

from fastapi import APIRouter, Request

from usageledger.api.auth import app_context
from usageledger.api.context import name_function
from usageledger.api.errors import documented

router = APIRouter()


@router.get(
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
