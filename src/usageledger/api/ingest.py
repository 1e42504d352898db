"""``POST /v1/ingest``: the device upload endpoint."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from usageledger.api.auth import app_context, client_address, device_principal, refuse_user_id
from usageledger.api.context import name_function, request_context
from usageledger.api.errors import documented
from usageledger.errors import (
    BadRequest,
    ClientDisconnected,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from usageledger.ledger.accounts import Principal
from usageledger.ledger.receipts import ingest_request
from usageledger.wire import IngestResponse, IngestV1, IngestV2, IngestV3

router = APIRouter()

ERROR_RESPONSES = documented(
    {
        400: "Not JSON, or an empty body (INVALID_JSON).",
        401: "Missing, unknown or revoked token (UNAUTHENTICATED).",
        403: "A read token cannot upload (FORBIDDEN).",
        409: "The same Idempotency-Key is still in flight; see Retry-After.",
        413: "Over 1 MiB or 500 buckets (PAYLOAD_TOO_LARGE).",
        415: "Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE).",
        422: "A rule is broken; `details` names each bucket index and field (or a header "
        "or cookie that names a user, such as X-User-Id).",
        429: "Too many requests for this token, or too many unknown tokens from this "
        "address (RATE_LIMITED); see Retry-After.",
        503: "The database is unavailable; retry after Retry-After.",
        504: "The database timed out; retry after Retry-After.",
    }
)

REQUEST_SCHEMA = TypeAdapter(IngestV1 | IngestV2 | IngestV3).json_schema(
    ref_template="#/components/schemas/{model}"
)


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading the rest.

    A client that hangs up before the whole body arrived is :class:`ClientDisconnected` (499),
    not a bug of ours: the request is dropped before anything is parsed or written.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection mid-body") from None
    return b"".join(chunks)


@router.post(
    "/v1/ingest",
    response_model=IngestResponse,
    responses=ERROR_RESPONSES,
    summary="Upload half-hour usage buckets (absolute totals, idempotent)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": REQUEST_SCHEMA.get("anyOf", REQUEST_SCHEMA.get("oneOf"))}
                }
            },
        }
    },
)
async def ingest(
    request: Request,
    principal: Principal = Depends(device_principal),
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        description="Same key and body within 24 h returns the stored response.",
    ),
) -> Response:
    """Validate a batch all-or-nothing and apply it; see docs/design.md §4 for every rule."""
    name_function("ingest")
    refuse_user_id(request)
    ctx = app_context(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("send the batch as Content-Type: application/json")
    raw = await read_limited(request, ctx.settings.max_body_bytes)
    try:
        reply = await run_in_threadpool(
            ingest_request,
            ctx.db,
            principal,
            raw,
            request_id=request_context().request_id,
            idempotency_key=idempotency_key,
            settings=ctx.settings,
            registry=ctx.registry,
            claims=ctx.claims,
        )
    except Unauthenticated:
        # The transaction found the token revoked: stop taking it from memory, and count it
        # as a failed look-up like any other.
        ctx.known_tokens.forget(token_id=principal.token_id)
        ctx.auth_failures.spend(client_address(request))
        raise
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
    return Response(orjson.dumps(reply.body), media_type="application/json", headers=headers)
