"""users.display_name_key: display names unique by their confusable fold

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:00:00.000000

A new nullable column and a unique index on it, both additive. The keys of the names already
there are filled in Python, because the fold (Unicode TR39 confusables, casefolding, invisible
characters) cannot be written in SQL. The fill writes only the column this revision adds, so
no value anyone reads changes; it runs online only (offline rendering exists for the migration
linter, and store/migrate.py always migrates over a connection). Names are taken in user_id
order: the first user whose name has a fold holds it; a later user with a look-alike name, or
a name that looks like the leaderboard's "anonymous #<rank>", keeps the name with a NULL key,
which the leaderboard shows as unset until the user sets a name again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The width of the key (ledger/profile.py: DISPLAY_NAME_KEY_MAX).
KEY_MAX = 256


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("display_name_key", sa.String(length=KEY_MAX), nullable=True))
    op.create_index(op.f("ix_users_display_name_key"), "users", ["display_name_key"], unique=True)
    if not context.is_offline_mode():
        fill_keys(op.get_bind())


def fill_keys(conn: sa.Connection) -> None:
    """Give each existing display name its key, first holder by user_id (see above)."""
    from usageledger.confusables import fold, is_reserved

    users = sa.table(
        "users",
        sa.column("user_id", sa.BigInteger()),
        sa.column("display_name", sa.String()),
        sa.column("display_name_key", sa.String()),
    )
    rows = conn.execute(
        sa.select(users.c.user_id, users.c.display_name)
        .where(users.c.display_name.is_not(None))
        .order_by(users.c.user_id)
    ).all()
    held: set[str] = set()
    updates = []
    for user_id, name in rows:
        key = fold(name)
        if is_reserved(name) or key in held or not 1 <= len(key) <= KEY_MAX:
            continue
        held.add(key)
        updates.append({"uid": user_id, "key": key})
    if updates:
        conn.execute(
            sa.update(users)
            .where(users.c.user_id == sa.bindparam("uid"))
            .values(display_name_key=sa.bindparam("key")),
            updates,
        )


def downgrade() -> None:
    raise NotImplementedError("migrations are additive; restore from a backup instead")
