"""Helpers shared by the parser tests: sample locations, scanning, per-day sums."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from usageledger.sources import Problem, SourceParser, UsageEvent, parse_whole, resolve_duplicates

SAMPLES = Path(__file__).parent / "samples"


@dataclass(frozen=True)
class Sums:
    """Token sums in the ledger's fields (docs/design.md §3)."""

    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        """input + cached + output, as UsageEvent.total_tokens."""
        return self.input + self.cached + self.output


def sample_env() -> dict[str, str]:
    """Environment variables pointing every source at the committed samples."""
    return {
        "CODEX_HOME": str(SAMPLES / "codex"),
        "CLAUDE_CONFIG_DIR": str(SAMPLES / "claude"),
        "GEMINI_DATA_DIR": str(SAMPLES / "gemini" / "tmp"),
        "OPENCODE_DATA_DIR": f"{SAMPLES / 'opencode'},{SAMPLES / 'opencode-backup'}",
    }


def parse_path(parser: SourceParser, path: Path) -> tuple[list[UsageEvent], list[Problem]]:
    """Parse one whole file from byte 0."""
    result = parse_whole(parser, path)
    return result.events, result.problems


def scan(
    parser: SourceParser, env: dict[str, str], home: Path
) -> tuple[list[UsageEvent], list[Problem]]:
    """Discover, parse every file whole, and resolve duplicates as the ledger would."""
    events: list[UsageEvent] = []
    problems: list[Problem] = []
    for path in parser.discover(env, home):
        found, bad = parse_path(parser, path)
        events += found
        problems += bad
    return resolve_duplicates(events, parser.duplicate_policy), problems


def by_day(events: list[UsageEvent]) -> dict[str, Sums]:
    """Sum events per UTC day (ISO date string)."""
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for e in events:
        row = days[e.timestamp.date().isoformat()]
        row[0] += e.input_tokens
        row[1] += e.cached_input_tokens
        row[2] += e.output_tokens
        row[3] += e.reasoning_output_tokens
        row[4] += e.cache_write_tokens
    return {day: Sums(*row) for day, row in days.items()}


def total(events: list[UsageEvent]) -> Sums:
    """Sum all events."""
    return Sums(
        sum(e.input_tokens for e in events),
        sum(e.cached_input_tokens for e in events),
        sum(e.output_tokens for e in events),
        sum(e.reasoning_output_tokens for e in events),
        sum(e.cache_write_tokens for e in events),
    )


def jsonl(*records: Any) -> bytes:
    """Encode records as newline-terminated JSON lines."""
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def parse_in_two(
    parser: SourceParser, data: bytes, path: str, cut: int
) -> tuple[list[UsageEvent], list[Problem], int]:
    """Parse ``data[:cut]``, then the rest from the returned cursor and stored state.

    The state goes through JSON on the way, as the scanner stores it.
    """
    first = parser.parse(data[:cut], path=path, state=None)
    state = orjson.loads(orjson.dumps(first.state))
    second = parser.parse(data[first.consumed :], path=path, state=state)
    return (
        first.events + second.events,
        first.problems + second.problems,
        first.consumed + second.consumed,
    )
