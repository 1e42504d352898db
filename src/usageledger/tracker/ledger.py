"""The local ledger: ``$USAGELEDGER_HOME/ledger.db`` with one local user and one device.

It is the same store as the server's (same Alembic tree, same tables); the local user is
called ``local`` and its device is named after the machine. It is opened with the standard
``sqlite3`` (``tracker.db``); SQLAlchemy and Alembic load only when the file needs a
migration. The user's time zone decides the local days of ``usage_daily``: the
``--timezone`` given when the ledger is created (or changed later), else
``USAGELEDGER_DEFAULT_TIME_ZONE`` when set, else the machine's zone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from usageledger.buckets import local_day
from usageledger.errors import LedgerError
from usageledger.settings_rules import check_time_zone
from usageledger.tracker.daily import rebuild_days
from usageledger.tracker.db import LocalDb, needs_migration

LEDGER_FILE = "ledger.db"
LOCAL_USER = "local"
FALLBACK_DEVICE = "this-device"
#: The device-name rule of ``ledger.accounts.NAME`` (a test checks they are the same pattern;
#: importing accounts would bring SQLAlchemy onto the tracker's start-up).
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class LocalLedger:
    """An open local ledger: its file, connection, user, device and time zone."""

    path: Path
    home: Path
    db: LocalDb
    user_id: int
    device_id: int
    device_name: str
    time_zone: str

    @property
    def tz(self) -> ZoneInfo:
        """The ledger's time zone (local days of ``usage_daily``)."""
        return ZoneInfo(self.time_zone)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


def ledger_path(home: Path) -> Path:
    """Where the local ledger of ``home`` lives."""
    return home / LEDGER_FILE


def machine_time_zone(env: Mapping[str, str] | None = None) -> str:
    """The IANA name of this machine's zone: ``$TZ``, ``/etc/localtime``, ``/etc/timezone``.

    Falls back to UTC when none of them names a known zone.
    """
    env = os.environ if env is None else env
    candidates: list[str] = []
    if env.get("TZ"):
        candidates.append(env["TZ"].lstrip(":"))
    try:
        link = os.readlink("/etc/localtime")
    except OSError:
        pass
    else:
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        try:
            check_time_zone(name)
        except ValueError:
            continue
        return name
    return "UTC"


def device_name(hostname: str | None = None) -> str:
    """The machine's host name made to fit the device-name rule of ``ledger.accounts``."""
    raw = socket.gethostname() if hostname is None else hostname
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.strip())
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:64].rstrip("-")
    return name if name and DEVICE_NAME.match(name) else FALLBACK_DEVICE


def initial_time_zone(explicit: str | None, env: Mapping[str, str]) -> str:
    """The zone a new ledger gets: ``explicit``, else the setting, else the machine's."""
    if explicit:
        return explicit
    setting = env.get("USAGELEDGER_DEFAULT_TIME_ZONE")
    if setting:
        return setting
    return machine_time_zone(env)


#: Which reading of the logs the ledger's events come from. Raised when the parsers learn to
#: read more from lines already read (1: the one-hour cache writes, billing classes, web
#: searches and logged costs of migrations 0007-0008). A ledger from an older reading forgets
#: its file cursors once, so the next scan reads every log still on disk again and its events
#: gain what is now read (``tracker.events``: the same response read again takes the newer
#: reading).
#: Kept in SQLite's ``PRAGMA user_version``, which nothing else uses.
READER_GENERATION = 1


def forget_older_reading(conn: sqlite3.Connection) -> bool:
    """Drop every file cursor when the ledger's events come from an older reading of the logs
    (see :data:`READER_GENERATION`); True when it did. Inside the caller's write."""
    (generation,) = conn.execute("PRAGMA user_version").fetchone()
    if int(generation) >= READER_GENERATION:
        return False
    conn.execute("DELETE FROM scan_files")
    conn.execute(f"PRAGMA user_version = {int(READER_GENERATION)}")
    return True


def open_ledger(
    home: Path,
    *,
    now_ms: int,
    time_zone: str | None = None,
    env: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> LocalLedger:
    """Open (creating and migrating if needed) the local ledger under ``home``.

    ``time_zone`` sets the zone of a new ledger and, on an existing one, changes it (which
    rebuilds every local day of ``usage_daily``). A bad zone name raises ``ValueError``.
    """
    env = os.environ if env is None else env
    if time_zone is not None:
        check_time_zone(time_zone)
    path = ledger_path(home)
    # ``LocalDb`` sets synchronous=NORMAL (the server keeps FULL): in WAL mode a power loss
    # may then drop the newest committed scans, never corrupt the file. That loses nothing: a
    # scan's events and the cursors that cover them commit in one transaction, so the next
    # scan reads the same lines again; a lost push acknowledgement makes the next push send
    # buckets the server answers ``unchanged``. It spares an fsync per scan, most of a quick
    # rescan on a slow disk.
    home.mkdir(parents=True, exist_ok=True)
    db = LocalDb(path)
    try:
        if db.read(needs_migration):
            migrate(path)
        zone = initial_time_zone(time_zone, env)
        check_time_zone(zone)
        name = device_name(hostname)

        def identity(conn: sqlite3.Connection) -> tuple[int, int, str, str]:
            user = conn.execute(
                "SELECT user_id, time_zone FROM users WHERE name = ?", (LOCAL_USER,)
            ).fetchone()
            if user is None:
                cursor = conn.execute(
                    "INSERT INTO users (name, time_zone, created_at_ms) VALUES (?, ?, ?)",
                    (LOCAL_USER, zone, now_ms),
                )
                user_id, current_zone = int(cursor.lastrowid or 0), zone
            else:
                user_id, current_zone = int(user[0]), str(user[1])
            found = conn.execute(
                "SELECT device_id, name FROM devices WHERE user_id = ? ORDER BY device_id LIMIT 1",
                (user_id,),
            ).fetchone()
            if found is None:
                device_id, device = 1, name
                conn.execute(
                    "INSERT INTO devices (user_id, device_id, name, created_at_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (user_id, device_id, name, now_ms),
                )
            else:
                device_id, device = int(found[0]), str(found[1])
            if time_zone is not None and time_zone != current_zone:
                change_time_zone(conn, user_id, time_zone)
                current_zone = time_zone
            forget_older_reading(conn)
            return user_id, device_id, device, current_zone

        user_id, device_id, device, current_zone = db.write(identity)
    except BaseException:
        db.close()
        raise
    return LocalLedger(
        path=path,
        home=home,
        db=db,
        user_id=user_id,
        device_id=device_id,
        device_name=device,
        time_zone=current_zone,
    )


def migrate(path: Path) -> None:
    """Create or upgrade the ledger's schema through the one Alembic history.

    The only place the tracker loads SQLAlchemy and Alembic, and only for a file that is new
    or older than this usageledger.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from usageledger.store.engine import make_engine
    from usageledger.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    try:
        upgrade(engine)
    except (SQLAlchemyError, CommandError) as exc:
        # A newer usageledger's file (a revision this one does not know), a locked or broken
        # file: one line, never a traceback.
        raise LedgerError(f"cannot migrate the ledger ({_first_line(exc)})") from exc
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def change_time_zone(conn: sqlite3.Connection, user_id: int, time_zone: str) -> int:
    """Set the user's zone and rebuild all of its ``usage_daily`` rows in it (one replay)."""
    tz = check_time_zone(time_zone)
    conn.execute("UPDATE users SET time_zone = ? WHERE user_id = ?", (time_zone, user_id))
    conn.execute("DELETE FROM usage_daily WHERE user_id = ?", (user_id,))
    first, last = conn.execute(
        "SELECT MIN(bucket_start), MAX(bucket_start) FROM usage_buckets WHERE user_id = ?",
        (user_id,),
    ).fetchone()
    if first is None or last is None:
        return 0
    start, end = local_day(int(first), tz), local_day(int(last), tz)
    days: list[date] = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return rebuild_days(conn, user_id, tz, days)
