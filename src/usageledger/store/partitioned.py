"""The hash-partitioned layout: every distributed table ``PARTITION BY HASH (user_id)``.

Native PostgreSQL partitioning has the property Citus needs from this schema, on one machine:
a table split by ``user_id`` accepts only keys that include ``user_id``, and a statement that
names one user touches one partition, which is what lets Citus send it to one shard. The test
suite runs its ingest, read, replay and verify tests on this layout too, and EXPLAINs every
per-user statement to prove it reaches one partition (docs/scaling.md).

It is also a layout an operator may choose for one large PostgreSQL (smaller indexes and
``VACUUM`` per partition): ``usageledger db upgrade --hash-partitions N`` on an empty database.
The tables are made from the table metadata (which ``tests/store/test_migrations.py`` keeps
equal to the migrated schema) and the database is stamped at the newest revision; later
revisions then migrate it like any other (PostgreSQL carries ``ADD COLUMN`` and ``CREATE
INDEX`` to the partitions).
"""

from __future__ import annotations

from sqlalchemy import Engine, MetaData, inspect

from usageledger.store.tables import DISTRIBUTED_TABLES, DISTRIBUTION_COLUMN, metadata

#: The most partitions the option accepts: each is a table with its own indexes.
MAX_PARTITIONS = 256


class LayoutError(Exception):
    """The layout cannot be created here (not PostgreSQL, not empty, a bad count)."""


def partition_name(table: str, remainder: int) -> str:
    """The name of one hash partition of ``table``."""
    return f"{table}_p{remainder}"


def create_hash_partitioned(engine: Engine, partitions: int) -> None:
    """Create the newest schema on an empty PostgreSQL database, every distributed table
    split into ``partitions`` hash partitions by ``user_id``; stamp it at the head revision."""
    if engine.dialect.name != "postgresql":
        raise LayoutError("hash partitions are a PostgreSQL layout; this database is SQLite")
    if not 2 <= partitions <= MAX_PARTITIONS:
        raise LayoutError(f"--hash-partitions must be between 2 and {MAX_PARTITIONS}")
    with engine.connect() as conn:
        existing = inspect(conn).get_table_names()
    if existing:
        raise LayoutError(
            "hash partitions are chosen when the database is created: this one already has "
            f"tables ({', '.join(sorted(existing)[:3])}, …); use an empty database"
        )
    layout = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        copy = table.to_metadata(layout)
        if table.name in DISTRIBUTED_TABLES:
            copy.dialect_options["postgresql"]["partition_by"] = f"HASH ({DISTRIBUTION_COLUMN})"
    from alembic import command

    from usageledger.store.migrate import alembic_config

    with engine.begin() as conn:
        layout.create_all(conn)
        for name in DISTRIBUTED_TABLES:
            for remainder in range(partitions):
                conn.exec_driver_sql(
                    f"CREATE TABLE {partition_name(name, remainder)} PARTITION OF {name}"
                    f" FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder})"
                )
        config = alembic_config()
        config.attributes["connection"] = conn
        command.stamp(config, "head")


def partition_counts(engine: Engine) -> dict[str, int]:
    """The number of partitions of each partitioned table (empty on the plain layout)."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT parent.relname, count(*) FROM pg_inherits"
            " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
            " JOIN pg_partitioned_table pt ON pt.partrelid = parent.oid"
            " GROUP BY parent.relname"
        ).all()
    return {str(name): int(count) for name, count in rows}
