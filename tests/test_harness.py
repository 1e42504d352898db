"""The shared harness (bench/harness.py): URL forms and databases kept across runs."""

from __future__ import annotations

import psycopg
import pytest

from bench.harness import (
    PG_ADMIN,
    drop_database,
    ensure_database,
    free_port,
    libpq_url,
    scratch_name,
    server_version,
)
from tests.conftest import require_postgres


def test_libpq_url_drops_the_driver_and_keeps_the_rest() -> None:
    """User, password, host, port, database and query survive; only the scheme changes."""
    url = "postgresql+psycopg://ledger:s3cret@127.0.0.1:5433/usage?sslmode=disable"
    assert libpq_url(url) == "postgresql://ledger:s3cret@127.0.0.1:5433/usage?sslmode=disable"
    assert libpq_url("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"
    assert libpq_url("sqlite:////tmp/ledger.db") == "sqlite:////tmp/ledger.db"


def test_the_version_of_a_server_that_does_not_answer_is_unreachable() -> None:
    """Nothing listens on the port: the version says so instead of raising."""
    assert server_version(f"postgresql://postgres@127.0.0.1:{free_port()}/x") == "unreachable"


@pytest.mark.postgres
def test_ensure_database_creates_once_and_keeps_what_is_there() -> None:
    """The first call creates the database, the second finds it (with its table) as it was."""
    require_postgres()
    name = scratch_name("ul_test_ensure")
    try:
        url = ensure_database(name)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        assert ensure_database(name) == url
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        assert server_version(PG_ADMIN)[:1].isdigit()
    finally:
        drop_database(name)
