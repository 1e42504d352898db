"""The Citus placement: declared once, checked against the migrated schema, turned into calls.

No test here runs Citus (it is not installable on this machine); they check the rules Citus
enforces on the schema, the order of the calls, and the command around them.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bench.harness import libpq_url
from scripts.migration_lint import lint_migrations, placement_findings
from usageledger.cli.root import main
from usageledger.store.placement import (
    DECLARED,
    RULES,
    UNPLACED_TABLES,
    ForeignKey,
    Placement,
    TableShape,
    check_placement,
    distribution_calls,
    reflect_shapes,
    run_calls,
    schema_at,
)
from usageledger.store.tables import (
    COLOCATION_ANCHOR,
    DISTRIBUTED_TABLES,
    REFERENCE_TABLES,
    metadata,
)

#: The placement as the code declared it before revision 0005: its PER_USER_TABLES (then with
#: backfill_plans) distributed, the global tables reference tables.
BEFORE_0005 = Placement(
    distributed=(
        "usage_buckets",
        "devices",
        "bucket_revisions",
        "usage_daily",
        "ingest_receipts",
        "backfill_plans",
        "usage_events",
        "scan_files",
        "push_acks",
    ),
    reference=(
        "users",
        "api_tokens",
        "model_prices",
        "leaderboard_snapshots",
        "leaderboard_unpriced",
    ),
)


def test_the_schema_at_head_fits_the_declared_placement() -> None:
    """Every table is placed once, and Citus would accept each (the lint's placement check)."""
    assert placement_findings() == []
    shapes = schema_at()
    assert set(shapes) - UNPLACED_TABLES == set(DISTRIBUTED_TABLES) | set(REFERENCE_TABLES)
    assert set(DISTRIBUTED_TABLES).isdisjoint(REFERENCE_TABLES)


def test_every_table_of_the_metadata_is_placed() -> None:
    """The table metadata and the declaration name the same tables."""
    assert set(metadata.tables) == set(DISTRIBUTED_TABLES) | set(REFERENCE_TABLES)


@pytest.mark.parametrize("revision", ["0003", "0004"])
def test_the_placement_rule_catches_backfill_plans_as_it_was(revision: str) -> None:
    """At 0003 and 0004, UNIQUE (plan_id) without user_id is exactly what the rule reports."""
    problems = check_placement(schema_at(revision), BEFORE_0005)
    assert [(p.rule, p.table) for p in problems] == [
        ("unique-without-distribution-column", "backfill_plans")
    ]
    assert "uq_backfill_plans_plan_id: (plan_id)" in problems[0].message


def test_the_lint_report_fails_on_a_placement_problem() -> None:
    """A declaration that does not fit the schema fails the whole lint, naming the rule."""
    wrong = Placement(
        tuple(n for n in DISTRIBUTED_TABLES if n != "push_acks"),
        (*REFERENCE_TABLES, "no_such_table"),
    )
    report = lint_migrations(squawk=False, placement=wrong)
    assert not report.ok
    assert {f.rule for f in report.placement} == {
        "placement:unplaced-table",
        "placement:missing-table",
    }
    assert "placement (schema at head, store/tables.py): FAIL" in report.describe()


def shape(
    name: str,
    pk: tuple[str, ...],
    *,
    uniques: tuple[tuple[str, tuple[str, ...]], ...] = (),
    fks: tuple[ForeignKey, ...] = (),
    columns: tuple[str, ...] = (),
) -> TableShape:
    """A table shape for a rule's case."""
    return TableShape(name, frozenset({*pk, *columns}), pk, uniques, fks)


def test_each_placement_rule_has_a_case() -> None:
    """Every rule fires on a schema made to break it, and only there."""
    fk_dist = ForeignKey("fk_a_b", ("device_id",), "b", ("device_id",))
    fk_ref = ForeignKey("fk_r_a", ("user_id",), "a", ("user_id",))
    shapes = {
        "a": shape("a", ("user_id", "x"), uniques=(("uq_a_x", ("x",)),), fks=(fk_dist,)),
        "b": shape("b", ("device_id",)),
        "r": shape("r", ("id",), fks=(fk_ref,), columns=("user_id",)),
        "stray": shape("stray", ("id",)),
        "twice": shape("twice", ("user_id",)),
    }
    placement = Placement(("a", "b", "twice", "gone"), ("r", "twice"), anchor="a")
    found = {(p.rule, p.table) for p in check_placement(shapes, placement)}
    assert found == {
        ("unplaced-table", "stray"),
        ("missing-table", "gone"),
        ("placed-twice", "twice"),
        ("no-distribution-column", "b"),
        ("unique-without-distribution-column", "a"),
        ("unique-without-distribution-column", "b"),
        ("foreign-key-without-distribution-column", "a"),
        ("foreign-key-reference-to-distributed", "r"),
    }
    assert {rule for rule, _ in found} == set(RULES)


def test_a_foreign_key_that_pairs_user_id_between_distributed_tables_is_fine() -> None:
    """Distributed → distributed on (user_id, device_id), and distributed → reference, pass."""
    shapes = {
        "d": shape("d", ("user_id", "device_id")),
        "u": shape("u", ("user_id",)),
        "b": shape(
            "b",
            ("user_id", "device_id", "n"),
            fks=(
                ForeignKey("fk_b_d", ("user_id", "device_id"), "d", ("user_id", "device_id")),
                ForeignKey("fk_b_u", ("user_id",), "u", ("user_id",)),
            ),
        ),
    }
    assert check_placement(shapes, Placement(("b", "d"), ("u",), anchor="b")) == []


def test_the_calls_place_every_table_reference_tables_first_and_colocated() -> None:
    """Reference tables first, each after what its keys refer to; the anchor starts the
    colocation group and every other distributed table joins it."""
    shapes = schema_at()
    calls = distribution_calls(shapes)
    tables = [t for t, _ in calls]
    assert sorted(tables) == sorted(set(shapes) - UNPLACED_TABLES)
    kinds = ["reference" if "create_reference_table" in sql else "distributed" for _, sql in calls]
    assert kinds == sorted(kinds, key=lambda k: k != "reference")
    assert tables.index("users") < tables.index("api_tokens")
    first_distributed = kinds.index("distributed")
    assert tables[first_distributed] == COLOCATION_ANCHOR
    for table, sql in calls[first_distributed + 1 :]:
        assert sql == (
            f"SELECT create_distributed_table('{table}', 'user_id', "
            f"colocate_with => '{COLOCATION_ANCHOR}');"
        )


@pytest.fixture
def cli(db_url: str, tmp_path: object) -> CliRunner:
    """A runner whose environment points at the test database."""
    return CliRunner(
        env={
            "USAGELEDGER_DATABASE_URL": libpq_url(db_url),
            "USAGELEDGER_HOME": str(tmp_path),
            "USAGELEDGER_LOG_FILE": "off",
        }
    )


CALL = re.compile(
    r"^SELECT (create_reference_table\('(?P<ref>\w+)'\)|create_distributed_table\("
    r"'(?P<dist>\w+)', 'user_id', colocate_with => '(?P<group>\w+)'\));$"
)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_db_distribute_dry_run_places_every_table_of_the_database(
    cli: CliRunner, engine: Engine
) -> None:
    """The printed calls name every table of the migrated database once; the big per-user
    tables share one colocation group; no Citus is needed to print them."""
    result = cli.invoke(main, ["db", "distribute", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("SELECT")]
    matches = [CALL.match(line) for line in lines]
    assert all(matches), lines
    reference = [m["ref"] for m in matches if m and m["ref"]]
    distributed = {m["dist"]: m["group"] for m in matches if m and m["dist"]}
    on_disk = set(reflect_shapes(engine)) - UNPLACED_TABLES
    assert sorted([*reference, *distributed]) == sorted(on_disk)
    assert lines.index(next(x for x in lines if "create_distributed_table" in x)) == len(reference)
    assert distributed["usage_buckets"] == "none"
    for big in ("bucket_revisions", "usage_daily", "ingest_receipts", "user_locks", "devices"):
        assert distributed[big] == "usage_buckets", big
    assert {"users", "api_tokens", "model_prices"} <= set(reference)
    assert "no citus extension" in result.stderr


def test_db_distribute_without_citus_explains_and_exits_2(cli: CliRunner, db_url: str) -> None:
    """Without the citus extension (or on SQLite) nothing is run: one error line, status 2."""
    result = cli.invoke(main, ["db", "distribute"])
    assert result.exit_code == 2, result.output
    expected = "citus extension" if db_url.startswith("postgresql") else "PostgreSQL extension"
    assert expected in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_running_the_calls_skips_placed_tables_and_continues_after_a_failure(
    db_url: str, engine: Engine
) -> None:
    """Each call runs in order in its own transaction; a placed table is skipped, and a failure
    names its table and keeps the calls before it (stand-in functions record the calls)."""
    url = libpq_url(db_url)
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE IF NOT EXISTS placed_calls (n SERIAL, t TEXT, kind TEXT)")
        raw.execute("TRUNCATE placed_calls")
        raw.execute(
            "CREATE OR REPLACE FUNCTION create_reference_table(t TEXT) RETURNS void AS $$"
            " INSERT INTO placed_calls (t, kind) VALUES (t, 'reference') $$ LANGUAGE sql"
        )
        raw.execute(
            "CREATE OR REPLACE FUNCTION create_distributed_table(t TEXT, c TEXT,"
            " colocate_with TEXT) RETURNS void AS $$ BEGIN"
            " IF t = 'push_acks' THEN RAISE EXCEPTION 'cannot distribute %', t; END IF;"
            " INSERT INTO placed_calls (t, kind) VALUES (t, colocate_with); END $$"
            " LANGUAGE plpgsql"
        )
    try:
        calls = distribution_calls(reflect_shapes(engine))
        seen: list[str] = []
        from usageledger.store.placement import CallFailed

        with pytest.raises(CallFailed, match="placing push_acks failed: cannot distribute"):
            run_calls(engine, calls, placed={"users"}, echo=seen.append)
        with psycopg.connect(url) as raw:
            recorded = raw.execute("SELECT t, kind FROM placed_calls ORDER BY n").fetchall()
        expected = [t for t, _ in calls if t != "users"]
        assert [t for t, _ in recorded] == expected[: expected.index("push_acks")]
        assert all(kind == "usage_buckets" for t, kind in recorded if t in DISTRIBUTED_TABLES[1:])
        assert len(seen) == len(recorded) + 1
    finally:
        with psycopg.connect(url, autocommit=True) as raw:
            raw.execute("DROP TABLE IF EXISTS placed_calls")
            raw.execute("DROP FUNCTION IF EXISTS create_reference_table(TEXT)")
            raw.execute("DROP FUNCTION IF EXISTS create_distributed_table(TEXT, TEXT, TEXT)")


def test_the_declared_placement_is_the_default() -> None:
    """DECLARED is store/tables.py's declaration."""
    assert DECLARED.distributed == DISTRIBUTED_TABLES
    assert DECLARED.reference == REFERENCE_TABLES
