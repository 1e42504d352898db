"""Ingest requests end to end: validation, Idempotency-Key handling, receipts (DESIGN §4).

Every accepted request leaves one ``ingest_receipts`` row (audit, and the stored response
for an Idempotency-Key replay). With a key, a short first transaction claims it (state
``in_flight``), so a concurrent duplicate sees 409 instead of waiting; the batch and the
receipt's completion commit together. Neither the key nor the body is stored: only their
SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from usageledger.config import Settings
from usageledger.errors import ErrorCode, Forbidden, IdempotencyConflict, ValidationFailed
from usageledger.ledger.accounts import Principal
from usageledger.ledger.ingest import BucketWrite, apply_batch, touch_device
from usageledger.source_registry import SourceRegistry
from usageledger.store.dialect import insert_for
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


def check_idempotency_key(key: str | None) -> None:
    """Reject an empty, over-long or non-printable Idempotency-Key."""
    if key is None:
        return
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters"
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
) -> IngestReply:
    """Validate and apply one ingest body for a device token; return the response body."""
    if principal.kind != "device" or principal.device_id is None:
        raise Forbidden("a read token cannot upload; use a device token")
    check_idempotency_key(idempotency_key)
    now = now or datetime.now(UTC)
    buckets = parse_ingest(raw, settings=settings, registry=registry, now=now)
    now_ms = int(now.timestamp() * 1000)
    writes = [
        BucketWrite(
            source=b.source,
            model=b.model,
            bucket_start=b.bucket_start,
            revision=b.revision if b.revision is not None else now_ms,
            counts=b.counts,
        )
        for b in buckets
    ]
    body_hash = _sha256(raw)
    key_hash = _sha256(idempotency_key.encode("utf-8")) if idempotency_key else None
    user_id, device_id = principal.user_id, principal.device_id
    tz = ZoneInfo(principal.time_zone)

    if key_hash is not None:
        stored = db.write(
            lambda conn: _claim_key(
                conn, user_id, device_id, key_hash, body_hash, request_id, settings, now_ms
            ),
            user_id=user_id,
        )
        if stored is not None:
            return IngestReply(body=stored, replayed=True)

    def apply(conn: Connection) -> dict[str, Any]:
        # The user's time zone is read under the lock, so a concurrent change cannot race.
        outcome = apply_batch(
            conn,
            user_id=user_id,
            device_id=device_id,
            tz=_current_zone(conn, user_id, tz),
            writes=writes,
            origin=request_id,
            now_ms=now_ms,
        )
        touch_device(conn, user_id, device_id, now_ms)
        body = {"request_id": request_id, **outcome.as_dict()}
        _finish_receipt(
            conn, user_id, device_id, key_hash, body_hash, request_id, body, len(writes), now_ms
        )
        return body

    try:
        body = db.write(apply, user_id=user_id)
    except Exception:
        if key_hash is not None:
            _release_key(db, user_id, request_id)
        raise
    return IngestReply(body=body)


def _current_zone(conn: Connection, user_id: int, fallback: ZoneInfo) -> ZoneInfo:
    from usageledger.store.tables import users

    name = conn.execute(select(users.c.time_zone).where(users.c.user_id == user_id)).scalar()
    return ZoneInfo(name) if name else fallback


def _claim_key(
    conn: Connection,
    user_id: int,
    device_id: int,
    key_hash: str,
    body_hash: str,
    request_id: str,
    settings: Settings,
    now_ms: int,
) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(ingest_receipts).where(
                ingest_receipts.c.user_id == user_id,
                ingest_receipts.c.idempotency_key_hash == key_hash,
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
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
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in flight; retry shortly",
                    headers={"Retry-After": "1"},
                )
            stored: dict[str, Any] = orjson.loads(row["response"])
            return stored
        # Expired: the old receipt stays for audit, the key is free again.
        conn.execute(
            update(ingest_receipts)
            .where(
                ingest_receipts.c.user_id == user_id,
                ingest_receipts.c.request_id == row["request_id"],
            )
            .values(idempotency_key_hash=None)
        )
    conn.execute(
        insert(ingest_receipts).values(
            user_id=user_id,
            request_id=request_id,
            device_id=device_id,
            idempotency_key_hash=key_hash,
            body_sha256=body_hash,
            state="in_flight",
            created_at_ms=now_ms,
        )
    )
    return None


def _finish_receipt(
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
    values = {
        "state": "done",
        "response": orjson.dumps(body).decode(),
        "bucket_count": bucket_count,
        "completed_at_ms": int(time.time() * 1000),
    }
    if key_hash is not None:
        conn.execute(
            update(ingest_receipts)
            .where(
                ingest_receipts.c.user_id == user_id,
                ingest_receipts.c.request_id == request_id,
            )
            .values(**values)
        )
        return
    # An upsert: when a COMMIT's answer is lost, Database.write runs this again with the
    # same request id, and the row may already be there.
    stmt: Any = insert_for(conn, ingest_receipts).values(
        user_id=user_id,
        request_id=request_id,
        device_id=device_id,
        idempotency_key_hash=None,
        body_sha256=body_hash,
        created_at_ms=now_ms,
        **values,
    )
    conn.execute(stmt.on_conflict_do_update(index_elements=["user_id", "request_id"], set_=values))


def _release_key(db: Database, user_id: int, request_id: str) -> None:
    """Free a claimed key after a failed apply, so the client's retry is not refused."""
    # If this fails too, the stale claim expires after idempotency_in_flight_seconds.
    with contextlib.suppress(Exception):
        db.write(
            lambda conn: conn.execute(
                delete(ingest_receipts).where(
                    ingest_receipts.c.user_id == user_id,
                    ingest_receipts.c.request_id == request_id,
                    ingest_receipts.c.state == "in_flight",
                )
            ),
            user_id=user_id,
        )
