"""usage_events.logged_cost_picousd: the cost a log recorded itself

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00.000000

Additive only: one nullable column and a partial index.

* ``usage_events.logged_cost_picousd``: the cost in USD that the assistant wrote into its own
  log for this request (Claude Code's ``costUSD``, pi's and OpenClaw's ``usage.cost.total``),
  held exactly as an integer number of pico-dollars (1e-12 USD), parsed from the JSON text
  without a float. NULL means the log recorded no cost (or one that could not be read).
  ``report --cost logged|auto`` reads it; the local ledger's only: half-hour buckets and
  ``push`` do not carry it. See docs/pricing.md.
* ``ix_usage_events_user_id_bucket_start_logged``: the events that have one, by half-hour
  (partial, ``WHERE logged_cost_picousd IS NOT NULL``): reports find them without a scan.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_events", sa.Column("logged_cost_picousd", sa.BigInteger(), nullable=True))
    # Partial: holds only the events with a logged cost, so a report over a history without
    # any (most) finds that out from an empty index instead of reading every event.
    op.create_index(
        "ix_usage_events_user_id_bucket_start_logged",
        "usage_events",
        ["user_id", "bucket_start"],
        unique=False,
        sqlite_where=sa.text("logged_cost_picousd IS NOT NULL"),
        postgresql_where=sa.text("logged_cost_picousd IS NOT NULL"),
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
