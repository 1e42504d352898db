"""OpenClaw: ``agents/<agent>/sessions/*.jsonl`` transcripts, in pi-agent's session format.

OpenClaw (formerly Clawdbot, Moltbot) runs pi's agent, so a transcript is a pi session file
(header, ``message`` entries with pi's ``usage``, ``model_change`` entries). When a session is
reset or deleted OpenClaw keeps the transcript as ``<id>.jsonl.reset.<time>`` or
``<id>.jsonl.deleted.<time>`` beside the live file; both are read, and since the event key
comes from the response itself (``pi.py``), a response in an archive and in the live file
counts once. The model is the response's own ``model`` (or ``modelId``), else the latest
``model_change``/``model-snapshot`` of the file, carried across incremental reads. pi's
``usage.cost.total`` is the response's logged cost here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from usageledger.sources._common import InvalidRecordError, env_dirs, find_files, mapping, text
from usageledger.sources.base import ParseResult
from usageledger.sources.pi import UNKNOWN_MODEL, SessionReader, parse_lines

#: State directories of OpenClaw and of its earlier names, under the home directory.
STATE_DIRS = (".openclaw", ".clawdbot", ".moltbot", ".moldbot")
#: Transcript artifacts OpenClaw writes itself (delivery mirrors, gateway notices): not usage.
ARTIFACT_API = "openclaw-transcript"
ARTIFACT_MODELS = ("delivery-mirror", "gateway-injected")


class _OpenClawReader(SessionReader):
    """pi's reader plus OpenClaw's model snapshots and transcript artifacts."""

    def other(self, entry: Mapping[str, Any]) -> None:
        """``{"type": "custom", "customType": "model-snapshot", "data": {"modelId"}}``."""
        if entry.get("type") == "custom" and entry.get("customType") == "model-snapshot":
            data = mapping(entry.get("data"), "model-snapshot data")
            self.model = text(data.get("modelId")) or self.model

    def check(self, message: Mapping[str, Any]) -> None:
        """Non-zero usage on an artifact is reported: it copies no model's response."""
        artifact = message.get("api") == ARTIFACT_API or (
            message.get("provider") == "openclaw" and message.get("model") in ARTIFACT_MODELS
        )
        if artifact:
            raise InvalidRecordError("usage on an OpenClaw transcript artifact (not counted)")

    def model_of(self, message: Mapping[str, Any]) -> str:
        """``model``, else ``modelId``, else the file's latest model change."""
        return (
            text(message.get("model"))
            or text(message.get("modelId"))
            or self.model
            or UNKNOWN_MODEL
        )


class OpenClawParser:
    """Parser for OpenClaw transcripts and their reset/deleted archives (append-only lines)."""

    name = "openclaw"
    incremental = True
    duplicate_policy = "first"

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Live transcripts and archives under ``agents/*/sessions`` of each state directory.

        ``OPENCLAW_DIR`` (comma-separated, as ccusage reads it) wins; else OpenClaw's own
        ``OPENCLAW_STATE_DIR``; else ``~/.openclaw`` and the legacy ``~/.clawdbot``,
        ``~/.moltbot`` and ``~/.moldbot``.
        """
        roots = env_dirs(env, "OPENCLAW_DIR", home) or env_dirs(env, "OPENCLAW_STATE_DIR", home)
        if not roots:
            roots = [home / name for name in STATE_DIRS]
        patterns = [
            "*/sessions/*.jsonl",
            "*/sessions/*.jsonl.reset.*",
            "*/sessions/*.jsonl.deleted.*",
        ]
        return find_files([root / "agents" for root in roots], patterns)

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse complete lines of ``data``; ``state`` carries line, model, session, project."""
        # OpenClaw names a transcript ``<session id>.jsonl`` (archives add a suffix).
        session = Path(path).name.split(".jsonl", 1)[0] or Path(path).name
        return parse_lines(_OpenClawReader(self.name, path, state or {}, session), data, state)
