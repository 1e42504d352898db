"""Reading the ledger back in tests (plain SELECTs, no production query code)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from usageledger.buckets import COUNT_COLUMNS
from usageledger.store.tables import bucket_revisions, ingest_receipts, usage_buckets, usage_daily


def bucket_rows(engine: Engine) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """``usage_buckets`` as key → (revision, *counts)."""
    with engine.connect() as conn:
        rows = conn.execute(select(usage_buckets)).mappings().all()
    return {
        (r["user_id"], r["device_id"], r["source"], r["model"], r["bucket_start"]): (
            r["revision"],
            *(r[c] for c in COUNT_COLUMNS),
        )
        for r in rows
    }


def daily_rows(engine: Engine) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """``usage_daily`` as (user, day, device, source, model) → counts."""
    with engine.connect() as conn:
        rows = conn.execute(select(usage_daily)).mappings().all()
    return {
        (r["user_id"], r["day"], r["device_id"], r["source"], r["model"]): tuple(
            int(r[c]) for c in COUNT_COLUMNS
        )
        for r in rows
    }


def table_count(engine: Engine, table: Any) -> int:
    """Rows in a table."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def written_rows(engine: Engine) -> tuple[int, int, int, int]:
    """Row counts of the four tables ingest writes."""
    return (
        table_count(engine, bucket_revisions),
        table_count(engine, usage_buckets),
        table_count(engine, usage_daily),
        table_count(engine, ingest_receipts),
    )


def expected_daily(engine: Engine, zones: dict[int, str]) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Sums of ``usage_buckets`` by user-local day, device, source and model, computed in Python."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(COUNT_COLUMNS))
    for key, value in bucket_rows(engine).items():
        user_id, device_id, source, model, start = key
        day = datetime.fromtimestamp(start, UTC).astimezone(ZoneInfo(zones[user_id])).date()
        acc = sums[(user_id, day, device_id, source, model)]
        for i, v in enumerate(value[1:]):
            acc[i] += v
    return {k: tuple(v) for k, v in sums.items()}


def evidence_lines(path: Path) -> list[dict[str, Any]]:
    """Every evidence line written so far."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
