"""Table metadata of the server ledger (SQLAlchemy Core).

Times are integers: ``bucket_start`` in epoch seconds (UTC, on a half-hour), other instants in
epoch milliseconds; days are dates. Integers keep both dialects identical and make the local-day
arithmetic of rollups portable.

Every table has a place in a Citus cluster, declared once at the end of this module
(:data:`DISTRIBUTED_TABLES`, :data:`REFERENCE_TABLES`; docs/scaling.md): the per-user tables are
distributed by ``user_id`` and co-located, so every primary key and unique constraint of theirs
includes ``user_id`` and starts with it; the small global tables are reference tables, copied to
every node. The migration lint (``scripts/migration_lint.py``) checks the declaration against the
migrated schema.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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
    # The fold of display_name (confusables.py): names that look alike share it, and
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
    # The one-hour cache-write rate and the rate tiers, as the price file's JSON; '' = none
    # (migration 0008).
    Column("billing", Text, nullable=False, server_default=""),
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


def _plan_columns() -> list[Column[object]]:
    """The columns of a backfill plan (both tables of plans have the same)."""
    return [
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
    ]


#: Backfill plans (ops/backfill.py), one user's each: the key is ``(user_id, plan_id)`` and
#: nothing else is unique, so the table can be distributed by ``user_id`` (migration 0005; the
#: plan id is a random UUID, and every statement names the plan's user).
backfill_plans = Table(
    "backfill_plans_v2",
    metadata,
    *_plan_columns(),
    PrimaryKeyConstraint("user_id", "plan_id"),
    CheckConstraint("state IN ('planned', 'applied', 'rolled_back')", name="state"),
)

#: The plans table of revisions 0002-0004, frozen by 0005 (which copied its rows into
#: ``backfill_plans_v2``): read and written by nobody. Its ``UNIQUE (plan_id)`` without
#: ``user_id`` is why it could not be distributed; it is a reference table until a later
#: revision drops it with a replay plan (docs/schema-evolution.md).
backfill_plans_0002 = Table(
    "backfill_plans",
    metadata,
    *_plan_columns(),
    PrimaryKeyConstraint("user_id", "plan_id"),
    UniqueConstraint("plan_id"),
    CheckConstraint("state IN ('planned', 'applied', 'rolled_back')", name="state"),
)

#: One row per user that has written under the per-user lock (migration 0005): the write
#: transaction locks it with ``SELECT ... FOR UPDATE`` (store/dialect.py ``lock_user``). A row
#: lock lives in the user's own shard, so it serialises writers that enter a Citus cluster
#: through different nodes, which a node-local advisory lock does not.
user_locks = Table(
    "user_locks",
    metadata,
    Column("user_id", BigInteger, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("user_id"),
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
    # The cost the log itself recorded, in pico-dollars; NULL = none (migration 0007). Local
    # only: buckets and push do not carry it.
    Column("logged_cost_picousd", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "source", "event_key"),
    Index(None, "user_id", "bucket_start"),
    Index(None, "user_id", "session_id"),  # the status line's session cost (migration 0006)
    # Only the events with a logged cost (migration 0007): ``report --cost auto|logged``.
    Index(
        "ix_usage_events_user_id_bucket_start_logged",
        "user_id",
        "bucket_start",
        sqlite_where=text("logged_cost_picousd IS NOT NULL"),
        postgresql_where=text("logged_cost_picousd IS NOT NULL"),
    ),
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

#: The vendors' own rate-limit windows as the assistants recorded them (``usageledger
#: limits``): append-only, one row per source, window and observation time. Local only.
limit_observations = Table(
    "limit_observations",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("source", String(32), nullable=False),
    Column("window_name", String(64), nullable=False),
    Column("observed_ms", BigInteger, nullable=False),
    Column("used_percent", Float, nullable=False),
    Column("window_minutes", Integer, nullable=True),
    Column("resets_at_ms", BigInteger, nullable=True),
    Column("limit_id", String(64), nullable=True),
    PrimaryKeyConstraint("user_id", "source", "window_name", "observed_ms"),
)

push_acks = Table(
    "push_acks",
    metadata,
    *_key_columns(),
    Column("acked_revision", BigInteger, nullable=False),
    Column("acked_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint(*BUCKET_KEY),
)

#: The distribution column of every distributed table (Citus), and the table the others are
#: co-located with: the biggest, so a rebalance moves every table's shard of a user with it.
DISTRIBUTION_COLUMN = "user_id"
COLOCATION_ANCHOR = "usage_buckets"

#: The Citus placement of every table, by SQL name: the one declaration that
#: ``usageledger db distribute`` follows and the migration lint (``scripts/migration_lint.py``)
#: checks (docs/scaling.md).
#: Distributed by ``user_id``, co-located with :data:`COLOCATION_ANCHOR`: rows of one user,
#: read and written by that user's requests and jobs, which grow with the users.
DISTRIBUTED_TABLES: tuple[str, ...] = (
    "usage_buckets",
    "bucket_revisions",
    "usage_daily",
    "ingest_receipts",
    "devices",
    "user_locks",
    "backfill_plans_v2",
    "usage_events",
    "scan_files",
    "push_acks",
    "limit_observations",
)
#: Reference tables, copied whole to every node: small, global, looked up without a user
#: (a token by its hash, a user by name, prices by model), or rebuilt whole by one job (the
#: leaderboard). Listed so that a table comes after the tables its foreign keys name.
REFERENCE_TABLES: tuple[str, ...] = (
    "users",
    "api_tokens",
    "model_prices",
    "leaderboard_snapshots",
    "leaderboard_unpriced",
    "backfill_plans",
)

#: Tables whose rows belong to one user (each primary key starts with ``user_id``).
PER_USER_TABLES = tuple(metadata.tables[name] for name in DISTRIBUTED_TABLES)
