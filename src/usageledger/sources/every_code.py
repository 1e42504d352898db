"""Every Code (a Codex CLI fork): ``rollout-*.jsonl`` under ``$CODE_HOME`` (default ``~/.code``).

Every Code keeps Codex's rollout format, with one difference: a recorded protocol event
wraps the Codex event message one level deeper, in ``payload.msg``
(``{"type": "event_msg", "payload": {"id": …, "msg": {"type": "token_count", "info": …}}}``;
the fork's ``event`` items carry the same ``payload.msg``). Everything else, and what a
``token_count`` means (cumulative ``total_token_usage``, per-request ``last_token_usage``,
re-emits, counter resets, replayed fork history, content-based event keys), is Codex's: this
module only unwraps the message and hands it to the Codex reader. See docs/sources.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from usageledger.sources._common import env_dirs, find_paths
from usageledger.sources.codex import CodexParser, _Reader

#: Top-level rollout item types that carry a wrapped event message in ``payload.msg``.
_WRAPPERS = ("event_msg", "event")


class _EveryCodeReader(_Reader):
    """The Codex reader, after unwrapping ``payload.msg`` token counts."""

    def line(self, lineno: int, obj: Any) -> None:
        """Count a wrapped ``token_count``; anything else is read exactly as Codex reads it."""
        if isinstance(obj, dict) and obj.get("type") in _WRAPPERS:
            payload = obj.get("payload")
            message = payload.get("msg") if isinstance(payload, dict) else None
            if isinstance(message, dict) and message.get("type") == "token_count":
                self._token_count(lineno, obj, message)
                return
        super().line(lineno, obj)


class EveryCodeParser(CodexParser):
    """Parser for Every Code rollout logs (append-only JSON lines, Codex semantics)."""

    name = "every-code"

    def reader(self, **fields: Any) -> _Reader:
        """A Codex reader that also understands the ``payload.msg`` wrapping."""
        return _EveryCodeReader(source=self.name, **fields)

    def discover(self, env: Mapping[str, str], home: Path) -> list[str]:
        """Return ``sessions/**/rollout-*.jsonl`` and ``archived_sessions/`` files per home.

        ``$CODE_HOME`` (comma-separated) wins, else ``~/.code`` (the same on macOS).
        """
        roots = env_dirs(env, "CODE_HOME", home) or [home / ".code"]
        dirs = [root / sub for root in roots for sub in ("sessions", "archived_sessions")]
        return find_paths(dirs, ["rollout-*.jsonl", "*/rollout-*.jsonl"])
