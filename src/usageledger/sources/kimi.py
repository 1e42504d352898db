"""Kimi CLI / Kimi Code: ``sessions/<group>/<session>/wire.jsonl``, the wire protocol appended.

Each line is ``{"timestamp": <Unix seconds>, "message": {"type", "payload"}}`` (the first
line is ``{"type": "metadata", ...}``). Usage is in ``StatusUpdate`` messages:
``payload.token_usage.{input_other, input_cache_read, input_cache_creation, output}`` for the
current step and ``payload.message_id``, the API's id of that step's response. Kimi sends
several ``StatusUpdate`` messages for one ``message_id`` while the step runs: they are
*growing snapshots* of one response, never increments, so the message id is the key and the
ledger keeps the largest snapshot (policy "max"). "max" rather than "last" because the
scanner reads this append-only file incrementally and a copy of a session can be read after
the original: the largest snapshot is the final one whatever the order of reading, where "last"
would let an older snapshot read later replace a newer one. A sub-agent's ``StatusUpdate``
arrives wrapped in a ``SubagentEvent`` (``payload.event``) and counts like any other; its
``message_id`` collapses it with any other copy.

Token mapping: ``input_other`` is the prompt not read from or written to the cache;
``input_cache_creation`` is written to the cache (so input = input_other + creation, and the
cache write is that part); ``input_cache_read`` is cached input; ``output`` includes any
thinking (Kimi reports no reasoning breakdown). The wire records no model name, so events are
recorded under model "unknown" rather than a guess from today's configuration.
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
    find_files,
    mapping,
    parse_lines,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, UsageEvent

UNKNOWN_MODEL = "unknown"
STATUS_UPDATE = "StatusUpdate"
SUBAGENT_EVENT = "SubagentEvent"


def map_usage(usage: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Map a Kimi ``token_usage`` object to (input, cached input, output, cache write)."""
    other = count(usage, "input_other", label="token_usage.input_other")
    read = count(usage, "input_cache_read", label="token_usage.input_cache_read")
    creation = count(usage, "input_cache_creation", label="token_usage.input_cache_creation")
    output = count(usage, "output", label="token_usage.output")
    total = count(usage, "total", label="token_usage.total")
    if other == read == creation == output == 0 and total > 0:
        raise InvalidRecordError("token_usage has a total but no breakdown (not counted)")
    return other + creation, read, output, creation


class KimiParser:
    """Parser for Kimi CLI and Kimi Code wire logs (append-only JSON lines)."""

    name = "kimi"
    incremental = True
    duplicate_policy = "max"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return every ``sessions/**/wire.jsonl`` of each Kimi data dir.

        ``KIMI_DATA_DIR`` (comma-separated, as ccusage reads it) wins; else Kimi CLI's own
        ``KIMI_SHARE_DIR`` (default ``~/.kimi``) and Kimi Code's ``KIMI_CODE_HOME`` (default
        ``~/.kimi-code``).
        """
        roots = env_dirs(env, "KIMI_DATA_DIR", home)
        if not roots:
            share = env_dirs(env, "KIMI_SHARE_DIR", home)[:1] or [home / ".kimi"]
            code = env_dirs(env, "KIMI_CODE_HOME", home)[:1] or [home / ".kimi-code"]
            roots = share + code
        return find_files([root / "sessions" for root in roots], ["*/wire.jsonl"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` only carries the line count."""
        session = _session(Path(path))
        return parse_lines(
            data, path=path, state=state, event=lambda record: _event(record, session)
        )


def _session(path: Path) -> str:
    """The session directory's name (``<session>/agents/<agent>/wire.jsonl`` in Kimi Code)."""
    if path.parent.parent.name == "agents":
        return path.parent.parent.parent.name
    return path.parent.name


def _status(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The payload of a ``StatusUpdate``, unwrapped from a ``SubagentEvent`` if need be."""
    kind = message.get("type")
    payload = message.get("payload")
    if kind == SUBAGENT_EVENT and isinstance(payload, dict):
        inner = payload.get("event")
        if isinstance(inner, dict):
            return _status(inner)
    if kind == STATUS_UPDATE:
        return mapping(payload, "StatusUpdate payload")
    return None


def _event(obj: Any, session: str) -> UsageEvent | None:
    line = mapping(obj, "line")
    message = line.get("message")
    if not isinstance(message, dict):
        return None  # the metadata line
    payload = _status(message)
    if payload is None or payload.get("token_usage") is None:
        return None  # other wire messages; a status without usage (context size only)
    fresh, cached, output, write = map_usage(mapping(payload["token_usage"], "token_usage"))
    if fresh == cached == output == 0:
        return None
    seconds = line.get("timestamp")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise InvalidRecordError("timestamp is not a positive Unix time")
    message_id = text(payload.get("message_id"))
    if message_id is None:
        blob = orjson.dumps([session, seconds, fresh, cached, output, write])
        message_id = "sha256:" + hashlib.sha256(blob).hexdigest()[:32]
    return UsageEvent(
        source="kimi",
        event_key=message_id,
        timestamp=timestamp(seconds * 1000),
        model=UNKNOWN_MODEL,
        session_id=session,
        project=None,
        input_tokens=fresh,
        cached_input_tokens=cached,
        output_tokens=output,
        cache_write_tokens=write,
    )
