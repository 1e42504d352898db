"""Half-hour buckets: the bucket key, the token counts and their rules (docs/design.md §2–§3).

The bucket key is declared once, here. The primary keys of ``usage_buckets`` and
``bucket_revisions``, the upsert conflict target and the wire schema are derived from
:data:`BUCKET_KEY` (and a test checks them against it), so a new dimension cannot be added
to one of them without the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

#: The idempotency key of a bucket: who, which device, which source and model, which half-hour.
BUCKET_KEY: tuple[str, ...] = ("user_id", "device_id", "source", "model", "bucket_start")
#: The part of the key a client sends; ``user_id`` and ``device_id`` come from its token.
IDENTITY_COLUMNS: tuple[str, ...] = ("user_id", "device_id")
WIRE_KEY: tuple[str, ...] = tuple(c for c in BUCKET_KEY if c not in IDENTITY_COLUMNS)

#: Schema v1: the five counts of the origin system.
COUNTS_V1: tuple[str, ...] = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)
#: Schema v2 adds the part of input written to a cache.
COUNTS_V2: tuple[str, ...] = (*COUNTS_V1, "cache_write_tokens")
#: The counts a vendor's billing rules price (the subsets of schema v3 repeat them).
PRICED_COUNTS: tuple[str, ...] = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
)
#: The request classes of schema v3, each a prefix of subset counts: tokens of requests whose
#: prompt (input + cached input) is over their model's long-context threshold, of requests in
#: fast mode or priority processing, and of requests that are both (part of the other two).
SUBSET_PREFIXES: tuple[str, ...] = ("long_context_", "fast_", "fast_long_context_")
#: Per-request surcharges of schema v3: counts of requests, not tokens (no part of
#: ``total_tokens``), each billed at a price per 1,000 (docs/pricing.md).
REQUEST_COUNTS: tuple[str, ...] = ("web_search_requests",)
#: Schema v3 adds the one-hour part of the cache writes, the subset counts (so that a bucket
#: is priced exactly as its requests are; docs/pricing.md, "How a cost is computed") and the
#: per-request surcharges.
COUNTS_V3: tuple[str, ...] = (
    *COUNTS_V2,
    "cache_write_1h_tokens",
    *(prefix + name for prefix in SUBSET_PREFIXES for name in PRICED_COUNTS),
    *REQUEST_COUNTS,
)
#: Every count column the ledger stores (the newest schema's counts).
COUNT_COLUMNS: tuple[str, ...] = COUNTS_V3
COUNTS_BY_VERSION: dict[int, tuple[str, ...]] = {1: COUNTS_V1, 2: COUNTS_V2, 3: COUNTS_V3}

HALF_HOUR = 1800  # seconds
MAX_COUNT = 2**53  # counts are below this (exact in a JavaScript number)
#: An uploaded ``revision`` is below this. Revisions are Unix ms by convention (the limit is
#: in the year 287,396), exact in a JavaScript number like the counts, and so far below the
#: database's 64-bit column that a backfill can always write a revision above any an upload
#: can have: a runaway or hostile revision can be repaired (see docs/operations.md).
REVISION_LIMIT = 2**53
#: The largest revision the database stores (a signed 64-bit column).
STORED_REVISION_MAX = 2**63 - 1

Key = tuple[int, int, str, str, int]  # (user_id, device_id, source, model, bucket_start)


@dataclass(frozen=True, slots=True)
class Counts:
    """The counts of a bucket (:data:`COUNT_COLUMNS`); ``total = input + cached_input +
    output``. The v3 token counts after ``cache_write_tokens`` are parts of the first ones;
    ``web_search_requests`` counts requests, not tokens."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    long_context_input_tokens: int = 0
    long_context_cached_input_tokens: int = 0
    long_context_cache_write_tokens: int = 0
    long_context_cache_write_1h_tokens: int = 0
    long_context_output_tokens: int = 0
    fast_input_tokens: int = 0
    fast_cached_input_tokens: int = 0
    fast_cache_write_tokens: int = 0
    fast_cache_write_1h_tokens: int = 0
    fast_output_tokens: int = 0
    fast_long_context_input_tokens: int = 0
    fast_long_context_cached_input_tokens: int = 0
    fast_long_context_cache_write_tokens: int = 0
    fast_long_context_cache_write_1h_tokens: int = 0
    fast_long_context_output_tokens: int = 0
    web_search_requests: int = 0

    @classmethod
    def from_mapping(cls, row: Mapping[str, object]) -> Counts:
        """Build from any mapping that has the count columns (missing ones are 0)."""
        values: dict[str, int] = {}
        for name in COUNT_COLUMNS:
            value = row.get(name, 0)
            values[name] = int(value) if isinstance(value, int | float | str) else 0
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        """The counts keyed by column name."""
        return {name: getattr(self, name) for name in COUNT_COLUMNS}

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, n) + getattr(other, n) for n in COUNT_COLUMNS))


ZERO = Counts()


@dataclass(frozen=True, slots=True)
class BucketWrite:
    """A bucket value to apply for one device (the wire's buckets, a backfill's, a replay's)."""

    source: str
    model: str
    bucket_start: int
    revision: int
    counts: dict[str, int]


_new = object.__new__
_set_source, _set_model, _set_start, _set_revision, _set_counts = (
    BucketWrite.__dict__[name].__set__
    for name in ("source", "model", "bucket_start", "revision", "counts")
)


def new_write(
    source: str, model: str, bucket_start: int, revision: int, counts: dict[str, int]
) -> BucketWrite:
    """``BucketWrite(...)`` at half the cost, for the ingest hot path (500 per request).

    A frozen dataclass's ``__init__`` goes through ``object.__setattr__`` for each field; this
    fills the same slots directly. The result is an ordinary, equal, frozen ``BucketWrite``.
    """
    write: BucketWrite = _new(BucketWrite)
    _set_source(write, source)
    _set_model(write, model)
    _set_start(write, bucket_start)
    _set_revision(write, revision)
    _set_counts(write, counts)
    return write


def sum_counts(items: Iterable[Counts]) -> Counts:
    """Add up counts."""
    total = ZERO
    for item in items:
        total = total + item
    return total


def equality_violations(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """Return ``(field, message)`` for each equality of docs/design.md §3 that ``counts`` breaks."""
    problems: list[tuple[str, str]] = []
    inp = counts.get("input_tokens", 0)
    cached = counts.get("cached_input_tokens", 0)
    out = counts.get("output_tokens", 0)
    total = counts.get("total_tokens", 0)
    if total != inp + cached + out:
        problems.append(
            (
                "total_tokens",
                f"total_tokens ({total}) must equal input_tokens + cached_input_tokens + "
                f"output_tokens ({inp + cached + out})",
            )
        )
    reasoning = counts.get("reasoning_output_tokens", 0)
    if reasoning > out:
        problems.append(
            (
                "reasoning_output_tokens",
                f"reasoning_output_tokens ({reasoning}) must not exceed output_tokens ({out})",
            )
        )
    if "cache_write_tokens" in counts and counts["cache_write_tokens"] > inp:
        problems.append(
            (
                "cache_write_tokens",
                f"cache_write_tokens ({counts['cache_write_tokens']}) must not exceed "
                f"input_tokens ({inp})",
            )
        )
    if "cache_write_1h_tokens" in counts:
        problems.extend(subset_violations(counts))
    return problems


def subset_violations(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """``(field, message)`` for each schema v3 subset rule ``counts`` breaks.

    The rules make every bucket priceable (:func:`usageledger.ledger.pricing.split_counts`
    never refuses a bucket they accept). The counts describe four disjoint request classes:
    ``fast_long_context_*`` (both), long context only (``long_context_*`` less both), fast only
    (``fast_*`` less both) and standard (the totals less the other three). Each
    ``fast_long_context_*`` count is part of its ``long_context_*`` and ``fast_*`` counts, the
    non-standard classes together are part of the totals, and in every class, as in the
    totals and each prefix: ``cache_write_1h ≤ cache_write ≤ input``.
    """
    problems: list[tuple[str, str]] = []

    def value(name: str) -> int:
        return counts.get(name, 0)

    for prefix in ("", *SUBSET_PREFIXES):
        inp, write = value(prefix + "input_tokens"), value(prefix + "cache_write_tokens")
        write_1h = value(prefix + "cache_write_1h_tokens")
        if prefix and write > inp:
            problems.append(
                (
                    prefix + "cache_write_tokens",
                    f"{prefix}cache_write_tokens ({write}) must not exceed "
                    f"{prefix}input_tokens ({inp})",
                )
            )
        if write_1h > write:
            problems.append(
                (
                    prefix + "cache_write_1h_tokens",
                    f"{prefix}cache_write_1h_tokens ({write_1h}) must not exceed "
                    f"{prefix}cache_write_tokens ({write})",
                )
            )
    if problems:
        return problems  # the classes below are differences of these: one cause, one report
    standard: dict[str, int] = {}
    long_only: dict[str, int] = {}
    fast_only: dict[str, int] = {}
    for name in PRICED_COUNTS:
        long_, fast, both = (value(prefix + name) for prefix in SUBSET_PREFIXES)
        for part_of in ("long_context_", "fast_"):
            whole = value(part_of + name)
            if both > whole:
                problems.append(
                    (
                        "fast_long_context_" + name,
                        f"fast_long_context_{name} ({both}) must not exceed {part_of}{name} "
                        f"({whole})",
                    )
                )
        if long_ + fast - both > value(name):
            problems.append(
                (
                    "long_context_" + name,
                    f"long_context_{name} + fast_{name} - fast_long_context_{name} "
                    f"({long_ + fast - both}) must not exceed {name} ({value(name)})",
                )
            )
        standard[name] = value(name) - long_ - fast + both
        long_only[name] = long_ - both
        fast_only[name] = fast - both
    if problems:
        return problems
    # Each class's priced counts: (the prefix of the field a problem names, whose, the counts).
    classes = [
        ("", "the standard requests' (the totals less long_context_* and fast_*)", standard),
        (
            "long_context_",
            "the long-context-only requests' (long_context_* less fast_long_context_*)",
            long_only,
        ),
        ("fast_", "the fast-only requests' (fast_* less fast_long_context_*)", fast_only),
    ]
    for prefix, whose, part in classes:
        inp, write, write_1h = (
            part["input_tokens"],
            part["cache_write_tokens"],
            part["cache_write_1h_tokens"],
        )
        if write > inp:
            problems.append(
                (
                    prefix + "cache_write_tokens",
                    f"{whose} cache_write_tokens ({write}) must not exceed their input_tokens "
                    f"({inp})",
                )
            )
        elif write_1h > write:
            problems.append(
                (
                    prefix + "cache_write_1h_tokens",
                    f"{whose} cache_write_1h_tokens ({write_1h}) must not exceed their "
                    f"cache_write_tokens ({write})",
                )
            )
    return problems


def request_counts(counts: Mapping[str, int], *, long_context: bool, fast: bool) -> dict[str, int]:
    """The v3 counts of one request: its totals (``counts``, in :data:`COUNT_COLUMNS` names)
    and the same priced counts again under each class the request belongs to."""
    out = _ZEROS.copy()  # every class column 0: most requests are in no class
    for name in _REQUEST_TOTALS:
        out[name] = counts.get(name, 0)
    if long_context or fast:
        classes = {
            "long_context_": long_context,
            "fast_": fast,
            "fast_long_context_": long_context and fast,
        }
        for prefix, member in classes.items():
            if member:
                for name in PRICED_COUNTS:
                    out[prefix + name] = out[name]
    return out


_ZEROS = dict.fromkeys(COUNT_COLUMNS, 0)
#: The columns of a request's totals (every count column but the class subsets).
_REQUEST_TOTALS = tuple(name for name in COUNT_COLUMNS if not name.startswith(SUBSET_PREFIXES))


#: RFC 3339 ``date-time`` (section 5.6), ASCII digits only: ``T`` and ``Z`` may be lower case,
#: a fraction has at most 9 digits, the offset is ``Z`` or ``+HH:MM``/``-HH:MM``. Built once.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> tuple[int, int] | None:
    """``(epoch seconds, nanoseconds)`` of an RFC 3339 date-time with an offset, or None.

    Strict where ``datetime.fromisoformat`` is lenient: no week or ordinal dates, no basic
    format, no space for ``T``, no missing offset, no hour 24 or leap second, no digits other
    than ASCII ones, no calendar date that does not exist.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:  # month 13, February 30, hour 24, second 60, year 0
        return None
    offset = 0
    if sign is not None:
        if int(off_hours) > 23 or int(off_minutes) > 59:
            return None
        offset = (int(off_hours) * 60 + int(off_minutes)) * 60
        offset = offset if sign == "+" else -offset
    nanoseconds = int(fraction.ljust(9, "0")) if fraction else 0
    return int(moment.timestamp()) - offset, nanoseconds


def to_epoch(ts: datetime) -> int:
    """Seconds since the Unix epoch of an aware datetime."""
    return int(ts.timestamp())


def from_epoch(seconds: int) -> datetime:
    """The aware UTC datetime of an epoch second."""
    return datetime.fromtimestamp(seconds, UTC)


def iso_utc(seconds: int) -> str:
    """``2026-11-28T10:30:00Z`` for an epoch second."""
    return from_epoch(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_half_hour(seconds: int) -> int:
    """The start of the half-hour containing ``seconds``."""
    return seconds - seconds % HALF_HOUR


def is_aligned(seconds: int) -> bool:
    """True when ``seconds`` is the start of a UTC half-hour."""
    return seconds % HALF_HOUR == 0


def local_day(seconds: int, tz: ZoneInfo) -> date:
    """The local day (in ``tz``) a bucket starting at ``seconds`` belongs to."""
    return from_epoch(seconds).astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> int:
    """Epoch second of local midnight starting ``day`` in ``tz``.

    On a day whose midnight does not exist (a DST jump at 00:00) the day starts at the first
    instant that exists, which ``zoneinfo`` resolves by folding forward.
    """
    naive = datetime(day.year, day.month, day.day)
    aware = naive.replace(tzinfo=tz)
    # Round-trip through UTC to land on an instant that exists.
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).date() != day:  # midnight skipped: the day starts one gap later
        utc = (naive + timedelta(hours=1)).replace(tzinfo=tz).astimezone(UTC)
    return int(utc.timestamp())


def day_range(first: date, last: date, tz: ZoneInfo) -> tuple[int, int]:
    """``[start, end)`` epoch seconds covering local days ``first`` … ``last`` inclusive."""
    return day_start(first, tz), day_start(last + timedelta(days=1), tz)


def contiguous_runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Group days into ``(first, last)`` runs of consecutive days (a rebuild's ranges)."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def utc_offsets(start: int, end: int, tz: ZoneInfo) -> list[tuple[int, int]]:
    """Segments of constant UTC offset over ``[start, end)``: ``[(segment_start, offset_s)]``.

    Offsets change at most a few times a year and always on a quarter hour, so the range is
    walked a day at a time and a change is located by bisection on the 15-minute grid. A
    bucket's local day is the local date of its start, taken with the offset of its segment.
    """
    grid = 900
    segments = [(start, _offset(start, tz))]
    cursor = start - start % grid
    last_probe = (end - 1) - (end - 1) % grid
    while cursor < last_probe:
        probe = min(cursor + 86400, last_probe)
        current = segments[-1][1]
        if _offset(probe, tz) == current:
            cursor = probe
            continue
        lo, hi = cursor, probe  # offset(lo) == current != offset(hi)
        while hi - lo > grid:
            mid = lo + ((hi - lo) // grid // 2) * grid
            if _offset(mid, tz) == current:
                lo = mid
            else:
                hi = mid
        segments.append((hi, _offset(hi, tz)))
        cursor = hi
    return segments


def _offset(seconds: int, tz: ZoneInfo) -> int:
    delta = from_epoch(seconds).astimezone(tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0
