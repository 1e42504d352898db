"""Kimi CLI / Kimi Code: ``sessions/<group>/<session>/wire.jsonl``, the wire protocol appended.

Two writers, two line formats, one source:

- **Kimi CLI** (the Python ``kimi-cli``, ``~/.kimi``): each line is ``{"timestamp": <Unix
  seconds>, "message": {"type", "payload"}}`` (the first is ``{"type": "metadata", ...}``).
  Usage is in ``StatusUpdate`` messages: ``payload.token_usage.{input_other,
  input_cache_read, input_cache_creation, output}`` for the current step and
  ``payload.message_id``, the API's id of that step's response. Kimi sends several
  ``StatusUpdate`` messages for one ``message_id`` while the step runs: they are *growing
  snapshots* of one response, never increments, so the message id is the key and the ledger
  keeps the largest snapshot (policy "max"). "max" rather than "last" because the scanner reads
  this append-only file incrementally and a copy of a session can be read after the original:
  the largest snapshot is the final one whatever the order of reading, where "last" would let
  an older snapshot read later replace a newer one. A sub-agent's ``StatusUpdate`` arrives
  wrapped in a ``SubagentEvent`` (``payload.event``) and counts like any other.
- **Kimi Code** (the TypeScript ``kimi-code``, ``~/.kimi-code``,
  ``sessions/<workspace>/<session>/agents/<agent>/wire.jsonl``): each line is an agent record
  ``{"type", ..., "time": <epoch ms>}``. Every model call, loop steps and context compaction
  alike, is one ``{"type": "usage.record", "model", "usage": {inputOther, output,
  inputCacheRead, inputCacheCreation}, "usageScope": "turn" | "session"}``, written as soon
  as the provider call returns. The same step's usage is repeated in the
  ``context.append_loop_event`` whose ``event.type`` is ``step.end`` (written after the
  step's tools ran, and missing when they were interrupted): that copy is never counted. The
  record carries no response id, so its key is a hash of its time, model and counts: a forked
  session (Kimi Code copies the session's wire logs) and a log rewritten by a protocol
  migration give the same keys again.

A file counts responses one way only: the first usage line read decides whether the file is
a ``StatusUpdate`` log or a ``usage.record`` log (kept in the scanner's state), and a usage
line of the other kind in it is reported, not counted, so one response is never counted from
both.

Token mapping (both formats): ``input_other`` / ``inputOther`` is the prompt not read from or
written to the cache; ``input_cache_creation`` / ``inputCacheCreation`` is written to the
cache (so input = other + creation, and the cache write is that part); ``input_cache_read`` /
``inputCacheRead`` is cached input; ``output`` includes any thinking (no reasoning breakdown is
recorded). Kimi CLI's wire records no model name (events are recorded under "unknown"); a
Kimi Code ``usage.record`` names the model alias of its configuration, and the ``llm.request``
record written just before the call names the provider's model, which wins.
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
    find_files,
    line_state,
    mapping,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"
STATUS_UPDATE = "StatusUpdate"
SUBAGENT_EVENT = "SubagentEvent"
USAGE_RECORD = "usage.record"
LLM_REQUEST = "llm.request"
#: The two ways a file can count its responses (the scanner's state ``format``).
STATUS_FORMAT = "StatusUpdate"
RECORD_FORMAT = "usage.record"


def map_usage(usage: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Map a Kimi CLI ``token_usage`` object to (input, cached input, output, cache write)."""
    other = count(usage, "input_other", label="token_usage.input_other")
    read = count(usage, "input_cache_read", label="token_usage.input_cache_read")
    creation = count(usage, "input_cache_creation", label="token_usage.input_cache_creation")
    output = count(usage, "output", label="token_usage.output")
    total = count(usage, "total", label="token_usage.total")
    if other == read == creation == output == 0 and total > 0:
        raise InvalidRecordError("token_usage has a total but no breakdown (not counted)")
    return other + creation, read, output, creation


def map_record_usage(usage: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Map a Kimi Code ``usage.record`` ``usage`` to (input, cached input, output, cache write)."""
    other = count(usage, "inputOther", label="usage.inputOther")
    read = count(usage, "inputCacheRead", label="usage.inputCacheRead")
    creation = count(usage, "inputCacheCreation", label="usage.inputCacheCreation")
    output = count(usage, "output", label="usage.output")
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
        """Parse complete lines of ``data``.

        ``state`` carries the line count, the file's format once a usage line decided it, and
        the latest ``llm.request``'s ``[model, alias]`` (Kimi Code).
        """
        reader = _Reader(_session(Path(path)), state or {})
        end = complete_length(data)
        first = line_state(state) + 1
        problems: list[Problem] = []
        each_record(data[:end], path=path, first_line=first, problems=problems, handle=reader.read)
        lines = data.count(b"\n", 0, end)
        new_state: dict[str, Any] = {"line": first - 1 + lines}
        if reader.format is not None:
            new_state["format"] = reader.format
        if reader.request is not None:
            new_state["request"] = list(reader.request)
        return ParseResult(events=reader.events, problems=problems, consumed=end, state=new_state)


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


def _request_state(value: Any) -> tuple[str, str | None] | None:
    """``[model, alias]`` from the scanner's state (anything else: none)."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        alias = value[1] if isinstance(value[1], str) else None
        return value[0], alias
    return None


def _symbolic(model: str) -> bool:
    """A configuration placeholder such as ``__kimi_env_model__``, not a model name."""
    name = model.rsplit("/", 1)[-1].strip()
    return len(name) >= 4 and name.startswith("__") and name.endswith("__")


class _Reader:
    """Turns one file's records into events, remembering its format and latest request."""

    def __init__(self, session: str, state: Mapping[str, Any]) -> None:
        self.session = session
        fmt = state.get("format")
        self.format: str | None = fmt if fmt in (STATUS_FORMAT, RECORD_FORMAT) else None
        self.request = _request_state(state.get("request"))
        self.events: list[UsageEvent] = []

    def read(self, _: int, obj: Any) -> None:
        line = mapping(obj, "line")
        kind = line.get("type")
        if kind == LLM_REQUEST:
            model = text(line.get("model"))
            if model is not None and not _symbolic(model):
                self.request = (model.strip(), text(line.get("modelAlias")))
            return
        event = self._record(line) if kind == USAGE_RECORD else self._status_update(line)
        if event is not None:
            self.events.append(event)

    def _decide(self, fmt: str) -> None:
        """Fix the file's format at its first usage line; refuse a line of the other one."""
        if self.format is None:
            self.format = fmt
        elif self.format != fmt:
            raise InvalidRecordError(
                f"{fmt} usage in a log that counts its responses by {self.format} lines "
                "(not counted: one response would count twice)"
            )

    def _status_update(self, line: Mapping[str, Any]) -> UsageEvent | None:
        message = line.get("message")
        if not isinstance(message, dict):
            return None  # the metadata line; Kimi Code's other records
        payload = _status(message)
        if payload is None or payload.get("token_usage") is None:
            return None  # other wire messages; a status without usage (context size only)
        fresh, cached, output, write = map_usage(mapping(payload["token_usage"], "token_usage"))
        if fresh == cached == output == 0:
            return None
        seconds = line.get("timestamp")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise InvalidRecordError("timestamp is not a positive Unix time")
        self._decide(STATUS_FORMAT)
        message_id = text(payload.get("message_id"))
        if message_id is None:
            blob = orjson.dumps([self.session, seconds, fresh, cached, output, write])
            message_id = "sha256:" + hashlib.sha256(blob).hexdigest()[:32]
        return UsageEvent(
            source="kimi",
            event_key=message_id,
            timestamp=timestamp(seconds * 1000),
            model=UNKNOWN_MODEL,
            session_id=self.session,
            project=None,
            input_tokens=fresh,
            cached_input_tokens=cached,
            output_tokens=output,
            cache_write_tokens=write,
        )

    def _record(self, line: Mapping[str, Any]) -> UsageEvent | None:
        usage = mapping(line.get("usage"), "usage.record usage")
        fresh, cached, output, write = map_record_usage(usage)
        if fresh == cached == output == 0:
            return None
        millis = line.get("time")
        if isinstance(millis, bool) or not isinstance(millis, int) or millis <= 0:
            raise InvalidRecordError("time is not a positive Unix time in milliseconds")
        self._decide(RECORD_FORMAT)
        recorded = text(line.get("model"))
        blob = orjson.dumps([millis, recorded, fresh - write, cached, write, output])
        return UsageEvent(
            source="kimi",
            event_key="usage.record:" + hashlib.sha256(blob).hexdigest()[:32],
            timestamp=timestamp(millis),
            model=self._model(recorded),
            session_id=self.session,
            project=None,
            input_tokens=fresh,
            cached_input_tokens=cached,
            output_tokens=output,
            cache_write_tokens=write,
        )

    def _model(self, recorded: str | None) -> str:
        """The provider's model of the request behind a record, else the record's own name.

        The latest ``llm.request`` is the call the record accounts for when its alias is the
        record's model (or either names no alias: a placeholder, an older writer).
        """
        if self.request is not None:
            model, alias = self.request
            if recorded is None or _symbolic(recorded) or alias in (None, recorded):
                return model
        if recorded is None or _symbolic(recorded):
            return UNKNOWN_MODEL
        return recorded.strip()
