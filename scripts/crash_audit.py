"""Crash audit: SIGKILL a real server under load, restart it, and prove nothing was lost.

A real ``usageledger serve`` runs on loopback (SQLite with 1 worker, then PostgreSQL with 2
workers in a scratch database). Concurrent clients (threads, one per device, several devices
per user) upload batches and record every batch the server ACKNOWLEDGED (a 2xx). The server's
whole process group is killed with SIGKILL at random moments; while it is down the database is
read directly and checked; then it is restarted and the clients retry what was not
acknowledged with the same body (and the same ``Idempotency-Key`` when the batch had one).

Every value is absolute and unique to its batch: bucket ``k`` in a device's batch ``i`` has
revision ``i + 1`` and ``input_tokens = i * 10000 + k + 1``, so any stored row says which batch
wrote it. A device sends its batches one after another, so at any moment it has at most one
unacknowledged batch. The checks, after every kill and at the end:

- **lost**: a bucket of an acknowledged batch whose stored revision is below that batch's (or
  which is missing): counted per bucket. Checked after every kill too, because a later batch
  rewriting the same bucket would hide the loss at the end.
- **wrong**: a stored bucket or revision row whose values are not those of the batch its
  revision names (a torn or mixed write).
- **duplicated**: two ``bucket_revisions`` rows for one key and revision, a bucket whose row in
  ``usage_buckets`` is not the highest of its revisions, or a revision row of a batch that
  never touched that key (a double application).
- **partial**: a batch some of whose buckets carry its revision while others do not: a batch
  is all-or-nothing, so a device's unacknowledged batch must be either entirely at its
  revision or not at all (acknowledged batches are checked bucket by bucket as *lost*).
- **integrity**: SQLite ``PRAGMA integrity_check`` must say ``ok``.
- **rollups**: ``usage_daily`` must equal the sums of ``usage_buckets`` by each user's local
  day (computed here in Python), and, when ``usageledger.ops.verify`` exists, ``verify`` must
  find no drift.
- **receipts**: every acknowledged batch with an Idempotency-Key has exactly one completed
  receipt.

Run: ``python -m scripts.crash_audit [--kills 20] [--db sqlite|postgresql|both]``, or
``python -m scripts.crash_audit --full`` for the full-size run recorded in docs/benchmarks.md
(at least 20 SIGKILLs per database, 8 concurrent devices, batches of up to 500). Exit status
0 when every check holds, 1 otherwise, 2 when the run could not be carried out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from sqlalchemy import func, select

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_section
from bench.harness import PG_ADMIN, ServeProcess, exit_on_sigterm, pg_database
from usageledger.buckets import COUNT_COLUMNS, COUNTS_BY_VERSION, local_day
from usageledger.ledger import accounts
from usageledger.ledger.receipts import idempotency_key_hash
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade
from usageledger.store.tables import (
    bucket_revisions,
    ingest_receipts,
    usage_buckets,
    usage_daily,
    users,
)

SOURCES = ("codex", "claude")
MODELS = ("gpt-5-codex", "claude-sonnet-4-5")
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
#: The first half-hour of every device's keys: just before Europe's DST change, so the local
#: days of Berlin have 23 hours and rollups must get that right.
BASE = int(datetime(2026, 3, 28, 18, 0, tzinfo=UTC).timestamp())

Key = tuple[int, int, str, str, int]  # user_id, device_id, source, model, bucket_start
Values = tuple[int, ...]  # in COUNT_COLUMNS order


@dataclass(frozen=True)
class Options:
    """How big a run is."""

    kills: int = 5
    devices: int = 4
    users: int = 2
    batch_size: int = 50
    keys: int = 200
    up_min: float = 0.2
    up_max: float = 1.5
    sqlite_workers: int = 1
    postgres_workers: int = 2
    seed: int = 1
    deadline_s: float = 900.0


def values_of(index: int, k: int) -> Values:
    """The counts of bucket ``k`` in a device's batch ``index`` (unique per batch)."""
    inp = index * 10_000 + k + 1
    cached = (index * 31 + k) % 997
    out = (index * 17 + k) % 1009 + 1
    write = inp // 4
    # Schema v3: the one-hour part of the writes, then the long-context, fast and
    # fast-long-context parts of (input, cached, write, write 1h, output), each within the
    # subset rules (buckets.subset_violations): both ≤ either, long + fast − both ≤ total;
    # then the web searches.
    classes = [(inp // d, cached // d, write // d, write // d // 2, out // d) for d in (2, 3, 6)]
    return (
        inp,
        cached,
        out,
        out // 3,
        inp + cached + out,
        write,
        write // 2,
        *(n for counts in classes for n in counts),
        k % 3,
    )


def key_parts(k: int) -> tuple[str, str, int]:
    """Source, model and bucket start of a device's key number ``k``."""
    return SOURCES[k % 2], MODELS[(k // 2) % 2], BASE + (k // 4) * 1800


@dataclass
class Batch:
    """One upload: which keys, its revision, its body and its Idempotency-Key (or none)."""

    device: int
    index: int
    keys: list[int]
    body: bytes
    idempotency_key: str | None

    @property
    def revision(self) -> int:
        """Every bucket of the batch carries this revision."""
        return self.index + 1


def make_batch(device: int, index: int, rng: random.Random, options: Options) -> Batch:
    """A batch of 1…``batch_size`` distinct keys of ``device``."""
    size = rng.randint(1, min(options.batch_size, options.keys))
    keys = rng.sample(range(options.keys), size)
    items = []
    for k in keys:
        source, model, start = key_parts(k)
        counts = dict(zip(COUNT_COLUMNS, values_of(index, k), strict=True))
        items.append(
            {
                "bucket_start": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": source,
                "model": model,
                "revision": index + 1,
                **counts,
            }
        )
    body = json.dumps({"schema_version": max(COUNTS_BY_VERSION), "buckets": items}).encode()
    key = f"crash-{device}-{index}" if rng.random() < 0.7 else None
    return Batch(device, index, keys, body, key)


@dataclass
class Device:
    """A client's identity and what the server acknowledged to it."""

    number: int
    user_id: int
    device_id: int
    token: str
    zone: str
    acked: list[Batch] = field(default_factory=list)
    current: Batch | None = None
    #: key number → the acknowledged batch that last wrote it.
    latest: dict[int, Batch] = field(default_factory=dict)


@dataclass
class Tally:
    """The audit's result for one database."""

    database: str
    kills: int = 0
    batches: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    buckets_acknowledged: int = 0
    requests: int = 0
    retries: int = 0
    replayed: int = 0
    in_flight_409: int = 0
    server_errors: int = 0
    rejected: int = 0
    lost: int = 0
    wrong: int = 0
    duplicated: int = 0
    partial: int = 0
    integrity: str = "ok"
    rollup_mismatches: int = 0
    verify_drifts: int | None = None
    receipts_bad: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return (
            self.kills > 0
            and self.lost == self.wrong == self.duplicated == self.partial == 0
            and self.integrity == "ok"
            and self.rollup_mismatches == 0
            and not self.verify_drifts
            and self.receipts_bad == 0
            and self.rejected == 0
        )

    def note(self, problem: str) -> None:
        """Keep the first problems found, for the report."""
        if len(self.problems) < 20:
            self.problems.append(problem)


class Client(threading.Thread):
    """One device: sends its batches in order, each until it is acknowledged."""

    def __init__(
        self, device: Device, base: str, options: Options, tally: Tally, lock: threading.Lock
    ) -> None:
        super().__init__(name=f"device-{device.number}", daemon=True)
        self.device = device
        self.base = base
        self.options = options
        self.tally = tally
        self.lock = lock
        self.rng = random.Random(options.seed * 1000 + device.number)
        self.finish = threading.Event()  # finish the current batch, then stop
        self.abort = threading.Event()  # stop now
        self.deadline = time.monotonic() + options.deadline_s

    def run(self) -> None:
        """Send batch after batch until told to finish (or the deadline)."""
        index = 0
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self.finish.is_set() and time.monotonic() < self.deadline:
                batch = make_batch(self.device.number, index, self.rng, self.options)
                with self.lock:
                    self.device.current = batch
                    self.tally.batches += 1
                if not self.send(http, batch):
                    return
                index += 1

    def send(self, http: httpx.Client, batch: Batch) -> bool:
        """Send ``batch`` until a 2xx; False if stopped first or refused for good."""
        headers = {
            "Authorization": f"Bearer {self.device.token}",
            "Content-Type": "application/json",
        }
        if batch.idempotency_key is not None:
            headers["Idempotency-Key"] = batch.idempotency_key
        attempt = 0
        while not self.abort.is_set() and time.monotonic() < self.deadline:
            if attempt:
                with self.lock:
                    self.tally.retries += 1
            attempt += 1
            with self.lock:
                self.tally.requests += 1
            try:
                response = http.post("/v1/ingest", content=batch.body, headers=headers)
            except httpx.TransportError:  # the server died or is not up yet
                time.sleep(self.rng.uniform(0.05, 0.2))
                continue
            if response.is_success:
                self.acknowledge(batch, response)
                return True
            with self.lock:
                if response.status_code == 409:
                    self.tally.in_flight_409 += 1
                elif response.status_code >= 500:
                    self.tally.server_errors += 1
                else:
                    self.tally.rejected += 1
                    self.tally.note(
                        f"device {self.device.number} batch {batch.index}: "
                        f"{response.status_code} {response.text[:200]}"
                    )
                    return False
            time.sleep(min(2.0, float(response.headers.get("retry-after", "0.2"))))
        return False

    def acknowledge(self, batch: Batch, response: httpx.Response) -> None:
        """Record an acknowledged batch."""
        reply = response.json()
        counted = sum(reply[n] for n in ("inserted", "updated", "unchanged", "stale", "conflicts"))
        with self.lock:
            if counted != len(batch.keys) or reply["stale"] or reply["conflicts"]:
                self.tally.note(f"device {self.device.number} batch {batch.index}: reply {reply}")
                self.tally.wrong += 1
            if response.headers.get("idempotent-replayed") == "true":
                self.tally.replayed += 1
            self.device.acked.append(batch)
            for k in batch.keys:
                self.device.latest[k] = batch
            self.device.current = None
            self.tally.acknowledged += 1
            self.tally.buckets_acknowledged += len(batch.keys)


@dataclass
class Snapshot:
    """What the database holds, read in one transaction while no server runs."""

    buckets: dict[Key, tuple[int, Values]]
    daily: dict[tuple[Any, ...], Values]
    revisions: dict[tuple[Key, int], list[Values]]
    zones: dict[int, str]
    integrity: str


def read_snapshot(url: str, *, with_revisions: bool) -> Snapshot:
    """Read the derived tables (and the revision log if asked) in one consistent view."""
    engine = make_engine(url)
    try:
        with engine.connect() as raw:
            conn = raw
            if engine.dialect.name == "postgresql":
                conn = raw.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                key_cols = [usage_buckets.c[c] for c in ("user_id", "device_id", "source")]
                key_cols += [usage_buckets.c.model, usage_buckets.c.bucket_start]
                counts = [usage_buckets.c[c] for c in COUNT_COLUMNS]
                buckets = {
                    _key(r): (int(r[5]), tuple(int(v) for v in r[6:]))
                    for r in conn.execute(select(*key_cols, usage_buckets.c.revision, *counts))
                }
                d = usage_daily.c
                daily = {
                    (int(r[0]), r[1], int(r[2]), r[3], r[4]): tuple(int(v) for v in r[5:])
                    for r in conn.execute(
                        select(d.user_id, d.day, d.device_id, d.source, d.model).add_columns(
                            *(d[c] for c in COUNT_COLUMNS)
                        )
                    )
                }
                revisions: dict[tuple[Key, int], list[Values]] = {}
                if with_revisions:
                    r_ = bucket_revisions.c
                    for r in conn.execute(
                        select(
                            r_.user_id, r_.device_id, r_.source, r_.model, r_.bucket_start
                        ).add_columns(r_.revision, *(r_[c] for c in COUNT_COLUMNS))
                    ):
                        revisions.setdefault((_key(r), int(r[5])), []).append(
                            tuple(int(v) for v in r[6:])
                        )
                zones = {
                    int(uid): str(zone)
                    for uid, zone in conn.execute(select(users.c.user_id, users.c.time_zone))
                }
                integrity = "ok"
                if engine.dialect.name == "sqlite":
                    rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
                    integrity = "; ".join(str(row[0]) for row in rows)
        return Snapshot(buckets, daily, revisions, zones, integrity)
    finally:
        engine.dispose()


def _key(row: Any) -> Key:
    return (int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]))


def device_key(device: Device, k: int) -> Key:
    """The stored bucket key of a device's key number ``k``."""
    source, model, start = key_parts(k)
    return (device.user_id, device.device_id, source, model, start)


def check_snapshot(snap: Snapshot, devices: list[Device], tally: Tally, when: str) -> None:
    """Lost, wrong and partial buckets, integrity and rollups, against what was acknowledged."""
    if snap.integrity != "ok":
        tally.integrity = snap.integrity
        tally.note(f"{when}: integrity_check: {snap.integrity[:200]}")
    for device in devices:
        current = device.current
        in_flight = set(current.keys) if current is not None else set()
        for k, batch in device.latest.items():
            stored = snap.buckets.get(device_key(device, k))
            if stored is None or stored[0] < batch.revision:
                tally.lost += 1
                tally.note(
                    f"{when}: device {device.number} key {k}: acked rev "
                    f"{batch.revision}, stored {stored and stored[0]}"
                )
        for key, (revision, values) in snap.buckets.items():
            if key[:2] != (device.user_id, device.device_id):
                continue
            k = _key_number(key)
            if values != values_of(revision - 1, k):
                tally.wrong += 1
                tally.note(f"{when}: device {device.number} key {k} rev {revision}: {values}")
            newest = device.latest.get(k)
            allowed = {newest.revision if newest else 0}
            if current is not None and k in in_flight:
                allowed.add(current.revision)
            if revision not in allowed and not (newest and revision < newest.revision):
                tally.duplicated += 1  # a revision no batch in flight or acknowledged wrote
                tally.note(f"{when}: device {device.number} key {k} at unexpected rev {revision}")
        if current is not None:
            at = sum(
                1
                for k in current.keys
                if (snap.buckets.get(device_key(device, k)) or (0,))[0] == current.revision
            )
            if at not in (0, len(current.keys)):
                tally.partial += 1
                tally.note(
                    f"{when}: device {device.number} batch {current.index}: "
                    f"{at} of {len(current.keys)} buckets applied"
                )
    tally.rollup_mismatches += rollup_mismatches(snap, tally, when)


def _key_number(key: Key) -> int:
    _, _, source, model, start = key
    return (start - BASE) // 1800 * 4 + MODELS.index(model) * 2 + SOURCES.index(source)


def rollup_mismatches(snap: Snapshot, tally: Tally, when: str) -> int:
    """Rows of ``usage_daily`` that differ from the sums of ``usage_buckets`` by local day."""
    zones = {uid: ZoneInfo(zone) for uid, zone in snap.zones.items()}
    sums: dict[tuple[Any, ...], list[int]] = {}
    for (uid, did, source, model, start), (_, values) in snap.buckets.items():
        day = local_day(start, zones[uid])
        acc = sums.setdefault((uid, day, did, source, model), [0] * len(COUNT_COLUMNS))
        for i, v in enumerate(values):
            acc[i] += v
    expected = {k: tuple(v) for k, v in sums.items()}
    bad = {k for k in expected.keys() | snap.daily.keys() if expected.get(k) != snap.daily.get(k)}
    for k in sorted(bad, key=str)[:3]:
        tally.note(f"{when}: usage_daily {k}: stored {snap.daily.get(k)}, sum {expected.get(k)}")
    return len(bad)


def check_final(url: str, snap: Snapshot, devices: list[Device], tally: Tally) -> None:
    """The end-of-run checks: the revision log, receipts and ``verify``."""
    check_revision_log(snap, devices, tally)
    tally.receipts_bad += check_receipts(url, devices, tally)
    tally.verify_drifts = run_verify(url)


def check_revision_log(snap: Snapshot, devices: list[Device], tally: Tally) -> None:
    """Each revision row once, with its batch's values, and each bucket at its highest row."""
    by_device = {(d.user_id, d.device_id): d for d in devices}
    for (key, revision), rows in snap.revisions.items():
        if len(rows) > 1:
            tally.duplicated += len(rows) - 1
            tally.note(f"final: {len(rows)} revision rows for {key} rev {revision}")
        k = _key_number(key)
        if any(values != values_of(revision - 1, k) for values in rows):
            tally.wrong += 1
            tally.note(f"final: revision row {key} rev {revision} has another batch's values")
        device = by_device[key[:2]]
        sent = [b for b in device.acked if b.revision == revision]
        sent += [b for b in [device.current] if b is not None and b.revision == revision]
        if not any(k in b.keys for b in sent):
            tally.duplicated += 1
            tally.note(f"final: revision row {key} rev {revision} from no batch with that key")
    highest: dict[Key, int] = {}
    for key, revision in snap.revisions:
        highest[key] = max(highest.get(key, 0), revision)
    for key, (revision, _) in snap.buckets.items():
        if highest.get(key) != revision:
            tally.duplicated += 1
            tally.note(
                f"final: usage_buckets {key} at rev {revision}, log's highest {highest.get(key)}"
            )


def check_receipts(url: str, devices: list[Device], tally: Tally) -> int:
    """Acknowledged batches with an Idempotency-Key whose receipts are not exactly one done."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    ingest_receipts.c.user_id,
                    ingest_receipts.c.idempotency_key_hash,
                    ingest_receipts.c.state,
                    func.count(),
                ).group_by(
                    ingest_receipts.c.user_id,
                    ingest_receipts.c.idempotency_key_hash,
                    ingest_receipts.c.state,
                )
            ).all()
    finally:
        engine.dispose()
    done = {(int(r[0]), r[1]): int(r[3]) for r in rows if r[2] == "done" and r[1]}
    bad = 0
    for device in devices:
        for batch in device.acked:
            if batch.idempotency_key is None:
                continue
            digest = idempotency_key_hash(device.device_id, batch.idempotency_key)
            if done.get((device.user_id, digest)) != 1:
                bad += 1
                tally.note(
                    f"final: receipt of {batch.idempotency_key}: "
                    f"{done.get((device.user_id, digest))} done"
                )
    return bad


def run_verify(url: str) -> int | None:
    """Drifts ``usageledger.ops.verify`` finds, or None when that module is not there."""
    try:
        from usageledger.ops.verify import verify
    except ImportError:
        return None
    engine = make_engine(url)
    try:
        return len(verify(Database(engine)).drifts)
    finally:
        engine.dispose()


def wait_for_quiet_postgres(url: str) -> None:
    """Wait (at most 15 s) until the killed server's PostgreSQL sessions have ended."""
    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()",
                (name,),
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)


def setup(url: str, options: Options) -> list[Device]:
    """Migrate, create the users and one device token per client."""
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    devices = []
    for n in range(options.devices):
        user = f"user{n % options.users}"
        zone = ZONES[(n % options.users) % len(ZONES)]

        def go(conn: Any, n: int = n, user: str = user, zone: str = zone) -> Device:
            if accounts.find_user(conn, user) is None:
                accounts.create_user(conn, user, time_zone=zone, now_ms=1)
            secret, _ = accounts.issue_token(
                conn, user, kind="device", device_name=f"device{n}", now_ms=1
            )
            who = accounts.authenticate(conn, secret)
            assert who is not None
            assert who.device_id is not None
            return Device(n, who.user_id, who.device_id, secret, zone)

        devices.append(db.write(go))
    engine.dispose()
    return devices


def audit(kind: str, url: str, options: Options, workdir: Path) -> Tally:
    """Run the audit against one database; ``url`` is a SQLAlchemy URL of an empty database."""
    started = time.monotonic()
    tally = Tally(database=kind)
    devices = setup(url, options)
    env = {
        "USAGELEDGER_DATABASE_URL": url,
        "USAGELEDGER_HOME": str(workdir / "home"),
        "USAGELEDGER_LOG_FILE": str(workdir / f"evidence-{kind}.log"),
        "USAGELEDGER_RATE_PER_MINUTE": "1000000",
        "USAGELEDGER_RATE_BURST": "100000",
        # Only an `in_flight` receipt written by an older version blocks a key this long
        # (default 120 s); current servers write none.
        "USAGELEDGER_IDEMPOTENCY_IN_FLIGHT_SECONDS": "5",
    }
    workers = options.sqlite_workers if kind == "sqlite" else options.postgres_workers
    server = ServeProcess(env, workers=workers, log=workdir / f"server-{kind}.log")
    lock = threading.Lock()
    clients = [Client(d, server.base, options, tally, lock) for d in devices]
    rng = random.Random(options.seed)
    deadline = started + options.deadline_s
    try:
        server.start()
        for client in clients:
            client.start()
        for n in range(options.kills):
            if time.monotonic() > deadline:
                tally.note("deadline reached before every kill")
                break
            time.sleep(rng.uniform(options.up_min, options.up_max))
            server.kill()
            tally.kills += 1
            if kind == "postgresql":
                wait_for_quiet_postgres(url)
            with lock:  # clients cannot change what the (dead) server acknowledged
                snap = read_snapshot(url, with_revisions=False)
                check_snapshot(snap, devices, tally, f"kill {n + 1}")
            server.start()
        for client in clients:
            client.finish.set()
        for client in clients:
            client.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for client in clients:
            client.abort.set()
            client.finish.set()
        for client in clients:
            client.join(timeout=30)
        server.stop()
    tally.unacknowledged = sum(1 for d in devices if d.current is not None)
    snap = read_snapshot(url, with_revisions=True)
    check_snapshot(snap, devices, tally, "final")
    check_final(url, snap, devices, tally)
    tally.seconds = round(time.monotonic() - started, 1)
    return tally


@contextlib.contextmanager
def sqlite_url(workdir: Path) -> Iterator[str]:
    """A fresh SQLite file in ``workdir``."""
    yield f"sqlite:///{workdir / 'crash.db'}"


def run(kinds: list[str], options: Options) -> list[Tally]:
    """Audit each database kind in turn, each in a fresh database and directory."""
    results = []
    for kind in kinds:
        workdir = Path(tempfile.mkdtemp(prefix=f"ul-crash-{kind}-"))
        database = sqlite_url(workdir) if kind == "sqlite" else pg_database("ul_crash")
        with database as url:
            results.append(audit(kind, url, options, workdir))
        print(summary(results[-1]), flush=True)
    return results


def summary(t: Tally) -> str:
    """A few lines for a terminal."""
    lines = [
        f"{t.database}: {'OK' if t.ok else 'FAILED'} in {t.seconds} s — kills {t.kills}, "
        f"batches {t.batches}, acknowledged {t.acknowledged} ({t.buckets_acknowledged} buckets), "
        f"unacknowledged {t.unacknowledged}",
        f"  lost {t.lost}, duplicated {t.duplicated}, partial {t.partial}, wrong {t.wrong}, "
        f"integrity {t.integrity}, rollup mismatches {t.rollup_mismatches}, "
        f"verify drifts {t.verify_drifts}, bad receipts {t.receipts_bad}",
        f"  requests {t.requests}, retries {t.retries}, replayed {t.replayed}, "
        f"409 in flight {t.in_flight_409}, 5xx {t.server_errors}, rejected {t.rejected}",
    ]
    lines += [f"  ! {p}" for p in t.problems]
    return "\n".join(lines)


#: ``--full``: at least 20 SIGKILLs per database, 8 devices of 3 users, batches of up to 500.
FULL = Options(kills=20, devices=8, users=3, batch_size=500, keys=2000, deadline_s=1800)


def parser() -> argparse.ArgumentParser:
    """The command line (a size left out is the default's, or ``--full``'s)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument(
        "--full",
        action="store_true",
        help=f"the full size ({FULL.kills} kills, {FULL.devices} devices of {FULL.users} users, "
        f"batches of up to {FULL.batch_size}), recorded under '## Crash audit' in "
        "docs/benchmarks.md",
    )
    defaults = Options()
    p.add_argument("--kills", type=int, help=f"SIGKILLs per database ({defaults.kills})")
    p.add_argument("--devices", type=int, help=f"concurrent clients ({defaults.devices})")
    p.add_argument("--users", type=int, help=f"({defaults.users})")
    p.add_argument("--batch-size", type=int, help=f"at most ({defaults.batch_size})")
    p.add_argument("--keys", type=int, help=f"bucket keys per device ({defaults.keys})")
    p.add_argument("--seed", type=int, help=f"({defaults.seed})")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments: the sizes given, the others from ``--full`` or the
    defaults."""
    sizes = ("kills", "devices", "users", "batch_size", "keys", "seed")
    given = {name: getattr(args, name) for name in sizes if getattr(args, name) is not None}
    return replace(FULL if args.full else Options(), **given)


def table(results: list[Tally], options: Options) -> list[str]:
    """The results as a Markdown table, one row per database."""
    workers = {"sqlite": options.sqlite_workers, "postgresql": options.postgres_workers}
    rows = [
        "| database | workers | kills | batches | acknowledged | unacknowledged | retries "
        "| replayed | 409 in flight | 5xx | lost | duplicated | partial | wrong | integrity "
        "| rollup mismatches | verify drifts | bad receipts | time |",
        "|---" * 19 + "|",
    ]
    for t in results:
        verify = "n/a" if t.verify_drifts is None else str(t.verify_drifts)
        rows.append(
            f"| {t.database} | {workers[t.database]} | {t.kills} | {t.batches:,} | "
            f"{t.acknowledged:,} ({t.buckets_acknowledged:,} buckets) | {t.unacknowledged} | "
            f"{t.retries:,} | {t.replayed} | {t.in_flight_409} | {t.server_errors} | "
            f"**{t.lost}** | **{t.duplicated}** | **{t.partial}** | {t.wrong} | {t.integrity} | "
            f"{t.rollup_mismatches} | {verify} | {t.receipts_bad} | {t.seconds:.0f} s |"
        )
    return rows


def record(results: list[Tally], options: Options, command: str) -> None:
    """Write the results under "## Crash audit" in docs/benchmarks.md."""
    verdict = "every check held" if all(t.ok for t in results) else "**a check FAILED**"
    write_section(
        "Crash audit",
        f"Command: `{command}` ({verdict}). A real `usageledger serve` on loopback takes "
        f"uploads from {options.devices} concurrent clients (one thread per device, "
        f"{options.users} users, batches of 1–{options.batch_size} buckets over "
        f"{options.keys:,} keys per device, 70 % with an Idempotency-Key) and is killed "
        "with SIGKILL (its whole process group) at a random moment 0.2–1.5 s after it "
        "answers /healthz, then restarted; clients retry every unacknowledged batch with "
        "the same body and key until it is acknowledged. After every kill, with the server "
        "down, the database is read directly: every bucket of every acknowledged batch at "
        "≥ its revision (*lost* counts those that are not), the in-flight batch of each "
        "device applied to all or none of its buckets (*partial*), every stored value the "
        "one its revision's batch sent (*wrong*), `PRAGMA integrity_check`, and "
        "`usage_daily` equal to the sums of `usage_buckets` by local day. At the end also: "
        "no two `bucket_revisions` rows for one key and revision and no row from a batch "
        "that never carried that key (*duplicated*), one completed receipt per "
        "acknowledged Idempotency-Key, and `ops.verify` (rebuild and compare). *replayed* "
        "counts retries answered from a stored receipt (the kill came after the commit); "
        "*409 in flight* counts retries answered 409 because their Idempotency-Key was "
        "still being applied (an upload's key is claimed in the server's memory and "
        "written with the batch in one transaction, so a killed request leaves no claim "
        "behind). "
        "The machine was shared with other jobs, so times are indicative only.\n\n"
        + "\n".join(table(results, options)),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the audit; 0 when every check held, 1 when one failed, 2 when it could not run."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    options = options_from(args)
    try:
        with exit_on_sigterm():
            results = run(kinds, options)
    except (RuntimeError, OSError, psycopg.Error) as exc:
        print(f"crash audit could not run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    if args.full:
        print("\n".join(table(results, options)))
        record(results, options, " ".join(["python -m scripts.crash_audit", *argv]))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
