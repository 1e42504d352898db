"""Gemini CLI: ``tmp/<project>/chats/session-*.json`` and ``.jsonl`` chat recordings.

Older Gemini CLI versions rewrite one ``.json`` document per session; newer ones append
JSON lines (a metadata record, message records, ``$set``/``$patch``/``$rewindTo``
records) and re-append a message with the same id when it changes. Resuming a legacy
``.json`` session copies it into a ``.jsonl`` file with the same ids. The key
``sessionId:message.id`` collapses every copy and the last one read wins.

Token mapping (Gemini API ``usageMetadata`` as recorded by the CLI): ``input`` is the
prompt *including* ``cached``; ``output`` excludes ``thoughts``; ``tool`` is the
tool-use prompt, apart from ``input``; ``total = input + output + thoughts + tool``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources._common import (
    InvalidRecordError,
    complete_length,
    count,
    decode_reason,
    env_dirs,
    find_paths,
    json_lines,
    mapping,
    text,
    timestamp,
)
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"


def map_tokens(tokens: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Map a Gemini ``tokens`` object to (input, cached input, output, reasoning).

    ``input`` normally includes ``cached`` and is reduced by it. A record whose ``total``
    proves ``input`` was already net of the cache (``total = input + cached + output +
    thoughts + tool``), or whose ``cached`` exceeds ``input``, is taken as net.
    """
    prompt = count(tokens, "input", required=True, label="tokens.input")
    output = count(tokens, "output", required=True, label="tokens.output")
    cached = count(tokens, "cached", label="tokens.cached")
    thoughts = count(tokens, "thoughts", label="tokens.thoughts")
    tool = count(tokens, "tool", label="tokens.tool")
    total = count(tokens, "total", label="tokens.total")
    net = cached > prompt or (cached > 0 and total == prompt + cached + output + thoughts + tool)
    fresh = prompt if net else prompt - cached
    return fresh + tool, cached, output + thoughts, thoughts


class GeminiParser:
    """Parser for Gemini CLI chat recordings (re-read whole whenever they change)."""

    name = "gemini"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[str]:
        """Return session files (and sub-agent ``.jsonl`` files) under each ``tmp`` dir.

        ``GEMINI_DATA_DIR`` (comma-separated ``tmp`` dirs, as ccusage reads it) wins;
        else ``$GEMINI_CLI_HOME/.gemini/tmp``; else ``~/.gemini/tmp``.
        """
        roots = env_dirs(env, "GEMINI_DATA_DIR", home)
        if not roots:
            cli_home = env_dirs(env, "GEMINI_CLI_HOME", home)
            base = cli_home[0] if cli_home else home
            roots = [base / ".gemini" / "tmp"]
        patterns = ["*/chats/session-*.json", "*/chats/session-*.jsonl", "*/chats/*/*.jsonl"]
        return find_paths(roots, patterns)

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse a whole ``.json`` document or the complete lines of a ``.jsonl`` file."""
        session = _Session(path)
        if path.endswith(".jsonl"):
            consumed = complete_length(data)
            for lineno, record in json_lines(
                data[:consumed], path=path, first_line=1, problems=session.problems
            ):
                session.guarded(lineno, session.record, record)
        else:
            consumed = len(data)
            try:
                document = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                session.problems.append(Problem(path, None, decode_reason(data, exc)))
            else:
                session.guarded(None, session.document, document)
        return ParseResult(
            events=session.events(), problems=session.problems, consumed=consumed, state={}
        )


class _Session:
    """Metadata and messages collected from one recording before events are built."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.session_id: str | None = None
        self.project: str | None = None
        self.messages: list[tuple[int | None, Any]] = []
        self.problems: list[Problem] = []

    def guarded(
        self, lineno: int | None, apply: Callable[[int | None, Any], None], value: Any
    ) -> None:
        """Run ``apply(value)``; any failure becomes a problem at ``lineno``."""
        try:
            apply(lineno, value)
        except InvalidRecordError as exc:
            self.problems.append(Problem(self.path, lineno, str(exc)))
        except Exception as exc:  # a parser never raises; report and go on
            self.problems.append(
                Problem(self.path, lineno, f"unreadable record ({type(exc).__name__})")
            )

    def document(self, lineno: int | None, doc: Any) -> None:
        """A legacy ``.json`` recording: metadata plus a ``messages`` array."""
        self._metadata(mapping(doc, "session file"))
        self._add_messages(lineno, doc.get("messages"))

    def record(self, lineno: int | None, record: Any) -> None:
        """One ``.jsonl`` record: a message, metadata, or an edit that carries no usage."""
        obj = mapping(record, "line")
        if "$rewindTo" in obj or "$patch" in obj:
            return  # edits never carry tokens; rewound responses were still billed
        if "$set" in obj:
            update = mapping(obj["$set"], "$set")
            self._metadata(update)
            self._add_messages(lineno, update.get("messages"))
        elif isinstance(obj.get("id"), str) or "tokens" in obj:
            self.messages.append((lineno, obj))  # an id-less one with tokens is a problem
        elif "sessionId" in obj:
            self._metadata(obj)
            self._add_messages(lineno, obj.get("messages"))

    def _metadata(self, obj: Mapping[str, Any]) -> None:
        self.session_id = self.session_id or text(obj.get("sessionId"))
        directories = obj.get("directories")
        if isinstance(directories, list) and directories and text(directories[0]):
            self.project = directories[0]

    def _add_messages(self, lineno: int | None, messages: Any) -> None:
        if isinstance(messages, list):
            self.messages.extend((lineno, message) for message in messages)

    def events(self) -> list[UsageEvent]:
        """Build one event per Gemini response with tokens, in file order."""
        session = self.session_id or Path(self.path).stem
        events: list[UsageEvent] = []
        for lineno, message in self.messages:
            try:
                event = self._event(session, message)
            except InvalidRecordError as exc:
                self.problems.append(Problem(self.path, lineno, _where(message, str(exc))))
            except Exception as exc:  # a parser never raises; report and go on
                reason = f"unreadable message ({type(exc).__name__})"
                self.problems.append(Problem(self.path, lineno, _where(message, reason)))
            else:
                if event is not None:
                    events.append(event)
        return events

    def _event(self, session: str, message: Any) -> UsageEvent | None:
        if not isinstance(message, dict):
            return None
        tokens = message.get("tokens")
        if tokens is None:
            return None  # not a response, or written before its usage arrived
        fresh, cached, output, reasoning = map_tokens(mapping(tokens, "tokens"))
        if fresh == cached == output == 0:
            return None
        if message.get("type") != "gemini":
            # Gemini CLI records tokens on its own responses only: never drop usage in silence.
            raise InvalidRecordError("tokens on a message that is not a gemini response")
        message_id = text(message.get("id"))
        if message_id is None:
            raise InvalidRecordError("message without id")
        return UsageEvent(
            source="gemini",
            event_key=f"{session}:{message_id}",
            timestamp=timestamp(message.get("timestamp")),
            model=text(message.get("model")) or UNKNOWN_MODEL,
            session_id=session,
            project=self.project,
            input_tokens=fresh,
            cached_input_tokens=cached,
            output_tokens=output,
            reasoning_output_tokens=reasoning,
        )


def _where(message: Any, reason: str) -> str:
    if isinstance(message, dict) and isinstance(message.get("id"), str):
        return f"message {message['id']}: {reason}"
    return reason
