"""One error hierarchy and one closed set of error codes.

::

    LedgerError                      every error a client or operator can see
    ├── ValidationFailed             422: the request is well-formed JSON but breaks a rule
    │   └── RangeTooLarge            422: a read range over its cap
    ├── BadRequest                   400: not JSON, empty body
    ├── PayloadTooLarge              413: over the byte or bucket cap (checked before parsing)
    ├── UnsupportedMediaType         415: not application/json
    ├── Unauthenticated              401: missing, unknown or revoked token
    ├── Forbidden                    403: a token of the wrong kind
    ├── NotFound                     404
    ├── IdempotencyConflict          409 / 422: Idempotency-Key in flight or reused
    ├── RateLimited                  429: with Retry-After
    ├── ClientDisconnected           499: the client hung up before its request was read
    └── DatabaseError                503 / 504: the database (our upstream) failed,
                                     is read-only or full, or its file was deleted

Every error response has the shape ``{"error": {"code", "message", "request_id", "details"}}``
and ``code`` is an :class:`ErrorCode`. Database error text never reaches a client.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self


class ErrorCode(StrEnum):
    """The closed enum of error codes (also the ``error_code`` values of evidence lines)."""

    VALIDATION_FAILED = "VALIDATION_FAILED"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    UNSUPPORTED_SCHEMA_VERSION = "UNSUPPORTED_SCHEMA_VERSION"
    TOKEN_EQUALITY_VIOLATED = "TOKEN_EQUALITY_VIOLATED"
    UNKNOWN_SOURCE = "UNKNOWN_SOURCE"
    BUCKET_START_INVALID = "BUCKET_START_INVALID"
    RANGE_TOO_LARGE = "RANGE_TOO_LARGE"
    INVALID_JSON = "INVALID_JSON"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_FLIGHT = "IDEMPOTENCY_KEY_IN_FLIGHT"
    RATE_LIMITED = "RATE_LIMITED"
    #: The client closed the connection before sending its whole body (status 499, as nginx
    #: logs it): nothing was written, and no response reached anyone.
    CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    DATABASE_TIMEOUT = "DATABASE_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    #: A job (never a request) stopped before it finished: Ctrl-C, or a failing exit inside it.
    INTERRUPTED = "INTERRUPTED"


class LedgerError(Exception):
    """Base of every error with a code, an HTTP status and a client-safe message."""

    status = 500
    code = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []
        self.headers = headers or {}


class ValidationFailed(LedgerError):
    """The input breaks a documented rule; ``details`` names each offending location."""

    status = 422
    code = ErrorCode.VALIDATION_FAILED

    @classmethod
    def at(cls, loc: str, message: str, *, summary: str | None = None) -> Self:
        """One problem at ``loc`` (``query.from``, ``body.time_zone``, ``header.x-user-id``);
        the error's message is ``summary``, or the problem's own message."""
        return cls(
            summary or message,
            details=[{"loc": loc, "message": message, "code": str(ErrorCode.VALIDATION_FAILED)}],
        )


class RangeTooLarge(ValidationFailed):
    """A read range is over its cap; the message names the cap."""

    code = ErrorCode.RANGE_TOO_LARGE


class BadRequest(LedgerError):
    """The body is not JSON at all (or is empty)."""

    status = 400
    code = ErrorCode.INVALID_JSON


class PayloadTooLarge(LedgerError):
    """Over the byte or bucket cap; raised before the body is turned into models."""

    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(LedgerError):
    """The request does not declare ``application/json``."""

    status = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class Unauthenticated(LedgerError):
    """A missing, unknown or revoked token."""

    status = 401
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(LedgerError):
    """A valid token of a kind that may not do this (a read token on ingest)."""

    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(LedgerError):
    """No such resource (or no such user/device for an admin command)."""

    status = 404
    code = ErrorCode.NOT_FOUND


class IdempotencyConflict(LedgerError):
    """An Idempotency-Key still in flight (409) or reused with another body (422)."""

    status = 409
    code = ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT


class RateLimited(LedgerError):
    """Too many requests for one token; ``Retry-After`` says when to come back."""

    status = 429
    code = ErrorCode.RATE_LIMITED


class ClientDisconnected(LedgerError):
    """The client hung up mid-request; 499 is what the evidence line records (no one reads it)."""

    status = 499
    code = ErrorCode.CLIENT_DISCONNECTED


class DatabaseError(LedgerError):
    """The database failed (unavailable, timed out, or kept conflicting after retries)."""

    status = 503
    code = ErrorCode.DATABASE_UNAVAILABLE
