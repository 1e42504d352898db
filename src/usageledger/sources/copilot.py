"""GitHub Copilot CLI: ``session-state/<sessionId>/events.jsonl`` under ``~/.copilot``.

Copilot records no per-request usage. When a CLI process exits it appends one
``session.shutdown`` event whose ``data.modelMetrics`` maps each model to the usage of THAT
process (``usage.inputTokens``, ``outputTokens``, ``cacheReadTokens``, ``cacheWriteTokens``,
``reasoningTokens``). Resuming a session starts a new process that appends its own shutdown
to the same file, counting from zero again: the shutdowns of one file are summed, never
differenced. Each (shutdown, model) pair is one event, keyed by the session, the shutdown's
own ``id`` (else its timestamp) and the model, so re-reading the file counts nothing twice.

``inputTokens`` includes both the cache reads and the cache writes; ``outputTokens``
includes reasoning except for Gemini models, whose ``reasoningTokens`` come on top.

Newer CLI builds also record ``modelMetrics[model].totalNanoAiu``, GitHub's own metering of the
model's usage in billionths of an AI credit (1 credit = $0.01): it is kept as the event's logged
cost, 0 included (a model the plan includes is metered at 0), up to $100,000 (a process's
total, not one response's). ``requests.cost`` (premium requests) is not money and is not
read. See docs/sources.md.
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
from usageledger.sources._cost import MAX_LOGGED_PROCESS_USD, PICO_PER_NANO_AIU, logged_pico
from usageledger.sources.base import ParseResult, Problem, UsageEvent

UNKNOWN_MODEL = "unknown"


def map_usage(model: str, usage: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Map one ``modelMetrics[model].usage`` to (input, cached, output, reasoning, cache write).

    ``inputTokens`` includes the cache reads and writes, so input = inputTokens − cacheRead
    (the writes stay in input, as our input includes them). Reasoning is part of
    ``outputTokens`` except for Gemini models, where it is reported apart and added.
    """
    prompt = count(usage, "inputTokens", label="usage.inputTokens")
    output = count(usage, "outputTokens", label="usage.outputTokens")
    read = count(usage, "cacheReadTokens", label="usage.cacheReadTokens")
    write = count(usage, "cacheWriteTokens", label="usage.cacheWriteTokens")
    reasoning = count(usage, "reasoningTokens", label="usage.reasoningTokens")
    if read + write > prompt:
        raise InvalidRecordError("cacheReadTokens + cacheWriteTokens exceed inputTokens")
    if model.lower().startswith("gemini"):
        output += reasoning
    elif reasoning > output:
        raise InvalidRecordError("reasoningTokens exceed outputTokens")
    return prompt - read, read, output, reasoning, write


class CopilotParser:
    """Parser for GitHub Copilot CLI session event logs (append-only JSON lines)."""

    name = "copilot"
    incremental = True
    duplicate_policy = "first"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return ``session-state/*/events.jsonl`` under each Copilot home.

        ``COPILOT_CONFIG_DIR`` (comma-separated; the variable ccusage reads) wins, else
        ``COPILOT_HOME`` (the CLI's own), else ``~/.copilot`` (the same on macOS).
        """
        roots = env_dirs(env, "COPILOT_CONFIG_DIR", home) or env_dirs(env, "COPILOT_HOME", home)
        states = [root / "session-state" for root in roots or [home / ".copilot"]]
        found = find_files(states, ["*/events.jsonl"])
        # ``*`` crosses ``/``: keep only session-state/<sessionId>/events.jsonl itself.
        return [path for path in found if path.parent.parent in states]

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` carries the session id and project."""
        st = dict(state or {})
        reader = _Reader(
            path=path,
            session=text(st.get("session_id")) or Path(path).parent.name or Path(path).stem,
            project=text(st.get("project")),
        )
        end = complete_length(data)
        first = line_state(st) + 1
        each_record(
            data[:end], path=path, first_line=first, problems=reader.problems, handle=reader.line
        )
        return ParseResult(
            events=reader.events,
            problems=reader.problems,
            consumed=end,
            state={
                "line": first - 1 + data.count(b"\n", 0, end),
                "session_id": reader.session,
                "project": reader.project,
            },
        )


class _Reader:
    """The running state of one events.jsonl while its lines are read in order."""

    def __init__(self, *, path: str, session: str, project: str | None) -> None:
        self.path = path
        self.session = session
        self.project = project
        self.events: list[UsageEvent] = []
        self.problems: list[Problem] = []

    def line(self, lineno: int, obj: Any) -> None:
        """Apply one event: ``session.start`` names the session, a shutdown emits usage."""
        record = mapping(obj, "line")
        kind = record.get("type")
        data = record.get("data")
        if not isinstance(data, dict):
            return
        if kind == "session.start":
            self.session = text(data.get("sessionId")) or self.session
            context = data.get("context")
            if isinstance(context, dict):
                self.project = text(context.get("cwd")) or self.project
        elif kind == "session.shutdown":
            self._shutdown(lineno, record, data)

    def _shutdown(self, lineno: int, record: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        metrics = data.get("modelMetrics")
        if metrics is None:
            if data.get("tokenDetails"):
                # Session-wide totals without the per-model split: not priced, so reported.
                raise InvalidRecordError("session.shutdown with tokenDetails only (not counted)")
            return  # a shutdown of a process that made no request
        metrics = mapping(metrics, "data.modelMetrics")
        when = timestamp(record.get("timestamp"))
        # The shutdown's own id names this process's snapshot; its timestamp stands in for it.
        snapshot = text(record.get("id")) or f"@{record.get('timestamp')}"
        for model, entry in metrics.items():
            try:
                self._model(model, entry, when, snapshot)
            except InvalidRecordError as exc:
                self.problems.append(Problem(self.path, lineno, f"model {model}: {exc}"))

    def _model(self, model: str, entry: Any, when: Any, snapshot: str) -> None:
        metrics = mapping(entry, "model metrics")
        usage = metrics.get("usage")
        if usage is None:
            return  # request counts without token usage
        fresh, cached, output, reasoning, write = map_usage(model, mapping(usage, "usage"))
        if fresh == cached == output == 0:
            return
        self.events.append(
            UsageEvent(
                source="copilot",
                event_key=f"{self.session}:{snapshot}:{model}",
                timestamp=when,
                model=model or UNKNOWN_MODEL,
                session_id=self.session,
                project=self.project,
                input_tokens=fresh,
                cached_input_tokens=cached,
                output_tokens=output,
                reasoning_output_tokens=reasoning,
                cache_write_tokens=write,
                logged_cost_picousd=logged_pico(
                    metrics.get("totalNanoAiu"),
                    PICO_PER_NANO_AIU,
                    zero_is_cost=True,  # GitHub's metering: 0 is what it billed
                    max_usd=MAX_LOGGED_PROCESS_USD,  # a process's total for the model
                ),
            )
        )
