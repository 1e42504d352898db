"""What the long jobs' commands share (``replay``, ``verify``, ``backfill``, ``retention``,
``db copy``): their evidence log and a progress bar on standard error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar

from usageledger.cli.env import Env
from usageledger.evidence import EvidenceLogger

err = Console(stderr=True)
#: Ops jobs are not request handlers: a copy or a big chunk may need minutes.
OFFLINE_TIMEOUT_MS = 600_000


@contextmanager
def job_log(env: Env) -> Iterator[EvidenceLogger]:
    """The evidence log of ``USAGELEDGER_LOG_FILE``, closed when the job ends."""
    logger = EvidenceLogger(env.settings.log_file)
    try:
        yield logger
    finally:
        logger.close()


class Bar:
    """A Rich progress bar per user (or table): one row, reset for each."""

    def __init__(self, bar: RichBar, what: str) -> None:
        self.bar = bar
        self.what = what
        self.done = 0
        self.task: TaskID = bar.add_task(what, total=None)

    def user_started(self, name: str, chunks: int) -> None:
        """The next user (or table) starts, with ``chunks`` steps."""
        self.done += 1
        label = f"{self.what} {self.done}: {name}"
        self.bar.reset(self.task, total=chunks, description=label)

    def advance(self) -> None:
        """One step is done."""
        self.bar.advance(self.task)


@contextmanager
def progress(what: str) -> Iterator[Bar]:
    """A transient bar on standard error counting ``what`` (users, tables)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with RichBar(*columns, console=err, transient=True) as bar:
        yield Bar(bar, what)
