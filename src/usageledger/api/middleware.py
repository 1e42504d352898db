"""The M1 middleware: a request id, database evidence and one M1 line per request."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usageledger.api.context import RequestContext, current_request
from usageledger.api.errors import unhandled
from usageledger.m1 import M1Logger, new_request_id
from usageledger.store.engine import track_db


class M1Middleware:
    """Pure ASGI middleware (no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp, logger: M1Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(request_id=new_request_id())
        token = current_request.set(ctx)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with track_db() as stats:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if not response_started:
                    response = unhandled(exc)
                    await response(scope, receive, send_with_id)
                status = 500
                ctx.error_code = ctx.error_code or "INTERNAL_ERROR"
            finally:
                if ctx.function == "unmatched" and scope.get("endpoint") is not None:
                    ctx.function = getattr(scope["endpoint"], "__name__", "unmatched")
                self.logger.emit(
                    request_id=ctx.request_id,
                    function=ctx.function,
                    stage="response",
                    status=status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    error_code=ctx.error_code if status >= 400 else None,
                    db=stats,
                    method=scope.get("method"),
                )
                current_request.reset(token)
