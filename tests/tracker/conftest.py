"""Fixtures of the tracker tests: a local ledger in a temp home, copies of the sample logs.

Nothing here reads the real home directory: every source is pointed at a temporary copy of
tests/sources/samples through its directory variable, and ``home`` is an empty temp dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bench.harness import serve_app
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import upgrade
from usageledger.tracker.ledger import LocalLedger, open_ledger

SAMPLES = Path(__file__).resolve().parent.parent / "sources" / "samples"
START_MS = 1_790_000_000_000  # 2026-09-21, after every sample


class Clock:
    """A fake Unix-ms clock that moves 1 ms per reading (revisions always grow)."""

    def __init__(self, start: int = START_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        """The next millisecond."""
        self.now += 1
        return self.now


def logs_env(root: Path) -> dict[str, str]:
    """Directory variables pointing every source at the logs copied under ``root``."""
    return {
        "CODEX_HOME": str(root / "codex"),
        "CLAUDE_CONFIG_DIR": str(root / "claude"),
        "GEMINI_DATA_DIR": str(root / "gemini" / "tmp"),
        "OPENCODE_DATA_DIR": f"{root / 'opencode'},{root / 'opencode-backup'}",
    }


@pytest.fixture
def clock() -> Clock:
    """A fake clock."""
    return Clock()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A private copy of the sample logs (tests may append, delete and replace files)."""
    root = tmp_path / "logs"
    shutil.copytree(SAMPLES, root)
    return root


def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a command-line user with nothing yet: an empty home, the data,
    config and XDG data folders in temp (the real ones are never read) and UTC days."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


@pytest.fixture
def cli_env(tmp_path: Path, logs: Path) -> dict[str, str]:
    """:func:`user_env` whose logs are the sample copies, on a wide terminal."""
    return {**user_env(tmp_path), "COLUMNS": "200", **logs_env(logs)}


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    """An empty home directory for parsers' defaults (never the real one)."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty ledger file at the newest schema, copied by ``new_ledger`` (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def new_ledger(home: Path, template: Path, clock: Clock, **options: Any) -> LocalLedger:
    """Open a fresh ledger under ``home`` (UTC, host test-host unless told otherwise)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, home / "ledger.db")
    options.setdefault("time_zone", "UTC")
    options.setdefault("env", {})
    options.setdefault("hostname", "test-host")
    return open_ledger(home, now_ms=clock(), **options)


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock, migrated_file: Path) -> Iterator[LocalLedger]:
    """A fresh local ledger in UTC on a machine called test-host."""
    opened = new_ledger(tmp_path / "data", migrated_file, clock)
    yield opened
    opened.close()


@dataclass
class LiveServer:
    """A uvicorn server on 127.0.0.1 over a temp SQLite database, with alice's device token."""

    url: str
    engine: Engine
    token: str
    user_id: int


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real app under uvicorn in a thread on loopback (``bench.harness.serve_app``)."""
    url = f"sqlite:///{tmp_path / 'server.db'}"
    engine = make_engine(url)
    upgrade(engine)

    def persona(conn: Any) -> tuple[str, int]:
        user_id = accounts.create_user(conn, "alice", time_zone="UTC", now_ms=1)
        secret, _ = accounts.issue_token(conn, "alice", kind="device", device_name="vm", now_ms=1)
        return secret, user_id

    token, user_id = Database(engine).write(persona)
    settings = Settings(
        home=tmp_path / "server-home",
        database_url=url,
        log_file=str(tmp_path / "evidence.log"),
        rate_per_minute=60_000,
        rate_burst=10_000,
    )
    logger = EvidenceLogger(settings.log_file)
    app = create_app(settings, engine=engine, evidence=logger)
    try:
        with serve_app(app) as running:
            yield LiveServer(running.base_url, engine, token, user_id)
    finally:
        logger.close()
        engine.dispose()
