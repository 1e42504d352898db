"""``$USAGELEDGER_HOME/tracker-state.json``: when the last scan and push happened.

Informational only (``usageledger status`` shows it); the ledger itself never depends on it,
so it is written without a transaction, atomically by rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = "tracker-state.json"


def load_state(home: Path) -> dict[str, Any]:
    """The saved state, or ``{}`` when there is none or it is unreadable."""
    try:
        value = orjson.loads((home / STATE_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def update_state(home: Path, **fields: Any) -> None:
    """Merge ``fields`` into the saved state."""
    state = load_state(home)
    state.update(fields)
    # Informational: a crash may lose the newest value (never the ledger), so no fsync.
    write_private(home / STATE_FILE, orjson.dumps(state, option=orjson.OPT_INDENT_2), sync=False)


def write_private(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (mode 600).

    ``sync`` flushes the data to disk before the rename (the login file); without it a crash
    can leave the old file or none, which ``load_state`` reads as ``{}``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
