"""Ingest throughput: the HTTP API against the same batches applied directly through the store.

Sustained buckets/s with batches of 500 from several concurrent clients, first with new keys
(every bucket inserted), then the same batches again (every bucket unchanged). The HTTP path
runs a real `usageledger serve` on loopback; the direct path calls the ledger's write function
(`ledger.ingest.apply_batch` in a per-user write transaction, the same as the route) from the
same number of threads. Run: ``python -m bench.ingest [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench.common import write_section
from bench.harness import ServeProcess, pg_database
from usageledger.ledger import accounts
from usageledger.ledger.ingest import BucketWrite, apply_batch, touch_device
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade

START = datetime(2025, 1, 1, tzinfo=UTC)
#: The repeat phase is short (a fraction of a second directly): the median of this many runs,
#: on both paths alike, so that one stall of a shared machine does not decide the ratio.
REPEATS = 3
MODELS = ("gpt-5-codex", "claude-sonnet-4-5", "gemini-2.5-pro", "o3")


def make_batches(clients: int, per_client: int, size: int) -> list[list[list[dict[str, Any]]]]:
    """Distinct keys per client (one user, one device each), ``per_client`` batches of ``size``."""
    out = []
    for client in range(clients):
        batches = []
        for b in range(per_client):
            items = []
            for i in range(size):
                n = b * size + i
                slot, model = divmod(n, len(MODELS))
                inp, cached, outp = 1000 + n % 97, 500, 200 + client
                items.append(
                    {
                        "bucket_start": (START + timedelta(minutes=30 * slot)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                        "source": "codex",
                        "model": MODELS[model],
                        "revision": 1,
                        "input_tokens": inp,
                        "cached_input_tokens": cached,
                        "output_tokens": outp,
                        "reasoning_output_tokens": 50,
                        "total_tokens": inp + cached + outp,
                        "cache_write_tokens": 100,
                    }
                )
            batches.append(items)
        out.append(batches)
    return out


def setup_users(url: str, clients: int) -> list[tuple[int, int, str]]:
    """One user and device per client; returns (user_id, device_id, token)."""
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    out = []
    for c in range(clients):

        def go(conn: Any, c: int = c) -> tuple[int, int, str]:
            uid = accounts.create_user(conn, f"u{c}", time_zone="Europe/Berlin", now_ms=1)
            token, _ = accounts.issue_token(conn, f"u{c}", kind="device", device_name="d", now_ms=1)
            return uid, 1, token

        out.append(db.write(go))
    engine.dispose()
    return out


def run_http(base: str, tokens: list[str], batches: list[list[list[dict[str, Any]]]]) -> float:
    """Seconds to push every client's batches over HTTP, clients in parallel."""
    bodies = [
        [json.dumps({"schema_version": 2, "buckets": b}).encode() for b in c] for c in batches
    ]

    def client(i: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for body in bodies[i]:
                r = http.post(
                    "/v1/ingest",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {tokens[i]}",
                        "Content-Type": "application/json",
                    },
                )
                r.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        list(pool.map(client, range(len(tokens))))
    return time.perf_counter() - started


def run_direct(
    url: str, users: list[tuple[int, int, str]], batches: list[list[list[dict[str, Any]]]]
) -> float:
    """Seconds to apply the same batches through the store, clients in parallel."""
    engine = make_engine(url)
    db = Database(engine)
    tz = ZoneInfo("Europe/Berlin")
    writes = [
        [
            [
                BucketWrite(
                    source=i["source"],
                    model=i["model"],
                    bucket_start=int(
                        datetime.fromisoformat(i["bucket_start"].replace("Z", "+00:00")).timestamp()
                    ),
                    revision=i["revision"],
                    counts={k: v for k, v in i.items() if k.endswith("_tokens")},
                )
                for i in b
            ]
            for b in c
        ]
        for c in batches
    ]

    def client(n: int) -> None:
        user_id, device_id, _ = users[n]
        for batch in writes[n]:

            def go(conn: Any, batch: list[BucketWrite] = batch) -> None:
                apply_batch(
                    conn,
                    user_id=user_id,
                    device_id=device_id,
                    tz=tz,
                    writes=batch,
                    origin="bench",
                    now_ms=1,
                )
                touch_device(conn, user_id, device_id, 1)

            db.write(go, user_id=user_id)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(client, range(len(users))))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def measure(kind: str, url_for: Any, clients: int, per_client: int, workers: int) -> list[str]:
    """Rows of the results table for one database kind."""
    batches = make_batches(clients, per_client, 500)
    total = clients * per_client * 500
    rows = []
    results: dict[str, dict[str, float]] = {}
    load = os.getloadavg()[0]
    for path in ("direct", "http"):
        with url_for(f"{kind}_{path}") as url:
            users = setup_users(url, clients)
            if path == "direct":
                new = run_direct(url, users, batches)
                repeat = statistics.median(run_direct(url, users, batches) for _ in range(REPEATS))
            else:
                env = {
                    "USAGELEDGER_DATABASE_URL": url,
                    "USAGELEDGER_LOG_FILE": "off",
                    "USAGELEDGER_RATE_PER_MINUTE": "1000000",
                    "USAGELEDGER_RATE_BURST": "100000",
                }
                with ServeProcess(env, workers=workers) as server:
                    base = server.base
                    tokens = [u[2] for u in users]
                    new = run_http(base, tokens, batches)
                    repeat = statistics.median(
                        run_http(base, tokens, batches) for _ in range(REPEATS)
                    )
            results[path] = {"new": total / new, "repeat": total / repeat}
    loads = f"{load:.1f} → {os.getloadavg()[0]:.1f}"
    for phase in ("new", "repeat"):
        direct, http = results["direct"][phase], results["http"][phase]
        rows.append(
            f"| {kind} | {phase} keys | {clients} | {total:,} | {direct:,.0f} | {http:,.0f} | "
            f"{http / direct:.2f} | {loads} |"
        )
        print(rows[-1], flush=True)
    return rows


READING = (
    "Where the time of an HTTP request goes (repeat keys on SQLite; py-spy, and the CPU time "
    "of the server's threads, 2026-11-28): about 6 ms of server CPU per 500-bucket request — "
    "validation about 1.5 ms (pydantic straight from the bytes, then every rule in one pass), "
    "the write transaction about 2.5 ms (the part *direct* measures), HTTP and the event loop "
    "about 0.9 ms, the token check, receipt and body hash about 0.3 ms, threads the rest — "
    "plus about 1.5 ms of the benchmark's own httpx client on the same two cores. When every "
    "bucket is `unchanged` the database does little, and reading and checking 500 buckets "
    "costs about as much again as the database's part, so the repeat ratio on SQLite stays "
    "near 0.3–0.4 on this machine; with new keys, where the database does real work, HTTP "
    "keeps well above half of the direct rate on both databases."
)


def main(argv: list[str] | None = None) -> None:
    """Run the ingest benchmark on SQLite and PostgreSQL and record the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run (no docs update)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20, help="batches of 500 per client")
    args = parser.parse_args(argv)
    per_client = 2 if args.quick else args.batches
    tmp = Path(tempfile.mkdtemp(prefix="ul-bench-ingest-"))

    from contextlib import contextmanager

    @contextmanager
    def sqlite_url(name: str) -> Any:
        yield f"sqlite:///{tmp / (name + '.db')}"

    header = [
        "| database | phase | clients | buckets | direct buckets/s | HTTP buckets/s "
        "| HTTP / direct | load avg (start → end) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header))
    rows = measure("sqlite", sqlite_url, args.clients, per_client, workers=1)
    rows += measure(
        "postgresql", lambda n: pg_database(f"ul_bench_{n}"), args.clients, per_client, workers=2
    )
    if not args.quick:
        command = "python -m bench.ingest"
        if args.batches != 20 or args.clients != 4:
            command += f" --clients {args.clients} --batches {args.batches}"
        write_section(
            "Ingest",
            f"Command: `{command}`. Batches of 500 buckets; each client is one user and "
            "device with its own keys. *direct* applies the batches with "
            "`ledger.ingest.apply_batch` in a per-user write transaction (no HTTP, no JSON, no "
            "validation); *HTTP* posts the same batches as JSON to a real `usageledger serve` "
            "on loopback (SQLite: 1 worker; PostgreSQL: 2 workers), with the clients in the "
            "same process as the timer. *new keys* inserts every bucket; *repeat* sends the "
            "same batches again (every bucket `unchanged`; the median of 3 runs on each path). "
            "The load average (1 min) is the machine's, shared with other jobs. "
            "Target: HTTP / direct ≥ 0.5.\n\n" + "\n".join(header + rows) + "\n\n" + READING,
        )
    os.environ.pop("_", None)


if __name__ == "__main__":
    main()
