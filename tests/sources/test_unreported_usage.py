"""No usage is dropped in silence: every record with non-zero usage is counted or reported.

The shapes here are the ones a parser used to skip without a word: a Claude line without a
top-level ``type``, an Opencode message without ``role`` (both counted, as ccusage counts
them), and records whose usage sits where the assistant never writes it (reported).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from usageledger.sources import PARSERS, ParseResult, parse_whole, resolve_duplicates

CLAUDE, CODEX, GEMINI, OPENCODE = (PARSERS[n] for n in ("claude", "codex", "gemini", "opencode"))


def jsonl(*records: Any) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def claude(**top: Any) -> dict[str, Any]:
    """A Claude Code assistant line (input 100, cache write 20, cache read 30, output 10)."""
    line: dict[str, Any] = {
        "type": "assistant",
        "timestamp": "2026-01-09T10:00:00.000Z",
        "sessionId": "s-1",
        "requestId": "req-1",
        "message": {
            "role": "assistant",
            "id": "msg-1",
            "model": "claude-sonnet-4-20250514",
            "usage": {
                "input_tokens": 100,
                "output_tokens": 10,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 30,
            },
        },
    }
    line.update(top)
    return {k: v for k, v in line.items() if v is not None}


def parse_claude(*records: Any) -> ParseResult:
    return CLAUDE.parse(jsonl(*records), path="p/s-1.jsonl", state=None)


def test_a_claude_line_without_type_is_an_assistant_response() -> None:
    """ccusage's transcripts leave out ``type``; the line's usage counts like any other."""
    result = parse_claude(claude(type=None))
    (event,) = result.events
    assert result.problems == []
    assert (event.event_key, event.total_tokens, event.cache_write_tokens) == (
        "msg-1:req-1",
        160,
        20,
    )


def test_a_typeless_copy_of_an_assistant_line_counts_once() -> None:
    """Same message.id and requestId, with and without ``type``: one key, one response."""
    streamed = claude()
    streamed["message"]["usage"] = {**streamed["message"]["usage"], "output_tokens": 3}
    result = parse_claude(streamed, claude(type=None), claude())
    assert result.problems == []
    (kept,) = resolve_duplicates(result.events, CLAUDE.duplicate_policy)
    assert (kept.event_key, kept.output_tokens) == ("msg-1:req-1", 10)


@pytest.mark.parametrize(
    "line",
    [
        claude(type="user"),
        claude(type="progress"),
        {**claude(type=None), "message": {**claude()["message"], "role": "user"}},
    ],
    ids=["user-type", "progress-type", "user-role-without-type"],
)
def test_usage_on_a_line_that_is_not_an_assistant_response_is_reported(
    line: dict[str, Any],
) -> None:
    """A line that says it is something else is not guessed at, nor skipped without a word."""
    result = parse_claude(line)
    assert result.events == []
    (problem,) = result.problems
    assert (problem.line, "not an assistant message" in problem.reason) == (1, True)


def test_a_synthetic_message_is_silent_at_zero_and_reported_with_usage() -> None:
    """Claude Code's own notices carry zero usage; any other usage there is reported."""
    zero = claude()
    zero["message"] = {**zero["message"], "model": "<synthetic>"}
    zero["message"]["usage"] = {"input_tokens": 0, "output_tokens": 0}
    nonzero = claude()
    nonzero["message"] = {**nonzero["message"], "model": "<synthetic>"}
    result = parse_claude(zero, nonzero)
    assert result.events == []
    assert [(p.line, "<synthetic>" in p.reason) for p in result.problems] == [(2, True)]


def opencode_message(**extra: Any) -> dict[str, Any]:
    """An opencode message without ``role`` (ccusage's test shape), 120/60 with cache 12/24."""
    msg: dict[str, Any] = {
        "id": "msg-1",
        "sessionID": "ses-a",
        "providerID": "anthropic",
        "modelID": "claude-sonnet-4-20250514",
        "time": {"created": 1767312000000},
        "tokens": {"input": 120, "output": 60, "cache": {"read": 12, "write": 24}},
    }
    msg.update(extra)
    return msg


def test_an_opencode_message_file_without_role_is_counted() -> None:
    """A role-less message with tokens is usage: input 120 + write 24, read 12, output 60."""
    result = OPENCODE.parse(orjson.dumps(opencode_message()), path="ses-a/msg-1.json", state=None)
    (event,) = result.events
    assert result.problems == []
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (144, 12, 60)


def test_an_opencode_database_row_without_role_is_counted(tmp_path: Path) -> None:
    """The row's JSON never says ``assistant``; the query still reads it, and it counts."""
    path = tmp_path / "opencode.db"
    data = opencode_message()
    del data["id"], data["sessionID"]
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, "
            "time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO message VALUES ('db-msg-1', 'ses-a', 1, 1, ?)",
            [orjson.dumps(data).decode()],
        )
    result = parse_whole(OPENCODE, path)
    assert result.problems == []
    assert [(e.event_key, e.session_id, e.total_tokens) for e in result.events] == [
        ("db-msg-1", "ses-a", 216)
    ]


def test_tokens_on_an_opencode_message_of_another_role_are_reported() -> None:
    """A user message with tokens is not counted, and says so; one with zero tokens is silent."""
    user = orjson.dumps(opencode_message(role="user"))
    result = OPENCODE.parse(user, path="ses-a/msg-1.json", state=None)
    assert result.events == []
    (problem,) = result.problems
    assert "role is not assistant" in problem.reason
    empty = opencode_message(role="user", tokens={"input": 0, "output": 0})
    quiet = OPENCODE.parse(orjson.dumps(empty), path="ses-a/msg-1.json", state=None)
    assert (quiet.events, quiet.problems) == ([], [])


def gemini_record(**extra: Any) -> dict[str, Any]:
    """A Gemini CLI response record with 100 input and 10 output tokens."""
    record: dict[str, Any] = {
        "id": "m1",
        "timestamp": "2026-03-01T10:00:01.000Z",
        "type": "gemini",
        "model": "gemini-2.5-pro",
        "tokens": {"input": 100, "output": 10, "cached": 0, "thoughts": 0, "tool": 0, "total": 110},
    }
    record.update(extra)
    return {k: v for k, v in record.items() if v is not None}


def test_gemini_tokens_off_a_response_or_without_an_id_are_reported() -> None:
    """Tokens on a user message, or on a response with no id, are problems, not silence."""
    meta = {"sessionId": "ses-g", "projectHash": "h", "startTime": "2026-03-01T10:00:00.000Z"}
    data = jsonl(
        meta,
        gemini_record(),
        gemini_record(id="m2", type="user"),
        gemini_record(id="m3", type=None),
        gemini_record(id=None),
    )
    result = GEMINI.parse(data, path="h/chats/session-2026-03-01T10-00-ses.jsonl", state=None)
    assert [e.event_key for e in result.events] == ["ses-g:m1"]
    assert [p.line for p in result.problems] == [3, 4, 5]
    assert "without id" in result.problems[-1].reason


def codex_count(payload: dict[str, Any], when: str = "2026-03-01T10:01:00.000Z") -> dict[str, Any]:
    return {"timestamp": when, "type": "event_msg", "payload": {"type": "token_count", **payload}}


def test_codex_usage_outside_info_is_reported_and_a_rate_limit_refresh_is_not() -> None:
    """A token_count with counts but no ``info`` is reported; one with neither is silent."""
    data = jsonl(
        {
            "timestamp": "2026-03-01T10:00:00.000Z",
            "type": "turn_context",
            "payload": {"model": "m"},
        },
        codex_count({"info": None, "rate_limits": {}}),
        codex_count({"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}),
    )
    result = CODEX.parse(data, path="rollout-x.jsonl", state=None)
    assert result.events == []
    (problem,) = result.problems
    assert (problem.line, "outside info" in problem.reason) == (3, True)
