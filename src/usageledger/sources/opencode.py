"""Opencode: one JSON file per message under ``storage/message/<sessionID>/``.

Opencode rewrites a message file while the response streams and when it finishes, so
the message id is the key and the last copy read wins. Only assistant messages carry
``tokens``. Opencode stores input *net* of the cache (``input``, ``cache.read`` and
``cache.write`` are disjoint) and, in current versions, ``output`` *without*
``reasoning``; a stored ``total`` tells the older shape (reasoning inside output) apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    InvalidRecordError,
    count,
    decode_reason,
    env_dirs,
    find_files,
    mapping,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"


def map_tokens(tokens: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Map an opencode ``tokens`` object to (input, cached, output, reasoning, cache write).

    Reasoning is added to output unless ``total`` shows output already contains it
    (``total = input + output + cache.read + cache.write`` with reasoning > 0).
    """
    fresh = count(tokens, "input", required=True, label="tokens.input")
    output = count(tokens, "output", required=True, label="tokens.output")
    reasoning = count(tokens, "reasoning", label="tokens.reasoning")
    total = count(tokens, "total", label="tokens.total")
    cache = tokens.get("cache")
    cache_obj = mapping(cache, "tokens.cache") if cache is not None else {}
    read = count(cache_obj, "read", label="tokens.cache.read")
    write = count(cache_obj, "write", label="tokens.cache.write")
    inside = reasoning > 0 and total == fresh + output + read + write
    if inside and reasoning > output:
        raise InvalidRecordError("tokens.reasoning exceeds tokens.output")
    out = output if inside else output + reasoning
    return fresh + write, read, out, reasoning, write


class OpencodeParser:
    """Parser for opencode per-message JSON files (re-read whole whenever they change)."""

    name = "opencode"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return ``storage/message/**/*.json`` under each opencode data dir.

        ``OPENCODE_DATA_DIR`` (comma-separated) wins; else ``$XDG_DATA_HOME/opencode``;
        else ``~/.local/share/opencode``.
        """
        roots = env_dirs(env, "OPENCODE_DATA_DIR", home)
        if not roots:
            xdg = env_dirs(env, "XDG_DATA_HOME", home)
            roots = [(xdg[0] if xdg else home / ".local" / "share") / "opencode"]
        return find_files([root / "storage" / "message" for root in roots], ["*.json"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse one message file; a user message or one without usage yields nothing."""
        result = ParseResult(consumed=len(data))
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            result.problems.append(Problem(path, None, decode_reason(data, exc)))
            return result
        try:
            event = _event(message, Path(path))
        except InvalidRecordError as exc:
            result.problems.append(Problem(path, None, str(exc)))
        except Exception as exc:  # a parser never raises; report and go on
            result.problems.append(
                Problem(path, None, f"unreadable message ({type(exc).__name__})")
            )
        else:
            if event is not None:
                result.events.append(event)
        return result


def _event(message: Any, path: Path) -> UsageEvent | None:
    obj = mapping(message, "message file")
    if obj.get("role") != "assistant" or obj.get("tokens") is None:
        return None
    fresh, cached, output, reasoning, write = map_tokens(mapping(obj["tokens"], "tokens"))
    if fresh == cached == output == 0:
        return None
    times = mapping(obj.get("time"), "time")
    paths = obj.get("path")
    project = None
    if isinstance(paths, dict):
        project = text(paths.get("cwd")) or text(paths.get("root"))
    return UsageEvent(
        source="opencode",
        event_key=text(obj.get("id")) or path.stem,
        timestamp=timestamp(times.get("created")),
        model=text(obj.get("modelID")) or UNKNOWN_MODEL,
        session_id=text(obj.get("sessionID")) or path.parent.name,
        project=project,
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
        cache_write_tokens=write,
    )
