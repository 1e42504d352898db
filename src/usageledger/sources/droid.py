"""Factory Droid: one usage total per session in ``<sessionId>.settings.json``.

Droid keeps each session as ``sessions/<encoded cwd>/<sessionId>.jsonl`` (the transcript) beside
``<sessionId>.settings.json``, which it rewrites with the session's running ``tokenUsage``
total. A session is therefore ONE event: keyed by the session id (the file name), dated at the
session's start, with duplicate policy "last" so that a session that grew since the last scan
REPLACES its earlier total instead of adding to it (and a copy of the file counts once).

The start is the earlier of two moments of the session: ``providerLockTimestamp`` (written
when a request locks the session's provider, so at the first request, or later when a model
switch locks another provider) and the first ``timestamp`` of the transcript beside it (the
first message; read from the ``.jsonl``'s first lines, the only I/O of this parser). Either
alone dates the session when the other is missing; without both the usage is reported, not
dated by a guess (the file's time is when it was last written, not when the session began).

Token mapping (Anthropic-shaped, as Droid records it): ``inputTokens`` excludes both caches,
``cacheCreationTokens`` and ``cacheReadTokens`` are apart from it, and ``thinkingTokens`` is
apart from ``outputTokens`` (ccusage and tokscale add it). A stored ``totalTokens`` equal to
input + output + both caches, with thinking > 0, shows thinking already inside output.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    MAX_LINE_BYTES,
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
SUFFIX = ".settings.json"
#: How many of the transcript's first lines are read to find its first timestamp.
TRANSCRIPT_HEAD_LINES = 64


def map_tokens(usage: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Map ``tokenUsage`` to (input, cached, output, reasoning, cache write)."""
    fresh = count(usage, "inputTokens", label="tokenUsage.inputTokens")
    output = count(usage, "outputTokens", label="tokenUsage.outputTokens")
    write = count(usage, "cacheCreationTokens", label="tokenUsage.cacheCreationTokens")
    read = count(usage, "cacheReadTokens", label="tokenUsage.cacheReadTokens")
    thinking = count(usage, "thinkingTokens", label="tokenUsage.thinkingTokens")
    total = count(usage, "totalTokens", label="tokenUsage.totalTokens")
    parts = fresh + output + write + read
    if total > parts + thinking:
        # ccusage books the excess as output; which kind of token it is cannot be told.
        raise InvalidRecordError("tokenUsage.totalTokens exceeds the sum of its parts")
    inside = thinking > 0 and total == parts
    if inside and thinking > output:
        raise InvalidRecordError("tokenUsage.thinkingTokens exceeds outputTokens")
    return fresh + write, read, output if inside else output + thinking, thinking, write


class DroidParser:
    """Parser for Droid's per-session settings files (re-read whole whenever they change)."""

    name = "droid"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return every ``*.settings.json`` under the sessions directories.

        ``DROID_SESSIONS_DIR`` (comma-separated, as ccusage reads it) wins; else
        ``~/.factory/sessions`` (the same path on macOS).
        """
        roots = env_dirs(env, "DROID_SESSIONS_DIR", home) or [home / ".factory" / "sessions"]
        return find_files(roots, [f"*{SUFFIX}"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse one settings file into its session's event (none without usage)."""
        result = ParseResult(consumed=len(data))
        try:
            event = _event(orjson.loads(data), path)
        except orjson.JSONDecodeError as exc:
            reason = decode_reason(data, exc)
        except InvalidRecordError as exc:
            reason = str(exc)
        except Exception as exc:  # a parser never raises on content; report and go on
            reason = f"unreadable settings file ({type(exc).__name__})"
        else:
            if event is not None:
                result.events.append(event)
            return result
        result.problems.append(Problem(path, None, reason))
        return result


def session_id(path: str) -> str:
    """``<sessionId>.settings.json`` → ``<sessionId>``."""
    name = Path(path).name
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else name


def _event(settings: Any, path: str) -> UsageEvent | None:
    obj = mapping(settings, "settings file")
    usage = obj.get("tokenUsage")
    if usage is None:
        return None
    fresh, cached, output, reasoning, write = map_tokens(mapping(usage, "tokenUsage"))
    if fresh == cached == output == 0:
        return None
    session = session_id(path)
    return UsageEvent(
        source="droid",
        event_key=session,
        timestamp=_session_start(obj, path),
        model=text(obj.get("model")) or UNKNOWN_MODEL,
        session_id=session,
        project=None,
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_output_tokens=reasoning,
        cache_write_tokens=write,
    )


def _session_start(settings: Mapping[str, Any], path: str) -> datetime:
    """The earliest of ``providerLockTimestamp`` and the transcript's first timestamp."""
    found: list[datetime] = []
    locked = settings.get("providerLockTimestamp")
    if locked not in (None, ""):
        found.append(timestamp(locked))
    first = transcript_start(Path(path).with_name(session_id(path) + ".jsonl"))
    if first is not None:
        found.append(first)
    if not found:
        raise InvalidRecordError(
            "no session start (no providerLockTimestamp, no timestamp in the transcript); "
            "not counted"
        )
    return min(found)


def transcript_start(transcript: Path) -> datetime | None:
    """The first readable ``timestamp`` among the transcript's first lines (None: none).

    Lines are read whole (up to 16 MiB each: the first message may hold a long paste), so a
    large first message still dates the session; an unreadable line is passed over.
    """
    try:
        with open(transcript, "rb") as handle:
            for _ in range(TRANSCRIPT_HEAD_LINES):
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return None
                if len(line) > MAX_LINE_BYTES:
                    while line and not line.endswith(b"\n"):
                        line = handle.readline(MAX_LINE_BYTES)
                    continue
                found = _line_timestamp(line)
                if found is not None:
                    return found
    except OSError:
        return None
    return None


def _line_timestamp(line: bytes) -> datetime | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("timestamp") in (None, ""):
        return None
    try:
        return timestamp(record["timestamp"])
    except InvalidRecordError:
        return None
