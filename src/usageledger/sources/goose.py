"""Goose: one usage total per session in the SQLite database ``sessions/sessions.db``.

Goose keeps a row per session in the ``sessions`` table. After each model call it stores that
call's usage in ``input_tokens``/``output_tokens``/``total_tokens`` (the LAST turn, i.e. the
current context) and adds it to ``accumulated_input_tokens``/``accumulated_output_tokens``/
``accumulated_total_tokens`` (the SESSION total). The session total is therefore the
``accumulated_*`` set; the last-turn set is used only for a row whose ``accumulated_*`` columns
are all NULL (sessions written before Goose had them). A session is ONE event keyed by its id,
dated at its start (``created_at``), with duplicate policy "last": a session that grew since
the last scan REPLACES its earlier total.

Token mapping: Goose's input is the whole prompt (its Anthropic adapter adds the cache reads
and writes into it), so ``accumulated_cache_read_tokens`` (newer schemas) is taken out of it;
``total = input + output`` except for providers whose output excludes reasoning (Gemini's
``candidatesTokenCount`` beside ``thoughtsTokenCount``), where ``total − (input + output)`` is
the reasoning, added to output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import InvalidRecordError, count, env_dirs, text
from usageledger.sources._session_db import epoch_or_iso, read_sessions
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"
DATABASE = "sessions.db"
REQUIRED = ("id", "created_at")
TOTAL_COLUMNS = ("input_tokens", "output_tokens", "total_tokens")
CACHE_COLUMNS = ("cache_read_tokens", "cache_write_tokens")
OPTIONAL = (
    *TOTAL_COLUMNS,
    *CACHE_COLUMNS,
    *(f"accumulated_{name}" for name in (*TOTAL_COLUMNS, *CACHE_COLUMNS)),
    "model_config_json",
    "working_dir",
)


def session_counts(row: Mapping[str, Any]) -> dict[str, int]:
    """The session's totals: the ``accumulated_*`` columns, else (all NULL) the last turn's."""
    names = (*TOTAL_COLUMNS, *CACHE_COLUMNS)
    accumulated = any(row.get(f"accumulated_{name}") is not None for name in TOTAL_COLUMNS)
    prefix = "accumulated_" if accumulated else ""
    return {name: count(row, prefix + name) for name in names}


def map_tokens(counts: Mapping[str, int]) -> tuple[int, int, int, int, int]:
    """Map a session's totals to (input, cached, output, reasoning, cache write)."""
    prompt, output = counts["input_tokens"], counts["output_tokens"]
    read, write = counts["cache_read_tokens"], counts["cache_write_tokens"]
    # The whole prompt includes both caches; a prompt smaller than them cannot, so it is net.
    fresh = prompt - read if read + write <= prompt else prompt + write
    reasoning = max(0, counts["total_tokens"] - prompt - output)
    return fresh, read, output + reasoning, reasoning, write


def model_name(config: Any) -> str:
    """``model_config_json.model_name`` as recorded, else ``unknown``."""
    if not isinstance(config, str | bytes) or not config:
        return UNKNOWN_MODEL
    try:
        parsed = orjson.loads(config)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecordError("model_config_json is not JSON") from exc
    if not isinstance(parsed, dict):
        return UNKNOWN_MODEL
    name = parsed.get("model_name")
    return name if isinstance(name, str) and name.strip() else UNKNOWN_MODEL


def session_event(row: Mapping[str, Any]) -> UsageEvent | None:
    """The event of one ``sessions`` row (None for a session without usage)."""
    session = row.get("id")
    if not isinstance(session, str) or not session:
        raise InvalidRecordError("session without id")
    fresh, cached, output, reasoning, write = map_tokens(session_counts(row))
    if fresh == cached == output == 0:
        return None
    return UsageEvent(
        source="goose",
        event_key=session,
        timestamp=epoch_or_iso(row.get("created_at")),
        model=model_name(row.get("model_config_json")),
        session_id=session,
        project=text(row.get("working_dir")),
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
        cache_write_tokens=write,
    )


class GooseParser:
    """Parser for Goose's ``sessions.db`` (read with SQL; one event per session)."""

    name = "goose"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return the ``sessions.db`` of Goose's data directory.

        ``GOOSE_PATH_ROOT`` (Goose's own override) wins: ``$GOOSE_PATH_ROOT/data/sessions``.
        Else ``$XDG_DATA_HOME/goose/sessions`` (default ``~/.local/share``), the macOS
        ``~/Library/Application Support/goose/sessions`` and the legacy
        ``~/.local/share/Block/goose/sessions``.
        """
        override = env_dirs(env, "GOOSE_PATH_ROOT", home)
        if override:
            candidates = [root / "data" / "sessions" / DATABASE for root in override]
        else:
            xdg = env_dirs(env, "XDG_DATA_HOME", home)
            data = xdg[0] if xdg else home / ".local" / "share"
            candidates = [
                data / "goose" / "sessions" / DATABASE,
                home / "Library" / "Application Support" / "goose" / "sessions" / DATABASE,
                home / ".local" / "share" / "Block" / "goose" / "sessions" / DATABASE,
            ]
        return sorted({path for path in candidates if path.is_file()}, key=str)

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """A database is read with ``read_database``; bytes alone are reported, not read."""
        problem = Problem(path, None, "not a Goose sessions.db (read with SQL only)")
        return ParseResult(problems=[problem] if data else [], consumed=len(data))

    def read_database(self, path: str, *, page_rows: int | None = None) -> Iterator[ParseResult]:
        """Read every session row of a Goose database, read-only and busy-safe, in pages."""
        return read_sessions(
            path,
            table="sessions",
            required=REQUIRED,
            optional=OPTIONAL,
            to_event=session_event,
            page_rows=page_rows,
        )
