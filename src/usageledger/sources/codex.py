"""Codex CLI: ``rollout-*.jsonl`` session logs under ``$CODEX_HOME`` (default ``~/.codex``).

Usage comes from ``event_msg`` lines whose payload type is ``token_count``. Codex writes
cumulative totals (``info.total_token_usage``) and the last request's usage
(``info.last_token_usage``); it re-emits events with unchanged totals, and forked or
sub-agent sessions replay the parent's events into their own file. The event key is
therefore built from the usage vectors themselves, never from the file, so every copy of
one request collapses to one ledger row. See docs/sources.md for the full rules.

The same ``token_count`` payloads carry OpenAI's rate-limit windows (``rate_limits``: a
``primary`` and a ``secondary`` window, each with ``used_percent``, ``window_minutes`` and a
reset time, ``resets_at`` in epoch seconds or, in older rollouts, ``resets_in_seconds`` from
the event). They are returned as :class:`LimitObservation` at the event's time, as written;
a malformed window is skipped (it is no usage, so nothing is lost from the ledger's counts).

Fast mode: Codex's Fast service tier is OpenAI's priority processing, billed at its own rates.
Codex records the thread's tier in ``event_msg`` lines of type ``thread_settings_applied``
(``payload.thread_settings.service_tier``: ``"fast"`` or ``"priority"``), written at the head
of a rollout and again whenever the user changes a setting; it holds for every later request
of the file until the next such line.

Web searches: each server-side search the model ran is a ``response_item`` of type
``web_search_call``, written before the ``token_count`` of the request that ran it; the
searches since the last counted request are that request's ``web_search_requests``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from usageledger.sources._common import (
    InvalidRecordError,
    complete_length,
    count,
    each_record,
    env_dirs,
    find_paths,
    line_state,
    mapping,
    text,
    timestamp,
)
from usageledger.sources.base import LimitObservation, ParseResult, Problem, UsageEvent

#: (input incl. cached, cached input, output incl. reasoning, reasoning), as Codex counts.
Usage = tuple[int, int, int, int]

_SESSION_IN_NAME = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$", re.IGNORECASE
)
UNKNOWN_MODEL = "unknown"
#: ``service_tier`` values that mean priority processing (Codex's "Fast").
FAST_TIERS = frozenset({"fast", "priority"})
#: Usage keys that, found on a ``token_count`` payload without ``info``, mean usage is there.
_OUTSIDE_INFO = ("input_tokens", "output_tokens", "total_token_usage", "last_token_usage")


def _usage(value: Any, name: str) -> Usage | None:
    """Read one Codex usage object; None when absent."""
    if value is None:
        return None
    obj = mapping(value, name)
    return (
        count(obj, "input_tokens", required=True, label=f"{name}.input_tokens"),
        count(obj, "cached_input_tokens", label=f"{name}.cached_input_tokens"),
        count(obj, "output_tokens", required=True, label=f"{name}.output_tokens"),
        count(obj, "reasoning_output_tokens", label=f"{name}.reasoning_output_tokens"),
    )


def _vector(usage: Usage) -> str:
    return ".".join(str(n) for n in usage)


def _usage_state(value: Any) -> Usage | None:
    if (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    ):
        return (value[0], value[1], value[2], value[3])
    return None


class CodexParser:
    """Parser for Codex CLI rollout logs (append-only JSON lines)."""

    name = "codex"
    incremental = True
    duplicate_policy = "first"

    def reader(self, **fields: Any) -> _Reader:
        """The line reader of one file; a Codex fork (every-code) returns its own subclass."""
        return _Reader(source=self.name, **fields)

    def discover(self, env: Mapping[str, str], home: Path) -> list[str]:
        """Return ``sessions/**/rollout-*.jsonl`` and ``archived_sessions/`` files per home."""
        roots = env_dirs(env, "CODEX_HOME", home) or [home / ".codex"]
        dirs = [root / sub for root in roots for sub in ("sessions", "archived_sessions")]
        return find_paths(dirs, ["rollout-*.jsonl", "*/rollout-*.jsonl"])

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` carries model, session and totals."""
        st: dict[str, Any] = dict(state or {})
        session = text(st.get("session_id"))
        if session is None:
            found = _SESSION_IN_NAME.search(path)
            session = found.group(1) if found else Path(path).stem
        reader = self.reader(
            path=path,
            model=text(st.get("model")),
            session=session,
            project=text(st.get("project")),
            meta_seen=st.get("meta") is True,
            totals=_usage_state(st.get("totals")),
            fast=st.get("fast") is True,
            searches=_searches_state(st.get("searches")),
        )
        end = complete_length(data)
        first = line_state(st) + 1
        each_record(
            data[:end], path=path, first_line=first, problems=reader.problems, handle=reader.line
        )
        lines = data.count(b"\n", 0, end)
        return ParseResult(
            events=reader.events,
            problems=reader.problems,
            consumed=end,
            limits=reader.limits,
            state={
                "line": first - 1 + lines,
                "model": reader.model,
                "session_id": reader.session,
                "project": reader.project,
                "meta": reader.meta_seen,
                "totals": list(reader.totals) if reader.totals is not None else None,
                "fast": reader.fast,
                "searches": reader.searches,
            },
        )


class _Reader:
    """The running state of one rollout file while its lines are read in order."""

    def __init__(
        self,
        *,
        source: str,
        path: str,
        model: str | None,
        session: str,
        project: str | None,
        meta_seen: bool,
        totals: Usage | None,
        fast: bool = False,
        searches: int = 0,
    ) -> None:
        self.source = source
        self.path = path
        self.model = model
        self.session = session
        self.project = project
        self.meta_seen = meta_seen
        self.totals = totals
        #: The thread's service tier is Fast (priority processing), as last applied.
        self.fast = fast
        #: Web searches (``web_search_call`` items) not yet given to a request.
        self.searches = searches
        self.events: list[UsageEvent] = []
        self.problems: list[Problem] = []
        self.limits: list[LimitObservation] = []

    def line(self, lineno: int, obj: Any) -> None:
        """Apply one JSON line: metadata updates state, ``token_count`` may emit an event."""
        if not isinstance(obj, dict):
            raise InvalidRecordError("line is not a JSON object")
        kind = obj.get("type")
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            return
        if kind == "session_meta":
            # A forked file holds its own session_meta first, then its parent's: keep the first.
            if not self.meta_seen:
                self.meta_seen = True
                self.session = text(payload.get("id")) or self.session
                self.project = text(payload.get("cwd")) or self.project
            self.model = self.model or text(payload.get("model"))
        elif kind == "turn_context":
            self.model = text(payload.get("model")) or self.model
            self.project = self.project or text(payload.get("cwd"))
        elif kind == "response_item" and payload.get("type") == "web_search_call":
            self.searches += 1
        elif kind == "event_msg" and payload.get("type") == "token_count":
            self._token_count(lineno, obj, payload)
        elif kind == "event_msg" and payload.get("type") == "thread_settings_applied":
            settings = payload.get("thread_settings")
            tier = settings.get("service_tier") if isinstance(settings, dict) else None
            self.fast = isinstance(tier, str) and tier.strip().lower() in FAST_TIERS

    def _token_count(self, lineno: int, obj: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
        self.limits.extend(rate_limits(self.source, obj.get("timestamp"), payload))
        info = payload.get("info")
        if info is None:
            if any(key in payload for key in _OUTSIDE_INFO):
                # Not a shape Codex writes today, and not knowably cumulative or per request:
                # reported rather than guessed at or dropped in silence.
                raise InvalidRecordError("token_count with usage outside info (not counted)")
            return  # a rate-limit-only refresh
        info = mapping(info, "info")
        total = _usage(info.get("total_token_usage"), "total_token_usage")
        last = _usage(info.get("last_token_usage"), "last_token_usage")
        previous = self.totals
        if total is not None:
            if previous is not None and total == previous:
                return  # a re-emit: the cumulative totals did not move
            self.totals = total
            reset = previous is not None and any(
                t < p for t, p in zip(total, previous, strict=True)
            )
            if last is not None:
                delta = last
            elif previous is None or reset:
                delta = total  # a counter that restarted counts from zero
            else:
                delta = (
                    total[0] - previous[0],
                    total[1] - previous[1],
                    total[2] - previous[2],
                    total[3] - previous[3],
                )
            key = f"t{_vector(total)}/" + (f"l{_vector(last)}" if last is not None else "-")
        elif last is not None:
            # Without cumulative totals there is nothing content-based but the request itself.
            delta = last
            key = f"{self.session}@{obj.get('timestamp')}/l{_vector(last)}"
        else:
            raise InvalidRecordError("token_count without usage")
        self._emit(lineno, obj, delta, key, text(info.get("model")))

    def _emit(
        self, lineno: int, obj: Mapping[str, Any], delta: Usage, key: str, model: str | None
    ) -> None:
        """Add one request's usage; ``model`` is the event's own ``info.model``, if any."""
        fresh, cached, output, reasoning = delta
        if fresh == cached == output == reasoning == 0:
            return
        if cached > fresh:
            raise InvalidRecordError("cached_input_tokens exceeds input_tokens")
        if reasoning > output:
            raise InvalidRecordError("reasoning_output_tokens exceeds output_tokens")
        when = timestamp(obj.get("timestamp"))
        searches, self.searches = self.searches, 0
        self.events.append(
            UsageEvent(
                source=self.source,
                event_key=key,
                timestamp=when,
                model=model or self.model or UNKNOWN_MODEL,
                session_id=self.session,
                project=self.project,
                input_tokens=fresh - cached,
                cached_input_tokens=cached,
                output_tokens=output,
                reasoning_output_tokens=reasoning,
                fast=self.fast,
                web_search_requests=searches,
            )
        )


def _searches_state(value: Any) -> int:
    """The pending web-search count kept in the parser state (0 when absent or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


#: The windows a Codex ``rate_limits`` object holds, in the order they are read.
LIMIT_WINDOWS = ("primary", "secondary")


def rate_limits(source: str, when: Any, payload: Mapping[str, Any]) -> list[LimitObservation]:
    """The rate-limit windows of one ``token_count`` payload, observed at ``when``.

    A window without a finite ``used_percent`` is skipped, as is every window of an event
    whose time cannot be read. A ``limit_id`` other than Codex's own (``codex``) is part of
    the window's name (``<limit_id>/primary``), so two limits never share a window.
    """
    limits = payload.get("rate_limits")
    if not isinstance(limits, dict):
        return []
    try:
        observed = timestamp(when)
    except InvalidRecordError:
        return []
    limit_id = text(limits.get("limit_id"))
    out: list[LimitObservation] = []
    for name in LIMIT_WINDOWS:
        window = limits.get(name)
        if not isinstance(window, dict):
            continue
        used = _number(window.get("used_percent"))
        if used is None:
            continue
        minutes = _number(window.get("window_minutes"))
        out.append(
            LimitObservation(
                source=source,
                window=name if limit_id in (None, "codex") else f"{limit_id}/{name}",
                observed_at=observed,
                used_percent=used,
                window_minutes=int(minutes) if minutes is not None and minutes > 0 else None,
                resets_at=_reset_time(window, observed),
                limit_id=limit_id,
            )
        )
    return out


def _number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _reset_time(window: Mapping[str, Any], observed: datetime) -> datetime | None:
    """``resets_at`` (epoch seconds), else ``resets_in_seconds`` after the observation."""
    try:
        at = _number(window.get("resets_at"))
        if at is not None and at > 0:
            return datetime.fromtimestamp(at, tz=observed.tzinfo)
        after = _number(window.get("resets_in_seconds"))
        if after is not None and after >= 0:
            return observed + timedelta(seconds=after)
    except (OverflowError, OSError, ValueError):
        return None
    return None
