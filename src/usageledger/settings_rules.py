"""The rules settings are checked by, without a settings library.

``config.Settings`` (pydantic-settings: the server and the server's commands) and
``tracker.settings`` (the tracker's commands, which must start without pydantic) both check
their values with these functions, so one rule has one definition. A bad value raises
``ValueError`` with the reason; the caller adds the variable's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Column lengths of the server schema (``store/tables.py``) that settings and input caps may not
#: exceed; kept here as literals so that reading settings never imports SQLAlchemy (a test
#: checks that they equal the columns).
MODEL_COLUMN_LENGTH = 128
TIME_ZONE_COLUMN_LENGTH = 64


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable and the problem."""


def default_home() -> Path:
    """``$XDG_DATA_HOME/usageledger``, else ``~/.local/share/usageledger``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "usageledger"


def check_home(value: str) -> Path:
    """``USAGELEDGER_HOME``: a directory path; an empty value is refused (it would silently
    mean the current directory)."""
    if not value.strip():
        raise ValueError("must be a directory path, not empty")
    return Path(value)


def check_time_zone(name: str) -> ZoneInfo:
    """Return the zone for an IANA name, or raise ``ValueError`` with a clear message."""
    if (
        not name
        or len(name) > TIME_ZONE_COLUMN_LENGTH
        or name.strip() != name
        or ".." in name
        or name.startswith("/")
    ):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like Europe/Berlin"
        ) from exc


def invalid(lines: list[str]) -> SettingsError:
    """One :class:`SettingsError` listing ``NAME: problem`` lines (the server's and the
    tracker's readers word a bad value the same way)."""
    return SettingsError("invalid settings:\n  " + "\n  ".join(lines))
