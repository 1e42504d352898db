"""limit_observations, and usage_events by session

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:00:00.000000

Additive only: a new table and a new index.

* ``limit_observations``: the vendors' own rate-limit windows as the assistants recorded them
  (Codex rollouts' ``token_count`` events, Claude Code's status-line input), one row per
  source, window and observation time. Append-only: a re-scan inserts nothing it already has.
  The local ledger's; ``push`` does not send them.
* ``ix_usage_events_user_id_session_id``: ``usageledger statusline`` prices one session after
  every message; without it that is a scan of every event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "limit_observations",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("window_name", sa.String(length=64), nullable=False),
        sa.Column("observed_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_percent", sa.Float(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=True),
        sa.Column("resets_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("limit_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint(
            "user_id", "source", "window_name", "observed_ms", name=op.f("pk_limit_observations")
        ),
    )
    op.create_index(
        op.f("ix_usage_events_user_id_session_id"),
        "usage_events",
        ["user_id", "session_id"],
        unique=False,
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
