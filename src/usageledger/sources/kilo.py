"""Kilo CLI: the Kilo Code fork of opencode, one row per message in ``kilo.db``.

Kilo CLI keeps opencode's storage under its own data dir (``$XDG_DATA_HOME/kilo``, else
``~/.local/share/kilo`` on every platform): the SQLite database ``kilo.db`` (``kilo-<channel>.db``
for preview channels, or a pre-existing ``opencode-<channel>.db`` there), with the same
``message`` table (``id``, ``session_id``, ``time_created``, ``data``) and the same message JSON
(``tokens.{input, output, reasoning, total, cache.{read, write}}``, ``modelID``,
``time.created``). So this parser *is* the opencode parser under another name and other
paths: the read-only, busy-safe database reader, the token mapping (reasoning reported beside
output is added to it) and the message-id key all come from ``opencode.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from usageledger.sources._common import env_dirs
from usageledger.sources.opencode import OpencodeParser, data_dir_files

#: The database names Kilo CLI writes in its data dir (``<stem>.db`` and ``<stem>-<channel>.db``).
DATABASE_STEMS = ("kilo", "opencode")


class KiloParser(OpencodeParser):
    """Parser for Kilo CLI's database (and any opencode-style message files beside it)."""

    name = "kilo"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return the ``kilo*.db`` databases (and ``storage/message/**/*.json``) of each
        Kilo data dir.

        ``KILO_DATA_DIR`` (comma-separated, as ccusage reads it) wins; else
        ``$XDG_DATA_HOME/kilo``, else ``~/.local/share/kilo``, plus Kilo's own database
        override ``KILO_DB`` (a ``.db`` path, relative to that data dir unless absolute).
        """
        roots = env_dirs(env, "KILO_DATA_DIR", home)
        databases: list[Path] = []
        if not roots:
            xdg = env_dirs(env, "XDG_DATA_HOME", home)
            roots = [(xdg[0] if xdg else home / ".local" / "share") / "kilo"]
            override = env.get("KILO_DB", "").strip()
            if override.endswith(".db"):
                # Kilo resolves a relative KILO_DB against its data dir.
                database = roots[0] / override  # an absolute override stays as it is
                databases = [database] if database.is_file() else []
        found = data_dir_files(roots, DATABASE_STEMS)
        return found + [db for db in databases if db not in found]
