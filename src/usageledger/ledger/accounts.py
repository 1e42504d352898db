"""Users, devices and API tokens.

A token's secret is shown once and stored only as its SHA-256. Secrets carry a prefix
(``ul_dev_`` or ``ul_read_``) so that secret scanners can find a leaked one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from usageledger.config import check_time_zone
from usageledger.errors import NotFound, ValidationFailed
from usageledger.store.tables import api_tokens, devices, users

TOKEN_PREFIXES = {"device": "ul_dev_", "read": "ul_read_"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the user and, for a device token, the device."""

    token_id: int
    user_id: int
    device_id: int | None
    kind: str
    time_zone: str


def hash_secret(secret: str) -> str:
    """The stored form of a token secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_name(what: str, name: str) -> None:
    if not NAME.match(name):
        raise ValidationFailed(
            f"invalid {what} name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit"
        )


def create_user(conn: Connection, name: str, *, time_zone: str, now_ms: int) -> int:
    """Create a user and return its id; a taken name is an error."""
    _check_name("user", name)
    try:
        check_time_zone(time_zone)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    if find_user(conn, name) is not None:
        raise ValidationFailed(f"user {name!r} already exists")
    result = conn.execute(
        insert(users).values(name=name, time_zone=time_zone, created_at_ms=now_ms)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def find_user(conn: Connection, name: str) -> dict[str, Any] | None:
    """The user row by name, or None."""
    row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    return dict(row) if row else None


def require_user(conn: Connection, name: str) -> dict[str, Any]:
    """The user row by name; :class:`NotFound` when there is none."""
    row = find_user(conn, name)
    if row is None:
        raise NotFound(f"no user named {name!r}; create one with `usageledger users create`")
    return row


def list_users(conn: Connection) -> list[dict[str, Any]]:
    """Every user, by name."""
    return [dict(r) for r in conn.execute(select(users).order_by(users.c.name)).mappings()]


def ensure_device(conn: Connection, user_id: int, name: str, *, now_ms: int) -> int:
    """The id of the user's device called ``name``, created on first use.

    Reusing the device by name means a reinstall continues the same history instead of
    starting a second copy of it.
    """
    _check_name("device", name)
    existing = conn.execute(
        select(devices.c.device_id).where(devices.c.user_id == user_id, devices.c.name == name)
    ).scalar()
    if existing is not None:
        return int(existing)
    next_id = conn.execute(
        select(func.coalesce(func.max(devices.c.device_id), 0) + 1).where(
            devices.c.user_id == user_id
        )
    ).scalar_one()
    conn.execute(
        insert(devices).values(
            user_id=user_id, device_id=int(next_id), name=name, created_at_ms=now_ms
        )
    )
    return int(next_id)


def issue_token(
    conn: Connection,
    user_name: str,
    *,
    kind: str,
    device_name: str | None,
    now_ms: int,
) -> tuple[str, int]:
    """Issue a token; return ``(secret, token_id)``. The secret is never stored."""
    if kind not in TOKEN_PREFIXES:
        raise ValidationFailed(f"unknown token kind {kind!r}; use device or read")
    user = require_user(conn, user_name)
    device_id: int | None = None
    if kind == "device":
        if not device_name:
            raise ValidationFailed("a device token needs --device NAME")
        device_id = ensure_device(conn, user["user_id"], device_name, now_ms=now_ms)
    elif device_name:
        raise ValidationFailed("a read token belongs to the user, not to a device")
    secret = TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)
    result = conn.execute(
        insert(api_tokens).values(
            token_hash=hash_secret(secret),
            display_prefix=secret[: len(TOKEN_PREFIXES[kind]) + 4],
            kind=kind,
            user_id=user["user_id"],
            device_id=device_id,
            created_at_ms=now_ms,
        )
    )
    return secret, int(result.inserted_primary_key[0])  # type: ignore[index]


def list_tokens(conn: Connection, user_name: str | None = None) -> list[dict[str, Any]]:
    """Tokens with their user and device names (never a secret or a hash)."""
    query = (
        select(
            api_tokens.c.token_id,
            api_tokens.c.display_prefix,
            api_tokens.c.kind,
            users.c.name.label("user"),
            devices.c.name.label("device"),
            api_tokens.c.created_at_ms,
            api_tokens.c.revoked_at_ms,
        )
        .join(users, users.c.user_id == api_tokens.c.user_id)
        .outerjoin(
            devices,
            (devices.c.user_id == api_tokens.c.user_id)
            & (devices.c.device_id == api_tokens.c.device_id),
        )
        .order_by(api_tokens.c.token_id)
    )
    if user_name is not None:
        query = query.where(users.c.name == user_name)
    return [dict(r) for r in conn.execute(query).mappings()]


def revoke_token(conn: Connection, token_id: int, *, now_ms: int) -> None:
    """Revoke a token at once; revoking twice keeps the first time."""
    row = conn.execute(
        select(api_tokens.c.revoked_at_ms).where(api_tokens.c.token_id == token_id)
    ).first()
    if row is None:
        raise NotFound(f"no token with id {token_id}; see `usageledger tokens list`")
    if row[0] is None:
        conn.execute(
            update(api_tokens).where(api_tokens.c.token_id == token_id).values(revoked_at_ms=now_ms)
        )


def authenticate(conn: Connection, secret: str) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one."""
    return authenticate_digest(conn, hash_secret(secret))


def authenticate_digest(conn: Connection, digest: str) -> Principal | None:
    """:func:`authenticate` by the stored form of the secret (:func:`hash_secret`)."""
    row = conn.execute(
        select(
            api_tokens.c.token_id,
            api_tokens.c.user_id,
            api_tokens.c.device_id,
            api_tokens.c.kind,
            users.c.time_zone,
        )
        .join(users, users.c.user_id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at_ms.is_(None))
    ).first()
    if row is None:
        return None
    return Principal(
        token_id=int(row.token_id),
        user_id=int(row.user_id),
        device_id=None if row.device_id is None else int(row.device_id),
        kind=str(row.kind),
        time_zone=str(row.time_zone),
    )


def live_time_zone(conn: Connection, token_id: int) -> str | None:
    """The time zone of a live token's user, or None when the token is revoked or gone.

    Ingest calls it inside its write transaction: the token is checked again under the user's
    lock, and the time zone read there cannot race a change of it.
    """
    name = conn.execute(_LIVE_TIME_ZONE, {"token_id": token_id}).scalar()
    return None if name is None else str(name)


# Built once: it runs on every upload, and building a statement costs more than running it.
_LIVE_TIME_ZONE = (
    select(users.c.time_zone)
    .join(api_tokens, api_tokens.c.user_id == users.c.user_id)
    .where(api_tokens.c.token_id == bindparam("token_id"), api_tokens.c.revoked_at_ms.is_(None))
)
