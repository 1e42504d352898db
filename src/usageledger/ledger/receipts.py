"""Ingest requests end to end: validation, Idempotency-Key handling, receipts (docs/design.md §4).

Every accepted request leaves one ``ingest_receipts`` row (audit, and the stored response
for an Idempotency-Key replay). One write transaction, under the user's lock, checks the token
again, looks the key up, applies the batch and writes the receipt, so a push costs one commit
(one fsync on SQLite) and a failure leaves nothing behind, not even a claim. A duplicate of a
request that is still running in this process gets 409 at once (:class:`KeyClaims`); one that
reaches another server process waits for the user's lock and then gets the stored response.
Neither the key nor the body is stored: only their SHA-256.

Keys are scoped per **device**, not per user: the tracker derives its key from the body, so two
devices of one user sending byte-identical batches (same half-hours, same counts) send the same
key, and a per-user key would answer the second device with the first one's stored reply and
write nothing of its batch. The stored hash covers the device id and the key
(:func:`idempotency_key_hash`), which needs no new column or index: the unique
``(user_id, idempotency_key_hash)`` pair is then unique per device.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, bindparam, select, update

from usageledger.config import Settings
from usageledger.errors import (
    ErrorCode,
    Forbidden,
    IdempotencyConflict,
    Unauthenticated,
    ValidationFailed,
)
from usageledger.ledger.accounts import Principal, live_time_zone
from usageledger.ledger.ingest import apply_batch, touch_device
from usageledger.source_registry import SourceRegistry
from usageledger.store.dialect import upsert
from usageledger.store.engine import Database
from usageledger.store.tables import ingest_receipts
from usageledger.wire import parse_ingest

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class IngestReply:
    """The response body of an ingest, and whether it replays a stored one."""

    body: dict[str, Any]
    replayed: bool = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idempotency_key_hash(device_id: int, key: str) -> str:
    """What a receipt stores of a device's Idempotency-Key: SHA-256 of the device id and key.

    A key is printable, so it never holds the newline that separates the two: this hash never
    equals a hash of a bare key, which receipts written before keys were scoped per device hold
    (see :func:`_look_up_key`).
    """
    return _sha256(f"{device_id}\n{key}".encode())


def check_idempotency_key(key: str | None) -> None:
    """Reject an empty, over-long or non-printable Idempotency-Key."""
    if key is None:
        return
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters"
        )


class KeyClaims:
    """The Idempotency-Keys of the requests this process is applying right now.

    A duplicate arriving while the first is still running gets 409 at once instead of queueing
    behind it for the user's lock. The hashes come from :func:`idempotency_key_hash`, so a claim
    is per device: another device's request with the same key is not held up.
    """

    def __init__(self) -> None:
        self._held: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, user_id: int, key_hash: str | None) -> Iterator[None]:
        """Hold ``key_hash`` for the block; 409 if this process already holds it."""
        if key_hash is None:
            yield
            return
        claim = (user_id, key_hash)
        with self._lock:
            if claim in self._held:
                raise _in_flight()
            self._held.add(claim)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(claim)


def _in_flight() -> IdempotencyConflict:
    return IdempotencyConflict(
        "a request with this Idempotency-Key is still in flight; retry shortly",
        headers={"Retry-After": "1"},
    )


def ingest_request(
    db: Database,
    principal: Principal,
    raw: bytes,
    *,
    request_id: str,
    idempotency_key: str | None,
    settings: Settings,
    registry: SourceRegistry,
    now: datetime | None = None,
    claims: KeyClaims | None = None,
) -> IngestReply:
    """Validate and apply one ingest body for a device token; return the response body.

    The token is checked again inside the write transaction (a revoked one gets 401 and nothing
    is written), so the caller may take ``principal`` from a cache.
    """
    if principal.kind != "device" or principal.device_id is None:
        raise Forbidden("a read token cannot upload; use a device token")
    check_idempotency_key(idempotency_key)
    now = now or datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    writes = parse_ingest(raw, settings=settings, registry=registry, now=now)
    body_hash = _sha256(raw)
    user_id, device_id = principal.user_id, principal.device_id
    # The device-scoped hash, and the bare key's for receipts of an earlier version.
    hashes = (
        (idempotency_key_hash(device_id, idempotency_key), _sha256(idempotency_key.encode()))
        if idempotency_key
        else None
    )
    key_hash = hashes[0] if hashes is not None else None

    def apply(conn: Connection) -> IngestReply:
        # Under the user's lock: the token is still live, and its user's time zone is current.
        zone = live_time_zone(conn, principal.token_id)
        if zone is None:
            raise Unauthenticated(
                "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        if hashes is not None:
            stored = _look_up_key(
                conn, user_id, device_id, hashes, body_hash, request_id, settings, now_ms
            )
            if stored is not None:
                return stored
        outcome = apply_batch(
            conn,
            user_id=user_id,
            device_id=device_id,
            tz=ZoneInfo(zone),
            writes=writes,
            origin=request_id,
            now_ms=now_ms,
        )
        touch_device(conn, user_id, device_id, now_ms)
        body = {"request_id": request_id, **outcome.as_dict()}
        _write_receipt(
            conn, user_id, device_id, key_hash, body_hash, request_id, body, len(writes), now_ms
        )
        return IngestReply(body=body)

    with claims.hold(user_id, key_hash) if claims is not None else nullcontext():
        return db.write(apply, user_id=user_id)


def _look_up_key(
    conn: Connection,
    user_id: int,
    device_id: int,
    hashes: tuple[str, str],
    body_hash: str,
    request_id: str,
    settings: Settings,
    now_ms: int,
) -> IngestReply | None:
    """The stored reply for a used key, an error, or None when the key is free (again).

    ``hashes`` is the device-scoped hash and the bare key's: a receipt written before keys were
    scoped per device holds the latter, and still counts for the device that wrote it (so a
    retry across an upgrade replays, and an old claim still answers 409), never for another.
    """
    scoped, legacy = hashes
    found = conn.execute(_KEY_RECEIPT, {"user_id": user_id, "hashes": [scoped, legacy]}).mappings()
    row = None
    for candidate in found:
        if candidate["idempotency_key_hash"] == scoped:
            row = candidate
            break
        if int(candidate["device_id"]) == device_id:
            row = candidate
    if row is None:
        return None
    if row["request_id"] == request_id and row["state"] == "done":
        # Our own receipt: Database.write ran us again after a COMMIT whose answer was lost.
        return IngestReply(body=orjson.loads(row["response"]))
    age_ms = now_ms - int(row["created_at_ms"])
    expired = (
        age_ms > settings.idempotency_ttl_seconds * 1000
        if row["state"] == "done"
        else age_ms > settings.idempotency_in_flight_seconds * 1000
    )
    if not expired:
        if row["body_sha256"] != body_hash:
            raise ValidationFailed(
                "this Idempotency-Key was already used with a different body; "
                "use a new key for a new batch",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            )
        if row["state"] == "in_flight":
            # A claim left by the earlier two-transaction protocol (a server being upgraded).
            # A crashed one expires after idempotency_in_flight_seconds.
            raise _in_flight()
        return IngestReply(body=orjson.loads(row["response"]), replayed=True)
    # Expired: the old receipt stays for audit, the key is free again.
    conn.execute(
        update(ingest_receipts)
        .where(
            ingest_receipts.c.user_id == user_id,
            ingest_receipts.c.request_id == row["request_id"],
        )
        .values(idempotency_key_hash=None)
    )
    return None


def _write_receipt(
    conn: Connection,
    user_id: int,
    device_id: int,
    key_hash: str | None,
    body_hash: str,
    request_id: str,
    body: dict[str, Any],
    bucket_count: int,
    now_ms: int,
) -> None:
    row = {
        "user_id": user_id,
        "request_id": request_id,
        "device_id": device_id,
        "idempotency_key_hash": key_hash,
        "body_sha256": body_hash,
        "created_at_ms": now_ms,
        "state": "done",
        "response": orjson.dumps(body).decode(),
        "bucket_count": bucket_count,
        "completed_at_ms": int(time.time() * 1000),
    }
    # An upsert: when a COMMIT's answer is lost, Database.write runs this again with the
    # same request id, and the row may already be there.
    upsert(conn, ingest_receipts, [row], ("user_id", "request_id"), _RECEIPT_DONE)


#: What a rerun of the same request overwrites in its receipt.
_RECEIPT_DONE = ("state", "response", "bucket_count", "completed_at_ms")


_KEY_RECEIPT = select(ingest_receipts).where(
    ingest_receipts.c.user_id == bindparam("user_id"),
    ingest_receipts.c.idempotency_key_hash.in_(bindparam("hashes", expanding=True)),
)
