"""``usageledger status``: the ledger, its last scan and push, and per-source health.

Health per source: the files found now, the files the ledger has cursors for, the lines or
files it could not read (cumulative since each file was last read from its start), the events
and tokens stored, and a warning when the source's files mention token usage but nothing was
parsed from them (the sign of a log format the parser no longer understands).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from usageledger.sources import PARSERS
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import LoginError, load_login
from usageledger.tracker.push import count_pending
from usageledger.tracker.scan import LISTINGS_FILE, discover
from usageledger.tracker.state import load_state

#: Bytes that appear in a source's files only where they record token usage. A database's
#: head holds its schema, so a column name marks it. Every parser has an entry (a test checks
#: it, and that each source's sample files contain one of its markers).
USAGE_MARKERS: dict[str, tuple[bytes, ...]] = {
    "codex": (b'"token_count"',),
    "claude": (b'"usage"',),
    "gemini": (b'"tokens"',),
    "opencode": (b'"tokens"',),
    "copilot": (b'"modelMetrics"',),
    "amp": (b'"usage"', b'"usageLedger"'),
    "every-code": (b'"token_count"',),
    "droid": (b'"tokenUsage"',),
    "hermes": (b"input_tokens",),
    "goose": (b"input_tokens",),
    "qwen": (b'"usageMetadata"',),
    "kimi": (b'"token_usage"', b'"usage.record"'),
    "kilo": (b'"tokens"',),
    "openclaw": (b'"usage"',),
    "pi": (b'"usage"',),
    "cline": (b"tokensIn",),
    "roo-code": (b"tokensIn",),
    "kilo-code": (b"tokensIn",),
}
SNIFF_FILES = 20
SNIFF_BYTES = 1024 * 1024


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int):
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def mentions_usage(source: str, paths: Sequence[str | Path]) -> int:
    """How many of (up to ``SNIFF_FILES`` of) ``paths`` contain a usage marker of ``source``."""
    markers = USAGE_MARKERS[source]
    hits = 0
    for path in paths[:SNIFF_FILES]:
        try:
            with open(path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
        except OSError:
            continue
        if any(marker in head for marker in markers):
            hits += 1
    return hits


def _tracked(conn: sqlite3.Connection, user_id: int) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "SELECT source, COUNT(*), SUM(problems) FROM scan_files WHERE user_id = ? GROUP BY source",
        (user_id,),
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}


def _stored(conn: sqlite3.Connection, user_id: int) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "SELECT source, COUNT(*), SUM(total_tokens) FROM usage_events WHERE user_id = ? "
        "GROUP BY source",
        (user_id,),
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}


def ledger_status(ledger: LocalLedger, *, env: Mapping[str, str], home: Path) -> dict[str, Any]:
    """The status as a JSON-ready dict (the shape is in docs/tracker.md)."""
    state = load_state(ledger.home)
    try:
        login = load_login(ledger.home)
        login_problem = None
    except LoginError as exc:
        login, login_problem = None, str(exc)

    def read(conn: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any], int]:
        return (
            _tracked(conn, ledger.user_id),
            _stored(conn, ledger.user_id),
            count_pending(conn, ledger),
        )

    tracked, stored, pending = ledger.db.read(read)
    found, discover_problems = discover(
        PARSERS, env, home, listings=ledger.home / LISTINGS_FILE, save_listings=False
    )
    warnings: list[str] = [f"{p.path}: {p.reason}" for p in discover_problems]
    if login_problem:
        warnings.append(login_problem)
    sources = []
    for name, paths in found.items():
        files, problems = tracked.get(name, (0, 0))
        events, tokens = stored.get(name, (0, 0))
        warning = None
        if paths and tokens == 0:
            hits = mentions_usage(name, paths)
            if hits:
                warning = (
                    f"{hits} {name} file(s) mention token usage but no tokens were parsed; "
                    "the log format may have changed (run `usageledger scan` to see problems)"
                )
                warnings.append(warning)
        if paths and files == 0:
            warnings.append(f"{name}: {len(paths)} file(s) not scanned yet; run `usageledger scan`")
        sources.append(
            {
                "source": name,
                "files_found": len(paths),
                "files_scanned": files,
                "problems": problems,
                "events": events,
                "total_tokens": tokens,
                "warning": warning,
            }
        )
    return {
        "ledger": str(ledger.path),
        "time_zone": ledger.time_zone,
        "device": ledger.device_name,
        "last_scan": _iso(state.get("last_scan_ms")),
        "last_push": _iso(state.get("last_push_ms")),
        "server": login.server if login else None,
        "pending_buckets": pending,
        "sources": sources,
        "warnings": warnings,
    }
