"""Qwen Code: ``projects/<project>/chats/<sessionId>.jsonl`` chat records, appended.

Qwen Code (a Gemini CLI fork) appends one JSON record per line: ``user``, ``assistant``,
``tool_result`` and ``system`` records, each with its own ``uuid``. A response's usage is on
its ``assistant`` record as Gemini's ``usageMetadata``. The same counts are written again in
a ``system`` record of subtype ``ui_telemetry`` (``systemPayload.uiEvent`` of
``event.name`` ``api_response``, with ``input_token_count`` and so on) so that ``/stats``
can be replayed on resume: those repeats are never counted, the assistant record is the
event. ``/branch`` copies records verbatim into a new session file (same ``uuid``, new
``sessionId``), so the record ``uuid`` is the key and a copy counts once.

Token mapping: ``promptTokenCount`` *includes* ``cachedContentTokenCount`` (input = prompt −
cached; Qwen's Anthropic path folds cache writes into the prompt too, so they stay in input).
``thoughtsTokenCount`` is normally *beside* ``candidatesTokenCount`` (output = candidates +
thoughts), except in Qwen's OpenAI-compatible path, which stores ``completion_tokens`` (that
already contains the reasoning) as candidates: there ``totalTokenCount`` equals prompt +
candidates, and that is how the two shapes are told apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    InvalidRecordError,
    count,
    env_dirs,
    find_paths,
    mapping,
    parse_lines,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, UsageEvent

UNKNOWN_MODEL = "unknown"


def map_usage(usage: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Map a Qwen ``usageMetadata`` object to (input, cached input, output, reasoning).

    ``toolUsePromptTokenCount`` (Gemini's tool-use prompt, apart from the prompt) is input.
    A record whose ``cachedContentTokenCount`` exceeds its prompt cannot include it and is
    taken as net of the cache.
    """
    prompt = count(usage, "promptTokenCount", label="usageMetadata.promptTokenCount")
    candidates = count(usage, "candidatesTokenCount", label="usageMetadata.candidatesTokenCount")
    cached = count(usage, "cachedContentTokenCount", label="usageMetadata.cachedContentTokenCount")
    thoughts = count(usage, "thoughtsTokenCount", label="usageMetadata.thoughtsTokenCount")
    tool = count(usage, "toolUsePromptTokenCount", label="usageMetadata.toolUsePromptTokenCount")
    total = count(usage, "totalTokenCount", label="usageMetadata.totalTokenCount")
    if prompt == candidates == thoughts == 0 and total > 0:
        # Qwen leaves the breakdown out when the provider sent only a total; a guessed split
        # would be worse than saying so.
        raise InvalidRecordError("usageMetadata has a total but no breakdown (not counted)")
    fresh = prompt - cached if cached <= prompt else prompt
    inside = 0 < thoughts <= candidates and total == prompt + tool + candidates
    output = candidates if inside else candidates + thoughts
    return fresh + tool, cached, output, thoughts


class QwenParser:
    """Parser for Qwen Code chat recordings (append-only JSON lines)."""

    name = "qwen"
    incremental = True
    duplicate_policy = "max"

    def discover(self, env: Mapping[str, str], home: Path) -> list[str]:
        """Return ``projects/*/chats/*.jsonl`` under each Qwen data dir.

        ``QWEN_DATA_DIR`` (comma-separated, as ccusage reads it) wins; else Qwen Code's own
        ``QWEN_RUNTIME_DIR`` (where it writes chats) and ``QWEN_HOME`` (default ``~/.qwen``).
        """
        roots = env_dirs(env, "QWEN_DATA_DIR", home)
        if not roots:
            runtime = env_dirs(env, "QWEN_RUNTIME_DIR", home)
            roots = runtime[:1] + (env_dirs(env, "QWEN_HOME", home)[:1] or [home / ".qwen"])
        return find_paths([root / "projects" for root in roots], ["*/chats/*.jsonl"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` only carries the line count."""
        return parse_lines(
            data, path=path, state=state, event=lambda record: _event(record, Path(path))
        )


def _event(obj: Any, path: Path) -> UsageEvent | None:
    record = mapping(obj, "line")
    usage = record.get("usageMetadata")
    if usage is None:
        return None  # user, tool_result and system records (ui_telemetry repeats included)
    fresh, cached, output, reasoning = map_usage(mapping(usage, "usageMetadata"))
    if fresh == cached == output == 0:
        return None
    if record.get("type") != "assistant":
        # Qwen Code puts usageMetadata on its own responses only: never drop usage in silence.
        raise InvalidRecordError("usageMetadata on a record that is not an assistant response")
    when = timestamp(record.get("timestamp"))
    model = text(record.get("model")) or UNKNOWN_MODEL
    session = text(record.get("sessionId")) or path.stem
    key = text(record.get("uuid"))
    if key is None:
        counts = [fresh, cached, output, reasoning]
        blob = orjson.dumps([session, str(record.get("timestamp")), model, *counts])
        key = "sha256:" + hashlib.sha256(blob).hexdigest()[:32]
    return UsageEvent(
        source="qwen",
        event_key=key,
        timestamp=when,
        model=model,
        session_id=session,
        project=text(record.get("cwd")),
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
    )
