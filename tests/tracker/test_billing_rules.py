"""Every billing dimension a Claude Code log records, priced by Anthropic's rule, end to end.

Four Claude Code responses on 2026-12-04, priced by hand from Anthropic's published prices
(USD per million tokens; docs/pricing.md):

- Claude Sonnet 4.5: input 3, cache read 0.30, five-minute write 3.75, one-hour write 6,
  output 15; a request over 200,000 prompt tokens (input + cache reads + cache writes) is
  billed entirely at input 6, cache read 0.60, five-minute write 7.50, one-hour write 12,
  output 22.50.
- Claude Opus 4.5: input 5, cache read 0.50, five-minute write 6.25, one-hour write 10,
  output 25 (one rate at any size).

The four responses and their cost in micro-dollars (µ$ = tokens × USD per million):

1. Sonnet, long context: 10,000 input + 190,000 cache reads + 4,000 five-minute writes =
   204,000 prompt tokens > 200,000, so every token is at the long-context rates:
   10,000 × 6 + 190,000 × 0.60 + 4,000 × 7.50 + 2,400 × 22.50
   = 60,000 + 114,000 + 30,000 + 54,000 = 258,000 µ$.
2. Sonnet, one-hour writes: 50 input + 100,000 cache reads + 20,000 one-hour writes =
   120,050 prompt tokens (standard rates): 50 × 3 + 100,000 × 0.30 + 20,000 × 6 + 1,160 × 15
   = 150 + 30,000 + 120,000 + 17,400 = 167,550 µ$.
3. Opus, one-hour writes: 20,000 one-hour writes and 800 output:
   20,000 × 10 + 800 × 25 = 200,000 + 20,000 = 220,000 µ$.
4. Opus, plain: 2,000 input and 400 output: 2,000 × 5 + 400 × 25 = 10,000 + 10,000 = 20,000 µ$.

Sonnet 4.5: 258,000 + 167,550 = 425,550 µ$ = **$0.425550**; Opus 4.5: 220,000 + 20,000 =
**$0.240000**. Priced without the rules (base rates, every write five-minute), Sonnet comes to
138,000 + 122,550 = $0.260550 and Opus to 145,000 + 20,000 = $0.165000.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import Persona
from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import run_scan
from usageledger.buckets import COUNT_COLUMNS, iso_utc
from usageledger.cli.root import main
from usageledger.ledger.pricing import PriceBook, cost_usd
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.report import ReportRequest, build_report

DAY = date(2026, 12, 4)
SONNET = "claude-sonnet-4-5-20250929"
OPUS = "claude-opus-4-5-20251101"


def response(
    n: int,
    when: str,
    model: str,
    *,
    fresh: int = 0,
    read: int = 0,
    write_5m: int = 0,
    write_1h: int = 0,
    output: int = 0,
    speed: str | None = None,
) -> dict[str, Any]:
    """One Claude Code assistant line with the usage shape Claude Code 2.x writes."""
    usage: dict[str, Any] = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }
    if speed is not None:
        usage["speed"] = speed
    return {
        "type": "assistant",
        "timestamp": when,
        "sessionId": "s-billing",
        "cwd": "/home/u/proj",
        "requestId": f"req_{n}",
        "message": {"id": f"msg_{n}", "role": "assistant", "model": model, "usage": usage},
    }


FOUR_RESPONSES = [
    response(
        1, "2026-12-04T10:00:00Z", SONNET, fresh=10_000, read=190_000, write_5m=4_000, output=2_400
    ),
    response(
        2, "2026-12-04T10:05:00Z", SONNET, fresh=50, read=100_000, write_1h=20_000, output=1_160
    ),
    response(3, "2026-12-04T10:40:00Z", OPUS, write_1h=20_000, output=800),
    response(4, "2026-12-04T11:10:00Z", OPUS, fresh=2_000, output=400),
]


def write_logs(root: Path, lines: list[dict[str, Any]]) -> None:
    """A Claude Code transcript under ``root/claude/projects``."""
    folder = root / "claude" / "projects" / "-home-u-proj"
    folder.mkdir(parents=True)
    (folder / "s-billing.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


@pytest.fixture
def billing_logs(tmp_path: Path) -> Path:
    """The four responses as the only logs."""
    root = tmp_path / "billing-logs"
    write_logs(root, FOUR_RESPONSES)
    return root


def models_report(report: dict[str, Any]) -> dict[str, str]:
    """model → cost_usd of a ``report models`` JSON body."""
    return {row["model"]: row["cost_usd"] for row in report["models"]}


def test_report_json_prices_long_context_and_one_hour_writes_by_the_vendor_rule(
    tmp_path: Path, billing_logs: Path
) -> None:
    """`usageledger report models --json` after a real scan: $0.425550 and $0.240000."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        **logs_env(billing_logs),
    }
    result = CliRunner().invoke(main, ["report", "models", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert models_report(report) == {SONNET: "0.425550", OPUS: "0.240000"}
    # 425,550 + 240,000 = 665,550 µ$
    assert report["totals"]["cost_usd"] == "0.665550"
    daily = orjson.loads(
        CliRunner().invoke(main, ["report", "daily", "--json", "--no-scan"], env=env).stdout
    )
    assert daily["totals"]["cost_usd"] == "0.665550"
    assert daily["totals"]["cache_write_tokens"] == 4_000 + 20_000 + 20_000


def test_the_ledger_files_each_request_under_its_classes(
    ledger: LocalLedger, billing_logs: Path, empty_home: Path, clock: Clock
) -> None:
    """Events, buckets and daily rows carry the one-hour writes and the long-context subset."""
    run_scan(ledger, logs_env(billing_logs), empty_home, clock)
    with sqlite3.connect(ledger.path) as conn:
        for table in ("usage_events", "usage_buckets", "usage_daily"):
            row = conn.execute(
                "SELECT SUM(cache_write_1h_tokens), SUM(long_context_input_tokens), "
                "SUM(long_context_cached_input_tokens), SUM(long_context_output_tokens), "
                f"SUM(fast_input_tokens) FROM {table} WHERE model = ?",
                (SONNET,),
            ).fetchone()
            # 1h writes: response 2's 20,000. Long context: response 1 only, whose input
            # (fresh + writes) is 10,000 + 4,000 = 14,000, cache reads 190,000, output 2,400.
            assert row == (20_000, 14_000, 190_000, 2_400, 0), table


def test_fast_mode_is_billed_at_the_fast_rates(
    tmp_path: Path, ledger: LocalLedger, empty_home: Path, clock: Clock
) -> None:
    """`usage.speed: "fast"` (Claude Code's fast mode) on Opus 5.5, which LiteLLM lists at 2x:
    input 8, cache read 0.40, five-minute write 10, one-hour write 16, output 40 (standard:
    4, 0.20, 5, 8, 20). 1,000 × 8 + 10,000 × 0.40 + 2,000 × 16 + 500 × 40
    = 8,000 + 4,000 + 32,000 + 20,000 = 64,000 µ$; the same request at standard speed is
    1,000 × 4 + 10,000 × 0.20 + 2,000 × 8 + 500 × 20 = 4,000 + 2,000 + 16,000 + 10,000
    = 32,000 µ$."""
    root = tmp_path / "fast-logs"
    write_logs(
        root,
        [
            response(
                5,
                "2026-12-04T12:00:00Z",
                "claude-opus-5-5",
                fresh=1_000,
                read=10_000,
                write_1h=2_000,
                output=500,
                speed="fast",
            ),
            response(
                6,
                "2026-12-04T12:01:00Z",
                "claude-opus-5-5",
                fresh=1_000,
                read=10_000,
                write_1h=2_000,
                output=500,
                speed="standard",
            ),
        ],
    )
    run_scan(ledger, logs_env(root), empty_home, clock)
    request = ReportRequest(kind="daily", time_zone="UTC", since=DAY, until=DAY)
    with sqlite3.connect(ledger.path) as conn:
        report = build_report(conn, ledger, request, PriceBook.load_default())
    assert report["totals"]["cost_usd"] == "0.096000"  # 64,000 + 32,000 µ$


def local_buckets(ledger: LocalLedger) -> list[dict[str, Any]]:
    """The local ledger's buckets as the v3 wire carries them."""
    columns = ", ".join(COUNT_COLUMNS)
    with sqlite3.connect(ledger.path) as conn:
        rows = conn.execute(
            f"SELECT source, model, bucket_start, revision, {columns} FROM usage_buckets"
        ).fetchall()
    return [
        {
            "bucket_start": iso_utc(int(r[2])),
            "source": r[0],
            "model": r[1],
            "revision": int(r[3]),
            **dict(zip(COUNT_COLUMNS, (int(v) for v in r[4:]), strict=True)),
        }
        for r in rows
    ]


def test_a_v3_push_is_priced_by_the_server_as_the_local_report(
    client: TestClient,
    alice: Persona,
    ledger: LocalLedger,
    billing_logs: Path,
    empty_home: Path,
    clock: Clock,
) -> None:
    """The buckets go up as schema v3 (SQLite and PostgreSQL servers); the server's summary
    prices them at $0.425550 and $0.240000, the local report's figures to the cent."""
    run_scan(ledger, logs_env(billing_logs), empty_home, clock)
    buckets = local_buckets(ledger)
    assert {b["model"] for b in buckets} == {SONNET, OPUS}
    answer = client.post(
        "/v1/ingest",
        content=orjson.dumps({"schema_version": 3, "buckets": buckets}),
        headers={**alice.headers(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["inserted"] == len(buckets)
    summary = client.get(
        "/v1/usage/summary",
        params={"from": DAY.isoformat(), "to": DAY.isoformat(), "tz": "UTC"},
        headers=alice.headers(read=True),
    )
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["totals"]["cost_usd"] == "0.665550"
    by_model = {line["model"]: line["cost_usd"] for line in body["by_model"]}
    assert by_model == {SONNET: "0.425550", OPUS: "0.240000"}


def test_a_bucket_of_many_requests_costs_the_sum_of_its_requests() -> None:
    """The subset counts make a sum of requests price exactly: responses 1 and 2 together."""
    book = PriceBook.load_default()
    price = book.match(SONNET, DAY)
    assert price is not None
    both = {
        "input_tokens": 14_000 + 20_050,
        "cached_input_tokens": 190_000 + 100_000,
        "output_tokens": 2_400 + 1_160,
        "cache_write_tokens": 4_000 + 20_000,
        "cache_write_1h_tokens": 20_000,
        "long_context_input_tokens": 14_000,
        "long_context_cached_input_tokens": 190_000,
        "long_context_cache_write_tokens": 4_000,
        "long_context_output_tokens": 2_400,
    }
    assert str(cost_usd(both, price)) == "0.42555"
