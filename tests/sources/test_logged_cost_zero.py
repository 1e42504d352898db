"""A logged cost of zero, and the largest logged cost, decided per source.

- pi (and OpenClaw, which writes pi's format) writes ``usage.cost.total`` 0 for every model
  its catalog has no price for: a 0 is "not known", never a free response.
- Claude Code's ``costUSD`` (older versions) is its own list-price estimate of the response;
  a response with tokens is never $0 at list prices, so a 0 means it had no price: not known.
- Copilot CLI's ``totalNanoAiu`` is GitHub's metering of what it bills; a model the plan
  includes is metered at 0, a real $0 (kept). It is the total of one process and model (a
  whole session), so its bound is $100,000, not the $1,000 of one response.
"""

from __future__ import annotations

from typing import Any

import orjson

from usageledger.sources.claude import ClaudeParser
from usageledger.sources.copilot import CopilotParser
from usageledger.sources.pi import PiParser


def claude(cost: Any) -> int | None:
    """The logged cost Claude's parser keeps for a response with ``costUSD: cost``."""
    line = {
        "type": "assistant",
        "timestamp": "2025-06-01T10:00:00Z",
        "sessionId": "s",
        "requestId": "r",
        "costUSD": cost,
        "message": {
            "id": "m",
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
    }
    result = ClaudeParser().parse(orjson.dumps(line) + b"\n", path="p/s.jsonl", state=None)
    [event] = result.events
    return event.logged_cost_picousd


def pi(total: Any) -> int | None:
    """The logged cost pi's parser keeps for ``usage.cost.total: total``."""
    lines = [
        {"type": "session", "id": "sess", "cwd": "/w", "timestamp": "2026-01-09T10:00:00Z"},
        {
            "type": "message",
            "id": "a1",
            "timestamp": "2026-01-09T10:01:00Z",
            "message": {
                "role": "assistant",
                "model": "some-model",
                "usage": {
                    "input": 10,
                    "output": 5,
                    "cacheRead": 0,
                    "cacheWrite": 0,
                    "totalTokens": 15,
                    "cost": {"total": total},
                },
            },
        },
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    result = PiParser().parse(data, path="2026-01-09T10-00-00_sess.jsonl", state=None)
    [event] = result.events
    return event.logged_cost_picousd


def copilot(nano_aiu: Any) -> int | None:
    """The logged cost Copilot's parser keeps for ``totalNanoAiu: nano_aiu``."""
    shutdown = {
        "type": "session.shutdown",
        "id": "1a2b3c4d-0000-4000-8000-000000000002",
        "timestamp": "2026-09-30T08:48:57.402Z",
        "data": {
            "modelMetrics": {
                "gpt-5-mini": {
                    "requests": {"count": 3, "cost": 0},
                    "usage": {
                        "inputTokens": 100,
                        "outputTokens": 10,
                        "cacheReadTokens": 0,
                        "cacheWriteTokens": 0,
                        "reasoningTokens": 0,
                    },
                    "totalNanoAiu": nano_aiu,
                }
            }
        },
    }
    start = {
        "type": "session.start",
        "id": "1a2b3c4d-0000-4000-8000-000000000001",
        "timestamp": "2026-09-30T08:01:00.000Z",
        "data": {"sessionId": "7e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"},
    }
    data = orjson.dumps(start) + b"\n" + orjson.dumps(shutdown) + b"\n"
    path = "session-state/7e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b/events.jsonl"
    result = CopilotParser().parse(data, path=path, state=None)
    [event] = result.events
    return event.logged_cost_picousd


def test_zero_means_not_known_for_pi_and_claude_and_a_real_zero_for_copilot() -> None:
    """pi 0 → None, Claude 0 → None, Copilot 0 → $0 logged."""
    assert pi(0) is None
    assert pi(0.0) is None
    assert claude(0) is None
    assert copilot(0) == 0


def test_the_cap_fits_what_each_source_logs() -> None:
    """A response above $1,000 is corrupt for Claude and pi; Copilot's process total of
    $2,000 (200,000 credits = 200,000,000,000,000 nano-credits × 10 pico-dollars) is kept, and
    above $100,000 it is refused."""
    assert claude(999.5) == 999_500_000_000_000
    assert claude(2_000) is None
    assert pi(2_000) is None
    assert copilot(200_000_000_000_000) == 2_000_000_000_000_000
    assert copilot(10_000_000_000_000_001) is None  # $100,000.00000000001
