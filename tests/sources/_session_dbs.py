"""Helpers of the per-session database tests (Hermes, Goose): samples kept as SQL, built on use.

The samples of a SQLite source are text, so a review can read them: ``schema.sql`` at the
sample root holds the tool's table, and every other ``X.sql`` becomes the database ``X.db`` at
the same place in a copy of the tree, in WAL mode as the tools keep them.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.sources._support import SAMPLES


def build(source: str, dest: Path) -> Path:
    """Copy ``samples/<source>`` to ``dest`` with each ``*.sql`` built into its ``*.db``."""
    root = SAMPLES / source
    schema = (root / "schema.sql").read_text()
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("*.sql"), dirs_exist_ok=True)
    for script in sorted(root.rglob("*.sql")):
        if script.name == "schema.sql":
            continue
        target = dest / script.relative_to(root).with_suffix(".db")
        target.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(target) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)
            conn.executescript(script.read_text())
        conn.close()
    return dest


def writer(path: Path) -> sqlite3.Connection:
    """A connection that writes as the tool does: WAL, no automatic checkpoint, autocommit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn
