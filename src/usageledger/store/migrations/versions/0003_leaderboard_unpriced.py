"""leaderboard unpriced models and tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leaderboard_unpriced",
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "period IN ('week', 'month', 'all')", name=op.f("ck_leaderboard_unpriced_period")
        ),
        sa.PrimaryKeyConstraint("period", "user_id", "model", name=op.f("pk_leaderboard_unpriced")),
    )
    op.add_column(
        "leaderboard_snapshots",
        sa.Column("unpriced_tokens", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
