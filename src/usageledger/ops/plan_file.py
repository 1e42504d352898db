"""The backfill plan file: what an operator wants a device's buckets in a range to be.

::

    {"user": "alice", "device": "laptop",
     "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z",
     "buckets": [{"bucket_start": "2026-11-02T10:00:00Z", "source": "codex",
                  "model": "gpt-5-codex", "input_tokens": 100, "cached_input_tokens": 50,
                  "output_tokens": 20, "reasoning_output_tokens": 5, "total_tokens": 170,
                  "cache_write_tokens": 10}],
     "zero_missing": false}

``from`` and ``to`` are RFC 3339 date-times with an offset, on half-hours; the range is
``[from, to)`` and at most :data:`MAX_PLAN_DAYS` days long. Each bucket follows the ingest
rules (docs/design.md §3–§4): an RFC 3339 ``bucket_start``, a registered source, the token
equalities, counts in ``[0, 2**53)``; ``cache_write_tokens`` may be left out (0).
``zero_missing`` sets every existing bucket of the device in the range that the file does not
list to zero. Unknown fields are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from usageledger.buckets import COUNT_COLUMNS, equality_violations, is_aligned, parse_rfc3339
from usageledger.errors import ValidationFailed
from usageledger.ops.checksums import FactKey
from usageledger.source_registry import SourceRegistry
from usageledger.wire import Count, ShortText

MAX_PLAN_DAYS = 93


class PlanBucket(BaseModel):
    """One bucket value the plan sets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    bucket_start: ShortText
    source: ShortText
    model: ShortText
    input_tokens: Count
    cached_input_tokens: Count
    output_tokens: Count
    reasoning_output_tokens: Count
    total_tokens: Count
    cache_write_tokens: Count = 0


class PlanDocument(BaseModel):
    """The plan file as written."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: ShortText
    device: ShortText
    from_: ShortText = Field(alias="from")
    to: ShortText
    buckets: list[PlanBucket] = Field(default_factory=list)
    zero_missing: bool = False


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A validated plan file: the range ``[start, end)`` and the values to set."""

    user: str
    device: str
    start: int
    end: int
    buckets: dict[FactKey, tuple[int, ...]]
    zero_missing: bool


def parse_instant(text: str) -> int | None:
    """Epoch seconds of an RFC 3339 date-time with an offset and whole seconds, or None.

    The same strict reading as ingest's ``bucket_start``, so a plan names a bucket exactly as
    an upload does.
    """
    parsed = parse_rfc3339(text)
    return parsed[0] if parsed is not None and not parsed[1] else None


def _loc(parts: tuple[int | str, ...]) -> str:
    """``buckets[3].source`` from pydantic's location parts."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_plan_file(raw: bytes, *, registry: SourceRegistry, max_model_length: int) -> PlanSpec:
    """Validate a plan file; raise :class:`ValidationFailed` naming every problem."""
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"the plan file is not valid JSON ({exc})") from None
    try:
        plan = PlanDocument.model_validate(document)
    except ValidationError as exc:
        details = [
            {"loc": _loc(err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0]
        raise ValidationFailed(f"{first['loc']}: {first['message']}", details=details) from None

    problems: list[tuple[str, str]] = []
    start, end = parse_instant(plan.from_), parse_instant(plan.to)
    for name, value in (("from", start), ("to", end)):
        if value is None or not is_aligned(value):
            problems.append((name, "must be an RFC 3339 date-time with an offset on a half-hour"))
    if start is not None and end is not None:
        if end <= start:
            problems.append(("to", "must be after from"))
        elif end - start > MAX_PLAN_DAYS * 86_400:
            problems.append(("to", f"the range is limited to {MAX_PLAN_DAYS} days"))

    values: dict[FactKey, tuple[int, ...]] = {}
    for index, bucket in enumerate(plan.buckets):
        where = f"buckets[{index}]"
        at = parse_instant(bucket.bucket_start)
        if at is None or not is_aligned(at):
            problems.append((f"{where}.bucket_start", "must be an RFC 3339 half-hour start"))
        elif start is not None and end is not None and not start <= at < end:
            problems.append((f"{where}.bucket_start", "is outside [from, to)"))
        if bucket.source not in registry:
            problems.append((f"{where}.source", registry.unknown_message(bucket.source)))
        if len(bucket.model) > max_model_length or not bucket.model.isprintable():
            problems.append(
                (f"{where}.model", f"must be 1-{max_model_length} printable characters")
            )
        counts = {name: int(getattr(bucket, name, 0)) for name in COUNT_COLUMNS}  # v3: 0
        for field, message in equality_violations(counts):
            problems.append((f"{where}.{field}", message))
        key = (bucket.source, bucket.model, at or 0)
        if key in values:
            problems.append((where, "lists the same bucket twice"))
        values[key] = tuple(counts[name] for name in COUNT_COLUMNS)
    if not plan.buckets and not plan.zero_missing:
        problems.append(("buckets", "a plan needs buckets to set or zero_missing: true"))
    if problems:
        loc, message = problems[0]
        raise ValidationFailed(
            f"{loc}: {message}", details=[{"loc": p[0], "message": p[1]} for p in problems]
        )
    assert start is not None  # no problem was found, so both parsed
    assert end is not None
    return PlanSpec(plan.user, plan.device, start, end, values, plan.zero_missing)
