"""The local ledger: its identity, time zone, and the event → bucket → rollup write path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from tests.tracker import support
from tests.tracker.conftest import Clock, new_ledger
from tests.tracker.support import layer_sums, sa_engine, sums, table_sums
from usageledger.sources import UsageEvent, resolve_duplicates
from usageledger.store.engine import make_engine
from usageledger.store.migrate import current_revision, head_revision
from usageledger.store.tables import devices, usage_buckets, usage_daily, users
from usageledger.tracker.events import clean_model, short_key
from usageledger.tracker.ledger import (
    LocalLedger,
    change_time_zone,
    device_name,
    machine_time_zone,
    open_ledger,
)

POLICIES = {"claude": "max", "codex": "first", "gemini": "last", "opencode": "last"}


def event(
    key: str,
    *,
    source: str = "claude",
    minute: int = 0,
    hour: int = 10,
    fresh: int = 100,
    output: int = 10,
    model: str = "claude-sonnet-4-5",
    project: str | None = "/p",
) -> UsageEvent:
    """An event on 2025-09-15 at ``hour:minute`` UTC."""
    return UsageEvent(
        source=source,
        event_key=key,
        timestamp=datetime(2025, 9, 15, hour, minute, tzinfo=UTC),
        model=model,
        session_id="s",
        project=project,
        input_tokens=fresh,
        cached_input_tokens=0,
        output_tokens=output,
    )


def write(ledger: LocalLedger, clock: Clock, *events: UsageEvent) -> None:
    """Store events of one source as a scan would."""
    by_source: dict[str, list[UsageEvent]] = {}
    for e in events:
        by_source.setdefault(e.source, []).append(e)
    support.store(ledger, by_source, clock(), POLICIES)


def test_a_new_ledger_is_migrated_with_one_local_user_and_one_device(
    ledger: LocalLedger,
) -> None:
    """The file is at the newest schema, with the user "local" and a device named for the host."""
    assert ledger.path.name == "ledger.db"
    with sa_engine(ledger) as engine, engine.connect() as conn:
        assert current_revision(engine) == head_revision()
        assert conn.execute(select(users.c.name, users.c.time_zone)).all() == [("local", "UTC")]
        assert conn.execute(select(devices.c.name)).scalars().all() == ["test-host"]


def test_reopening_keeps_the_identity_and_the_zone(tmp_path: Path, clock: Clock) -> None:
    """A second open finds the same user, device and zone, whatever the machine now says."""
    first = open_ledger(tmp_path, now_ms=clock(), time_zone="Europe/Berlin", env={}, hostname="a")
    first.close()
    again = open_ledger(tmp_path, now_ms=clock(), env={"TZ": "Asia/Tokyo"}, hostname="b")
    again.close()
    assert (again.user_id, again.device_id) == (first.user_id, first.device_id)
    assert (again.device_name, again.time_zone) == ("a", "Europe/Berlin")


def test_the_zone_setting_wins_over_the_machine_zone(tmp_path: Path, clock: Clock) -> None:
    """USAGELEDGER_DEFAULT_TIME_ZONE names the zone of a new ledger when set."""
    env = {"USAGELEDGER_DEFAULT_TIME_ZONE": "America/New_York", "TZ": "Asia/Tokyo"}
    opened = open_ledger(tmp_path, now_ms=clock(), env=env, hostname="h")
    opened.close()
    assert opened.time_zone == "America/New_York"


def test_the_machine_zone_comes_from_tz() -> None:
    """$TZ (with or without a leading colon) names the machine's zone."""
    assert machine_time_zone({"TZ": ":Europe/Paris"}) == "Europe/Paris"


def test_an_unknown_zone_is_refused(tmp_path: Path, clock: Clock) -> None:
    """A misspelt zone is a ValueError naming it."""
    with pytest.raises(ValueError, match="Mars/Olympus"):
        open_ledger(tmp_path, now_ms=clock(), time_zone="Mars/Olympus", env={})


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("laptop", "laptop"),
        ("Alice's MacBook Pro.local", "Alice-s-MacBook-Pro.local"),
        ("--weird--", "weird"),
        ("x" * 100, "x" * 64),
        ("", "this-device"),
        ("ünïcödé", "n-c-d"),
    ],
)
def test_the_device_is_named_after_the_host_within_the_name_rule(hostname: str, name: str) -> None:
    """Host names are made to fit A-Z a-z 0-9 . _ - (1-64, starting alphanumeric)."""
    assert device_name(hostname) == name


@pytest.mark.parametrize(
    ("policy_source", "copies", "kept_output"),
    [
        ("claude", (10, 50, 20), 50),  # max
        ("codex", (10, 50, 20), 10),  # first
        ("gemini", (10, 50, 20), 20),  # last
    ],
)
def test_two_copies_of_an_event_follow_the_parsers_policy(
    ledger: LocalLedger, clock: Clock, policy_source: str, copies: tuple[int, ...], kept_output: int
) -> None:
    """max keeps the largest copy, first the stored one, last the newest read — across writes."""
    for output in copies:
        write(ledger, clock, event("k", source=policy_source, output=output))
    events, buckets, daily = layer_sums(ledger)
    assert events["output_tokens"] == kept_output
    assert buckets == events == daily


@settings(max_examples=40, deadline=None)
@given(
    copies=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 3),
            st.integers(1, 500),
            st.integers(0, 90),
        ),
        min_size=1,
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 12), max_size=3),
    source=st.sampled_from(["claude", "codex", "gemini"]),
)
def test_any_split_into_writes_gives_the_facts_of_one_resolution(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_file: Path,
    copies: list[tuple[str, int, int, int]],
    cuts: list[int],
    source: str,
) -> None:
    """Whatever batches the copies arrive in, the ledger equals resolve_duplicates of them all."""
    clock = Clock()
    ledger = new_ledger(tmp_path_factory.mktemp("h"), migrated_file, clock)
    try:
        events = [
            event(
                key,
                source=source,
                output=output,
                fresh=fresh,
                minute=minute % 60,
                hour=10 + minute // 60,
            )
            for key, output, fresh, minute in copies
        ]
        bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
        for start, end in pairwise(bounds):
            write(ledger, clock, *events[start:end])
        truth = sums(resolve_duplicates(events, POLICIES[source]))
        events_sum, buckets_sum, daily_sum = layer_sums(ledger)
        assert events_sum == buckets_sum == daily_sum == truth
    finally:
        ledger.close()


def test_changing_the_zone_rebuilds_every_local_day(ledger: LocalLedger, clock: Clock) -> None:
    """Late-evening UTC usage moves to the next local day in Asia/Tokyo; totals stay."""
    write(ledger, clock, event("a", hour=20), event("b", hour=1))
    with sa_engine(ledger) as engine:
        before = table_sums(engine, usage_daily)
    ledger.db.write(lambda conn: change_time_zone(conn, ledger.user_id, "Asia/Tokyo"))
    with sa_engine(ledger) as engine, engine.connect() as conn:
        days = sorted(set(conn.execute(select(usage_daily.c.day)).scalars()))
        assert days == [date(2025, 9, 15), date(2025, 9, 16)]
        assert table_sums(engine, usage_daily) == before


def test_long_keys_and_odd_model_names_are_made_to_fit() -> None:
    """Keys over 255 characters are hashed; models are trimmed to 128 printable characters."""
    assert short_key("k" * 255) == "k" * 255
    assert short_key("k" * 256).startswith("sha256:")
    assert len(short_key("k" * 1000)) <= 255
    assert clean_model(" gpt\x00-5 ") == "gpt?-5"
    assert len(clean_model("m" * 300)) == 128
    assert clean_model("   ") == "unknown"


def test_bucket_revisions_only_grow(ledger: LocalLedger) -> None:
    """A bucket rewritten at an earlier clock still gets a revision above its previous one."""
    write(ledger, Clock(5_000), event("a"))
    write(ledger, Clock(1_000), event("b"))
    with sa_engine(ledger) as engine, engine.connect() as conn:
        revisions = conn.execute(select(usage_buckets.c.revision)).scalars().all()
    assert revisions == [5_002]


def test_the_local_ledger_syncs_at_checkpoints_and_the_server_on_every_commit(
    ledger: LocalLedger, tmp_path: Path
) -> None:
    """synchronous=NORMAL (1) for the local ledger; a server engine keeps FULL (2)."""
    conn = ledger.db.conn  # the tracker's own sqlite3 connection (pragmas are per connection)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    server = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        with server.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2
    finally:
        server.dispose()
