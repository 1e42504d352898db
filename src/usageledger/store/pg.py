"""What only PostgreSQL needs: psycopg's round-trip deadline and its error statuses.

Imported when a PostgreSQL engine is built or a psycopg error is classified, so that a command
on SQLite (``scan``, ``report``) does not pay for importing psycopg.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar, cast

import psycopg
from psycopg.abc import PQGen

RV = TypeVar("RV")

#: SQLSTATEs of a server that is up but cannot take the write now (503, with Retry-After):
#: class 53 "insufficient resources" (53100 disk full, 53200 out of memory, 53300 too many
#: connections) and 25006 (a read-only transaction: ``default_transaction_read_only``, a
#: standby).
UNAVAILABLE_SQLSTATE_CLASSES = ("53",)
UNAVAILABLE_SQLSTATES = frozenset({"25006"})


class RoundTripTimeout(psycopg.OperationalError):
    """The server sent nothing back within the round-trip deadline (a 504, like a timeout)."""


def _within(gen: PQGen[RV], seconds: float) -> PQGen[RV]:
    """Drive psycopg's protocol generator ``gen``, giving up ``seconds`` after it starts.

    psycopg's waiters resume the generator at least every ``interval`` (0.1 s) even when the
    socket is silent, so the deadline is checked even if the server never answers.
    """
    deadline = time.monotonic() + seconds
    try:
        waiting = next(gen)
        while True:
            ready = yield waiting
            waiting = gen.send(ready)
            if time.monotonic() >= deadline:
                gen.close()
                raise RoundTripTimeout(
                    f"the database sent no answer within {seconds:g} s (client-side timeout)"
                )
    except StopIteration as done:
        return cast(RV, done.value)


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip (a statement, COMMIT, ROLLBACK, the pool's
    ping) gives up after ``round_trip_s``; the connection is then closed, never reused."""

    round_trip_s: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """Consume ``gen`` like psycopg does, within the round-trip deadline."""
        if timeout is not None:  # psycopg's own bounded waits (cancellation) stay as they are
            return super().wait(gen, interval, timeout)
        if self.round_trip_s is None:
            return super().wait(gen, interval)
        try:
            return super().wait(_within(gen, self.round_trip_s), interval)
        except RoundTripTimeout:
            # The protocol state is unknown: close, so that the pool discards the connection
            # (SQLAlchemy sees a closed connection as a disconnect) and the server rolls back.
            self.pgconn.finish()
            raise


def connect_with_deadline(cargs: Any, cparams: Any, round_trip_s: float) -> DeadlineConnection:
    """A psycopg connection whose every round trip gives up after ``round_trip_s``."""
    conn = DeadlineConnection.connect(*cargs, **cparams)
    conn.round_trip_s = round_trip_s
    return conn


def postgres_status(orig: BaseException) -> int | None:
    """The upstream status of a psycopg error (None for anything else)."""
    if isinstance(orig, RoundTripTimeout):
        return 504
    if isinstance(orig, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return 504
    if isinstance(orig, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return 409
    sqlstate = getattr(orig, "sqlstate", None) if isinstance(orig, psycopg.Error) else None
    if sqlstate is not None and (
        sqlstate in UNAVAILABLE_SQLSTATES or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    ):
        return 503
    if isinstance(orig, psycopg.OperationalError):
        text = str(orig).lower()
        return 504 if "timeout" in text or "timed out" in text else 503
    return None
