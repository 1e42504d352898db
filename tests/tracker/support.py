"""Helpers of the tracker tests: what the parsers say, and what the ledger holds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from usageledger.buckets import COUNT_COLUMNS
from usageledger.sources import PARSERS, UsageEvent, parse_whole, resolve_duplicates
from usageledger.store.engine import make_engine
from usageledger.store.tables import usage_buckets, usage_daily, usage_events
from usageledger.tracker.events import WriteOutcome, store_events
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.scan import ScanSummary, scan

TOTAL_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)


def parsed_events(env: Mapping[str, str], home: Path) -> dict[str, list[UsageEvent]]:
    """Every file of every source parsed whole, in discovery order (duplicates kept)."""
    out: dict[str, list[UsageEvent]] = {}
    for name, parser in PARSERS.items():
        events: list[UsageEvent] = []
        for path in parser.discover(env, home):
            events += parse_whole(parser, path).events
        out[name] = events
    return out


def resolved(events: Mapping[str, Iterable[UsageEvent]]) -> list[UsageEvent]:
    """Duplicates resolved by each source's policy, as the ledger must."""
    kept: list[UsageEvent] = []
    for name, found in events.items():
        kept += resolve_duplicates(found, PARSERS[name].duplicate_policy)
    return kept


def sums(events: Iterable[UsageEvent]) -> dict[str, int]:
    """Totals of events in the report's fields."""
    out = dict.fromkeys(TOTAL_FIELDS, 0)
    for e in events:
        out["input_tokens"] += e.input_tokens
        out["cached_input_tokens"] += e.cached_input_tokens
        out["cache_write_tokens"] += e.cache_write_tokens
        out["output_tokens"] += e.output_tokens
        out["reasoning_output_tokens"] += e.reasoning_output_tokens
        out["total_tokens"] += e.total_tokens
    return out


@contextmanager
def sa_engine(ledger: LocalLedger) -> Iterator[Engine]:
    """A SQLAlchemy engine on the ledger's file, for tests that read it with the server's
    table metadata (the tracker itself speaks ``sqlite3``); disposed afterwards."""
    engine = make_engine(f"sqlite:///{ledger.path}", create=False)
    try:
        yield engine
    finally:
        engine.dispose()


def table_sums(engine: Engine, table: Any) -> dict[str, int]:
    """Column sums of a table with the count columns."""
    with engine.connect() as conn:
        row = conn.execute(select(*(func.sum(table.c[c]) for c in COUNT_COLUMNS))).one()
    found = {name: int(value or 0) for name, value in zip(COUNT_COLUMNS, row, strict=True)}
    return {name: found[name] for name in TOTAL_FIELDS}


def layer_sums(ledger: LocalLedger) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Totals of the three layers: events, buckets, daily rollups."""
    with sa_engine(ledger) as engine:
        return (
            table_sums(engine, usage_events),
            table_sums(engine, usage_buckets),
            table_sums(engine, usage_daily),
        )


def event_count(ledger: LocalLedger) -> int:
    """Rows in usage_events."""
    with sa_engine(ledger) as engine, engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(usage_events)).scalar_one())


def run_scan(
    ledger: LocalLedger, env: Mapping[str, str], home: Path, clock: Any, **options: Any
) -> ScanSummary:
    """Scan with the test clock."""
    return scan(ledger, env=env, home=home, clock=clock, **options)


def claude_line(
    message_id: str,
    when: str,
    *,
    model: str = "claude-sonnet-4-5-20250929",
    fresh: int = 100,
    output: int = 10,
    cache_read: int = 0,
    cache_write: int = 0,
    session: str = "s-1",
    cwd: str = "/work/project",
    request_id: str | None = None,
) -> dict[str, Any]:
    """One Claude Code assistant transcript line with usage."""
    return {
        "type": "assistant",
        "timestamp": when,
        "sessionId": session,
        "cwd": cwd,
        "requestId": request_id or f"req-{message_id}",
        "message": {
            "id": message_id,
            "model": model,
            "role": "assistant",
            "usage": {
                "input_tokens": fresh,
                "output_tokens": output,
                "cache_read_input_tokens": cache_read,
                "cache_creation_input_tokens": cache_write,
            },
        },
    }


def codex_lines(session: str, turns: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    """A Codex rollout: metadata, then one token_count per ``(time, input, cached, output)``."""
    lines: list[dict[str, Any]] = [
        {
            "timestamp": turns[0][0] if turns else "2025-09-15T10:00:00Z",
            "type": "session_meta",
            "payload": {"id": session, "cwd": "/work/codex-project"},
        },
        {
            "timestamp": turns[0][0] if turns else "2025-09-15T10:00:00Z",
            "type": "turn_context",
            "payload": {"model": "gpt-5-codex", "cwd": "/work/codex-project"},
        },
    ]
    total = [0, 0, 0, 0]
    for when, fresh, cached, output in turns:
        last = [fresh + cached, cached, output, 0]
        total = [a + b for a, b in zip(total, last, strict=True)]
        names = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
        lines.append(
            {
                "timestamp": when,
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": {
                        "total_token_usage": dict(zip(names, total, strict=True)),
                        "last_token_usage": dict(zip(names, last, strict=True)),
                    },
                },
            }
        )
    return lines


def jsonl(records: Iterable[Any]) -> bytes:
    """Newline-terminated JSON lines."""
    import orjson

    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def store(
    ledger: LocalLedger,
    events: Mapping[str, list[UsageEvent]],
    now_ms: int,
    policies: Mapping[str, str] | None = None,
) -> WriteOutcome:
    """Write parsed events (per source) into the ledger in one transaction, as a scan does:
    each source's own duplicate policy unless ``policies`` says otherwise."""
    rules = {name: parser.duplicate_policy for name, parser in PARSERS.items()}
    return ledger.db.write(
        lambda conn: store_events(
            conn,
            user_id=ledger.user_id,
            device_id=ledger.device_id,
            tz=ledger.tz,
            events=events,
            policies={**rules, **(policies or {})},
            now_ms=now_ms,
        )
    )
