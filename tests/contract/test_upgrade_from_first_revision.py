"""A ledger filled at the first revision of the schema survives every migration to head.

The database is created at revision 0001 and filled with plain SQL INSERTs of the 0001
columns, shaped as v1-era ingest wrote them; then it is migrated to head. The facts and the
aggregates must be unchanged, ``verify`` must find no drift, a replay must change nothing, and
the newest code must read the old rows as its own (a v1 re-send is ``unchanged``, the read API
sums them). Display names set before 0004 get their folded keys, the first holder of a
look-alike name by user_id keeping it. Both engines:
a SQLite file, and a PostgreSQL database created and dropped here (the session database of
the other tests is already at head).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, inspect, text

from bench.harness import libpq_url
from tests.conftest import throwaway_pg
from tests.factories import batch, bucket
from tests.helpers import daily_rows, expected_daily
from usageledger.config import Settings
from usageledger.confusables import fold
from usageledger.errors import ValidationFailed
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import profile
from usageledger.ledger.rollups import rebuild_days
from usageledger.ops.verify import verify
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import alembic_config, current_revision, head_revision, upgrade

FIRST = "0001"
#: The 0001 count columns, written out: this test must not follow today's metadata.
COUNTS_0001 = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
    "cache_write_tokens",
)
#: Primary keys of the tables filled here, to read them back in a stable order.
ORDER = {
    "users": "user_id",
    "devices": "user_id, device_id",
    "api_tokens": "token_id",
    "bucket_revisions": "user_id, device_id, source, model, bucket_start, revision",
    "usage_buckets": "user_id, device_id, source, model, bucket_start",
    "usage_daily": "user_id, day, device_id, source, model",
    "ingest_receipts": "user_id, request_id",
}
ZONES = {"alice": "Europe/Berlin", "bob": "America/New_York"}
START = datetime(2026, 11, 1, 21, 0, tzinfo=UTC)  # across local midnight in Berlin
ERA_MS = 1_761_000_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of our own: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'v1-era.db'}"
        return
    with throwaway_pg("ul_first_rev") as url:
        yield url


@pytest.fixture
def engine_at_first(empty_url: str) -> Iterator[Engine]:
    """An engine over a database migrated to the first revision only."""
    engine = make_engine(empty_url, statement_timeout_ms=20_000)
    upgrade(engine, FIRST)
    assert current_revision(engine) == FIRST
    yield engine
    engine.dispose()


def insert(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """A plain SQL INSERT of the given columns (no table metadata involved)."""
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    conn.execute(text(sql), rows)


def secret_of(name: str) -> str:
    """The device token secret of a v1-era persona."""
    return f"ul_dev_v1era-{name}-0000000000000000000000000000"


def v1_era_items(name: str) -> list[dict[str, Any]]:
    """The v1 buckets a persona's old tracker uploaded (device 1)."""
    shift = 0 if name == "alice" else 3
    return [
        bucket(
            start=START + timedelta(minutes=30 * i),
            source=("codex", "claude", "gemini")[i % 3],
            model=("gpt-5-codex", "claude-sonnet-4-5", "gemini-2.5-pro")[i % 3],
            inp=1000 + 7 * i + shift,
            cached=300 + i,
            out=50 + i,
            reasoning=i,
            cache_write=None,
            revision=ERA_MS + i,
        )
        for i in range(8)
    ]


def bucket_row(user_id: int, device_id: int, item: dict[str, Any]) -> dict[str, Any]:
    """The usage_buckets row v1-era ingest wrote for an item (cache_write_tokens 0)."""
    start = int(datetime.fromisoformat(item["bucket_start"].replace("Z", "+00:00")).timestamp())
    counts = {c: item.get(c, 0) for c in COUNTS_0001}
    return {
        "user_id": user_id,
        "device_id": device_id,
        "source": item["source"],
        "model": item["model"],
        "bucket_start": start,
        "revision": item["revision"],
        **counts,
    }


def daily_sums(rows: list[dict[str, Any]], zones: dict[int, str]) -> list[dict[str, Any]]:
    """usage_daily rows as rebuild_days wrote them: sums by user-local day."""
    sums: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS_0001, 0))
    for row in rows:
        tz = ZoneInfo(zones[row["user_id"]])
        day = datetime.fromtimestamp(row["bucket_start"], UTC).astimezone(tz).date()
        key = (row["user_id"], day.isoformat(), row["device_id"], row["source"], row["model"])
        for c in COUNTS_0001:
            sums[key][c] += row[c]
    return [
        {"user_id": k[0], "day": k[1], "device_id": k[2], "source": k[3], "model": k[4], **v}
        for k, v in sums.items()
    ]


def fill_v1_era(engine: Engine) -> dict[str, int]:
    """Fill the 0001 schema as v1-era code did; return the user ids by name."""
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for name, zone in ZONES.items():
            insert(conn, "users", [{"name": name, "time_zone": zone, "created_at_ms": ERA_MS}])
            ids[name] = int(
                conn.execute(
                    text("SELECT user_id FROM users WHERE name = :n"), {"n": name}
                ).scalar_one()
            )
        zones = {ids[n]: z for n, z in ZONES.items()}
        buckets: list[dict[str, Any]] = []
        revisions: list[dict[str, Any]] = []
        for name, user_id in ids.items():
            insert(
                conn,
                "devices",
                [
                    {
                        "user_id": user_id,
                        "device_id": 1,
                        "name": "laptop",
                        "created_at_ms": ERA_MS,
                        "last_upload_at_ms": ERA_MS + 5,
                    }
                ],
            )
            secret = secret_of(name)
            insert(
                conn,
                "api_tokens",
                [
                    {
                        "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
                        "display_prefix": secret[:11],
                        "kind": "device",
                        "user_id": user_id,
                        "device_id": 1,
                        "created_at_ms": ERA_MS,
                    }
                ],
            )
            request_id = str(uuid.UUID(int=user_id))
            items = v1_era_items(name)
            # The first item was uploaded twice: an early value superseded by the final one.
            early = {**bucket_row(user_id, 1, items[0]), "revision": ERA_MS - 1, "input_tokens": 1}
            early["total_tokens"] = 1 + early["cached_input_tokens"] + early["output_tokens"]
            revisions.append({**early, "received_at_ms": ERA_MS, "origin": request_id})
            for item in items:
                row = bucket_row(user_id, 1, item)
                buckets.append(row)
                revisions.append({**row, "received_at_ms": ERA_MS + 5, "origin": request_id})
            response = {"request_id": request_id, "inserted": 8, "updated": 0}
            insert(
                conn,
                "ingest_receipts",
                [
                    {
                        "user_id": user_id,
                        "request_id": request_id,
                        "device_id": 1,
                        "idempotency_key_hash": None,
                        "body_sha256": hashlib.sha256(name.encode()).hexdigest(),
                        "state": "done",
                        "response": orjson.dumps(response).decode(),
                        "bucket_count": len(items),
                        "created_at_ms": ERA_MS + 5,
                        "completed_at_ms": ERA_MS + 6,
                    }
                ],
            )
        insert(conn, "bucket_revisions", revisions)
        insert(conn, "usage_buckets", [{**b, "updated_at_ms": ERA_MS + 5} for b in buckets])
        insert(conn, "usage_daily", daily_sums(buckets, zones))
    return ids


def snapshot(engine: Engine, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the filled tables, restricted to their 0001 columns, in key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table, order in ORDER.items():
            names = ", ".join(columns[table])
            rows = conn.execute(text(f"SELECT {names} FROM {table} ORDER BY {order}"))
            out[table] = [tuple(r) for r in rows]
    return out


def columns_at(engine: Engine) -> dict[str, list[str]]:
    """The columns each filled table has now (called at the first revision)."""
    inspector = inspect(engine)
    return {t: [c["name"] for c in inspector.get_columns(t)] for t in ORDER}


def test_v1_era_facts_and_aggregates_survive_every_migration(engine_at_first: Engine) -> None:
    """Upgrading 0001 → head one revision at a time, every 0001 column of every row reads back
    unchanged after each migration."""
    engine = engine_at_first
    fill_v1_era(engine)
    columns = columns_at(engine)
    before = snapshot(engine, columns)
    assert len(before["usage_buckets"]) == 16
    assert len(before["bucket_revisions"]) == 18
    script = ScriptDirectory.from_config(alembic_config())
    steps = [s.revision for s in reversed(list(script.walk_revisions()))]
    assert (steps[0], steps[-1]) == (FIRST, head_revision())
    assert len(steps) >= 3
    for revision in steps[1:]:
        upgrade(engine, revision)
        assert current_revision(engine) == revision
        assert snapshot(engine, columns) == before, revision


def test_v1_era_aggregates_equal_a_rebuild_after_the_upgrade(engine_at_first: Engine) -> None:
    """At head, verify finds no drift, usage_daily sums the buckets by day, a replay is a no-op."""
    engine = engine_at_first
    ids = fill_v1_era(engine)
    upgrade(engine)
    report = verify(Database(engine))
    assert report.clean, report.drifts
    assert (report.users, report.buckets) == (2, 16)
    zones = {ids[n]: z for n, z in ZONES.items()}
    stored = daily_rows(engine)
    assert stored == expected_daily(engine, zones)
    days: dict[int, set[date]] = defaultdict(set)
    for user_id, day, *_ in stored:
        days[user_id].add(day)
    with engine.begin() as conn:  # the one rebuild path, as `replay` runs it
        for user_id, zone in zones.items():
            rebuild_days(conn, user_id, ZoneInfo(zone), days[user_id])
    assert daily_rows(engine) == stored


def test_the_newest_code_reads_v1_era_rows_as_its_own(
    engine_at_first: Engine, empty_url: str, tmp_path: Path
) -> None:
    """Over HTTP at head, the old token works, a v1 re-send is unchanged, new uploads add up."""
    engine = engine_at_first
    ids = fill_v1_era(engine)
    upgrade(engine)
    settings = Settings(
        home=tmp_path / "home",
        database_url=libpq_url(empty_url),
        log_file=str(tmp_path / "evidence.log"),
        rate_per_minute=60_000,
        rate_burst=10_000,
    )
    logger = EvidenceLogger(settings.log_file)
    headers = {"Content-Type": "application/json"}
    with TestClient(create_app(settings, engine=engine, evidence=logger)) as client:
        alice = {**headers, "Authorization": f"Bearer {secret_of('alice')}"}
        resend = client.post(
            "/v1/ingest", content=orjson.dumps(batch(*v1_era_items("alice"))), headers=alice
        )
        assert resend.status_code == 200, resend.text
        assert (resend.json()["unchanged"], resend.json()["inserted"]) == (8, 0)
        newer = bucket(start=START + timedelta(hours=5), cache_write=40, revision=ERA_MS + 99)
        added = client.post("/v1/ingest", content=orjson.dumps(batch(newer)), headers=alice)
        assert added.json()["inserted"] == 1
        summary = client.get(
            "/v1/usage/summary", params={"from": "2026-11-01", "to": "2026-11-02"}, headers=alice
        )
        assert summary.status_code == 200, summary.text
        totals = summary.json()["totals"]
    old = v1_era_items("alice")
    for name in COUNTS_0001[:5]:
        assert totals[name] == sum(i[name] for i in old) + newer[name], name
    assert totals["cache_write_tokens"] == 40
    logger.close()
    zones = {ids[n]: z for n, z in ZONES.items()}
    assert daily_rows(engine) == expected_daily(engine, zones)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT cache_write_tokens FROM usage_buckets WHERE bucket_start = :s"),
            {"s": int((START + timedelta(hours=5)).timestamp())},
        ).scalar_one()
    assert stored == 40


#: Display names set before 0004, in user_id order: (user name, display name).
OLD_NAMES = (
    ("alice", "alice"),
    ("bob", "ALICE"),  # alice's name in capitals
    ("carol", "\u0430nonymous #1"),  # a Cyrillic а: the impersonation 0004 closes
    ("dave", "Dave"),
    ("erin", "\u0430lice"),  # alice's name with a Cyrillic а
    ("frank", None),
)


def test_0004_gives_old_display_names_keys_first_holder_first(engine_at_first: Engine) -> None:
    """Of look-alike names the lowest user_id holds the key; later look-alikes and names like
    "anonymous #…" keep their text with no key; the key then decides a new claim."""
    engine = engine_at_first
    upgrade(engine, "0003")
    with engine.begin() as conn:
        for user, name in OLD_NAMES:
            row = {"name": user, "time_zone": "UTC", "created_at_ms": ERA_MS}
            insert(conn, "users", [{**row, "display_name": name}])
    upgrade(engine)
    with engine.connect() as conn:
        stored = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                text("SELECT name, display_name, display_name_key FROM users ORDER BY user_id")
            )
        }
    assert stored == {
        "alice": ("alice", fold("alice")),
        "bob": ("ALICE", None),
        "carol": ("\u0430nonymous #1", None),
        "dave": ("Dave", fold("dave")),
        "erin": ("\u0430lice", None),
        "frank": (None, None),
    }
    db = Database(engine)
    bob = int(
        db.read(
            lambda c: c.execute(text("SELECT user_id FROM users WHERE name = 'bob'")).scalar_one()
        )
    )
    with pytest.raises(ValidationFailed, match="taken"):
        db.write(lambda c: profile.update_profile(c, bob, display_name="ALICE"), user_id=bob)
    renamed, _ = db.write(lambda c: profile.update_profile(c, bob, display_name="Bob"), user_id=bob)
    assert renamed.display_name == "Bob"


def test_0005_copies_the_plans_into_the_per_user_table_and_freezes_the_old_one(
    engine_at_first: Engine,
) -> None:
    """A plan written before 0005 reads back, unchanged, through today's code; the old table
    keeps its row and is never written again."""
    engine = engine_at_first
    upgrade(engine, "0004")
    plan = {
        "user_id": 1,
        "plan_id": "5b1c0a52-4a7e-4f5e-9a53-1d2a3b4c5d6e",
        "device_id": 1,
        "reason": "codex double count",
        "state": "applied",
        "range_start": 1_761_955_200,
        "range_end": 1_761_958_800,
        "affected_keys": 1,
        "changes": '{"zero_missing": false, "buckets": []}',
        "snapshot": '{"buckets": []}',
        "checksum_before": "a" * 64,
        "checksum_expected_after": "b" * 64,
        "checksum_after": "b" * 64,
        "created_at_ms": ERA_MS,
        "applied_at_ms": ERA_MS + 1,
        "rolled_back_at_ms": None,
    }
    with engine.begin() as conn:
        insert(conn, "users", [{"name": "alice", "time_zone": "UTC", "created_at_ms": ERA_MS}])
        insert(
            conn,
            "devices",
            [{"user_id": 1, "device_id": 1, "name": "laptop", "created_at_ms": ERA_MS}],
        )
        insert(conn, "backfill_plans", [plan])
    upgrade(engine)
    columns = ", ".join(plan)
    with engine.connect() as conn:
        copied = [
            dict(r._mapping) for r in conn.execute(text(f"SELECT {columns} FROM backfill_plans_v2"))
        ]
        frozen = [
            dict(r._mapping) for r in conn.execute(text(f"SELECT {columns} FROM backfill_plans"))
        ]
    assert copied == frozen == [plan]
    from usageledger.ops.backfill import PlanRefused, apply_plan, get_plan

    db = Database(engine)
    shown = db.read(lambda c: get_plan(c, plan["plan_id"]))
    assert (shown["user"], shown["device"], shown["state"]) == ("alice", "laptop", "applied")
    with pytest.raises(PlanRefused, match="is applied, not planned"):
        apply_plan(db, str(plan["plan_id"]), now_ms=ERA_MS + 2)
