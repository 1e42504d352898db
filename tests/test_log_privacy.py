"""Log privacy: no token, Authorization value, Idempotency-Key or body ever reaches a log.

A real ``usageledger serve`` (SQLite) is driven with a representative set of requests: every
operation of its OpenAPI schema and every dashboard route, with right, wrong, revoked and
hostile tokens, Idempotency-Keys, bodies and query values carrying a unique marker, raw
requests whose headers hold CR, LF, NUL and folded lines, and a flood that meets the rate
limit. Then its evidence file, its stdout and its stderr must hold none of the tokens or markers,
and every evidence line must be exactly one JSON object.

The evidence lines every ``client`` fixture copied to ``$USAGELEDGER_TEST_LOG_DIR`` (when it is set)
are held to the same structural rules: one JSON object per line whose values come from closed
sets, never a token or a fragment of a body. They are scanned when this module runs and again
when the session ends (as the teardown of a session fixture), so logs of tests that run after
this module are covered too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness import ServeProcess
from usageledger.errors import ErrorCode
from usageledger.evidence import REQUIRED_FIELDS, EvidenceLogger
from usageledger.ledger import accounts
from usageledger.store.engine import Database, DbStats, make_engine
from usageledger.store.migrate import upgrade

LOG_DIR = (
    Path(os.environ["USAGELEDGER_TEST_LOG_DIR"])
    if os.environ.get("USAGELEDGER_TEST_LOG_DIR")
    else None
)

#: What may never appear in any log, whoever wrote the line.
FORBIDDEN = re.compile(
    r"ul_(?:dev|read)_[A-Za-z0-9_\-]{6,}|(?i:bearer\s|basic\s|authorization|idempotency-key)"
    r"|schema_version|bucket_start|input_tokens"  # body fragments (error codes are upper case)
)
#: The shape of each field of an evidence line (extra fields of job lines are checked generically).
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
UUID_OR_DASH = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|-)$")
METHOD = re.compile(r"^[A-Z]{1,16}$")
ERROR_CODES = {str(code) for code in ErrorCode}


def line_problems(line: str) -> list[str]:
    """What is wrong with one evidence line (empty when it is a clean, well-formed line)."""
    if "\r" in line:
        return ["a raw carriage return"]
    try:
        entry = json.loads(line)
    except ValueError:
        return ["not JSON (a value with a raw line break, or a torn line)"]
    if not isinstance(entry, dict):
        return ["not a JSON object"]
    problems = [f"missing {name}" for name in REQUIRED_FIELDS if name not in entry]
    if FORBIDDEN.search(line):
        problems.append(f"a secret or body fragment: {FORBIDDEN.search(line)}")
    checks = {
        "request_id": lambda v: isinstance(v, str) and UUID_OR_DASH.match(v),
        "function": lambda v: isinstance(v, str) and IDENTIFIER.match(v),
        "stage": lambda v: isinstance(v, str) and IDENTIFIER.match(v),
        "status": lambda v: isinstance(v, int),
        "error_code": lambda v: v is None or v in ERROR_CODES,
        "upstream_status": lambda v: v is None or isinstance(v, int),
        "method": lambda v: v is None or (isinstance(v, str) and METHOD.match(v)),
    }
    for name, value in entry.items():
        check = checks.get(name)
        if check is not None and not check(value):
            problems.append(f"{name}={value!r} is not from its closed set")
        elif check is None and isinstance(value, str) and len(value) > 64 and name != "ts":
            problems.append(f"{name} holds a long string ({len(value)} characters)")
        elif isinstance(value, dict | list):
            problems.append(f"{name} holds a structure")
    return problems


def scan(directory: Path) -> list[str]:
    """Problems of every line of every ``*.log`` file under ``directory``."""
    found = []
    for path in sorted(directory.rglob("*.log")):
        for number, line in enumerate(path.read_text("utf-8", "replace").split("\n"), 1):
            if line:
                found += [f"{path.name}:{number}: {p}" for p in line_problems(line)]
    return found


@pytest.fixture(scope="session")
def rescan_at_session_end() -> Iterator[None]:
    """At the end of the session, scan every log the suite copied (later tests included)."""
    yield
    if LOG_DIR is not None and LOG_DIR.exists():
        problems = scan(LOG_DIR)
        if problems:
            pytest.fail(
                f"log privacy: {len(problems)} problems in {LOG_DIR}:\n" + "\n".join(problems[:30])
            )


@pytest.mark.usefixtures("rescan_at_session_end")
def test_logs_captured_during_the_suite_are_clean() -> None:
    """Every evidence line the suite's clients wrote is one JSON object of closed-set values."""
    if LOG_DIR is None:
        pytest.skip("USAGELEDGER_TEST_LOG_DIR is not set; only the served-app audit runs")
    if not LOG_DIR.exists():
        pytest.skip(f"{LOG_DIR} holds no logs yet")
    assert scan(LOG_DIR) == []


def test_the_scan_catches_what_it_forbids() -> None:
    """Tokens, bodies, raw line breaks and open-ended values in a line are all reported."""
    good = {name: None for name in REQUIRED_FIELDS} | {
        "request_id": str(uuid.uuid4()),
        "function": "ingest",
        "stage": "response",
        "status": 200,
        "latency_ms": 1.5,
    }
    assert line_problems(json.dumps(good)) == []
    bad = [
        {**good, "function": "ul_dev_abcdefghijkl"},
        {**good, "error_code": "Bearer xyz"},
        {**good, "stage": "idempotency-key"},
        {**good, "note": '{"schema_version": 2}'},
        {**good, "error_code": "NOT_A_CODE"},
        {**good, "method": "GET /v1/me"},
        {**good, "extra": "x" * 100},
    ]
    for entry in bad:
        assert line_problems(json.dumps(entry)), entry
    assert line_problems(json.dumps(good)[:-1] + ', "x": "a\nb"}')
    assert line_problems(json.dumps(good) + "\r")


def test_a_value_with_line_breaks_stays_on_one_escaped_line(tmp_path: Path) -> None:
    """The evidence logger escapes CR, LF and NUL, so one event is always one line."""
    path = tmp_path / "evidence.log"
    logger = EvidenceLogger(str(path))
    logger.emit(
        request_id="-",
        function="a\nb",
        stage="x\r\ny",
        status=200,
        latency_ms=1.0,
        error_code=None,
        db=DbStats(),
        method="G\x00T",
    )
    logger.close()
    lines = path.read_text().split("\n")
    assert lines[1:] == [""]
    assert json.loads(lines[0])["stage"] == "x\r\ny"


@dataclass
class Served:
    """A running server and what must never show up in its logs."""

    base: str
    port: int
    evidence: Path
    stdout: Path
    stderr: Path
    device: str
    read: str
    flooder: str
    revoked: str
    marker: str = field(default_factory=lambda: f"PRIV{uuid.uuid4().hex[:12]}")
    request_ids: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        """Every token and the marker every hostile value carries."""
        return [self.device, self.read, self.flooder, self.revoked, self.marker]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real ``usageledger serve`` on SQLite with tokens for Alice and Bob."""
    url = f"sqlite:///{tmp_path / 'server.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)

    def people(conn: Any) -> tuple[str, str, str, str]:
        accounts.create_user(conn, "alice", time_zone="Europe/Berlin", now_ms=1)
        accounts.create_user(conn, "bob", time_zone="UTC", now_ms=1)
        device, _ = accounts.issue_token(conn, "alice", kind="device", device_name="lap", now_ms=1)
        read, _ = accounts.issue_token(conn, "alice", kind="read", device_name=None, now_ms=1)
        flooder, _ = accounts.issue_token(conn, "bob", kind="device", device_name="d", now_ms=1)
        revoked, token_id = accounts.issue_token(
            conn, "bob", kind="device", device_name="old", now_ms=1
        )
        accounts.revoke_token(conn, token_id, now_ms=2)
        return device, read, flooder, revoked

    device, read, flooder, revoked = db.write(people)
    engine.dispose()
    evidence, out, err = tmp_path / "evidence.log", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {
        "USAGELEDGER_DATABASE_URL": url,
        "USAGELEDGER_HOME": str(tmp_path),
        "USAGELEDGER_LOG_FILE": str(evidence),
        "USAGELEDGER_RATE_PER_MINUTE": "60",
        "USAGELEDGER_RATE_BURST": "40",
    }
    with ServeProcess(env, log=out, stderr_log=err) as server:
        yield Served(server.base, server.port, evidence, out, err, device, read, flooder, revoked)


def batch_with(marker: str, **extra: Any) -> bytes:
    """A valid one-bucket batch whose model name carries ``marker``."""
    item = {
        "bucket_start": "2026-11-01T10:00:00Z",
        "source": "codex",
        "model": f"{marker}-model",
        "revision": 1,
        "input_tokens": 10,
        "cached_input_tokens": 5,
        "output_tokens": 2,
        "reasoning_output_tokens": 1,
        "total_tokens": 17,
        "cache_write_tokens": 1,
        **extra,
    }
    return json.dumps({"schema_version": 2, "buckets": [item]}).encode()


def drive_every_operation(http: httpx.Client, s: Served) -> int:
    """Each operation of the schema with the right token, a bogus one and marked values."""
    paths = http.get("/openapi.json").json()["paths"]
    sent = 0
    for path, operations in paths.items():
        for method, operation in operations.items():
            token = s.device if path == "/v1/ingest" else s.read
            query = {
                p["name"]: f"{s.marker}-q"
                for p in operation.get("parameters", [])
                if p["in"] == "query"
            }
            body = json.dumps({"display_name": f"{s.marker}-name", "x": s.marker}).encode()
            for headers, params in (
                ({"Authorization": f"Bearer {token}"}, {}),
                ({"Authorization": f"Bearer {token}"}, query),
                ({"Authorization": f"Bearer ul_read_{s.marker}"}, query),
                ({}, {}),
            ):
                keep(
                    s,
                    http.request(
                        method.upper(),
                        path,
                        params=params,
                        content=body if method in ("post", "patch") else None,
                        headers={"Content-Type": "application/json", **headers},
                    ),
                )
                sent += 1
    return sent


def keep(s: Served, response: httpx.Response) -> httpx.Response:
    """Remember the request id of a response the app answered."""
    if "x-request-id" in response.headers:
        s.request_ids.append(response.headers["x-request-id"])
    return response


def drive_ingest(http: httpx.Client, s: Served) -> None:
    """Uploads: good, replayed, reused keys, bad bodies, wrong media types and tokens."""
    good = batch_with(s.marker)
    json_ct = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {s.device}", **json_ct}
    for headers, body in [
        ({**auth, "Idempotency-Key": f"{s.marker}-key"}, good),
        ({**auth, "Idempotency-Key": f"{s.marker}-key"}, good),
        ({**auth, "Idempotency-Key": f"{s.marker}-key"}, batch_with(s.marker, revision=2)),
        ({**auth, "Idempotency-Key": "k" * 300 + s.marker}, good),
        (auth, batch_with(s.marker, **{f"{s.marker}_field": 1})),
        (auth, batch_with(s.marker, source=f"{s.marker}-source")),
        (auth, batch_with(s.marker, model=f"{s.marker}\nline\r\nbreak")),
        (auth, batch_with(s.marker, bucket_start=f"{s.marker}T00:00:00Z")),
        (auth, b"{" + s.marker.encode()),
        (auth, b'{"pad": "' + s.marker.encode() * 100_000 + b'"}'),
        ({**auth, "Content-Type": "text/plain"}, good),
        ({"Authorization": f"Bearer {s.read}", **json_ct}, good),
        ({"Authorization": f"Bearer {s.revoked}", **json_ct}, good),
        ({"Authorization": f"Bearer {s.marker}", **json_ct}, good),
        ({"Authorization": "Basic " + base64.b64encode(s.marker.encode()).decode()}, good),
        ({"Authorization": f"{s.marker} {s.device}", **json_ct}, good),
    ]:
        keep(s, http.post("/v1/ingest", content=body, headers=headers))
    flood = {"Authorization": f"Bearer {s.flooder}", **json_ct}
    statuses = [
        keep(
            s,
            http.post(
                "/v1/ingest",
                content=good,
                headers={**flood, "Idempotency-Key": f"{s.marker}-flood-{i}"},
            ),
        ).status_code
        for i in range(50)
    ]
    assert 429 in statuses


def drive_dashboard(http: httpx.Client, s: Served) -> None:
    """Sign in with a read token (form and cookie), then the pages and the cookie-read API."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    keep(s, http.post("/login", content=f"token={s.marker}", headers=form))
    keep(s, http.post("/login", content=f"token={s.device}", headers=form))
    keep(s, http.post("/login", content=f"a=1&b=2&c=3&d=4&e=5&f={s.marker}", headers=form))
    signed_in = keep(s, http.post("/login", content=f"token={s.read}", headers=form))
    assert signed_in.status_code == 303
    cookie = {"Cookie": f"ul_token={s.read}"}
    for path in ("/", "/leaderboard", "/v1/me", "/favicon.ico"):
        keep(s, http.get(path, headers=cookie))
    keep(s, http.get("/v1/me", headers={"Cookie": f"ul_token={s.marker}"}))
    keep(s, http.post("/logout", headers=cookie))


def raw(s: Served, request: bytes) -> bytes:
    """Send raw bytes on a fresh connection and return what comes back (at most 5 s)."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def drive_hostile_headers(s: Served) -> None:
    """Header values with CR, LF, NUL and folded lines, and a marked request target."""
    m = s.marker.encode()
    token = s.device.encode()
    body = batch_with(s.marker)
    head = b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    length = b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    for extra in (
        b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: " + m + b"-a\rb\r\n",
        b"Authorization: Bearer " + token + b"\nIdempotency-Key: " + m + b"-lf\r\n",
        b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: " + m + b"-nul\x00\r\n",
        b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: " + m + b"\r\n x-" + m + b"\r\n",
        b"Authorization: Bearer " + m + b"\r\rX-Injected: " + m + b"\r\n",
        b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: " + m + b"-\x85\xff\r\n",
    ):
        raw(s, head + extra + length + b"Connection: close\r\n\r\n" + body)
    raw(s, b"GET /v1/me?" + m + b"=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw(s, b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: " + token + m + b"\r\n\r\n")


def test_a_served_app_logs_no_secret_and_one_json_object_per_line(served: Served) -> None:
    """After every route and hostile header, the logs hold no token, marker or raw break."""
    with httpx.Client(base_url=served.base, timeout=30) as http:
        assert drive_every_operation(http, served) > 40
        drive_ingest(http, served)
        drive_dashboard(http, served)
    drive_hostile_headers(served)
    with httpx.Client(base_url=served.base, timeout=30) as http:
        keep(served, http.get("/healthz"))  # the server still answers
    time.sleep(0.2)  # the last line is written after the response is sent

    evidence_text = served.evidence.read_text("utf-8")
    outputs = {
        "evidence log": evidence_text,
        "stdout": served.stdout.read_text("utf-8", "replace"),
        "stderr": served.stderr.read_text("utf-8", "replace"),
    }
    for where, text in outputs.items():
        for secret in served.secrets:
            assert secret not in text, f"{secret[:12]}… appears in the server's {where}"
    lines = evidence_text.split("\n")
    assert lines[-1] == ""
    problems = [f"{n}: {p}" for n, line in enumerate(lines[:-1], 1) for p in line_problems(line)]
    assert problems == []
    logged = [json.loads(line)["request_id"] for line in lines[:-1]]
    assert sorted(served.request_ids) == sorted(r for r in logged if r in served.request_ids)
    assert len(set(logged)) == len(logged)  # one line per request
