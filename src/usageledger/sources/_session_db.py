"""Reading the SQLite stores of assistants that keep one usage total per session (Hermes, Goose).

The owner of such a database writes to it while we read: it is opened read-only through a
``mode=ro`` URI (nothing is created or changed next to it, and the rows still in its
write-ahead log are seen), with a busy timeout so that a writer holding its lock makes the
read wait a little instead of failing, and it is read in pages. A database that cannot be read
now raises ``DatabaseUnavailableError`` (the scanner keeps its old cursor and tries again); a
row that cannot be used is a problem naming its session, and the other rows still count.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from usageledger.sources._common import InvalidRecordError, timestamp
from usageledger.sources.base import ParseResult, Problem, UsageEvent
from usageledger.sources.opencode import DatabaseUnavailableError

__all__ = ["DatabaseUnavailableError", "epoch_or_iso", "read_sessions"]

#: Rows read per page: a page's events are handed on before the next page is read.
PAGE_ROWS = 5_000
#: How long a read waits for the owner's writer before giving up until the next scan.
BUSY_TIMEOUT_S = 5.0
#: A number above this is taken as epoch milliseconds, below it as epoch seconds (the year
#: 5138 in seconds; 1973 in milliseconds).
MILLISECONDS_FROM = 1e11

#: Turns one row (column name → value) into an event, None (no usage), or raises
#: ``InvalidRecordError`` for a problem.
RowMapper = Callable[[Mapping[str, Any]], UsageEvent | None]


def read_sessions(
    path: str,
    *,
    table: str,
    required: Sequence[str],
    optional: Sequence[str],
    to_event: RowMapper,
    page_rows: int | None = None,
) -> Iterator[ParseResult]:
    """Yield pages of events from every row of ``table``, read-only and busy-safe.

    ``required`` columns must exist (else the file is not the tool's database); an absent
    ``optional`` column (an older schema) reads as NULL. Rows come in ``rowid`` order.
    """
    try:
        uri = Path(path).absolute().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
            conn.execute("PRAGMA query_only = ON")
            present = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = [name for name in required if name not in present]
            if missing:
                raise sqlite3.DatabaseError(
                    f"no {table} table with {', '.join(missing)} (not this tool's database)"
                )
            names = [*required, *optional]
            select = ", ".join(name if name in present else "NULL" for name in names)
            cursor = conn.execute(f"SELECT {select} FROM {table} ORDER BY rowid")
            while rows := cursor.fetchmany(page_rows or PAGE_ROWS):
                yield _page(path, names, rows, to_event)
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"cannot read the database ({exc})") from exc


def _page(path: str, names: Sequence[str], rows: list[Any], to_event: RowMapper) -> ParseResult:
    result = ParseResult()
    for values in rows:
        row = dict(zip(names, values, strict=True))
        try:
            event = to_event(row)
        except InvalidRecordError as exc:
            reason = str(exc)
        except Exception as exc:  # a reader never raises on content; report and go on
            reason = f"unreadable row ({type(exc).__name__})"
        else:
            if event is not None:
                result.events.append(event)
            continue
        result.problems.append(Problem(path, None, f"session {row.get('id')!s}: {reason}"))
    return result


def epoch_or_iso(value: Any) -> datetime:
    """A database's time value as an aware UTC datetime.

    Numbers (and numeric text) are Unix epoch seconds, or milliseconds when above
    ``MILLISECONDS_FROM``; other text is ISO-8601 (``2026-04-18 12:34:56`` as SQLite's
    ``CURRENT_TIMESTAMP`` writes it included), taken as UTC without an offset.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return timestamp(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecordError("missing start time")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRecordError("start time out of range")
    seconds = value / 1000 if value > MILLISECONDS_FROM else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidRecordError("start time out of range") from exc
