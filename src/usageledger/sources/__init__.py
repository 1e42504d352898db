"""Pure parsers for the assistants' local logs, one module per source (see docs/sources.md).

``PARSERS`` maps a source name to its parser; ``resolve_duplicates`` applies a parser's
``duplicate_policy`` to events the way the ledger does, for reports and comparisons that
work on parser output directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from usageledger.sources.amp import AmpParser
from usageledger.sources.base import (
    LimitObservation,
    ParseResult,
    Problem,
    SourceParser,
    UsageEvent,
)
from usageledger.sources.claude import ClaudeParser
from usageledger.sources.cline import cline_parsers
from usageledger.sources.codex import CodexParser
from usageledger.sources.copilot import CopilotParser
from usageledger.sources.droid import DroidParser
from usageledger.sources.every_code import EveryCodeParser
from usageledger.sources.gemini import GeminiParser
from usageledger.sources.goose import GooseParser
from usageledger.sources.hermes import HermesParser
from usageledger.sources.kilo import KiloParser
from usageledger.sources.kimi import KimiParser
from usageledger.sources.openclaw import OpenClawParser
from usageledger.sources.opencode import OpencodeParser
from usageledger.sources.pi import PiParser
from usageledger.sources.qwen import QwenParser

__all__ = [
    "PARSERS",
    "LimitObservation",
    "ParseResult",
    "Problem",
    "SourceParser",
    "UsageEvent",
    "database_reader",
    "get_parser",
    "is_database",
    "parse_whole",
    "resolve_duplicates",
]

PARSERS: dict[str, SourceParser] = {
    parser.name: parser
    for parser in (
        CodexParser(),
        ClaudeParser(),
        GeminiParser(),
        OpencodeParser(),
        QwenParser(),
        KimiParser(),
        KiloParser(),
        DroidParser(),
        HermesParser(),
        GooseParser(),
        PiParser(),
        OpenClawParser(),
        *cline_parsers(),
        CopilotParser(),
        AmpParser(),
        EveryCodeParser(),
    )
}

POLICIES = ("first", "last", "max")


def get_parser(name: str) -> SourceParser:
    """Return the parser registered as ``name``; a ``KeyError`` lists the known names."""
    try:
        return PARSERS[name]
    except KeyError:
        known = ", ".join(sorted(PARSERS))
        raise KeyError(f"unknown source {name!r} (known: {known})") from None


def resolve_duplicates(events: Iterable[UsageEvent], policy: str) -> list[UsageEvent]:
    """Keep one event per ``(source, event_key)`` by ``policy``, in first-seen order.

    "first" keeps the first copy, "last" the last one, "max" the copy with the largest
    ``total_tokens`` (then ``output_tokens``; a tie keeps the earlier copy).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown duplicate policy {policy!r} (known: {', '.join(POLICIES)})")
    kept: dict[tuple[str, str], UsageEvent] = {}
    for event in events:
        key = (event.source, event.event_key)
        current = kept.get(key)
        larger = current is not None and _size(event) > _size(current)
        if current is None or policy == "last" or (policy == "max" and larger):
            kept[key] = event
    return list(kept.values())


def _size(event: UsageEvent) -> tuple[int, int]:
    return event.total_tokens, event.output_tokens


def is_database(path: str | Path) -> bool:
    """True for a SQLite database (opencode's), which its parser reads with SQL: a name with
    the suffix ``.db`` (as ``Path.suffix`` has it, so a file named just ``.db`` is not one)."""
    name = os.path.basename(path)
    return name.endswith(".db") and len(name) > 3


def database_reader(
    parser: SourceParser, path: str | Path
) -> Callable[[str], Iterable[ParseResult]] | None:
    """The parser's ``read_database`` (pages of results) when ``path`` is a database it reads."""
    reader: Callable[[str], Iterable[ParseResult]] | None = getattr(parser, "read_database", None)
    return reader if reader is not None and is_database(path) else None


def parse_whole(parser: SourceParser, path: str | Path) -> ParseResult:
    """Parse one discovered file from its start: a database with SQL, other files' bytes.

    May raise ``OSError`` (a file or database that cannot be read now).
    """
    reader = database_reader(parser, path)
    if reader is None:
        with open(path, "rb") as handle:
            return parser.parse(handle.read(), path=str(path), state=None)
    whole = ParseResult()
    for page in reader(str(path)):
        whole.events += page.events
        whole.problems += page.problems
    return whole
