"""The ``usageledger`` command: one module per command group, thin over the library.

This module is the console entry point and imports nothing at import time (not click, not
rich), so that a fast path may answer before the command line parser loads. The commands
live beside it:

- :mod:`.root`: the top-level group, which imports each command's module on first use;
- :mod:`.quick`: what is answered before click loads (a plain ``statusline``);
- :mod:`.errors`: the one mapping from a failure to its message and exit status;
- :mod:`.env` (settings and database) and :mod:`.jobs` (evidence log, progress bars): what
  the server's commands share;
- :mod:`.db`, :mod:`.accounts`, :mod:`.ops`, :mod:`.read`, :mod:`.serve`,
  :mod:`.attribute`: the server's commands;
- :mod:`.tracker`, :mod:`.statusline`, :mod:`.setup`: the tracker's commands.
"""

from __future__ import annotations


def main() -> None:
    """Run the ``usageledger`` command line (the console script)."""
    import sys

    if sys.argv[1:2] == ["statusline"]:
        from usageledger.cli.quick import statusline

        if statusline(sys.argv[2:]):
            return
    from usageledger.cli.root import main as group

    group()
