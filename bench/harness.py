"""The one harness of the tests, the benchmarks and the crash audit.

- :func:`free_port`: a TCP port nobody listens on right now, on loopback.
- :func:`pg_database`: a throw-away PostgreSQL database on the server at
  ``USAGELEDGER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``), created for
  one run and dropped after it; :func:`ensure_database` keeps one across runs;
  :func:`pg_problem` says why that server cannot be reached and :func:`server_version` which
  version it runs.
- :func:`libpq_url`: a database URL in the form libpq, psycopg and ``USAGELEDGER_DATABASE_URL``
  take (``postgresql://``), from the SQLAlchemy one these functions return.
- :func:`serve_app`: an app object under uvicorn in a thread of this process, on loopback.
- :class:`ServeProcess`: a real ``usageledger serve`` in its own process group, on loopback,
  which can be started, killed with SIGKILL (every worker) and stopped.
- :func:`exit_on_sigterm`: SIGTERM raises :class:`SystemExit`, so that ``finally`` blocks
  stop servers and drop databases when a run is cancelled.

Everything here binds to 127.0.0.1 only. It imports nothing of ``tests`` or ``scripts``;
both import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import httpx
import psycopg
import uvicorn
from sqlalchemy.engine import make_url

LOOPBACK = "127.0.0.1"
#: The PostgreSQL server throw-away databases are made on (any database of it to connect to).
PG_ADMIN = os.environ.get("USAGELEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --- PostgreSQL -------------------------------------------------------------------------------


def pg_problem(admin: str = PG_ADMIN) -> str | None:
    """Why the PostgreSQL server at ``admin`` cannot be used, or ``None`` when it can."""
    try:
        with psycopg.connect(admin, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"cannot connect to {admin} ({exc.__class__.__name__})"


def server_version(admin: str = PG_ADMIN) -> str:
    """The version of the PostgreSQL server at ``admin`` (``"unreachable"`` when it is not)."""
    try:
        with psycopg.connect(admin, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return "unreachable"
    return str(row[0]) if row else "?"


def database_url(name: str, admin: str = PG_ADMIN) -> str:
    """The SQLAlchemy URL (psycopg 3) of database ``name`` on ``admin``'s server."""
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """``url`` with the plain ``postgresql://`` scheme of libpq (what psycopg connects to and
    ``USAGELEDGER_DATABASE_URL`` takes); a URL of another database is returned as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(name: str, admin: str = PG_ADMIN) -> str:
    """Create the empty database ``name``; its SQLAlchemy URL."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name, admin)


def ensure_database(name: str, admin: str = PG_ADMIN) -> str:
    """Database ``name``, created empty unless it exists already; its SQLAlchemy URL."""
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name, admin)


def drop_database(name: str, admin: str = PG_ADMIN) -> None:
    """Drop database ``name`` if it exists, ending its sessions first."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scratch_name(prefix: str) -> str:
    """``<prefix>_<pid>_<random>``: a database name no other run picks."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def pg_database(prefix: str, admin: str = PG_ADMIN) -> Iterator[str]:
    """A new, empty PostgreSQL database named by :func:`scratch_name`, dropped afterwards
    (also when the body raises); yields its SQLAlchemy URL."""
    name = scratch_name(prefix)
    url = create_database(name, admin)
    try:
        yield url
    finally:
        drop_database(name, admin)


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """Where a server started by this harness answers."""

    port: int

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def serve_app(app: Any, *, log_level: str = "warning", ready_s: float = 20.0) -> Iterator[Running]:
    """Run ``app`` (an ASGI app, with its lifespan) under uvicorn in a thread on 127.0.0.1
    until the block ends; the socket is bound before the thread starts, so no other process
    can take the port in between."""
    sock = socket.create_server((LOOPBACK, 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + ready_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in {ready_s:g} s")
            time.sleep(0.02)
        yield Running(port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class ServeProcess:
    """``usageledger serve`` on 127.0.0.1 in its own process group (so that SIGKILL takes
    every worker), with ``env`` over this process's environment (a ``None`` value unsets a
    variable). Its output goes to ``log`` (stderr to ``stderr_log`` when given); without a
    log, stdout is dropped and stderr kept for the error message of a failed start.

    Use it as a context manager (started inside, stopped after) or call :meth:`start`,
    :meth:`kill` and :meth:`stop`; it starts again on the same port after a kill.
    """

    def __init__(
        self,
        env: Mapping[str, str | None],
        *,
        workers: int = 1,
        log: Path | None = None,
        stderr_log: Path | None = None,
        ready_s: float = 60.0,
    ) -> None:
        self.env = env
        self.workers = workers
        self.log = log
        self.stderr_log = stderr_log
        self.ready_s = ready_s
        self.port = free_port()
        self.base = Running(self.port).base_url
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def _environment(self) -> dict[str, str]:
        merged = dict(os.environ)
        for name, value in self.env.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return merged

    def start(self) -> None:
        """Start it and wait until ``/healthz`` answers 200; RuntimeError (with the end of its
        output) when it exits first or is not ready in ``ready_s`` seconds."""
        command = [sys.executable, "-m", "usageledger", "serve", "--port", str(self.port)]
        with contextlib.ExitStack() as files:
            stdout: IO[bytes] | int = subprocess.DEVNULL
            stderr: IO[bytes] | int
            if self.log is not None:
                stdout = files.enter_context(self.log.open("ab"))
            if self.stderr_log is not None:
                stderr = files.enter_context(self.stderr_log.open("ab"))
            elif self.log is not None:
                stderr = subprocess.STDOUT
            else:
                if self._stderr is None:  # kept open across restarts; closed by close()
                    self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
                stderr = self._stderr
            self.proc = subprocess.Popen(
                [*command, "--workers", str(self.workers)],
                env=self._environment(),
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode}: {self.output_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server was not ready in {self.ready_s:g} s: {self.output_tail()}")

    def output_tail(self, chars: int = 2000) -> str:
        """The end of what the server wrote to stderr (or its log)."""
        path = self.stderr_log or self.log
        if path is not None:
            return path.read_text(errors="replace")[-chars:] if path.exists() else ""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL the whole process group and wait (at most 10 s) until it is gone."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> ServeProcess:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.close()

    def close(self) -> None:
        """Forget the kept stderr (after :meth:`stop`)."""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit, so servers, clients and databases are cleaned
    up by the ``finally`` blocks they sit in (only in the main thread, where signals land)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
