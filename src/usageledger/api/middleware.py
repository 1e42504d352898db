"""The evidence middleware: a request id, database evidence and one evidence line per request.

It also finishes the headers of every answer, whoever produced it (a route, an error handler,
the router's own 404/405, the static files), so that none can be forgotten:

- ``X-Content-Type-Options: nosniff`` on everything;
- ``Cache-Control: no-store`` unless the answer set its own (only the dashboard's CSS, JS and
  images, served under ``/static/``, may be cached): API answers carry a user's data;
- a ``Content-Security-Policy`` on every HTML answer;
- on a 405, an ``Allow`` that lists every method of the path (the router names only the
  first route it met with that path: ``GET`` for ``/v1/me``, forgetting ``PATCH``).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usageledger.api.context import RequestContext, current_request
from usageledger.api.errors import unhandled
from usageledger.evidence import EvidenceLogger, new_request_id
from usageledger.store.engine import track_db

#: The policy of every HTML answer: the dashboard's pages (``web/routes.py``) load only this
#: site's own scripts, styles and images, and no other site may frame them.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: FastAPI's interactive docs pages (``/docs``, ``/redoc``) load their scripts, styles and fonts
#: from a CDN and run an inline script; they hold no data of their own.
DOCS_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https:; connect-src 'self'; "
    "worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def allowed_methods(scope: Scope, root_path: str) -> str:
    """Every method some route of the app accepts at this request's path, as ``Allow`` lists
    them (empty when no route has the path)."""
    path: str = scope["path"]
    if root_path and path.startswith(root_path + "/"):
        path = path[len(root_path) :]
    methods: set[str] = set()
    for route in iter_route_contexts(getattr(scope.get("app"), "routes", [])):
        regex = getattr(route, "path_regex", None)
        if regex is None:
            continue
        if isinstance(route.original_route, Mount):  # the static files: GET and HEAD only
            if path.startswith(f"{route.path}/"):
                methods |= {"GET", "HEAD"}
        elif regex.match(path):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def finish_headers(scope: Scope, status: int, headers: list[Any], root_path: str = "") -> list[Any]:
    """``headers`` with the security headers every answer needs, and a complete ``Allow``."""
    present = {bytes(name).lower(): bytes(value) for name, value in headers}
    out = list(headers)
    if b"x-content-type-options" not in present:
        out.append((b"x-content-type-options", b"nosniff"))
    html = present.get(b"content-type", b"").lower().startswith(b"text/html")
    path: str = scope.get("path", "")
    if b"cache-control" not in present and not (
        path.startswith("/static/") and status < 400 and not html
    ):
        out.append((b"cache-control", b"no-store"))
    if html and b"content-security-policy" not in present:
        app = scope.get("app")
        docs = {getattr(app, "docs_url", None), getattr(app, "redoc_url", None)}
        docs.add(getattr(app, "swagger_ui_oauth2_redirect_url", None))
        policy = DOCS_CSP if path in docs - {None} else CSP
        out.append((b"content-security-policy", policy.encode()))
    if status == 405:
        allow = allowed_methods(scope, root_path)
        if allow:
            out = [(n, v) for n, v in out if bytes(n).lower() != b"allow"]
            out.append((b"allow", allow.encode()))
    return out


class EvidenceMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp, logger: EvidenceLogger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(request_id=new_request_id())
        root_path = scope.get("root_path", "")  # the router changes it inside a mount
        token = current_request.set(ctx)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                headers = finish_headers(scope, status, message.get("headers", []), root_path)
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
