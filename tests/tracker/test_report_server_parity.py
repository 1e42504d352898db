"""One read model: ``report --json`` and the server's read API agree on the same usage.

Claude Code and Codex logs are scanned into a local ledger in Europe/Berlin (by ``report``,
which scans first) and pushed (``login``, ``push``) to the real server on loopback, over
SQLite and over PostgreSQL, whose user lives in the same zone. Then ``report daily``,
``monthly`` and ``models --json`` must give the same tokens and cost per day, month and model
as ``/v1/usage/daily``, ``/monthly`` and ``/models`` — in the user's zone (both read
``usage_daily``) and in America/New_York (both group the half-hours by local day). The usage
sits on the nights of both zones' autumn DST changes (Berlin 2025-10-26, New York 2025-11-02,
25-hour days) and at the window's edges, where the two zones put it on different days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bench.harness import serve_app
from tests.tracker.support import claude_line, codex_lines, jsonl
from usageledger.cli.root import main
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts
from usageledger.ledger.pricing import PriceBook, format_usd
from usageledger.server import create_app
from usageledger.store.engine import Database

HOME_ZONE = "Europe/Berlin"
OTHER_ZONE = "America/New_York"
SONNET = "claude-sonnet-4-5-20250929"
CODEX = "gpt-5-codex"
FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")

#: Claude Code requests: (message id, UTC time, fresh input, output, cache read, cache write).
CLAUDE = [
    ("c1", "2025-10-01T00:10:00Z", 1000, 100, 0, 0),  # Berlin 10-01 02:10 · NY 09-30 20:10
    ("c2", "2025-10-25T22:30:00Z", 2000, 200, 4000, 0),  # Berlin 10-26 00:30 · NY 10-25 18:30
    ("c3", "2025-10-26T23:15:00Z", 3000, 300, 0, 0),  # Berlin 10-27 00:15 · NY 10-26 19:15
    ("c4", "2025-11-02T03:50:00Z", 4000, 400, 0, 0),  # Berlin 11-02 04:50 · NY 11-01 23:50
    ("c5", "2025-11-02T04:45:00Z", 5000, 500, 0, 0),  # Berlin 11-02 05:45 · NY 11-02 00:45
    ("c6", "2025-11-30T23:30:00Z", 6000, 600, 0, 0),  # Berlin 12-01 00:30 · NY 11-30 18:30
]
#: Codex requests: (UTC time, fresh input, cached input, output).
CODEX_TURNS = [
    ("2025-10-26T00:20:00Z", 10_000, 20_000, 1_000),  # Berlin 02:20 CEST · NY 10-25 20:20
    ("2025-10-26T01:40:00Z", 30_000, 0, 3_000),  # Berlin 02:40 CET (again) · NY 10-25 21:40
    ("2025-11-02T05:10:00Z", 50_000, 0, 5_000),  # NY 01:10 EDT · Berlin 06:10
    ("2025-11-02T06:20:00Z", 70_000, 0, 7_000),  # NY 01:20 EST (the second 01:xx) · Berlin 07:20
]


@dataclass
class Server:
    """The app on loopback with alice (Berlin): its URL, a device and a read token."""

    url: str
    device_token: str
    read_token: str


@pytest.fixture
def server(engine: Engine, settings: Settings) -> Iterator[Server]:
    """The real app under uvicorn over each engine (SQLite, PostgreSQL)."""

    def alice(conn: Any) -> tuple[str, str]:
        accounts.create_user(conn, "alice", time_zone=HOME_ZONE, now_ms=1)
        device, _ = accounts.issue_token(conn, "alice", kind="device", device_name="vm", now_ms=1)
        read, _ = accounts.issue_token(conn, "alice", kind="read", device_name=None, now_ms=1)
        return device, read

    device, read = Database(engine).write(alice)
    logger = EvidenceLogger(settings.log_file)
    try:
        with serve_app(create_app(settings, engine=engine, evidence=logger)) as running:
            yield Server(running.base_url, device, read)
    finally:
        logger.close()


def write_logs(root: Path) -> dict[str, str]:
    """The Claude Code transcript and the Codex rollout; the CLI's environment over them."""
    transcript = root / "claude" / "projects" / "-work-app" / "s-1.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_bytes(
        jsonl(
            claude_line(mid, when, model=SONNET, fresh=f, output=o, cache_read=r, cache_write=w)
            for mid, when, f, o, r, w in CLAUDE
        )
    )
    rollout = root / "codex" / "sessions" / "2025" / "10" / "26" / "rollout-2025-10-26.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_bytes(jsonl(codex_lines("codex-1", CODEX_TURNS)))
    home = root / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(root / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": HOME_ZONE,
        "CLAUDE_CONFIG_DIR": str(root / "claude"),
        "CODEX_HOME": str(root / "codex"),
        "GEMINI_DATA_DIR": str(root / "none"),
        "OPENCODE_DATA_DIR": str(root / "none"),
    }


def cli(env: dict[str, str], *args: str) -> Any:
    """Run the command line; the JSON it prints (or None)."""
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout) if "--json" in args else None


def line(row: dict[str, Any]) -> tuple[Any, ...]:
    """The tokens and cost of a row, as both sides print them."""
    return (*(row[f] for f in FIELDS), row["cost_usd"])


@pytest.fixture
def pushed(server: Server, tmp_path: Path) -> tuple[Server, dict[str, str]]:
    """The logs scanned (by a first report) and pushed to ``server``."""
    env = write_logs(tmp_path / "logs")
    cli(env, "report", "daily", "--json")
    cli(env, "login", "--server", server.url, "--token", server.device_token)
    cli(env, "push", "--no-scan")
    return server, env


@pytest.mark.parametrize("zone", [HOME_ZONE, OTHER_ZONE])
def test_report_and_read_api_agree_per_day_month_and_model(
    pushed: tuple[Server, dict[str, str]], zone: str
) -> None:
    """Every day, month and model: the same tokens and cost, to the last printed digit."""
    server, env = pushed
    span = ["--since", "2025-10-01", "--until", "2025-11-30", "--timezone", zone, "--no-scan"]
    ours = {kind: cli(env, "report", kind, "--json", *span) for kind in ("daily", "monthly")}
    ours["models"] = cli(env, "report", "models", "--json", *span)
    headers = {"Authorization": f"Bearer {server.read_token}"}
    days = {"from": "2025-10-01", "to": "2025-11-30", "tz": zone}
    months = {"from": "2025-10", "to": "2025-11", "tz": zone}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        theirs = {
            "daily": client.get("/v1/usage/daily", params=days).json(),
            "monthly": client.get("/v1/usage/monthly", params=months).json(),
            "models": client.get("/v1/usage/models", params=days).json(),
        }

    # The server lists every day of the range; the report only days with usage.
    used = {row["day"]: line(row) for row in theirs["daily"]["days"] if row["total_tokens"]}
    assert {row["day"]: line(row) for row in ours["daily"]["days"]} == used
    assert line(ours["daily"]["totals"]) == line(theirs["daily"]["totals"])
    assert {row["month"]: line(row) for row in ours["monthly"]["months"]} == {
        row["month"]: line(row) for row in theirs["monthly"]["months"]
    }
    assert {(r["source"], r["model"]): line(r) for r in ours["models"]["models"]} == {
        (r["source"], r["model"]): line(r) for r in theirs["models"]["models"]
    }
    assert line(ours["models"]["totals"]) == line(theirs["daily"]["totals"])

    # Worked by hand. Claude's total = fresh + cache read + output (no cache writes here);
    # Codex's = fresh + cached + output.
    if zone == HOME_ZONE:
        # 10-01: c1 1000+100 = 1,100. 10-26 (25 hours): c2 2000+4000+200 = 6,200, Codex
        # 10000+20000+1000 = 31,000 and 30000+3000 = 33,000 → 70,200. 11-02: c4 4,400 +
        # c5 5,500 + Codex 55,000 + 77,000 → 141,900. c6 is on 12-01, outside.
        expected = {"2025-10-01": 1_100, "2025-10-26": 70_200, "2025-11-02": 141_900}
        expected["2025-10-27"] = 3_300  # c3
    else:
        # c1 is on 09-30, outside. 10-25: c2 6,200 + Codex 31,000 + 33,000 = 70,200. 10-26:
        # c3 3,300. 11-01: c4 4,400. 11-02 (25 hours): c5 5,500 + Codex 55,000 + 77,000
        # (01:10 EDT and 01:20 EST) = 137,500. 11-30: c6 6,600.
        expected = {
            "2025-10-25": 70_200,
            "2025-10-26": 3_300,
            "2025-11-01": 4_400,
            "2025-11-02": 137_500,
            "2025-11-30": 6_600,
        }
    assert {row["day"]: row["total_tokens"] for row in ours["daily"]["days"]} == expected

    # Cost by hand from the table's per-million rates (one price each over these weeks).
    book = PriceBook.load_default()
    sonnet, codex = book.match(SONNET, date(2025, 10, 1)), book.match(CODEX, date(2025, 10, 1))
    assert sonnet is not None
    assert codex is not None
    outside = "c6" if zone == HOME_ZONE else "c1"  # on 12-01 in Berlin, on 09-30 in New York
    claude_rows = [c for c in CLAUDE if c[0] != outside]
    fresh = sum(c[2] for c in claude_rows)
    output = sum(c[3] for c in claude_rows)
    read = sum(c[4] for c in claude_rows)
    sonnet_usd = (fresh * sonnet.input + read * sonnet.cached_input + output * sonnet.output) / (
        Decimal(10) ** 6
    )
    # Codex: fresh 160,000, cached 20,000, output 16,000 in both zones.
    codex_usd = (160_000 * codex.input + 20_000 * codex.cached_input + 16_000 * codex.output) / (
        Decimal(10) ** 6
    )
    assert ours["daily"]["totals"]["cost_usd"] == format_usd(sonnet_usd + codex_usd)
