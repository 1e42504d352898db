"""The registry of known usage sources, with the note on how each maps to our token fields.

Ingest accepts a bucket only for a registered source (DESIGN §4). An operator adds a source
with ``USAGELEDGER_EXTRA_SOURCES=name,…``; its buckets must already follow DESIGN §3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: name → how that assistant's counts map to ours (the parser beside it does the mapping).
KNOWN_SOURCES: dict[str, str] = {
    "codex": "Codex CLI: input_tokens includes cached input, so input = input - cached.",
    "claude": "Claude Code: input = input + cache_creation; cached = cache_read; "
    "cache_write = cache_creation.",
    "gemini": "Gemini CLI: thoughts are output (reasoning), tool-use prompt tokens are input.",
    "opencode": "Opencode: input = input + cache.write; cached = cache.read; "
    "output = output + reasoning.",
}

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class SourceRegistry:
    """The set of sources a server accepts: the built-in ones plus the operator's."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        extra = list(extra)
        bad = [name for name in extra if not SOURCE_NAME.match(name)]
        if bad:
            raise ValueError(
                f"invalid source name(s) {bad}: use 1-32 of a-z, 0-9, '_' or '-', "
                "starting with a letter"
            )
        self.names = frozenset(KNOWN_SOURCES) | frozenset(extra)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def unknown_message(self, name: str) -> str:
        """The error message for an unregistered source, saying how to register it."""
        return (
            f"unknown source {name!r}; known sources: {', '.join(sorted(self.names))}. "
            "An operator can register another with USAGELEDGER_EXTRA_SOURCES=name"
        )
