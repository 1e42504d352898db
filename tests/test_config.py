"""Settings are typed, validated and fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from usageledger.cli.root import main as cli_main
from usageledger.config import (
    MODEL_COLUMN_LENGTH,
    TIME_ZONE_COLUMN_LENGTH,
    Settings,
    SettingsError,
    check_time_zone,
    load_settings,
)
from usageledger.settings_rules import check_home
from usageledger.tracker.settings import RULES, TrackerSettings, load_tracker_settings


def test_the_default_database_is_a_sqlite_file_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a URL the server uses server.db in USAGELEDGER_HOME."""
    monkeypatch.setenv("USAGELEDGER_HOME", str(tmp_path))
    monkeypatch.delenv("USAGELEDGER_DATABASE_URL", raising=False)
    assert load_settings().resolved_database_url == f"sqlite:///{tmp_path / 'server.db'}"


def test_a_postgresql_url_uses_psycopg_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """postgresql:// is served by the psycopg 3 driver."""
    monkeypatch.setenv("USAGELEDGER_DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().resolved_database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USAGELEDGER_DATABASE_URL", "mysql://x"),
        ("USAGELEDGER_MAX_BUCKETS", "0"),
        ("USAGELEDGER_MAX_BODY_BYTES", "-5"),
        ("USAGELEDGER_BUCKET_FLOOR", "not-a-date"),
        ("USAGELEDGER_DEFAULT_TIME_ZONE", "Nowhere/Land"),
        ("USAGELEDGER_RATE_PER_MINUTE", "0"),
        ("USAGELEDGER_LOG_FILE", " "),
        ("USAGELEDGER_MAX_MODEL_LENGTH", "129"),
        ("USAGELEDGER_MAX_MODEL_LENGTH", "512"),
        ("USAGELEDGER_TRUSTED_PROXIES", "*"),
        ("USAGELEDGER_TRUSTED_PROXIES", "127.0.0.1,proxy.local"),
        ("USAGELEDGER_TRUSTED_PROXIES", "10.0.0.1/8"),
    ],
)
def test_a_bad_value_fails_loudly_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each invalid value raises SettingsError naming the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


@pytest.mark.parametrize("zone", ["", "../etc/passwd", "/etc/localtime", "Europe/Nowhere", " UTC"])
def test_unknown_time_zones_are_rejected(zone: str) -> None:
    """Only IANA names load."""
    with pytest.raises(ValueError, match="unknown time zone"):
        check_time_zone(zone)


def test_settings_are_frozen() -> None:
    """Settings cannot change after start-up."""
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.max_buckets = 5  # type: ignore[misc]


def test_the_model_length_setting_cannot_exceed_the_model_column() -> None:
    """The largest accepted model name fits every ``model`` column (a longer one was a 500
    on PostgreSQL), and the cap's literal is the column's length."""
    from usageledger.store import tables

    lengths = {
        table.c.model.type.length
        for table in tables.metadata.tables.values()
        if "model" in table.c and table.c.model.type.length is not None
    }
    assert lengths == {MODEL_COLUMN_LENGTH}
    assert Settings.model_fields["max_model_length"].default == MODEL_COLUMN_LENGTH
    assert load_settings(max_model_length=MODEL_COLUMN_LENGTH).max_model_length == 128
    with pytest.raises(SettingsError, match="USAGELEDGER_MAX_MODEL_LENGTH"):
        load_settings(max_model_length=MODEL_COLUMN_LENGTH + 1)


def test_every_string_cap_fits_its_column() -> None:
    """Source, user, device and display names and time zones are capped at their columns."""
    from usageledger.ledger import accounts, profile
    from usageledger.source_registry import SOURCE_NAME
    from usageledger.store import tables

    c = tables.metadata.tables
    longest = {
        "source": ("a" * 32, "a" * 33, SOURCE_NAME.fullmatch, c["usage_buckets"].c.source),
        "name": ("a" * 64, "a" * 65, accounts.NAME.fullmatch, c["users"].c.name),
        "device": ("a" * 64, "a" * 65, accounts.NAME.fullmatch, c["devices"].c.name),
    }
    for what, (fits, too_long, accepts, column) in longest.items():
        assert column.type.length == len(fits), what
        assert accepts(fits), what
        assert not accepts(too_long), what
    assert c["users"].c.display_name.type.length == profile.DISPLAY_NAME_MAX
    assert c["users"].c.time_zone.type.length == TIME_ZONE_COLUMN_LENGTH
    with pytest.raises(ValueError, match="unknown time zone"):
        check_time_zone("Europe/" + "x" * TIME_ZONE_COLUMN_LENGTH)


def test_no_proxy_is_trusted_unless_one_is_configured() -> None:
    """By default nobody's X-Forwarded-For is believed, not even a loopback peer's."""
    assert Settings().trusted_proxy_list == []
    assert Settings(trusted_proxies="127.0.0.1,::1").trusted_proxy_list == ["127.0.0.1", "::1"]
    assert Settings(trusted_proxies=" 10.0.0.0/8, 192.0.2.7 ").trusted_proxy_list == [
        "10.0.0.0/8",
        "192.0.2.7",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USAGELEDGER_DEFAULT_TIME_ZONE", "Nowhere/Land"),
        ("USAGELEDGER_DEFAULT_TIME_ZONE", ""),
        ("USAGELEDGER_HOME", ""),
    ],
)
def test_the_tracker_reader_and_the_server_settings_refuse_the_same_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A value the server's Settings refuse, the tracker's light reader refuses, naming it."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()
    with pytest.raises(SettingsError, match=name):
        load_tracker_settings()


def test_the_tracker_reader_checks_with_the_server_settings_rules() -> None:
    """One definition per rule: the light reader's rules are the ones config.Settings uses."""
    assert RULES["DEFAULT_TIME_ZONE"] is check_time_zone
    assert RULES["HOME"] is check_home


def test_the_tracker_reader_defaults_like_the_server_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Unset: the same home; set: the same home and zone."""
    monkeypatch.delenv("USAGELEDGER_HOME", raising=False)
    monkeypatch.delenv("USAGELEDGER_DEFAULT_TIME_ZONE", raising=False)
    assert load_tracker_settings() == TrackerSettings(load_settings().home, None)
    monkeypatch.setenv("USAGELEDGER_HOME", str(tmp_path))
    monkeypatch.setenv("USAGELEDGER_DEFAULT_TIME_ZONE", "Asia/Tokyo")
    light, full = load_tracker_settings(), load_settings()
    assert (light.home, light.default_time_zone) == (full.home, full.default_time_zone)


def test_a_bad_tracker_setting_exits_2_with_the_variable_name(tmp_path: Path) -> None:
    """`usageledger status` with a bad zone: exit status 2 and the variable's name."""
    env = {"USAGELEDGER_HOME": str(tmp_path), "USAGELEDGER_DEFAULT_TIME_ZONE": "Mars/Base"}
    result = CliRunner().invoke(cli_main, ["status"], env=env)
    assert result.exit_code == 2
    assert "USAGELEDGER_DEFAULT_TIME_ZONE" in result.stderr
