"""Claude Code transcript parser: mapping, streaming copies, sidechains, resumes, cursors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.sources import resolve_duplicates
from usageledger.sources.claude import ClaudeParser

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, parse_path, sample_env, scan

PARSER = ClaudeParser()
S1 = "11111111-aaaa-4aaa-8aaa-111111111111"
S2 = "22222222-bbbb-4bbb-8bbb-222222222222"
PROJECT = SAMPLES / "claude/projects/-home-alice-proj-b"
MAIN = PROJECT / f"{S1}.jsonl"
SUBAGENT = PROJECT / S1 / "subagents/agent-a1b2c3.jsonl"
RESUMED = PROJECT / f"{S2}.jsonl"
SONNET = "claude-sonnet-4-20250514"


def as_paths(found: Sequence[str | Path]) -> list[Path]:
    """Discovered files as ``Path`` objects (a parser may list them as strings)."""
    return [Path(item) for item in found]


def line(
    usage: dict[str, Any],
    *,
    mid: str | None = "msg_01",
    req: str | None = "req_01",
    ts: str = "2025-09-15T09:00:04.000Z",
    model: str = SONNET,
    session: str = S1,
) -> dict[str, Any]:
    message: dict[str, Any] = {"model": model, "role": "assistant", "content": [], "usage": usage}
    if mid is not None:
        message["id"] = mid
    record: dict[str, Any] = {
        "type": "assistant",
        "sessionId": session,
        "cwd": "/home/alice/proj-b",
        "timestamp": ts,
        "message": message,
    }
    if req is not None:
        record["requestId"] = req
    return record


def usage(i: int, cc: int, cr: int, o: int) -> dict[str, int]:
    return {
        "input_tokens": i,
        "cache_creation_input_tokens": cc,
        "cache_read_input_tokens": cr,
        "output_tokens": o,
    }


def parse(*records: Any) -> Any:
    return PARSER.parse(jsonl(*records), path=f"{S1}.jsonl", state=None)


def test_it_maps_cache_creation_into_input_and_cache_write() -> None:
    """input = input_tokens + cache_creation; cached = cache_read; cache_write = creation."""
    (event,) = parse(line(usage(4, 2000, 10000, 250))).events
    # input 4 + creation 2000 = 2004; cached 10000; output 250; total 12254.
    assert (event.input_tokens, event.cache_write_tokens) == (2004, 2000)
    assert (event.cached_input_tokens, event.output_tokens) == (10000, 250)
    assert event.total_tokens == 12254
    assert event.reasoning_output_tokens == 0
    assert event.event_key == "msg_01:req_01"
    assert (event.model, event.session_id, event.project) == (SONNET, S1, "/home/alice/proj-b")
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, 4, tzinfo=UTC)


def test_streaming_partials_share_one_key_and_the_largest_copy_wins() -> None:
    """The partial copies of one streamed message collapse to the final one under 'max'."""
    result = parse(
        line(usage(4, 2000, 10000, 1)),
        line(usage(4, 2000, 10000, 1)),
        line(usage(4, 2000, 10000, 250)),
    )
    assert {e.event_key for e in result.events} == {"msg_01:req_01"}
    (kept,) = resolve_duplicates(result.events, PARSER.duplicate_policy)
    assert kept.output_tokens == 250


def test_a_sidechain_replay_in_a_subagent_file_counts_once() -> None:
    """A sub-agent file that replays the parent's message yields the parent's key."""
    main, _ = parse_path(PARSER, MAIN)
    sub, _ = parse_path(PARSER, SUBAGENT)
    assert sub[0].event_key == "msg_01:req_01"
    keys = {e.event_key for e in resolve_duplicates(main + sub, "max")}
    assert keys == {e.event_key for e in main} | {"msg_05:req_05"}


def test_a_resumed_session_copy_counts_once_with_or_without_ids() -> None:
    """Copied history keeps its key: by ids, by message id alone, or by content."""
    main, _ = parse_path(PARSER, MAIN)
    resumed, _ = parse_path(PARSER, RESUMED)
    copied = {e.event_key for e in resumed[:3]}
    assert copied <= {e.event_key for e in main}
    assert "msg_02:req_02" in copied
    assert "msg_04:" in copied  # no requestId
    assert any(k.startswith("sha256:") for k in copied)  # no ids at all
    assert {e.session_id for e in resumed} == {S2}


def test_a_line_without_ids_is_keyed_by_timestamp_model_and_counts() -> None:
    """Two lines without ids match only when timestamp, model and counts all match."""
    a = line(usage(20, 0, 0, 30), mid=None, req=None)
    b = line(usage(20, 0, 0, 30), mid=None, req=None, session=S2)
    c = line(usage(20, 0, 0, 31), mid=None, req=None)
    keys = [e.event_key for e in parse(a, b, c).events]
    assert keys[0] == keys[1] != keys[2]


def test_it_ignores_synthetic_messages_and_lines_without_usage() -> None:
    """The <synthetic> model, user lines and summaries are not usage."""
    synthetic = line(usage(0, 0, 0, 0), model="<synthetic>")
    synthetic["isApiErrorMessage"] = True
    user = {"type": "user", "message": {"role": "user", "content": "please read x.py"}}
    summary = {"type": "summary", "summary": "Parser work", "leafUuid": "u1"}
    result = parse(synthetic, user, summary)
    assert result.events == []
    assert result.problems == []


def test_it_sums_the_cache_creation_breakdown_when_the_total_is_missing() -> None:
    """Without cache_creation_input_tokens the ephemeral 5m and 1h parts are added."""
    u: dict[str, Any] = {"input_tokens": 3, "cache_read_input_tokens": 3000, "output_tokens": 400}
    u["cache_creation"] = {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400}
    (event,) = parse(line(u, mid="msg_05", req="req_05")).events
    # creation 600 + 400 = 1000; input 3 + 1000 = 1003.
    assert (event.input_tokens, event.cache_write_tokens) == (1003, 1000)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (usage(1, 0, 0, -5), "output_tokens is negative"),
        ({**usage(1, 0, 0, 5), "input_tokens": "12"}, "input_tokens is not an integer"),
        ({**usage(1, 0, 0, 5), "cache_read_input_tokens": 2.5}, "not an integer"),
        ({"input_tokens": 3}, "missing output_tokens"),
    ],
)
def test_it_reports_bad_counts_as_problems(bad: dict[str, Any], reason: str) -> None:
    """Negative, non-integer or missing counts are problems with a line number."""
    result = parse(line(usage(1, 0, 0, 1), mid="ok"), line(bad))
    assert len(result.events) == 1
    assert [p.line for p in result.problems] == [2]
    assert reason in result.problems[0].reason


def test_a_bad_timestamp_is_a_problem() -> None:
    """A usage line whose timestamp does not parse is reported, not guessed."""
    result = parse(line(usage(1, 0, 0, 1), ts="yesterday"))
    assert result.events == []
    assert "ISO-8601" in result.problems[0].reason


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """The committed samples sum to the hand-computed totals per UTC day."""
    events, problems = scan(PARSER, sample_env(), Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15 (input = input_tokens + cache creation):
    #   msg_01 final copy (max):   in 4+2000=2004, cached 10000, out 250, write 2000
    #   msg_02:                    in 6,           cached 12000, out 100
    #   msg_03 (sidechain, haiku): in 500,         cached     0, out  50
    #   msg_04 (no requestId):     in 10+100=110,  cached  5000, out  40, write 100
    #   no ids (content key):      in 20,          cached     0, out  30
    #   msg_05 (subagent, 5m+1h):  in 3+1000=1003, cached  3000, out 400, write 1000
    #   = in 3643, cached 30000, out 870, write 3100; total 34513
    #   (the resumed file's copies of msg_02, msg_04 and the no-id line add nothing)
    assert days["2025-09-15"] == Sums(3643, 30000, 870, 0, 3100)
    assert days["2025-09-15"].total == 34513
    # 2025-09-16: msg_06 in 8+300=308, cached 15000, out 120, write 300; total 15428.
    assert days["2025-09-16"] == Sums(308, 15000, 120, 0, 300)
    assert [(p.path, p.line) for p in problems] == [
        (str(MAIN), 10),
        (str(MAIN), 11),
        (str(MAIN), 12),
    ]


def test_it_does_not_consume_a_partial_last_line() -> None:
    """Bytes after the last newline are left for the next call, without a problem."""
    data = RESUMED.read_bytes()
    result = PARSER.parse(data, path=str(RESUMED), state=None)
    assert result.consumed == data.rfind(b"\n") + 1 < len(data)
    assert result.problems == []
    assert result.state == {"line": 5}


def test_it_skips_a_line_over_16_mib() -> None:
    """A huge line is a problem and is not parsed; the lines around it still count."""
    huge = b'{"type":"user","message":{"content":"' + b"y" * (16 * 1024 * 1024 + 1) + b'"}}\n'
    data = jsonl(line(usage(1, 0, 0, 1), mid="a")) + huge + jsonl(line(usage(1, 0, 0, 1), mid="b"))
    result = PARSER.parse(data, path="big.jsonl", state=None)
    assert [p.line for p in result.problems] == [2]
    assert [e.event_key for e in result.events] == ["a:req_01", "b:req_01"]


def test_it_keeps_no_prompt_or_reply_text() -> None:
    """Events carry counts and metadata only, never the conversation."""
    events, _ = parse_path(PARSER, MAIN)
    text = repr(events)
    assert "please read" not in text
    assert "Looking at the parser" not in text


@pytest.mark.parametrize("path", [MAIN, SUBAGENT, RESUMED], ids=["main", "subagent", "resumed"])
@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data())
def test_resuming_from_any_cursor_gives_the_same_events_as_one_pass(path: Path, data: Any) -> None:
    """Parsing the first N bytes, then the rest from the cursor, equals one pass."""
    raw = path.read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)), label="cut")
    whole = PARSER.parse(raw, path=str(path), state=None)
    events, problems, consumed = parse_in_two(PARSER, raw, str(path), cut)
    assert (events, problems, consumed) == (whole.events, whole.problems, whole.consumed)


def test_discover_defaults_to_config_claude_and_dot_claude_with_subagent_files(
    tmp_path: Path,
) -> None:
    """Both default roots are read; sub-agent transcripts are found; other files are not."""
    new = tmp_path / ".config/claude/projects/-p/s1.jsonl"
    old = tmp_path / ".claude/projects/-p/s2.jsonl"
    sub = tmp_path / ".claude/projects/-p/s2/subagents/agent-1.jsonl"
    for f in (new, old, sub):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    (tmp_path / ".claude/settings.json").write_bytes(b"{}")
    (tmp_path / ".claude/todos").mkdir()
    (tmp_path / ".claude/todos/t.jsonl").write_bytes(b"")
    # Sorted by path: ".claude" sorts before ".config".
    assert as_paths(PARSER.discover({}, tmp_path)) == [old, sub, new]


def test_claude_config_dir_replaces_the_defaults_and_may_list_dirs(tmp_path: Path) -> None:
    """CLAUDE_CONFIG_DIR (comma-separated) is the whole search path when set."""
    (tmp_path / ".claude/projects/-p").mkdir(parents=True)
    (tmp_path / ".claude/projects/-p/ignored.jsonl").write_bytes(b"")
    one = tmp_path / "one/projects/-p/a.jsonl"
    two = tmp_path / "two/projects/-q/b.jsonl"
    for f in (one, two):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"")
    env = {"CLAUDE_CONFIG_DIR": f"{tmp_path / 'two'},{tmp_path / 'one'},{tmp_path / 'one'}"}
    assert as_paths(PARSER.discover(env, tmp_path)) == [one, two]
