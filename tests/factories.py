"""Factories for buckets and batches used across the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

BASE = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    """ISO 8601 with Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def bucket(
    *,
    slot: int = 0,
    start: datetime | None = None,
    source: str = "codex",
    model: str = "gpt-5-codex",
    inp: int = 100,
    cached: int = 50,
    out: int = 20,
    reasoning: int = 5,
    cache_write: int | None = 10,
    revision: int | None = 1,
    **extra: Any,
) -> dict[str, Any]:
    """A valid v2 bucket (v1 when ``cache_write`` is None)."""
    when = start or BASE + timedelta(minutes=30 * slot)
    item: dict[str, Any] = {
        "bucket_start": iso(when),
        "source": source,
        "model": model,
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + cached + out,
    }
    if revision is not None:
        item["revision"] = revision
    if cache_write is not None:
        item["cache_write_tokens"] = cache_write
    item.update(extra)
    return item


def batch(*buckets: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    """A batch; the version defaults to 2 when any bucket has cache_write_tokens."""
    if version is None:
        version = 2 if any("cache_write_tokens" in b for b in buckets) else 1
    return {"schema_version": version, "buckets": list(buckets)}
