"""Codex CLI rollout parser: mapping, re-emits, resets, forks, archives, cursors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.sources.codex import CodexParser

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, parse_path, sample_env, scan

PARSER = CodexParser()
A = "0199a000-0000-7000-8000-000000000001"
B = "0199a000-0000-7000-8000-000000000002"
C = "0199a000-0000-7000-8000-000000000003"
FILE_A = SAMPLES / f"codex/sessions/2025/09/15/rollout-2025-09-15T10-00-00-{A}.jsonl"
FILE_B = SAMPLES / f"codex/sessions/2025/09/15/rollout-2025-09-15T11-00-00-{B}.jsonl"
FILE_C = SAMPLES / f"codex/sessions/2025/09/14/rollout-2025-09-14T09-00-00-{C}.jsonl"
ARCHIVED_C = SAMPLES / f"codex/archived_sessions/rollout-2025-09-14T09-00-00-{C}.jsonl"


def as_paths(found: Sequence[str | Path]) -> list[Path]:
    """Discovered files as ``Path`` objects (a parser may list them as strings)."""
    return [Path(item) for item in found]


def usage(i: int, c: int, o: int, r: int) -> dict[str, int]:
    return {
        "input_tokens": i,
        "cached_input_tokens": c,
        "output_tokens": o,
        "reasoning_output_tokens": r,
        "total_tokens": i + o,
    }


def token_count(ts: str, total: Any = None, last: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {"model_context_window": 272000}
    if total is not None:
        info["total_token_usage"] = usage(*total)
    if last is not None:
        info["last_token_usage"] = usage(*last)
    return {"timestamp": ts, "type": "event_msg", "payload": {"type": "token_count", "info": info}}


HEADER = [
    {
        "timestamp": "2025-09-15T10:00:00.000Z",
        "type": "session_meta",
        "payload": {"id": A, "cwd": "/home/alice/proj-a", "originator": "codex_cli_rs"},
    },
    {
        "timestamp": "2025-09-15T10:00:00.010Z",
        "type": "turn_context",
        "payload": {"cwd": "/home/alice/proj-a", "model": "gpt-5-codex"},
    },
]


def parse(*records: Any) -> Any:
    return PARSER.parse(jsonl(*records), path=f"rollout-x-{A}.jsonl", state=None)


def test_it_maps_codex_input_net_of_cached_input() -> None:
    """Codex input includes cached input, so input_tokens = input - cached."""
    result = parse(*HEADER, token_count("2025-09-15T10:00:05.000Z", None, (1200, 200, 300, 100)))
    (event,) = result.events
    # input 1200 - cached 200 = 1000; output 300 includes reasoning 100; total 1000+200+300.
    assert (event.input_tokens, event.cached_input_tokens) == (1000, 200)
    assert (event.output_tokens, event.reasoning_output_tokens) == (300, 100)
    assert event.total_tokens == 1500
    assert event.cache_write_tokens == 0
    assert event.model == "gpt-5-codex"
    assert event.session_id == A
    assert event.project == "/home/alice/proj-a"
    assert event.timestamp == datetime(2025, 9, 15, 10, 0, 5, tzinfo=UTC)
    assert result.problems == []


def test_it_counts_reemitted_totals_once() -> None:
    """A token_count whose cumulative totals did not move is a re-emit, not usage."""
    t1 = ((1200, 200, 300, 100), (1200, 200, 300, 100))
    result = parse(
        *HEADER,
        token_count("2025-09-15T10:00:05.000Z", *t1),
        token_count("2025-09-15T10:00:06.000Z", *t1),
        token_count("2025-09-15T10:00:09.000Z", *t1),
    )
    assert len(result.events) == 1
    assert result.events[0].total_tokens == 1500


def test_it_uses_differences_of_totals_when_last_usage_is_missing() -> None:
    """Without last_token_usage the delta of total_token_usage is the event."""
    result = parse(
        *HEADER,
        token_count("2025-09-15T10:00:05.000Z", (1200, 200, 300, 100)),
        token_count("2025-09-15T10:01:00.000Z", (3000, 1200, 500, 150)),
    )
    second = result.events[1]
    # (3000-1200, 1200-200, 500-300, 150-100) = (1800, 1000, 200, 50); input = 1800-1000.
    assert (second.input_tokens, second.cached_input_tokens) == (800, 1000)
    assert (second.output_tokens, second.reasoning_output_tokens) == (200, 50)


def test_it_starts_a_new_baseline_when_totals_decrease() -> None:
    """A counter reset (a total went down) counts the new total from zero."""
    result = parse(
        *HEADER,
        token_count("2025-09-15T10:02:00.000Z", (4500, 2000, 800, 200)),
        token_count("2025-09-15T10:05:00.000Z", (500, 100, 60, 10)),
        token_count("2025-09-15T10:06:00.000Z", (900, 300, 100, 20)),
    )
    reset, after = result.events[1], result.events[2]
    # Reset: the whole new total (500,100,60,10) -> input 500-100 = 400.
    assert (reset.input_tokens, reset.cached_input_tokens, reset.output_tokens) == (400, 100, 60)
    # Then differences from the new baseline: (400,200,40,10) -> input 400-200 = 200.
    assert (after.input_tokens, after.cached_input_tokens, after.output_tokens) == (200, 200, 40)
    assert result.state["totals"] == [900, 300, 100, 20]


def test_the_model_follows_turn_context_and_the_first_session_meta_names_the_session() -> None:
    """A fork's second session_meta (its parent's) does not rename the session."""
    events, _ = parse_path(PARSER, FILE_B)
    assert {e.session_id for e in events} == {B}
    assert {e.model for e in events} == {"gpt-5-codex"}
    a_events, _ = parse_path(PARSER, FILE_A)
    assert [e.model for e in a_events] == ["gpt-5-codex"] * 2 + ["gpt-5"] * 3


def test_it_counts_forked_history_once() -> None:
    """Events a fork replays from its parent (at a new timestamp) share the parent's keys."""
    a_events, _ = parse_path(PARSER, FILE_A)
    b_events, _ = parse_path(PARSER, FILE_B)
    # B replays A's first two events, then adds one turn of its own.
    assert [e.event_key for e in b_events[:2]] == [e.event_key for e in a_events[:2]]
    assert b_events[0].timestamp != a_events[0].timestamp
    events, _ = scan(PARSER, {"CODEX_HOME": str(SAMPLES / "codex")}, Path("/nonexistent"))
    keys = [e.event_key for e in events]
    assert len(keys) == len(set(keys))
    # A: 5 events, B: 1 own event, C: 2 events (its archived copy adds nothing).
    assert len(events) == 8


def test_a_session_in_sessions_and_archived_sessions_counts_once() -> None:
    """The archived copy of a rollout yields the same keys as the active one."""
    active, _ = parse_path(PARSER, FILE_C)
    archived, _ = parse_path(PARSER, ARCHIVED_C)
    assert [e.event_key for e in active] == [e.event_key for e in archived]
    assert active == archived


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """The committed samples sum to the hand-computed totals per UTC day."""
    events, problems = scan(PARSER, sample_env(), Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-14, session C (archived copy counted once):
    #   (2000,500,400,0) -> in 1500, cached 500, out 400
    #   (3000,2000,300,100) -> in 1000, cached 2000, out 300, reasoning 100
    #   = in 2500, cached 2500, out 700, reasoning 100; total 5700
    assert days["2025-09-14"] == Sums(2500, 2500, 700, 100)
    # 2025-09-15, session A (B's replays collapse into A's events):
    #   T1 (1200,200,300,100)       -> in 1000, cached  200, out 300, r 100
    #   re-emit of T1               -> nothing
    #   T2 last (1800,1000,200,50)  -> in  800, cached 1000, out 200, r  50
    #   T3 last (1500,800,300,50)   -> in  700, cached  800, out 300, r  50
    #   reset total (500,100,60,10) -> in  400, cached  100, out  60, r  10
    #   diff (900,300,100,20)-reset -> in  200, cached  200, out  40, r  10
    #   = in 3100, cached 2300, out 900, reasoning 220; total 6300
    assert days["2025-09-15"] == Sums(3100, 2300, 900, 220)
    assert days["2025-09-15"].total == 6300
    # 2025-09-16, fork B's own turn: last (1500,1000,250,50) -> in 500, cached 1000, out 250.
    assert days["2025-09-16"] == Sums(500, 1000, 250, 50)
    assert sorted((p.path, p.line) for p in problems) == [
        (str(FILE_A), 8),  # A: a truncated JSON line
        (str(FILE_B), 7),  # B: a line that is not UTF-8
    ]


def test_it_does_not_consume_a_partial_last_line() -> None:
    """Bytes after the last newline stay unread until the line is complete."""
    data = FILE_A.read_bytes()
    assert not data.endswith(b"\n")
    result = PARSER.parse(data, path=str(FILE_A), state=None)
    assert result.consumed == data.rfind(b"\n") + 1
    assert all(p.line != 13 for p in result.problems)
    # The writer finishes the line: the rest parses from the cursor with the stored state.
    finished = data[result.consumed :].split(b'"input_tokens":1000')[0]
    tail = finished + b'"input_tokens":1000,"cached_input_tokens":300,"output_tokens":110,'
    tail += b'"reasoning_output_tokens":20}}}}\n'
    more = PARSER.parse(tail, path=str(FILE_A), state=result.state)
    (event,) = more.events
    # Previous totals (900,300,100,20) -> delta (100,0,10,0): input 100, output 10.
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (100, 0, 10)
    assert more.consumed == len(tail)


def test_it_reports_malformed_and_non_utf8_lines_and_goes_on() -> None:
    """Bad lines become problems with path and line number; the good lines still count."""
    events, problems = parse_path(PARSER, FILE_B)
    assert [(p.path, p.line) for p in problems] == [(str(FILE_B), 7)]
    assert "UTF-8" in problems[0].reason
    # Replays of A's T1 and T2 (the replayed re-emit is skipped), then B's own turn.
    assert len(events) == 3


def test_it_skips_a_line_over_16_mib() -> None:
    """A huge line is a problem and is not parsed; the next line still counts."""
    huge = b'{"type":"response_item","payload":{"text":"' + b"x" * (16 * 1024 * 1024) + b'"}}\n'
    data = jsonl(*HEADER) + huge + jsonl(token_count("2025-09-15T10:00:05Z", (10, 0, 5, 0)))
    result = PARSER.parse(data, path="big.jsonl", state=None)
    assert [(p.line, "16 MiB" in p.reason) for p in result.problems] == [(3, True)]
    assert len(result.events) == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"input_tokens": -1, "output_tokens": 5}, "negative"),
        ({"input_tokens": 1.5, "output_tokens": 5}, "not an integer"),
        ({"input_tokens": "10", "output_tokens": 5}, "not an integer"),
        ({"input_tokens": True, "output_tokens": 5}, "not an integer"),
        ({"output_tokens": 5}, "missing"),
        ({"input_tokens": 1, "cached_input_tokens": 2, "output_tokens": 5}, "exceeds"),
    ],
)
def test_it_reports_bad_counts_as_problems(bad: dict[str, Any], reason: str) -> None:
    """Negative, non-integer, missing or inconsistent counts are problems, not events."""
    line = token_count("2025-09-15T10:00:05Z")
    line["payload"]["info"]["last_token_usage"] = bad
    result = parse(*HEADER, line)
    assert result.events == []
    assert [p.line for p in result.problems] == [3]
    assert reason in result.problems[0].reason


def test_info_null_and_other_lines_are_not_usage() -> None:
    """Rate-limit-only token_counts, prompts and replies yield no events and no problems."""
    rate_only = {
        "timestamp": "t",
        "type": "event_msg",
        "payload": {"type": "token_count", "info": None},
    }
    reply = {"type": "response_item", "payload": {"type": "message", "content": "secret"}}
    result = parse(*HEADER, rate_only, reply, {"legacy": "line without a type"})
    assert result.events == []
    assert result.problems == []


def test_it_keeps_no_prompt_or_reply_text() -> None:
    """Events carry counts and metadata only, never the conversation."""
    events, _ = parse_path(PARSER, FILE_A)
    assert "refactor the parser" not in repr(events)
    assert "refactor the parser" not in repr(
        PARSER.parse(FILE_A.read_bytes(), path="a", state=None).state
    )


def test_the_state_is_json_and_names_the_running_totals() -> None:
    """The scanner can store the state as JSON and resume with it."""
    result = PARSER.parse(FILE_A.read_bytes(), path=str(FILE_A), state=None)
    assert orjson.loads(orjson.dumps(result.state)) == result.state
    assert result.state == {
        "line": 12,
        "model": "gpt-5",
        "session_id": A,
        "project": "/home/alice/proj-a",
        "meta": True,
        "totals": [900, 300, 100, 20],
        "fast": False,
        "searches": 0,
    }


def test_a_garbled_state_is_ignored_rather_than_trusted() -> None:
    """A state from an older version or a corrupt store does not crash the parser."""
    garbled = {"line": "x", "totals": [1, 2], "model": 3, "meta": "yes"}
    result = PARSER.parse(FILE_C.read_bytes(), path=str(FILE_C), state=garbled)
    assert len(result.events) == 2
    assert result.problems == []


@pytest.mark.parametrize("path", [FILE_A, FILE_B, FILE_C], ids=["A", "B", "C"])
@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data())
def test_resuming_from_any_cursor_gives_the_same_events_as_one_pass(path: Path, data: Any) -> None:
    """Parsing the first N bytes, then the rest from the cursor, equals one pass."""
    raw = path.read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)), label="cut")
    whole = PARSER.parse(raw, path=str(path), state=None)
    events, problems, consumed = parse_in_two(PARSER, raw, str(path), cut)
    assert events == whole.events
    assert problems == whole.problems
    assert consumed == whole.consumed


def test_discover_reads_a_codex_home_list_and_lists_each_real_file_once(tmp_path: Path) -> None:
    """CODEX_HOME may list homes; sessions/ and archived_sessions/ both count; links dedupe."""
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "sessions/2025/09/15").mkdir(parents=True)
    (one / "archived_sessions").mkdir(parents=True)
    (two / "sessions").mkdir(parents=True)
    active = one / "sessions/2025/09/15/rollout-2025-09-15T10-00-00-x.jsonl"
    archived = one / "archived_sessions/rollout-2025-09-14T10-00-00-y.jsonl"
    for f in (active, archived):
        f.write_bytes(b"")
    (one / "sessions/2025/09/15/notes.jsonl").write_bytes(b"")
    (one / "history.jsonl").write_bytes(b"")
    os.symlink(active, two / "sessions/rollout-2025-09-15T10-00-00-x.jsonl")
    env = {"CODEX_HOME": f" {one} ,, {two},{one}"}
    assert as_paths(PARSER.discover(env, tmp_path)) == [archived, active]


def test_discover_defaults_to_dot_codex_under_the_given_home(tmp_path: Path) -> None:
    """Without CODEX_HOME the home passed in (never the real one) is searched."""
    f = tmp_path / ".codex/sessions/2025/01/01/rollout-2025-01-01T00-00-00-z.jsonl"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    assert as_paths(PARSER.discover({}, tmp_path)) == [f]
    assert as_paths(PARSER.discover({"CODEX_HOME": "~/.codex"}, tmp_path)) == [f]
    assert as_paths(PARSER.discover({}, tmp_path / "missing")) == []


def limits_count(ts: str, rate_limits: Any, info: Any = None) -> dict[str, Any]:
    payload = {"type": "token_count", "info": info, "rate_limits": rate_limits}
    return {"timestamp": ts, "type": "event_msg", "payload": payload}


def test_rate_limits_are_returned_as_observed_at_the_events_time() -> None:
    """Both windows of a token_count, with Codex's figures and reset time, at the event's time."""
    limits = {
        "limit_id": "codex",
        "primary": {"used_percent": 3.0, "window_minutes": 300, "resets_at": 1771890497},
        "secondary": {"used_percent": 9.5, "window_minutes": 10080, "resets_at": 1772355702},
        "credits": {"has_credits": False},
    }
    result = parse(*HEADER, limits_count("2026-02-23T11:40:33.615Z", limits))
    assert result.events == []
    assert result.problems == []
    observed = datetime(2026, 2, 23, 11, 40, 33, 615000, tzinfo=UTC)
    assert [
        (o.source, o.window, o.observed_at, o.used_percent, o.window_minutes, o.resets_at)
        for o in result.limits
    ] == [
        ("codex", "primary", observed, 3.0, 300, datetime.fromtimestamp(1771890497, UTC)),
        ("codex", "secondary", observed, 9.5, 10080, datetime.fromtimestamp(1772355702, UTC)),
    ]


def test_an_older_rollouts_resets_in_seconds_counts_from_the_event() -> None:
    """``resets_in_seconds: 600`` at 10:00 resets at 10:10; another limit_id names the window."""
    limits = {
        "limit_id": "other",
        "primary": {"used_percent": 50, "window_minutes": 300, "resets_in_seconds": 600},
    }
    (obs,) = parse(limits_count("2025-09-15T10:00:00Z", limits)).limits
    assert obs.resets_at == datetime(2025, 9, 15, 10, 10, tzinfo=UTC)
    assert (obs.window, obs.limit_id, obs.used_percent) == ("other/primary", "other", 50.0)


@pytest.mark.parametrize(
    "limits",
    [
        None,
        {},
        {"primary": None},
        {"primary": {"used_percent": "3"}},
        {"primary": {"used_percent": True}},
        {"primary": {"window_minutes": 300}},
        [1, 2],
    ],
)
def test_malformed_rate_limits_are_skipped_without_a_problem(limits: Any) -> None:
    """A window without a numeric used_percent is no observation, and no usage is lost."""
    t1 = ((1200, 200, 300, 100), (1200, 200, 300, 100))
    record = token_count("2025-09-15T10:00:05.000Z", *t1)
    record["payload"]["rate_limits"] = limits
    result = parse(*HEADER, record)
    assert result.limits == []
    assert result.problems == []
    assert len(result.events) == 1


def test_the_sample_rollout_records_its_limits_on_every_token_count() -> None:
    """FILE_A's token_count lines each carry 7% and 21%: one observation per window and line."""
    result = PARSER.parse(FILE_A.read_bytes(), path=str(FILE_A), state=None)
    lines = FILE_A.read_bytes().count(b'"rate_limits":{')
    assert len(result.limits) == 2 * lines > 0
    assert {(o.window, o.used_percent, o.window_minutes) for o in result.limits} == {
        ("primary", 7.0, 300),
        ("secondary", 21.0, 10080),
    }
