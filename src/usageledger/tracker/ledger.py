"""The local ledger: ``$USAGELEDGER_HOME/ledger.db`` with one local user and one device.

It is the same store as the server's (same Alembic tree, same tables); the local user is
called ``local`` and its device is named after the machine. The user's time zone decides
the local days of ``usage_daily``: the ``--timezone`` given when the ledger is created (or
changed later), else ``USAGELEDGER_DEFAULT_TIME_ZONE`` when set, else the machine's zone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, func, select, update

from usageledger.buckets import local_day
from usageledger.config import check_time_zone
from usageledger.ledger import accounts
from usageledger.ledger.rollups import rebuild_days
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import current_revision, head_revision, upgrade
from usageledger.store.tables import devices, usage_buckets, usage_daily, users

LEDGER_FILE = "ledger.db"
LOCAL_USER = "local"
FALLBACK_DEVICE = "this-device"


@dataclass(frozen=True, slots=True)
class LocalLedger:
    """An open local ledger: its file, database boundary, user, device and time zone."""

    path: Path
    home: Path
    engine: Engine
    db: Database
    user_id: int
    device_id: int
    device_name: str
    time_zone: str

    @property
    def tz(self) -> ZoneInfo:
        """The ledger's time zone (local days of ``usage_daily``)."""
        return ZoneInfo(self.time_zone)

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()


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
    return name if name and accounts.NAME.match(name) else FALLBACK_DEVICE


def initial_time_zone(explicit: str | None, env: Mapping[str, str]) -> str:
    """The zone a new ledger gets: ``explicit``, else the setting, else the machine's."""
    if explicit:
        return explicit
    setting = env.get("USAGELEDGER_DEFAULT_TIME_ZONE")
    if setting:
        return setting
    return machine_time_zone(env)


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
    # synchronous=NORMAL (the server keeps FULL): in WAL mode a power loss may then drop the
    # newest committed scans, never corrupt the file. That loses nothing: a scan's events and
    # the cursors that cover them commit in one transaction, so the next scan reads the same
    # lines again; a lost push acknowledgement makes the next push send buckets the server
    # answers ``unchanged``. It spares an fsync per scan, most of a quick rescan on a slow disk.
    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    try:
        if current_revision(engine) != head_revision():
            upgrade(engine)
        db = Database(engine)
        zone = initial_time_zone(time_zone, env)
        check_time_zone(zone)
        name = device_name(hostname)

        def identity(conn: Connection) -> tuple[int, int, str, str]:
            user = accounts.find_user(conn, LOCAL_USER)
            if user is None:
                user_id = accounts.create_user(conn, LOCAL_USER, time_zone=zone, now_ms=now_ms)
                current_zone = zone
            else:
                user_id, current_zone = int(user["user_id"]), str(user["time_zone"])
            found = conn.execute(
                select(devices.c.device_id, devices.c.name)
                .where(devices.c.user_id == user_id)
                .order_by(devices.c.device_id)
            ).first()
            if found is None:
                device_id = accounts.ensure_device(conn, user_id, name, now_ms=now_ms)
                device = name
            else:
                device_id, device = int(found[0]), str(found[1])
            if time_zone is not None and time_zone != current_zone:
                change_time_zone(conn, user_id, time_zone)
                current_zone = time_zone
            return user_id, device_id, device, current_zone

        user_id, device_id, device, current_zone = db.write(identity)
    except BaseException:
        engine.dispose()
        raise
    return LocalLedger(
        path=path,
        home=home,
        engine=engine,
        db=db,
        user_id=user_id,
        device_id=device_id,
        device_name=device,
        time_zone=current_zone,
    )


def change_time_zone(conn: Connection, user_id: int, time_zone: str) -> int:
    """Set the user's zone and rebuild all of its ``usage_daily`` rows in it (one replay)."""
    tz = check_time_zone(time_zone)
    conn.execute(update(users).where(users.c.user_id == user_id).values(time_zone=time_zone))
    conn.execute(delete(usage_daily).where(usage_daily.c.user_id == user_id))
    first, last = conn.execute(
        select(
            func.min(usage_buckets.c.bucket_start), func.max(usage_buckets.c.bucket_start)
        ).where(usage_buckets.c.user_id == user_id)
    ).one()
    if first is None or last is None:
        return 0
    start, end = local_day(int(first), tz), local_day(int(last), tz)
    days: list[date] = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return rebuild_days(conn, user_id, tz, days)
