"""``usageledger scan``: read what is new in the assistants' logs into the local ledger.

Each file has a cursor in ``scan_files`` (offset, inode, size, mtime, head digest, parser
state). A scan discovers every source's files, plans what is new in each (``files.plan_file``),
reads it in bounded chunks and writes in batches: the events, the buckets and rollups they
change and the cursors that cover them are committed in ONE transaction per batch, so a crash
at any moment leaves either all of a batch or none of it — never events without their cursor
or a cursor past events that were lost. A file that disappears keeps its events (the
assistants delete old logs; the ledger keeps the history); only its cursor is dropped.

A scan with much to read (a first scan of a long history) parses on every CPU: forked workers
(one per CPU but one) and this process, which stays the ONLY writer and parses whenever the
result it must write next is not ready. Work goes out as groups of consecutive files; results
are written in plan order, exactly as one process would write them, so the ledger comes out
the same row for row (duplicate policies such as "first" depend on that order). At most
``LOOKAHEAD_BYTES`` of input is parsed ahead of the writer, which keeps memory flat however
large the history. A scan with little to read (the usual rescan) never starts workers: they
would cost more than they save. The workers are forked, not spawned: fork starts them in
milliseconds and re-imports nothing (spawn and forkserver re-run the caller's imports in every
worker, which cost more than they saved on two busy cores).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from usageledger.sources import (
    PARSERS,
    LimitObservation,
    Problem,
    SourceParser,
    UsageEvent,
    is_database,
)
from usageledger.sources.listing import remembered
from usageledger.tracker.db import upsert
from usageledger.tracker.events import WriteOutcome, store_events
from usageledger.tracker.files import (
    CHUNK_BYTES,
    CURSOR_COLUMNS,
    SEEN_COLUMNS,
    Chunk,
    FileStat,
    Plan,
    Seen,
    as_cursor,
    load_cursor_rows,
    plan_file,
    read_plan,
    stat_file,
    up_to_date,
)
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.limits import store_limits
from usageledger.tracker.state import update_state

#: A batch is written when it holds this many events, file cursors or bytes read.
BATCH_EVENTS = 20_000
BATCH_FILES = 1_000
BATCH_BYTES = 64 * 1024 * 1024
#: A scan starts a pool of parsing processes only when it has this much to read (and more
#: than one CPU): below it, forking and passing results back cost more than they save.
POOL_MIN_BYTES = 32 * 1024 * 1024
#: A worker's task: consecutive files up to this many bytes (or ``TASK_FILES`` files), so a
#: history of many small files does not pay a round trip per file.
TASK_BYTES = 4 * 1024 * 1024
TASK_FILES = 256
#: How many bytes of input the workers may parse ahead of the one writer; their results
#: wait in memory until written, so this bounds the memory of a scan, not the corpus size.
LOOKAHEAD_BYTES = 128 * 1024 * 1024
#: How much of that the workers are handed at once; the writer parses beyond it itself
#: whenever the result it must write next is not ready.
POOL_AHEAD_BYTES = 64 * 1024 * 1024


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
    limits: list[LimitObservation] = field(default_factory=list)
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


def load_seen(conn: sqlite3.Connection, user_id: int) -> dict[str, Seen]:
    """Every file cursor's identity and offset, by path (all a rescan needs of an unchanged
    file)."""
    rows = conn.execute(f"SELECT {SEEN_COLUMNS} FROM scan_files WHERE user_id = ?", (user_id,))
    return {row[0]: row[1:] for row in rows}


#: Where a ledger's home keeps the directory listings of the last discovery
#: (``usageledger.sources.listing``).
LISTINGS_FILE = "listings.cache"


def discover(
    parsers: Mapping[str, SourceParser],
    env: Mapping[str, str],
    home: Path,
    *,
    listings: Path | None = None,
    save_listings: bool = True,
) -> tuple[dict[str, list[str | Path]], list[Problem]]:
    """Every source's files; a source whose discovery fails becomes a problem.

    With ``listings`` (a file), directories unchanged since the listings in it were taken
    are not read again, and (with ``save_listings``) the file is brought up to date.
    """
    found: dict[str, list[str | Path]] = {}
    problems: list[Problem] = []
    every_source = set(parsers) >= set(PARSERS)
    with remembered(listings, save=save_listings, prune=every_source):
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
    workers: int | None = None,
) -> ScanSummary:
    """Read everything new into the ledger; return what was done per source.

    ``env`` and ``home`` are where the parsers look for logs (the assistants' directory
    variables and the home directory). ``clock`` gives Unix ms (bucket revisions).
    ``after_write`` is called inside each batch's transaction after its events, buckets and
    rollups are written and before its cursors are (tests raise there to simulate a crash).
    ``workers`` is how many processes parse, this one included: None decides (one per CPU
    when there are at least ``POOL_MIN_BYTES`` to read, else this process alone); 1 parses
    here only; more forks ``workers - 1`` whatever the amount (tests compare the two).
    """
    names = list(sources) if sources else list(PARSERS)
    with scan_lock(ledger.home):
        scanner = _Scanner(
            ledger,
            {name: PARSERS[name] for name in names},
            clock=clock,
            after_write=after_write,
            chunk_bytes=chunk_bytes,
            workers=workers,
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
        workers: int | None,
    ) -> None:
        self.ledger = ledger
        self.workers = workers
        self.parsers = parsers
        self.clock = clock
        self.after_write = after_write
        self.chunk_bytes = chunk_bytes
        self.policies = {name: p.duplicate_policy for name, p in PARSERS.items()}
        self.summary = ScanSummary(
            sources={name: SourceSummary(name) for name in parsers}, started_ms=clock()
        )
        self.batch = _Batch()
        self._sources: dict[str, str] = {}  # every stored cursor's source, by path

    def run(self, env: Mapping[str, str], home: Path, progress: Progress | None) -> ScanSummary:
        """Plan every file, read the plans, write the batches; return the summary."""
        plans, seen, unlisted = self._plan(env, home)
        # A source whose directory could not be listed keeps its cursors: its files may be back.
        cursors_gone = {
            path: source
            for path, source in self._sources.items()
            if source in self.parsers and source not in unlisted and path not in seen
        }
        self.summary.bytes_planned = sum(p.bytes_to_read for p in plans)
        if progress is not None:
            progress.start(self.summary.bytes_planned, len(plans))
        for plan, chunks in self._parsed(plans):
            self._read(plan, chunks, progress)
        self._flush(gone=cursors_gone)
        for source in cursors_gone.values():
            self.summary.sources[source].files_gone += 1
        self.summary.finished_ms = self.clock()
        return self.summary

    def _plan(self, env: Mapping[str, str], home: Path) -> tuple[list[Plan], set[str], set[str]]:
        found, problems = discover(
            self.parsers, env, home, listings=self.ledger.home / LISTINGS_FILE
        )
        for problem in problems:
            self.summary.sources[problem.path].problems.append(problem)
        unlisted = {problem.path for problem in problems}
        ledger = self.ledger
        stored = ledger.db.read(lambda conn: load_seen(conn, ledger.user_id))
        self._sources = {path: row[0] for path, row in stored.items()}
        seen: set[str] = set()
        # First every file's stat against its cursor: on a rescan nearly every file is as its
        # cursor left it, and this loop is all that it costs (kept to a system call and a
        # tuple comparison per file). Then the changed files' whole cursors, in one read.
        changed: list[tuple[SourceParser, str, FileStat]] = []
        stat = os.stat
        for name, paths in found.items():
            source = self.summary.sources[name]
            parser = self.parsers[name]
            whole = not parser.incremental
            for path in paths:
                key = path if isinstance(path, str) else str(path)
                if key in seen:
                    continue  # already claimed by another source
                row = stored.get(key)
                try:
                    if key.endswith(".db") and is_database(key):
                        info = stat_file(key)
                        if row is None or not up_to_date(parser, key, info, row):
                            changed.append((parser, key, info))
                    else:
                        st = stat(key)
                        if (
                            row is None
                            or row[0] != name
                            or row[1] != st.st_ino
                            or row[2] != st.st_size
                            or row[3] != st.st_mtime_ns
                            or not (whole or row[4] >= st.st_size)
                        ):
                            changed.append(
                                (parser, key, FileStat(st.st_ino, st.st_size, st.st_mtime_ns))
                            )
                except OSError as exc:
                    if not os.path.lexists(key):
                        continue  # deleted since discovery: it is gone
                    reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
                    source.problems.append(Problem(key, None, reason))
                    seen.add(key)
                    continue
                seen.add(key)
                source.files_found += 1
        return self._plan_changed(changed, stored, seen), seen, unlisted

    def _plan_changed(
        self,
        changed: Sequence[tuple[SourceParser, str, FileStat]],
        stored: Mapping[str, Seen],
        seen: set[str],
    ) -> list[Plan]:
        """What to read of each changed file (from its whole cursor, if it has one); a file
        that cannot be read now is a problem, and one deleted meanwhile is gone."""
        ledger = self.ledger
        known = [key for _, key, _ in changed if key in stored]
        rows = (
            ledger.db.read(lambda conn: load_cursor_rows(conn, ledger.user_id, known))
            if known
            else {}
        )
        plans: list[Plan] = []
        for parser, key, info in changed:
            row = rows.get(key)
            try:
                plan = plan_file(
                    parser, Path(key), info, as_cursor(row) if row is not None else None
                )
            except OSError as exc:
                source = self.summary.sources[parser.name]
                source.files_found -= 1
                if not os.path.lexists(key):
                    seen.discard(key)  # deleted since it was looked at: it is gone
                    continue
                reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
                source.problems.append(Problem(key, None, reason))
                continue
            if plan is not None:
                plans.append(plan)
        return plans

    def _parsed(self, plans: Sequence[Plan]) -> Iterator[tuple[Plan, Iterable[Chunk]]]:
        """Every plan with its chunks, in plan order: parsed here, or by a pool of workers."""
        workers = pool_size(plans, self.workers)
        if workers > 1:
            yield from parse_in_pool(plans, workers, self.chunk_bytes)
            return
        for plan in plans:
            yield plan, read_plan(self.parsers[plan.source], plan, chunk_bytes=self.chunk_bytes)

    def _read(self, plan: Plan, chunks: Iterable[Chunk], progress: Progress | None) -> None:
        """Put one file's chunks into batches (written whenever one is full)."""
        source = self.summary.sources[plan.source]
        problems = plan.problems_before
        key = str(plan.path)
        batch = self.batch
        batch.cursors[key] = self._cursor_row(plan, plan.start, plan.state, problems)
        read = 0
        for chunk in chunks:
            if chunk.retry:
                # Not readable now: leave its stored cursor as it was, so the next scan
                # sees the file as changed and reads it again.
                batch.cursors.pop(key, None)
                source.problems.extend(chunk.problems)
                break
            batch.events.setdefault(plan.source, []).extend(chunk.events)
            batch.limits.extend(chunk.limits)
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
            store_limits(conn, ledger.user_id, batch.limits)
            if self.after_write is not None:
                self.after_write(conn)
            rows = list(batch.cursors.values())
            upsert(conn, "scan_files", rows, ("user_id", "path"), CURSOR_COLUMNS)
            if gone:
                conn.executemany(
                    "DELETE FROM scan_files WHERE user_id = ? AND path = ?",
                    [(ledger.user_id, path) for path in gone],
                )
            return outcome

        # A rescan with nothing new writes nothing: no transaction, and no cursor touched
        # (``last_scanned_ms`` is when a file's cursor was last written, not when it was
        # last looked at: stamping every row on every scan cost a quick rescan a third).
        if not batch.cursors and not gone:
            return
        outcome = ledger.db.write(write, user_id=ledger.user_id)
        for name, count in outcome.new.items():
            self.summary.sources[name].events_new += count
        for name, count in outcome.updated.items():
            self.summary.sources[name].events_updated += count


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_size(plans: Sequence[Plan], workers: int | None) -> int:
    """How many processes should parse ``plans`` (1: this one alone, no pool; n: this one
    and n - 1 forked workers).

    A pool needs fork (cheap, and it re-runs nothing of the caller: spawn and forkserver
    would import the CLI again in every worker and cost more than they save on two cores), so
    it runs on Linux only: macOS made spawn its default because system libraries break in a
    forked child, and Windows has no fork.
    """
    if workers is None:
        enough = sum(p.bytes_to_read for p in plans) >= POOL_MIN_BYTES
        workers = cpu_count() if enough else 1
    if workers <= 1 or len(plans) < 2 or not sys.platform.startswith("linux"):
        return 1
    return workers


def tasks(plans: Sequence[Plan]) -> Iterator[list[Plan]]:
    """Consecutive plans grouped into tasks of about ``TASK_BYTES`` (a large file alone)."""
    task: list[Plan] = []
    size = 0
    for plan in plans:
        task.append(plan)
        size += plan.bytes_to_read
        if size >= TASK_BYTES or len(task) >= TASK_FILES:
            yield task
            task, size = [], 0
    if task:
        yield task


class Rows:
    """A frozen dataclass's items as one JSON array of rows (datetimes as ISO 8601 text).

    Workers send a chunk's events and limit observations this way: unpickling thousands of
    dataclasses with datetimes cost the one writer more than writing them; ``orjson`` rows
    cost a fraction.
    """

    def __init__(self, cls: Any) -> None:
        self.cls = cls
        self.names = tuple(f.name for f in fields(cls))
        self.times = tuple(i for i, f in enumerate(fields(cls)) if "datetime" in str(f.type))

    def dump(self, items: Sequence[Any]) -> bytes:
        """The rows (``orjson.JSONEncodeError`` for what JSON cannot hold exactly)."""
        return orjson.dumps([[getattr(item, name) for name in self.names] for item in items])

    def load(self, data: bytes) -> list[Any]:
        """The items ``dump`` wrote, equal to the originals."""
        items = []
        for row in orjson.loads(data):
            for i in self.times:
                if row[i] is not None:
                    row[i] = datetime.fromisoformat(row[i])
            items.append(self.cls(*row))
        return items


#: The lists of a ``Chunk`` that travel from the workers as rows.
PACKED = {"events": Rows(UsageEvent), "limits": Rows(LimitObservation)}
EVENT_FIELDS = PACKED["events"].names

Packed = tuple[Chunk, dict[str, bytes]]


def pack(chunk: Chunk) -> Packed:
    """A chunk made cheap to send: its events and limits as JSON rows.

    A list ``orjson`` cannot write (a lone surrogate, an integer past 64 bits) stays in the
    chunk and travels pickled.
    """
    rows: dict[str, bytes] = {}
    for name, codec in PACKED.items():
        items = getattr(chunk, name, None)
        if not items:
            continue
        try:
            rows[name] = codec.dump(items)
        except orjson.JSONEncodeError:
            continue
        setattr(chunk, name, [])
    return chunk, rows


def unpack(packed: Packed) -> Chunk:
    """The chunk ``pack`` sent, with its lists rebuilt."""
    chunk, rows = packed
    for name, data in rows.items():
        setattr(chunk, name, PACKED[name].load(data))
    return chunk


def parse_task(task: Sequence[Plan], chunk_bytes: int) -> list[list[Packed]]:
    """In a worker: every chunk of every file of the task (``read_plan`` never raises)."""
    return [
        [pack(c) for c in read_plan(PARSERS[plan.source], plan, chunk_bytes=chunk_bytes)]
        for plan in task
    ]


def parse_in_pool(
    plans: Sequence[Plan], processes: int, chunk_bytes: int
) -> Iterator[tuple[Plan, list[Chunk]]]:
    """Parse ``plans`` in ``processes`` processes (this one and forked workers), in order.

    This process writes, and parses too whenever the result it must write next is not ready:
    it takes the next task nobody has started, so no core idles while there is work, and no
    core is shared by more of our processes than it can run. The workers are handed up to
    ``POOL_AHEAD_BYTES`` of input at a time, and no more than ``LOOKAHEAD_BYTES`` is ever
    parsed beyond the task being written, so results never pile up in memory. Tasks are not
    reordered (largest first would balance better) because results are written in plan order.
    """
    import multiprocessing  # only a scan that pays for a pool imports these
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pending: deque[tuple[list[Plan], Future[list[list[Packed]]] | list[list[Chunk]]]] = deque()
    ahead = 0
    todo = tasks(plans)

    def here(task: list[Plan]) -> list[list[Chunk]]:
        return [list(read_plan(PARSERS[p.source], p, chunk_bytes=chunk_bytes)) for p in task]

    context = multiprocessing.get_context("fork")
    pool: ProcessPoolExecutor | None = ProcessPoolExecutor(processes - 1, mp_context=context)
    try:
        while True:
            while pool is not None and (not pending or ahead < POOL_AHEAD_BYTES):
                task = next(todo, None)
                if task is None:
                    break
                pending.append((task, pool.submit(parse_task, task, chunk_bytes)))
                ahead += sum(p.bytes_to_read for p in task)
            if not pending:
                extra = next(todo, None)  # only once the workers are gone
                if extra is None:
                    break
                pending.append((extra, here(extra)))
                ahead += sum(p.bytes_to_read for p in extra)
            task, result = pending[0]
            if isinstance(result, Future):
                if not result.done() and ahead < LOOKAHEAD_BYTES:
                    extra = next(todo, None)
                    if extra is not None:  # parse it here rather than wait
                        pending.append((extra, here(extra)))
                        ahead += sum(p.bytes_to_read for p in extra)
                        continue
                try:
                    chunks = [[unpack(p) for p in packed] for packed in result.result()]
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): parse what is left here.
                    if pool is not None:
                        pool.shutdown(wait=False, cancel_futures=True)
                    pool = None
                    chunks = here(task)
            else:
                chunks = result
            pending.popleft()
            ahead -= sum(p.bytes_to_read for p in task)
            yield from zip(task, chunks, strict=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
