"""The one small interface every assistant-log parser implements.

A parser is pure: bytes in, usage events and problems out. It never raises on bad
input, never touches the ledger, and never keeps prompt or reply text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One assistant response's token usage, in the ledger's token semantics (docs/design.md §3).

    ``event_key`` is the natural key: the same assistant event seen in two files (a fork,
    an archived copy, a streaming re-write) yields the same key, so the ledger stores it once.
    """

    source: str
    event_key: str
    timestamp: datetime  # timezone-aware, UTC
    model: str
    session_id: str
    project: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_output_tokens: int = 0
    cache_write_tokens: int = 0
    #: The part of ``cache_write_tokens`` written to a one-hour cache (the rest is five-minute).
    cache_write_1h_tokens: int = 0
    #: True when the request ran in fast mode or priority processing (billed at those rates).
    fast: bool = False
    #: Server-side web searches the request made (billed per 1,000 searches, not per token).
    web_search_requests: int = 0
    #: The cost the log itself recorded for this response, in pico-dollars (1e-12 USD); None
    #: when it recorded none (see ``sources._cost`` and docs/pricing.md, "Logged costs").
    logged_cost_picousd: int | None = None

    @property
    def total_tokens(self) -> int:
        """Additive total: input + cached input + output."""
        return self.input_tokens + self.cached_input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Problem:
    """A file or line a parser could not read, and why (shown to the user, never fatal)."""

    path: str
    line: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class LimitObservation:
    """A vendor's own rate-limit window as an assistant recorded it at one moment.

    Shown as observed, never estimated: ``used_percent`` is the vendor's figure, ``resets_at``
    the vendor's reset time (None when it did not say). ``window`` names the window within the
    source (Codex: ``primary``/``secondary``; Claude: ``five_hour``/``seven_day``).
    """

    source: str
    window: str
    observed_at: datetime  # timezone-aware, UTC
    used_percent: float
    window_minutes: int | None = None
    resets_at: datetime | None = None
    limit_id: str | None = None


@dataclass(slots=True)
class ParseResult:
    """What one call to ``SourceParser.parse`` produced.

    ``consumed`` is the number of bytes of ``data`` that were complete (up to and including
    the last newline for line formats); the scanner moves its cursor by exactly that much.
    ``state`` is a JSON-serialisable dict the scanner stores with the cursor and passes back
    on the next call for the same file (e.g. the current model or the last cumulative totals).
    """

    events: list[UsageEvent] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    consumed: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    #: Rate-limit windows the log recorded (Codex's ``token_count`` events); most parsers
    #: have none.
    limits: list[LimitObservation] = field(default_factory=list)


class SourceParser(Protocol):
    """A source of usage events: where its files live and how to read them."""

    name: str
    #: True for append-only line formats (read from the cursor on); False for files that are
    #: rewritten whole (always re-read from byte 0 when they change).
    incremental: bool
    #: How the ledger resolves two copies of one event_key: "max" keeps the copy with more
    #: tokens, "last" keeps the most recently read copy, "first" keeps the first.
    duplicate_policy: str

    def discover(self, env: Mapping[str, str], home: Path) -> Sequence[str | Path]:
        """Return every log file of this source, in a stable order (paths as ``str`` are
        cheaper: a rescan of a long history looks at every file)."""
        ...

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse ``data`` (the file from the cursor on) into events; never raise."""
        ...
