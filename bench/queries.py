"""Read-API latency against table size: p50/p99 per endpoint at two sizes, both databases.

Each size holds the same kind of user: 2 devices × 2 models × every half-hour of two years
(140,160 buckets per user), and the number of users grows with the size. The measured user
is the same at every size, so a query that reads only its own bounded range does the same
work whatever the size: p99 at the large size should stay within 1.5× of the small one.

Buckets are inserted with one INSERT … SELECT per user (generate_series on PostgreSQL, a
recursive CTE on SQLite; the (user_id, bucket_start) index is rebuilt after the load);
``usage_daily`` is built per user through ``rollups.rebuild_range``; then ANALYZE.
``bucket_revisions`` is left empty: no read touches it. Requests go through the real ASGI
app in-process (FastAPI's TestClient: routing, auth, validation, pricing, JSON), with the
clock frozen at 2026-11-01 and a one-year range where the endpoint takes one.

Run: ``python -m bench.queries`` (1M and 10M buckets, writes docs/benchmarks.md) or
``python -m bench.queries --quick`` (small sizes, no docs update). ``--keep`` keeps the
seeded databases (SQLite files under bench/out/, PostgreSQL ``ul_bench_queries_*``) and
reuses them on the next run.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, text

from bench.common import ROOT, write_section
from bench.harness import create_database, drop_database, ensure_database, libpq_url
from usageledger.api.read import clock
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts, leaderboard
from usageledger.ledger.prices_store import PriceBooks
from usageledger.ledger.rollups import rebuild_range
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade

OUT = ROOT / "bench" / "out"
LO = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp())
SLOTS = 2 * 365 * 48  # two years of half-hours
PER_USER = 2 * 2 * SLOTS  # devices × models × slots
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
YEAR = {"from": "2025-11-01", "to": "2026-10-31"}
ENDPOINTS: list[tuple[str, str, dict[str, str]]] = [
    ("summary (1 year)", "/v1/usage/summary", YEAR),
    ("daily (1 year)", "/v1/usage/daily", YEAR),
    ("models (1 year)", "/v1/usage/models", YEAR),
    ("monthly (12 months)", "/v1/usage/monthly", {"from": "2025-11", "to": "2026-10"}),
    ("heatmap (52 weeks)", "/v1/usage/heatmap", {"to": "2026-10-31", "weeks": "52"}),
    ("hourly (1 day)", "/v1/usage/hourly", {"day": "2026-06-15"}),
    (
        "daily, other tz (93 days)",
        "/v1/usage/daily",
        {"tz": "Asia/Tokyo", "from": "2026-07-31", "to": "2026-10-31"},
    ),
    ("devices", "/v1/devices", {}),
    ("me", "/v1/me", {}),
    ("leaderboard (week)", "/v1/leaderboard", {"period": "week"}),
]
COLUMNS = (
    "user_id, device_id, source, model, bucket_start, revision, input_tokens,"
    " cached_input_tokens, output_tokens, reasoning_output_tokens, total_tokens,"
    " cache_write_tokens, updated_at_ms"
)
# Counts vary by slot so sums are not trivial; the token equalities hold.
VALUES = "100 + x % 50, 40 + x % 7, 20 + x % 11, x % 5, 160 + x % 50 + x % 7 + x % 11, x % 10, 0"


def say(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def users_for(size: int) -> int:
    """Users needed for about ``size`` buckets (at least one)."""
    return max(1, round(size / PER_USER))


def create_people(db: Database, users: int) -> str:
    """Users (varied zones) with two devices each; returns a read token of user 1."""

    def go(conn: Any) -> str:
        for n in range(1, users + 1):
            accounts.create_user(conn, f"user{n}", time_zone=ZONES[(n - 1) % len(ZONES)], now_ms=1)
            for device in ("laptop", "desk"):
                accounts.ensure_device(conn, n, device, now_ms=1)
        conn.execute(text("UPDATE users SET leaderboard_opt_in = true"))
        return read_token(conn)

    return str(db.write(go))


def read_token(conn: Any) -> str:
    """A fresh read token of user 1."""
    secret, _ = accounts.issue_token(conn, "user1", kind="read", device_name=None, now_ms=1)
    return secret


def seed_sqlite(path: Path, users: int) -> None:
    """Bulk-load the buckets of ``users`` users into a migrated SQLite file."""
    import sqlite3

    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=OFF")
    raw.execute("PRAGMA synchronous=OFF")
    raw.execute("PRAGMA cache_size=-1000000")
    raw.execute("DROP INDEX ix_usage_buckets_user_id_bucket_start")
    for n in range(1, users + 1):
        raw.execute(
            f"INSERT INTO usage_buckets ({COLUMNS})"
            " WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < ?)"
            f" SELECT ?, d, 'codex', m, ? + x * 1800, 1, {VALUES}"
            " FROM (SELECT 1 AS d UNION ALL SELECT 2),"
            " (SELECT 'gpt-5' AS m UNION ALL SELECT 'o3'), s ORDER BY d, m, x",
            (SLOTS - 1, n, LO),
        )
        raw.commit()
        say(f"  sqlite: user {n}/{users} loaded")
    raw.execute(
        "CREATE INDEX ix_usage_buckets_user_id_bucket_start"
        " ON usage_buckets (user_id, bucket_start)"
    )
    raw.commit()
    raw.execute("PRAGMA journal_mode=WAL")
    raw.close()


def seed_postgres(url: str, users: int) -> None:
    """Bulk-load the buckets of ``users`` users into a migrated PostgreSQL database."""
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("SET synchronous_commit = off")
        raw.execute("SET maintenance_work_mem = '512MB'")
        raw.execute("DROP INDEX ix_usage_buckets_user_id_bucket_start")
        for n in range(1, users + 1):
            raw.execute(
                f"INSERT INTO usage_buckets ({COLUMNS})"
                f" SELECT %(n)s, d, 'codex', m, %(lo)s + x * 1800, 1, {VALUES.replace('%', '%%')}"
                " FROM generate_series(1, 2) d, (VALUES ('gpt-5'), ('o3')) AS models(m),"
                " generate_series(0, %(last)s) x ORDER BY d, m, x",
                {"n": n, "lo": LO, "last": SLOTS - 1},
            )
            say(f"  postgres: user {n}/{users} loaded")
        raw.execute(
            "CREATE INDEX ix_usage_buckets_user_id_bucket_start"
            " ON usage_buckets (user_id, bucket_start)"
        )


def roll_up(db: Database, users: int) -> None:
    """usage_daily of every user through the single rebuild path."""
    for n in range(1, users + 1):
        zone = ZoneInfo(ZONES[(n - 1) % len(ZONES)])

        def rebuild(c: Connection, n: int = n, zone: ZoneInfo = zone) -> None:
            rebuild_range(c, n, zone, date(2024, 10, 31), date(2026, 11, 1))

        db.write(rebuild, user_id=n)


def bucket_count(db: Database) -> int:
    """Rows in usage_buckets (0 when the schema is missing)."""
    try:
        return int(
            db.read(lambda c: c.execute(text("SELECT count(*) FROM usage_buckets")).scalar_one())
        )
    except Exception:  # a missing table means "not seeded yet"
        return 0


#: How long this run took to build each database (none when it reused kept ones).
SEEDED: list[str] = []


@contextmanager
def prepared(kind: str, size: int, keep: bool) -> Iterator[tuple[str, str, int]]:
    """A seeded database of about ``size`` buckets: yields (url, read token, buckets)."""
    users = users_for(size)
    name = f"ul_bench_queries_{users * PER_USER}"
    if kind == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.db"
        url = f"sqlite:///{path}"
    else:
        url = ensure_database(name)
    engine = make_engine(url, statement_timeout_ms=3_600_000)
    db = Database(engine)
    try:
        buckets = bucket_count(db)
        if buckets != users * PER_USER:
            say(f"{kind}: seeding {users} users, {users * PER_USER:,} buckets")
            started = time.perf_counter()
            engine.dispose()
            if kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            else:
                drop_database(name)
                create_database(name)
            upgrade(engine)
            token = create_people(db, users)
            engine.dispose()
            if kind == "sqlite":
                seed_sqlite(path, users)
            else:
                seed_postgres(libpq_url(url), users)
            roll_up(db, users)
            db.write(lambda c: c.execute(text("ANALYZE")))
            seconds = time.perf_counter() - started
            say(f"{kind}: seeded in {seconds:.0f} s")
            buckets = bucket_count(db)
            SEEDED.append(f"{kind} {buckets:,} buckets in {seconds:.0f} s")
        else:
            token = str(db.write(read_token))
        db.write(lambda c: leaderboard.refresh(c, PriceBooks().current(c), now=NOW))
        yield url, token, buckets
    finally:
        engine.dispose()
        if not keep:
            if kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            else:
                drop_database(name)


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def app_client(url: str, token: str, stack: ExitStack) -> tuple[Any, dict[str, str]]:
    """A TestClient of the real app over ``url`` (closed with ``stack``) and auth headers."""
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

    engine = make_engine(url)
    stack.callback(engine.dispose)
    settings = Settings(
        home=OUT,
        database_url=libpq_url(url),
        log_file="off",
        rate_per_minute=1e9,
        rate_burst=1_000_000,
    )
    app = create_app(settings, engine=engine, evidence=EvidenceLogger("off"))
    app.dependency_overrides[clock] = lambda: NOW
    client = stack.enter_context(TestClient(app))
    return client, {"Authorization": f"Bearer {token}"}


def measure(targets: list[tuple[str, str]], runs: int) -> list[dict[str, tuple[float, float]]]:
    """(p50, p99) in ms per endpoint for each (url, token), requests interleaved.

    The sizes take turns request by request (alternating which goes first), so load from
    anything else on the machine falls on both alike and the ratio compares like with like.
    """
    results: list[dict[str, tuple[float, float]]] = [{} for _ in targets]
    with ExitStack() as stack:
        clients = [app_client(url, token, stack) for url, token in targets]
        for label, path, params in ENDPOINTS:
            samples: list[list[float]] = [[] for _ in targets]
            for client, headers in clients:
                for _ in range(5):  # warm the caches and the price book
                    response = client.get(path, params=params, headers=headers)
                    assert response.status_code == 200, (path, response.text[:300])
            gc.collect()
            for run in range(runs):
                order = range(len(clients)) if run % 2 == 0 else reversed(range(len(clients)))
                for i in order:
                    client, headers = clients[i]
                    started = time.perf_counter()
                    response = client.get(path, params=params, headers=headers)
                    samples[i].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
            for i, timed in enumerate(samples):
                results[i][label] = (statistics.median(timed), percentile(timed, 0.99))
    return results


def table(rows: dict[str, dict[int, dict[str, tuple[float, float]]]], sizes: list[int]) -> str:
    """Markdown: per database and endpoint, p50/p99 at each size and the p99 ratio."""
    small, large = sizes
    a_few = f"{users_for(small) * PER_USER:,}"
    many = f"{users_for(large) * PER_USER:,}"
    lines = [
        f"| database | endpoint | p50 / p99 at {a_few} buckets | p50 / p99 at {many} buckets"
        " | p99 ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, by_size in rows.items():
        for label, _, _ in ENDPOINTS:
            a, b = by_size[small][label], by_size[large][label]
            lines.append(
                f"| {kind} | {label} | {a[0]:.1f} / {a[1]:.1f} ms | {b[0]:.1f} / {b[1]:.1f} ms"
                f" | {b[1] / a[1]:.2f}× |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Seed, measure, print (and, for a full run, record in docs/benchmarks.md)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 and 3 users, 30 runs, no docs update"
    )
    parser.add_argument(
        "--sizes", default="1000000,10000000", help="two bucket counts, small,large"
    )
    parser.add_argument("--runs", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases for reuse")
    args = parser.parse_args(argv)
    sizes = [PER_USER, 3 * PER_USER] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 30 if args.quick else args.runs
    rows: dict[str, dict[int, dict[str, tuple[float, float]]]] = {}
    actual: dict[str, list[int]] = {}
    loads: list[float] = []
    for kind in args.databases.split(","):
        with ExitStack() as stack:
            targets = []
            for size in sizes:
                url, token, buckets = stack.enter_context(prepared(kind, size, args.keep))
                targets.append((url, token))
                actual.setdefault(kind, []).append(buckets)
            say(f"{kind}: measuring at {' and '.join(f'{n:,}' for n in actual[kind])} buckets")
            loads.append(os.getloadavg()[0])
            rows[kind] = dict(zip(sizes, measure(targets, runs), strict=True))
            loads.append(os.getloadavg()[0])
    keyed = {k: {s: rows[k][s] for s in sizes} for k in rows}
    body = table(keyed, sizes)
    print(body)
    worst = max(
        b[1] / a[1]
        for k in keyed
        for a, b in (
            (keyed[k][sizes[0]][label], keyed[k][sizes[1]][label]) for label, _, _ in ENDPOINTS
        )
    )
    print(f"\nworst p99 ratio: {worst:.2f}× (target ≤ 1.5×)")
    if not args.quick:
        command = (
            "`.venv/bin/python -m bench.queries" + (" " + " ".join(argv) if argv else "") + "`"
        )
        sized = ", ".join(
            f"{k}: {' and '.join(f'{n:,}' for n in v)} buckets" for k, v in actual.items()
        )
        write_section(
            "Queries",
            f"Command: {command} ({sized}; {runs} timed requests per endpoint and size"
            " after 5 warm-ups, the two sizes interleaved).\n\n"
            + body
            + f"\n\nWorst p99 ratio large/small: **{worst:.2f}×** (target ≤ 1.5×). The 1-minute"
            f" load average during the measurements ranged {min(loads):.1f}–{max(loads):.1f}"
            f" on {os.cpu_count()} cores.\n\n"
            + NOTES
            + (
                "\n\nBuilding the data in this run (one INSERT … SELECT per user with the "
                "`(user_id, bucket_start)` index dropped during the load and rebuilt after, "
                "rollups through `rollups.rebuild_range`, then ANALYZE): " + "; ".join(SEEDED) + "."
                if SEEDED
                else "\n\nThis run reused databases kept by an earlier `--keep` run."
            ),
        )


NOTES = """\
Every size holds users of the same shape (2 devices × 2 models × every half-hour of two
years = 140,160 buckets each; the sizes differ in the number of users), and the measured
user is the same, so the work per request is the same and only the table size changes.
Requests run in-process through FastAPI's TestClient against the real app (token lookup,
rate limiter, parameter checks, one read transaction, pricing with the merged price book,
JSON), so the times include HTTP framing but no network. `bucket_revisions` is empty in
this benchmark: no read endpoint touches it (the EXPLAIN test in
`tests/api/test_read_explain.py` proves it). Ranges: one year (2025-11-01 … 2026-10-31)
where the endpoint takes one; hourly is one day; the other-time-zone line is the 93-day cap
served from `usage_buckets`; the leaderboard reads a snapshot."""


if __name__ == "__main__":
    main(sys.argv[1:])
