"""Claude Code: ``projects/**/*.jsonl`` transcripts under each Claude config directory.

Each assistant line carries the API's ``message.usage`` (a line without a top-level ``type``
counts as an assistant line; usage on any other line is reported, not counted). Claude Code
writes one line per content block while a response streams (same ``message.id`` and
``requestId``, growing ``output_tokens``), copies parent messages into sub-agent and
resumed-session files, and writes ``<synthetic>`` error messages. ``usage.cache_creation``
splits the cache writes into five-minute and one-hour ones (``ephemeral_1h_input_tokens``) and
``usage.speed`` is ``"fast"`` for a fast-mode request: both are billed at their own rates, and
``usage.server_tool_use.web_search_requests`` counts the server-side web searches (billed per
1,000). A one-hour part larger than the cache writes is capped at the writes and reported: the
response still counts. The key ``message.id:requestId`` is shared by all those copies and the
ledger keeps the one with the most tokens (policy "max").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    InvalidRecordError,
    complete_length,
    count,
    each_record,
    env_dirs,
    find_paths,
    line_state,
    text,
    timestamp,
)
from usageledger.sources._cost import logged_usd
from usageledger.sources.base import ParseResult, Problem, UsageEvent

SYNTHETIC_MODEL = "<synthetic>"
UNKNOWN_MODEL = "unknown"


def event_key(
    message_id: str | None, request_id: str | None, when: str, model: str, counts: list[int]
) -> str:
    """Return the natural key of one assistant response.

    ``message.id:requestId`` when both exist; ``message.id:`` when Claude Code left out
    the request id; otherwise a hash of the timestamp, model and the four usage counts
    (so a byte-identical copy in another file still collapses, whatever its session).
    """
    if message_id is not None:
        return f"{message_id}:{request_id or ''}"
    digest = hashlib.sha256(orjson.dumps([when, model, *counts])).hexdigest()[:32]
    return f"sha256:{digest}"


class ClaudeParser:
    """Parser for Claude Code project transcripts (append-only JSON lines)."""

    name = "claude"
    incremental = True
    duplicate_policy = "max"

    def discover(self, env: Mapping[str, str], home: Path) -> list[str]:
        """Return every ``projects/**/*.jsonl`` (sub-agent files included) per config dir."""
        roots = env_dirs(env, "CLAUDE_CONFIG_DIR", home) or [
            home / ".config" / "claude",
            home / ".claude",
        ]
        return find_paths([root / "projects" for root in roots], ["*.jsonl"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` only carries the line count.

        As ``_common.parse_lines``, except that a line may give an event and a problem (a
        count that was corrected, see :func:`_cache_write_1h`).
        """
        fallback_session = Path(path).stem
        end = complete_length(data)
        first = line_state(state) + 1
        events: list[UsageEvent] = []
        problems: list[Problem] = []

        def keep(lineno: int, obj: Any) -> None:
            notes: list[str] = []
            found = _event(obj, fallback_session, notes)
            if found is not None:
                events.append(found)
            problems.extend(Problem(path, lineno, note) for note in notes)

        each_record(data[:end], path=path, first_line=first, problems=problems, handle=keep)
        lines = data.count(b"\n", 0, end)
        return ParseResult(
            events=events, problems=problems, consumed=end, state={"line": first - 1 + lines}
        )


def _event(obj: Any, fallback_session: str, notes: list[str]) -> UsageEvent | None:
    if not isinstance(obj, dict):
        raise InvalidRecordError("line is not a JSON object")
    message = obj.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise InvalidRecordError("message.usage is not an object")
    model = text(message.get("model")) or UNKNOWN_MODEL
    fresh = count(usage, "input_tokens", required=True)
    output = count(usage, "output_tokens", required=True)
    cache_read = count(usage, "cache_read_input_tokens")
    cache_write = _cache_write(usage)
    cache_write_1h = _cache_write_1h(usage, cache_write, notes)
    searches = _web_searches(usage)
    if fresh == output == cache_read == cache_write == searches == 0:
        notes.clear()
        return None
    # Usage is never dropped in silence: a line that carries non-zero usage is counted or
    # reported. A line without a top-level ``type`` (ccusage's test transcripts) is an assistant
    # response like any other; a line that says it is something else is not guessed at.
    if obj.get("type") not in (None, "assistant") or message.get("role") not in (None, "assistant"):
        raise InvalidRecordError("usage on a line that is not an assistant message (not counted)")
    if model == SYNTHETIC_MODEL:
        # Claude Code's own notices carry zero usage: non-zero usage there is no API response's.
        raise InvalidRecordError("non-zero usage on a <synthetic> message (not counted)")
    when = timestamp(obj.get("timestamp"))
    key = event_key(
        text(message.get("id")),
        text(obj.get("requestId")),
        str(obj.get("timestamp")),
        model,
        [fresh, cache_write, cache_read, output],
    )
    return UsageEvent(
        source="claude",
        event_key=key,
        timestamp=when,
        model=model,
        session_id=text(obj.get("sessionId")) or fallback_session,
        project=text(obj.get("cwd")),
        input_tokens=fresh + cache_write,
        cached_input_tokens=cache_read,
        output_tokens=output,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        fast=usage.get("speed") == "fast",
        web_search_requests=searches,
        # Older Claude Code versions: its own list-price estimate, so 0 (with tokens) means it
        # had no price for the model, not a free response; logged_usd ignores it.
        logged_cost_picousd=logged_usd(obj.get("costUSD")),
    )


def _cache_write_1h(usage: Mapping[str, Any], cache_write: int, notes: list[str]) -> int:
    """``cache_creation.ephemeral_1h_input_tokens``: the one-hour part of the cache writes (the
    rest of ``cache_creation_input_tokens`` is five-minute). Older logs have no breakdown: 0.

    A part larger than the whole is capped at the whole (every write one-hour) and noted: the
    response's tokens are not in doubt, only how its writes split.
    """
    breakdown = usage.get("cache_creation")
    if not isinstance(breakdown, dict):
        return 0
    one_hour = count(
        breakdown, "ephemeral_1h_input_tokens", label="cache_creation.ephemeral_1h_input_tokens"
    )
    if one_hour > cache_write:
        notes.append(
            f"cache_creation.ephemeral_1h_input_tokens ({one_hour}) exceeds the cache writes "
            f"({cache_write}); counted as {cache_write} (every write one-hour)"
        )
        return cache_write
    return one_hour


def _web_searches(usage: Mapping[str, Any]) -> int:
    """``server_tool_use.web_search_requests``: the server-side web searches (0 if absent)."""
    tools = usage.get("server_tool_use")
    if not isinstance(tools, dict):
        return 0
    return count(tools, "web_search_requests", label="server_tool_use.web_search_requests")


def _cache_write(usage: Mapping[str, Any]) -> int:
    """``cache_creation_input_tokens``, or the sum of its ``cache_creation`` breakdown."""
    if usage.get("cache_creation_input_tokens") is not None:
        return count(usage, "cache_creation_input_tokens")
    breakdown = usage.get("cache_creation")
    if not isinstance(breakdown, dict):
        return 0
    keys = [key for key in sorted(breakdown) if key.endswith("_input_tokens")]
    return sum(count(breakdown, key, label=f"cache_creation.{key}") for key in keys)
