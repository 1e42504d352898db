"""The migration linter: real revisions are additive; a breaking one needs a replay plan.

Synthetic migrations live in a temporary directory added to Alembic's version locations,
never in the packaged ``versions/`` directory.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from scripts.migration_lint import (
    PLAN_HEADINGS,
    RULES,
    SQUAWK_EXCLUDED,
    LintError,
    LintReport,
    check_sql,
    lint_migrations,
    plan_path,
    render_config,
    run_squawk,
)
from usageledger.store.migrate import MIGRATIONS, alembic_config, head_revision

COMPLETE_PLAN = """\
# 9001: drop usage_buckets.model

## Scope
usage_buckets loses the model column; every row of every user.

## Replay
Write the new table from bucket_revisions, then rebuild usage_daily with `usageledger replay`.

## Rollback
Restore the snapshot taken before apply; the old column is kept until Verify passes.

## Verify
`usageledger verify` equals a fresh rebuild; row counts match the plan.
"""


def real_report() -> LintReport:
    """The lint report of the packaged migration tree (squawk included)."""
    return lint_migrations()


def write_migration(directory: Path, body: str, *, slug: str = "synthetic") -> Path:
    """Write a synthetic revision on top of the real head into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"9001_{slug}.py"
    path.write_text(
        textwrap.dedent(
            f'''\
            """{slug} (a synthetic test migration)"""

            import sqlalchemy as sa
            from alembic import op

            revision = "synthetic_9001"
            down_revision = "{head_revision()}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            '''
        )
        + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    "),
        encoding="utf-8",
    )
    return path


def lint_synthetic(directory: Path) -> LintReport:
    """Lint the real tree plus the synthetic revision in ``directory``."""
    return lint_migrations(render_config(directory))


BREAKING = """\
op.drop_column("usage_buckets", "model")
"""


def test_every_real_migration_is_additive() -> None:
    """Each packaged revision passes our rules and squawk without a replay plan."""
    report = real_report()
    assert report.ok, report.describe()
    assert all(not r.findings for r in report.revisions), report.describe()


def test_every_revision_of_the_tree_is_linted() -> None:
    """The report covers every revision, base first, up to the head."""
    scripts = ScriptDirectory.from_config(alembic_config()).walk_revisions()
    expected = [s.revision for s in reversed(list(scripts))]
    report = real_report()
    assert [r.revision for r in report.revisions] == expected
    assert expected[0] == "0001"
    assert expected[-1] == head_revision()


def test_each_revision_is_rendered_on_its_own() -> None:
    """A revision's SQL holds its own upgrade only (prev:rev), not its ancestors'."""
    report = real_report()
    initial, second = report["0001"], report["0002"]
    assert "CREATE TABLE usage_buckets" in initial.sql
    assert "CREATE TABLE push_acks" not in initial.sql
    assert "CREATE TABLE push_acks" in second.sql
    assert "CREATE TABLE usage_buckets" not in second.sql
    for revision in report.revisions:
        assert revision.sql.count("-- Running upgrade") == 1, revision.revision


def test_the_initial_migration_only_creates_tables_and_passes() -> None:
    """0001 is pure CREATE TABLE / CREATE INDEX, which is additive."""
    initial = real_report()["0001"]
    assert initial.ok
    assert not initial.findings
    assert initial.plan is None
    assert initial.sql.count("CREATE TABLE") >= 7


#: One or more statements per rule of ours, with the rule each must trigger.
BREAKING_STATEMENTS: list[tuple[str, str]] = [
    ("DROP TABLE usage_daily;", "drop-table"),
    ("DROP TABLE IF EXISTS public.usage_daily CASCADE;", "drop-table"),
    ("DROP INDEX ix_usage_buckets_user_id_bucket_start;", "drop-index"),
    ("DROP INDEX CONCURRENTLY IF EXISTS ix_a;", "drop-index"),
    ("DROP VIEW daily_view;", "drop-object"),
    ("ALTER TABLE usage_buckets DROP COLUMN model;", "drop-column"),
    ("ALTER TABLE ONLY usage_buckets DROP model;", "drop-column"),
    ('ALTER TABLE "usage_buckets" DROP COLUMN IF EXISTS "model";', "drop-column"),
    ("ALTER TABLE usage_buckets DROP CONSTRAINT pk_usage_buckets;", "drop-constraint"),
    ("ALTER TABLE usage_daily RENAME TO daily;", "rename-table"),
    ("ALTER TABLE usage_buckets RENAME source TO src;", "rename-column"),
    ("ALTER TABLE usage_buckets RENAME COLUMN source TO src;", "rename-column"),
    ("ALTER TABLE usage_buckets RENAME CONSTRAINT pk_usage_buckets TO pk;", "rename-constraint"),
    ("ALTER INDEX ix_usage_buckets_user_id_bucket_start RENAME TO ix;", "rename-index"),
    ("ALTER SEQUENCE users_user_id_seq RENAME TO s;", "rename-object"),
    ("ALTER TYPE kind DROP ATTRIBUTE x;", "drop-object"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1;", "replace-object"),
    ("ALTER TABLE usage_buckets ALTER COLUMN revision TYPE TEXT;", "change-column-type"),
    ("ALTER TABLE usage_buckets ALTER revision SET DATA TYPE NUMERIC;", "change-column-type"),
    ("ALTER TABLE usage_buckets ADD COLUMN region VARCHAR(16) NOT NULL;", "add-required-column"),
    ("ALTER TABLE usage_buckets ADD region TEXT NOT NULL;", "add-required-column"),
    ("ALTER TABLE t ADD COLUMN id BIGINT PRIMARY KEY;", "add-required-column"),
    ("ALTER TABLE usage_events ALTER COLUMN project SET NOT NULL;", "set-not-null"),
    ("ALTER TABLE usage_buckets ALTER COLUMN model DROP NOT NULL;", "drop-not-null"),
    ("ALTER TABLE usage_buckets ALTER COLUMN input_tokens DROP DEFAULT;", "drop-default"),
    ("UPDATE usage_buckets SET cache_write_tokens = 0;", "rewrite-data"),
    ("DELETE FROM bucket_revisions WHERE revision < 5;", "rewrite-data"),
    ("TRUNCATE usage_daily;", "rewrite-data"),
    (
        "WITH gone AS (DELETE FROM usage_daily RETURNING 1) SELECT count(*) FROM gone;",
        "rewrite-data",
    ),
]


@pytest.mark.parametrize(("sql", "rule"), BREAKING_STATEMENTS)
def test_our_rules_flag_a_non_additive_statement(sql: str, rule: str) -> None:
    """Each kind of breaking change is found by our own statement checker."""
    assert [f.rule for f in check_sql(sql)] == [rule]


def test_every_rule_of_ours_has_a_case() -> None:
    """No rule is declared without a statement above that triggers it."""
    assert {rule for _, rule in BREAKING_STATEMENTS} == set(RULES)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE usage_daily_v2 (user_id BIGINT NOT NULL, day DATE NOT NULL);",
        "CREATE INDEX ix_usage_daily_day ON usage_daily (day);",
        "CREATE UNIQUE INDEX ix_x ON t (a);",
        "ALTER TABLE usage_buckets ADD COLUMN region VARCHAR(16);",
        "ALTER TABLE usage_buckets ADD COLUMN region3 BIGINT DEFAULT '0' NOT NULL;",
        "ALTER TABLE usage_buckets ADD COLUMN n BIGINT GENERATED ALWAYS AS (1) STORED NOT NULL;",
        "ALTER TABLE t ADD CONSTRAINT ck_t_pos CHECK (a >= 0) NOT VALID;",
        "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0;",
        "ALTER TABLE t ADD COLUMN a INT, ADD COLUMN b TEXT DEFAULT 'x' NOT NULL;",
        "INSERT INTO model_prices (model) VALUES ('x');",
        "UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';",
        "INSERT INTO alembic_version (version_num) VALUES ('0001');",
        "COMMENT ON COLUMN t.a IS 'DROP TABLE t; ALTER TABLE t DROP COLUMN a';",
        "-- DROP TABLE usage_daily;\nSELECT 1;",
        "/* ALTER TABLE t RENAME TO u; */ SELECT $body$ DROP TABLE t; $body$;",
        'CREATE TABLE "drop" ("rename" TEXT);',
        "BEGIN; COMMIT;",
    ],
)
def test_additive_statements_pass_our_rules(sql: str) -> None:
    """New tables, columns, indexes and rows, comments and strings raise nothing."""
    assert check_sql(sql) == []


def test_each_action_of_an_alter_table_is_checked() -> None:
    """One ALTER TABLE with an additive and a breaking action is flagged for the breaking one."""
    sql = "ALTER TABLE t ADD COLUMN a INT, DROP COLUMN b, ALTER COLUMN c TYPE TEXT;"
    assert [f.rule for f in check_sql(sql)] == ["drop-column", "change-column-type"]


def test_squawk_flags_a_breaking_change() -> None:
    """squawk runs as a subprocess and its findings carry its rule name."""
    findings = run_squawk("BEGIN;\nALTER TABLE usage_buckets DROP COLUMN model;\nCOMMIT;\n")
    assert [f.rule for f in findings] == ["squawk:ban-drop-column"]
    assert findings[0].statement.startswith("line 2:")


def test_squawk_skips_the_excluded_rules() -> None:
    """VARCHAR, INTEGER, BIGSERIAL and a new table's index raise nothing, as documented."""
    sql = (
        "BEGIN;\nCREATE TABLE t (id BIGSERIAL NOT NULL, name VARCHAR(32) NOT NULL, n INTEGER,"
        " PRIMARY KEY (id));\nCREATE INDEX ix_t_n ON t (n);\nCOMMIT;\n"
    )
    assert run_squawk(sql) == []


def test_every_excluded_squawk_rule_is_real_and_has_a_reason() -> None:
    """squawk rejects unknown rule names, so an accepted run proves every exclusion exists."""
    assert all(len(reason) > 40 for reason in SQUAWK_EXCLUDED.values())
    assert run_squawk("SELECT 1;") == []


def test_squawk_reports_sql_it_cannot_parse() -> None:
    """Unparseable SQL is a finding, never a silent pass."""
    assert [f.rule for f in run_squawk("ALTER TABLE x DRP;")] == ["squawk:syntax-error"]


def test_a_breaking_migration_fails_without_a_replay_plan(tmp_path: Path) -> None:
    """Dropping a column is caught by our rules and by squawk, and the report names the plan."""
    path = write_migration(tmp_path / "versions", BREAKING)
    report = lint_synthetic(tmp_path / "versions")
    synthetic = report["synthetic_9001"]
    assert not report.ok
    assert not synthetic.ok
    assert {f.rule for f in synthetic.findings} == {"drop-column", "squawk:ban-drop-column"}
    assert synthetic.plan is None
    assert plan_path(path).name == "9001_synthetic.replay-plan.md"
    assert "9001_synthetic.replay-plan.md" in report.describe()
    assert all(r.ok for r in report.revisions if r.revision != "synthetic_9001")


def test_a_complete_replay_plan_lets_a_planned_breaking_change_pass(tmp_path: Path) -> None:
    """With Scope, Replay, Rollback and Verify beside it, the findings are waived, still listed."""
    path = write_migration(tmp_path / "versions", BREAKING)
    plan_path(path).write_text(COMPLETE_PLAN, encoding="utf-8")
    report = lint_synthetic(tmp_path / "versions")
    synthetic = report["synthetic_9001"]
    assert report.ok
    assert synthetic.waived
    assert synthetic.plan == plan_path(path)
    assert {f.rule for f in synthetic.findings} == {"drop-column", "squawk:ban-drop-column"}
    assert "WAIVED" in report.describe()


@pytest.mark.parametrize("missing", PLAN_HEADINGS)
def test_a_plan_without_a_heading_does_not_open_the_hatch(tmp_path: Path, missing: str) -> None:
    """Each required heading must be present; the problem names it."""
    path = write_migration(tmp_path / "versions", BREAKING)
    plan = COMPLETE_PLAN.replace(f"## {missing}\n", "## Notes\n")
    plan_path(path).write_text(plan, encoding="utf-8")
    synthetic = lint_synthetic(tmp_path / "versions")["synthetic_9001"]
    assert not synthetic.ok
    assert any(f"'## {missing}'" in p for p in synthetic.plan_problems)


def test_a_plan_with_an_empty_section_does_not_open_the_hatch(tmp_path: Path) -> None:
    """A heading with nothing under it is not a plan."""
    path = write_migration(tmp_path / "versions", BREAKING)
    plan = COMPLETE_PLAN.replace(
        "Restore the snapshot taken before apply; the old column is kept until Verify passes.\n",
        "",
    )
    plan_path(path).write_text(plan, encoding="utf-8")
    synthetic = lint_synthetic(tmp_path / "versions")["synthetic_9001"]
    assert not synthetic.ok
    assert synthetic.plan_problems == [
        "9001_synthetic.replay-plan.md: nothing under the heading 'Rollback'"
    ]


def test_an_additive_synthetic_migration_passes_without_a_plan(tmp_path: Path) -> None:
    """A new optional column, a defaulted required one, a new table and index need no plan."""
    write_migration(
        tmp_path / "versions",
        """\
        op.add_column("usage_buckets", sa.Column("region", sa.String(16), nullable=True))
        op.add_column(
            "usage_buckets",
            sa.Column("tool_tokens", sa.BigInteger(), server_default="0", nullable=False),
        )
        op.create_table(
            "usage_buckets_v2",
            sa.Column("user_id", sa.BigInteger(), nullable=False),
            sa.Column("region", sa.String(16), nullable=False),
            sa.PrimaryKeyConstraint("user_id", "region", name=op.f("pk_usage_buckets_v2")),
        )
        op.create_index("ix_usage_daily_day", "usage_daily", ["day"])
        """,
    )
    synthetic = lint_synthetic(tmp_path / "versions")["synthetic_9001"]
    assert synthetic.findings == [], synthetic.describe()
    assert synthetic.ok
    assert "ADD COLUMN region VARCHAR(16)" in synthetic.sql


def test_a_migration_that_cannot_render_offline_is_an_error(tmp_path: Path) -> None:
    """Reading data in Python cannot be rendered, so such a migration cannot pass unseen."""
    write_migration(
        tmp_path / "versions",
        """\
        rows = op.get_bind().execute(sa.text("SELECT 1")).all()
        """,
    )
    with pytest.raises(LintError, match="cannot be rendered offline"):
        lint_synthetic(tmp_path / "versions")


def test_every_replay_plan_in_the_tree_belongs_to_a_complete_migration() -> None:
    """A plan file in versions/ sits beside a migration of the same name and has every heading."""
    versions = MIGRATIONS / "versions"
    for plan in versions.glob("*.replay-plan.md"):
        migration = versions / plan.name.replace(".replay-plan.md", ".py")
        assert migration.exists(), f"{plan.name} has no migration beside it"
        report = real_report()
        (entry,) = [r for r in report.revisions if r.path == migration]
        assert entry.plan_problems == [], entry.describe()


def test_the_linter_runs_as_a_module() -> None:
    """`python -m scripts.migration_lint` prints the report and exits 0 on the tree."""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.migration_lint"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0001 (0001_initial_schema.py): ok" in done.stdout
