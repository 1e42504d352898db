"""``usageledger statusline``: the command Claude Code runs after every message.

Kept apart from :mod:`usageledger.cli.tracker` so that it imports only what it uses: no
progress bars, no tables, no scanner of every source (``tests/test_startup.py`` checks the
heavy libraries; the status line's whole budget is a few tens of milliseconds). The work is in
``usageledger.tracker.statusline``. Its plain forms are answered before click loads
(:mod:`usageledger.cli.quick`); this command reads the rest (``--help``, bad options).
"""

from __future__ import annotations

import click

from usageledger.cli.quick import DEFAULT_SEGMENTS, answer


@click.command()
@click.option(
    "--segments",
    default=DEFAULT_SEGMENTS,
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
    click.echo(answer(segments, not no_scan))


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [statusline]
