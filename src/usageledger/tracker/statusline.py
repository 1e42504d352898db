"""``usageledger statusline``: one line for Claude Code's ``statusLine`` command.

Claude Code runs the command after every message with a JSON object on stdin
(``session_id``, ``transcript_path``, ``model``, ``workspace``, ``cost``, ``context_window``
and, for subscribers, ``rate_limits``). The line is always current — there is no time-based
cache: each run reads what is new in that session's transcript into the ledger, through the
same ``scan_files`` cursor a full ``scan`` uses (so neither reads those bytes again), and then
answers from the ledger.

It must never break or stall the status line:

* any failure — input that is not JSON, too large or missing fields, a transcript that does
  not exist, a ledger that cannot be opened — prints a short fallback line and exits 0;
* it never waits on a lock: when a scan holds ``scan.lock`` it reads nothing new, and its own
  write asks SQLite for the write lock without a busy timeout; either way it answers from the
  ledger as it stands (WAL readers never wait on the writer).

The ``rate_limits`` Claude Code sends are recorded as limit observations (``usageledger
limits``) when they differ from the newest one stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from usageledger.buckets import COUNT_COLUMNS, Counts, local_day
from usageledger.errors import LedgerError
from usageledger.ledger.costing import Tally, UsageRow
from usageledger.ledger.pricing import PriceBook, default_book
from usageledger.sources import PARSERS, SourceParser, UsageEvent
from usageledger.sources.base import LimitObservation
from usageledger.tracker.blocks import active_block, burn_rate
from usageledger.tracker.db import LocalDb, needs_migration, upsert
from usageledger.tracker.events import store_events
from usageledger.tracker.files import (
    CURSOR_COLUMNS,
    Cursor,
    as_cursor,
    load_cursor_rows,
    plan_file,
    read_plan,
    stat_file,
)
from usageledger.tracker.ledger import LocalLedger, ledger_path, open_ledger
from usageledger.tracker.limits import claude_limits, duration_text, store_changed_limits
from usageledger.tracker.report import ReportRequest, usage_rows

SEGMENTS = ("model", "session", "today", "block", "burn", "context", "limits")
DEFAULT_SEGMENTS = ("model", "session", "today", "block", "burn", "context")
#: Claude Code's input is a few KiB; anything past this is not its input.
MAX_INPUT_BYTES = 1024 * 1024
#: How much of the transcript's end is searched for the last request's context.
TAIL_BYTES = 256 * 1024
DEFAULT_CONTEXT = 200_000
LARGE_CONTEXT = 1_000_000
SEPARATOR = " | "
_TOTAL = COUNT_COLUMNS.index("total_tokens")
_COLORS = {"model": "36", "burn": "33", "low": "32", "mid": "33", "high": "31", "dim": "2"}


class StatusInputError(ValueError):
    """The input is not what Claude Code sends (its message is the fallback's reason)."""


@dataclass(frozen=True, slots=True)
class StatusInput:
    """What the status line uses of Claude Code's input."""

    session_id: str | None
    transcript_path: str | None
    model_name: str | None
    model_id: str | None
    context_size: int | None
    rate_limits: Any


def parse_input(data: bytes) -> StatusInput:
    """Read Claude Code's JSON; ``StatusInputError`` when it is not an object of it."""
    if len(data) > MAX_INPUT_BYTES:
        raise StatusInputError("input too large")
    if not data.strip():
        raise StatusInputError("no input")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StatusInputError("input is not JSON") from None
    if not isinstance(obj, dict):
        raise StatusInputError("input is not a JSON object")
    model = obj.get("model")
    model = model if isinstance(model, dict) else {"display_name": model}
    window = obj.get("context_window")
    size = window.get("context_window_size") if isinstance(window, dict) else None
    return StatusInput(
        session_id=_text(obj.get("session_id")),
        transcript_path=_text(obj.get("transcript_path")),
        model_name=_text(model.get("display_name")),
        model_id=_text(model.get("id")),
        context_size=size
        if isinstance(size, int) and not isinstance(size, bool) and size > 0
        else None,
        rate_limits=obj.get("rate_limits"),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and len(value) <= 4096 else None


@dataclass(slots=True)
class StatusFigures:
    """The numbers of one status line (None: not known)."""

    model: str | None = None
    session_usd: Decimal | None = None
    today_usd: Decimal | None = None
    block_usd: Decimal | None = None
    block_left_ms: int | None = None
    burn_usd_per_hour: Decimal | None = None
    context_tokens: int | None = None
    context_size: int | None = None
    limits: tuple[tuple[str, float], ...] = ()


def open_quick(home: Path, now_ms: int) -> LocalLedger:
    """The ledger, opened without a write when it exists at the head revision.

    ``open_ledger`` writes (it makes the local user and device the first time), which waits
    for the write lock; an existing, current ledger needs none of that. A new or older file
    goes through ``open_ledger`` once. Either way the connection then never waits on a lock.
    """
    path = ledger_path(home)
    if path.exists():
        db = LocalDb(path, busy_timeout_ms=0)
        try:
            found = db.read(lambda conn: None if needs_migration(conn) else _identity(conn))
        except BaseException:
            db.close()
            raise
        if found is not None:
            user_id, zone, device_id, device = found
            return LocalLedger(
                path=path,
                home=home,
                db=db,
                user_id=user_id,
                device_id=device_id,
                device_name=device,
                time_zone=zone,
            )
        db.close()
    ledger = open_ledger(home, now_ms=now_ms)
    ledger.db.conn.execute("PRAGMA busy_timeout=0")
    return ledger


def _identity(conn: sqlite3.Connection) -> tuple[int, str, int, str] | None:
    user = conn.execute("SELECT user_id, time_zone FROM users WHERE name = 'local'").fetchone()
    if user is None:
        return None
    device = conn.execute(
        "SELECT device_id, name FROM devices WHERE user_id = ? ORDER BY device_id LIMIT 1",
        (user[0],),
    ).fetchone()
    if device is None:
        return None
    return int(user[0]), str(user[1]), int(device[0]), str(device[1])


@contextlib.contextmanager
def try_scan_lock(home: Path) -> Iterator[bool]:
    """``home/scan.lock`` if no scan holds it (True), else False at once: never waits."""
    fd = os.open(home / "scan.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def session_files(transcript: Path) -> list[Path]:
    """The transcript and its sub-agents' files (``<session>/**/*.jsonl`` beside it), which
    Claude Code writes under the same session id."""
    files = [transcript]
    side = transcript.with_suffix("")
    if side != transcript and side.is_dir():
        files += sorted(side.rglob("*.jsonl"))
    return files


def _read_new(
    parser: SourceParser, path: Path, cursor: Cursor | None, now_ms: int, user_id: int
) -> tuple[list[UsageEvent], dict[str, Any] | None]:
    """What is new in one file since its cursor, and the cursor row that covers it."""
    try:
        plan = plan_file(parser, path, stat_file(path), cursor)
    except (FileNotFoundError, NotADirectoryError):
        return [], None
    if plan is None:
        return [], None
    events: list[UsageEvent] = []
    offset, state, problems = plan.start, plan.state, plan.problems_before
    for chunk in read_plan(parser, plan):
        if chunk.retry:
            return [], None
        events.extend(chunk.events)
        offset, state = chunk.offset, chunk.state
        problems += len(chunk.problems)
    return events, {
        "user_id": user_id,
        "path": str(path),
        "source": parser.name,
        "inode": plan.stat.inode,
        "size": plan.stat.size,
        "mtime_ns": plan.stat.mtime_ns,
        "offset": offset,
        "head_sha256": plan.head_sha256,
        "parser_state": orjson.dumps(dict(state or {})).decode(),
        "problems": problems,
        "last_scanned_ms": now_ms,
    }


def update_session(
    ledger: LocalLedger,
    transcript: Path | None,
    observations: Sequence[LimitObservation],
    *,
    now_ms: int,
) -> bool:
    """Read what is new in the session's files and store the observations, in one write.

    False (nothing written) when a scan holds the scan lock or another writer the write lock.
    """
    parser = PARSERS["claude"]
    events: list[UsageEvent] = []
    rows: list[dict[str, Any]] = []
    with try_scan_lock(ledger.home) as locked:
        if not locked:
            return False
        paths = session_files(transcript) if transcript is not None else []
        stored = ledger.db.read(
            lambda conn: load_cursor_rows(conn, ledger.user_id, [str(p) for p in paths])
        )
        for path in paths:
            known = stored.get(str(path))
            cursor = as_cursor(known) if known is not None else None
            found, row = _read_new(parser, path, cursor, now_ms, ledger.user_id)
            events += found
            if row is not None:
                rows.append(row)
        if not rows and not observations:
            return True

        def write(conn: sqlite3.Connection) -> None:
            if rows:
                store_events(
                    conn,
                    user_id=ledger.user_id,
                    device_id=ledger.device_id,
                    tz=ledger.tz,
                    events={parser.name: events},
                    policies={name: p.duplicate_policy for name, p in PARSERS.items()},
                    now_ms=now_ms,
                )
                upsert(conn, "scan_files", rows, ("user_id", "path"), CURSOR_COLUMNS)
            store_changed_limits(conn, ledger.user_id, observations)

        try:
            ledger.db.write(write)
        except LedgerError:
            return False  # the write lock is taken: answer from the ledger as it stands
        return True


def session_cost(
    conn: sqlite3.Connection, ledger: LocalLedger, session_id: str, book: PriceBook
) -> Decimal:
    """The session's cost: its events priced per model on their half-hour's local day."""
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT model, bucket_start, {sums} FROM usage_events "
        "WHERE user_id = ? AND session_id = ? GROUP BY model, bucket_start",
        (ledger.user_id, session_id),
    )
    tally = Tally()
    tz = ledger.tz
    for model, bucket, *counts in rows:
        day = local_day(int(bucket), tz)
        tally.add(book, UsageRow(day, "", str(model), Counts(*(int(v) for v in counts))))
    return tally.cost.usd


def today_cost(
    conn: sqlite3.Connection, ledger: LocalLedger, now_ms: int, book: PriceBook
) -> Decimal:
    """Today's cost (the ledger's local day), every source, as ``report daily`` prices it."""
    today = local_day(now_ms // 1000, ledger.tz)
    request = ReportRequest(kind="daily", time_zone=ledger.time_zone, since=today, until=today)
    tally = Tally()
    for row in usage_rows(conn, ledger, request):
        tally.add(book, row)
    return tally.cost.usd


def transcript_context(path: Path) -> int | None:
    """Tokens in context at the transcript's last main-thread reply (input + cache read +
    cache write of its request); None when the end of the transcript shows none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - TAIL_BYTES, 0))
            data = handle.read(TAIL_BYTES)
    except OSError:
        return None
    for line in reversed(data.split(b"\n")):
        if b'"usage"' not in line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("isSidechain") is True:
            continue
        message = obj.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            continue
        total = 0
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                total += value
        if total > 0:
            return total
    return None


def gather(
    ledger: LocalLedger,
    given: StatusInput,
    *,
    now_ms: int,
    book: PriceBook,
    segments: Sequence[str],
    scan: bool = True,
) -> StatusFigures:
    """Update the ledger from the session (unless ``scan`` is False) and read the figures."""
    transcript = Path(given.transcript_path).expanduser() if given.transcript_path else None
    observed = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    observations = claude_limits(given.rate_limits, observed)
    if scan:
        update_session(ledger, transcript, observations, now_ms=now_ms)
    figures = StatusFigures(model=given.model_name or given.model_id)

    def read(conn: sqlite3.Connection) -> None:
        if "session" in segments and given.session_id:
            figures.session_usd = session_cost(conn, ledger, given.session_id, book)
        if "today" in segments:
            figures.today_usd = today_cost(conn, ledger, now_ms, book)
        if "block" in segments or "burn" in segments:
            block = active_block(conn, ledger.user_id, book, ledger.tz, now_ms=now_ms)
            if block is not None:
                figures.block_usd = block.tally.cost.usd
                figures.block_left_ms = block.end_ms - now_ms
                rate = burn_rate(block, now_ms)
                figures.burn_usd_per_hour = rate[1] if rate is not None else None

    ledger.db.read(read)
    if "context" in segments and transcript is not None:
        figures.context_tokens = transcript_context(transcript)
        large = given.model_id is not None and "[1m]" in given.model_id
        figures.context_size = given.context_size or (LARGE_CONTEXT if large else DEFAULT_CONTEXT)
    if "limits" in segments:
        figures.limits = tuple((o.window, o.used_percent) for o in observations)
    return figures


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return str(count)


_WINDOW_LABELS = {"five_hour": "5h", "seven_day": "7d"}


def render(figures: StatusFigures, segments: Sequence[str], *, color: bool) -> str:
    """The line: the chosen segments that have a value, in the order asked."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{_COLORS[code]}m{text}\x1b[0m" if color else text

    parts: list[str] = []
    for name in segments:
        if name == "model" and figures.model:
            parts.append(paint(figures.model, "model"))
        elif name == "session" and figures.session_usd is not None:
            parts.append(f"{_usd(figures.session_usd)} session")
        elif name == "today" and figures.today_usd is not None:
            parts.append(f"{_usd(figures.today_usd)} today")
        elif name == "block":
            if figures.block_usd is None or figures.block_left_ms is None:
                parts.append(paint("no block", "dim"))
            else:
                left = duration_text(figures.block_left_ms)
                parts.append(f"{_usd(figures.block_usd)} block ({left} left)")
        elif name == "burn" and figures.burn_usd_per_hour is not None:
            parts.append(paint(f"{_usd(figures.burn_usd_per_hour)}/h", "burn"))
        elif name == "context" and figures.context_tokens is not None and figures.context_size:
            percent = 100 * figures.context_tokens / figures.context_size
            level = "low" if percent < 50 else "mid" if percent < 80 else "high"
            text = f"ctx {_tokens(figures.context_tokens)} ({percent:.0f}%)"
            parts.append(paint(text, level))
        elif name == "limits" and figures.limits:
            parts.append(" ".join(f"{_WINDOW_LABELS.get(w, w)} {p:g}%" for w, p in figures.limits))
    return SEPARATOR.join(parts)


def parse_segments(text: str) -> tuple[str, ...]:
    """``model,session,…`` as a tuple; ``StatusInputError`` names an unknown segment."""
    names = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in SEGMENTS]
    if unknown:
        raise StatusInputError(f"unknown segment {unknown[0]!r}")
    return names or DEFAULT_SEGMENTS


def wants_color(env: Mapping[str, str]) -> bool:
    """ANSI colours unless ``NO_COLOR`` is set to anything (https://no-color.org)."""
    return not env.get("NO_COLOR")


def fallback(reason: str, model: str | None = None) -> str:
    """The short line printed when no answer can be given."""
    text = f"usageledger: {reason}"
    return f"{model}{SEPARATOR}{text}" if model else text


def status_line(
    stdin: BinaryIO,
    *,
    home: Callable[[], Path],
    env: Mapping[str, str],
    clock: Callable[[], int],
    segments: str,
    scan: bool = True,
    book: Callable[[], PriceBook] = default_book,
) -> str:
    """The status line for Claude Code's input on ``stdin``; never raises (a fallback)."""
    model: str | None = None
    try:
        chosen = parse_segments(segments)
        given = parse_input(stdin.read(MAX_INPUT_BYTES + 1))
        model = given.model_name or given.model_id
        now_ms = clock()
        ledger = open_quick(home(), now_ms)
        try:
            figures = gather(ledger, given, now_ms=now_ms, book=book(), segments=chosen, scan=scan)
        finally:
            ledger.close()
        return render(figures, chosen, color=wants_color(env)) or fallback("no data", model)
    except StatusInputError as exc:
        return fallback(str(exc), model)
    except Exception as exc:  # never break the status line
        return fallback(f"unavailable ({type(exc).__name__})", model)
