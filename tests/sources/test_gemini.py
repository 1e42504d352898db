"""Gemini CLI chat-recording parser: token mapping, re-written messages, both file formats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from usageledger.sources import resolve_duplicates
from usageledger.sources.gemini import GeminiParser, map_tokens

from ._support import SAMPLES, Sums, by_day, jsonl, parse_path, sample_env, scan

PARSER = GeminiParser()
G1 = "a1b2c3d4-1111-4111-8111-111111111111"
G2 = "e5f6a7b8-2222-4222-8222-222222222222"
H1 = SAMPLES / "gemini/tmp/9f2e1c2b7a2d4c1e8b0f6a5d4c3b2a1900112233445566778899aabbccddeeff"
H2 = SAMPLES / "gemini/tmp/1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"
LEGACY = H1 / "chats/session-2025-09-15T08-00-a1b2c3d4.json"
MIGRATED = H1 / "chats/session-2025-09-15T08-00-a1b2c3d4.jsonl"
CURRENT = H2 / "chats/session-2025-09-16T12-00-e5f6a7b8.jsonl"
SUBAGENT = H2 / f"chats/{G2}/33333333-cccc-4ccc-8ccc-333333333333.jsonl"


def as_paths(found: Sequence[str | Path]) -> list[Path]:
    """Discovered files as ``Path`` objects (a parser may list them as strings)."""
    return [Path(item) for item in found]


def tokens(i: int, o: int, c: int, t: int, tool: int, total: int) -> dict[str, int]:
    return {"input": i, "output": o, "cached": c, "thoughts": t, "tool": tool, "total": total}


def message(mid: str, toks: Any, ts: str = "2025-09-16T12:00:05.000Z") -> dict[str, Any]:
    msg: dict[str, Any] = {"id": mid, "timestamp": ts, "type": "gemini", "content": "ok"}
    msg["model"] = "gemini-2.5-flash"
    if toks is not None:
        msg["tokens"] = toks
    return msg


META = {"sessionId": G2, "projectHash": "h", "startTime": "2025-09-16T12:00:00.000Z"}


def parse_lines(*records: Any) -> Any:
    return PARSER.parse(jsonl(*records), path="session-x.jsonl", state=None)


def test_it_maps_input_net_of_cached_with_tool_in_input_and_thoughts_in_output() -> None:
    """input - cached + tool is input; output + thoughts is output; total is kept."""
    # Gemini: input 12000 (cached 8000 inside), output 150, thoughts 50, tool 30, total 12230.
    fresh, cached, output, reasoning = map_tokens(tokens(12000, 150, 8000, 50, 30, 12230))
    # input: 12000 - 8000 + 30 = 4030; output: 150 + 50 = 200; reasoning: 50.
    assert (fresh, cached, output, reasoning) == (4030, 8000, 200, 50)
    # 4030 + 8000 + 200 = 12230, Gemini's own total.
    assert fresh + cached + output == 12230


def test_a_real_shaped_record_keeps_gemini_s_total() -> None:
    """input 7577, output 81, thoughts 209, total 7867 (a recorded real-world shape)."""
    fresh, cached, output, reasoning = map_tokens(tokens(7577, 81, 0, 209, 0, 7867))
    assert (fresh, cached, output, reasoning) == (7577, 0, 290, 209)
    assert fresh + cached + output == 7867


@pytest.mark.parametrize(
    ("toks", "expected"),
    [
        # cached 6000 > input 1000: input cannot include it, so it is net.
        (tokens(1000, 100, 6000, 0, 0, 7100), (1000, 6000, 100, 0)),
        # total 5500 = 1000 + 4000 + 400 + 100: the total proves input was net of cache.
        (tokens(1000, 400, 4000, 100, 0, 5500), (1000, 4000, 500, 100)),
        # total 5500 = 5000 + 400 + 100 with cached 4000: input includes the cache.
        (tokens(5000, 400, 4000, 100, 0, 5500), (1000, 4000, 500, 100)),
        # no total recorded: the documented default (inclusive) applies.
        ({"input": 5000, "output": 400, "cached": 4000}, (1000, 4000, 400, 0)),
    ],
)
def test_net_input_records_are_recognised(toks: dict[str, int], expected: tuple[int, ...]) -> None:
    """Input is taken as cache-inclusive unless the record proves it was net."""
    assert map_tokens(toks) == expected


def test_a_message_rewritten_with_the_same_id_counts_once_and_the_last_copy_wins() -> None:
    """A message appended again (first without tokens, then with) is one event."""
    pending = message("m1", None)
    done = message("m1", tokens(5000, 200, 4000, 100, 0, 5300))
    with_tools = {**done, "toolCalls": [{"id": "read_file_1", "name": "read_file"}]}
    result = parse_lines(META, pending, done, with_tools)
    assert [e.event_key for e in result.events] == [f"{G2}:m1", f"{G2}:m1"]
    (kept,) = resolve_duplicates(result.events, PARSER.duplicate_policy)
    # input 5000 - 4000 = 1000; output 200 + 100 = 300; total 5300.
    assert (kept.input_tokens, kept.cached_input_tokens, kept.output_tokens) == (1000, 4000, 300)


def test_a_legacy_json_and_its_migrated_jsonl_count_once() -> None:
    """Resuming a .json session copies it into .jsonl with the same session and ids."""
    legacy, _ = parse_path(PARSER, LEGACY)
    migrated, _ = parse_path(PARSER, MIGRATED)
    assert [e.event_key for e in legacy] == [e.event_key for e in migrated[:2]]
    assert legacy == migrated[:2]
    assert len(resolve_duplicates(legacy + migrated, "last")) == 3


def test_rewound_and_patched_messages_still_count() -> None:
    """$rewindTo and $patch edit the transcript, but the responses were billed."""
    result = parse_lines(
        META,
        message("m1", tokens(10, 1, 0, 0, 0, 11)),
        {"$rewindTo": "m1"},
        {"$patch": {"updates": [{"id": "m1", "content": "edited"}], "removeIds": ["m1"]}},
    )
    assert [e.event_key for e in result.events] == [f"{G2}:m1"]
    assert result.problems == []


def test_messages_inside_set_and_metadata_records_count() -> None:
    """A $set that replaces messages, or a metadata record holding them, is read too."""
    result = parse_lines(
        {**META, "messages": [message("m1", tokens(10, 1, 0, 0, 0, 11))]},
        {"$set": {"messages": [message("m2", tokens(20, 2, 0, 0, 0, 22))]}},
    )
    assert [e.total_tokens for e in result.events] == [11, 22]


def test_the_project_comes_from_the_recorded_directories() -> None:
    """Gemini stores a project hash, not a path; the first workspace directory is used."""
    events, _ = parse_path(PARSER, CURRENT)
    assert {e.project for e in events} == {"/home/alice/proj-g"}
    legacy, _ = parse_path(PARSER, LEGACY)
    assert {e.project for e in legacy} == {None}
    assert {e.session_id for e in legacy} == {G1}


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """The committed samples sum to the hand-computed totals per UTC day."""
    events, problems = scan(PARSER, sample_env(), Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15 (legacy .json and its migrated .jsonl counted once):
    #   g1 7577/81/cached 0/thoughts 209/tool 0:  in 7577,            cached    0, out 81+209=290
    #   g2 12000/150/8000/50/30:                  in 12000-8000+30,   cached 8000, out 150+50=200
    #   g4 1000/100/cached 6000 (net: 6000>1000): in 1000,            cached 6000, out 100
    #   = in 7577+4030+1000 = 12607, cached 14000, out 590, reasoning 259; total 27197
    assert days["2025-09-15"] == Sums(12607, 14000, 590, 259)
    assert days["2025-09-15"].total == 27197
    # 2025-09-16:
    #   h1 5000/200/4000/100/0 (appended twice): in 1000, cached 4000, out 300
    #   h2 6000/50/0/0/0 (later rewound):        in 6000, cached    0, out  50
    #   s1 3000/40/1000/20/10 (sub-agent file):  in 2010, cached 1000, out  60
    #   = in 9010, cached 5000, out 410, reasoning 120; total 14420
    assert days["2025-09-16"] == Sums(9010, 5000, 410, 120)
    assert [(p.path, p.line) for p in problems] == [(str(CURRENT), 9)]
    assert "tokens.output is not an integer" in problems[0].reason


def test_a_partial_last_line_is_left_without_a_problem() -> None:
    """A .jsonl line still being written is not consumed and not reported."""
    data = CURRENT.read_bytes()
    result = PARSER.parse(data, path=str(CURRENT), state=None)
    assert result.consumed == data.rfind(b"\n") + 1 < len(data)
    assert [p.line for p in result.problems] == [9]


def test_a_truncated_json_document_is_a_problem() -> None:
    """A legacy .json caught mid-write is reported; the next full read counts it."""
    data = LEGACY.read_bytes()
    result = PARSER.parse(data[:200], path=str(LEGACY), state=None)
    assert result.events == []
    assert [(p.line, "malformed JSON" in p.reason) for p in result.problems] == [(None, True)]
    assert result.consumed == 200


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[1, 2]", "session file is not an object"),
        (
            b'{"sessionId": "s", "messages": [{"type": "gemini", "tokens": {"input": 1}}]}',
            "missing",
        ),
        (b'{"sessionId": "s", "messages": [{"type": "gemini", "tokens": 7}]}', "not an object"),
        (b"\xff\xfe{}", "not valid UTF-8"),
    ],
)
def test_bad_documents_are_problems(raw: bytes, reason: str) -> None:
    """Wrong shapes, missing counts and undecodable bytes are reported, never raised."""
    result = PARSER.parse(raw, path="session-x.json", state=None)
    assert result.events == []
    assert reason in result.problems[0].reason


def test_timestamps_become_aware_utc() -> None:
    """ISO timestamps with any offset become UTC datetimes."""
    result = parse_lines(
        META, message("m1", tokens(10, 1, 0, 0, 0, 11), ts="2025-09-16T14:00:05+02:00")
    )
    assert result.events[0].timestamp == datetime(2025, 9, 16, 12, 0, 5, tzinfo=UTC)


def test_it_keeps_no_prompt_or_reply_text() -> None:
    """Events carry counts and metadata only, never the conversation or thoughts."""
    events, _ = parse_path(PARSER, LEGACY)
    text = repr(events)
    assert "explain main.py" not in text
    assert "Read the file first" not in text


def test_it_is_not_incremental_and_returns_no_state() -> None:
    """Session files are re-read whole, so the parser keeps nothing between calls."""
    assert PARSER.incremental is False
    result = PARSER.parse(LEGACY.read_bytes(), path=str(LEGACY), state={"anything": 1})
    assert result.state == {}
    assert orjson.loads(orjson.dumps(result.state)) == {}


def test_discover_finds_sessions_and_subagent_files_under_each_tmp_dir(tmp_path: Path) -> None:
    """GEMINI_DATA_DIR lists tmp dirs; checkpoints, temp and backup files are skipped."""
    tmp = tmp_path / "data"
    legacy = tmp / "p1/chats/session-2025-09-15T08-00-aaaa.json"
    current = tmp / "p1/chats/session-2025-09-15T08-00-aaaa.jsonl"
    sub = tmp / "p1/chats/parent-id/child-id.jsonl"
    others = [
        tmp / "p1/chats/session-x.jsonl.tmp-123",
        tmp / "p1/chats/session-x.jsonl.unreadable-1",
        tmp / "p1/checkpoint-save1.json",
        tmp / "p1/logs.json",
    ]
    for f in [legacy, current, sub, *others]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    assert as_paths(PARSER.discover({"GEMINI_DATA_DIR": f"{tmp},{tmp}"}, tmp_path)) == [
        sub,
        legacy,
        current,
    ]


def test_discover_falls_back_to_gemini_cli_home_then_home(tmp_path: Path) -> None:
    """Without GEMINI_DATA_DIR, $GEMINI_CLI_HOME/.gemini/tmp, else ~/.gemini/tmp, is read."""
    at_home = tmp_path / ".gemini/tmp/p/chats/session-a.json"
    elsewhere = tmp_path / "cli/.gemini/tmp/p/chats/session-b.json"
    for f in (at_home, elsewhere):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"")
    assert as_paths(PARSER.discover({}, tmp_path)) == [at_home]
    assert as_paths(PARSER.discover({"GEMINI_CLI_HOME": str(tmp_path / "cli")}, tmp_path)) == [
        elsewhere
    ]
