"""A client that hangs up mid-body: its own status and code in the evidence line, no traceback.

The real server runs under uvicorn on loopback over SQLite; a raw socket sends the headers of
an upload that announces 100,000 bytes, a part of the body, and closes.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from bench.harness import serve_app
from tests.conftest import Persona, make_persona
from tests.faults.conftest import LOOPBACK
from tests.helpers import evidence_lines, written_rows
from usageledger import attribution
from usageledger.config import Settings
from usageledger.evidence import EvidenceLogger
from usageledger.server import create_app
from usageledger.store.engine import Database, make_engine

# A served uvicorn run per test: slow, so `make test-fast` leaves it to `make test`.
pytestmark = pytest.mark.slow


@dataclass
class Server:
    """A running server, its database and the persona who uploads."""

    port: int
    direct: Engine
    who: Persona
    evidence: Path


@pytest.fixture
def server(tmp_path: Path, sqlite_template: Path) -> Iterator[Server]:
    """The real app under uvicorn on 127.0.0.1 over a SQLite file of its own."""
    path = tmp_path / "server.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    direct = make_engine(url)
    who = make_persona(Database(direct), "alice", "Europe/Berlin")
    settings = Settings(
        home=tmp_path / "home", database_url=url, log_file=str(tmp_path / "evidence")
    )
    logger = EvidenceLogger(settings.log_file)
    try:
        with serve_app(create_app(settings, evidence=logger), log_level="critical") as running:
            yield Server(running.port, direct, who, Path(settings.log_file))
    finally:
        logger.close()
        direct.dispose()


def hang_up_mid_body(
    s: Server, method: str = "POST", path: str = "/v1/ingest", token: str | None = None
) -> None:
    """Announce 100,000 bytes, send 2,000 of them, close."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token or s.who.device_token}\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection((LOOPBACK, s.port), timeout=5) as sock:
        sock.sendall(head + b'{"schema_version": 2, "buckets": [' + b" " * 2000)
        time.sleep(0.2)  # the server is now waiting for the rest of the body


def ingest_lines(
    s: Server, count: int, timeout_s: float = 10.0, function: str = "ingest"
) -> list[dict[str, Any]]:
    """The evidence lines of ``function``, once ``count`` are written."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [line for line in evidence_lines(s.evidence) if line["function"] == function]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_a_client_that_hangs_up_mid_body_is_a_499_without_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The evidence line says 499 CLIENT_DISCONNECTED (not 500 INTERNAL_ERROR), nothing is logged as
    an error, nothing is written, and the server goes on serving."""
    caplog.set_level(logging.DEBUG)
    hang_up_mid_body(server)
    lines = ingest_lines(server, 1)
    assert len(lines) == 1
    line = lines[0]
    assert (line["status"], line["error_code"]) == (499, "CLIENT_DISCONNECTED")
    assert line["stage"] == "response"
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert written_rows(server.direct) == (0, 0, 0, 0)
    parsed = attribution.parse_line(orjson.dumps(line))
    assert isinstance(parsed, attribution.EvidenceLine)
    assert attribution.classify(parsed).verdict != attribution.Verdict.VENDOR


def test_a_hang_up_in_a_body_fastapi_reads_itself_is_a_499_too(server: Server) -> None:
    """PATCH /v1/me's JSON body is read by FastAPI, which turns a hang-up into its own 400
    "error parsing the body"; the log still says 499 CLIENT_DISCONNECTED, not INVALID_JSON."""
    hang_up_mid_body(server, "PATCH", "/v1/me", token=server.who.read_token)
    lines = ingest_lines(server, 1, function="patch_me")
    assert [(line["status"], line["error_code"]) for line in lines] == [
        (499, "CLIENT_DISCONNECTED")
    ]
