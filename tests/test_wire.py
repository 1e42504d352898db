"""The ingest payload's fast path: it accepts exactly what the careful path accepts.

``wire.parse_ingest`` validates a well-formed v2 batch straight from the bytes and falls back
to the careful path (parse, then check version and bucket count, then validate) for anything
else. These tests hold the two paths to the same answer on valid and hostile bodies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.config import Settings
from usageledger.errors import LedgerError
from usageledger.source_registry import SourceRegistry
from usageledger.wire import _fast_v2, _parse_careful, parse_ingest

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
    assert _fast_v2(raw, SETTINGS.max_buckets) is None
    answer = same_answer(raw)
    assert answer[1] == code


def test_too_many_buckets_is_413_on_both_paths() -> None:
    """Over max_buckets: 413 whether or not the bucket key is spelt with escapes."""
    items = [good_bucket(n) for n in range(6)]
    plain = json.dumps({"schema_version": 2, "buckets": items}).encode()
    escaped = plain.replace(b'"bucket_start"', b'"bucket\\u005fstart"')
    for raw in (plain, escaped):
        assert _fast_v2(raw, SETTINGS.max_buckets) is None
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
    assert _fast_v2(raw.encode(), SETTINGS.max_buckets) is not None
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
