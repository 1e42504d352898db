"""``usageledger blocks``: usage in 5-hour windows, with burn rate and projection.

How a block starts and ends (docs/tracker.md says it for users):

* Events are taken in time order. The first event starts a block at its UTC hour, floored
  (an event at 14:37 starts a block at 14:00); the block ends 5 hours later (19:00), end
  excluded.
* An event at or after the current block's end starts the next block, again at its own hour
  floored. A gap of 5 hours or more therefore always starts a new block, and idle hours
  between blocks belong to none.
* A block is *active* while ``start <= now < end``.

ccusage's ``blocks`` follows the same start rule, with three differences: it keeps an event
at exactly ``start + 5h`` in the old block (it starts a new one only when more than 5 hours
passed) where this one starts the next; it lists the gaps as blocks of their own, which this
one does not; and it counts Claude Code only, where this one counts every source (``--source``
narrows it).

Burn rate is tokens per minute and cost per hour over the block so far: from its first event
to now for the active block, to its last event for a finished one (ccusage divides by first to
last event even for the active block, so an idle active block keeps its old rate there). A
block shorter than a minute has none. The projection, for the active block only, adds the
burn rate times the time left to the block's tokens and cost.

Rows are read per minute, source, model and half-hour (``usage_events``), so the block
boundaries — always on an hour — are exact. Cost goes through the same ``PriceBook`` and
:class:`~usageledger.ledger.costing.Tally` as every report and the server's read API: each row
is priced on the local day (the ledger's zone) of its half-hour.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from usageledger.buckets import COUNT_COLUMNS, Counts, local_day
from usageledger.ledger.costing import Tally, UsageRow
from usageledger.ledger.pricing import PriceBook, format_usd
from usageledger.tracker.db import placeholders
from usageledger.tracker.report import tally_dict

HOUR_MS = 3_600_000
BLOCK_MS = 5 * HOUR_MS
MINUTE_MS = 60_000
HALF_HOUR_S = 1800
#: ``--recent``: blocks that started in the last this many days (ccusage's default too).
RECENT_DAYS = 3
_TOTAL = COUNT_COLUMNS.index("total_tokens")


@dataclass(slots=True)
class Block:
    """One 5-hour window and what was used in it."""

    start_ms: int
    first_ms: int
    last_ms: int
    tally: Tally = field(default_factory=Tally)
    models: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)

    @property
    def end_ms(self) -> int:
        """The block's end (excluded): 5 hours after its start."""
        return self.start_ms + BLOCK_MS

    @property
    def total_tokens(self) -> int:
        """The block's total tokens."""
        return self.tally.counts.total_tokens

    def active(self, now_ms: int) -> bool:
        """Whether ``now`` is inside the block."""
        return self.start_ms <= now_ms < self.end_ms

    def elapsed_ms(self, now_ms: int) -> int:
        """The time the burn rate is taken over (see the module's docstring)."""
        until = now_ms if self.active(now_ms) else self.last_ms
        return until - self.first_ms


def floor_hour(ms: int) -> int:
    """``ms`` floored to its UTC hour."""
    return ms - ms % HOUR_MS


def safe_start(
    conn: sqlite3.Connection, user_id: int, since_ms: int, sources: Sequence[str] = ()
) -> int | None:
    """A half-hour start at or before ``since_ms`` from which every block that starts at or
    after ``since_ms`` comes out exactly as from the first event (None: the first event).

    A block's start depends on the blocks before it, but only back to the last gap of 5
    hours or more: the event after such a gap starts a block whatever came before. So the
    start is moved back (a day, then doubling) until the first event from it follows one.
    """
    source_sql, params = _sources(sources)
    step = 86_400_000
    start = since_ms
    while True:
        bucket = (start // 1000) // HALF_HOUR_S * HALF_HOUR_S
        before = conn.execute(
            "SELECT MAX(bucket_start) FROM usage_events WHERE user_id = ? AND bucket_start < ?"
            + source_sql,
            (user_id, bucket, *params),
        ).fetchone()[0]
        if before is None:
            return None  # nothing earlier: as good as from the first event
        after = conn.execute(
            "SELECT MIN(bucket_start) FROM usage_events WHERE user_id = ? AND bucket_start >= ?"
            + source_sql,
            (user_id, bucket, *params),
        ).fetchone()[0]
        if after is None:
            return bucket  # no events from here on: no block can start before it
        last = conn.execute(
            "SELECT MAX(event_ms) FROM usage_events WHERE user_id = ? AND bucket_start = ?"
            + source_sql,
            (user_id, before, *params),
        ).fetchone()[0]
        first = conn.execute(
            "SELECT MIN(event_ms) FROM usage_events WHERE user_id = ? AND bucket_start = ?"
            + source_sql,
            (user_id, after, *params),
        ).fetchone()[0]
        if int(first) - int(last) >= BLOCK_MS:
            return bucket
        start -= step
        step *= 2


def _sources(sources: Sequence[str]) -> tuple[str, list[str]]:
    if not sources:
        return "", []
    return f" AND source IN ({placeholders(len(sources))})", list(sources)


def load_blocks(
    conn: sqlite3.Connection,
    user_id: int,
    book: PriceBook,
    tz: ZoneInfo,
    *,
    since_ms: int | None = None,
    sources: Sequence[str] = (),
) -> list[Block]:
    """Every block, oldest first; with ``since_ms``, every block that ends after it (and
    possibly a few before it), each exactly as a reading from the first event gives it.

    A block that ends after ``since_ms`` starts after ``since_ms - 5h``, so reading starts at
    a safe start at or before that.
    """
    source_sql, params = _sources(sources)
    start = (
        safe_start(conn, user_id, since_ms - BLOCK_MS, sources) if since_ms is not None else None
    )
    range_sql = " AND bucket_start >= ?" if start is not None else ""
    range_params = [start] if start is not None else []
    sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
    rows = conn.execute(
        f"SELECT MIN(event_ms), MAX(event_ms), source, model, bucket_start, {sums} "
        f"FROM usage_events WHERE user_id = ?{range_sql}{source_sql} "
        f"GROUP BY event_ms / {MINUTE_MS}, source, model, bucket_start "
        "ORDER BY MIN(event_ms), source, model",
        (user_id, *range_params, *params),
    )
    days: dict[int, date] = {}
    blocks: list[Block] = []
    block: Block | None = None
    for first, last, source, model, bucket, *counts in rows:
        first, last = int(first), int(last)
        values = tuple(int(v) for v in counts)
        if values[_TOTAL] <= 0:
            continue
        if block is None or first >= block.end_ms:
            block = Block(start_ms=floor_hour(first), first_ms=first, last_ms=last)
            blocks.append(block)
        block.last_ms = max(block.last_ms, last)
        day = days.get(bucket)
        if day is None:
            day = days[bucket] = local_day(int(bucket), tz)
        block.tally.add(book, UsageRow(day, str(source), str(model), Counts(*values)))
        block.models.add(str(model))
        block.sources.add(str(source))
    return blocks


def largest_block(blocks: Sequence[Block], now_ms: int) -> int | None:
    """The most tokens of any finished block (``--token-limit max``); None without one."""
    finished = [b.total_tokens for b in blocks if not b.active(now_ms)]
    return max(finished) if finished else None


def burn_rate(block: Block, now_ms: int) -> tuple[float, Decimal] | None:
    """Tokens per minute and USD per hour over the block so far; None under a minute."""
    elapsed = block.elapsed_ms(now_ms)
    if elapsed < MINUTE_MS:
        return None
    per_minute = block.total_tokens * MINUTE_MS / elapsed
    per_hour = block.tally.cost.usd * HOUR_MS / elapsed
    return per_minute, per_hour


def projection(block: Block, now_ms: int) -> tuple[int, Decimal] | None:
    """Tokens and USD at the active block's end at the current burn rate (None otherwise)."""
    rate = burn_rate(block, now_ms)
    if rate is None or not block.active(now_ms):
        return None
    left = block.end_ms - now_ms
    tokens = block.total_tokens + round(rate[0] * left / MINUTE_MS)
    cost = block.tally.cost.usd + rate[1] * left / HOUR_MS
    return tokens, cost


def _iso(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat()


def block_dict(block: Block, now_ms: int, tz: ZoneInfo, token_limit: int | None) -> dict[str, Any]:
    """A block as its JSON shape (docs/tracker.md)."""
    active = block.active(now_ms)
    rate = burn_rate(block, now_ms)
    projected = projection(block, now_ms)
    out: dict[str, Any] = {
        "start": _iso(block.start_ms, tz),
        "end": _iso(block.end_ms, tz),
        "first_event": _iso(block.first_ms, tz),
        "last_event": _iso(block.last_ms, tz),
        "active": active,
        "remaining_minutes": (block.end_ms - now_ms) // MINUTE_MS if active else None,
        "sources": sorted(block.sources),
        "models": sorted(block.models),
        **tally_dict(block.tally),
        "burn_rate": (
            {"tokens_per_minute": round(rate[0], 1), "cost_per_hour_usd": format_usd(rate[1])}
            if rate is not None
            else None
        ),
        "projection": (
            {"total_tokens": projected[0], "cost_usd": format_usd(projected[1])}
            if projected is not None
            else None
        ),
    }
    if token_limit is not None:
        expected = projected[0] if projected is not None else block.total_tokens
        out["token_limit_percent"] = round(100 * expected / token_limit, 1) if token_limit else None
        out["exceeds_token_limit"] = expected > token_limit
    return out


def build_blocks(
    conn: sqlite3.Connection,
    user_id: int,
    book: PriceBook,
    tz: ZoneInfo,
    *,
    now_ms: int,
    active_only: bool = False,
    recent: bool = False,
    token_limit: int | str | None = None,
    sources: Sequence[str] = (),
) -> dict[str, Any]:
    """The report of ``usageledger blocks``: blocks, oldest first, and the limit used.

    ``token_limit`` is a number of tokens, ``"max"`` (the largest finished block) or None.
    """
    since: int | None = None
    if token_limit != "max":
        if active_only:
            since = now_ms - BLOCK_MS
        elif recent:
            since = now_ms - RECENT_DAYS * 86_400_000
    blocks = load_blocks(conn, user_id, book, tz, since_ms=since, sources=sources)
    limit = largest_block(blocks, now_ms) if token_limit == "max" else token_limit
    assert limit is None or isinstance(limit, int)
    if active_only:
        blocks = [b for b in blocks if b.active(now_ms)]
    elif recent:
        cutoff = now_ms - RECENT_DAYS * 86_400_000
        blocks = [b for b in blocks if b.start_ms >= cutoff or b.active(now_ms)]
    return {
        "timezone": str(tz.key),
        "generated_at": _iso(now_ms, tz),
        "token_limit": limit,
        "token_limit_source": "max" if token_limit == "max" else None,
        "sources": list(sources) or None,
        "blocks": [block_dict(b, now_ms, tz, limit) for b in blocks],
    }


def active_block(
    conn: sqlite3.Connection,
    user_id: int,
    book: PriceBook,
    tz: ZoneInfo,
    *,
    now_ms: int,
    sources: Sequence[str] = (),
) -> Block | None:
    """The block ``now`` is in, if any (the status line's block)."""
    blocks = load_blocks(conn, user_id, book, tz, since_ms=now_ms - BLOCK_MS, sources=sources)
    return next((b for b in reversed(blocks) if b.active(now_ms)), None)
