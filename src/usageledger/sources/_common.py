"""Helpers shared by the source parsers: JSON lines, counts, timestamps, file discovery.

Everything here is pure except ``find_files``, which walks directories. Validation
helpers raise ``InvalidRecordError``; the parsers catch it per line or per file and turn it into
a ``Problem``, so no parser ever raises on bad input.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from fnmatch import translate
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources.base import ParseResult, Problem, UsageEvent
from usageledger.sources.listing import DIR, LINK, OTHER, list_directory

#: A line longer than this is reported and skipped without being parsed.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Counts must stay exact in JSON numbers and the ledger's bounds (docs/design.md §4).
MAX_COUNT = 2**53 - 1

_FRACTION = re.compile(r"(\.\d{6})\d+")


class InvalidRecordError(ValueError):
    """A value in a log record that cannot be turned into a usage event."""


def complete_length(data: bytes) -> int:
    """Return the length of ``data`` up to and including its last newline (0 if none)."""
    return data.rfind(b"\n") + 1


def json_lines(
    data: bytes, *, path: str, first_line: int, problems: list[Problem]
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each JSON line of ``data``; report bad lines.

    ``first_line`` is the 1-based number of the first line in ``data``. Blank lines are
    skipped silently; huge, non-UTF-8 and malformed lines become problems.
    """
    for offset, raw in enumerate(data.split(b"\n")):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        lineno = first_line + offset
        if len(line) > MAX_LINE_BYTES:
            problems.append(Problem(path, lineno, f"line of {len(line)} bytes exceeds 16 MiB"))
            continue
        try:
            yield lineno, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(path, lineno, decode_reason(line, exc)))


def decode_reason(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Describe why ``raw`` did not parse, without quoting any of its content."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 (byte {bad.start})"
    return f"malformed JSON ({exc.msg} at char {exc.pos})"


def count(
    usage: Mapping[str, Any], key: str, *, required: bool = False, label: str | None = None
) -> int:
    """Return ``usage[key]`` as a validated token count; a missing optional key is 0."""
    value = usage.get(key)
    name = label or key
    if value is None:
        if required:
            raise InvalidRecordError(f"missing {name}")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecordError(f"{name} is not an integer")
    if value < 0:
        raise InvalidRecordError(f"{name} is negative")
    if value > MAX_COUNT:
        raise InvalidRecordError(f"{name} exceeds 2^53")
    return value


def mapping(value: Any, name: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a JSON object, else raise ``InvalidRecordError`` naming it."""
    if not isinstance(value, dict):
        raise InvalidRecordError(f"{name} is not an object")
    return value


def text(value: Any) -> str | None:
    """Return ``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def timestamp(value: Any) -> datetime:
    """Parse an ISO-8601 string or Unix epoch milliseconds into an aware UTC datetime.

    A timestamp without an offset is taken to be UTC (the assistants write UTC).
    """
    if isinstance(value, bool):
        raise InvalidRecordError("timestamp is not a date")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidRecordError("timestamp out of range") from exc
    if not isinstance(value, str) or not value:
        raise InvalidRecordError("missing timestamp")
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError as exc:
        raise InvalidRecordError("timestamp is not ISO-8601") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def line_state(state: Mapping[str, Any] | None) -> int:
    """Return how many lines earlier calls consumed, from the scanner's stored state."""
    value = (state or {}).get("line")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def each_record(
    data: bytes,
    *,
    path: str,
    first_line: int,
    problems: list[Problem],
    handle: Callable[[int, Any], None],
) -> None:
    """Call ``handle(line_number, record)`` for each JSON line of ``data``.

    A record that ``handle`` rejects with ``InvalidRecordError``, or fails on in any other way,
    is a problem naming its line, and the next line is read: a parser never raises.
    """
    for lineno, obj in json_lines(data, path=path, first_line=first_line, problems=problems):
        try:
            handle(lineno, obj)
        except InvalidRecordError as exc:
            problems.append(Problem(path, lineno, str(exc)))
        except Exception as exc:  # a parser never raises; report and go on
            problems.append(Problem(path, lineno, f"unreadable record ({type(exc).__name__})"))


def parse_lines(
    data: bytes,
    *,
    path: str,
    state: Mapping[str, Any] | None,
    event: Callable[[Any], UsageEvent | None],
) -> ParseResult:
    """Parse the complete lines of ``data`` into events, one JSON record a line, by ``event``.

    For line formats whose records stand alone (``state`` only counts the lines consumed, so
    problems carry their line number in the whole file). A record that ``event`` rejects with
    ``InvalidRecordError``, or fails on in any other way, is a problem naming its line, and
    parsing goes on: a parser never raises.
    """
    end = complete_length(data)
    first = line_state(state) + 1
    events: list[UsageEvent] = []
    problems: list[Problem] = []

    def keep(_: int, obj: Any) -> None:
        found = event(obj)
        if found is not None:
            events.append(found)

    each_record(data[:end], path=path, first_line=first, problems=problems, handle=keep)
    lines = data.count(b"\n", 0, end)
    return ParseResult(
        events=events, problems=problems, consumed=end, state={"line": first - 1 + lines}
    )


def env_dirs(env: Mapping[str, str], name: str, home: Path) -> list[Path]:
    """Split a comma-separated directory variable; ``~`` expands to ``home``, blanks drop."""
    dirs: list[Path] = []
    for part in env.get(name, "").split(","):
        item = part.strip()
        if not item:
            continue
        if item == "~" or item.startswith("~/"):
            dirs.append(home / item[2:])
        else:
            dirs.append(Path(item))
    return dirs


def find_files(roots: Iterable[Path], patterns: Iterable[str]) -> list[Path]:
    """:func:`find_paths` as ``Path`` objects (for a parser that works on them further)."""
    return [Path(path) for path in find_paths(roots, patterns)]


def find_paths(roots: Iterable[Path], patterns: Iterable[str]) -> list[str]:
    """Return files under ``roots`` whose path relative to a root matches a pattern.

    Patterns use ``fnmatch`` syntax on POSIX-style relative paths (``*`` crosses
    ``/``). Symlinked directories are not followed inside a root, so a link loop
    cannot hang discovery. The same real file reached twice is returned once; the
    result is sorted by path string.
    """
    # One compiled pattern and string paths (a ``Path`` costs more to build than the stat the
    # scan then makes): discovery runs over every file on every scan, so its cost per file
    # (not the parsing) bounds how fast a rescan of a big history is.
    wanted = re.compile("|".join(f"(?:{translate(p)})" for p in patterns), re.S)
    # The same real file (a hard link, a symlink, a root listed twice) has the same (device,
    # inode), so it is returned once, under its first path in sort order. A regular file's
    # inode comes with its directory entry and its device is its directory's: only symlinks
    # cost a stat here. Inside ``listing.remembered`` an unchanged directory is not read
    # again (see ``usageledger.sources.listing``).
    found: dict[tuple[int, int], str] = {}
    for root in roots:
        if not root.is_dir():
            continue
        top = str(root)
        pending = [(top, "")]
        while pending:
            directory, prefix = pending.pop()
            try:
                device, entries = list_directory(directory)
            except OSError:
                continue
            base = directory if directory.endswith("/") else f"{directory}/"
            for name, kind, inode in entries:
                rel = f"{prefix}/{name}" if prefix else name
                path = base + name
                if kind == DIR:
                    pending.append((path, rel))  # a symlinked directory is not entered
                    continue
                if kind == OTHER or not wanted.match(rel):
                    continue
                if kind == LINK:
                    try:
                        info = os.stat(path)
                    except OSError:
                        continue  # a broken link, or gone since listing
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    identity = (info.st_dev, info.st_ino)
                else:
                    identity = (device, inode)
                if identity not in found or path < found[identity]:
                    found[identity] = path
    return sorted(found.values())
