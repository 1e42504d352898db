"""Citus-shaped: user_locks, and backfill plans keyed by user only

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:00.000000

Two new tables, both additive (docs/scaling.md says why each exists):

* ``user_locks``: one row per user, locked with ``SELECT ... FOR UPDATE`` by every write
  transaction of that user. It replaces a node-local advisory lock, which does not serialise
  writers that enter a Citus cluster through different nodes; a row lock in the user's shard
  does. Rows are created on a user's first locked write, so nothing is filled here.
* ``backfill_plans_v2``: ``backfill_plans`` without its ``UNIQUE (plan_id)``, which lacks the
  distribution column ``user_id`` (Citus refuses to distribute such a table). Dropping a
  constraint in place is not additive, so the plans are copied into a new table (an
  ``INSERT ... SELECT``, which changes no row anyone reads) and the code reads and writes
  only the new one from this revision on. The old table is frozen; a later revision drops it
  with a replay plan. A plan made by an older server after this revision ran lands in the
  frozen table: upgrade every server before making plans (backfill is an operator's job).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PLAN_COLUMNS = (
    "user_id, plan_id, device_id, reason, state, range_start, range_end, affected_keys, "
    "changes, snapshot, checksum_before, checksum_expected_after, checksum_after, "
    "created_at_ms, applied_at_ms, rolled_back_at_ms"
)


def upgrade() -> None:
    op.create_table(
        "user_locks",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_locks")),
    )
    op.create_table(
        "backfill_plans_v2",
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
            "state IN ('planned', 'applied', 'rolled_back')",
            name=op.f("ck_backfill_plans_v2_state"),
        ),
        sa.PrimaryKeyConstraint("user_id", "plan_id", name=op.f("pk_backfill_plans_v2")),
    )
    op.execute(
        f"INSERT INTO backfill_plans_v2 ({PLAN_COLUMNS}) SELECT {PLAN_COLUMNS} FROM backfill_plans"
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
