"""Cost-first, proven: every read endpoint's SQL, EXPLAINed on PostgreSQL over 200k+ buckets.

A dedicated database is seeded with generate_series (20 users × 2 devices × 2 models × a
bucket every 6 hours for two years = 233,600 buckets, the same rows in bucket_revisions),
rolled up through ``rollups.rebuild_range`` and ANALYZEd. Each endpoint is then called over
HTTP while a ``before_cursor_execute`` listener records its statements; each statement is
EXPLAINed with its own parameters. No plan may scan ``usage_buckets`` or
``bucket_revisions`` sequentially, and the read endpoints may touch only ``usage_daily``,
``leaderboard_snapshots`` and, through its ``(user_id, bucket_start)`` index with a bound on
``bucket_start``, ``usage_buckets`` (plus the small ``users``, ``devices``, ``api_tokens``
and ``model_prices`` tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from bench.harness import libpq_url, pg_database
from tests.conftest import Persona
from usageledger.api.read import clock
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts, leaderboard
from usageledger.ledger.prices_store import PriceBooks
from usageledger.ledger.rollups import rebuild_range
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade

pytestmark = pytest.mark.postgres

USERS = 20
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Kathmandu")
FIRST, LAST = date(2024, 11, 1), date(2026, 10, 31)
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BUCKET_INDEX = "ix_usage_buckets_user_id_bucket_start"
READ_TABLES = {
    "usage_daily",
    "usage_buckets",
    "leaderboard_snapshots",
    "leaderboard_unpriced",
    "users",
    "devices",
    "api_tokens",
    "model_prices",
}
NEVER_SCANNED = {"usage_buckets", "bucket_revisions"}


def seed(url: str) -> Persona:
    """Users, devices and 233,600 buckets; rollups per user; ANALYZE. Returns user 1."""
    engine = make_engine(url, statement_timeout_ms=600_000)
    upgrade(engine)
    db = Database(engine)

    def people(conn: Any) -> Persona:
        for n in range(1, USERS + 1):
            accounts.create_user(conn, f"user{n}", time_zone=ZONES[n % len(ZONES)], now_ms=1)
            for device in ("laptop", "desk"):
                accounts.ensure_device(conn, n, device, now_ms=1)
        read, _ = accounts.issue_token(conn, "user1", kind="read", device_name=None, now_ms=1)
        dev, _ = accounts.issue_token(conn, "user1", kind="device", device_name="laptop", now_ms=1)
        return Persona("user1", 1, dev, read)

    who = db.write(people)
    lo = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp())
    hi = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) - 1
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO usage_buckets (user_id, device_id, source, model, bucket_start,"
                " revision, input_tokens, cached_input_tokens, output_tokens,"
                " reasoning_output_tokens, total_tokens, cache_write_tokens, updated_at_ms)"
                " SELECT u, d, 'codex', m, s, 1, 100 + u, 50, 20, 5, 170 + u, 10, 0"
                " FROM generate_series(1, :users) u, generate_series(1, 2) d,"
                " (VALUES ('gpt-5'), ('o3')) AS models(m),"
                " generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint), 21600) s"
            ),
            {"users": USERS, "lo": lo, "hi": hi},
        )
        conn.execute(
            text(
                "INSERT INTO bucket_revisions SELECT user_id, device_id, source, model,"
                " bucket_start, revision, input_tokens, cached_input_tokens, output_tokens,"
                " reasoning_output_tokens, total_tokens, cache_write_tokens, 0, 'seed'"
                " FROM usage_buckets"
            )
        )
        for n in range(1, USERS + 1):
            zone = ZoneInfo(ZONES[n % len(ZONES)])
            rebuild_range(conn, n, zone, date(2024, 10, 31), date(2026, 11, 1))
        count = conn.execute(text("SELECT count(*) FROM usage_buckets")).scalar_one()
    assert count >= 200_000
    with psycopg.connect(libpq_url(url), autocommit=True) as raw:
        raw.execute("ANALYZE")
    engine.dispose()
    return who


@pytest.fixture(scope="module")
def big(pg_server_url: str) -> Iterator[tuple[str, Persona]]:
    """A dedicated, seeded and analyzed PostgreSQL database (dropped afterwards)."""
    with pg_database("ul_explain") as url:
        yield url, seed(url)


class Recorder:
    """Statements an engine runs, with their parameters, while ``on``."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if self.on and head in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}:
            self.seen.append((statement, parameters))

    def take(self) -> list[tuple[str, Any]]:
        """The statements recorded since the last call."""
        taken, self.seen = self.seen, []
        return taken


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def explain(url: str, statements: list[tuple[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """EXPLAIN each statement with its parameters (nothing is executed)."""
    plans = []
    with psycopg.connect(libpq_url(url)) as raw:
        for statement, parameters in statements:
            if "FROM user_locks" in statement:  # the per-user lock (store/dialect.py)
                continue
            if (
                isinstance(parameters, list | tuple)
                and parameters
                and isinstance(parameters[0], dict)
            ):
                parameters = parameters[0]  # executemany: one row's parameters plan the same
            rows = raw.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters).fetchone()
            assert rows is not None
            plans.append((statement, list(nodes(rows[0][0]["Plan"]))))
        raw.rollback()
    return plans


READS: list[tuple[str, dict[str, str]]] = [
    ("/v1/usage/summary", {}),
    ("/v1/usage/summary", {"from": "2024-09-01", "to": "2026-11-09"}),
    ("/v1/usage/summary", {"tz": "Asia/Tokyo", "from": "2026-08-01", "to": "2026-10-31"}),
    ("/v1/usage/daily", {"from": "2025-11-01", "to": "2026-10-31"}),
    ("/v1/usage/daily", {"tz": "UTC", "device": "desk", "from": "2026-08-01", "to": "2026-10-31"}),
    ("/v1/usage/hourly", {"day": "2026-03-29"}),
    ("/v1/usage/hourly", {"day": "2026-10-25", "tz": "America/New_York", "model": "o3"}),
    ("/v1/usage/monthly", {"from": "2023-11", "to": "2026-10"}),
    ("/v1/usage/monthly", {"from": "2026-08", "to": "2026-10", "tz": "UTC"}),
    ("/v1/usage/heatmap", {"weeks": "104"}),
    ("/v1/usage/heatmap", {"weeks": "13", "tz": "Pacific/Auckland"}),
    ("/v1/usage/models", {"from": "2024-09-01", "to": "2026-11-09", "source": "codex"}),
    ("/v1/usage/models", {"tz": "UTC"}),
    ("/v1/devices", {}),
    ("/v1/me", {}),
    ("/v1/leaderboard", {"period": "week"}),
    ("/v1/leaderboard", {"period": "all", "offset": "1"}),
]


@pytest.fixture(scope="module")
def recorded(big: tuple[str, Persona], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Statements per endpoint (reads, the PATCH and the leaderboard refresh), then their plans."""
    url, who = big
    engine = make_engine(url, statement_timeout_ms=60_000)
    recorder = Recorder(engine)
    log = tmp_path_factory.mktemp("explain") / "evidence.log"
    settings = Settings(
        home=Path(log.parent),
        database_url=url,
        log_file=str(log),
        rate_per_minute=60_000,
        rate_burst=10_000,
    )
    logger = EvidenceLogger(settings.log_file)
    app = create_app(settings, engine=engine, evidence=logger)
    app.dependency_overrides[clock] = lambda: NOW
    found: dict[str, list[tuple[str, Any]]] = {}
    with TestClient(app) as client:
        db = Database(engine)
        db.write(lambda c: c.execute(text("UPDATE users SET leaderboard_opt_in = true")))
        recorder.on = True
        db.write(lambda c: leaderboard.refresh(c, PriceBooks().current(c), now=NOW))
        found["leaderboard refresh"] = recorder.take()
        for path, params in READS:
            response = client.get(path, params=params, headers=who.headers(read=True))
            assert response.status_code == 200, (path, response.text[:300])
            found[f"GET {path} {params}"] = recorder.take()
        response = client.patch(
            "/v1/me", json={"time_zone": "Asia/Tokyo"}, headers=who.headers(read=True)
        )
        assert response.status_code == 200, response.text
        found["PATCH /v1/me time_zone"] = recorder.take()
    logger.close()
    engine.dispose()
    return {label: explain(url, statements) for label, statements in found.items()}


def test_the_seed_is_big_enough(big: tuple[str, Persona]) -> None:
    """At least 200,000 buckets (and as many revisions) are in the database."""
    url, _ = big
    with psycopg.connect(libpq_url(url)) as raw:
        buckets = raw.execute("SELECT count(*) FROM usage_buckets").fetchone()
        revisions = raw.execute("SELECT count(*) FROM bucket_revisions").fetchone()
    assert buckets is not None
    assert revisions is not None
    assert (buckets[0] >= 200_000, buckets[0] == revisions[0]) == (True, True)


def test_no_plan_scans_buckets_or_revisions_sequentially(recorded: dict[str, Any]) -> None:
    """Not one statement of any endpoint, the PATCH or the refresh has a Seq Scan on them."""
    for label, plans in recorded.items():
        assert plans, label
        for statement, plan in plans:
            for node in plan:
                scanned = node.get("Node Type") == "Seq Scan"
                assert not (scanned and node.get("Relation Name") in NEVER_SCANNED), (
                    label,
                    statement,
                )


def test_read_endpoints_touch_only_the_allowed_tables(recorded: dict[str, Any]) -> None:
    """GETs read usage_daily, snapshots, bounded buckets and small reference tables only."""
    for label, plans in recorded.items():
        if not label.startswith("GET"):
            continue
        for _, plan in plans:
            touched = {n["Relation Name"] for n in plan if "Relation Name" in n}
            assert touched <= READ_TABLES, (label, touched - READ_TABLES)


def test_bucket_reads_are_bounded_ranges_of_the_user_and_time_index(
    recorded: dict[str, Any],
) -> None:
    """Every GET that reads usage_buckets goes through (user_id, bucket_start) with a bound."""
    readers = 0
    for label, plans in recorded.items():
        if not label.startswith("GET"):
            continue
        for statement, plan in plans:
            index_nodes = [n for n in plan if n.get("Index Name") == BUCKET_INDEX]
            reads_buckets = any(n.get("Relation Name") == "usage_buckets" for n in plan)
            if not reads_buckets:
                continue
            readers += 1
            assert index_nodes, (label, statement)
            for node in index_nodes:  # bounded on both sides, not a scan to the end of time
                condition = node.get("Index Cond", "")
                assert "bucket_start >=" in condition, (label, condition)
                assert "bucket_start <" in condition.replace("bucket_start >=", ""), (
                    label,
                    condition,
                )
    assert readers >= 6  # hourly, foreign zones and devices really were exercised


def test_daily_reads_use_the_primary_key_range(recorded: dict[str, Any]) -> None:
    """usage_daily is read by (user_id, day) through its primary key, never scanned whole."""
    for label, plans in recorded.items():
        if not label.startswith("GET"):
            continue
        for statement, plan in plans:
            for node in plan:
                if node.get("Relation Name") == "usage_daily":
                    assert node["Node Type"] != "Seq Scan", (label, statement)
