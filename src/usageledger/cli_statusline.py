"""``usageledger statusline``: the command Claude Code runs after every message.

Kept apart from ``cli_tracker`` so that it imports only what it uses: no progress bars, no
tables, no scanner of every source (``tests/test_startup.py`` checks the heavy libraries; the
status line's whole budget is a few tens of milliseconds). The work is in
``usageledger.tracker.statusline``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from usageledger.tracker.settings import load_tracker_settings


def clock() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


@click.command()
@click.option(
    "--segments",
    default="model,session,today,block,burn,context",
    show_default=True,
    metavar="LIST",
    help="What to show, in order: model, session, today, block, burn, context, limits.",
)
@click.option("--no-scan", is_flag=True, help="Answer from the ledger; read nothing new.")
def statusline(segments: str, no_scan: bool) -> None:
    """One status line for Claude Code's statusLine command (its JSON on stdin).

    Reads what is new in the session's transcript, then prints the model, the session's,
    today's and the 5-hour block's cost, the block's time left and burn rate, and the context
    used. Never fails and never waits: on any problem it prints a short line and exits 0.

    \b
    Examples (in ~/.claude/settings.json, and by hand):
      {"statusLine": {"type": "command", "command": "usageledger statusline"}}
      echo '{"session_id": "…", "transcript_path": "…"}' | usageledger statusline
      usageledger statusline --segments model,session,block,context,limits
    """
    from usageledger.tracker.statusline import status_line

    def home() -> Path:
        return load_tracker_settings().home

    line = status_line(
        sys.stdin.buffer,
        home=home,
        env=os.environ,
        clock=clock,
        segments=segments,
        scan=not no_scan,
    )
    click.echo(line)
