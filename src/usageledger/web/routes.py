"""Dashboard routes: ``/`` (sign-in or dashboard), ``/leaderboard``, ``/login``, ``/logout``.

A person signs in with a read token through a form POST; the token is kept in an HttpOnly,
SameSite=Strict cookie (never in a URL) that the read API accepts for GET requests only.
Every asset is served from the package: no CDN, no external font, no chart library.

``/login`` and ``/logout`` refuse a post that another site made (:func:`cross_site`):
SameSite keeps the cookie from being *sent* cross-site, but not from being *set* by a
cross-site form, which would sign the victim in with the attacker's read token.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from usageledger.api.auth import COOKIE, lookup
from usageledger.api.context import name_function
from usageledger.api.middleware import CSP
from usageledger.errors import RateLimited

router = APIRouter(include_in_schema=False)
STATIC = Path(str(resources.files("usageledger.web") / "static"))
MAX_FORM = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it a browser sends "Origin: null" even on the sign-in form's
    # own post, which cross_site() cannot tell from a foreign one. No referrer leaves the site.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


#: ``Sec-Fetch-Site`` values of a request this site made itself (``none``: the person typed
#: or bookmarked it). ``same-site`` is a sibling subdomain, another origin: refused.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _host(netloc: str, scheme: str) -> str:
    """``host[:port]`` in lower case, the scheme's default port left out."""
    host, sep, port = netloc.lower().rpartition(":")
    if sep and "]" not in port and port == DEFAULT_PORTS.get(scheme):
        return host
    return netloc.lower()


def cross_site(request: Request) -> bool:
    """Whether a browser says another site made this request.

    A browser's ``Sec-Fetch-Site`` (no page can set it) decides when present. A browser too
    old to send it is judged by ``Origin``: another host, or ``null`` (a sandboxed frame, a
    page that hides its origin), is refused. The host, not the scheme, is compared: behind a
    TLS-terminating proxy that is not a trusted proxy the server sees ``http`` while the page
    is ``https``; only a plain ``http`` origin posting to a request that arrived over
    ``https`` is refused (a page injected into the plain-text site). A request with neither
    header is not from a browser (curl, a script): it
    cannot carry a victim's session, so it is served.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() not in OWN_FETCH_SITES
    origin = request.headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return True  # "null" (a sandboxed frame, a redirect chain) or garbage
    if parts.scheme == "http" and request.url.scheme == "https":
        return True  # a page injected into the plain-text site, posting to TLS
    own = request.headers.get("host", "")
    return _host(parts.netloc, parts.scheme) != _host(own, parts.scheme)


def _refused() -> HTMLResponse:
    return _page(
        "login.html",
        message="That request came from another site and was refused. Sign in here instead.",
        status=403,
    )


def static_files() -> StaticFiles:
    """The dashboard's assets."""
    return StaticFiles(directory=STATIC)


def _page(
    name: str, *, message: str = "", status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    text = (STATIC / name).read_text(encoding="utf-8")
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(
        text.replace("<!--MESSAGE-->", notice),
        status_code=status,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


async def _signed_in(request: Request) -> bool:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 256:
        return False
    try:
        found = await run_in_threadpool(lookup, request, token)
    except RateLimited:  # too many bad tokens from this address: show the sign-in form
        return False
    return found is not None


@router.get("/")
async def index(request: Request) -> Response:
    """The dashboard when signed in, else the sign-in form."""
    name_function("web_index")
    if await _signed_in(request):
        return _page("dashboard.html")
    return _page("login.html")


FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#2f6fed"/>'
    '<rect x="3" y="8" width="2" height="5" fill="#fff"/><rect x="7" y="5" width="2" height="8" '
    'fill="#fff"/><rect x="11" y="3" width="2" height="10" fill="#fff"/></svg>'
)


@router.get("/favicon.ico")
async def favicon() -> Response:
    """A small SVG icon (so browsers do not log a 404)."""
    name_function("web_favicon")
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/leaderboard")
async def leaderboard(request: Request) -> Response:
    """The leaderboard page (signed in), else the sign-in form."""
    name_function("web_leaderboard")
    if await _signed_in(request):
        return _page("leaderboard.html")
    return _page("login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a read token from the form and keep it in an HttpOnly cookie."""
    name_function("web_login")
    if cross_site(request):
        return _refused()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return _page("login.html", message="That form was too large.", status=413)
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=5)
    except ValueError:  # more fields than a sign-in form has
        return _page("login.html", message="That form has too many fields.", status=400)
    token = (fields.get("token") or [""])[0].strip()
    if not token or len(token) > 256:
        return _page("login.html", message="Enter a read token (ul_read_…).", status=401)
    try:
        found = await run_in_threadpool(lookup, request, token)
    except RateLimited as limited:
        return _page(
            "login.html",
            message="Too many unknown tokens from this address; try again later.",
            status=429,
            headers=limited.headers,
        )
    if found is None:
        return _page("login.html", message="That token is unknown or revoked.", status=401)
    if found.kind != "read":
        return _page(
            "login.html",
            message="That is a device token. Sign in with a read token "
            "(usageledger tokens issue --user NAME --kind read).",
            status=401,
        )
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=30 * 86400,
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the cookie (for a post from this site only)."""
    name_function("web_logout")
    if cross_site(request):
        return _refused()
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
