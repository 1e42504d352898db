"""Cline, Roo Code and Kilo Code: VS Code ``globalStorage/<extension>/tasks/<id>/ui_messages.json``.

The three extensions share Cline's task format: ``ui_messages.json`` is the whole list of UI
messages, rewritten on every change. Each model request is a ``say == "api_req_started"``
message whose ``text`` is JSON ``{tokensIn, tokensOut, cacheReads, cacheWrites, cost,
apiProtocol?}``, first written as a placeholder and filled in when the response ends. The
key ``<task id>:<ts>`` (``ts`` is the message's unique epoch-ms key) stays the same across
rewrites, and the last copy read wins.

What ``tokensIn`` holds depends on the writer (see docs/sources.md, "Cline, Roo Code, Kilo
Code"): requests over the OpenAI protocol record the provider's whole prompt (cache reads and
writes included); Cline's Anthropic-style requests record the uncached remainder; Roo Code from
3.29.5 (2025-11-01) and Kilo Code from 4.119.0 (2025-11-12) record the whole prompt for both
protocols. A record carries no version, so the release date decides for Anthropic-protocol
requests, and a ``tokensIn`` smaller than the cache counts is always the remainder.

The UI messages carry no model (Cline's ``modelInfo.modelId`` aside): the model is read from
the files beside the parsed one (an exception to bytes-in purity, needed because the
model lives only there): first ``task_metadata.json``'s ``model_usage`` (``{ts, model_id,
model_provider_id, mode}``, written by Cline's model tracker as requests use a model),
then the ``<model>`` tag of the environment details in ``api_conversation_history.json``
(Roo Code and Kilo Code write it into each request's user message); in both, the model named
last before the next request is the request's model. Without either: "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
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
HISTORY = "api_conversation_history.json"
METADATA = "task_metadata.json"
#: The history file is read for the model only; a larger one is not read.
MAX_HISTORY_BYTES = 256 * 1024 * 1024
#: task_metadata.json is read for ``model_usage`` only; a larger one is not read.
MAX_METADATA_BYTES = 64 * 1024 * 1024
_MODEL_TAG = re.compile(r"<environment_details>.*?<model>\s*([^<]+?)\s*</model>", re.S)
#: Editors whose user-data directory may hold the extensions' globalStorage.
EDITORS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf")
#: Remote servers' data directories under the home directory.
SERVERS = (".vscode-server", ".vscode-server-insiders", ".cursor-server")


class ClineFamilyParser:
    """Parser for one Cline-family extension's task files (re-read whole when they change)."""

    incremental = False
    duplicate_policy = "last"

    def __init__(self, name: str, extension_id: str, whole_prompt_since: datetime | None) -> None:
        self.name = name
        self.extension_id = extension_id
        #: From this date on, Anthropic-protocol ``tokensIn`` includes the cache (None: never).
        self.whole_prompt_since = whole_prompt_since

    def discover(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """``tasks/*/ui_messages.json`` under each editor's and each remote server's storage.

        Linux ``$XDG_CONFIG_HOME`` (else ``~/.config``) and macOS ``~/Library/Application
        Support``, for VS Code, Insiders, VSCodium, Cursor and Windsurf, plus
        ``~/.vscode-server``, ``~/.vscode-server-insiders`` and ``~/.cursor-server``.
        """
        config = env_dirs(env, "XDG_CONFIG_HOME", home)[:1] or [home / ".config"]
        bases = [*config, home / "Library" / "Application Support"]
        storages = [
            base / editor / "User" / "globalStorage" for base in bases for editor in EDITORS
        ]
        storages += [home / server / "data" / "User" / "globalStorage" for server in SERVERS]
        roots = [storage / self.extension_id / "tasks" for storage in storages]
        return find_files(roots + self.extra_roots(env, home), ["*/ui_messages.json"])

    def extra_roots(self, env: Mapping[str, str], home: Path) -> list[Path]:
        """Task directories outside an editor (Cline's standalone data directory)."""
        if self.name != "cline":
            return []
        data = env_dirs(env, "CLINE_DATA_DIR", home)
        if not data:
            cline_dir = env_dirs(env, "CLINE_DIR", home)
            data = [cline_dir[0] / "data"] if cline_dir else [home / ".cline" / "data"]
        return [data[0] / "tasks"]

    def parse(self, data: bytes, *, path: str, state: Mapping[str, Any] | None) -> ParseResult:
        """Parse the whole ``ui_messages.json``; one event per filled-in request."""
        problems: list[Problem] = []
        try:
            messages = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(path, None, decode_reason(data, exc)))
            return ParseResult(problems=problems, consumed=len(data))
        if not isinstance(messages, list):
            problems.append(Problem(path, None, "ui_messages.json is not a list"))
            return ParseResult(problems=problems, consumed=len(data))
        task = Path(path).parent.name or Path(path).stem
        tracked = _metadata_models(Path(path).parent / METADATA)
        models = _history_models(Path(path).parent / HISTORY)
        requests = [
            m for m in messages if isinstance(m, dict) and m.get("say") == "api_req_started"
        ]
        events: list[UsageEvent] = []
        for index, message in enumerate(requests):
            nxt = requests[index + 1].get("ts") if index + 1 < len(requests) else None
            try:
                model = _model_before(tracked, nxt) or _model_before(models, nxt)
                event = self._event(task, message, model)
            except InvalidRecordError as exc:
                problems.append(Problem(path, None, f"message ts {message.get('ts')}: {exc}"))
            except Exception as exc:  # a parser never raises; report and go on
                reason = f"unreadable message ({type(exc).__name__})"
                problems.append(Problem(path, None, f"message ts {message.get('ts')}: {reason}"))
            else:
                if event is not None:
                    events.append(event)
        return ParseResult(events=events, problems=problems, consumed=len(data), state={})

    def _event(self, task: str, message: Mapping[str, Any], model: str | None) -> UsageEvent | None:
        raw = message.get("text")
        if not isinstance(raw, str) or not raw:
            return None  # a request that was never filled in
        try:
            info = mapping(orjson.loads(raw), "api_req_started text")
        except orjson.JSONDecodeError as exc:
            raise InvalidRecordError("api_req_started text is not JSON") from exc
        tokens_in = count(info, "tokensIn")
        output = count(info, "tokensOut")
        reads = count(info, "cacheReads")
        writes = count(info, "cacheWrites")
        if tokens_in == output == reads == writes == 0:
            return None  # the placeholder written before the response
        when = timestamp(message.get("ts"))
        if self._whole_prompt(info.get("apiProtocol"), when) and tokens_in >= reads + writes:
            fresh = tokens_in - reads - writes
        else:
            fresh = tokens_in
        info_model = message.get("modelInfo")
        own = text(info_model.get("modelId")) if isinstance(info_model, dict) else None
        return UsageEvent(
            source=self.name,
            event_key=f"{task}:{message.get('ts')}",
            timestamp=when,
            model=own or model or UNKNOWN_MODEL,
            session_id=task,
            project=None,
            input_tokens=fresh + writes,
            cached_input_tokens=reads,
            output_tokens=output,
            cache_write_tokens=writes,
        )

    def _whole_prompt(self, protocol: Any, when: datetime) -> bool:
        """True when ``tokensIn`` was written with the cache reads and writes inside it."""
        if protocol == "openai":
            return True
        if protocol == "anthropic" and self.whole_prompt_since is not None:
            return when >= self.whole_prompt_since
        return False


def _metadata_models(path: Path) -> list[tuple[int | None, str]]:
    """``(ts, model_id)`` for each ``model_usage`` entry of Cline's ``task_metadata.json``."""
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            return []
        metadata = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    entries = metadata.get("model_usage") if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        return []
    found: list[tuple[int | None, str]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        model = text(entry.get("model_id"))
        if model is None:
            continue
        ts = entry.get("ts")
        found.append((ts if isinstance(ts, int) and not isinstance(ts, bool) else None, model))
    return found


def _history_models(path: Path) -> list[tuple[int | None, str]]:
    """``(ts, model)`` for each history message whose environment details name a model."""
    try:
        if path.stat().st_size > MAX_HISTORY_BYTES:
            return []
        history = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    if not isinstance(history, list):
        return []
    found: list[tuple[int | None, str]] = []
    for item in history:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        blocks = content if isinstance(content, list) else [content]
        for block in blocks:
            body = block.get("text") if isinstance(block, dict) else block
            if isinstance(body, str):
                for match in _MODEL_TAG.finditer(body):
                    ts = item.get("ts")
                    stamp = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
                    found.append((stamp, match.group(1)))
    return found


def _model_before(models: list[tuple[int | None, str]], next_ts: Any) -> str | None:
    """The last model named before the next request (or at all, without timestamps)."""
    bound = next_ts if isinstance(next_ts, int) and not isinstance(next_ts, bool) else None
    chosen: str | None = None
    for stamp, model in models:
        if bound is None or stamp is None or stamp < bound:
            chosen = model
    return chosen


#: Roo Code 3.29.5 (RooCodeInc/Roo-Code#8954) and Kilo Code 4.119.0 record the whole prompt.
ROO_WHOLE_PROMPT = datetime(2025, 11, 1, tzinfo=UTC)
KILO_WHOLE_PROMPT = datetime(2025, 11, 12, tzinfo=UTC)


def cline_parsers() -> tuple[ClineFamilyParser, ClineFamilyParser, ClineFamilyParser]:
    """The three extensions' parsers: Cline, Roo Code, Kilo Code."""
    return (
        ClineFamilyParser("cline", "saoudrizwan.claude-dev", None),
        ClineFamilyParser("roo-code", "rooveterinaryinc.roo-cline", ROO_WHOLE_PROMPT),
        ClineFamilyParser("kilo-code", "kilocode.kilo-code", KILO_WHOLE_PROMPT),
    )
