"""The hash-partitioned layout proves what Citus needs: every per-user statement reaches one
partition of each per-user table it touches.

Native ``PARTITION BY HASH (user_id)`` stands in for Citus's shards: PostgreSQL prunes the
partitions a statement cannot touch from the values it names, as Citus routes a statement to
one shard from its distribution column. An upload (new, repeated and updated buckets, with an
Idempotency-Key), every per-user read endpoint, ``replay`` and ``verify`` of one user run on
that layout while their statements are recorded; each is then EXPLAINed with its own
parameters. A write with values names one user in all of its rows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from bench.harness import libpq_url
from tests.conftest import Persona, _truncate_all, throwaway_pg
from tests.factories import bucket
from tests.ops.support import document, parse, seed_history
from usageledger.cli.root import main
from usageledger.errors import LedgerError
from usageledger.ops.backfill import apply_plan, create_plan, rollback_plan
from usageledger.ops.replay import replay
from usageledger.ops.retention import run_retention
from usageledger.ops.verify import verify
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import current_revision, head_revision
from usageledger.store.partitioned import LayoutError, create_hash_partitioned, partition_counts
from usageledger.store.tables import DISTRIBUTED_TABLES, metadata

pytestmark = pytest.mark.postgres

PARTITION = re.compile(r"^(?P<table>\w+)_p\d+$")
WORD = re.compile(r"\b(\w+)\b")

#: Statements that ask about the whole database on purpose, once per job, with the reason.
WHOLE_DATABASE: dict[str, re.Pattern[str]] = {
    # ops/scope.py require_server_ledger: is this a tracker's local ledger at all? Asked once
    # per replay, verify or backfill run (on Citus: every shard, once), never per user.
    "local-ledger guard": re.compile(r"^SELECT \S+ AS anon_1\s+FROM usage_events\s+LIMIT", re.S),
    # ops/retention.py: old receipts of every user go in one batch job, not per user.
    "receipt retention": re.compile(
        r"^(DELETE FROM|SELECT count\(\*\)[^;]*FROM) ingest_receipts", re.S
    ),
    # ops/backfill.py _plan_owner: `backfill apply|rollback PLAN_ID` is given the plan id
    # alone, so the operator's command asks every partition (on Citus: every shard) once for
    # the plan's user; every later statement of the step names that user.
    "plan owner by id": re.compile(
        r"^SELECT backfill_plans_v2\.user_id\s+FROM backfill_plans_v2\s+"
        r"WHERE backfill_plans_v2\.plan_id = %\(plan_id_1\)s(::\w+)?\s+"
        r"LIMIT %\(param_1\)s(::\w+)?$",
        re.S,
    ),
}

READS: list[tuple[str, dict[str, str]]] = [
    ("/v1/usage/summary", {"from": "2026-10-01", "to": "2026-11-30"}),
    ("/v1/usage/summary", {"tz": "Asia/Tokyo", "from": "2026-10-01", "to": "2026-11-30"}),
    ("/v1/usage/daily", {"from": "2026-10-01", "to": "2026-11-30"}),
    ("/v1/usage/hourly", {"day": "2026-11-01"}),
    ("/v1/usage/monthly", {"from": "2026-10", "to": "2026-11"}),
    ("/v1/usage/heatmap", {"weeks": "13"}),
    ("/v1/usage/models", {"from": "2026-10-01", "to": "2026-11-30"}),
    ("/v1/devices", {}),
    ("/v1/me", {}),
]


@pytest.fixture
def db_url(pg_hash_url: str) -> str:
    """This module's tests run on the hash-partitioned layout only."""
    _truncate_all(pg_hash_url)
    return pg_hash_url


def test_the_layout_partitions_every_distributed_table_and_is_at_head(engine: Engine) -> None:
    """Each distributed table has its hash partitions; the schema is the newest one."""
    counts = partition_counts(engine)
    assert set(counts) == set(DISTRIBUTED_TABLES)
    assert len(set(counts.values())) == 1
    assert min(counts.values()) >= 2
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    # Only the partitions (and the indexes PostgreSQL made on them) are not in the metadata.
    others = [d for d in diff if not PARTITION.match(getattr(d[1], "name", "") or "")]
    others = [d for d in others if not PARTITION.match(str(getattr(d[1], "table", "")))]
    assert others == []


def test_the_layout_is_refused_on_a_database_that_has_tables(engine: Engine) -> None:
    """Partitioning is chosen when the database is created, never over existing tables."""
    with pytest.raises(LayoutError, match="already has tables"):
        create_hash_partitioned(engine, 4)


def test_the_layout_is_refused_on_sqlite(tmp_path: Any) -> None:
    """SQLite has no partitions: the option explains instead."""
    sqlite = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(LayoutError, match="PostgreSQL"):
        create_hash_partitioned(sqlite, 4)
    sqlite.dispose()


class Recorder:
    """Every statement an engine runs, with its parameters, while ``on``."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self.on:
            self.seen.append((statement, parameters))


def per_user_tables(statement: str) -> set[str]:
    """The distributed tables a statement names."""
    return set(WORD.findall(statement)) & set(DISTRIBUTED_TABLES)


def split(statement: str, parameters: Any) -> Iterator[tuple[str, Any]]:
    """The statements of one call (the per-user lock sends three at once, no parameters)."""
    if parameters:
        yield statement, parameters
        return
    for part in statement.split(";"):
        if part.strip() and not part.strip().upper().startswith("SET "):
            yield part.strip(), parameters


def rows_of(parameters: Any) -> list[dict[str, Any]]:
    """The parameter sets of a call (one for execute, several for executemany)."""
    if isinstance(parameters, dict):
        return [parameters]
    if isinstance(parameters, list | tuple) and parameters and isinstance(parameters[0], dict):
        return list(parameters)
    return []


def users_written(statement: str, parameters: Any) -> set[Any]:
    """The user ids an INSERT writes, from its parameters or its inlined values."""
    found = {
        value
        for row in rows_of(parameters)
        for key, value in row.items()
        if key.startswith("user_id")
    }
    inlined = re.search(r"\(user_id\)\s+VALUES\s+\((\d+)\)", statement)
    if inlined:
        found.add(int(inlined.group(1)))
    return found


def partitions_touched(
    raw: psycopg.Connection[Any], statement: str, parameters: Any
) -> dict[str, set[str]]:
    """The partitions of each distributed table that the plan of ``statement`` reads."""
    if rows_of(parameters):
        parameters = rows_of(parameters)[0]  # executemany: one row's parameters plan the same
    plan = raw.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters or None).fetchone()
    assert plan is not None
    touched: dict[str, set[str]] = {}
    stack = [plan[0][0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", []))
        name = node.get("Relation Name", "")
        match = PARTITION.match(name)
        if match and match.group("table") in DISTRIBUTED_TABLES:
            touched.setdefault(match.group("table"), set()).add(name)
        elif name in DISTRIBUTED_TABLES and node.get("Node Type") not in {
            "ModifyTable",
        }:
            touched.setdefault(name, set()).add(f"{name} (unpruned)")
    return touched


def test_every_per_user_statement_touches_one_partition(
    db_url: str, engine: Engine, client: TestClient, alice: Persona, bob: Persona
) -> None:
    """Upload, read, replay, verify and retention: each statement on a per-user table reads
    one partition of it, and each write names one user."""
    post = {"Content-Type": "application/json", "Idempotency-Key": "k1", **alice.headers()}
    bob_headers = {"Content-Type": "application/json", **bob.headers()}
    first = [bucket(slot=n, revision=1) for n in range(4)]
    assert (
        client.post(
            "/v1/ingest",
            content=json.dumps({"buckets": first, "schema_version": 2}),
            headers=bob_headers,
        ).status_code
        == 200
    )

    recorder = Recorder(engine)
    recorder.on = True
    body = json.dumps({"schema_version": 2, "buckets": first})
    assert client.post("/v1/ingest", content=body, headers=post).status_code == 200
    assert client.post("/v1/ingest", content=body, headers=post).status_code == 200  # replayed
    later = [bucket(slot=n, revision=2, inp=200) for n in range(2)] + [bucket(slot=9)]
    again = {**post, "Idempotency-Key": "k2"}
    response = client.post(
        "/v1/ingest", content=json.dumps({"schema_version": 2, "buckets": later}), headers=again
    )
    assert response.json()["updated"] == 2, response.text
    for path, params in READS:
        got = client.get(path, params=params, headers=alice.headers(read=True))
        assert got.status_code == 200, (path, got.text[:300])
    db = Database(engine)
    try:
        replay(db, user="alice")
        assert verify(db, user="alice").clean
        recorder.on = False
        # Retention works user by user (alice and bob), each under that user's lock; revision
        # 1 of alice's two updated buckets is superseded, so it deletes something.
        kept = Recorder(engine)
        kept.on = True
        assert run_retention(db, now_ms=10**13, revisions_days=1).revisions >= 1
        kept.on = False
    except LedgerError as exc:  # pragma: no cover - a failure names the problem
        pytest.fail(exc.message)

    everyone = {alice.user_id, bob.user_id}
    calls = [(c, p, {alice.user_id}) for c, p in recorder.seen]
    calls += [(c, p, everyone) for c, p in kept.seen]
    checked, problems = check_calls(db_url, calls)
    assert checked > 20
    assert problems == [], "\n".join(problems)


def test_backfill_and_a_time_zone_change_touch_one_partition_per_statement(
    db_url: str, engine: Engine, client: TestClient, db: Database, alice: Persona, bob: Persona
) -> None:
    """Backfill plan → apply → rollback of alice's laptop and her time-zone change (which
    rebuilds her rollups): each statement on a per-user table reads one partition of it."""
    seed_history(client, alice)
    seed_history(client, bob)
    recorder = Recorder(engine)
    recorder.on = True
    now = int(time.time() * 1000)
    plan = create_plan(db, parse(document()), reason="codex double count", now_ms=now)
    assert apply_plan(db, plan.plan_id, now_ms=now + 1).state == "applied"
    assert rollback_plan(db, plan.plan_id, now_ms=now + 2).state == "rolled_back"
    response = client.patch(
        "/v1/me", json={"time_zone": "Pacific/Kiritimati"}, headers=alice.headers(read=True)
    )
    assert response.status_code == 200, response.text
    assert response.json()["rebuilt_daily_rows"] > 0
    recorder.on = False

    seen = [statement for statement, _ in recorder.seen]
    assert any("backfill_plans_v2" in s for s in seen)
    assert any(s.lstrip().startswith("DELETE FROM usage_daily") for s in seen)  # the rebuild
    checked, problems = check_calls(db_url, [(c, p, {alice.user_id}) for c, p in recorder.seen])
    assert checked > 20
    assert problems == [], "\n".join(problems)


def check_calls(db_url: str, calls: list[tuple[str, Any, set[Any]]]) -> tuple[int, list[str]]:
    """Check recorded calls: an INSERT of values writes only the allowed users; any other
    statement naming a per-user table reads exactly one partition of each (pruned, never the
    whole table) unless :data:`WHOLE_DATABASE` names it. Return the statements checked and
    the problems found."""
    checked = 0
    problems: list[str] = []
    with psycopg.connect(libpq_url(db_url)) as raw:
        for call, call_parameters, allowed in calls:
            for statement, parameters in split(call, call_parameters):
                tables = per_user_tables(statement)
                if not tables or any(p.match(statement) for p in WHOLE_DATABASE.values()):
                    continue
                checked += 1
                head = statement.lstrip().split(None, 1)[0].upper()
                if head == "INSERT" and " SELECT " not in f" {statement.upper()} ":
                    written = users_written(statement, parameters)
                    if not written or not written <= allowed:
                        problems.append(f"writes {written}: {statement[:160]}")
                    continue
                touched = partitions_touched(raw, statement, parameters)
                if head == "INSERT":
                    # INSERT … SELECT (the daily rebuild): the target has no scan in the plan,
                    # it is written, not read (zero partitions read). Its rows are what the
                    # SELECT reads, so that reads one partition of a per-user table, with the
                    # user named, as Citus pushes down a co-located INSERT … SELECT.
                    target = WORD.findall(statement.split("(", 1)[0])[-1]
                    tables = tables - {target}
                    if not tables or "user_id = %(" not in statement:
                        problems.append(f"{target} from nobody's rows: {statement[:160]}")
                for table in tables:
                    found = touched.get(table, set())
                    if len(found) != 1 or any("unpruned" in p for p in found):
                        problems.append(f"{table}: {sorted(found)}: {statement[:160]}")
        raw.rollback()
    return checked, problems


def test_db_upgrade_with_hash_partitions_makes_the_layout_on_an_empty_database(
    tmp_path: Any,
) -> None:
    """The documented option creates the layout at head; asked again (tables exist), it
    explains and exits 2 without touching anything."""
    with throwaway_pg("ul_test") as url:
        runner = CliRunner(
            env={
                "USAGELEDGER_DATABASE_URL": libpq_url(url),
                "USAGELEDGER_HOME": str(tmp_path),
                "USAGELEDGER_LOG_FILE": "off",
            }
        )
        made = runner.invoke(main, ["db", "upgrade", "--hash-partitions", "3"])
        assert made.exit_code == 0, made.output
        assert "3 hash partitions" in made.output
        engine = make_engine(url)
        assert set(partition_counts(engine).values()) == {3}
        assert current_revision(engine) == head_revision()
        engine.dispose()
        again = runner.invoke(main, ["db", "upgrade", "--hash-partitions", "3"])
        assert again.exit_code == 2
        assert "already has tables" in again.stderr
        assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0  # plain upgrades go on
