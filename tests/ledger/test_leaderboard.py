"""Leaderboard snapshots: who is on them, in which period, and how they are replaced."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select, update

from tests.conftest import Persona, make_persona
from usageledger.buckets import Counts
from usageledger.cli.root import main
from usageledger.confusables import fold
from usageledger.errors import DatabaseError
from usageledger.ledger import leaderboard, profile
from usageledger.ledger.ingest import BucketWrite, apply_batch
from usageledger.ledger.pricing import PriceBook
from usageledger.store.engine import Database
from usageledger.store.tables import leaderboard_snapshots, users

pytestmark = pytest.mark.usefixtures("db_url")

BOOK = PriceBook.load_default()
#: Saturday 28 November 2026: the week is 23–29 November, the month November.
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(text: str) -> int:
    """Epoch seconds of a UTC ``YYYY-MM-DDTHH:MM``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def use(db: Database, who: Persona, zone: str, *items: tuple[str, str, int]) -> None:
    """Ingest (start, model, input tokens) buckets on the persona's laptop (device 1)."""
    writes = [
        BucketWrite(
            source="codex",
            model=model,
            bucket_start=at(start),
            revision=1,
            counts=Counts(input_tokens=n, total_tokens=n).as_dict(),
        )
        for start, model, n in items
    ]
    db.write(
        lambda c: apply_batch(
            c,
            user_id=who.user_id,
            device_id=1,
            tz=ZoneInfo(zone),
            writes=writes,
            origin="test",
            now_ms=1,
        ),
        user_id=who.user_id,
    )


def join(db: Database, who: Persona, name: str | None = None) -> None:
    """Opt ``who`` in, with a display name or without one."""
    db.write(
        lambda c: profile.update_profile(
            c, who.user_id, leaderboard_opt_in=True, display_name=name
        ),
        user_id=who.user_id,
    )


def refresh(db: Database, now: datetime = NOW) -> dict[str, int]:
    """Run the refresh job in one write transaction."""
    return db.write(lambda c: leaderboard.refresh(c, BOOK, now=now))


def board(db: Database, period: str, user_id: int = 0) -> leaderboard.Board:
    """The first 100 entries of a period."""
    return db.read(
        lambda c: leaderboard.read_board(c, period, limit=100, offset=0, user_id=user_id)
    )


def names_and_tokens(found: leaderboard.Board) -> list[tuple[str, int]]:
    """(display name, total tokens) in rank order."""
    return [(e.display_name, e.counts.total_tokens) for e in found.entries]


def test_only_opted_in_users_are_ranked_by_total_tokens(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Carol never opted in: she is on no board, however much she used."""
    carol = make_persona(db, "carol", "UTC")
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 100))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 300))
    use(db, carol, "UTC", ("2026-11-24T10:00", "gpt-5", 10_000))
    join(db, alice, "Alice")
    join(db, bob)
    assert refresh(db) == {"week": 2, "month": 2, "all": 2}
    for period in leaderboard.PERIODS:
        assert names_and_tokens(board(db, period)) == [("anonymous #1", 300), ("Alice", 100)]


def test_weeks_and_months_are_utc_calendar_periods(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Sunday 23:30 UTC is last week even where it is already Monday; all time has everything."""
    use(
        db,
        alice,
        "Europe/Berlin",
        ("2026-11-22T23:30", "gpt-5", 1),  # Sunday UTC (Monday 00:30 in Berlin): last week
        ("2026-11-23T00:00", "gpt-5", 10),  # Monday UTC: this week
        ("2026-10-31T23:30", "gpt-5", 100),  # October UTC (November in Berlin): last month
        ("2026-11-30T00:00", "gpt-5", 1000),  # next week, still this month
    )
    join(db, alice, "Alice")
    refresh(db)
    week, month, ever = board(db, "week"), board(db, "month"), board(db, "all")
    assert names_and_tokens(week) == [("Alice", 10)]
    assert (week.period_start, week.period_end) == (date(2026, 11, 23), date(2026, 11, 29))
    assert names_and_tokens(month) == [("Alice", 1011)]
    assert (month.period_start, month.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    assert names_and_tokens(ever) == [("Alice", 1111)]
    assert (ever.period_start, ever.built_at_ms) == (None, int(NOW.timestamp() * 1000))


def test_users_without_usage_in_a_period_are_left_out(db: Database, alice: Persona) -> None:
    """An opted-in user with only old usage is on the all-time board alone."""
    use(db, alice, "Europe/Berlin", ("2026-06-01T10:00", "gpt-5", 5))
    join(db, alice, "Alice")
    assert refresh(db) == {"week": 0, "month": 0, "all": 1}


def test_cost_is_stored_with_six_places(db: Database, alice: Persona) -> None:
    """A million gpt-5 input tokens cost $1.250000 on the board."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1_000_000))
    join(db, alice, "Alice")
    refresh(db)
    assert [e.cost_usd for e in board(db, "week").entries] == ["1.250000"]


def test_unpriced_usage_is_counted_per_entry_and_named_only_to_its_owner(
    client: TestClient, db: Database, alice: Persona, bob: Persona
) -> None:
    """An unpriced model costs 0: every entry says how many of its tokens had no price, and
    the model's name is served only to its own user, on any page."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1_000_000))
    use(db, alice, "Europe/Berlin", ("2026-11-02T10:00", "house-model", 7))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 5_000_000))
    use(db, bob, "America/New_York", ("2026-11-24T11:00", "bobs-secret-model", 5))
    join(db, alice, "Alice")
    join(db, bob, "Bob")
    refresh(db)
    week = board(db, "week", user_id=alice.user_id)  # house-model was used an earlier week
    assert [(e.display_name, e.unpriced_tokens) for e in week.entries] == [
        ("Bob", 5),
        ("Alice", 0),
    ]
    assert week.unpriced_models == ()
    month = board(db, "month", user_id=alice.user_id)
    assert [(e.cost_usd, e.unpriced_tokens) for e in month.entries] == [
        ("6.250000", 5),
        ("1.250000", 7),
    ]
    assert month.unpriced_models == ("house-model",)
    for who, own in ((alice, ["house-model"]), (bob, ["bobs-secret-model"])):
        response = client.get(
            "/v1/leaderboard", params={"period": "all", "limit": 1}, headers=who.headers()
        )
        body: dict[str, Any] = response.json()
        assert [e["display_name"] for e in body["entries"]] == ["Bob"]  # Alice is on page 2
        assert body["entries"][0]["unpriced_tokens"] == 5
        assert body["unpriced_models"] == own
    seen_by_alice = client.get("/v1/leaderboard", params={"period": "all"}, headers=alice.headers())
    assert "bobs-secret-model" not in seen_by_alice.text


def test_a_refresh_replaces_the_boards_so_leavers_disappear(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Opting out takes effect at the next refresh; the old rows are gone."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 2))
    join(db, alice, "Alice")
    join(db, bob, "Bob")
    refresh(db)
    db.write(lambda c: profile.update_profile(c, bob.user_id, leaderboard_opt_in=False))
    refresh(db)
    assert names_and_tokens(board(db, "all")) == [("Alice", 1)]


def test_a_failed_refresh_leaves_the_previous_boards_whole(db: Database, alice: Persona) -> None:
    """Delete and insert are one transaction: a failure after both changes nothing."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1))
    join(db, alice, "Alice")
    refresh(db)
    use(db, alice, "Europe/Berlin", ("2026-11-25T10:00", "gpt-5", 1))

    def refresh_then_fail(conn: Connection) -> None:
        leaderboard.refresh(conn, BOOK, now=NOW)
        raise RuntimeError("crash after the insert")

    with pytest.raises(RuntimeError):
        db.write(refresh_then_fail)
    assert names_and_tokens(board(db, "week")) == [("Alice", 1)]
    rows = db.read(
        lambda c: c.execute(select(func.count()).select_from(leaderboard_snapshots)).scalar()
    )
    assert rows == 3


def test_a_reader_sees_one_board_even_when_a_refresh_commits_in_the_middle(
    engine: Any, db: Database, alice: Persona, bob: Persona
) -> None:
    """The board's head, its page and the caller's rank are three statements; a refresh that
    commits between them must not mix the old board with the new one."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 10))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 20))
    join(db, alice, "Alice")
    refresh(db)  # the old board: Alice alone
    join(db, bob, "Bob")
    later = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    other = Database(engine)

    def read_while_refreshing(conn: Connection) -> leaderboard.Board:
        execute = conn.execute
        calls = 0

        def refreshed_after_the_first(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            result = execute(*args, **kwargs)
            calls += 1
            if calls == 1:  # the new board (Bob, Alice) commits on another connection
                other.write(lambda c: leaderboard.refresh(c, BOOK, now=later))
            return result

        conn.execute = refreshed_after_the_first  # type: ignore[method-assign]
        found = leaderboard.read_board(conn, "week", limit=100, offset=0, user_id=alice.user_id)
        assert calls >= 2, "the board was read in one statement: nothing to interleave"
        return found

    seen = db.read(read_while_refreshing)
    assert (seen.built_at_ms, seen.total_entries, seen.your_rank) == (
        int(NOW.timestamp() * 1000),
        1,
        1,
    )
    assert names_and_tokens(seen) == [("Alice", 10)]
    after = board(db, "week", user_id=alice.user_id)
    assert (after.built_at_ms, after.total_entries, after.your_rank) == (
        int(later.timestamp() * 1000),
        2,
        2,
    )
    assert names_and_tokens(after) == [("Bob", 20), ("Alice", 10)]


def test_the_callers_own_rank_is_found_and_pages_are_cut(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """your_rank is the caller's place; limit and offset page the entries."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 2))
    join(db, alice, "Alice")
    join(db, bob, "Bob")
    refresh(db)
    page = db.read(
        lambda c: leaderboard.read_board(c, "week", limit=1, offset=1, user_id=alice.user_id)
    )
    assert (page.total_entries, page.your_rank) == (2, 2)
    assert names_and_tokens(page) == [("Alice", 1)]
    assert board(db, "week", user_id=999).your_rank is None


def test_the_endpoint_serves_the_snapshot_to_any_token(
    client: TestClient, db: Database, alice: Persona, bob: Persona
) -> None:
    """Any valid token reads the board; entries carry no ids or user names."""
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 2))
    join(db, bob, "Bob")
    refresh(db)
    response = client.get("/v1/leaderboard", params={"period": "all"}, headers=alice.headers())
    body: dict[str, Any] = response.json()
    assert body["total_entries"] == 1
    (entry,) = body["entries"]
    assert entry["display_name"] == "Bob"
    assert "user_id" not in entry
    assert "bob" not in response.text


def test_the_refresh_command_builds_the_boards(db_url: str, db: Database, alice: Persona) -> None:
    """`usageledger leaderboard refresh --at …` prints the entries per period."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 1))
    join(db, alice, "Alice")
    env = {"USAGELEDGER_DATABASE_URL": db_url, "USAGELEDGER_LOG_FILE": "off"}
    result = CliRunner().invoke(
        main, ["leaderboard", "refresh", "--at", "2026-11-28T12:00:00"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "week: 1 entries, month: 1 entries, all: 1 entries" in result.output
    assert names_and_tokens(board(db, "week")) == [("Alice", 1)]


def test_a_failed_refresh_command_logs_the_real_error(
    db_url: str, db: Database, alice: Persona, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's evidence line carries the domain error (503 here), not a success or an
    interruption, and the command exits 1."""

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise DatabaseError("the database is unavailable; retry later")

    monkeypatch.setattr(leaderboard, "refresh", unavailable)
    log = tmp_path / "jobs.log"
    env = {"USAGELEDGER_DATABASE_URL": db_url, "USAGELEDGER_LOG_FILE": str(log)}
    result = CliRunner().invoke(main, ["leaderboard", "refresh"], env=env)
    assert result.exit_code == 1, result.output
    assert "the database is unavailable" in result.output
    (line,) = [orjson.loads(raw) for raw in log.read_bytes().splitlines()]
    assert (line["function"], line["status"], line["error_code"]) == (
        "leaderboard_refresh",
        503,
        "DATABASE_UNAVAILABLE",
    )


def legacy_name(db: Database, who: Persona, name: str, key: str | None) -> None:
    """Give ``who`` a name as stored before names were folded: no check, the key as given."""
    db.write(
        lambda c: c.execute(
            update(users)
            .where(users.c.user_id == who.user_id)
            .values(display_name=name, display_name_key=key, leaderboard_opt_in=True)
        )
    )


def test_an_old_look_alike_of_anonymous_is_shown_as_anonymous(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Bob's "аnonymous #1" (Cyrillic а, set before the fold) never reaches the board: he is
    anonymous #2 there, so only one entry reads like anonymous #1 — the real one."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 300))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 100))
    join(db, alice)
    legacy_name(db, bob, "\u0430nonymous #1", fold("\u0430nonymous #1"))
    refresh(db)
    assert names_and_tokens(board(db, "week")) == [("anonymous #1", 300), ("anonymous #2", 100)]


def test_a_name_whose_key_another_user_holds_is_shown_as_anonymous(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Bob kept "ALICE" from before keys (Alice holds its key): the board shows one Alice."""
    use(db, alice, "Europe/Berlin", ("2026-11-24T10:00", "gpt-5", 100))
    use(db, bob, "America/New_York", ("2026-11-24T10:00", "gpt-5", 300))
    join(db, alice, "alice")
    legacy_name(db, bob, "ALICE", None)
    refresh(db)
    assert names_and_tokens(board(db, "week")) == [("anonymous #1", 300), ("alice", 100)]
