"""Where every table goes in a Citus cluster, the rules that make it possible, and the calls.

Citus (PostgreSQL sharded by tenant) places each table in one of two ways. A *distributed*
table is split into shards by a column, here ``user_id``; tables distributed by the same
column and co-located keep one user's rows of every table on the same node, so a per-user
statement goes to one node whole. A *reference* table is copied to every node. That works
only for a schema that obeys a few rules, which :func:`check_placement` checks (and the
migration lint, ``scripts/migration_lint.py``, runs on the migrated schema at head):

* every declared table exists and every table (but Alembic's own) is declared, once;
* a distributed table has the distribution column, and every primary key, unique constraint
  and unique index of it includes that column (a shard can only enforce uniqueness within
  itself);
* a foreign key between two distributed tables pairs the distribution column with itself;
* no foreign key runs from a reference table to a distributed one (a copy on every node
  cannot point into one shard).

The declaration itself is in ``store/tables.py`` (``DISTRIBUTED_TABLES``, ``REFERENCE_TABLES``);
docs/scaling.md says why each table is where it is. :func:`distribution_calls` turns it into
the ``create_reference_table`` / ``create_distributed_table`` calls that
``usageledger db distribute`` prints or runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect

from usageledger.store.tables import (
    COLOCATION_ANCHOR,
    DISTRIBUTED_TABLES,
    DISTRIBUTION_COLUMN,
    REFERENCE_TABLES,
)

#: Alembic's bookkeeping: it stays a local table on the Citus coordinator, where migrations run.
UNPLACED_TABLES = frozenset({"alembic_version"})


@dataclass(frozen=True, slots=True)
class Placement:
    """Which tables are distributed (by ``column``, co-located with ``anchor``) and which are
    reference tables."""

    distributed: tuple[str, ...]
    reference: tuple[str, ...]
    column: str = DISTRIBUTION_COLUMN
    anchor: str = COLOCATION_ANCHOR


#: The placement declared in store/tables.py.
DECLARED = Placement(DISTRIBUTED_TABLES, REFERENCE_TABLES)


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A foreign key: ``columns`` of its table refer to ``referred_columns`` of another."""

    name: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TableShape:
    """What placement depends on in one table: columns, keys, uniqueness, foreign keys."""

    name: str
    columns: frozenset[str]
    primary_key: tuple[str, ...]
    #: Unique constraints and unique indexes, by name.
    uniques: tuple[tuple[str, tuple[str, ...]], ...]
    foreign_keys: tuple[ForeignKey, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One way the schema does not fit the placement: the rule, why, and the table."""

    rule: str
    message: str
    table: str


#: The placement rules: name → what goes wrong on Citus.
RULES: dict[str, str] = {
    "unplaced-table": "the table is neither distributed nor a reference table: declare it in "
    "DISTRIBUTED_TABLES or REFERENCE_TABLES (store/tables.py)",
    "missing-table": "a declared table does not exist in the schema",
    "placed-twice": "a table is declared both distributed and reference",
    "no-distribution-column": "a distributed table lacks the distribution column",
    "unique-without-distribution-column": "a primary key or unique constraint of a "
    "distributed table lacks the distribution column: Citus refuses to distribute it",
    "foreign-key-without-distribution-column": "a foreign key between two distributed tables "
    "does not pair the distribution column with itself: Citus refuses it",
    "foreign-key-reference-to-distributed": "a reference table has a foreign key to a "
    "distributed table: Citus refuses it",
}


def reflect_shapes(bind: Engine | Connection) -> dict[str, TableShape]:
    """The shape of every table of a database (either dialect)."""
    inspector = inspect(bind)
    shapes = {}
    for name in inspector.get_table_names():
        uniques = [
            (str(u["name"]), tuple(u["column_names"]))
            for u in inspector.get_unique_constraints(name)
        ]
        uniques += [
            (str(i["name"]), tuple(c for c in i["column_names"] if c is not None))
            for i in inspector.get_indexes(name)
            if i["unique"]
        ]
        shapes[name] = TableShape(
            name=name,
            columns=frozenset(c["name"] for c in inspector.get_columns(name)),
            primary_key=tuple(inspector.get_pk_constraint(name)["constrained_columns"]),
            uniques=tuple(sorted(set(uniques))),
            foreign_keys=tuple(
                ForeignKey(
                    str(fk["name"]),
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
        )
    return shapes


def schema_at(revision: str = "head") -> dict[str, TableShape]:
    """The shapes of the tables after migrating an empty SQLite file to ``revision``."""
    from usageledger.store.engine import make_engine
    from usageledger.store.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="usageledger-placement-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'schema.db'}")
        try:
            upgrade(engine, revision)
            return reflect_shapes(engine)
        finally:
            engine.dispose()


def check_placement(
    shapes: Mapping[str, TableShape],
    placement: Placement = DECLARED,
    *,
    require_all: bool = True,
) -> list[Problem]:
    """Every way ``shapes`` breaks the placement rules (empty when Citus can take it).

    With ``require_all=False`` a table nobody declared is not a problem (a live database may
    hold an operator's own tables); a declared one that is missing still is.
    """
    problems: list[Problem] = []

    def problem(rule: str, table: str, detail: str) -> None:
        problems.append(Problem(rule, f"{RULES[rule]} ({detail})", table))

    distributed, reference = set(placement.distributed), set(placement.reference)
    column = placement.column
    for name in sorted(distributed & reference):
        problem("placed-twice", name, name)
    for name in [*placement.distributed, *placement.reference]:
        if name not in shapes:
            problem("missing-table", name, name)
    if require_all:
        for name in sorted(set(shapes) - distributed - reference - UNPLACED_TABLES):
            problem("unplaced-table", name, name)
    for name in placement.distributed:
        shape = shapes.get(name)
        if shape is None:
            continue
        if column not in shape.columns:
            problem("no-distribution-column", name, f"{name} has no column {column}")
        keys = [(f"primary key of {name}", shape.primary_key)] + [
            (u, cols) for u, cols in shape.uniques
        ]
        for what, cols in keys:
            if column not in cols:
                problem("unique-without-distribution-column", name, f"{what}: ({', '.join(cols)})")
    for name, shape in sorted(shapes.items()):
        for fk in shape.foreign_keys:
            detail = f"{fk.name}: {name} ({', '.join(fk.columns)}) -> {fk.referred_table}"
            if name in distributed and fk.referred_table in distributed:
                pairs = set(zip(fk.columns, fk.referred_columns, strict=True))
                if (column, column) not in pairs:
                    problem("foreign-key-without-distribution-column", name, detail)
            if name in reference and fk.referred_table in distributed:
                problem("foreign-key-reference-to-distributed", name, detail)
    return problems


def _in_dependency_order(names: Sequence[str], shapes: Mapping[str, TableShape]) -> list[str]:
    """``names`` with every table after the tables its foreign keys refer to (stable)."""
    ordered: list[str] = []
    pending = list(names)
    while pending:
        for name in pending:
            shape = shapes.get(name)
            needs = {fk.referred_table for fk in shape.foreign_keys} if shape else set()
            if not (needs & set(pending)) or needs == {name}:
                ordered.append(name)
                pending.remove(name)
                break
        else:  # a cycle: keep the declared order for the rest (Citus reports the problem)
            ordered += pending
            break
    return ordered


def distribution_calls(
    shapes: Mapping[str, TableShape], placement: Placement = DECLARED
) -> list[tuple[str, str]]:
    """``(table, SQL)`` of every Citus call that places the tables, in a valid order.

    Reference tables come first (a distributed table's foreign key may name one, and Citus
    wants the referred table placed first), each after the ones it refers to. Then the anchor
    is distributed in a colocation group of its own, and every other distributed table is
    co-located with it: one user's rows of every table share a node.
    """
    calls = [
        (name, f"SELECT create_reference_table('{name}');")
        for name in _in_dependency_order(placement.reference, shapes)
    ]
    rest = [n for n in placement.distributed if n != placement.anchor]
    ordered = [placement.anchor, *_in_dependency_order(rest, shapes)]
    for name in ordered:
        group = "none" if name == placement.anchor else placement.anchor
        calls.append(
            (
                name,
                f"SELECT create_distributed_table('{name}', '{placement.column}', "
                f"colocate_with => '{group}');",
            )
        )
    return calls


def citus_version(conn: Connection) -> str | None:
    """The installed citus extension's version, or None (PostgreSQL without it, or SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    found = conn.exec_driver_sql(
        "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
    ).scalar()
    return None if found is None else str(found)


def placed_tables(conn: Connection) -> set[str]:
    """The tables Citus has placed already (distributed or reference); needs the extension."""
    rows = conn.exec_driver_sql("SELECT logicalrelid::regclass::text FROM pg_dist_partition")
    return {str(r[0]).split(".")[-1].strip('"') for r in rows}


class CallFailed(Exception):
    """A Citus call failed; the message names the table and the database's reason."""


def run_calls(
    engine: Engine,
    calls: Iterable[tuple[str, str]],
    *,
    placed: set[str],
    echo: Callable[[str], object] = print,
) -> list[str]:
    """Run each call whose table is not placed yet, one transaction each; the tables placed.

    One transaction per table: ``create_distributed_table`` copies the table's rows into its
    shards, and a failure half-way leaves the tables before it placed, so running the command
    again continues where it stopped.
    """
    from sqlalchemy.exc import SQLAlchemyError

    done = []
    for table, sql in calls:
        if table in placed:
            continue
        echo(sql)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(sql)
        except SQLAlchemyError as exc:
            # An operator's command: Citus's own reason is what they need (no user data in it).
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise CallFailed(f"placing {table} failed: {reason}") from exc
        done.append(table)
    return done


def describe(problems: Iterable[Problem]) -> list[str]:
    """One line per problem, for a report."""
    return [f"placement:{p.rule}: {p.table}: {p.message}" for p in problems]
