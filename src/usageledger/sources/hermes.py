"""Hermes Agent: one usage total per session in the SQLite database ``state.db``.

Hermes keeps a row per session in the ``sessions`` table of ``$HERMES_HOME/state.db`` (and of
each profile's ``profiles/<name>/state.db``) and adds every API call's usage to it, so a session
is ONE event: keyed by the session id, dated at the session's start (``started_at``, Unix
seconds), with duplicate policy "last" so that a session that grew since the last scan
REPLACES its earlier total instead of adding to it. The same session found in two databases (a
copied profile) counts once.

Token mapping (Hermes normalises every provider's usage before storing it, see
``agent/usage_pricing.py`` in Hermes): ``input_tokens`` is the prompt NOT read from or written
to a cache; ``cache_read_tokens`` and ``cache_write_tokens`` are apart from it
(``prompt = input + cache_read + cache_write``); ``output_tokens`` is the provider's completion
count, which already includes ``reasoning_tokens`` (Hermes's own total is prompt + output, with
no reasoning added).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from usageledger.sources._common import InvalidRecordError, count, env_dirs, text
from usageledger.sources._session_db import epoch_or_iso, read_sessions
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"
DATABASE = "state.db"
REQUIRED = ("id", "started_at", "input_tokens", "output_tokens")
OPTIONAL = ("model", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cwd")


def map_tokens(row: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Map a ``sessions`` row to (input, cached, output, reasoning, cache write)."""
    fresh = count(row, "input_tokens")
    output = count(row, "output_tokens")
    read = count(row, "cache_read_tokens")
    write = count(row, "cache_write_tokens")
    reasoning = count(row, "reasoning_tokens")
    if reasoning > output:
        raise InvalidRecordError("reasoning_tokens exceeds output_tokens (which contains it)")
    return fresh + write, read, output, reasoning, write


def session_event(row: Mapping[str, Any]) -> UsageEvent | None:
    """The event of one ``sessions`` row (None for a session without usage)."""
    session = row.get("id")
    if not isinstance(session, str) or not session:
        raise InvalidRecordError("session without id")
    fresh, cached, output, reasoning, write = map_tokens(row)
    if fresh == cached == output == 0:
        return None
    return UsageEvent(
        source="hermes",
        event_key=session,
        timestamp=epoch_or_iso(row.get("started_at")),
        model=text(row.get("model")) or UNKNOWN_MODEL,
        session_id=session,
        project=text(row.get("cwd")),
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
        cache_write_tokens=write,
    )


class HermesParser:
    """Parser for Hermes Agent's ``state.db`` (read with SQL; one event per session)."""

    name = "hermes"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return ``state.db`` and ``profiles/*/state.db`` of each Hermes home.

        ``HERMES_HOME`` (comma-separated, as ccusage reads it) wins; else ``~/.hermes``.
        """
        roots = env_dirs(env, "HERMES_HOME", home) or [home / ".hermes"]
        found: list[Path] = []
        for root in roots:
            found += _databases(root)
        return sorted(dict.fromkeys(found), key=str)

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """A database is read with ``read_database``; bytes alone are reported, not read."""
        problem = Problem(path, None, "not a Hermes state.db (read with SQL only)")
        return ParseResult(problems=[problem] if data else [], consumed=len(data))

    def read_database(self, path: str, *, page_rows: int | None = None) -> Iterator[ParseResult]:
        """Read every session row of a Hermes database, read-only and busy-safe, in pages."""
        return read_sessions(
            path,
            table="sessions",
            required=REQUIRED,
            optional=OPTIONAL,
            to_event=session_event,
            page_rows=page_rows,
        )


def _databases(root: Path) -> list[Path]:
    """``root/state.db`` and ``root/profiles/<name>/state.db``: one stat when root is absent."""
    if not root.is_dir():
        return []
    found = [root / DATABASE] if (root / DATABASE).is_file() else []
    profiles = root / "profiles"
    try:
        names = sorted(os.listdir(profiles))
    except OSError:
        return found
    return found + [
        profiles / name / DATABASE for name in names if (profiles / name / DATABASE).is_file()
    ]
