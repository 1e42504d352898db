"""What an assistant's hook runs: return at once, scan (and push) in a detached worker.

An assistant waits for its hooks, so ``usageledger hook`` only spawns a worker in a new
session (no terminal, no pipes back to the assistant) and exits 0; any failure, even to spawn,
is written to ``hook-errors.json`` under ``USAGELEDGER_HOME`` and never reaches the assistant.
``usageledger status`` shows the last ones.

The worker takes ``hook.lock`` without waiting. When another worker holds it, it leaves
``hook.pending`` and exits: the holder scans once more before it lets go, so a burst of hook
calls costs at most two scans and never a queue of processes. Pushes are debounced: the worker
pushes only when logged in and the last hook push is at least :data:`PUSH_EVERY_MS` old; the
next hook call (or the timer) pushes what is left.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PUSH_EVERY_MS = 5 * 60 * 1000
ERRORS_FILE = "hook-errors.json"
KEEP_ERRORS = 10
#: A worker rescans at most this many times for calls that arrived while it ran.
MAX_ROUNDS = 3


def spawn_detached(argv: Sequence[str]) -> None:
    """Start ``argv`` in its own session with stdin, stdout and stderr on /dev/null.

    ``posix_spawnp`` rather than ``subprocess``: nothing is waited for, and no ``Popen`` object
    is left to complain that its child still runs when the hook exits a moment later.
    """
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=devnull, setsid=True)


def worker_argv(assistant: str) -> list[str]:
    """The command line of a worker: this interpreter running ``usageledger hook --worker``."""
    return [sys.executable, "-m", "usageledger", "hook", "--worker", assistant]


def error_home(env: Mapping[str, str]) -> Path:
    """Where a hook records an error when the settings cannot be loaded.

    ``USAGELEDGER_HOME`` whenever that variable itself is valid, even if something else (the
    config file, another variable) is bad: ``usageledger status`` reads that home, so an error
    kept anywhere else would never be seen. Only a bad or unset variable means the default.
    """
    from usageledger.settings_rules import check_home, default_home

    value = env.get("USAGELEDGER_HOME")
    if value is not None:
        try:
            return check_home(value)
        except ValueError:
            pass
    return default_home()


def record_error(home: Path, where: str, message: str, *, now_ms: int | None = None) -> None:
    """Keep ``message`` among the last errors (best effort: this must never raise)."""
    try:
        errors = last_errors(home)
        at = now_ms if now_ms is not None else int(time.time() * 1000)
        errors.append({"at_ms": at, "where": where, "message": message[:500]})
        home.mkdir(parents=True, exist_ok=True)
        temporary = home / (ERRORS_FILE + ".tmp")
        temporary.write_text(json.dumps(errors[-KEEP_ERRORS:], indent=2) + "\n")
        os.replace(temporary, home / ERRORS_FILE)
    except Exception:  # the error log must never fail the hook
        pass


def last_errors(home: Path) -> list[dict[str, Any]]:
    """The last hook errors, oldest first (none when the file is missing or unreadable)."""
    try:
        errors = json.loads((home / ERRORS_FILE).read_bytes())
    except (OSError, ValueError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def run_worker(
    home: Path,
    *,
    scan: Callable[[], None],
    push: Callable[[], bool],
    clock: Callable[[], int],
) -> str:
    """Scan (and push, debounced) under ``hook.lock``; what happened, as a word.

    ``push`` returns whether it pushed (``False``: not logged in). ``busy``: another worker
    holds the lock and will scan again for this call.
    """
    home.mkdir(parents=True, exist_ok=True)
    pending = home / "hook.pending"
    fd = os.open(home / "hook.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pending.touch()
            return "busy"
        outcome = "scanned"
        for _ in range(MAX_ROUNDS):
            pending.unlink(missing_ok=True)
            scan()
            stamp = home / "hook-push.json"
            try:
                last = int(json.loads(stamp.read_bytes())["at_ms"])
            except (OSError, ValueError, KeyError, TypeError):
                last = 0
            now = clock()
            if now - last >= PUSH_EVERY_MS and push():
                stamp.write_text(json.dumps({"at_ms": now}) + "\n")
                outcome = "pushed"
            if not pending.exists():
                break
        return outcome
    finally:
        os.close(fd)
