"""Read-side building blocks: windows and caps, heatmap levels, prices in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from usageledger.cli.root import main
from usageledger.errors import RangeTooLarge, ValidationFailed
from usageledger.ledger import windows
from usageledger.ledger.prices_store import PriceBooks, load_prices, merge_books, stored_prices
from usageledger.ledger.pricing import Price, PriceBook, PricingError
from usageledger.ledger.queries import level
from usageledger.store.engine import Database
from usageledger.store.tables import model_prices

NOW = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
SHIPPED = PriceBook.load_default()


def price(model: str = "gpt-5", day: str = "2026-11-01", rate: str = "0.5") -> Price:
    """A price entry whose four rates derive from ``rate``."""
    value = Decimal(rate)
    return Price(
        model=model,
        effective_from=date.fromisoformat(day),
        input=value,
        cached_input=value / 10,
        cache_write=value,
        output=value * 8,
        source="our contract",
        taken=date.fromisoformat(day),
    )


# --- windows -----------------------------------------------------------------------------------


def test_a_day_window_defaults_to_the_last_30_days_in_the_requested_zone() -> None:
    """Late on the 28th in UTC it is already the 29th in Berlin."""
    berlin = windows.day_window(
        "daily", user_zone="Europe/Berlin", tz=None, first=None, last=None, now=NOW
    )
    assert (berlin.first, berlin.last, berlin.from_buckets) == (
        date(2026, 10, 31),
        date(2026, 11, 29),
        False,
    )
    utc = windows.day_window(
        "daily", user_zone="Europe/Berlin", tz="UTC", first=None, last=None, now=NOW
    )
    assert (utc.last, utc.from_buckets) == (date(2026, 11, 28), True)


def test_naming_the_users_own_zone_is_not_a_foreign_zone() -> None:
    """tz equal to the user's zone reads usage_daily and has the long cap."""
    window = windows.day_window(
        "summary", user_zone="UTC", tz="UTC", first="2025-01-01", last="2026-11-28", now=NOW
    )
    assert (window.days, window.from_buckets) == (697, False)


def test_caps_are_checked_before_anything_runs() -> None:
    """Each cap raises RangeTooLarge naming it."""
    with pytest.raises(RangeTooLarge, match="800 days"):
        windows.day_window(
            "models", user_zone="UTC", tz=None, first="2020-01-01", last=None, now=NOW
        )
    with pytest.raises(RangeTooLarge, match="36 months"):
        windows.month_window(user_zone="UTC", tz=None, first="2020-01", last="2026-11", now=NOW)
    with pytest.raises(RangeTooLarge, match="104 weeks"):
        windows.heatmap_window(user_zone="UTC", tz=None, last=None, weeks=200, now=NOW)
    with pytest.raises(RangeTooLarge, match="93 days"):
        windows.day_window(
            "daily", user_zone="UTC", tz="Asia/Tokyo", first="2026-01-01", last=None, now=NOW
        )


def test_a_heatmap_starts_on_a_monday_and_ends_on_to() -> None:
    """Two weeks ending on a Saturday: the Monday before last through that Saturday."""
    window = windows.heatmap_window(user_zone="UTC", tz=None, last="2026-11-28", weeks=2, now=NOW)
    assert (window.first, window.last, window.first.weekday()) == (
        date(2026, 11, 16),
        date(2026, 11, 28),
        0,
    )


def test_another_zone_defaults_to_13_heatmap_weeks() -> None:
    """The default fits under the 93-day cap of foreign zones."""
    window = windows.heatmap_window(
        user_zone="UTC", tz="Asia/Tokyo", last=None, weeks=None, now=NOW
    )
    assert window.days <= windows.FOREIGN_TZ_CAP_DAYS
    assert (window.last - window.first).days // 7 + 1 == windows.DEFAULT_FOREIGN_WEEKS


def test_months_end_on_their_last_day() -> None:
    """February of a leap year has 29 days; December rolls into the next year."""
    assert windows.month_end(date(2028, 2, 1)) == date(2028, 2, 29)
    assert windows.month_end(date(2026, 12, 1)) == date(2026, 12, 31)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-02-29", "calendar"), ("26-11-01", "YYYY-MM-DD"), (" 2026-11-01", "YYYY-MM-DD")],
)
def test_days_are_strict_yyyy_mm_dd(text: str, problem: str) -> None:
    """Only real calendar dates written YYYY-MM-DD are accepted."""
    with pytest.raises(ValidationFailed, match=problem):
        windows.parse_day("from", text)


def test_the_hour_window_is_today_in_the_zone_by_default() -> None:
    """Hourly defaults to today where the request is."""
    window = windows.hour_window(user_zone="UTC", tz="Pacific/Kiritimati", day=None, now=NOW)
    assert (window.first, window.from_buckets) == (date(2026, 11, 29), True)


@pytest.mark.parametrize(
    ("tokens", "most", "expected"),
    [
        (0, 100, 0),
        (1, 100, 1),
        (25, 100, 1),
        (26, 100, 2),
        (75, 100, 3),
        (76, 100, 4),
        (100, 100, 4),
    ],
)
def test_heatmap_levels_are_quarters_of_the_busiest_day(
    tokens: int, most: int, expected: int
) -> None:
    """level = ceil(4 × tokens / most), 0 without tokens."""
    assert level(tokens, most) == expected


# --- prices in the database --------------------------------------------------------------------


def count_prices(db: Database) -> int:
    """Rows in model_prices."""
    return int(
        db.read(lambda c: c.execute(select(func.count()).select_from(model_prices)).scalar_one())
    )


@pytest.mark.usefixtures("db_url")
def test_loading_upserts_by_model_and_date_and_twice_changes_nothing(db: Database) -> None:
    """New entries are added, changed ones updated, equal ones left alone."""
    first = PriceBook([price(), price("house-model", "2026-01-01", "1")])
    result = db.write(lambda c: load_prices(c, first, SHIPPED, now_ms=10))
    assert (result.added, result.updated, result.unchanged) == (2, 0, 0)
    again = db.write(lambda c: load_prices(c, first, SHIPPED, now_ms=20))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
    changed = PriceBook([price(rate="0.25"), price("house-model", "2026-01-01", "1.0")])
    result = db.write(lambda c: load_prices(c, changed, SHIPPED, now_ms=30))
    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)
    stored = db.read(stored_prices)
    assert stored.match("gpt-5", date(2026, 11, 2)) == price(rate="0.25")
    assert count_prices(db) == 2


@pytest.mark.usefixtures("db_url")
def test_the_database_wins_over_the_shipped_table(db: Database) -> None:
    """A loaded entry replaces the shipped one with the same model and date; others stay."""
    shipped_gpt5 = SHIPPED.match("gpt-5", date(2025, 9, 1))
    assert shipped_gpt5 is not None
    same_day = price(day=shipped_gpt5.effective_from.isoformat(), rate="0.1")
    db.write(lambda c: load_prices(c, PriceBook([same_day]), SHIPPED, now_ms=1))
    book = db.read(lambda c: PriceBooks(SHIPPED).current(c))
    assert book.match("gpt-5", date(2025, 9, 1)) == same_day
    assert book.match("claude-sonnet-4-5", date(2025, 10, 1)) == SHIPPED.match(
        "claude-sonnet-4-5", date(2025, 10, 1)
    )


def test_a_loaded_model_named_like_a_shipped_alias_drops_the_alias() -> None:
    """claude-opus-4-0 is a shipped alias; a price for that exact name wins over it."""
    assert SHIPPED.resolve("claude-opus-4-0") == "claude-opus-4"
    merged = merge_books(SHIPPED, PriceBook([price("claude-opus-4-0", "2025-05-22")]))
    assert merged.resolve("claude-opus-4-0") == "claude-opus-4-0"


@pytest.mark.usefixtures("db_url")
def test_aliases_not_in_the_shipped_table_refuse_the_whole_load(db: Database) -> None:
    """There is no alias table: an unknown alias is refused and nothing is written."""
    book = PriceBook([price("house-model", "2026-01-01")], {"house": "house-model"})
    with pytest.raises(PricingError, match="house -> house-model"):
        db.write(lambda c: load_prices(c, book, SHIPPED, now_ms=1))
    assert count_prices(db) == 0
    shipped_alias = PriceBook(
        [price("claude-opus-4", "2025-05-22")], {"claude-opus-4-0": "claude-opus-4"}
    )
    assert db.write(lambda c: load_prices(c, shipped_alias, SHIPPED, now_ms=1)).added == 1


@pytest.mark.usefixtures("db_url")
def test_the_price_cache_rebuilds_only_when_the_table_changes(db: Database) -> None:
    """Same fingerprint, same book object; any load, even in the same millisecond, changes it."""
    books = PriceBooks(SHIPPED)
    empty = db.read(books.current)
    assert empty is SHIPPED
    db.write(lambda c: load_prices(c, PriceBook([price()]), SHIPPED, now_ms=5))
    loaded = db.read(books.current)
    assert loaded is not SHIPPED
    assert db.read(books.current) is loaded
    db.write(lambda c: load_prices(c, PriceBook([price(rate="0.3")]), SHIPPED, now_ms=5))
    cheaper = db.read(books.current)
    assert cheaper.match("gpt-5", date(2026, 11, 2)) == price(rate="0.3")


def write_file(path: Path, book: PriceBook) -> Path:
    """A price file on disk."""
    path.write_bytes(book.to_json())
    return path


def run_load(db_url: str, path: Path) -> tuple[int, str]:
    """`usageledger pricing load PATH` against ``db_url``."""
    env = {"USAGELEDGER_DATABASE_URL": db_url, "USAGELEDGER_LOG_FILE": "off"}
    result = CliRunner().invoke(main, ["pricing", "load", str(path)], env=env)
    return result.exit_code, result.output


@pytest.mark.usefixtures("db_url")
def test_the_load_command_reports_what_it_did(db_url: str, db: Database, tmp_path: Path) -> None:
    """A valid file is loaded and the counts are printed; loading again changes nothing."""
    path = write_file(tmp_path / "prices.json", PriceBook([price()]))
    code, output = run_load(db_url, path)
    assert (code, output) == (0, f"{path}: 1 added, 0 updated, 0 unchanged\n")
    code, output = run_load(db_url, path)
    assert (code, output) == (0, f"{path}: 0 added, 0 updated, 1 unchanged\n")


@pytest.mark.usefixtures("db_url")
def test_the_load_command_refuses_a_bad_file_and_writes_nothing(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    """One bad entry rejects the file with its index and field (exit 2: the command's input
    cannot be used); the table stays empty."""
    document = orjson.loads(PriceBook([price(), price("o9", "2026-01-01")]).to_json())
    document["prices"][1]["output"] = 8.5  # a float: refused
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(document))
    code, output = run_load(db_url, path)
    assert code == 2
    assert "prices[1]" in output
    assert count_prices(db) == 0
