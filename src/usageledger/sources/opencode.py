"""Opencode: one JSON file per message under ``storage/message/<sessionID>/`` (before
1.2.0), or one row per message in the SQLite database ``opencode.db`` (1.2.0 and later).

Opencode rewrites a message while the response streams and when it finishes, so the message
id is the key and the last copy read wins; the frozen JSON files an upgrade leaves behind
hold the same ids as the database rows, so a message found in both counts once. Only
assistant messages carry ``tokens`` (a message without ``role`` counts as one; tokens on a
message with another role are reported, not counted). Opencode stores input *net* of the
cache (``input``, ``cache.read`` and ``cache.write`` are disjoint) and, in current versions,
``output`` *without* ``reasoning``; a stored ``total`` tells the older shape (reasoning inside
output) apart.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    InvalidRecordError,
    count,
    decode_reason,
    env_dirs,
    find_files,
    mapping,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"
#: The database of opencode >= 1.2.0 (``opencode-<channel>.db`` for other release channels).
DATABASE = "opencode.db"
DATABASE_PREFIX = "opencode-"
#: Rows read per page: a page's events are handed on before the next page is read.
PAGE_ROWS = 5_000
#: How long a read waits for opencode's own writer before giving up until the next scan.
BUSY_TIMEOUT_S = 5.0
#: Where the message's creation time is, by schema generation (the JSON's ``time.created``
#: wins when present).
CREATED_COLUMNS = ("time_created", "created_at")


class DatabaseUnavailableError(OSError):
    """The database could not be read now (locked, missing, not opencode's): try again later."""


def map_tokens(tokens: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Map an opencode ``tokens`` object to (input, cached, output, reasoning, cache write).

    Reasoning is added to output unless ``total`` shows output already contains it
    (``total = input + output + cache.read + cache.write`` with reasoning > 0).
    """
    fresh = count(tokens, "input", required=True, label="tokens.input")
    output = count(tokens, "output", required=True, label="tokens.output")
    reasoning = count(tokens, "reasoning", label="tokens.reasoning")
    total = count(tokens, "total", label="tokens.total")
    cache = tokens.get("cache")
    cache_obj = mapping(cache, "tokens.cache") if cache is not None else {}
    read = count(cache_obj, "read", label="tokens.cache.read")
    write = count(cache_obj, "write", label="tokens.cache.write")
    inside = reasoning > 0 and total == fresh + output + read + write
    if inside and reasoning > output:
        raise InvalidRecordError("tokens.reasoning exceeds tokens.output")
    out = output if inside else output + reasoning
    return fresh + write, read, out, reasoning, write


class OpencodeParser:
    """Parser for opencode per-message JSON files (re-read whole whenever they change)."""

    name = "opencode"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return ``storage/message/**/*.json`` and the ``opencode*.db`` databases of each
        opencode data dir.

        ``OPENCODE_DATA_DIR`` (comma-separated) wins; else ``$XDG_DATA_HOME/opencode``;
        else ``~/.local/share/opencode``.
        """
        roots = env_dirs(env, "OPENCODE_DATA_DIR", home)
        if not roots:
            xdg = env_dirs(env, "XDG_DATA_HOME", home)
            roots = [(xdg[0] if xdg else home / ".local" / "share") / "opencode"]
        return data_dir_files(roots)

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse one message file; a user message or one without usage yields nothing."""
        result = ParseResult(consumed=len(data))
        _add_message(result, path, data, source=self.name)
        return result

    def read_database(self, path: str, *, page_rows: int | None = None) -> Iterator[ParseResult]:
        """Read every assistant message (and any with tokens) of an opencode database,
        read-only, page by page.

        Unlike ``parse`` this does I/O: the rows still in the write-ahead log (opencode keeps
        the database in WAL mode) are only visible through SQLite itself. The ``message``
        table's columns are looked up first, since they differ between opencode versions. A
        row that cannot be used is a problem naming its message id; a database that cannot be
        read now raises ``DatabaseUnavailableError`` so that the scanner tries it again.
        """
        try:
            uri = Path(path).absolute().as_uri() + "?mode=ro"
            with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
                conn.execute("PRAGMA query_only = ON")
                cursor = conn.execute(_messages_sql(conn))
                while rows := cursor.fetchmany(page_rows or PAGE_ROWS):
                    yield _page(path, rows, self.name)
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(f"cannot read the database ({exc})") from exc


def _messages_sql(conn: sqlite3.Connection) -> str:
    """The query for this database's ``message`` table (rows with usage, in creation order)."""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(message)")}
    missing = {"id", "session_id", "data"} - columns
    if missing:
        raise sqlite3.DatabaseError(
            f"no opencode message table (missing: {', '.join(sorted(missing))})"
        )
    created = next((c for c in CREATED_COLUMNS if c in columns), "NULL")
    # Assistant rows and every row with a ``tokens`` key: a row without a role still carries
    # usage (``_event`` decides; user rows have no tokens and are skipped here, unread).
    return (
        f"SELECT id, session_id, {created}, data FROM message "
        f"WHERE data LIKE '%assistant%' OR data LIKE '%\"tokens\"%' ORDER BY {created}, id"
    )


def _page(path: str, rows: list[Any], source: str) -> ParseResult:
    """The events and problems of one page of ``(id, session_id, created, data)`` rows."""
    result = ParseResult()
    for message_id, session_id, created, data in rows:
        fill = partial(_with_columns, message_id, session_id, created)
        prefix = f"message {message_id}: "
        _add_message(result, path, data, source=source, prefix=prefix, fill=fill)
    return result


def _with_columns(
    message_id: Any, session_id: Any, created: Any, message: dict[str, Any]
) -> dict[str, Any]:
    """A database row's message JSON with the id, session and creation time of its columns
    where the JSON has none."""
    message.setdefault("id", message_id)
    message.setdefault("sessionID", session_id)
    if not isinstance(message.get("time"), dict) and created is not None:
        message["time"] = {"created": created}
    return message


def _add_message(
    result: ParseResult,
    path: str,
    data: Any,
    *,
    source: str,
    prefix: str = "",
    fill: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Add one message's event to ``result``, or a problem (``prefix`` names the message).

    ``data`` is its JSON (bytes, or a database's text); ``fill`` completes a database row's
    JSON with the columns it lacks; ``source`` names the events (opencode, or a fork of it).
    """
    raw = b""
    try:
        raw = (
            data
            if isinstance(data, bytes)
            else data.encode()
            if isinstance(data, str)
            else bytes(data)
        )
        message = orjson.loads(raw)
        if fill is not None:
            message = fill(dict(mapping(message, "message data")))
        event = _event(message, Path(path), source)
    except orjson.JSONDecodeError as exc:
        reason = decode_reason(raw, exc)
    except InvalidRecordError as exc:
        reason = str(exc)
    except Exception as exc:  # a parser never raises on content; report and go on
        reason = f"unreadable message ({type(exc).__name__})"
    else:
        if event is not None:
            result.events.append(event)
        return
    result.problems.append(Problem(path, None, prefix + reason))


def data_dir_files(roots: list[Path], stems: tuple[str, ...] = ("opencode",)) -> list[Path]:
    """The ``storage/message/**/*.json`` files, then the databases, of opencode-shaped data dirs.

    An absent root costs one ``stat``. A present one is listed once: that listing finds the
    databases (``<stem>.db`` and ``<stem>-<channel>.db`` for each of ``stems``) and says
    whether there is a ``storage`` folder to walk.
    """
    listings: list[tuple[Path, list[str]]] = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        try:
            listings.append((root, os.listdir(root)))
        except OSError:
            continue
    messages = [root / "storage" / "message" for root, names in listings if "storage" in names]
    found = [
        root / name
        for root, names in listings
        for name in sorted(names)
        for stem in stems
        if name == f"{stem}.db" or (name.startswith(f"{stem}-") and name.endswith(".db"))
    ]
    databases = [path for path in found if path.is_file()]
    return find_files(messages, ["*.json"]) + databases


def _event(message: Any, path: Path, source: str) -> UsageEvent | None:
    obj = mapping(message, "message file")
    if obj.get("tokens") is None:
        return None
    fresh, cached, output, reasoning, write = map_tokens(mapping(obj["tokens"], "tokens"))
    if fresh == cached == output == 0:
        return None
    # Usage is never dropped in silence. A message without ``role`` (as ccusage's tests write
    # it) carries usage only as an assistant response does; one with another role is reported.
    if obj.get("role") not in (None, "assistant"):
        raise InvalidRecordError("tokens on a message whose role is not assistant (not counted)")
    times = mapping(obj.get("time"), "time")
    paths = obj.get("path")
    project = None
    if isinstance(paths, dict):
        project = text(paths.get("cwd")) or text(paths.get("root"))
    return UsageEvent(
        source=source,
        event_key=text(obj.get("id")) or path.stem,
        timestamp=timestamp(times.get("created")),
        model=text(obj.get("modelID")) or UNKNOWN_MODEL,
        session_id=text(obj.get("sessionID")) or path.parent.name,
        project=project,
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
        cache_write_tokens=write,
    )
