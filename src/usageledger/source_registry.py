"""The registry of known usage sources, with the note on how each maps to our token fields.

Ingest accepts a bucket only for a registered source (docs/design.md §4). An operator adds a
source with ``USAGELEDGER_EXTRA_SOURCES=name,…``; its buckets must already follow the token
semantics of docs/design.md §3.
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
    "qwen": "Qwen Code: input = promptTokenCount - cachedContentTokenCount (+ tool-use prompt); "
    "output = candidates + thoughts (unless candidates already hold them).",
    "kimi": "Kimi CLI / Kimi Code: input = input_other + input_cache_creation; "
    "cached = input_cache_read; largest (final) StatusUpdate snapshot per message_id, or one "
    "event per usage.record.",
    "kilo": "Kilo CLI (opencode-shaped): input = input + cache.write; cached = cache.read; "
    "output = output + reasoning.",
    "droid": "Factory Droid (per-session total): input = inputTokens + cacheCreationTokens; "
    "cached = cacheReadTokens; output = outputTokens + thinkingTokens.",
    "hermes": "Hermes Agent (per-session total): input = input_tokens + cache_write_tokens; "
    "cached = cache_read_tokens; output = output_tokens (reasoning inside).",
    "goose": "Goose (per-session accumulated_* total): input = input - cache_read; "
    "output = total - input (reasoning = total - input - output).",
    "pi": "pi-agent: input = input + cacheWrite (pi's input is net of both caches); "
    "cached = cacheRead; cache_write = cacheWrite.",
    "openclaw": "OpenClaw (pi's format): input = input + cacheWrite; cached = cacheRead; "
    "cache_write = cacheWrite.",
    "cline": "Cline: input = tokensIn + cacheWrites (tokensIn - cacheReads when tokensIn "
    "holds the whole prompt); cached = cacheReads; cache_write = cacheWrites.",
    "roo-code": "Roo Code (Cline's format): as cline; tokensIn holds the whole prompt for "
    "OpenAI-protocol requests and for all requests from 2025-11-01.",
    "kilo-code": "Kilo Code (Cline's format): as cline; tokensIn holds the whole prompt for "
    "OpenAI-protocol requests and for all requests from 2025-11-12.",
    "copilot": "GitHub Copilot CLI (per-process session.shutdown, summed): input = inputTokens "
    "- cacheReadTokens; cached = cacheReadTokens; cache_write = cacheWriteTokens; "
    "output = outputTokens (+ reasoningTokens for Gemini models).",
    "amp": "Amp: input = inputTokens + cacheCreationInputTokens; cached = cacheReadInputTokens; "
    "one of messages[].usage or the legacy usageLedger per thread.",
    "every-code": "Every Code (Codex fork, token_count in payload.msg): as codex, "
    "input = input - cached.",
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
