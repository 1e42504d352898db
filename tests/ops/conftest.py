"""Fixtures of the ops tests: a CLI runner over the test database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bench.harness import libpq_url
from usageledger.cli.root import main


class Cli:
    """Runs ``usageledger`` against the test database, evidence lines into a file."""

    def __init__(self, db_url: str, home: Path) -> None:
        self.evidence_path = home / "evidence.log"
        self.env = {
            "USAGELEDGER_DATABASE_URL": libpq_url(db_url),
            "USAGELEDGER_HOME": str(home),
            "USAGELEDGER_LOG_FILE": str(self.evidence_path),
            "COLUMNS": "200",
        }

    def __call__(self, *args: str) -> Result:
        """Invoke the command line with ``args``."""
        return CliRunner(env=self.env).invoke(main, list(args))


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    """The CLI over the test database."""
    home = tmp_path / "cli-home"
    home.mkdir()
    return Cli(db_url, home)
