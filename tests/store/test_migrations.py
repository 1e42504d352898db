"""The Alembic tree migrates an empty database on both engines with no drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from usageledger.buckets import BUCKET_KEY
from usageledger.store.migrate import current_revision, head_revision, upgrade
from usageledger.store.tables import (
    PER_USER_TABLES,
    bucket_revisions,
    metadata,
    usage_buckets,
)


def test_the_migrated_schema_matches_the_table_metadata(engine: Engine) -> None:
    """After `db upgrade` autogenerate finds nothing to change."""
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrading_twice_is_harmless(engine: Engine) -> None:
    """Running the migrations again changes nothing."""
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_every_per_user_table_leads_its_primary_key_with_user_id(engine: Engine) -> None:
    """The Citus distribution column comes first in every per-user primary key."""
    inspector = inspect(engine)
    for table in PER_USER_TABLES:
        pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert pk[0] == "user_id", table.name


def test_the_bucket_key_is_declared_once(engine: Engine) -> None:
    """Both bucket tables' primary keys derive from BUCKET_KEY."""
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("usage_buckets")["constrained_columns"] == list(BUCKET_KEY)
    assert inspector.get_pk_constraint("bucket_revisions")["constrained_columns"] == [
        *BUCKET_KEY,
        "revision",
    ]
    assert [c.name for c in usage_buckets.primary_key] == list(BUCKET_KEY)
    assert [c.name for c in bucket_revisions.primary_key] == [*BUCKET_KEY, "revision"]


def test_counts_are_64_bit(engine: Engine) -> None:
    """Token counts are BIGINT on both engines."""
    columns = {c["name"]: c for c in inspect(engine).get_columns("usage_buckets")}
    for name in ("input_tokens", "total_tokens", "cache_write_tokens"):
        assert "BIGINT" in str(columns[name]["type"]).upper()


@pytest.mark.parametrize("name", ["fresh.db"])
def test_an_empty_sqlite_file_migrates_from_nothing(tmp_path: Path, name: str) -> None:
    """A brand-new SQLite file reaches head."""
    from usageledger.store.engine import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / name}")
    assert current_revision(eng) is None
    upgrade(eng)
    assert current_revision(eng) == head_revision()
    eng.dispose()


def test_head_revision_without_alembic_equals_alembics_own_head() -> None:
    """The quick head lookup (no Alembic import) agrees with Alembic's ScriptDirectory."""
    from alembic.script import ScriptDirectory

    from usageledger.store.migrate import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_current_revision_reads_the_version_table_like_alembic(engine: Engine) -> None:
    """Our reading of alembic_version equals Alembic's MigrationContext on both engines."""
    with engine.connect() as conn:
        theirs = MigrationContext.configure(conn).get_current_revision()
    assert current_revision(engine) == theirs == head_revision()


def test_opening_a_current_ledger_does_not_import_alembic(tmp_path: Path) -> None:
    """A quick command on a migrated ledger skips Alembic's import (a fresh interpreter)."""
    import subprocess
    import sys

    from usageledger.store.engine import make_engine

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    probe = (
        "import sys\n"
        "from usageledger.store.engine import make_engine\n"
        "from usageledger.store.migrate import current_revision, head_revision\n"
        f"assert current_revision(make_engine({url!r})) == head_revision()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
