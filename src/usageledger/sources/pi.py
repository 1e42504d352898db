"""pi-agent (pi coding agent): ``~/.pi/agent/sessions/**/*.jsonl`` session trees.

A session file starts with a ``{"type": "session", "id", "cwd"}`` header, then one entry per
line (``message``, ``model_change``, ``compaction``, …), each with a short ``id`` and a
``parentId``. An assistant ``message`` carries pi's own ``usage``
``{input, output, cacheRead, cacheWrite, totalTokens, cost}``, where pi's providers store
``input`` NET of both cache reads and cache writes (Anthropic's ``input_tokens``; OpenAI's
``prompt_tokens - cached - cache_write``) and ``totalTokens`` is the sum of the four.
``cost`` is ``{input, output, cacheRead, cacheWrite, total}`` in USD, worked out by pi from its
own model catalog; ``total`` is kept as the response's logged cost (``sources._cost``), except
0, which pi writes for every model its catalog has no price for (not a free response).

Files are appended to, except that pi rewrites an old-version file whole when it opens it
(migrating v1 files gives every entry a NEW random id), and ``/fork`` copies a branch into a
new session file with its entries intact. The event key is therefore built from the response
itself (its own millisecond ``timestamp`` and its four counts), never from the entry id or
the file, so every copy counts once. OpenClaw writes the same format (see ``openclaw.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from usageledger.sources._cost import logged_usd
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"


class SessionReader:
    """The running state of one pi-format session file while its lines are read in order.

    ``model`` and ``session``/``project`` come from earlier lines (a ``model_change``, the
    header), so they are carried in the scanner's state between incremental reads.
    """

    def __init__(self, source: str, path: str, state: Mapping[str, Any], session: str) -> None:
        self.source = source
        self.path = path
        self.model = text(state.get("model"))
        self.session = text(state.get("session_id")) or session
        self.project = text(state.get("project"))
        self.events: list[UsageEvent] = []
        self.problems: list[Problem] = []

    def state(self, line: int) -> dict[str, Any]:
        """What the next incremental read needs to go on where this one stopped."""
        return {
            "line": line,
            "model": self.model,
            "session_id": self.session,
            "project": self.project,
        }

    def read(self, data: bytes, first_line: int) -> None:
        """Apply every complete line of ``data``; a bad line becomes a problem."""
        each_record(
            data,
            path=self.path,
            first_line=first_line,
            problems=self.problems,
            handle=lambda _, obj: self.line(obj),
        )

    def line(self, obj: Any) -> None:
        """One entry: the header and model changes update state, a response may emit."""
        entry = mapping(obj, "line")
        kind = entry.get("type")
        if kind == "session":
            self.session = text(entry.get("id")) or self.session
            self.project = text(entry.get("cwd")) or self.project
        elif kind == "model_change":
            self.model = text(entry.get("modelId")) or self.model
        elif kind in (None, "message"):
            message = entry.get("message")
            if isinstance(message, dict) and message.get("usage") is not None:
                self.message(entry, message)
        else:
            self.other(entry)

    def other(self, entry: Mapping[str, Any]) -> None:
        """Entry types without usage (compaction, labels, custom entries)."""

    def message(self, entry: Mapping[str, Any], message: Mapping[str, Any]) -> None:
        """An entry with ``message.usage``: one event for a response with usage."""
        usage = mapping(message["usage"], "message.usage")
        fresh = count(usage, "input", label="usage.input")
        output = count(usage, "output", label="usage.output")
        read = count(usage, "cacheRead", label="usage.cacheRead")
        write = count(usage, "cacheWrite", label="usage.cacheWrite")
        if fresh == output == read == write == 0:
            if count(usage, "totalTokens", label="usage.totalTokens") > 0:
                # Only a total: it cannot be split into input and output honestly.
                raise InvalidRecordError("usage has totalTokens but no input/output (not counted)")
            return  # an aborted or errored response: nothing was billed
        if message.get("role") != "assistant":
            raise InvalidRecordError("usage on a message that is not an assistant's (not counted)")
        self.check(message)
        when = message.get("timestamp")
        if when is None:
            when = entry.get("timestamp")
        self.events.append(
            UsageEvent(
                source=self.source,
                event_key=f"{when}:{fresh}.{output}.{read}.{write}",
                timestamp=timestamp(when),
                model=self.model_of(message),
                session_id=self.session,
                project=self.project,
                input_tokens=fresh + write,
                cached_input_tokens=read,
                output_tokens=output,
                cache_write_tokens=write,
                logged_cost_picousd=_logged_cost(usage.get("cost")),
            )
        )

    def check(self, message: Mapping[str, Any]) -> None:
        """Reject a response that is not usage of a model (none in pi itself)."""

    def model_of(self, message: Mapping[str, Any]) -> str:
        """The response's own model, else the session's latest ``model_change``."""
        return text(message.get("model")) or self.model or UNKNOWN_MODEL


def _logged_cost(cost: Any) -> int | None:
    """``usage.cost.total`` in pico-dollars; None when absent or not a usable cost."""
    return logged_usd(cost.get("total")) if isinstance(cost, dict) else None


def session_from_name(path: str) -> str:
    """pi names files ``<timestamp>_<session id>.jsonl``: the part after the first ``_``."""
    name = Path(path).name
    stem = name[: name.index(".jsonl")] if ".jsonl" in name else Path(path).stem
    return stem.split("_", 1)[1] if "_" in stem else stem


def parse_lines(reader: SessionReader, data: bytes, state: Mapping[str, Any] | None) -> ParseResult:
    """Read the complete lines of ``data`` with ``reader`` and return the result and state."""
    end = complete_length(data)
    first = line_state(state) + 1
    reader.read(data[:end], first)
    lines = data.count(b"\n", 0, end)
    return ParseResult(
        events=reader.events,
        problems=reader.problems,
        consumed=end,
        state=reader.state(first - 1 + lines),
    )


class PiParser:
    """Parser for pi-agent session files (append-only JSON lines)."""

    name = "pi"
    incremental = True
    duplicate_policy = "first"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Every ``*.jsonl`` under the sessions directories, at any depth.

        ``PI_AGENT_DIR`` (comma-separated sessions directories, as ccusage reads it) wins;
        else pi's own ``PI_CODING_AGENT_DIR`` (its agent directory) + ``/sessions``; else
        ``~/.pi/agent/sessions``.
        """
        roots = env_dirs(env, "PI_AGENT_DIR", home)
        if not roots:
            agent = env_dirs(env, "PI_CODING_AGENT_DIR", home)
            roots = [agent[0] / "sessions"] if agent else [home / ".pi" / "agent" / "sessions"]
        return find_files(roots, ["*.jsonl"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` carries line, model, session, project."""
        reader = SessionReader(self.name, path, state or {}, session_from_name(path))
        return parse_lines(reader, data, state)
