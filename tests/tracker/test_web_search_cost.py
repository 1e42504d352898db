"""Web searches from Claude Code's logs, priced per 1,000 locally and by the server.

Claude Code records ``message.usage.server_tool_use.web_search_requests`` per response;
Anthropic bills $10 per 1,000 searches on top of the tokens
(platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool). Hand-worked at
Claude Opus 4.5's rates ($5 input, $25 output per million):

    response 1: 2,000 input × 5 + 400 output × 25 = 10,000 + 10,000 = 20,000 µ$,
                3 searches × $10 / 1,000 = 30,000 µ$                      → 50,000 µ$
    response 2: 1,000 input × 5 + 200 output × 25 = 5,000 + 5,000 = 10,000 µ$
                1 search = 10,000 µ$                                      → 20,000 µ$

Total $0.070000; without the searches it would be $0.030000.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tests.conftest import Persona
from tests.tracker.conftest import Clock, logs_env
from tests.tracker.support import run_scan
from tests.tracker.test_billing_rules import local_buckets, response, write_logs
from usageledger.ledger.pricing import default_book
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.report import ReportRequest, build_report

OPUS = "claude-opus-4-5-20251101"
DAY = date(2026, 12, 4)


def searching(n: int, when: str, searches: int, **tokens: int) -> dict[str, Any]:
    """A Claude Code response that ran ``searches`` web searches."""
    line = response(n, when, OPUS, **tokens)
    line["message"]["usage"]["server_tool_use"] = {
        "web_search_requests": searches,
        "web_fetch_requests": 1,
    }
    return line


def test_searches_are_priced_in_the_report_and_by_the_server(
    tmp_path: Path,
    ledger: LocalLedger,
    empty_home: Path,
    clock: Clock,
    client: TestClient,
    alice: Persona,
) -> None:
    """A scan, `report`, and a v3 upload of the ledger's buckets all say $0.070000."""
    root = tmp_path / "search-logs"
    write_logs(
        root,
        [
            searching(1, "2026-12-04T10:00:00Z", 3, fresh=2_000, output=400),
            searching(2, "2026-12-04T10:10:00Z", 1, fresh=1_000, output=200),
        ],
    )
    run_scan(ledger, logs_env(root), empty_home, clock)
    request = ReportRequest(kind="daily", time_zone="UTC", since=DAY, until=DAY)
    with sqlite3.connect(ledger.path) as conn:
        report = build_report(conn, ledger, request, default_book())
    assert report["totals"]["cost_usd"] == "0.070000"
    assert report["totals"]["unpriced_models"] == []
    buckets = local_buckets(ledger)
    assert [b["web_search_requests"] for b in buckets] == [4]
    upload = client.post(
        "/v1/ingest",
        content=orjson.dumps({"schema_version": 3, "buckets": buckets}),
        headers={**alice.headers(), "Content-Type": "application/json"},
    )
    assert upload.status_code == 200, upload.text
    summary = client.get(
        "/v1/usage/summary",
        params={"from": DAY.isoformat(), "to": DAY.isoformat(), "tz": "UTC"},
        headers=alice.headers(read=True),
    )
    assert summary.status_code == 200, summary.text
    assert summary.json()["totals"]["cost_usd"] == "0.070000"
