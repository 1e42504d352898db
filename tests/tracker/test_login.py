"""``tracker.login``: the login file is private, and another server forgets the old acks."""

from __future__ import annotations

import stat

import orjson
import pytest

from tests.tracker.conftest import Clock
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import (
    LoginError,
    load_login,
    login_path,
    normalize_server,
    save_login,
)


def add_ack(ledger: LocalLedger) -> None:
    """One acknowledged bucket."""
    row = {
        "user_id": ledger.user_id,
        "device_id": ledger.device_id,
        "source": "codex",
        "model": "gpt-5",
        "bucket_start": 1_757_930_400,
        "acked_revision": 5,
        "acked_at_ms": 6,
    }
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    ledger.db.write(
        lambda conn: conn.execute(
            f"INSERT INTO push_acks ({columns}) VALUES ({marks})", tuple(row.values())
        )
    )


def acks(ledger: LocalLedger) -> int:
    """Rows in push_acks."""
    return ledger.db.read(
        lambda conn: int(conn.execute("SELECT COUNT(*) FROM push_acks").fetchone()[0])
    )


def test_the_login_file_is_readable_by_its_owner_only(ledger: LocalLedger, clock: Clock) -> None:
    """login.json holds the server and token with mode 600."""
    save_login(ledger, "https://ledger.example/", "ul_dev_abc", now_ms=clock())
    path = login_path(ledger.home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert orjson.loads(path.read_bytes())["server"] == "https://ledger.example"
    login = load_login(ledger.home)
    assert login is not None
    assert (login.server, login.token) == ("https://ledger.example", "ul_dev_abc")


def test_a_rewritten_login_stays_private(ledger: LocalLedger, clock: Clock) -> None:
    """Even over a world-readable file, a new login is written with mode 600."""
    path = login_path(ledger.home)
    path.write_text("{}")
    path.chmod(0o644)
    save_login(ledger, "https://ledger.example", "ul_dev_abc", now_ms=clock())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_another_server_clears_the_acknowledgements(ledger: LocalLedger, clock: Clock) -> None:
    """What one server acknowledged says nothing about another."""
    save_login(ledger, "https://one.example", "ul_dev_abc", now_ms=clock())
    add_ack(ledger)
    assert save_login(ledger, "https://two.example", "ul_dev_abc", now_ms=clock()) is True
    assert acks(ledger) == 0


def test_the_same_login_again_keeps_them(ledger: LocalLedger, clock: Clock) -> None:
    """Logging in again to the same server with the same token changes nothing."""
    save_login(ledger, "https://one.example", "ul_dev_abc", now_ms=clock())
    add_ack(ledger)
    assert save_login(ledger, "https://one.example/", "ul_dev_abc", now_ms=clock()) is False
    assert acks(ledger) == 1


@pytest.mark.parametrize(
    ("server", "token", "message"),
    [
        ("ftp://x", "ul_dev_a", "http"),
        ("ledger.example", "ul_dev_a", "http"),
        ("https://x", "", "empty"),
        ("https://x", "ul_dev_a b", "spaces"),
        ("https://x", "ul_read_abc", "read token"),
    ],
)
def test_bad_logins_are_refused(
    ledger: LocalLedger, clock: Clock, server: str, token: str, message: str
) -> None:
    """A URL that is not http(s), an empty or spaced token, or a read token are refused."""
    with pytest.raises(LoginError, match=message):
        save_login(ledger, server, token, now_ms=clock())
    assert not login_path(ledger.home).exists()


def test_a_corrupt_login_file_is_a_clear_error(ledger: LocalLedger) -> None:
    """An unreadable login names the file and the fix."""
    login_path(ledger.home).write_text("not json")
    with pytest.raises(LoginError, match="login again"):
        load_login(ledger.home)


def test_server_urls_keep_a_path_prefix() -> None:
    """A server behind a path prefix keeps it, without the trailing slash."""
    assert normalize_server(" https://host:8443/ledger/ ") == "https://host:8443/ledger"
