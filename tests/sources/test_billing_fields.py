"""What the parsers read for the billing rules: one-hour cache writes and fast mode.

Claude Code writes ``message.usage.cache_creation.ephemeral_1h_input_tokens`` (the one-hour
part of ``cache_creation_input_tokens``; real transcripts under the shared real-log fixtures
carry it) and ``message.usage.speed`` (``"fast"`` in fast mode; ccusage's test transcripts).
Codex records its Fast service tier (OpenAI's priority processing) in ``event_msg`` lines of
type ``thread_settings_applied``, ``payload.thread_settings.service_tier`` (tokscale's Codex
parser reads it there), for every later request of the rollout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.sources._support import parse_path
from usageledger.sources.claude import ClaudeParser
from usageledger.sources.codex import CodexParser


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    """``lines`` as a JSON-lines file."""
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def claude_line(n: int, usage: dict[str, Any]) -> dict[str, Any]:
    """An assistant line of Claude Code with ``usage``."""
    return {
        "type": "assistant",
        "timestamp": f"2026-12-04T10:0{n}:00Z",
        "sessionId": "s",
        "requestId": f"r{n}",
        "message": {"id": f"m{n}", "role": "assistant", "model": "claude-opus-4-6", "usage": usage},
    }


def test_claude_reads_one_hour_writes_and_fast_mode(tmp_path: Path) -> None:
    """1h part of the writes, and speed fast / standard / absent."""
    path = write(
        tmp_path / "s.jsonl",
        [
            claude_line(
                1,
                {
                    "input_tokens": 3,
                    "output_tokens": 10,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 500,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 200,
                        "ephemeral_1h_input_tokens": 300,
                    },
                    "speed": "fast",
                },
            ),
            claude_line(
                2,
                {
                    "input_tokens": 3,
                    "output_tokens": 10,
                    "cache_creation_input_tokens": 40,
                    "speed": "standard",
                },
            ),
        ],
    )
    events, problems = parse_path(ClaudeParser(), path)
    assert problems == []
    first, second = sorted(events, key=lambda e: e.timestamp)
    assert (first.cache_write_tokens, first.cache_write_1h_tokens, first.fast) == (500, 300, True)
    assert first.input_tokens == 503  # fresh + every cache write
    # No breakdown (older Claude Code): every write is five-minute.
    assert (second.cache_write_tokens, second.cache_write_1h_tokens, second.fast) == (40, 0, False)


def test_claude_keeps_a_response_whose_one_hour_part_exceeds_its_writes(tmp_path: Path) -> None:
    """A breakdown that does not fit the total is reported and capped at the writes: the
    response's tokens still count (1 + 5 input, 1 output), every write one-hour."""
    path = write(
        tmp_path / "s.jsonl",
        [
            claude_line(
                1,
                {
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 5,
                    "cache_creation": {"ephemeral_1h_input_tokens": 9},
                },
            )
        ],
    )
    events, problems = parse_path(ClaudeParser(), path)
    [event] = events
    assert (event.input_tokens, event.output_tokens) == (6, 1)
    assert (event.cache_write_tokens, event.cache_write_1h_tokens) == (5, 5)
    [problem] = problems
    assert problem.line == 1
    assert "ephemeral_1h_input_tokens (9) exceeds the cache writes (5)" in problem.reason
    assert "counted as 5" in problem.reason


def test_claude_reads_the_web_searches_of_a_response(tmp_path: Path) -> None:
    """``usage.server_tool_use.web_search_requests`` (as in real transcripts, with
    ``web_fetch_requests`` beside it, which is not billed per request)."""
    path = write(
        tmp_path / "s.jsonl",
        [
            claude_line(
                1,
                {
                    "input_tokens": 10,
                    "output_tokens": 20,
                    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 2},
                },
            ),
            claude_line(
                2,
                {
                    "input_tokens": 10,
                    "output_tokens": 20,
                    "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                },
            ),
            claude_line(3, {"input_tokens": 10, "output_tokens": 20}),
            claude_line(
                4,
                {
                    "input_tokens": 10,
                    "output_tokens": 20,
                    "server_tool_use": {"web_search_requests": -1},
                },
            ),
        ],
    )
    events, problems = parse_path(ClaudeParser(), path)
    by_line = sorted(events, key=lambda e: e.timestamp)
    assert [e.web_search_requests for e in by_line] == [3, 0, 0]
    [problem] = problems
    assert (problem.line, problem.reason) == (4, "server_tool_use.web_search_requests is negative")


def token_count(when: str, total: int) -> dict[str, Any]:
    """A Codex token_count event of ``total`` input tokens so far (10 output per request)."""
    usage = {
        "input_tokens": total,
        "cached_input_tokens": 0,
        "output_tokens": 10,
        "reasoning_output_tokens": 0,
        "total_tokens": total + 10,
    }
    return {
        "timestamp": when,
        "type": "event_msg",
        "payload": {
            "type": "token_count",
            "info": {
                "total_token_usage": usage,
                "last_token_usage": {**usage, "input_tokens": 100, "total_tokens": 110},
            },
        },
    }


def settings(when: str, tier: str | None) -> dict[str, Any]:
    """A Codex thread_settings_applied line."""
    return {
        "timestamp": when,
        "type": "event_msg",
        "payload": {
            "type": "thread_settings_applied",
            "thread_settings": {"model": "gpt-5.5", "service_tier": tier},
        },
    }


def test_codex_fast_tier_holds_until_the_next_settings_line(tmp_path: Path) -> None:
    """Standard, then Fast for two requests (also across a second read), then standard."""
    path = tmp_path / "rollout-2026-12-04T10-00-00-0193a1b2-0000-7000-8000-000000000001.jsonl"
    lines = [
        {
            "timestamp": "2026-12-04T10:00:00Z",
            "type": "session_meta",
            "payload": {"id": "sess", "cwd": "/w", "model": "gpt-5.5"},
        },
        token_count("2026-12-04T10:01:00Z", 100),
        settings("2026-12-04T10:02:00Z", "fast"),
        token_count("2026-12-04T10:03:00Z", 200),
    ]
    write(path, lines)
    parser = CodexParser()
    first = parser.parse(path.read_bytes(), path=str(path), state=None)
    assert [e.fast for e in first.events] == [False, True]
    more = [
        token_count("2026-12-04T10:04:00Z", 300),
        settings("2026-12-04T10:05:00Z", "default"),
        token_count("2026-12-04T10:06:00Z", 400),
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in more)
    second = parser.parse(data, path=str(path), state=first.state)
    assert [e.fast for e in second.events] == [True, False]


def search(when: str) -> dict[str, Any]:
    """A Codex web search as a rollout records it (the real shape, query left out)."""
    return {
        "timestamp": when,
        "type": "response_item",
        "payload": {"type": "web_search_call", "status": "completed"},
    }


def test_codex_web_searches_belong_to_the_next_request(tmp_path: Path) -> None:
    """Real rollouts write each ``web_search_call`` item before the ``token_count`` of the
    request that ran it: two searches, then a request (2); a request without (0); a search
    at the end of one read, its request in the next read (1); a re-emitted token_count takes
    none."""
    path = tmp_path / "rollout-2026-12-04T10-00-00-0193a1b2-0000-7000-8000-000000000002.jsonl"
    lines = [
        {
            "timestamp": "2026-12-04T10:00:00Z",
            "type": "session_meta",
            "payload": {"id": "sess", "cwd": "/w", "model": "gpt-5.5"},
        },
        search("2026-12-04T10:00:30Z"),
        search("2026-12-04T10:00:40Z"),
        token_count("2026-12-04T10:01:00Z", 100),
        token_count("2026-12-04T10:02:00Z", 200),
        search("2026-12-04T10:02:30Z"),
    ]
    write(path, lines)
    parser = CodexParser()
    first = parser.parse(path.read_bytes(), path=str(path), state=None)
    assert [e.web_search_requests for e in first.events] == [2, 0]
    more = [
        token_count("2026-12-04T10:02:00Z", 200),  # re-emit: not a request
        token_count("2026-12-04T10:03:00Z", 300),
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in more)
    second = parser.parse(data, path=str(path), state=first.state)
    assert [e.web_search_requests for e in second.events] == [1]
    assert second.state["searches"] == 0
