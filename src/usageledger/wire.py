"""The ingest payload (wire v1 and v2): allowlists, bounds and token rules (DESIGN §4).

Validation is all-or-nothing: every problem of a batch is collected with its location
(``buckets[3].input_tokens``) and one bad bucket rejects the batch. Counts must be JSON
integers (not floats, strings or booleans) in ``[0, 2**53)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from usageledger.buckets import COUNTS_BY_VERSION, MAX_COUNT, equality_violations, is_aligned
from usageledger.config import Settings
from usageledger.errors import BadRequest, ErrorCode, PayloadTooLarge, ValidationFailed
from usageledger.source_registry import SourceRegistry

SUPPORTED_VERSIONS = (1, 2)

Count = Annotated[int, Field(strict=True, ge=0, lt=MAX_COUNT)]
Revision = Annotated[int, Field(strict=True, ge=0, lt=2**63)]
ShortText = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=512)]


class BucketV1(BaseModel):
    """One half-hour bucket of schema v1 (the five counts of the origin system)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    bucket_start: ShortText = Field(
        description="UTC start of the half-hour, ISO 8601 (e.g. 2026-11-28T10:30:00Z)."
    )
    source: ShortText = Field(description="A registered source name, e.g. codex or claude.")
    model: ShortText = Field(description="The model name as the assistant reports it.")
    revision: Revision | None = Field(
        default=None,
        description="Client-chosen, monotonic per bucket (Unix ms when computed). "
        "Absent: the server's receive time in ms.",
    )
    input_tokens: Count = Field(description="Prompt tokens not read from a cache.")
    cached_input_tokens: Count = Field(description="Prompt tokens read from a cache.")
    output_tokens: Count = Field(description="Completion tokens, reasoning included.")
    reasoning_output_tokens: Count = Field(description="The reasoning part of output_tokens.")
    total_tokens: Count = Field(description="input_tokens + cached_input_tokens + output_tokens.")


class BucketV2(BucketV1):
    """Schema v2 adds ``cache_write_tokens``."""

    cache_write_tokens: Count = Field(description="The part of input_tokens written to a cache.")


class IngestV1(BaseModel):
    """An ingest batch of schema v1."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[1]
    buckets: list[BucketV1]


class IngestV2(BaseModel):
    """An ingest batch of schema v2."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[2]
    buckets: list[BucketV2]


class IngestResponse(BaseModel):
    """What an accepted batch did, per bucket outcome."""

    request_id: str
    inserted: int = Field(description="Buckets seen for the first time.")
    updated: int = Field(description="Buckets whose values changed (a new revision).")
    unchanged: int = Field(description="Buckets whose values equal the current ones.")
    stale: int = Field(description="Buckets older than the current revision (not applied).")
    conflicts: int = Field(description="Same revision as the current one, other values.")


MODELS: dict[int, type[IngestV1] | type[IngestV2]] = {1: IngestV1, 2: IngestV2}


@dataclass(frozen=True, slots=True)
class IncomingBucket:
    """A validated bucket, ready for the ledger (``user_id``/``device_id`` come from the token)."""

    index: int
    source: str
    model: str
    bucket_start: int
    revision: int | None
    counts: dict[str, int]


def loads(raw: bytes) -> Any:
    """Parse JSON; integers beyond 64 bits still parse (and fail validation as too large)."""
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("the request body is not valid JSON") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_ingest(
    raw: bytes, *, settings: Settings, registry: SourceRegistry, now: datetime
) -> list[IncomingBucket]:
    """Validate an ingest body; raise a :class:`ValidationFailed` naming every problem."""
    document = loads(raw)
    if not isinstance(document, dict):
        raise ValidationFailed("the body must be a JSON object with schema_version and buckets")
    buckets = document.get("buckets")
    if isinstance(buckets, list) and len(buckets) > settings.max_buckets:
        raise PayloadTooLarge(
            f"{len(buckets)} buckets in one request; the limit is {settings.max_buckets}"
        )
    version = document.get("schema_version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ValidationFailed(
            f"unsupported schema_version {version!r}; supported: 1, 2",
            code=ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            details=[{"loc": "schema_version", "message": "must be 1 or 2"}],
        )
    try:
        batch = MODELS[version].model_validate(document)
    except ValidationError as exc:
        raise _from_pydantic(exc, version) from None
    return _check_rules(batch, version, settings=settings, registry=registry, now=now)


def _loc(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _from_pydantic(exc: ValidationError, version: int) -> ValidationFailed:
    details = []
    unknown = False
    for err in exc.errors(include_url=False, include_input=False):
        loc = _loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            unknown = True
            field = str(err["loc"][-1])
            message = f"unknown field {field!r} in schema_version {version}"
        else:
            message = err["msg"]
        details.append({"loc": loc, "message": message})
    first = details[0]
    return ValidationFailed(
        f"{first['loc']}: {first['message']}",
        code=ErrorCode.UNKNOWN_FIELD if unknown else ErrorCode.VALIDATION_FAILED,
        details=details,
    )


def _parse_start(text: str) -> datetime | None:
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _check_start(
    text: str, *, floor: int, latest: int, settings: Settings
) -> tuple[int, str | None]:
    """Epoch seconds of a ``bucket_start`` and the rule it breaks, if any."""
    start = _parse_start(text)
    if start is None:
        return 0, "must be an ISO 8601 time with a UTC offset, e.g. 2026-11-28T10:30:00Z"
    seconds = int(start.timestamp())
    if start.microsecond or not is_aligned(seconds):
        return seconds, "must be the start of a half-hour (:00 or :30, zero seconds)"
    if seconds > latest:
        return seconds, f"is more than {settings.future_skew_seconds // 60} minutes in the future"
    if seconds < floor:
        return seconds, f"is before the floor {settings.bucket_floor.isoformat()}"
    return seconds, None


def _check_rules(
    batch: IngestV1 | IngestV2,
    version: int,
    *,
    settings: Settings,
    registry: SourceRegistry,
    now: datetime,
) -> list[IncomingBucket]:
    problems: list[tuple[ErrorCode, str, str]] = []
    floor = int(datetime.combine(settings.bucket_floor, datetime.min.time(), UTC).timestamp())
    latest = int(now.timestamp()) + settings.future_skew_seconds
    out: list[IncomingBucket] = []
    names = COUNTS_BY_VERSION[version]
    # A batch repeats the same few half-hours and sources; check each distinct value once.
    starts: dict[str, tuple[int, str | None]] = {}
    sources: dict[str, bool] = {}
    for index, bucket in enumerate(batch.buckets):
        text = bucket.bucket_start
        checked = starts.get(text)
        if checked is None:
            checked = starts[text] = _check_start(
                text, floor=floor, latest=latest, settings=settings
            )
        seconds, start_problem = checked
        if start_problem is not None:
            problems.append(
                (ErrorCode.BUCKET_START_INVALID, f"buckets[{index}].bucket_start", start_problem)
            )
        known = sources.get(bucket.source)
        if known is None:
            known = sources[bucket.source] = bucket.source in registry
        if not known:
            problems.append(
                (
                    ErrorCode.UNKNOWN_SOURCE,
                    f"buckets[{index}].source",
                    registry.unknown_message(bucket.source),
                )
            )
        if len(bucket.model) > settings.max_model_length or not bucket.model.isprintable():
            problems.append(
                (
                    ErrorCode.VALIDATION_FAILED,
                    f"buckets[{index}].model",
                    f"must be 1-{settings.max_model_length} printable characters",
                )
            )
        values = bucket.__dict__
        counts = {name: values[name] for name in names}
        for field, message in equality_violations(counts):
            problems.append(
                (ErrorCode.TOKEN_EQUALITY_VIOLATED, f"buckets[{index}].{field}", message)
            )
        counts.setdefault("cache_write_tokens", 0)
        out.append(
            IncomingBucket(
                index=index,
                source=bucket.source,
                model=bucket.model,
                bucket_start=seconds,
                revision=bucket.revision,
                counts=counts,
            )
        )
    if problems:
        code, loc, message = problems[0]
        raise ValidationFailed(
            f"{loc}: {message}",
            code=code,
            details=[{"loc": p[1], "message": p[2], "code": str(p[0])} for p in problems],
        )
    return out
