"""Amp: one ``threads/T-*.json`` document per thread under ``$AMP_DATA_DIR``.

Amp rewrites the whole thread file as it changes. Current versions record usage on each
assistant message (``messages[].usage``: ``inputTokens``, ``outputTokens``,
``cacheCreationInputTokens``, ``cacheReadInputTokens``, ``model``, ``timestamp``); older
versions also kept a ``usageLedger.events[]`` list (``tokens.input``, ``tokens.output``,
``model``, ``timestamp``, ``toMessageId`` naming the message it paid for). Both describe the
same requests, so per thread exactly ONE of them is counted:

- the messages, when every ledger event with tokens names (``toMessageId``) an assistant
  message that carries usage: they cover the whole ledger and add the cache split;
- otherwise the ledger (its events, cache reads and writes taken from the linked message);
  a message usage no ledger event names is then reported, not counted.

A message and the ledger event naming it share one event key (thread id and message id),
so a thread whose winner changes between two reads still counts each request once.

The ledger events' ``credits`` are not read as a logged cost: no published rate converts them
to US dollars (Amp's documentation shows balances in dollars but does not define the unit of a
thread's ``credits``; ccusage's Amp adapter shows them beside its token-priced USD, never
converted), and only the older ledger format carries them. Amp's responses are priced from
their tokens. See docs/sources.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
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
#: (input without cache, cache creation, cache read, output), as Amp counts them.
Counts = tuple[int, int, int, int]


def message_counts(usage: Mapping[str, Any]) -> Counts:
    """Read an assistant message's ``usage`` (Anthropic-style: input excludes the cache)."""
    counts = (
        count(usage, "inputTokens", label="usage.inputTokens"),
        count(usage, "cacheCreationInputTokens", label="usage.cacheCreationInputTokens"),
        count(usage, "cacheReadInputTokens", label="usage.cacheReadInputTokens"),
        count(usage, "outputTokens", label="usage.outputTokens"),
    )
    if not any(counts) and count(usage, "totalTokens", label="usage.totalTokens"):
        raise InvalidRecordError("totalTokens without its parts (not counted)")
    return counts


def _message_id(message: Mapping[str, Any]) -> str | None:
    value = message.get("messageId")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value)


class AmpParser:
    """Parser for Amp thread files (re-read whole whenever they change)."""

    name = "amp"
    incremental = False
    duplicate_policy = "last"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Return ``threads/T-*.json`` under each data directory.

        ``AMP_DATA_DIR`` (comma-separated, as ccusage reads it) wins, else
        ``~/.local/share/amp`` (Amp uses the same path on macOS).
        """
        roots = env_dirs(env, "AMP_DATA_DIR", home) or [home / ".local" / "share" / "amp"]
        threads = [root / "threads" for root in roots]
        # ``*`` crosses ``/``: keep only files directly in a threads directory.
        return [path for path in find_files(threads, ["T-*.json"]) if path.parent in threads]

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse one whole thread document."""
        thread = _Thread(path)
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            thread.problems.append(Problem(path, None, decode_reason(data, exc)))
        else:
            try:
                thread.read(document)
            except InvalidRecordError as exc:
                thread.problems.append(Problem(path, None, str(exc)))
            except Exception as exc:  # a parser never raises; report and go on
                reason = f"unreadable thread ({type(exc).__name__})"
                thread.problems.append(Problem(path, None, reason))
        return ParseResult(
            events=thread.events, problems=thread.problems, consumed=len(data), state={}
        )


class _Thread:
    """One thread document while its winner is chosen and its events built."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.thread_id = Path(path).stem
        self.created: Any = None
        self.events: list[UsageEvent] = []
        self.problems: list[Problem] = []

    def read(self, document: Any) -> None:
        """Pick the messages or the ledger for this thread and emit its events."""
        doc = mapping(document, "thread file")
        self.thread_id = text(doc.get("id")) or self.thread_id
        self.created = doc.get("created")
        messages = self._usage_messages(doc.get("messages"))
        ledger = doc.get("usageLedger")
        events = mapping(ledger, "usageLedger").get("events") if ledger is not None else None
        entries = events if isinstance(events, list) else []
        paid = [e for e in entries if isinstance(e, dict) and _has_tokens(e)]
        linked = {_link(e) for e in paid}
        if all(link is not None and link in messages for link in linked):
            for key, (_, message) in messages.items():
                self._guarded(f"message {key}", partial(self._from_message, key, message))
            return
        for index, event in enumerate(entries):
            label = f"usageLedger event {index}"
            self._guarded(label, partial(self._from_ledger, index, event, messages))
        for key in messages:
            if key not in linked:
                self._problem(f"message {key}: usage not in the thread's usageLedger (not counted)")

    def _usage_messages(self, value: Any) -> dict[str, tuple[int, Mapping[str, Any]]]:
        """Assistant messages with usage, by message id (else by position)."""
        found: dict[str, tuple[int, Mapping[str, Any]]] = {}
        for index, message in enumerate(value if isinstance(value, list) else []):
            if not isinstance(message, dict) or message.get("usage") is None:
                continue
            key = _message_id(message) or f"#{index}"
            if message.get("role") != "assistant":
                self._problem(f"message {key}: usage on a message that is not the assistant's")
                continue
            found[key] = (index, message)
        return found

    def _from_message(self, key: str, message: Mapping[str, Any]) -> None:
        usage = mapping(message.get("usage"), "usage")
        counts = message_counts(usage)
        when = self._when(usage.get("timestamp"), message.get("timestamp"))
        model = text(usage.get("model")) or text(message.get("model"))
        self._emit(key, when, model, counts)

    def _from_ledger(
        self, index: int, event: Any, messages: Mapping[str, tuple[int, Mapping[str, Any]]]
    ) -> None:
        entry = mapping(event, "usageLedger event")
        tokens = entry.get("tokens")
        if tokens is None:
            return
        tokens = mapping(tokens, "tokens")
        fresh = count(tokens, "input", label="tokens.input")
        output = count(tokens, "output", label="tokens.output")
        if fresh == output == 0 and count(tokens, "total", label="tokens.total"):
            raise InvalidRecordError("tokens.total without its parts (not counted)")
        link = _link(entry)
        write = read = 0
        usage: Mapping[str, Any] = {}
        if link is not None and link in messages:
            usage = mapping(messages[link][1].get("usage"), "usage")
            _, write, read, _ = message_counts(usage)
        key = link if link is not None else f"ledger:{text(entry.get('id')) or index}"
        when = self._when(entry.get("timestamp"), usage.get("timestamp"))
        self._emit(key, when, text(entry.get("model")), (fresh, write, read, output))

    def _when(self, *candidates: Any) -> datetime:
        """The first recorded time; else the thread's creation (epoch ms)."""
        for value in (*candidates, self.created):
            if value is not None:
                return timestamp(value)
        raise InvalidRecordError("missing timestamp")

    def _emit(self, key: str, when: datetime, model: str | None, counts: Counts) -> None:
        fresh, write, read, output = counts
        if fresh == write == read == output == 0:
            return
        self.events.append(
            UsageEvent(
                source="amp",
                event_key=f"{self.thread_id}:{key}",
                timestamp=when,
                model=model or UNKNOWN_MODEL,
                session_id=self.thread_id,
                project=None,
                input_tokens=fresh + write,
                cached_input_tokens=read,
                output_tokens=output,
                cache_write_tokens=write,
            )
        )

    def _guarded(self, label: str, build: Callable[[], None]) -> None:
        try:
            build()
        except InvalidRecordError as exc:
            self._problem(f"{label}: {exc}")
        except Exception as exc:  # a parser never raises; report and go on
            self._problem(f"{label}: unreadable ({type(exc).__name__})")

    def _problem(self, reason: str) -> None:
        self.problems.append(Problem(self.path, None, reason))


def _has_tokens(event: Mapping[str, Any]) -> bool:
    tokens = event.get("tokens")
    return isinstance(tokens, dict) and any(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in tokens.values()
    )


def _link(event: Mapping[str, Any]) -> str | None:
    """The message id a ledger event paid for (``toMessageId``), as a string."""
    value = event.get("toMessageId")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value)
