"""What every ops job shares: evidence lines per stage under one request id, and progress hooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from usageledger.evidence import EvidenceLogger, JobRun, job, new_request_id


class Stages:
    """Evidence lines of one job run: one line per stage, all under the run's request id."""

    def __init__(self, logger: EvidenceLogger | None, function: str) -> None:
        self.logger = logger if logger is not None else EvidenceLogger("off")
        self.function = function
        self.request_id = new_request_id()

    @contextmanager
    def stage(self, name: str) -> Iterator[JobRun]:
        """Run one stage and write its evidence line (with the outcome), whatever happens inside."""
        with job(self.logger, self.function, name) as run:
            # One job run is one "request": its stages share the id, like a request's stages.
            run.request_id = self.request_id
            yield run


class Progress(Protocol):
    """Where a long job reports progress (the CLI draws a Rich bar; tests pass nothing)."""

    def user_started(self, name: str, chunks: int) -> None:
        """A user's work begins; it has ``chunks`` steps."""

    def advance(self) -> None:
        """One step (a chunk of days, a batch of rows) is done."""


class NoProgress:
    """Progress that goes nowhere."""

    def user_started(self, name: str, chunks: int) -> None:
        """Ignore."""

    def advance(self) -> None:
        """Ignore."""
