"""Every error becomes ``{"error": {"code", "message", "request_id", "details"}}``.

A bug is logged with its traceback, but a database exception in it is logged by its classes and
SQLSTATE only: its text can quote the failing row (PostgreSQL's ``DETAIL``), so no log line
carries a statement's values.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from usageledger.api.context import request_context
from usageledger.errors import ClientDisconnected, ErrorCode, LedgerError
from usageledger.store.engine import describe_database_error, is_database_error, to_database_error

log = logging.getLogger("usageledger.api")


class ErrorDetail(BaseModel):
    """One problem of a rejected request."""

    loc: str = Field(description="Where: a field such as buckets[3].input_tokens, or query.tz.")
    message: str = Field(description="What is wrong there.")
    code: ErrorCode | None = Field(default=None, description="The problem's own code, if any.")


class ErrorBody(BaseModel):
    """The error itself."""

    code: ErrorCode = Field(description="A code from the closed enum (docs/api.md).")
    message: str = Field(description="A client-safe explanation (never database text).")
    request_id: str = Field(
        description="The request's id, also in X-Request-Id and evidence lines."
    )
    details: list[ErrorDetail] = Field(description="Every problem found (may be empty).")


class ErrorResponse(BaseModel):
    """Every error response has this one shape."""

    error: ErrorBody


def documented(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each error status with its description and the error shape.

    A 500 (a bug) is possible on every route and is added to each.
    """
    statuses = {**descriptions, 500: "A bug (INTERNAL_ERROR); the details are in the log."}
    return {
        status: {"model": ErrorResponse, "description": text}
        for status, text in sorted(statuses.items())
    }


def error_response(
    status: int,
    code: ErrorCode | str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error shape; the code is also the request's evidence line's ``error_code``."""
    ctx = request_context()
    ctx.error_code = str(code)
    return JSONResponse(
        status_code=status,
        content={
            "error": {
                "code": str(code),
                "message": message,
                "request_id": ctx.request_id,
                "details": details or [],
            }
        },
        headers=headers,
    )


def from_ledger_error(exc: LedgerError) -> JSONResponse:
    """Render a domain error (an internal one is logged with its cause, never sent)."""
    if exc.status >= 500 and exc.code == ErrorCode.INTERNAL_ERROR:
        log.error("internal error in %s\n%s", request_context().function, safe_traceback(exc))
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(LedgerError)
    async def _ledger(_: Request, exc: LedgerError) -> JSONResponse:
        return from_ledger_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            # A body that is not JSON is a 400 on every route, as on ingest.
            return error_response(400, ErrorCode.INVALID_JSON, "the request body is not valid JSON")
        details = [
            {"loc": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = details[0]["loc"] + ": " + details[0]["message"] if details else "invalid"
        return error_response(422, ErrorCode.VALIDATION_FAILED, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI reads a JSON body itself (PATCH /v1/me) and turns a hang-up into its
            # 400 "error parsing the body": it is the client's hang-up, the same 499.
            return from_ledger_error(
                ClientDisconnected("the client closed the connection mid-body")
            )
        codes = {
            400: ErrorCode.INVALID_JSON,  # FastAPI's "error parsing the body"
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.METHOD_NOT_ALLOWED,
            401: ErrorCode.UNAUTHENTICATED,
            403: ErrorCode.FORBIDDEN,
        }
        code = codes.get(exc.status_code, ErrorCode.VALIDATION_FAILED)
        message = {
            400: "the request body is not valid JSON",
            404: "no such endpoint",
            405: "method not allowed",
        }.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(SQLAlchemyError)
    async def _database(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        error = to_database_error(exc)
        error.__cause__ = exc  # so that a bug's log shows where it came from
        return from_ledger_error(error)

    @app.exception_handler(ClientDisconnect)
    async def _hung_up(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # A body read by FastAPI itself (not ingest's own reader): the same 499.
        return from_ledger_error(ClientDisconnected("the client closed the connection mid-body"))


def unhandled(exc: BaseException) -> JSONResponse:
    """The response for an exception nothing else handled (no internals in it)."""
    log.error("unhandled error in %s\n%s", request_context().function, safe_traceback(exc))
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


def safe_traceback(exc: BaseException) -> str:
    """``exc``'s traceback with its causes, each database exception named by its classes and
    SQLSTATE instead of its text."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    blocks = []
    for error in reversed(chain):
        if is_database_error(error):
            what = describe_database_error(error)
        else:
            what = "".join(traceback.format_exception_only(type(error), error)).rstrip()
        frames = "".join(traceback.format_tb(error.__traceback__))
        blocks.append(f"Traceback (most recent call last):\n{frames}{what}")
    return "\n\nThe above exception was the direct cause of the following exception:\n\n".join(
        blocks
    )
