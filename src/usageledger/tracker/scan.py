"""``usageledger scan``: read what is new in the assistants' logs into the local ledger.

Each file has a cursor in ``scan_files`` (offset, inode, size, mtime, head digest, parser
state). A scan discovers every source's files, plans what is new in each (``files.plan_file``),
reads it in bounded chunks and writes in batches: the events, the buckets and rollups they
change and the cursors that cover them are committed in ONE transaction per batch, so a crash
at any moment leaves either all of a batch or none of it — never events without their cursor
or a cursor past events that were lost. A file that disappears keeps its events (the
assistants delete old logs; the ledger keeps the history); only its cursor is dropped.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from usageledger.sources import PARSERS, Problem, SourceParser, UsageEvent
from usageledger.tracker.db import placeholders, upsert
from usageledger.tracker.events import WriteOutcome, store_events
from usageledger.tracker.files import CHUNK_BYTES, Cursor, Plan, plan_file, read_plan, stat_file
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.state import update_state

#: A batch is written when it holds this many events, file cursors or bytes read.
BATCH_EVENTS = 20_000
BATCH_FILES = 1_000
BATCH_BYTES = 64 * 1024 * 1024
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


class Progress(Protocol):
    """Where a scan reports how many bytes it will read and has read."""

    def start(self, total_bytes: int, files: int) -> None:
        """Called once, before reading, with the bytes and files to read."""
        ...

    def advance(self, nbytes: int) -> None:
        """Called as bytes are read."""
        ...


@dataclass(slots=True)
class SourceSummary:
    """What a scan did for one source."""

    source: str
    files_found: int = 0
    files_read: int = 0
    files_gone: int = 0
    bytes_read: int = 0
    events_new: int = 0
    events_updated: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "source": self.source,
            "files_found": self.files_found,
            "files_read": self.files_read,
            "files_gone": self.files_gone,
            "bytes_read": self.bytes_read,
            "events_new": self.events_new,
            "events_updated": self.events_updated,
            "problems": [
                {"path": p.path, "line": p.line, "reason": p.reason} for p in self.problems
            ],
        }


@dataclass(slots=True)
class ScanSummary:
    """What a scan did, per source."""

    sources: dict[str, SourceSummary]
    started_ms: int
    finished_ms: int = 0
    bytes_planned: int = 0

    @property
    def problems(self) -> list[Problem]:
        """Every file or line that could not be read, in scan order."""
        return [p for s in self.sources.values() for p in s.problems]

    @property
    def events_new(self) -> int:
        """New events across sources."""
        return sum(s.events_new for s in self.sources.values())

    @property
    def events_updated(self) -> int:
        """Replaced events across sources."""
        return sum(s.events_updated for s in self.sources.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "sources": [s.as_dict() for s in self.sources.values()],
        }


@dataclass(slots=True)
class _Batch:
    """Events and cursors waiting for their transaction."""

    events: dict[str, list[UsageEvent]] = field(default_factory=dict)
    cursors: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_events: int = 0
    n_bytes: int = 0

    def full(self) -> bool:
        return (
            self.n_events >= BATCH_EVENTS
            or len(self.cursors) >= BATCH_FILES
            or self.n_bytes >= BATCH_BYTES
        )


AfterWrite = Callable[[sqlite3.Connection], None]


@contextmanager
def scan_lock(home: Path) -> Iterator[None]:
    """Hold ``home/scan.lock`` so that two scans of one ledger take turns."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / "scan.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def load_cursors(conn: sqlite3.Connection, user_id: int) -> dict[str, Cursor]:
    """Every file cursor of the ledger, by path."""
    cursors: dict[str, Cursor] = {}
    rows = conn.execute(
        'SELECT path, source, inode, size, mtime_ns, "offset", head_sha256, parser_state, '
        "problems FROM scan_files WHERE user_id = ?",
        (user_id,),
    )
    for path, source, inode, size, mtime_ns, offset, head, parser_state, problems in rows:
        try:
            state = orjson.loads(parser_state or "{}")
        except orjson.JSONDecodeError:
            state = {}
        cursors[path] = Cursor(
            source=source,
            inode=int(inode),
            size=int(size),
            mtime_ns=int(mtime_ns),
            offset=int(offset),
            head_sha256=head,
            parser_state=state if isinstance(state, dict) else {},
            problems=int(problems),
        )
    return cursors


def discover(
    parsers: Mapping[str, SourceParser], env: Mapping[str, str], home: Path
) -> tuple[dict[str, list[Path]], list[Problem]]:
    """Every source's files; a source whose discovery fails becomes a problem."""
    found: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for name, parser in parsers.items():
        try:
            found[name] = list(parser.discover(env, home))
        except OSError as exc:
            found[name] = []
            problems.append(Problem(name, None, f"cannot list files ({exc})"))
    return found, problems


def scan(
    ledger: LocalLedger,
    *,
    env: Mapping[str, str],
    home: Path,
    clock: Callable[[], int],
    sources: Sequence[str] | None = None,
    progress: Progress | None = None,
    after_write: AfterWrite | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> ScanSummary:
    """Read everything new into the ledger; return what was done per source.

    ``env`` and ``home`` are where the parsers look for logs (the assistants' directory
    variables and the home directory). ``clock`` gives Unix ms (bucket revisions).
    ``after_write`` is called inside each batch's transaction after its events, buckets and
    rollups are written and before its cursors are (tests raise there to simulate a crash).
    """
    names = list(sources) if sources else list(PARSERS)
    with scan_lock(ledger.home):
        scanner = _Scanner(
            ledger,
            {name: PARSERS[name] for name in names},
            clock=clock,
            after_write=after_write,
            chunk_bytes=chunk_bytes,
        )
        summary = scanner.run(env, home, progress)
        update_state(ledger.home, last_scan_ms=summary.finished_ms)
        return summary


class _Scanner:
    """One scan: plans, a batch being filled, and the summary."""

    def __init__(
        self,
        ledger: LocalLedger,
        parsers: dict[str, SourceParser],
        *,
        clock: Callable[[], int],
        after_write: AfterWrite | None,
        chunk_bytes: int,
    ) -> None:
        self.ledger = ledger
        self.parsers = parsers
        self.clock = clock
        self.after_write = after_write
        self.chunk_bytes = chunk_bytes
        self.policies = {name: p.duplicate_policy for name, p in PARSERS.items()}
        self.summary = ScanSummary(
            sources={name: SourceSummary(name) for name in parsers}, started_ms=clock()
        )
        self.batch = _Batch()
        self._cursors: dict[str, Cursor] = {}

    def run(self, env: Mapping[str, str], home: Path, progress: Progress | None) -> ScanSummary:
        """Plan every file, read the plans, write the batches; return the summary."""
        plans, seen, unlisted = self._plan(env, home)
        # A source whose directory could not be listed keeps its cursors: its files may be back.
        cursors_gone = {
            path: cursor.source
            for path, cursor in self._cursors.items()
            if cursor.source in self.parsers and cursor.source not in unlisted and path not in seen
        }
        self.summary.bytes_planned = sum(p.bytes_to_read for p in plans)
        if progress is not None:
            progress.start(self.summary.bytes_planned, len(plans))
        for plan in plans:
            self._read(plan, progress)
        self._flush(gone=cursors_gone)
        for source in cursors_gone.values():
            self.summary.sources[source].files_gone += 1
        self.summary.finished_ms = self.clock()
        return self.summary

    def _plan(self, env: Mapping[str, str], home: Path) -> tuple[list[Plan], set[str], set[str]]:
        found, problems = discover(self.parsers, env, home)
        for problem in problems:
            self.summary.sources[problem.path].problems.append(problem)
        unlisted = {problem.path for problem in problems}
        ledger = self.ledger
        self._cursors = ledger.db.read(lambda conn: load_cursors(conn, ledger.user_id))
        plans: list[Plan] = []
        seen: set[str] = set()
        for name, paths in found.items():
            source = self.summary.sources[name]
            for path in paths:
                key = str(path)
                if key in seen:
                    continue  # already claimed by another source
                try:
                    plan = plan_file(
                        self.parsers[name], path, stat_file(path), self._cursors.get(key)
                    )
                except OSError as exc:
                    if not os.path.lexists(path):
                        continue  # deleted since discovery: it is gone
                    reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
                    source.problems.append(Problem(key, None, reason))
                    seen.add(key)
                    continue
                seen.add(key)
                source.files_found += 1
                if plan is not None:
                    plans.append(plan)
        return plans, seen, unlisted

    def _read(self, plan: Plan, progress: Progress | None) -> None:
        source = self.summary.sources[plan.source]
        problems = plan.problems_before
        key = str(plan.path)
        batch = self.batch
        batch.cursors[key] = self._cursor_row(plan, plan.start, plan.state, problems)
        read = 0
        for chunk in read_plan(self.parsers[plan.source], plan, chunk_bytes=self.chunk_bytes):
            if chunk.retry:
                # Not readable now: leave its stored cursor as it was, so the next scan
                # sees the file as changed and reads it again.
                batch.cursors.pop(key, None)
                source.problems.extend(chunk.problems)
                break
            batch.events.setdefault(plan.source, []).extend(chunk.events)
            batch.n_events += len(chunk.events)
            batch.n_bytes += chunk.bytes_read
            source.bytes_read += chunk.bytes_read
            source.problems.extend(chunk.problems)
            problems += len(chunk.problems)
            batch.cursors[key] = self._cursor_row(plan, chunk.offset, chunk.state, problems)
            read += chunk.bytes_read
            if progress is not None:
                progress.advance(chunk.bytes_read)
            if batch.full():
                self._flush()
                batch = self.batch
        if read or problems != plan.problems_before:
            source.files_read += 1
        if progress is not None and plan.bytes_to_read > read:
            progress.advance(plan.bytes_to_read - read)  # an unfinished last line, or an error

    def _cursor_row(
        self, plan: Plan, offset: int, state: Mapping[str, Any] | None, problems: int
    ) -> dict[str, Any]:
        return {
            "user_id": self.ledger.user_id,
            "path": str(plan.path),
            "source": plan.source,
            "inode": plan.stat.inode,
            "size": plan.stat.size,
            "mtime_ns": plan.stat.mtime_ns,
            "offset": offset,
            "head_sha256": plan.head_sha256,
            "parser_state": orjson.dumps(dict(state or {})).decode(),
            "problems": problems,
            "last_scanned_ms": self.summary.started_ms,
        }

    def _flush(self, *, gone: Mapping[str, str] | None = None) -> None:
        """Write the batch (and, at the end, drop cursors of gone files) in one transaction."""
        batch, self.batch = self.batch, _Batch()
        ledger = self.ledger
        now = self.clock()
        finishing = gone is not None

        def write(conn: sqlite3.Connection) -> WriteOutcome:
            outcome = store_events(
                conn,
                user_id=ledger.user_id,
                device_id=ledger.device_id,
                tz=ledger.tz,
                events=batch.events,
                policies=self.policies,
                now_ms=now,
            )
            if self.after_write is not None:
                self.after_write(conn)
            rows = list(batch.cursors.values())
            upsert(conn, "scan_files", rows, ("user_id", "path"), CURSOR_COLUMNS)
            if finishing:
                conn.executemany(
                    "DELETE FROM scan_files WHERE user_id = ? AND path = ?",
                    [(ledger.user_id, path) for path in gone or {}],
                )
                names = list(self.parsers)
                conn.execute(
                    "UPDATE scan_files SET last_scanned_ms = ? WHERE user_id = ? "
                    f"AND source IN ({placeholders(len(names))})",
                    (self.summary.started_ms, ledger.user_id, *names),
                )
            return outcome

        if not batch.cursors and not finishing:
            return
        outcome = ledger.db.write(write, user_id=ledger.user_id)
        for name, count in outcome.new.items():
            self.summary.sources[name].events_new += count
        for name, count in outcome.updated.items():
            self.summary.sources[name].events_updated += count
