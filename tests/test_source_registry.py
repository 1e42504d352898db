"""Sources are registered: built-in ones in KNOWN_SOURCES, more from USAGELEDGER_EXTRA_SOURCES.

An unknown source is rejected with a message saying how to register it; an operator-added one
is accepted end to end over HTTP; an invalid extra name stops the server from starting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, String

from bench.harness import libpq_url
from tests.conftest import Persona
from tests.factories import batch, bucket
from tests.helpers import bucket_rows, daily_rows, written_rows
from usageledger.config import Settings, SettingsError, load_settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.source_registry import KNOWN_SOURCES, SOURCE_NAME, SourceRegistry
from usageledger.sources import PARSERS
from usageledger.store.tables import metadata

INVALID_NAMES = ["Bad Name", "Codex", "9lives", "dots.not.ok", "a" * 33, "-dash", "ünïcode"]


def post(client: TestClient, who: Persona, body: Any) -> Any:
    """POST a batch as JSON with the persona's device token."""
    return client.post(
        "/v1/ingest",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **who.headers()},
    )


def start_app(home: Path, extra_sources: str) -> None:
    """Build the settings and the app, as a server process does at start-up."""
    create_app(Settings(home=home, log_file="off", extra_sources=extra_sources))


@pytest.fixture
def operator_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, engine: Engine
) -> Iterator[TestClient]:
    """The app built from the environment of an operator who registered two more sources."""
    monkeypatch.setenv("USAGELEDGER_EXTRA_SOURCES", " acme-cli , in_house_agent ")
    monkeypatch.setenv("USAGELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USAGELEDGER_DATABASE_URL", libpq_url(db_url))
    monkeypatch.setenv("USAGELEDGER_LOG_FILE", str(tmp_path / "operator-evidence.log"))
    monkeypatch.setenv("USAGELEDGER_RATE_PER_MINUTE", "60000")
    monkeypatch.setenv("USAGELEDGER_RATE_BURST", "10000")
    settings = load_settings()
    logger = EvidenceLogger(settings.log_file)
    with TestClient(create_app(settings, engine=engine, evidence=logger)) as client:
        yield client
    logger.close()


def test_every_known_source_has_a_valid_name_and_a_mapping_note() -> None:
    """Each built-in source follows the name rule and says how its counts map to ours."""
    for name, note in KNOWN_SOURCES.items():
        assert SOURCE_NAME.match(name), name
        assert len(note) > 20, name


def test_every_built_in_source_has_a_parser_and_every_parser_a_registered_source() -> None:
    """The tracker never produces a bucket the server would reject as UNKNOWN_SOURCE."""
    assert set(PARSERS) == set(KNOWN_SOURCES)


def test_the_longest_source_name_fits_every_source_column() -> None:
    """The registry's name rule allows exactly as many characters as the source columns hold."""
    SourceRegistry(["a" * 32])
    with pytest.raises(ValueError, match="invalid source name"):
        SourceRegistry(["a" * 33])
    columns = [t.c.source for t in metadata.sorted_tables if "source" in t.c]
    assert len(columns) >= 5
    for column in columns:
        if isinstance(column.type, String) and column.type.length is not None:
            assert column.type.length == 32, column.table


@pytest.mark.parametrize("source", sorted(KNOWN_SOURCES))
def test_every_known_source_is_accepted_over_http(
    client: TestClient, alice: Persona, engine: Engine, source: str
) -> None:
    """A bucket of each built-in source is stored under that source."""
    response = post(client, alice, batch(bucket(source=source)))
    assert response.status_code == 200, response.text
    assert [key[2] for key in bucket_rows(engine)] == [source]


def test_an_unknown_source_is_rejected_with_how_to_register_it(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """422 UNKNOWN_SOURCE names the bucket, lists the known sources and the setting to add one."""
    response = post(client, alice, batch(bucket(slot=0), bucket(slot=1, source="acme-cli")))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_SOURCE"
    assert error["details"][0]["loc"] == "buckets[1].source"
    assert "unknown source 'acme-cli'" in error["message"]
    assert f"known sources: {', '.join(sorted(KNOWN_SOURCES))}." in error["message"]
    assert "USAGELEDGER_EXTRA_SOURCES" in error["message"]
    assert written_rows(engine) == (0, 0, 0, 0)


def test_an_operator_added_source_is_accepted_end_to_end(
    operator_client: TestClient, alice: Persona, engine: Engine
) -> None:
    """With USAGELEDGER_EXTRA_SOURCES set, its buckets are stored and rolled up like any other."""
    body = batch(bucket(slot=0, source="acme-cli"), bucket(slot=1, source="in_house_agent"))
    response = post(operator_client, alice, body)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 2
    assert sorted(key[2] for key in bucket_rows(engine)) == ["acme-cli", "in_house_agent"]
    assert sorted(key[3] for key in daily_rows(engine)) == ["acme-cli", "in_house_agent"]


def test_a_server_with_extra_sources_still_rejects_unknown_ones(
    operator_client: TestClient, alice: Persona
) -> None:
    """Registering some sources does not open the allowlist; the message lists the extras too."""
    response = post(operator_client, alice, batch(bucket(source="cursor")))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_SOURCE"
    assert "acme-cli" in error["message"]
    assert "in_house_agent" in error["message"]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_an_invalid_extra_source_stops_the_app_from_starting(tmp_path: Path, name: str) -> None:
    """Building the settings and the app refuses an extra source outside the rule, naming it."""
    with pytest.raises(ValueError, match="invalid source name") as raised:  # pydantic's too
        start_app(tmp_path, f"codex,{name}")
    assert repr(name) in str(raised.value)


def test_load_settings_rejects_an_invalid_extra_source_naming_the_variable() -> None:
    """A bad extra source fails where every other bad setting fails: in load_settings."""
    with pytest.raises(SettingsError, match="USAGELEDGER_EXTRA_SOURCES"):
        load_settings(extra_sources="Bad Name")
