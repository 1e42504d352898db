"""Commands answered before the command-line parser loads.

``usageledger statusline`` runs after every message Claude Code shows, so its start-up is
most of its cost. Its plain forms (no option, ``--segments LIST``, ``--segments=LIST``,
``--no-scan``) are read here without click; anything else (``--help``, an unknown or repeated
option, a value that looks like an option) goes to the click command in
:mod:`usageledger.cli.statusline`, which declares the same options and calls the same
:func:`answer`. A test runs both paths on the same input and compares them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

DEFAULT_SEGMENTS = "model,session,today,block,burn,context"


def clock() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


def statusline_args(argv: Sequence[str]) -> tuple[str, bool] | None:
    """``(segments, scan)`` of a plain ``statusline`` call, or None when click must read it."""
    segments: str | None = None
    scan: bool | None = None
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--no-scan" and scan is None:
            scan = False
        elif arg == "--segments" and segments is None and rest and not rest[0].startswith("-"):
            segments = rest.pop(0)
        elif arg.startswith("--segments=") and segments is None:
            segments = arg.removeprefix("--segments=")
        else:
            return None
    return (DEFAULT_SEGMENTS if segments is None else segments), scan is None


def answer(segments: str, scan: bool) -> str:
    """The status line for the JSON on stdin (``usageledger.tracker.statusline``)."""
    from pathlib import Path

    from usageledger.tracker.settings import load_tracker_settings
    from usageledger.tracker.statusline import status_line

    def home() -> Path:
        return load_tracker_settings().home

    return status_line(
        sys.stdin.buffer, home=home, env=os.environ, clock=clock, segments=segments, scan=scan
    )


def statusline(argv: Sequence[str]) -> bool:
    """Answer a plain ``statusline`` call and return True; False when click must read it."""
    args = statusline_args(argv)
    if args is None:
        return False
    try:
        line = answer(*args)
    except Exception as exc:  # never break the status line, even on a broken install
        line = f"usageledger: unavailable ({type(exc).__name__})"
    sys.stdout.buffer.write(line.encode("utf-8", "replace") + b"\n")
    sys.stdout.flush()
    return True
