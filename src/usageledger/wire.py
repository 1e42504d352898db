"""The ingest payload (wire v1, v2 and v3): allowlists, bounds and token rules (docs/design.md §4).

Validation is all-or-nothing: every problem of a batch is collected with its location
(``buckets[3].input_tokens``) and one bad bucket rejects the batch. Counts must be JSON
integers (not floats, strings or booleans) in ``[0, 2**53)``, and so must a ``revision``.
``bucket_start`` is a strict RFC 3339 date-time (:func:`usageledger.buckets.parse_rfc3339`):
``datetime.fromisoformat`` also reads week dates, basic format, a missing offset and more,
which no client means and which would make one half-hour spellable many ways.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from usageledger.buckets import (
    COUNTS_BY_VERSION,
    COUNTS_V2,
    COUNTS_V3,
    MAX_COUNT,
    REVISION_LIMIT,
    BucketWrite,
    equality_violations,
    is_aligned,
    new_write,
    parse_rfc3339,
    subset_violations,
)
from usageledger.config import Settings
from usageledger.errors import BadRequest, ErrorCode, PayloadTooLarge, ValidationFailed
from usageledger.source_registry import SourceRegistry

SUPPORTED_VERSIONS = (1, 2, 3)
#: "1, 2, 3" and "1, 2 or 3" for the error of an unsupported ``schema_version``.
_VERSIONS_LIST = ", ".join(map(str, SUPPORTED_VERSIONS))
_VERSIONS_CHOICE = (
    ", ".join(map(str, SUPPORTED_VERSIONS[:-1])) + f" or {SUPPORTED_VERSIONS[-1]}"
    if len(SUPPORTED_VERSIONS) > 1
    else str(SUPPORTED_VERSIONS[0])
)
#: The counts schema v3 adds to v2 (all parts of v2's counts; see :class:`BucketV3`).
V3_ONLY: tuple[str, ...] = COUNTS_V3[len(COUNTS_V2) :]

Count = Annotated[int, Field(strict=True, ge=0, lt=MAX_COUNT)]
Revision = Annotated[int, Field(strict=True, ge=0, lt=REVISION_LIMIT)]
ShortText = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=512)]


class BucketV1(BaseModel):
    """One half-hour bucket of schema v1 (the five counts of the origin system)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    bucket_start: ShortText = Field(
        description="UTC start of the half-hour, an RFC 3339 date-time with an offset "
        "(e.g. 2026-11-28T10:30:00Z)."
    )
    source: ShortText = Field(description="A registered source name, e.g. codex or claude.")
    model: ShortText = Field(description="The model name as the assistant reports it.")
    revision: Revision | None = Field(
        default=None,
        description="Client-chosen, monotonic per bucket (Unix ms when computed), "
        "below 2^53. Absent: the server's receive time in ms.",
    )
    input_tokens: Count = Field(description="Prompt tokens not read from a cache.")
    cached_input_tokens: Count = Field(description="Prompt tokens read from a cache.")
    output_tokens: Count = Field(description="Completion tokens, reasoning included.")
    reasoning_output_tokens: Count = Field(description="The reasoning part of output_tokens.")
    total_tokens: Count = Field(description="input_tokens + cached_input_tokens + output_tokens.")


class BucketV2(BucketV1):
    """Schema v2 adds ``cache_write_tokens``."""

    cache_write_tokens: Count = Field(description="The part of input_tokens written to a cache.")


class BucketV3(BucketV2):
    """Schema v3 adds the one-hour cache writes, the counts of the requests billed at other
    rates and the web searches: each ``long_context_*``, ``fast_*`` and ``fast_long_context_*``
    count is the part of the same v2 count (``input_tokens``, ``cached_input_tokens``,
    ``cache_write_tokens``, ``output_tokens``, and ``cache_write_1h_tokens``) that came from
    requests over their model's long-context threshold, in fast mode or priority processing,
    or both."""

    cache_write_1h_tokens: Count = Field(
        description="The part of cache_write_tokens written to a one-hour cache."
    )
    long_context_input_tokens: Count = Field(
        description="input_tokens of requests whose prompt (input + cached input) is over "
        "their model's long-context threshold."
    )
    long_context_cached_input_tokens: Count = Field(description="Their cached_input_tokens.")
    long_context_cache_write_tokens: Count = Field(description="Their cache_write_tokens.")
    long_context_cache_write_1h_tokens: Count = Field(description="Their cache_write_1h_tokens.")
    long_context_output_tokens: Count = Field(description="Their output_tokens.")
    fast_input_tokens: Count = Field(
        description="input_tokens of requests in fast mode or priority processing."
    )
    fast_cached_input_tokens: Count = Field(description="Their cached_input_tokens.")
    fast_cache_write_tokens: Count = Field(description="Their cache_write_tokens.")
    fast_cache_write_1h_tokens: Count = Field(description="Their cache_write_1h_tokens.")
    fast_output_tokens: Count = Field(description="Their output_tokens.")
    fast_long_context_input_tokens: Count = Field(
        description="input_tokens of requests that are both fast and long-context (part of "
        "fast_input_tokens and of long_context_input_tokens)."
    )
    fast_long_context_cached_input_tokens: Count = Field(description="Their cached_input_tokens.")
    fast_long_context_cache_write_tokens: Count = Field(description="Their cache_write_tokens.")
    fast_long_context_cache_write_1h_tokens: Count = Field(
        description="Their cache_write_1h_tokens."
    )
    fast_long_context_output_tokens: Count = Field(description="Their output_tokens.")
    web_search_requests: Count = Field(
        description="Server-side web searches the requests made (Claude's "
        "usage.server_tool_use.web_search_requests), billed per 1,000; a count of requests, "
        "not tokens (no part of total_tokens)."
    )


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


class IngestV3(BaseModel):
    """An ingest batch of schema v3."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[3]
    buckets: list[BucketV3]


class IngestResponse(BaseModel):
    """What an accepted batch did, per bucket outcome."""

    request_id: str
    inserted: int = Field(description="Buckets seen for the first time.")
    updated: int = Field(description="Buckets whose values changed (a new revision).")
    unchanged: int = Field(description="Buckets whose values equal the current ones.")
    stale: int = Field(description="Buckets older than the current revision (not applied).")
    conflicts: int = Field(description="Same revision as the current one, other values.")


MODELS: dict[int, type[IngestV1] | type[IngestV2] | type[IngestV3]] = {
    1: IngestV1,
    2: IngestV2,
    3: IngestV3,
}


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
) -> list[BucketWrite]:
    """Validate an ingest body; raise a :class:`ValidationFailed` naming every problem.

    The buckets come back ready for the ledger: ``bucket_start`` in epoch seconds, an absent
    ``revision`` replaced by ``now`` in ms, v1 counts with ``cache_write_tokens`` 0 and v1
    and v2 counts with every v3 count 0.
    """
    fast = _fast_path(raw, settings.max_buckets)
    if fast is not None:
        version = 3 if isinstance(fast, _FastV3) else 2
        return _check_rules(fast, version, settings=settings, registry=registry, now=now)
    return _parse_careful(raw, settings=settings, registry=registry, now=now)


def _parse_careful(
    raw: bytes, *, settings: Settings, registry: SourceRegistry, now: datetime
) -> list[BucketWrite]:
    """:func:`parse_ingest` step by step, so that every problem gets its own code."""
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
            f"unsupported schema_version {version!r}; supported: {_VERSIONS_LIST}",
            code=ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            details=[{"loc": "schema_version", "message": f"must be {_VERSIONS_CHOICE}"}],
        )
    try:
        batch = MODELS[version].model_validate(document)
    except ValidationError as exc:
        raise _from_pydantic(exc, version) from None
    return _check_rules(batch, version, settings=settings, registry=registry, now=now)


class _FastV2(BaseModel):
    """:class:`IngestV2` as the fast path reads it: ``schema_version`` must be the JSON integer
    2 (``Literal[2]`` would also take ``2.0`` from JSON) and the bucket count is capped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Annotated[int, Field(strict=True, ge=2, le=2)]
    buckets: list[BucketV2]


class _FastV3(BaseModel):
    """:class:`IngestV3` as the fast path reads it (see :class:`_FastV2`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Annotated[int, Field(strict=True, ge=3, le=3)]
    buckets: list[BucketV3]


def _fast_path(raw: bytes, max_buckets: int) -> _FastV2 | _FastV3 | None:
    """A well-formed v2 or v3 batch validated straight from the bytes (no JSON tree in
    Python), or None: then the careful path parses it again to name the problem exactly as it
    always has.

    Every body this accepts, the careful path accepts with the same values (a test checks it
    on hostile bodies); the rules of :func:`_check_rules` follow on both paths.
    """
    if raw.count(b'"bucket_start"') > max_buckets:
        # Likely over the cap: let the careful path refuse it without validating a bucket.
        return None
    model: type[_FastV2] | type[_FastV3] = _FastV3 if b'"cache_write_1h_tokens"' in raw else _FastV2
    try:
        batch = model.model_validate_json(raw)
    except ValidationError:
        return None
    return batch if len(batch.buckets) <= max_buckets else None


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


@lru_cache(maxsize=8192)
def _aligned_epoch(text: str) -> int | None:
    """Epoch seconds of a ``bucket_start`` on a half-hour, or None (unparsable or not aligned).

    Pure, so cached: a fleet sends the same few half-hours over and over.
    """
    parsed = parse_rfc3339(text)
    if parsed is None or parsed[1]:
        return None
    return parsed[0] if is_aligned(parsed[0]) else None


def _check_start(
    text: str, *, floor: int, latest: int, settings: Settings
) -> tuple[int, str | None]:
    """Epoch seconds of a ``bucket_start`` and the rule it breaks, if any."""
    seconds = _aligned_epoch(text)
    if seconds is None:
        parsed = parse_rfc3339(text)
        if parsed is None:
            return 0, ("must be an RFC 3339 date-time with an offset, e.g. 2026-11-28T10:30:00Z")
        return parsed[0], "must be the start of a half-hour (:00 or :30, zero seconds)"
    if seconds > latest:
        return seconds, f"is more than {settings.future_skew_seconds // 60} minutes in the future"
    if seconds < floor:
        return seconds, f"is before the floor {settings.bucket_floor.isoformat()}"
    return seconds, None


def _check_rules(
    batch: IngestV1 | IngestV2 | IngestV3 | _FastV2 | _FastV3,
    version: int,
    *,
    settings: Settings,
    registry: SourceRegistry,
    now: datetime,
) -> list[BucketWrite]:
    """The batch's writes; every rule is checked on every bucket in one tight pass.

    A batch repeats the same few half-hours, sources and models, so each distinct value is
    checked once. Only when some bucket breaks a rule does :func:`_problems` go over the
    batch again to name each problem (the rare path may be slow, the common one may not).
    """
    floor = int(datetime.combine(settings.bucket_floor, datetime.min.time(), UTC).timestamp())
    latest = int(now.timestamp()) + settings.future_skew_seconds
    now_ms = int(now.timestamp() * 1000)
    max_model = settings.max_model_length
    v2 = version >= 2
    v3 = version == 3
    starts: dict[str, tuple[int, str | None]] = {}
    sources: dict[str, bool] = {}
    models: dict[str, bool] = {}
    out: list[BucketWrite] = []
    broken = False
    for bucket in batch.buckets:
        text = bucket.bucket_start
        checked = starts.get(text)
        if checked is None:
            checked = starts[text] = _check_start(
                text, floor=floor, latest=latest, settings=settings
            )
        source, model = bucket.source, bucket.model
        source_ok = sources.get(source)
        if source_ok is None:
            source_ok = sources[source] = source in registry
        model_ok = models.get(model)
        if model_ok is None:
            model_ok = models[model] = len(model) <= max_model and model.isprintable()
        inp, cached, out_tokens = (
            bucket.input_tokens,
            bucket.cached_input_tokens,
            bucket.output_tokens,
        )
        cache_write = bucket.cache_write_tokens if v2 else 0  # type: ignore[attr-defined]
        counts = {
            "input_tokens": inp,
            "cached_input_tokens": cached,
            "output_tokens": out_tokens,
            "reasoning_output_tokens": bucket.reasoning_output_tokens,
            "total_tokens": bucket.total_tokens,
            "cache_write_tokens": cache_write,
        }
        values = bucket.__dict__
        for name in V3_ONLY:
            counts[name] = values[name] if v3 else 0
        if (
            checked[1] is not None
            or not source_ok
            or not model_ok
            or bucket.total_tokens != inp + cached + out_tokens
            or bucket.reasoning_output_tokens > out_tokens
            or cache_write > inp
            or (v3 and subset_violations(counts))
        ):
            broken = True
            continue
        revision = bucket.revision
        out.append(
            new_write(
                source,
                model,
                checked[0],
                now_ms if revision is None else revision,
                counts,
            )
        )
    if broken:
        raise _problems(batch, version, settings=settings, registry=registry, now=now)
    return out


def _problems(
    batch: IngestV1 | IngestV2 | IngestV3 | _FastV2 | _FastV3,
    version: int,
    *,
    settings: Settings,
    registry: SourceRegistry,
    now: datetime,
) -> ValidationFailed:
    """The error naming every problem of a batch that breaks a rule, in bucket order."""
    problems: list[tuple[ErrorCode, str, str]] = []
    floor = int(datetime.combine(settings.bucket_floor, datetime.min.time(), UTC).timestamp())
    latest = int(now.timestamp()) + settings.future_skew_seconds
    names = COUNTS_BY_VERSION[version]
    for index, bucket in enumerate(batch.buckets):
        _, start_problem = _check_start(
            bucket.bucket_start, floor=floor, latest=latest, settings=settings
        )
        if start_problem is not None:
            problems.append(
                (ErrorCode.BUCKET_START_INVALID, f"buckets[{index}].bucket_start", start_problem)
            )
        if bucket.source not in registry:
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
    code, loc, message = problems[0]
    return ValidationFailed(
        f"{loc}: {message}",
        code=code,
        details=[{"loc": p[1], "message": p[2], "code": str(p[0])} for p in problems],
    )
