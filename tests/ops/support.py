"""Helpers of the ops tests: seeding through the real write paths, reading tables back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Table, select

from tests.conftest import Persona
from tests.factories import batch, bucket, iso
from usageledger.buckets import BUCKET_KEY, COUNT_COLUMNS
from usageledger.ledger.ingest import BucketWrite, apply_batch
from usageledger.ops.plan_file import PlanSpec, parse_plan_file
from usageledger.ops.replay import replay
from usageledger.source_registry import SourceRegistry
from usageledger.store.engine import Database
from usageledger.store.tables import bucket_revisions, usage_buckets, usage_daily

#: A history across Berlin's and New York's autumn DST changes (2026-10-25 and 2026-11-01).
START = datetime(2026, 10, 20, 0, 0, tzinfo=UTC)
ZONES = {"alice": "Europe/Berlin", "bob": "America/New_York"}


def post(client: TestClient, who: Persona, body: Any) -> dict[str, Any]:
    """POST a batch with the persona's device token; the upload must succeed."""
    response = client.post(
        "/v1/ingest",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **who.headers()},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def seed_history(client: TestClient, who: Persona, *, days: int = 20, step_hours: int = 5) -> None:
    """Upload a bucket every ``step_hours`` over ``days`` days, then newer values for some."""
    slots = range(0, days * 24, step_hours)
    first = [
        bucket(
            start=START + timedelta(hours=h),
            model="gpt-5-codex" if h % 2 else "o3",
            inp=100 + h,
            revision=1,
        )
        for h in slots
    ]
    for i in range(0, len(first), 200):
        post(client, who, batch(*first[i : i + 200]))
    newer = [
        bucket(
            start=START + timedelta(hours=h),
            model="gpt-5-codex" if h % 2 else "o3",
            inp=1000 + h,
            revision=2,
        )
        for h in slots[::3]
    ]
    post(client, who, batch(*newer))


def counts(inp: int, cached: int = 0, out: int = 0, reasoning: int = 0) -> dict[str, int]:
    """A full set of counts obeying the token equalities (every later count 0)."""
    return {
        **dict.fromkeys(COUNT_COLUMNS, 0),
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + cached + out,
        "cache_write_tokens": 0,
    }


def apply_at(
    db: Database,
    who: Persona,
    writes: Sequence[BucketWrite],
    *,
    now_ms: int,
    device_id: int = 1,
) -> None:
    """Apply writes through the ingest path as if received at ``now_ms``."""
    tz = ZoneInfo(ZONES[who.name])
    db.write(
        lambda conn: apply_batch(
            conn,
            user_id=who.user_id,
            device_id=device_id,
            tz=tz,
            writes=writes,
            origin="test",
            now_ms=now_ms,
        ),
        user_id=who.user_id,
    )


def rows(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every row of ``table``, every column, in primary-key order."""
    with engine.connect() as conn:
        query = select(table).order_by(*table.primary_key.columns)
        return [tuple(r) for r in conn.execute(query)]


def derived(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The two derived tables, complete."""
    return rows(engine, usage_buckets), rows(engine, usage_daily)


def winners(engine: Engine) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """The highest revision of each key in the log, as key → (revision, *counts)."""
    best: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for row in rows(engine, bucket_revisions):
        mapping = dict(zip([c.name for c in bucket_revisions.columns], row, strict=True))
        key = tuple(mapping[name] for name in BUCKET_KEY)
        value = (mapping["revision"], *(mapping[c] for c in COUNT_COLUMNS))
        if key not in best or value[0] > best[key][0]:
            best[key] = value
    return best


def upload_while_replaying(
    client: TestClient,
    db: Database,
    people: Sequence[Persona],
    *,
    hours: range,
    rounds: range,
    model: Callable[[int], str],
    replays: int,
) -> None:
    """Upload a batch per round and person (``model(round)`` at each of ``hours``, revision
    and input tokens from the round) while ``replays`` one-day-chunk replays run at once."""
    start_together = threading.Barrier(2)

    def upload() -> None:
        start_together.wait()
        for round_ in rounds:
            for who in people:
                items = [
                    bucket(
                        start=START + timedelta(hours=h),
                        model=model(round_),
                        inp=round_ * 1000 + h,
                        revision=round_,
                    )
                    for h in hours
                ]
                post(client, who, batch(*items))

    def rebuild() -> None:
        start_together.wait()
        for _ in range(replays):
            replay(db, chunk_days=1)

    with ThreadPoolExecutor(max_workers=2) as pool:
        uploads, rebuilds = pool.submit(upload), pool.submit(rebuild)
        uploads.result()
        rebuilds.result()


def zones_of(*people: Persona) -> dict[int, str]:
    """user_id → time zone, as tests.helpers.expected_daily wants it."""
    return {p.user_id: ZONES[p.name] for p in people}


# --- Backfill plans ---

FROM = START + timedelta(days=1)  # 2026-10-21T00:00Z
TO = START + timedelta(days=3)
LISTED = START + timedelta(hours=25)  # an existing gpt-5-codex bucket
NEW = START + timedelta(hours=27, minutes=30)  # no bucket there yet
INSIDE = START + timedelta(hours=30)  # an existing o3 bucket the plan zeroes


def document(**overrides: Any) -> dict[str, Any]:
    """A plan: set one bucket, add one, zero every other existing one in two days."""
    listed = bucket(
        start=LISTED, model="gpt-5-codex", inp=7, cached=0, out=3, reasoning=1, cache_write=0
    )
    new = bucket(
        start=NEW,
        source="claude",
        model="sonnet",
        inp=11,
        cached=2,
        out=5,
        reasoning=0,
        cache_write=4,
    )
    for item in (listed, new):
        item.pop("revision")
    plan: dict[str, Any] = {
        "user": "alice",
        "device": "laptop",
        "from": iso(FROM),
        "to": iso(TO),
        "buckets": [listed, new],
        "zero_missing": True,
    }
    plan.update(overrides)
    return plan


def parse(plan: dict[str, Any]) -> PlanSpec:
    """Validate a plan document as the CLI does."""
    return parse_plan_file(orjson.dumps(plan), registry=SourceRegistry(), max_model_length=128)
