"""Reading log files in bounded chunks, and deciding what of a file is new since the last scan.

Memory stays flat whatever the file size: an append-only file is read from its cursor in
chunks of ``CHUNK_BYTES`` and each chunk goes to the parser, which says how much of it was
complete (``ParseResult.consumed``, up to the last newline); the cursor moves by exactly that.
A line longer than a chunk is read whole up to ``MAX_LINE_BYTES``; a longer one is skipped
(reported as a problem, never held in memory). Files of whole-file formats are read at once,
up to ``MAX_WHOLE_FILE_BYTES``. A SQLite database (opencode's) is read by its parser with SQL.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources import (
    LimitObservation,
    ParseResult,
    Problem,
    SourceParser,
    UsageEvent,
    database_reader,
    is_database,
)
from usageledger.tracker.db import chunks, placeholders

CHUNK_BYTES = 8 * 1024 * 1024
#: The parsers' own limit on a line (``sources._common.MAX_LINE_BYTES``): longer lines are
#: skipped here without being read into memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_WHOLE_FILE_BYTES = 256 * 1024 * 1024
HEAD_BYTES = 4096
_SKIP_BLOCK = 1024 * 1024


#: The columns of a ``scan_files`` row that a scan (or the status line) writes.
CURSOR_COLUMNS = (
    "source",
    "inode",
    "size",
    "mtime_ns",
    "offset",
    "head_sha256",
    "parser_state",
    "problems",
    "last_scanned_ms",
)


@dataclass(frozen=True, slots=True)
class FileStat:
    """What identifies a file's version between scans."""

    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """A file's row in ``scan_files``: how far it was read, and how it looked then."""

    source: str
    inode: int
    size: int
    mtime_ns: int
    offset: int
    head_sha256: str
    parser_state: dict[str, Any]
    problems: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What to read of one file: from ``start`` to ``end``, with the parser state to resume."""

    source: str
    path: Path
    stat: FileStat
    head_sha256: str
    start: int
    end: int
    state: dict[str, Any] | None
    reset: bool
    problems_before: int

    @property
    def bytes_to_read(self) -> int:
        """The bytes this plan reads."""
        return max(self.end - self.start, 0)


@dataclass(slots=True)
class Chunk:
    """What one piece of a file yielded: events, problems, the new cursor and parser state."""

    events: list[UsageEvent] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    offset: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    bytes_read: int = 0
    #: The file could not be read now (a database locked by its writer): keep the old cursor,
    #: so that the next scan tries again.
    retry: bool = False
    #: Rate-limit windows the chunk recorded (``ParseResult.limits``).
    limits: list[LimitObservation] = field(default_factory=list)


def stat_file(path: str | Path) -> FileStat:
    """The file's inode, size and modification time (``OSError`` when it is gone).

    A SQLite database (``*.db``) changes in its write-ahead log before the main file does, so
    its ``-wal`` file's size and modification time count as the database's.
    """
    st = os.stat(path)
    size, mtime_ns = int(st.st_size), int(st.st_mtime_ns)
    if is_database(path):
        try:
            wal = os.stat(f"{path}-wal")
        except FileNotFoundError:
            pass
        else:
            size += int(wal.st_size)
            mtime_ns = max(mtime_ns, int(wal.st_mtime_ns))
    return FileStat(inode=int(st.st_ino), size=size, mtime_ns=mtime_ns)


def head_bytes(path: Path, size: int) -> bytes:
    """The first ``min(HEAD_BYTES, size)`` bytes of the file."""
    with open(path, "rb") as handle:
        return handle.read(min(HEAD_BYTES, size))


def digest(data: bytes) -> str:
    """SHA-256 hex of ``data``."""
    return hashlib.sha256(data).hexdigest()


#: What decides whether a file changed since its cursor: source, inode, size, mtime, offset.
Seen = tuple[str, int, int, int, int]


def up_to_date(parser: SourceParser, path: str | Path, stat: FileStat, seen: Seen) -> bool:
    """True when the file is as its cursor left it (``plan_file`` would return None).

    A rescan asks this of every file before anything else (the cursor's other columns are
    only decoded for a file that changed), so it is kept to a tuple comparison.
    """
    source, inode, size, mtime_ns, offset = seen
    return (
        source == parser.name
        and (inode, size, mtime_ns) == (stat.inode, stat.size, stat.mtime_ns)
        and ((not parser.incremental and not is_database(path)) or offset >= stat.size)
    )


def plan_file(
    parser: SourceParser, path: Path, stat: FileStat, cursor: Cursor | None
) -> Plan | None:
    """Decide what of ``path`` is new since ``cursor``; None when nothing changed.

    An append-only file is read on from its cursor unless it was replaced (another inode,
    or its first 4 KiB changed) or shrank, in which case it is read again from byte 0 (the
    events already stored are recognised by their keys, so nothing counts twice). A
    whole-file format is read again from 0 whenever its inode, size or mtime changed.
    """
    if cursor is not None and up_to_date(
        parser,
        path,
        stat,
        (cursor.source, cursor.inode, cursor.size, cursor.mtime_ns, cursor.offset),
    ):
        return None
    head = head_bytes(path, stat.size)
    fresh = Plan(
        source=parser.name,
        path=path,
        stat=stat,
        head_sha256=digest(head),
        start=0,
        end=stat.size,
        state=None,
        reset=True,
        problems_before=0,
    )
    if cursor is None or cursor.source != parser.name or not parser.incremental:
        return fresh
    if stat.inode != cursor.inode or stat.size < cursor.size or stat.size < cursor.offset:
        return fresh
    if digest(head[: min(HEAD_BYTES, cursor.size)]) != cursor.head_sha256:
        return fresh
    return Plan(
        source=parser.name,
        path=path,
        stat=stat,
        head_sha256=digest(head),
        start=cursor.offset,
        end=stat.size,
        state=cursor.parser_state,
        reset=False,
        problems_before=cursor.problems,
    )


def read_plan(
    parser: SourceParser, plan: Plan, *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """Parse what ``plan`` says to read, one chunk at a time; never raises on file content.

    A file that cannot be opened or read yields one chunk with the problem and the cursor
    where it was.
    """
    reader = database_reader(parser, plan.path)
    if reader is not None:
        yield from _read_database(reader, plan)
        return
    try:
        if parser.incremental:
            yield from _read_lines(parser, plan, chunk_bytes)
        else:
            yield _read_whole(parser, plan)
    except OSError as exc:
        reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
        yield Chunk(
            problems=[Problem(str(plan.path), None, reason)],
            offset=plan.start,
            state=dict(plan.state or {}),
        )


def _read_database(reader: Callable[[str], Iterable[ParseResult]], plan: Plan) -> Iterator[Chunk]:
    """A database's rows, a page per chunk, read with SQL (never loaded whole into memory).

    Every chunk but the last keeps the cursor's offset at 0, below the database's size, so a
    scan that stops half-way (a crash between batches) reads the database again next time.
    """
    path = str(plan.path)
    try:
        for page in reader(path):
            yield Chunk(events=page.events, problems=page.problems, offset=0)
    except Exception as exc:  # a reader never stops the scan; report and try again later
        reason = (
            str(exc)
            if isinstance(exc, OSError)
            else f"cannot read the database ({type(exc).__name__})"
        )
        yield Chunk(problems=[Problem(path, None, reason)], offset=0, retry=True)
        return
    yield Chunk(offset=plan.end, bytes_read=plan.end)


def _read_whole(parser: SourceParser, plan: Plan) -> Chunk:
    path = str(plan.path)
    if plan.end > MAX_WHOLE_FILE_BYTES:
        reason = f"file of {plan.end} bytes is larger than the 256 MiB limit; skipped"
        return Chunk(problems=[Problem(path, None, reason)], offset=plan.end)
    with open(plan.path, "rb") as handle:
        data = handle.read(plan.end)
    result = _parse(parser, data, path, None)
    return Chunk(
        events=result.events,
        problems=result.problems,
        offset=min(max(result.consumed, 0), len(data)),
        state=dict(result.state),
        bytes_read=len(data),
    )


def _read_lines(parser: SourceParser, plan: Plan, chunk_bytes: int) -> Iterator[Chunk]:
    path = str(plan.path)
    state: dict[str, Any] | None = plan.state
    offset, end = plan.start, plan.end
    with open(plan.path, "rb") as handle:
        while offset < end:
            handle.seek(offset)
            data = handle.read(min(chunk_bytes, end - offset))
            if not data:
                return  # the file shrank while it was read; the next scan starts over
            if data.rfind(b"\n") < 0:
                if offset + len(data) >= end:
                    return  # an unfinished last line: read it when it is complete
                data += handle.read(min(MAX_LINE_BYTES + 1, end - offset) - len(data))
                newline = data.find(b"\n")
                if newline < 0:
                    if offset + len(data) >= end:
                        return
                    skipped = _skip_line(parser, handle, path, offset, end, state)
                    if skipped is None:
                        return
                    state = skipped.state
                    offset = skipped.offset
                    yield skipped
                    continue
            result = _parse(parser, data, path, state)
            consumed = min(max(result.consumed, 0), len(data))
            if consumed == 0:
                reason = "the parser could not consume a complete line; the rest is not read"
                yield Chunk(problems=[*result.problems, Problem(path, None, reason)], offset=offset)
                return
            state = dict(result.state)
            offset += consumed
            yield Chunk(
                events=result.events,
                problems=result.problems,
                offset=offset,
                state=state,
                bytes_read=consumed,
                limits=result.limits,
            )


def _skip_line(
    parser: SourceParser,
    handle: Any,
    path: str,
    offset: int,
    end: int,
    state: dict[str, Any] | None,
) -> Chunk | None:
    """Skip a line longer than ``MAX_LINE_BYTES`` without holding it; None if unfinished."""
    position = offset + MAX_LINE_BYTES + 1
    handle.seek(position)
    while position < end:
        block = handle.read(min(_SKIP_BLOCK, end - position))
        if not block:
            return None
        newline = block.find(b"\n")
        if newline >= 0:
            stop = position + newline  # the index of the line's newline
            line = (state or {}).get("line")
            number = line + 1 if isinstance(line, int) and not isinstance(line, bool) else None
            # A blank line keeps the parser's own line count right without any content.
            counted = _parse(parser, b"\n", path, state)
            reason = f"line of {stop - offset} bytes exceeds the 16 MiB limit; skipped"
            return Chunk(
                problems=[Problem(path, number, reason)],
                offset=stop + 1,
                state=dict(counted.state),
                bytes_read=stop + 1 - offset,
            )
        position += len(block)
    return None


def _parse(
    parser: SourceParser, data: bytes, path: str, state: dict[str, Any] | None
) -> ParseResult:
    """Call the parser; one that breaks its never-raise promise costs the file, not the scan."""
    try:
        return parser.parse(data, path=path, state=state)
    except Exception as exc:  # a parser bug must not stop the scan of every other file
        reason = f"parser error ({type(exc).__name__}); the rest of the file is not read"
        return ParseResult(problems=[Problem(path, None, reason)], consumed=0, state=state or {})


#: What a rescan reads of every ``scan_files`` row: path, then source, inode, size, mtime_ns
#: and offset (``Seen``). The rest of a cursor (head digest, parser state, problems) is read
#: only for a file that changed.
SEEN_COLUMNS = 'path, source, inode, size, mtime_ns, "offset"'
#: A whole ``scan_files`` row: ``Seen``, then head digest, parser state (JSON) and problems.
CursorRow = tuple[str, int, int, int, int, str, str | None, int]
_ROW_COLUMNS = f"{SEEN_COLUMNS}, head_sha256, parser_state, problems"


def load_cursor_rows(
    conn: sqlite3.Connection, user_id: int, paths: Iterable[str]
) -> dict[str, CursorRow]:
    """The whole file cursors of ``paths`` (those that have one), undecoded."""
    query = f"SELECT {_ROW_COLUMNS} FROM scan_files WHERE user_id = ?"
    found: dict[str, CursorRow] = {}
    for part in chunks(list(paths), 400):
        rows = conn.execute(f"{query} AND path IN ({placeholders(len(part))})", (user_id, *part))
        found.update((row[0], row[1:]) for row in rows)
    return found


def as_cursor(row: CursorRow) -> Cursor:
    """A stored cursor with its parser state decoded (a broken state reads as empty)."""
    source, inode, size, mtime_ns, offset, head, parser_state, problems = row
    try:
        state = orjson.loads(parser_state or "{}")
    except orjson.JSONDecodeError:
        state = {}
    return Cursor(
        source=source,
        inode=int(inode),
        size=int(size),
        mtime_ns=int(mtime_ns),
        offset=int(offset),
        head_sha256=head,
        parser_state=state if isinstance(state, dict) else {},
        problems=int(problems),
    )
