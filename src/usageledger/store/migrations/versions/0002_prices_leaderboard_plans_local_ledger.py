"""prices leaderboard plans local ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 06:25:55.266971
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "backfill_plans",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("range_start", sa.BigInteger(), nullable=False),
        sa.Column("range_end", sa.BigInteger(), nullable=False),
        sa.Column("affected_keys", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("checksum_before", sa.String(length=64), nullable=False),
        sa.Column("checksum_expected_after", sa.String(length=64), nullable=False),
        sa.Column("checksum_after", sa.String(length=64), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("applied_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("rolled_back_at_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "state IN ('planned', 'applied', 'rolled_back')", name=op.f("ck_backfill_plans_state")
        ),
        sa.PrimaryKeyConstraint("user_id", "plan_id", name=op.f("pk_backfill_plans")),
        sa.UniqueConstraint("plan_id", name=op.f("uq_backfill_plans_plan_id")),
    )
    op.create_table(
        "leaderboard_snapshots",
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.String(length=40), nullable=False),
        sa.Column("built_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "period IN ('week', 'month', 'all')", name=op.f("ck_leaderboard_snapshots_period")
        ),
        sa.PrimaryKeyConstraint("period", "rank", name=op.f("pk_leaderboard_snapshots")),
    )
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("input", sa.String(length=40), nullable=False),
        sa.Column("cached_input", sa.String(length=40), nullable=False),
        sa.Column("cache_write", sa.String(length=40), nullable=False),
        sa.Column("output", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("taken", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("loaded_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", "effective_from", name=op.f("pk_model_prices")),
    )
    op.create_table(
        "push_acks",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("acked_revision", sa.BigInteger(), nullable=False),
        sa.Column("acked_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "device_id", "source", "model", "bucket_start", name=op.f("pk_push_acks")
        ),
    )
    op.create_table(
        "scan_files",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("head_sha256", sa.String(length=64), nullable=False),
        sa.Column("parser_state", sa.Text(), server_default="{}", nullable=False),
        sa.Column("problems", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_scanned_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "path", name=op.f("pk_scan_files")),
    )
    op.create_table(
        "usage_events",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("event_ms", sa.BigInteger(), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("project", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "source", "event_key", name=op.f("pk_usage_events")),
    )
    op.create_index(
        op.f("ix_usage_events_user_id_bucket_start"),
        "usage_events",
        ["user_id", "bucket_start"],
        unique=False,
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
