"""``$USAGELEDGER_HOME/login.json``: the server to push to and this device's token (mode 600).

Logging in to another server, or with another token, clears ``push_acks``: what one server
(or device) acknowledged says nothing about another, so the next push sends every bucket
once (a server that already has a value answers ``unchanged``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.state import write_private

LOGIN_FILE = "login.json"


class LoginError(Exception):
    """A login that cannot be used: bad server URL or token, or an unreadable login file."""


@dataclass(frozen=True, slots=True)
class Login:
    """Where to push and with which device token."""

    server: str
    token: str
    saved_at_ms: int


def login_path(home: Path) -> Path:
    """Where the login of ``home`` is kept."""
    return home / LOGIN_FILE


def normalize_server(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; ``LoginError`` otherwise."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LoginError(f"--server must be an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise LoginError("--server must not have a query or a fragment")
    return text.rstrip("/")


def check_token(token: str) -> str:
    """The token without surrounding space; a read token or a malformed one is refused."""
    value = token.strip()
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise LoginError("the token is empty or has spaces; paste the ul_dev_… secret")
    if value.startswith("ul_read_"):
        raise LoginError(
            "that is a read token; push needs a device token "
            "(usageledger tokens issue --user NAME --device NAME on the server)"
        )
    return value


def load_login(home: Path) -> Login | None:
    """The saved login, None when there is none; ``LoginError`` when it is unreadable."""
    path = login_path(home)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LoginError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = orjson.loads(raw)
        return Login(str(data["server"]), str(data["token"]), int(data.get("saved_at_ms", 0)))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise LoginError(f"{path} is not a login file; run usageledger login again") from None


def save_login(ledger: LocalLedger, server: str, token: str, *, now_ms: int) -> bool:
    """Save the login (mode 600); return True when earlier push acknowledgements were cleared."""
    login = Login(normalize_server(server), check_token(token), now_ms)
    try:
        previous = load_login(ledger.home)
    except LoginError:
        previous = None
    changed = previous is None or (previous.server, previous.token) != (
        login.server,
        login.token,
    )
    if changed:
        ledger.db.write(
            lambda conn: (
                conn.execute("DELETE FROM push_acks WHERE user_id = ?", (ledger.user_id,)).rowcount
            ),
            user_id=ledger.user_id,
        )
    body = {"server": login.server, "token": login.token, "saved_at_ms": login.saved_at_ms}
    write_private(login_path(ledger.home), orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return changed and previous is not None
