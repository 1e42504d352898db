"""5-hour blocks: where they start and end, burn rate, projection and the token limit.

Every expectation is worked out by hand from events at fixed times, a price book of round
prices ($1 per million input tokens, $2 per million output tokens) and a clock the test sets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from tests.tracker import support
from usageledger.cli.root import main
from usageledger.ledger.pricing import Price, PriceBook
from usageledger.sources import UsageEvent
from usageledger.tracker.blocks import active_block, build_blocks, load_blocks, safe_start
from usageledger.tracker.ledger import LocalLedger

BOOK = PriceBook(
    [
        Price(
            model="m1",
            effective_from=date(2020, 1, 1),
            input=Decimal("1"),
            cached_input=Decimal("0.1"),
            cache_write=Decimal("1"),
            output=Decimal("2"),
            source="test",
            taken=date(2026, 1, 1),
        )
    ]
)


def at(text: str) -> datetime:
    """A UTC time from ``YYYY-MM-DD HH:MM[:SS]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ms(text: str) -> int:
    """Unix ms of a UTC ``YYYY-MM-DD HH:MM[:SS]``."""
    return int(at(text).timestamp() * 1000)


def add(ledger: LocalLedger, *events: tuple[str, int, int], source: str = "claude") -> None:
    """Store events of model m1: (time, input tokens, output tokens) each."""
    parsed = [
        UsageEvent(
            source=source,
            event_key=f"{source}-{when}-{inp}-{out}",
            timestamp=at(when),
            model="m1",
            session_id="s1",
            project=None,
            input_tokens=inp,
            cached_input_tokens=0,
            output_tokens=out,
        )
        for when, inp, out in events
    ]
    support.store(ledger, {source: parsed}, 1)


def report(ledger: LocalLedger, now: str, **options: Any) -> dict[str, Any]:
    """``build_blocks`` at ``now``."""
    return ledger.db.read(
        lambda conn: build_blocks(conn, ledger.user_id, BOOK, ledger.tz, now_ms=ms(now), **options)
    )


def test_a_block_starts_at_its_first_events_hour_and_ends_five_hours_later(
    ledger: LocalLedger,
) -> None:
    """10:37 opens 10:00–15:00; 14:59 is in it; 15:00 sharp opens the next; 21:05 opens 21:00."""
    add(
        ledger,
        ("2026-03-02 10:37", 1_000_000, 0),
        ("2026-03-02 14:59", 0, 500_000),
        ("2026-03-02 15:00", 2_000_000, 0),
        ("2026-03-02 21:05", 100_000, 0),
    )
    blocks = report(ledger, "2026-03-03 12:00")["blocks"]
    assert [(b["start"], b["end"]) for b in blocks] == [
        ("2026-03-02T10:00:00+00:00", "2026-03-02T15:00:00+00:00"),
        ("2026-03-02T15:00:00+00:00", "2026-03-02T20:00:00+00:00"),
        ("2026-03-02T21:00:00+00:00", "2026-03-03T02:00:00+00:00"),
    ]
    assert [b["total_tokens"] for b in blocks] == [1_500_000, 2_000_000, 100_000]
    # $1 for a million input tokens, $2 for a million output: 1 + 1, 2, 0.1.
    assert [b["cost_usd"] for b in blocks] == ["2.000000", "2.000000", "0.100000"]
    assert [b["active"] for b in blocks] == [False, False, False]
    # A finished block's burn rate runs from its first to its last event: 1.5 M in 262 min.
    first = blocks[0]["burn_rate"]
    assert first["tokens_per_minute"] == round(1_500_000 / 262, 1)
    assert first["cost_per_hour_usd"] == f"{Decimal(2) * 60 / 262:.6f}"
    # One event: under a minute, no rate.
    assert blocks[1]["burn_rate"] is None
    assert blocks[1]["projection"] is None


def test_the_active_block_has_time_left_burn_rate_and_projection(ledger: LocalLedger) -> None:
    """At 21:35, 300k tokens since 21:05: 10k a minute, 265 minutes left, 2.95 M at the end."""
    add(ledger, ("2026-03-02 21:05", 300_000, 0))
    (block,) = report(ledger, "2026-03-02 21:35", active_only=True)["blocks"]
    assert block["active"] is True
    assert block["remaining_minutes"] == 265
    assert block["burn_rate"] == {"tokens_per_minute": 10_000.0, "cost_per_hour_usd": "0.600000"}
    assert block["projection"] == {"total_tokens": 2_950_000, "cost_usd": "2.950000"}


def test_token_limit_max_is_the_largest_finished_block_and_flags_the_projection(
    ledger: LocalLedger,
) -> None:
    """Past blocks of 1.5 M and 2 M: the limit is 2 M; the active one is projected to 2.95 M."""
    add(
        ledger,
        ("2026-03-02 10:37", 1_000_000, 500_000),
        ("2026-03-02 15:00", 2_000_000, 0),
        ("2026-03-02 21:05", 300_000, 0),
    )
    result = report(ledger, "2026-03-02 21:35", token_limit="max")
    assert result["token_limit"] == 2_000_000
    last = result["blocks"][-1]
    assert last["exceeds_token_limit"] is True
    assert last["token_limit_percent"] == 147.5  # 2.95 M of 2 M
    assert result["blocks"][0]["exceeds_token_limit"] is False
    assert (
        report(ledger, "2026-03-02 21:35", token_limit=3_000_000)["blocks"][-1][
            "exceeds_token_limit"
        ]
        is False
    )


def test_recent_and_active_read_a_short_range_and_agree_with_the_whole_history(
    ledger: LocalLedger,
) -> None:
    """Events every 4 hours for 10 days chain blocks back to the first: a short read agrees."""
    events = [(f"2026-03-{1 + h // 24:02d} {h % 24:02d}:20", 1000, 0) for h in range(0, 240, 4)]
    add(ledger, *events)
    now = ms("2026-03-10 20:30")
    every = ledger.db.read(lambda c: load_blocks(c, ledger.user_id, BOOK, ledger.tz))
    starts = [b.start_ms for b in every]
    # 00:20 opens 00:00–05:00; 04:20 in it; 08:20 opens 08:00–13:00; 12:20 in it; … every 8 h.
    assert starts[:3] == [ms("2026-03-01 00:00"), ms("2026-03-01 08:00"), ms("2026-03-01 16:00")]
    start = ledger.db.read(lambda c: safe_start(c, ledger.user_id, now - 5 * 3_600_000))
    assert start is None  # no gap of 5 hours anywhere: only the first event is safe
    active = ledger.db.read(lambda c: active_block(c, ledger.user_id, BOOK, ledger.tz, now_ms=now))
    assert active is not None
    assert active.start_ms == ms("2026-03-10 16:00")
    assert active.first_ms == ms("2026-03-10 16:20")
    assert active.total_tokens == 2000
    recent = report(ledger, "2026-03-10 20:30", recent=True)["blocks"]
    assert recent[-1]["start"] == "2026-03-10T16:00:00+00:00"
    assert recent[-1]["active"]
    assert [b["start"] for b in recent] == [
        b["start"]
        for b in report(ledger, "2026-03-10 20:30")["blocks"]
        if b["start"] >= "2026-03-07T20:30"
    ]


def test_a_gap_of_five_hours_lets_a_short_read_start_after_it(ledger: LocalLedger) -> None:
    """After a gap of 5 hours the next event starts a block whatever came before: read from it."""
    add(ledger, ("2026-03-01 10:20", 1000, 0), ("2026-03-02 09:10", 2000, 0))
    start = ledger.db.read(lambda c: safe_start(c, ledger.user_id, ms("2026-03-02 09:00")))
    assert start == ms("2026-03-02 09:00") // 1000
    now = ms("2026-03-02 09:30")
    active = ledger.db.read(lambda c: active_block(c, ledger.user_id, BOOK, ledger.tz, now_ms=now))
    assert active is not None
    assert (active.start_ms, active.first_ms, active.total_tokens) == (
        ms("2026-03-02 09:00"),
        ms("2026-03-02 09:10"),
        2000,
    )


def test_source_narrows_the_blocks(ledger: LocalLedger) -> None:
    """--source codex counts codex events only."""
    add(ledger, ("2026-03-02 10:37", 1000, 0))
    add(ledger, ("2026-03-02 12:00", 5000, 0), source="codex")
    blocks = report(ledger, "2026-03-03 00:00", sources=("codex",))["blocks"]
    assert [(b["start"], b["total_tokens"], b["sources"]) for b in blocks] == [
        ("2026-03-02T12:00:00+00:00", 5000, ["codex"])
    ]


def test_blocks_cli_prints_json_and_rejects_a_bad_limit(
    ledger: LocalLedger, tmp_path: Path
) -> None:
    """`blocks --json` lists the blocks; `--token-limit abc` exits 2 with a message."""
    add(ledger, ("2026-03-02 10:37", 1000, 0))
    env = {"USAGELEDGER_HOME": str(ledger.home), "HOME": str(tmp_path), "COLUMNS": "200"}
    done = CliRunner().invoke(main, ["blocks", "--json", "--no-scan"], env=env)
    assert done.exit_code == 0, done.output
    assert [b["total_tokens"] for b in orjson.loads(done.stdout)["blocks"]] == [1000]
    table = CliRunner().invoke(main, ["blocks", "--no-scan", "--token-limit", "max"], env=env)
    assert table.exit_code == 0
    assert "5-hour blocks" in table.stdout
    bad = CliRunner().invoke(main, ["blocks", "--no-scan", "--token-limit", "abc"], env=env)
    assert bad.exit_code == 2
    assert "--token-limit" in bad.stderr
