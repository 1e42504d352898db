"""The evidence log (docs/design.md §6): one JSON line per request and per job step.

The lines are in the M1 format of docs/attribution.md. Every line carries its eight fields —
``request_id``, ``function``, ``stage``, ``status``, ``latency_ms``, ``error_code``,
``upstream_status``, ``upstream_latency_ms`` — plus ``ts``. The upstream is the database: its
status and time come from the instrumented engine (:mod:`usageledger.store.engine`), never from
a guess. A request that made no database call has a null ``upstream_status``. ``db_wait_ms`` is
the time spent queued in the process for SQLite's single write lock (not database time). No
token, body or idempotency key is ever logged: callers pass only the fields below.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
import structlog

from usageledger.errors import ErrorCode, LedgerError
from usageledger.store.engine import DbStats, classify, track_db

REQUIRED_FIELDS: tuple[str, ...] = (
    "request_id",
    "function",
    "stage",
    "status",
    "latency_ms",
    "error_code",
    "upstream_status",
    "upstream_latency_ms",
)


def _drop_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("event", None)
    return event


def _dumps(event: Any, **_: Any) -> str:
    # orjson escapes control characters, so a value with a line break stays on one line.
    return orjson.dumps(event).decode()


class EvidenceLogger:
    """Writes evidence lines to stdout, to a file (appended), or nowhere (``off``)."""

    def __init__(self, target: str = "-") -> None:
        self._owned: TextIO | None = None
        if target == "off":
            stream: TextIO | None = None
        elif target == "-":
            stream = sys.stdout
        else:
            self._owned = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            stream = self._owned
        self._log = (
            structlog.wrap_logger(
                structlog.WriteLogger(stream),
                processors=[
                    _drop_event,
                    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                    structlog.processors.JSONRenderer(serializer=_dumps),
                ],
                cache_logger_on_first_use=False,
            )
            if stream is not None
            else None
        )

    def emit(
        self,
        *,
        request_id: str,
        function: str,
        stage: str,
        status: int,
        latency_ms: float,
        error_code: str | None,
        db: DbStats,
        **extra: str | int | float | None,
    ) -> None:
        """Write one line; the upstream fields come from ``db``."""
        if self._log is None:
            return
        self._log.info(
            None,
            request_id=request_id,
            function=function,
            stage=stage,
            status=status,
            latency_ms=round(latency_ms, 3),
            error_code=error_code,
            upstream_status=db.worst_status,
            upstream_latency_ms=round(db.elapsed_ms, 3) if db.worst_status is not None else None,
            # Queued in this process for SQLite's single write lock: the application's time.
            db_wait_ms=round(db.wait_ms, 3),
            **extra,
        )

    def close(self) -> None:
        """Close the file this logger opened (stdout stays open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None


def new_request_id() -> str:
    """A fresh request id (UUID4, 36 characters)."""
    return str(uuid.uuid4())


@dataclass(slots=True)
class JobRun:
    """A job's evidence while it runs: the caller may set the outcome before it ends."""

    request_id: str
    status: int = 200
    error_code: str | None = None
    extra: dict[str, str | int | float | None] = field(default_factory=dict)


@contextmanager
def job(logger: EvidenceLogger, function: str, stage: str = "run") -> Iterator[JobRun]:
    """Run a CLI job step and write its evidence line, whatever happens inside."""
    run = JobRun(request_id=new_request_id())
    started = time.perf_counter()
    with track_db() as stats:
        try:
            yield run
        except LedgerError as exc:
            run.status, run.error_code = exc.status, str(exc.code)
            raise
        except Exception as exc:
            upstream = classify(exc)
            run.status = upstream if upstream in (503, 504) else 500
            run.error_code = str(
                ErrorCode.DATABASE_TIMEOUT
                if run.status == 504
                else ErrorCode.DATABASE_UNAVAILABLE
                if run.status == 503
                else ErrorCode.INTERNAL_ERROR
            )
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            # Ctrl-C, or an exit with a failure status inside the job: it did not finish.
            if isinstance(exc, KeyboardInterrupt) or exc.code not in (0, None):
                run.status, run.error_code = 500, str(ErrorCode.INTERRUPTED)
            raise
        finally:
            logger.emit(
                request_id=run.request_id,
                function=function,
                stage=stage,
                status=run.status,
                latency_ms=(time.perf_counter() - started) * 1000,
                error_code=run.error_code,
                db=stats,
                **run.extra,
            )
