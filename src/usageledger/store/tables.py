"""Table metadata of the server ledger (SQLAlchemy Core).

Times are integers: ``bucket_start`` in epoch seconds (UTC, on a half-hour), other instants in
epoch milliseconds; days are dates. Integers keep both dialects identical and make the local-day
arithmetic of rollups portable. Every per-user table's primary key starts with ``user_id``
(the distribution column should the data move to Citus); ``api_tokens`` and ``model_prices``
are small global reference tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# An auto-incrementing 64-bit id; SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def _counts() -> list[Column[int]]:
    return [Column(name, BigInteger, nullable=False, server_default="0") for name in COUNT_COLUMNS]


def _key_columns() -> list[Column[object]]:
    types: dict[str, object] = {
        "user_id": BigInteger,
        "device_id": BigInteger,
        "source": String(32),
        "model": String(128),
        "bucket_start": BigInteger,
    }
    return [Column(name, types[name], nullable=False) for name in BUCKET_KEY]  # type: ignore[arg-type]


users = Table(
    "users",
    metadata,
    Column("user_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("display_name", String(64), nullable=True),
    Column("leaderboard_opt_in", Boolean, nullable=False, server_default="0"),
    Column("created_at_ms", BigInteger, nullable=False),
    # The fold of display_name (ledger/confusables.py): names that look alike share it, and
    # the unique index lets only one user hold it. NULL for no name, and for a name kept from
    # before the key whose fold another user held (migration 0004).
    Column("display_name_key", String(256), nullable=True),
    UniqueConstraint("name"),
    Index(None, "display_name_key", unique=True),
)

devices = Table(
    "devices",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_upload_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "device_id"),
    UniqueConstraint("user_id", "name"),
    ForeignKeyConstraint(["user_id"], ["users.user_id"]),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", AutoId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False),
    Column("display_prefix", String(24), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("device_id", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    UniqueConstraint("token_hash"),
    CheckConstraint("kind IN ('device', 'read')", name="kind"),
    CheckConstraint(
        "(kind = 'device' AND device_id IS NOT NULL) OR (kind = 'read' AND device_id IS NULL)",
        name="device_matches_kind",
    ),
    ForeignKeyConstraint(["user_id"], ["users.user_id"]),
    Index(None, "user_id"),
)

bucket_revisions = Table(
    "bucket_revisions",
    metadata,
    *_key_columns(),
    Column("revision", BigInteger, nullable=False),
    *_counts(),
    Column("received_at_ms", BigInteger, nullable=False),
    # The request (or backfill plan) that wrote this revision: the audit trail.
    Column("origin", String(64), nullable=False),
    PrimaryKeyConstraint(*BUCKET_KEY, "revision"),
)

usage_buckets = Table(
    "usage_buckets",
    metadata,
    *_key_columns(),
    Column("revision", BigInteger, nullable=False),
    *_counts(),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint(*BUCKET_KEY),
    # The hourly view and foreign-time-zone reads: one user's buckets in a time range.
    Index(None, "user_id", "bucket_start"),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("day", Date, nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("source", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    *_counts(),
    PrimaryKeyConstraint("user_id", "day", "device_id", "source", "model"),
)

ingest_receipts = Table(
    "ingest_receipts",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("request_id", String(36), nullable=False),
    Column("device_id", BigInteger, nullable=False),
    # SHA-256 of the Idempotency-Key (never the key itself) and of the body.
    Column("idempotency_key_hash", String(64), nullable=True),
    Column("body_sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("response", Text, nullable=True),
    Column("bucket_count", Integer, nullable=False, server_default="0"),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("completed_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "request_id"),
    UniqueConstraint("user_id", "idempotency_key_hash"),
    CheckConstraint("state IN ('in_flight', 'done')", name="state"),
    Index(None, "created_at_ms"),
)


# --- Revision 0002: prices, leaderboard snapshots, backfill plans, the local ledger ---

model_prices = Table(
    "model_prices",
    metadata,
    Column("model", String(128), nullable=False),
    Column("effective_from", Date, nullable=False),
    # Decimal text (USD per million tokens): exact on both dialects.
    Column("input", String(40), nullable=False),
    Column("cached_input", String(40), nullable=False),
    Column("cache_write", String(40), nullable=False),
    Column("output", String(40), nullable=False),
    Column("source", Text, nullable=False),
    Column("taken", Date, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("loaded_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("model", "effective_from"),
)

leaderboard_snapshots = Table(
    "leaderboard_snapshots",
    metadata,
    Column("period", String(8), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("period_start", Date, nullable=True),
    Column("period_end", Date, nullable=False),
    Column("user_id", BigInteger, nullable=False),  # internal only; never served
    Column("display_name", String(64), nullable=False),
    *_counts(),
    Column("cost_usd", String(40), nullable=False),
    Column("built_at_ms", BigInteger, nullable=False),
    # Tokens of the entry's models without a price (they count 0 in cost_usd); migration 0003.
    Column("unpriced_tokens", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("period", "rank"),
    CheckConstraint("period IN ('week', 'month', 'all')", name="period"),
)

leaderboard_unpriced = Table(
    "leaderboard_unpriced",
    metadata,
    # An entry's models without a price in a board's period: served to that user only.
    Column("period", String(8), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("model", String(128), nullable=False),
    PrimaryKeyConstraint("period", "user_id", "model"),
    CheckConstraint("period IN ('week', 'month', 'all')", name="period"),
)

backfill_plans = Table(
    "backfill_plans",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("plan_id", String(36), nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("range_start", BigInteger, nullable=False),
    Column("range_end", BigInteger, nullable=False),
    Column("affected_keys", Integer, nullable=False),
    Column("changes", Text, nullable=False),  # JSON: the bucket values to set
    Column("snapshot", Text, nullable=True),  # JSON: the values apply replaced
    Column("checksum_before", String(64), nullable=False),
    Column("checksum_expected_after", String(64), nullable=False),
    Column("checksum_after", String(64), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("applied_at_ms", BigInteger, nullable=True),
    Column("rolled_back_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "plan_id"),
    UniqueConstraint("plan_id"),
    CheckConstraint("state IN ('planned', 'applied', 'rolled_back')", name="state"),
)

# The local ledger (the tracker's embedded SQLite file) uses the same store with one user and
# one device, plus its own source of truth: one row per assistant event under its natural key.
usage_events = Table(
    "usage_events",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("source", String(32), nullable=False),
    Column("event_key", String(255), nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("model", String(128), nullable=False),
    Column("event_ms", BigInteger, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),
    Column("session_id", String(255), nullable=False),
    Column("project", Text, nullable=True),  # local only: never uploaded
    *_counts(),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "source", "event_key"),
    Index(None, "user_id", "bucket_start"),
)

scan_files = Table(
    "scan_files",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("path", String(1024), nullable=False),
    Column("source", String(32), nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("head_sha256", String(64), nullable=False),  # detects a file replaced in place
    Column("parser_state", Text, nullable=False, server_default="{}"),
    Column("problems", Integer, nullable=False, server_default="0"),
    Column("last_scanned_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "path"),
)

push_acks = Table(
    "push_acks",
    metadata,
    *_key_columns(),
    Column("acked_revision", BigInteger, nullable=False),
    Column("acked_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint(*BUCKET_KEY),
)

#: Tables whose rows belong to one user (each primary key starts with ``user_id``).
PER_USER_TABLES = (
    devices,
    bucket_revisions,
    usage_buckets,
    usage_daily,
    ingest_receipts,
    backfill_plans,
    usage_events,
    scan_files,
    push_acks,
)
