"""`usageledger demo` (and `serve --demo`) seed a realistic, idempotent history through the
write path."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from tests.helpers import bucket_rows, daily_rows, expected_daily
from usageledger import demo as demo_module
from usageledger.cli.root import main
from usageledger.demo import seed_history
from usageledger.ledger import accounts
from usageledger.store.engine import Database, make_engine
from usageledger.store.tables import devices, users


def test_the_demo_history_has_devices_models_and_a_weekly_rhythm(
    db: Database, engine: Engine
) -> None:
    """Several devices and models; weekdays carry more usage than weekends."""
    summary = seed_history(db, days=84, end=date(2026, 11, 27), now_ms=1)
    assert summary.inserted == summary.buckets > 1000
    rows = bucket_rows(engine)
    with engine.connect() as conn:
        assert {r.name for r in conn.execute(select(devices.c.name))} == {
            "laptop",
            "desktop",
            "ci-runner",
        }
    assert len({key[3] for key in rows}) >= 5
    tz = ZoneInfo("Europe/Berlin")
    by_weekday: Counter[bool] = Counter()
    for key, value in rows.items():
        weekend = datetime.fromtimestamp(key[4], UTC).astimezone(tz).weekday() >= 5
        by_weekday[weekend] += value[5]  # total_tokens
    # Five weekdays against two weekend days: per day, weekdays are well above weekends.
    assert by_weekday[False] / 5 > 3 * by_weekday[True] / 2


def test_seeding_twice_changes_nothing(db: Database, engine: Engine) -> None:
    """Same seed, same values: the second run inserts nothing and rollups stay exact."""
    first = seed_history(db, days=20, end=date(2026, 11, 27), now_ms=1)
    before = bucket_rows(engine)
    second = seed_history(db, days=20, end=date(2026, 11, 27), now_ms=2)
    assert second.inserted == 0
    assert second.buckets == first.buckets
    assert bucket_rows(engine) == before
    user_ids = {key[0] for key in before}
    assert daily_rows(engine) == expected_daily(engine, dict.fromkeys(user_ids, "Europe/Berlin"))


class _Frozen(datetime):
    """``datetime`` whose ``now`` stays at one instant (``demo`` seeds up to half an hour
    before now: a half-hour or midnight passing between two runs would add buckets)."""

    at = datetime.now(UTC)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return cls.at.astimezone(tz) if tz else cls.at.replace(tzinfo=None)


def _demo_buckets(url: str, user: str) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """``usage_buckets`` of ``user`` in the database at ``url``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            user_id = conn.execute(select(users.c.user_id).where(users.c.name == user)).scalar_one()
        return {k: v for k, v in bucket_rows(engine).items() if k[0] == user_id}
    finally:
        engine.dispose()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh SQLite server database (not yet migrated) under a temporary home, and a clock
    that stands still for the test."""
    monkeypatch.setattr(demo_module, "datetime", _Frozen)
    _Frozen.at = datetime.now(UTC)
    return {
        "USAGELEDGER_HOME": str(tmp_path / "home"),
        "USAGELEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
        "USAGELEDGER_LOG_FILE": "off",
    }


def test_the_demo_command_seeds_once_and_a_second_run_adds_nothing(
    cli_env: dict[str, str],
) -> None:
    """`usageledger demo --days 7` migrates a fresh SQLite file, writes buckets for the demo
    user up to half an hour ago, and run again writes nothing new."""
    runner = CliRunner(env=cli_env)
    first = runner.invoke(main, ["demo", "--days", "7"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    url = cli_env["USAGELEDGER_DATABASE_URL"]
    written = _demo_buckets(url, "demo")
    assert written
    assert re.search(
        rf"demo: {len(written):,} buckets over 7 days \({len(written):,} new\)", first.output
    )
    newest = max(key[4] for key in written)
    assert newest <= _Frozen.at.timestamp() - 1800  # nothing in the last half-hour or later
    second = runner.invoke(main, ["demo", "--days", "7"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert re.search(rf"demo: {len(written):,} buckets over 7 days \(0 new\)", second.output)
    assert _demo_buckets(url, "demo") == written


def test_serve_demo_seeds_the_demo_user_and_prints_working_tokens(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`usageledger serve --demo` (with the server itself stubbed out) seeds the demo history,
    prints a device token, a read token that authenticates, and a curl example; a second start
    seeds nothing new."""
    from usageledger.cli import serve as cli_serve

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "usageledger.cli.serve.uvicorn.run", lambda *args, **kwargs: started.append(kwargs)
    )
    runner = CliRunner(env=cli_env)
    first = runner.invoke(main, ["serve", "--demo", "--port", "8799"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert [(s["host"], s["port"]) for s in started] == [("127.0.0.1", 8799)]
    url = cli_env["USAGELEDGER_DATABASE_URL"]
    written = _demo_buckets(url, cli_serve.DEMO_USER)
    assert len(written) > 1000  # the default 180 days
    assert f"demo history: {len(written):,} buckets over 180 days" in first.output
    device = re.search(r"device token \(shown once\): (ul_dev_\S+)", first.output)
    read = re.search(r"sign in with the read token (ul_read_\S+)", first.output)
    assert device
    assert read
    assert "curl -sS -X POST http://127.0.0.1:8799/v1/ingest" in first.output
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            as_reader = accounts.authenticate(conn, read.group(1))
            as_device = accounts.authenticate(conn, device.group(1))
            demo_id = conn.execute(
                select(users.c.user_id).where(users.c.name == cli_serve.DEMO_USER)
            ).scalar_one()
    finally:
        engine.dispose()
    assert as_reader is not None
    assert (as_reader.kind, as_reader.user_id) == ("read", demo_id)
    assert as_device is not None
    assert (as_device.kind, as_device.user_id) == ("device", demo_id)
    again = runner.invoke(main, ["serve", "--demo", "--port", "8799"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert _demo_buckets(url, cli_serve.DEMO_USER) == written


def test_an_end_in_the_future_seeds_nothing_after_the_last_whole_half_hour(
    db: Database, engine: Engine
) -> None:
    """Ingest refuses future buckets; the demo never writes one either, whatever `end` says."""
    clock = datetime(2026, 11, 25, 14, 10, tzinfo=UTC)  # a Wednesday afternoon
    end = clock.date() + timedelta(days=2)
    summary = seed_history(db, days=6, end=end, now_ms=1, now=clock)  # 3 days past, 3 ahead
    now = int(clock.timestamp())
    starts = [key[4] for key in bucket_rows(engine)]
    assert starts, "the days before today were seeded"
    assert summary.buckets == len(starts)
    assert max(starts) <= now - 1800  # the newest bucket's half-hour has ended
    assert max(starts) > now - 86400  # today's office hours up to now were seeded
