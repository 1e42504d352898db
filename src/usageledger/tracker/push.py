"""``usageledger push``: upload the buckets the server has not acknowledged yet.

A bucket is pending when its local ``revision`` is above the ``acked_revision`` recorded in
``push_acks`` (or it was never acknowledged and has tokens). Pending buckets go out oldest
first in batches within the server's limits (≤ 500 buckets, ≤ 1 MiB), each with an
``Idempotency-Key`` derived from the batch's bytes, so a retry after a lost response replays
the stored answer instead of applying twice. Acknowledgements are recorded per batch, right
after its 2xx, so an interrupted push resumes exactly where it stopped.

Each batch is sent in the lowest schema that carries its counts: v2 when every schema v3
count of its buckets is 0 (no one-hour writes, no long-context or fast request, no web
search), else v3. The buckets that need v3 go after the others, so a server older than v3
receives everything it can store before it refuses the first v3 batch, and the push then says
in one line that the server must be upgraded.

Retries: 429, 5xx, ``409 IDEMPOTENCY_KEY_IN_FLIGHT`` and network errors are retried with
exponential backoff and jitter, never sooner than the server's ``Retry-After``, up to
``RetryPolicy.max_attempts`` attempts per batch. Any other 4xx stops the push with the
server's error code and message.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from usageledger import __version__
from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS, COUNTS_V2, iso_utc
from usageledger.tracker.db import upsert
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import Login
from usageledger.tracker.state import update_state

#: The newest schema this tracker sends (when a batch needs it; see :func:`schema_of`).
SCHEMA_VERSION = 3
#: The server's error code for a schema it does not read.
UNSUPPORTED_SCHEMA = "UNSUPPORTED_SCHEMA_VERSION"
MAX_BUCKETS = 500
MAX_BYTES = 1024 * 1024
#: The server's default floor and future skew (docs/design.md §4); a bucket outside is held back.
FLOOR = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
FUTURE_MARGIN_SECONDS = 600
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RETRYABLE_409 = "IDEMPOTENCY_KEY_IN_FLIGHT"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one batch is retried."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: The longest Retry-After honoured as given; a longer one is cut to this.
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rand: Callable[[], float]) -> float:
        """Delay after failed attempt ``attempt`` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


class PushError(Exception):
    """The push stopped; ``code`` is the server's error code (or ``NETWORK_ERROR``)."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class PendingBucket:
    """A bucket to upload with the revision it has now."""

    source: str
    model: str
    bucket_start: int
    revision: int
    counts: tuple[int, ...]

    @property
    def schema(self) -> int:
        """The lowest schema that carries this bucket's counts: 2 when its v3 counts are 0."""
        return 3 if any(self.counts[_V2:]) else 2

    def wire(self, schema: int = SCHEMA_VERSION) -> dict[str, Any]:
        """The bucket as the wire of ``schema`` carries it (no user, device or project:
        ever); v2 has the first six counts (a v2 bucket's v3 counts are all 0)."""
        names = COUNT_COLUMNS if schema >= 3 else COUNTS_V2
        return {
            "bucket_start": iso_utc(self.bucket_start),
            "source": self.source,
            "model": self.model,
            "revision": self.revision,
            **dict(zip(names, self.counts, strict=False)),
        }


_V2 = len(COUNTS_V2)


@dataclass(slots=True)
class PushSummary:
    """What a push did."""

    server: str
    pending: int = 0
    held_back: int = 0
    batches: int = 0
    buckets: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("inserted", "updated", "unchanged", "stale", "conflicts"), 0
        )
    )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "server": self.server,
            "pending": self.pending,
            "held_back": self.held_back,
            "batches": self.batches,
            "buckets": self.buckets,
            "attempts": self.attempts,
            **self.outcomes,
        }


#: Buckets of this device whose revision the server has not acknowledged: never acknowledged
#: (and holding tokens), or changed since. Parameters: the user and the device.
_PENDING = (
    "FROM usage_buckets AS b LEFT OUTER JOIN push_acks AS a ON a.user_id = b.user_id "
    "AND a.device_id = b.device_id AND a.source = b.source AND a.model = b.model "
    "AND a.bucket_start = b.bucket_start "
    "WHERE b.user_id = ? AND b.device_id = ? "
    "AND ((a.acked_revision IS NULL AND b.total_tokens > 0) OR b.revision > a.acked_revision)"
)


def pending_buckets(conn: sqlite3.Connection, ledger: LocalLedger) -> list[PendingBucket]:
    """Buckets whose revision the server has not acknowledged, oldest first."""
    counts = ", ".join(f"b.{c}" for c in COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT b.source, b.model, b.bucket_start, b.revision, {counts} {_PENDING} "
        "ORDER BY b.bucket_start, b.source, b.model",
        (ledger.user_id, ledger.device_id),
    )
    return [
        PendingBucket(str(r[0]), str(r[1]), int(r[2]), int(r[3]), tuple(int(v) for v in r[4:]))
        for r in rows
    ]


def count_pending(conn: sqlite3.Connection, ledger: LocalLedger) -> int:
    """How many buckets a push would send now (held-back ones included)."""
    row = conn.execute(f"SELECT COUNT(*) {_PENDING}", (ledger.user_id, ledger.device_id)).fetchone()
    return int(row[0])


def schema_of(buckets: Sequence[PendingBucket]) -> int:
    """The lowest schema that carries every bucket of a batch (2 or 3)."""
    return max((b.schema for b in buckets), default=2)


def encode(buckets: Sequence[PendingBucket]) -> bytes:
    """The request body of a batch, in the lowest schema that carries its counts."""
    schema = schema_of(buckets)
    return orjson.dumps({"schema_version": schema, "buckets": [b.wire(schema) for b in buckets]})


def idempotency_key(body: bytes) -> str:
    """A key derived from the batch's bytes: the same batch always carries the same key."""
    return "ul-push-" + hashlib.sha256(body).hexdigest()


def batches(
    buckets: Sequence[PendingBucket], *, max_buckets: int = MAX_BUCKETS, max_bytes: int = MAX_BYTES
) -> Iterator[tuple[list[PendingBucket], bytes]]:
    """Split buckets into batches of at most ``max_buckets`` and ``max_bytes`` of body.

    The buckets that v2 carries come first, then the ones that need v3 (each group in the
    given order), so that a batch's schema is the lowest its buckets need.
    """
    overhead = len(encode([]))
    current: list[PendingBucket] = []
    size = overhead
    ordered = sorted(buckets, key=lambda b: b.schema)  # stable: oldest first in each group
    for bucket in ordered:
        if current and current[-1].schema != bucket.schema:
            yield current, encode(current)
            current, size = [], overhead
        item = len(orjson.dumps(bucket.wire(bucket.schema))) + 1  # and its comma
        if current and (len(current) >= max_buckets or size + item > max_bytes):
            yield current, encode(current)
            current, size = [], overhead
        current.append(bucket)
        size += item
    if current:
        yield current, encode(current)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The server's error code and message, or a stand-in for a body that is not ours."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{response.status_code}", response.reason_phrase


class Uploader:
    """Sends batches to one server with retries; the HTTP client and sleep are injectable."""

    def __init__(
        self,
        login: Login,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        policy: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.login = login
        self.sleep = sleep
        self.rand = rand
        self.policy = policy or RetryPolicy()
        self.wall_clock = wall_clock
        self.attempts = 0
        self.client = httpx.Client(
            base_url=login.server,
            transport=transport,
            timeout=TIMEOUT,
            headers={
                "Authorization": f"Bearer {login.token}",
                "Content-Type": "application/json",
                "User-Agent": f"usageledger/{__version__}",
            },
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def send(self, body: bytes) -> dict[str, Any]:
        """POST one batch until a 2xx (its JSON) or a final error (``PushError``)."""
        key = idempotency_key(body)
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            retry_after: float | None = None
            try:
                response = self.client.post(
                    "/v1/ingest", content=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError as exc:
                error = PushError(
                    f"cannot reach {self.login.server}: {type(exc).__name__} {exc}".strip(),
                    code="NETWORK_ERROR",
                )
            else:
                if response.is_success:
                    result: dict[str, Any] = response.json()
                    return result
                code, message = _error_of(response)
                status = response.status_code
                error = PushError(
                    f"the server answered {status} {code}: {message}", code=code, status=status
                )
                retryable = (
                    status == 429 or status >= 500 or (status == 409 and code == RETRYABLE_409)
                )
                if not retryable:
                    raise error
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=self.wall_clock()
                )
            if attempt >= self.policy.max_attempts:
                error.message += f" (gave up after {attempt} attempts)"
                error.args = (error.message,)
                raise error
            delay = self.policy.backoff(attempt, self.rand)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.max_retry_after))
            self.sleep(delay)


def record_acks(
    conn: sqlite3.Connection, ledger: LocalLedger, sent: Sequence[PendingBucket], now_ms: int
) -> None:
    """Remember that the server acknowledged these revisions."""
    rows = [
        {
            "user_id": ledger.user_id,
            "device_id": ledger.device_id,
            "source": b.source,
            "model": b.model,
            "bucket_start": b.bucket_start,
            "acked_revision": b.revision,
            "acked_at_ms": now_ms,
        }
        for b in sent
    ]
    upsert(conn, "push_acks", rows, BUCKET_KEY, ("acked_revision", "acked_at_ms"))


def push(
    ledger: LocalLedger,
    login: Login,
    *,
    clock: Callable[[], int],
    uploader: Uploader | None = None,
    max_buckets: int = MAX_BUCKETS,
    max_bytes: int = MAX_BYTES,
) -> PushSummary:
    """Upload every pending bucket; acknowledgements are saved after each batch's 2xx."""
    summary = PushSummary(server=login.server)
    client = uploader or Uploader(login)
    try:
        pending = ledger.db.read(lambda conn: pending_buckets(conn, ledger))
        summary.pending = len(pending)
        latest = clock() // 1000 + FUTURE_MARGIN_SECONDS
        ready = [b for b in pending if FLOOR <= b.bucket_start <= latest]
        summary.held_back = len(pending) - len(ready)
        for batch, body in batches(ready, max_buckets=max_buckets, max_bytes=max_bytes):
            try:
                answer = client.send(body)
            except PushError as exc:
                if exc.code == UNSUPPORTED_SCHEMA:
                    exc.message = (
                        f"the server at {login.server} does not read schema "
                        f"v{schema_of(batch)}, which {len(batch)} buckets need (one-hour cache "
                        "writes, long-context or fast requests, web searches): upgrade the "
                        f"server to usageledger {__version__} or later"
                        f" ({summary.buckets} buckets were acknowledged before it)"
                    )
                else:
                    exc.message = (
                        f"push stopped at batch {summary.batches + 1}: {exc.message}"
                        f" ({summary.buckets} buckets were acknowledged before it)"
                    )
                exc.args = (exc.message,)
                raise
            _acknowledge(ledger, batch, clock())
            summary.batches += 1
            summary.buckets += len(batch)
            for name in summary.outcomes:
                value = answer.get(name)
                if isinstance(value, int):
                    summary.outcomes[name] += value
    finally:
        summary.attempts = client.attempts
        if uploader is None:
            client.close()
    update_state(ledger.home, last_push_ms=clock(), last_push=summary.as_dict())
    return summary


def _acknowledge(ledger: LocalLedger, sent: Sequence[PendingBucket], now_ms: int) -> None:
    ledger.db.write(lambda conn: record_acks(conn, ledger, sent, now_ms), user_id=ledger.user_id)
