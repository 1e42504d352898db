"""Push against the real server on loopback: an interrupted push resumes to exact totals."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tests.tracker.conftest import Clock, LiveServer, logs_env
from tests.tracker.support import run_scan, sa_engine
from usageledger.buckets import COUNT_COLUMNS
from usageledger.store.tables import ingest_receipts, usage_buckets, usage_daily
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.login import Login
from usageledger.tracker.push import Uploader, push


class Killed(Exception):
    """The push process died."""


class KillAfter(httpx.BaseTransport):
    """A real HTTP transport that dies after ``batches`` answered requests.

    With ``lose_response`` the fatal request still reaches the server (it applies the batch)
    and only the answer is lost; otherwise the process dies before sending it.
    """

    def __init__(self, batches: int, *, lose_response: bool) -> None:
        self.inner = httpx.HTTPTransport()
        self.left = batches
        self.lose_response = lose_response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Forward the request, or die."""
        if self.left == 0:
            if self.lose_response:
                self.inner.handle_request(request).read()
            raise Killed
        self.left -= 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        """Close the real transport."""
        self.inner.close()


def buckets_of(engine: Engine, user_id: int) -> dict[tuple[str, str, int], tuple[int, ...]]:
    """Non-zero buckets of one user: (source, model, start) → counts."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                usage_buckets.c.source,
                usage_buckets.c.model,
                usage_buckets.c.bucket_start,
                *(usage_buckets.c[c] for c in COUNT_COLUMNS),
            ).where(usage_buckets.c.user_id == user_id)
        ).all()
    return {(r[0], r[1], int(r[2])): tuple(int(v) for v in r[3:]) for r in rows if any(r[3:])}


def receipts(engine: Engine) -> int:
    """Ingest requests the server applied (a replayed key adds none)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ingest_receipts)).scalar_one())


def daily_total(engine: Engine, user_id: int) -> int:
    """All tokens in a user's usage_daily."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.sum(usage_daily.c.total_tokens)).where(usage_daily.c.user_id == user_id)
            ).scalar_one()
            or 0
        )


@pytest.mark.parametrize("lose_response", [False, True])
def test_a_push_killed_half_way_and_restarted_leaves_the_server_with_the_local_totals(
    live_server: LiveServer,
    ledger: LocalLedger,
    logs: Path,
    empty_home: Path,
    clock: Clock,
    lose_response: bool,
) -> None:
    """Kill after two batches (before sending, or after the server applied the third); resume."""
    run_scan(ledger, logs_env(logs), empty_home, clock)
    login = Login(live_server.url, live_server.token, 1)
    dying = Uploader(login, transport=KillAfter(2, lose_response=lose_response))
    with pytest.raises(Killed):
        push(ledger, login, clock=clock, uploader=dying, max_buckets=3)
    dying.close()
    partial = buckets_of(live_server.engine, live_server.user_id)
    assert len(partial) == (9 if lose_response else 6)

    summary = push(ledger, login, clock=clock, max_buckets=3)
    with sa_engine(ledger) as engine:
        local = buckets_of(engine, ledger.user_id)
        assert buckets_of(live_server.engine, live_server.user_id) == local
        assert daily_total(live_server.engine, live_server.user_id) == daily_total(
            engine, ledger.user_id
        )
    assert summary.outcomes["conflicts"] == 0
    # 13 buckets in batches of 3 make 5 requests; the lost one was replayed, not re-applied.
    assert receipts(live_server.engine) == 5

    again = push(ledger, login, clock=clock)
    assert again.batches == 0


def test_new_usage_after_a_push_updates_the_server(
    live_server: LiveServer, ledger: LocalLedger, logs: Path, empty_home: Path, clock: Clock
) -> None:
    """Appending usage and pushing again moves the server to the new local totals."""
    env = logs_env(logs)
    run_scan(ledger, env, empty_home, clock)
    login = Login(live_server.url, live_server.token, 1)
    push(ledger, login, clock=clock)
    transcript = next((logs / "claude").rglob("11111111-*.jsonl"))  # ends with a newline
    line = (
        b'{"type":"assistant","timestamp":"2025-09-16T01:05:00Z","sessionId":"x","requestId":"r9",'
        b'"message":{"id":"m9","model":"claude-sonnet-4-20250514","usage":{"input_tokens":7,'
        b'"output_tokens":3}}}\n'
    )
    with transcript.open("ab") as handle:
        handle.write(line)
    run_scan(ledger, env, empty_home, clock)
    summary = push(ledger, login, clock=clock)
    assert summary.buckets == 1
    assert summary.outcomes["updated"] == 1
    with sa_engine(ledger) as engine:
        assert buckets_of(live_server.engine, live_server.user_id) == buckets_of(
            engine, ledger.user_id
        )
