"""The tracker's settings: a light reader of the few variables its commands use.

The tracker's commands (``scan``, ``report``, ``status``, ``login``, ``push``) run often, some
from a shell prompt, so they start without pydantic-settings. They read only what they use,
checked by the same rules as the server's ``config.Settings`` (``usageledger.settings_rules``):
a bad value stops the command with the variable's name, as the server's settings do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usageledger.settings_rules import check_home, check_time_zone, default_home, invalid

PREFIX = "USAGELEDGER_"


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """``USAGELEDGER_HOME`` and ``USAGELEDGER_DEFAULT_TIME_ZONE`` (unset: ``None``, the
    machine's zone is then used for a new ledger)."""

    home: Path
    default_time_zone: str | None


#: name (after the prefix) -> the rule that checks it.
RULES: dict[str, Callable[[str], Any]] = {
    "HOME": check_home,
    "DEFAULT_TIME_ZONE": check_time_zone,
}


def load_tracker_settings(env: Mapping[str, str] | None = None) -> TrackerSettings:
    """Read the tracker's settings; ``SettingsError`` names every bad one."""
    env = os.environ if env is None else env
    problems: list[str] = []
    for name, rule in RULES.items():
        value = env.get(PREFIX + name)
        if value is None:
            continue
        try:
            rule(value)
        except ValueError as exc:
            problems.append(f"{PREFIX}{name}: {exc}")
    if problems:
        raise invalid(problems)
    home = env.get(PREFIX + "HOME")
    return TrackerSettings(
        home=check_home(home) if home is not None else default_home(),
        default_time_zone=env.get(PREFIX + "DEFAULT_TIME_ZONE") or None,
    )
