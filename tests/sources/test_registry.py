"""The parser registry, duplicate resolution, and properties every parser shares."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.sources import PARSERS, UsageEvent, get_parser, resolve_duplicates
from usageledger.sources._common import InvalidRecordError, timestamp


def event(key: str, output: int, *, source: str = "claude") -> UsageEvent:
    return UsageEvent(
        source=source,
        event_key=key,
        timestamp=datetime(2025, 9, 15, tzinfo=UTC),
        model="m",
        session_id="s",
        project=None,
        input_tokens=10,
        cached_input_tokens=0,
        output_tokens=output,
    )


def test_every_source_is_registered_under_its_own_name() -> None:
    """PARSERS maps each source name to a parser carrying that name."""
    assert sorted(PARSERS) == sorted(
        [
            *("claude", "codex", "gemini", "kilo", "kimi", "opencode", "qwen"),
            *("droid", "hermes", "goose", "copilot", "amp", "every-code"),
            *("pi", "openclaw", "cline", "roo-code", "kilo-code"),
        ]
    )
    for name, parser in PARSERS.items():
        assert parser.name == name
        assert get_parser(name) is parser
        assert parser.duplicate_policy in {"first", "last", "max"}
    incremental = {"claude", "codex", "kimi", "qwen"} | {"pi", "openclaw"}
    incremental |= {"copilot", "every-code"}
    assert {n for n, p in PARSERS.items() if p.incremental} == incremental


def test_get_parser_names_the_known_sources_for_an_unknown_one() -> None:
    """An unknown source is a KeyError that lists what is known."""
    with pytest.raises(KeyError, match=r"unknown source 'cursor' \(known: .*gemini, .*opencode"):
        get_parser("cursor")


def test_resolve_duplicates_applies_first_last_and_max() -> None:
    """'first' keeps the first copy, 'last' the last, 'max' the largest (ties: earlier)."""
    copies = [event("k", 5), event("k", 50), event("k", 7), event("other", 1)]
    assert [e.output_tokens for e in resolve_duplicates(copies, "first")] == [5, 1]
    assert [e.output_tokens for e in resolve_duplicates(copies, "last")] == [7, 1]
    assert [e.output_tokens for e in resolve_duplicates(copies, "max")] == [50, 1]
    same_key_other_source = [event("k", 5), event("k", 6, source="codex")]
    assert len(resolve_duplicates(same_key_other_source, "first")) == 2
    with pytest.raises(ValueError, match="unknown duplicate policy"):
        resolve_duplicates(copies, "sum")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-09-15T10:00:05.123Z", datetime(2025, 9, 15, 10, 0, 5, 123000, tzinfo=UTC)),
        ("2025-09-15T12:00:05+02:00", datetime(2025, 9, 15, 10, 0, 5, tzinfo=UTC)),
        ("2025-09-15T10:00:05.123456789Z", datetime(2025, 9, 15, 10, 0, 5, 123456, tzinfo=UTC)),
        ("2025-09-15T10:00:05", datetime(2025, 9, 15, 10, 0, 5, tzinfo=UTC)),
        (1757930405000, datetime(2025, 9, 15, 10, 0, 5, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc_datetimes(value: Any, expected: datetime) -> None:
    """ISO strings (any offset, any fraction length) and epoch milliseconds become UTC."""
    parsed = timestamp(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("value", [None, "", "soon", True, 10**20, [], {}])
def test_unreadable_timestamps_are_invalid(value: Any) -> None:
    """Anything that is not a date is an InvalidRecordError for the parser to report."""
    with pytest.raises(InvalidRecordError):
        timestamp(value)


_RECORDS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "payload",
                    "info",
                    "message",
                    "usage",
                    "tokens",
                    "id",
                    "timestamp",
                    "input_tokens",
                    "output_tokens",
                    "total_token_usage",
                    "last_token_usage",
                    "role",
                    "time",
                    "created",
                    "messages",
                    "$set",
                    "sessionId",
                    "input",
                    "output",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None, database=None)
@given(
    raw=st.binary(max_size=300)
    | st.lists(_RECORDS, max_size=5).map(lambda rs: "\n".join(json.dumps(r) for r in rs).encode())
)
def test_parsers_never_raise_on_arbitrary_input(name: str, raw: bytes) -> None:
    """Whatever the bytes, parse returns a result with a sane cursor and valid events."""
    parser = PARSERS[name]
    for path in ("x.jsonl", "x.json"):
        result = parser.parse(raw, path=path, state=None)
        assert 0 <= result.consumed <= len(raw)
        for e in result.events:
            assert e.timestamp.tzinfo is not None
            assert min(e.input_tokens, e.cached_input_tokens, e.output_tokens) >= 0
            assert e.reasoning_output_tokens <= e.output_tokens
            assert e.cache_write_tokens <= e.input_tokens
