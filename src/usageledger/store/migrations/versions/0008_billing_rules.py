"""schema v3 counts and price tiers: one-hour cache writes, long-context and fast requests,
web searches

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:00:00.000000

Additive only: new columns, each NOT NULL with the constant default ``0`` (or ``''``), so old
rows read as "none of these" and old code that never names them keeps working.

* The schema v3 counts on every table that stores counts (``usage_events``,
  ``usage_buckets``, ``bucket_revisions``, ``usage_daily``, ``leaderboard_snapshots``):
  ``cache_write_1h_tokens`` (the one-hour part of ``cache_write_tokens``) and the priced
  counts again for the requests over their model's long-context threshold
  (``long_context_*``), in fast mode or priority processing (``fast_*``) and both
  (``fast_long_context_*``): a sum of requests is priced exactly as the requests one by one;
  and ``web_search_requests``, the server-side web searches billed per 1,000. A v1 or v2 row
  has them all 0: every request standard, every cache write five-minute, no search.
* ``model_prices.billing``: a loaded price's one-hour cache-write and web-search rates and rate
  tiers, as the JSON of the price file's optional fields (``''`` for a price with four rates
  only).

See docs/pricing.md and docs/api.md (schema v3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The counts schema v3 adds, in the order of ``usageledger.buckets.COUNTS_V3`` (written out:
#: a migration must not change when the code does).
_PRICED = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
)
NEW_COUNTS = (
    "cache_write_1h_tokens",
    *(
        prefix + name
        for prefix in ("long_context_", "fast_", "fast_long_context_")
        for name in _PRICED
    ),
    "web_search_requests",
)
COUNT_TABLES = (
    "usage_events",
    "usage_buckets",
    "bucket_revisions",
    "usage_daily",
    "leaderboard_snapshots",
)


def upgrade() -> None:
    for table in COUNT_TABLES:
        for name in NEW_COUNTS:
            op.add_column(
                table, sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            )
    op.add_column(
        "model_prices", sa.Column("billing", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
