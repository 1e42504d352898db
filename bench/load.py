"""Load: a fleet of devices pushing every half-hour, with bursts, plus dashboard readers.

The fleet model: ``--devices`` devices (two per user) each push once every simulated
half-hour; a tracker pushes right after the half-hour turns, so each push lands in a burst at
:00 and :30. Time is compressed: one simulated half-hour lasts ``--half-hour`` seconds (default
the longer of 30 s and 1.5 × the window) and every device pushes at a random moment of the
first ``--burst-window`` seconds of it (open-loop: on schedule, whatever the server's latency;
several windows give one run each). A push carries the buckets of the
half-hour that just ended (1–3 sources and models; one device in ten also sends a day of
backlog, 48 more, on its first push) with an Idempotency-Key, as the tracker does.
``--readers`` dashboard readers poll the read API (``/v1/usage/*``, ``/v1/me``,
``/v1/devices``, ``/v1/leaderboard``; ``/healthz`` when the schema has none of them) every
``--read-every`` seconds throughout.

The fleet runs in a separate process (asyncio + httpx) on loopback against a real
``usageledger serve``: SQLite with 1 worker, then PostgreSQL with ``--pg-workers`` workers, with
the default rate limits and evidence lines written to a file. Everything is bounded: a fixed
number of half-hours, a timeout on every request, a deadline on the run. The server's memory is
the RSS of its whole process tree, sampled from /proc every 0.2 s.

Run: ``python -m bench.load [--devices 2000] [--burst-window 10 60] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import write_section
from bench.harness import ServeProcess, exit_on_sigterm, pg_database
from usageledger.ledger import accounts
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade

SOURCES = ("codex", "claude", "gemini")
MODELS = {"codex": "gpt-5-codex", "claude": "claude-sonnet-4-5", "gemini": "gemini-2.5-pro"}
READ_PATHS = (
    "/v1/usage/summary",
    "/v1/usage/daily",
    "/v1/usage/hourly",
    "/v1/me",
    "/v1/devices",
    "/v1/leaderboard",
)


@dataclass(frozen=True)
class Fleet:
    """The workload."""

    devices: int = 2000
    half_hours: int = 4
    half_hour_s: float = 30.0
    burst_window_s: float = 10.0
    readers: int = 20
    read_every_s: float = 2.0
    timeout_s: float = 10.0
    seed: int = 1

    @property
    def burst_rate(self) -> float:
        """Pushes per second while a burst lasts."""
        return self.devices / self.burst_window_s


def setup(url: str, fleet: Fleet) -> tuple[list[str], list[str]]:
    """Migrate; create devices // 2 users with two device tokens each and a read token."""
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    users = (fleet.devices + 1) // 2

    def go(conn: Any) -> tuple[list[str], list[str]]:
        devices: list[str] = []
        reads: list[str] = []
        for u in range(users):
            name = f"user{u}"
            accounts.create_user(conn, name, time_zone="Europe/Berlin", now_ms=1)
            for d in range(2):
                if len(devices) < fleet.devices:
                    secret, _ = accounts.issue_token(
                        conn, name, kind="device", device_name=f"dev{d}", now_ms=1
                    )
                    devices.append(secret)
            secret, _ = accounts.issue_token(conn, name, kind="read", device_name=None, now_ms=1)
            reads.append(secret)
        return devices, reads

    tokens = db.write(go)
    engine.dispose()
    return tokens


def push_body(device: int, half_hour: int, start: int, rng: random.Random) -> tuple[bytes, int]:
    """The batch a device pushes after ``half_hour`` ends; returns it and its bucket count."""
    sources = SOURCES[: 1 + (device + half_hour) % 3]
    slots = [start + half_hour * 1800]
    if half_hour == 0 and device % 10 == 0:  # catching up after a day offline
        slots = [start + (half_hour - i) * 1800 for i in range(49)]
    items = []
    for slot in slots:
        for source in sources:
            inp = 1000 * (half_hour + 1) + rng.randint(0, 999)
            cached, out = inp // 2, inp // 5
            items.append(
                {
                    "bucket_start": datetime.fromtimestamp(slot, UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "source": source,
                    "model": MODELS[source],
                    "revision": half_hour + 1,
                    "input_tokens": inp,
                    "cached_input_tokens": cached,
                    "output_tokens": out,
                    "reasoning_output_tokens": out // 4,
                    "total_tokens": inp + cached + out,
                    "cache_write_tokens": inp // 10,
                }
            )
    return json.dumps({"schema_version": 2, "buckets": items}).encode(), len(items)


@dataclass
class Results:
    """What the fleet saw."""

    ingest_ms: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    buckets: int = 0
    pushes: int = 0
    reads: int = 0
    burst_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0


async def fleet_run(base: str, fleet: Fleet, devices: list[str], reads: list[str]) -> Results:
    """Run the whole fleet; every loop is bounded by the number of half-hours."""
    rng = random.Random(fleet.seed)
    results = Results()
    # Buckets of half-hours that ended before now, so none is in the future.
    start = (int(time.time()) // 1800 - fleet.half_hours - 2) * 1800
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under us.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=2)
    timeout = httpx.Timeout(fleet.timeout_s)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as http:
        paths = set((await http.get("/openapi.json")).json()["paths"])
        read_paths = [p for p in READ_PATHS if p in paths] or ["/healthz"]

        async def push(device: int, half_hour: int, delay: float) -> None:
            await asyncio.sleep(delay)
            body, count = push_body(device, half_hour, start, rng)
            headers = {
                "Authorization": f"Bearer {devices[device]}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"load-{device}-{half_hour}",
            }
            started = time.perf_counter()
            try:
                response = await http.post("/v1/ingest", content=body, headers=headers)
            except httpx.TransportError as exc:
                results.statuses[f"ingest {type(exc).__name__}"] += 1
                return
            results.ingest_ms.append((time.perf_counter() - started) * 1000)
            results.statuses[f"ingest {response.status_code}"] += 1
            results.pushes += 1
            if response.is_success:
                results.buckets += count

        async def reader(n: int, until: float) -> None:
            token = reads[n % len(reads)]
            await asyncio.sleep(rng.uniform(0, fleet.read_every_s))
            while time.monotonic() < until:
                path = rng.choice(read_paths)
                started = time.perf_counter()
                try:
                    response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                except httpx.TransportError as exc:
                    results.statuses[f"read {type(exc).__name__}"] += 1
                else:
                    results.read_ms.append((time.perf_counter() - started) * 1000)
                    results.statuses[f"read {response.status_code}"] += 1
                    results.reads += 1
                await asyncio.sleep(fleet.read_every_s)

        began = time.monotonic()
        until = began + fleet.half_hours * fleet.half_hour_s
        readers = [asyncio.create_task(reader(n, until)) for n in range(fleet.readers)]
        for half_hour in range(fleet.half_hours):
            tick = began + half_hour * fleet.half_hour_s
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            burst = time.monotonic()
            await asyncio.gather(
                *(
                    push(d, half_hour, rng.uniform(0, fleet.burst_window_s))
                    for d in range(len(devices))
                )
            )
            results.burst_s.append(time.monotonic() - burst)
        await asyncio.gather(*readers)
        results.wall_s = time.monotonic() - began
    return results


def drive(base: str, fleet: Fleet, devices: list[str], reads: list[str], out: str) -> None:
    """The fleet process: run it and write the results as JSON to ``out``."""
    results = asyncio.run(fleet_run(base, fleet, devices, reads))
    Path(out).write_text(
        json.dumps({**results.__dict__, "statuses": dict(results.statuses)}, default=list)
    )


def tree_rss_kib(root: int) -> int:
    """RSS (KiB) of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@contextlib.contextmanager
def sample_rss(pid: int, every_s: float = 0.2) -> Iterator[list[int]]:
    """Sample the tree's RSS in a thread while the block runs; yields the samples (KiB)."""
    samples: list[int] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            samples.append(tree_rss_kib(pid))
            done.wait(every_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(timeout=5)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def server_side(evidence: Path) -> dict[str, list[float]]:
    """Ingest latency and its database part as the server measured them (evidence lines)."""
    app, db, wait = [], [], []
    for line in evidence.read_text().splitlines():
        entry = json.loads(line)
        if entry["function"] == "ingest" and entry["status"] < 300:
            app.append(float(entry["latency_ms"]))
            db.append(float(entry["upstream_latency_ms"] or 0.0))
            wait.append(float(entry.get("db_wait_ms") or 0.0))
    return {
        "app": [pct(app, q) for q in (50, 95, 99)],
        "db": [pct(db, q) for q in (50, 95, 99)],
        "wait": [pct(wait, q) for q in (50, 95, 99)],
    }


def measure(kind: str, url: str, fleet: Fleet, workers: int, workdir: Path) -> dict[str, Any]:
    """Run the fleet against one database and summarise."""
    devices, reads = setup(url, fleet)
    evidence = workdir / f"evidence-{kind}-{fleet.burst_window_s:g}.log"
    env = {
        "USAGELEDGER_DATABASE_URL": url,
        "USAGELEDGER_HOME": str(workdir / "home"),
        "USAGELEDGER_LOG_FILE": str(evidence),
    }
    server = ServeProcess(env, workers=workers, log=workdir / f"server-{kind}.log")
    out = workdir / f"fleet-{kind}.json"
    server.start()
    try:
        assert server.proc is not None
        idle_kib = tree_rss_kib(server.proc.pid)
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=drive, args=(server.base, fleet, devices, reads, str(out)), daemon=True
        )
        with sample_rss(server.proc.pid) as samples:
            process.start()
            process.join(timeout=fleet.half_hours * fleet.half_hour_s + 300)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
                raise RuntimeError("the fleet did not finish in time")
    finally:
        server.stop()
    data = json.loads(out.read_text())
    statuses: dict[str, int] = data["statuses"]
    total = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s.split()[1].startswith("5"))
    failed = sum(n for s, n in statuses.items() if not s.split()[1].startswith("2"))
    ingest, read = data["ingest_ms"], data["read_ms"]
    return {
        "database": kind,
        "workers": workers,
        "pushes": data["pushes"],
        "buckets": data["buckets"],
        "reads": data["reads"],
        "sustained": data["buckets"] / data["wall_s"],
        "burst_buckets_per_s": data["buckets"] / max(1e-9, sum(data["burst_s"])),
        "burst_s": max(data["burst_s"]),
        "ingest": [pct(ingest, q) for q in (50, 95, 99)] + [max(ingest, default=0.0)],
        "read": [pct(read, q) for q in (50, 95, 99)],
        "server_errors": server_errors,
        "error_rate": failed / total if total else 0.0,
        "statuses": statuses,
        "idle_mib": idle_kib / 1024,
        "peak_mib": max(samples, default=0) / 1024,
        "mean_ingest": statistics.fmean(ingest) if ingest else 0.0,
        "server": server_side(evidence),
    }


def row(r: dict[str, Any]) -> str:
    """One line of the results table."""
    i, rd, app, db = r["ingest"], r["read"], r["server"]["app"], r["server"]["db"]
    wait = r["server"].get("wait", [0.0, 0.0, 0.0])
    verdict = "yes" if r["server_errors"] == 0 and i[2] < 400 else "**no**"
    return (
        f"| {r['database']} | {r['workers']} | {r['window']:g} s ({r['rate']:,.0f}/s) | "
        f"{r['pushes']:,} | {r['buckets']:,} | {r['sustained']:,.0f} | "
        f"{r['burst_buckets_per_s']:,.0f} | {i[0]:.0f} / {i[1]:.0f} / **{i[2]:.0f}** | "
        f"{app[0]:.0f} / {app[2]:.0f} ({db[0]:.0f} / {db[2]:.0f}; {wait[2]:.0f}) | "
        f"{r['reads']:,} | {rd[0]:.0f} / {rd[1]:.0f} / {rd[2]:.0f} | {r['server_errors']} | "
        f"{r['error_rate']:.2%} | {r['idle_mib']:.0f} → {r['peak_mib']:.0f} | "
        f"{r['load'][0]:.1f} → {r['load'][1]:.1f} | {verdict} |"
    )


HEADER = [
    "| database | workers | burst window (pushes/s) | pushes | buckets | sustained buckets/s "
    "| buckets/s in bursts | ingest p50 / p95 / p99 ms "
    "| in the server: p50 / p99 ms (database p50 / p99; queued p99) "
    "| reads | read p50 / p95 / p99 ms | 5xx | non-2xx | server RSS MiB (idle → peak) "
    "| load avg (start → end) | targets met |",
    "|---" * 16 + "|",
]


READING = (
    "Reading the numbers: when the client's p99 is far above the server's, the requests "
    "waited before the application saw them (the kernel's accept queue, a server event loop "
    "short of CPU, or the fleet's own loop): the machine's two cores were saturated — compare "
    "the load average, which counts other jobs on the machine too (another job's PostgreSQL "
    "work, for one). A queue that forms at the start of a burst (a fresh server opens its "
    "database connections then) drains only when the arrival rate drops below what the "
    "saturated machine serves. *queued* is the SQLite writer queue in the server process; "
    "*database* is time in the database."
)


def main(argv: list[str] | None = None) -> None:
    """Run the fleet on SQLite and PostgreSQL for each burst window and record the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = Fleet()
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--half-hours", type=int, default=defaults.half_hours)
    parser.add_argument(
        "--burst-window",
        type=float,
        nargs="+",
        default=[defaults.burst_window_s],
        help="seconds in which the whole fleet pushes (several: one run each)",
    )
    parser.add_argument(
        "--half-hour", type=float, help="seconds (default: the longer of 30 s and 1.5 × window)"
    )
    parser.add_argument("--readers", type=int, default=defaults.readers)
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="200 devices, 2 half-hours, no docs")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    fleets = [
        Fleet(
            devices=200 if args.quick else args.devices,
            half_hours=2 if args.quick else args.half_hours,
            half_hour_s=args.half_hour or max(30.0, 1.5 * window),
            burst_window_s=window,
            readers=args.readers,
        )
        for window in args.burst_window
    ]
    if any(f.burst_window_s >= f.half_hour_s for f in fleets):
        parser.error("every --burst-window must be shorter than --half-hour")
    workdir = Path(tempfile.mkdtemp(prefix="ul-bench-load-"))
    results: list[dict[str, Any]] = []
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for fleet in fleets:
        for kind in kinds:
            load = os.getloadavg()[0]
            with exit_on_sigterm():
                if kind == "sqlite":
                    url = f"sqlite:///{workdir / f'load-{len(results)}.db'}"
                    result = measure(kind, url, fleet, 1, workdir)
                else:
                    with pg_database("ul_bench_load") as url:
                        result = measure(kind, url, fleet, args.pg_workers, workdir)
            result.update(
                window=fleet.burst_window_s,
                rate=fleet.burst_rate,
                half_hour=fleet.half_hour_s,
                load=(load, os.getloadavg()[0]),
            )
            results.append(result)
            print(row(result), flush=True)
    table = "\n".join(HEADER + [row(r) for r in results])
    print(table)
    if args.quick or args.no_docs:
        return
    command = "python -m bench.load" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--devices", args.devices, defaults.devices),
            ("--half-hours", args.half_hours, defaults.half_hours),
            ("--burst-window", " ".join(f"{w:g}" for w in args.burst_window), "10"),
            ("--half-hour", args.half_hour, None),
            ("--readers", args.readers, defaults.readers),
            ("--pg-workers", args.pg_workers, 2),
            ("--db", args.db, "both"),
        )
        if value != default
    )
    statuses = "; ".join(
        f"{r['database']} at {r['window']:g} s: "
        + ", ".join(f"{k} × {v:,}" for k, v in sorted(r["statuses"].items()))
        for r in results
    )
    fleet = fleets[0]
    write_section(
        "Load",
        f"Command: `{command}`. A fleet of {fleet.devices:,} devices ({fleet.devices // 2:,} "
        f"users with two devices each) pushes once per simulated half-hour for "
        f"{fleet.half_hours} half-hours. Time is compressed: a simulated half-hour lasts "
        "max(30 s, 1.5 × the burst window), and every device pushes at a random moment of the "
        "burst window at its start (the :00 / :30 burst), open-loop, so the burst rate is "
        "devices ÷ window. A push carries the half-hour's buckets (1–3 sources; one device in "
        "ten also sends a day of backlog on its first push) with an Idempotency-Key. "
        f"{fleet.readers} dashboard readers poll the read API every {fleet.read_every_s:g} s. "
        "The fleet runs in its own process (asyncio + httpx, at most 256 connections) on "
        "loopback against a real `usageledger serve` with the default rate limits and M1 lines "
        "written to a file. Latencies are measured by the client (send to full response), so "
        "they include queueing in the client and the server; *in the server* is the M1 "
        "`latency_ms` of acknowledged pushes (from the app receiving the request to the "
        "response) and, in brackets, its `upstream_latency_ms` (database time) and the p99 of "
        "`db_wait_ms` (time queued for SQLite's write lock in the server process; 0 on "
        "PostgreSQL). *sustained* is "
        "acknowledged "
        "buckets over the whole run; *in bursts* over the time from each burst's start to its "
        "last response. Server RSS is the server's whole process tree, sampled every 0.2 s. "
        "Targets: no 5xx; ingest p99 under 400 ms at the burst rate. The 2-core machine was "
        "shared with other jobs (see the load average), so the numbers are noisy.\n\n"
        + table
        + f"\n\nResponses: {statuses}.\n\n"
        + READING,
    )


if __name__ == "__main__":
    main()
