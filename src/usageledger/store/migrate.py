"""Run the Alembic tree programmatically (``usageledger db upgrade``).

Alembic is imported only when a migration runs: opening a database that is already at the
newest revision (every quick CLI command does) reads ``alembic_version`` and the revision ids
of the packaged files, which costs a few milliseconds instead of Alembic's import. SQLAlchemy
too loads only inside the functions that take an engine, so :func:`head_revision` serves the
tracker, which opens its ledger with the standard ``sqlite3``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
_ASSIGNMENT = re.compile(r"""^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$""", re.M)


def alembic_config(url: str = "sqlite://") -> Config:
    """An Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    from alembic import command

    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds {len(rows)} heads; the tree must be linear")
    return str(rows[0]) if rows else None


def _literal(value: str) -> str | None:
    if value == "None":
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    raise ValueError(f"not a plain string literal: {value}")


@cache
def head_revision() -> str:
    """The newest revision of the tree, read from the migration files' ``revision`` lines.

    The tree is linear (the migration lint, ``scripts/migration_lint.py``, refuses a merge), so
    the head is the one revision no other names as its ``down_revision``.
    ``tests/store/test_migrations.py`` checks the answer equals Alembic's own
    ``ScriptDirectory.get_current_head()``.
    """
    revisions: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        revision = _literal(found["revision"])
        if revision is None:
            raise ValueError(f"{path.name}: revision is None")
        revisions[revision] = _literal(found.get("down_revision", "None"))
    heads = set(revisions) - {down for down in revisions.values() if down is not None}
    if len(heads) != 1:
        raise RuntimeError(f"the migration tree has {len(heads)} heads: {sorted(heads)}")
    return heads.pop()
