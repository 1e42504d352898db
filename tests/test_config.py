"""Settings are typed, validated and fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from usageledger.config import Settings, SettingsError, check_time_zone, load_settings


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
