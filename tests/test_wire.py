"""The ingest payload's fast path: it accepts exactly what the careful path accepts.

``wire.parse_ingest`` validates a well-formed v2 batch straight from the bytes and falls back
to the careful path (parse, then check version and bucket count, then validate) for anything
else. These tests hold the two paths to the same answer on valid and hostile bodies, among
them hostile ``bucket_start`` spellings and revisions, in v1 and v2 batches.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.config import Settings
from usageledger.errors import LedgerError
from usageledger.source_registry import SourceRegistry
from usageledger.wire import _fast_path, _parse_careful, parse_ingest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings(home="/tmp", database_url="sqlite://", log_file="off", max_buckets=5)
REGISTRY = SourceRegistry(frozenset())


def good_bucket(n: int = 0) -> dict[str, Any]:
    """A valid v2 bucket."""
    return {
        "bucket_start": f"2026-11-2{n % 8}T10:30:00Z",
        "source": "codex",
        "model": "gpt-5-codex",
        "revision": 7,
        "input_tokens": 100 + n,
        "cached_input_tokens": 50,
        "output_tokens": 20,
        "reasoning_output_tokens": 5,
        "total_tokens": 170 + n,
        "cache_write_tokens": 10,
    }


def outcome(parse: Any, raw: bytes) -> Any:
    """The buckets, or the error's status, code and details."""
    try:
        return parse(raw, settings=SETTINGS, registry=REGISTRY, now=NOW)
    except LedgerError as exc:
        return (exc.status, str(exc.code), exc.message, exc.details)


def same_answer(raw: bytes) -> Any:
    """Both paths give the same outcome for ``raw``; return it."""
    fast, careful = outcome(parse_ingest, raw), outcome(_parse_careful, raw)
    assert fast == careful
    return fast


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"schema_version": 2.0, "buckets": []}', "UNSUPPORTED_SCHEMA_VERSION"),
        (b'{"schema_version": true, "buckets": []}', "UNSUPPORTED_SCHEMA_VERSION"),
        (b'{"schema_version": "2", "buckets": []}', "UNSUPPORTED_SCHEMA_VERSION"),
        (b'{"schema_version": 2, "buckets": [{"input_tokens": NaN}]}', "INVALID_JSON"),
        (b'{"schema_version": 2, "buckets": []} trailing', "INVALID_JSON"),
        (b"", "INVALID_JSON"),
        (b"[1, 2]", "VALIDATION_FAILED"),
        (b"[" * 5000 + b"]" * 5000, "INVALID_JSON"),
    ],
)
def test_the_fast_path_refuses_what_the_careful_path_refuses(raw: bytes, code: str) -> None:
    """Float or boolean versions, NaN, trailing bytes, nesting: refused with the same code."""
    assert _fast_path(raw, SETTINGS.max_buckets) is None
    answer = same_answer(raw)
    assert answer[1] == code


def test_too_many_buckets_is_413_on_both_paths() -> None:
    """Over max_buckets: 413 whether or not the bucket key is spelt with escapes."""
    items = [good_bucket(n) for n in range(6)]
    plain = json.dumps({"schema_version": 2, "buckets": items}).encode()
    escaped = plain.replace(b'"bucket_start"', b'"bucket\\u005fstart"')
    for raw in (plain, escaped):
        assert _fast_path(raw, SETTINGS.max_buckets) is None
        assert same_answer(raw)[0] == 413


def test_duplicate_keys_mean_the_same_on_both_paths() -> None:
    """A key given twice takes its last value on both paths."""
    raw = (
        b'{"schema_version": 2, "buckets": [{"bucket_start": "2026-11-28T10:30:00Z", '
        b'"source": "codex", "model": "m", "input_tokens": 1, "input_tokens": 2, '
        b'"cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0, '
        b'"total_tokens": 2, "cache_write_tokens": 0}], "schema_version": 2}'
    )
    (write,) = same_answer(raw)
    assert write.counts["input_tokens"] == 2


def test_a_valid_batch_takes_the_fast_path_with_the_careful_paths_values() -> None:
    """A valid v2 batch is read by the fast path and equals the careful path's writes."""
    raw = json.dumps({"schema_version": 2, "buckets": [good_bucket(n) for n in range(5)]})
    assert _fast_path(raw.encode(), SETTINGS.max_buckets) is not None
    writes = same_answer(raw.encode())
    assert [w.counts["input_tokens"] for w in writes] == [100, 101, 102, 103, 104]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
FIELDS = [*good_bucket(), "user_id"]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid batch with a few fields removed, added or replaced by arbitrary JSON."""
    items = [good_bucket(n) for n in range(draw(st.integers(0, 6)))]
    for item in items:
        for _ in range(draw(st.integers(0, 2))):
            field = draw(st.sampled_from(FIELDS))
            if draw(st.booleans()):
                item.pop(field, None)
            else:
                item[field] = draw(JSON_VALUES)
    document: dict[str, Any] = {
        "schema_version": draw(st.sampled_from([2, 2, 1, 3])),
        "buckets": items,
    }
    if draw(st.booleans()):
        document[draw(st.sampled_from(["schema_version", "buckets", "extra"]))] = draw(JSON_VALUES)
    return json.dumps(document).encode()


@settings(max_examples=400, deadline=None)
@given(mutated_bodies())
def test_both_paths_agree_on_any_mutated_batch(raw: bytes) -> None:
    """Whatever a body holds, the fast path never changes the answer."""
    same_answer(raw)


#: ``bucket_start`` spellings that ``datetime.fromisoformat`` reads (or nearly does) and that are
#: not an RFC 3339 date-time with an offset. Each is refused, naming the bucket and the field.
HOSTILE_STARTS: list[tuple[str, str]] = [
    ("NUL before the offset", "2026-11-28T10:30:00\x00Z"),
    ("NUL after the offset", "2026-11-28T10:30:00Z\x00"),
    ("week date", "2026-W48-6T10:30:00Z"),
    ("ordinal date", "2026-332T10:30:00Z"),
    ("basic format", "20261128T103000Z"),
    ("basic offset", "2026-11-28T10:30:00+0000"),
    ("hour-only offset", "2026-11-28T10:30:00+00"),
    ("offset with seconds", "2026-11-28T10:30:00+00:00:00"),
    ("offset hour 24", "2026-11-28T10:30:00+24:00"),
    ("missing offset", "2026-11-28T10:30:00"),
    ("missing seconds", "2026-11-28T10:30Z"),
    ("hour only", "2026-11-28T10Z"),
    ("date only", "2026-11-28"),
    ("hour 24", "2026-11-28T24:00:00Z"),
    ("leap second", "2026-12-31T23:59:60Z"),
    ("no such day", "2026-02-30T10:30:00Z"),
    ("year zero", "0000-01-01T00:00:00Z"),
    ("space for T", "2026-11-28 10:30:00Z"),
    ("space before Z", "2026-11-28T10:30:00 Z"),
    ("leading space", " 2026-11-28T10:30:00Z"),
    ("trailing newline", "2026-11-28T10:30:00Z\n"),
    ("comma fraction", "2026-11-28T10:30:00,000Z"),
    ("ten fraction digits", "2026-11-28T10:30:00.0000000000Z"),
    ("fullwidth digits", "２０２６-11-28T10:30:00Z"),
    ("Arabic-Indic digits", "٢٠٢٦-11-28T10:30:00Z"),
    ("signed year", "+2026-11-28T10:30:00Z"),
    ("over-long", "2026-11-28T10:30:00" + "0" * 400 + "Z"),
]
#: Spellings RFC 3339 allows for 2026-11-28T10:30:00Z, all accepted as that half-hour.
GOOD_STARTS = [
    "2026-11-28T10:30:00Z",
    "2026-11-28t10:30:00z",
    "2026-11-28T10:30:00+00:00",
    "2026-11-28T10:30:00-00:00",
    "2026-11-28T16:00:00+05:30",
    "2026-11-27T23:30:00-11:00",
    "2026-11-28T10:30:00.000Z",
    "2026-11-28T10:30:00.000000000+00:00",
]


def batch_with_start(start: str, version: int) -> bytes:
    """A valid bucket, then one with ``start`` as its ``bucket_start``, in a v1 or v2 batch."""
    items = [good_bucket(0), {**good_bucket(1), "bucket_start": start}]
    if version == 1:
        for item in items:
            item.pop("cache_write_tokens")
    return json.dumps({"schema_version": version, "buckets": items}).encode()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("case", "start"), HOSTILE_STARTS, ids=[c for c, _ in HOSTILE_STARTS])
def test_a_bucket_start_that_is_not_rfc_3339_is_refused_on_both_paths(
    case: str, start: str, version: int
) -> None:
    """NUL, week and ordinal dates, basic format, no offset, 24:00, a leap second, spaces,
    non-ASCII digits, over-long: 422 naming ``buckets[1].bucket_start``, in v1 and v2 (a v2
    batch takes the fast path: the start is a well-formed JSON string)."""
    raw = batch_with_start(start, version)
    assert (_fast_path(raw, SETTINGS.max_buckets) is not None) == (version == 2)
    status, code, message, details = same_answer(raw)
    assert status == 422, case
    assert code == "BUCKET_START_INVALID", case
    assert message.startswith("buckets[1].bucket_start: must be an RFC 3339 date-time")
    assert [d["loc"] for d in details] == ["buckets[1].bucket_start"]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("start", GOOD_STARTS)
def test_every_rfc_3339_spelling_of_a_half_hour_is_that_half_hour(start: str, version: int) -> None:
    """Lower-case t and z, offsets, and a fraction of zeros name the same half-hour."""
    writes = same_answer(batch_with_start(start, version))
    assert writes[1].bucket_start == int(datetime(2026, 11, 28, 10, 30, tzinfo=UTC).timestamp())


def test_a_fraction_of_a_second_is_not_a_half_hour_start() -> None:
    """A non-zero fraction parses but is refused as off the half-hour."""
    status, code, message, _ = same_answer(batch_with_start("2026-11-28T10:30:00.001Z", 2))
    assert (status, code) == (422, "BUCKET_START_INVALID")
    assert "start of a half-hour" in message


STRICT_SHAPE = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.0{1,9})?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)


@st.composite
def mutated_starts(draw: st.DrawFn) -> str:
    """A valid ``bucket_start`` with a few characters deleted, inserted or replaced."""
    text = list(draw(st.sampled_from(GOOD_STARTS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        char = draw(st.characters(codec="utf-8") | st.sampled_from(list("0123456789TZ:+-. ")))
        if action == "insert":
            text.insert(at, char)
        elif at < len(text):
            if action == "delete":
                del text[at]
            else:
                text[at] = char
    return "".join(text)


@settings(max_examples=300, deadline=None)
@given(mutated_starts())
def test_any_accepted_bucket_start_has_the_rfc_3339_shape(start: str) -> None:
    """Whatever a mutation makes of a start, both paths agree, and what they accept is an
    RFC 3339 date-time with ASCII digits, an offset and at most a zero fraction."""
    answer = same_answer(batch_with_start(start, 2))
    if isinstance(answer, list):
        assert STRICT_SHAPE.fullmatch(start), start


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("revision", [2**53, 2**63 - 1, 2**63, 2**70])
def test_a_revision_at_or_above_two_to_the_53_is_refused(revision: int, version: int) -> None:
    """A revision must stay below 2^53 (room for backfills above it): 422 naming the bucket."""
    items = [good_bucket(0), {**good_bucket(1), "revision": revision}]
    if version == 1:
        for item in items:
            item.pop("cache_write_tokens")
    raw = json.dumps({"schema_version": version, "buckets": items}).encode()
    status, code, message, details = same_answer(raw)
    assert (status, code) == (422, "VALIDATION_FAILED")
    assert [d["loc"] for d in details] == ["buckets[1].revision"]
    assert message.startswith("buckets[1].revision:")


def test_the_largest_revision_allowed_is_accepted() -> None:
    """2^53 - 1 is a revision like any other."""
    raw = json.dumps({"schema_version": 2, "buckets": [{**good_bucket(0), "revision": 2**53 - 1}]})
    (write,) = same_answer(raw.encode())
    assert write.revision == 2**53 - 1


# --- schema v3: the billing subsets --------------------------------------------------------

V3_ZERO = {
    "cache_write_1h_tokens": 0,
    **{
        prefix + name: 0
        for prefix in ("long_context_", "fast_", "fast_long_context_")
        for name in (
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
        )
    },
    "web_search_requests": 0,
}


def v3_bucket(n: int = 0, **counts: int) -> dict[str, Any]:
    """A valid v3 bucket: ``good_bucket(n)`` with the v3 counts (0 unless given)."""
    return {**good_bucket(n), **V3_ZERO, **counts}


def v3_batch(*buckets: dict[str, Any]) -> bytes:
    """A v3 batch."""
    return json.dumps({"schema_version": 3, "buckets": list(buckets)}).encode()


def test_a_v3_batch_takes_the_fast_path_and_keeps_its_subset_counts() -> None:
    """A v3 bucket whose long-context request had 60 input (10 of them 1h writes), 50 cached
    and 20 output tokens of the bucket's 100/50/20 reads back with those counts."""
    bucket = v3_bucket(
        cache_write_1h_tokens=10,
        long_context_input_tokens=60,
        long_context_cached_input_tokens=50,
        long_context_cache_write_tokens=10,
        long_context_cache_write_1h_tokens=10,
        long_context_output_tokens=20,
    )
    raw = v3_batch(bucket)
    assert _fast_path(raw, SETTINGS.max_buckets) is not None
    (write,) = same_answer(raw)
    assert write.counts["long_context_input_tokens"] == 60
    assert write.counts["cache_write_1h_tokens"] == 10
    assert write.counts["fast_input_tokens"] == 0


@pytest.mark.parametrize("version", [1, 2])
def test_v1_and_v2_buckets_are_stored_with_every_v3_count_zero(version: int) -> None:
    """Older clients keep working: their buckets read as standard requests, 5-minute writes."""
    item = good_bucket(0)
    if version == 1:
        item.pop("cache_write_tokens")
    (write,) = same_answer(json.dumps({"schema_version": version, "buckets": [item]}).encode())
    assert all(write.counts[name] == 0 for name in V3_ZERO)
    assert write.counts["input_tokens"] == 100


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ({"cache_write_1h_tokens": 11}, "cache_write_1h_tokens"),  # > cache_write 10
        ({"long_context_input_tokens": 101}, "long_context_input_tokens"),  # > input 100
        (
            {"fast_long_context_output_tokens": 5, "fast_output_tokens": 5},
            "fast_long_context_output_tokens",  # not part of long_context_output (0)
        ),
        (
            {"long_context_output_tokens": 15, "fast_output_tokens": 15},
            "long_context_output_tokens",  # 15 + 15 - 0 > output 20
        ),
        ({"fast_cache_write_tokens": 5}, "fast_cache_write_tokens"),  # > fast_input 0
    ],
)
def test_a_v3_subset_larger_than_its_whole_is_refused_naming_it(
    counts: dict[str, int], field: str
) -> None:
    """Each subset rule of schema v3 is a TOKEN_EQUALITY_VIOLATED at its field, on both paths."""
    status, code, _, details = same_answer(v3_batch(v3_bucket(**counts)))
    assert (status, code) == (422, "TOKEN_EQUALITY_VIOLATED")
    assert f"buckets[0].{field}" in [d["loc"] for d in details]


def test_a_v3_count_in_a_v2_batch_is_an_unknown_field() -> None:
    """The v2 allowlist is untouched: ``cache_write_1h_tokens`` there is UNKNOWN_FIELD."""
    raw = json.dumps(
        {"schema_version": 2, "buckets": [{**good_bucket(0), "cache_write_1h_tokens": 0}]}
    ).encode()
    status, code, _, _ = same_answer(raw)
    assert (status, code) == (422, "UNKNOWN_FIELD")
