"""An absent source costs one stat per candidate root and no directory listing.

``usageledger scan`` runs every parser's ``discover`` on every scan, and most users have only
one or two of the assistants: the others' directories do not exist. Their cost must stay one
``stat`` per place the tool may keep its logs, never a walk. The calls are counted at the
``os`` level (``os.stat``, ``os.lstat``, ``os.scandir``, ``os.listdir``, ``os.walk``), where
``Path.exists``/``is_dir``/``is_file``/``iterdir``/``glob`` and ``os.path`` end up, through a
wrapper that records each call and then makes it for real.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usageledger.sources import PARSERS

STATS = ("stat", "lstat")
LISTINGS = ("scandir", "listdir", "walk")

#: Candidate roots each parser checks with an empty environment (see docs/sources.md), so the
#: stats it may make when none of them exists.
ROOTS = {
    # ~/.codex/sessions and ~/.codex/archived_sessions (Every Code: the same under ~/.code).
    "codex": 2,
    "every-code": 2,
    # ~/.config/claude and ~/.claude (their projects/).
    "claude": 2,
    "gemini": 1,  # ~/.gemini/tmp
    "opencode": 1,  # ~/.local/share/opencode
    "kilo": 1,  # ~/.local/share/kilo
    "qwen": 1,  # ~/.qwen/projects
    "kimi": 2,  # ~/.kimi and ~/.kimi-code (their sessions/)
    "droid": 1,  # ~/.factory/sessions
    "hermes": 1,  # ~/.hermes
    # ~/.local/share/goose, ~/Library/Application Support/goose, ~/.local/share/Block/goose.
    "goose": 3,
    "pi": 1,  # ~/.pi/agent/sessions
    "openclaw": 4,  # ~/.openclaw, ~/.clawdbot, ~/.moltbot, ~/.moldbot (their agents/)
    "copilot": 1,  # ~/.copilot/session-state
    "amp": 1,  # ~/.local/share/amp/threads
    # 5 editors (Code, Code - Insiders, VSCodium, Cursor, Windsurf) under ~/.config and
    # ~/Library/Application Support, plus 3 remote servers = 13 extension storages;
    # Cline also has its standalone ~/.cline/data/tasks.
    "cline": 14,
    "roo-code": 13,
    "kilo-code": 13,
}


class Counter:
    """Records ``(call, path)`` for each filesystem call made while ``on`` is true."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.on = False

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.calls.append((name, str(args[0]) if args else "."))
            return real(*args, **kwargs)

        return counted


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """A Counter wrapped around the ``os`` calls that touch the filesystem's directories."""
    counting = Counter()
    for name in STATS + LISTINGS:
        monkeypatch.setattr(os, name, counting.wrap(name, getattr(os, name)))
    return counting


def test_every_parser_states_its_number_of_candidate_roots() -> None:
    """A new source must say here how many places it checks when none exists."""
    assert set(ROOTS) == set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_an_absent_source_costs_one_stat_per_candidate_root_and_no_listing(
    name: str, counter: Counter, tmp_path: Path
) -> None:
    """With an empty home and environment, discover stats each root once and lists nothing."""
    home = tmp_path / "home"
    home.mkdir()
    counter.on = True
    found = PARSERS[name].discover({}, home)
    counter.on = False

    assert found == []
    assert [call for call in counter.calls if call[0] in LISTINGS] == []
    stats = [path for call, path in counter.calls if call in STATS]
    assert len(stats) <= ROOTS[name], stats
    assert len(set(stats)) == len(stats), stats  # no root checked twice
    assert all(path.startswith(str(home)) for path in stats), stats  # never the real home


def test_the_counter_sees_a_walk(counter: Counter, tmp_path: Path) -> None:
    """The wrappers do count a present root's walk (so a zero above is a real zero)."""
    sessions = tmp_path / "home" / ".codex" / "sessions" / "2025"
    sessions.mkdir(parents=True)
    (sessions / "rollout-x.jsonl").write_text("")
    counter.on = True
    found = PARSERS["codex"].discover({}, tmp_path / "home")
    counter.on = False

    assert [os.path.basename(p) for p in found] == ["rollout-x.jsonl"]
    assert sum(1 for call, _ in counter.calls if call == "scandir") == 2
