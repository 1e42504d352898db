"""The tracker's settings: a light reader of the few variables its commands use.

The tracker's commands (``scan``, ``report``, ``status``, ``login``, ``push``) run often, some
from a shell prompt, so they start without pydantic-settings. They read only what they use,
checked by the same rules as the server's ``config.Settings`` (``usageledger.settings_rules``):
a bad value stops the command with the variable's name, as the server's settings do.

Below the environment sits the config file (``tracker.config_file``): a command-line flag
beats a ``USAGELEDGER_`` variable, which beats the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usageledger.settings_rules import check_home, check_time_zone, default_home, invalid
from usageledger.tracker.config_file import ENVIRONMENT, config_path, read_config
from usageledger.tracker.config_file import RULES as FILE_RULES

if TYPE_CHECKING:
    from usageledger.ledger.pricing import PriceBook

PREFIX = "USAGELEDGER_"


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """``USAGELEDGER_HOME`` and ``USAGELEDGER_DEFAULT_TIME_ZONE`` (unset: ``None``, the
    machine's zone is then used for a new ledger)."""

    home: Path
    default_time_zone: str | None
    #: The zone reports use without ``--timezone`` (``USAGELEDGER_TIMEZONE``, else the file's
    #: ``timezone``); ``None``: the ledger's own. A new ledger starts in it too.
    time_zone: str | None = None
    #: Sources scanned without ``--source`` (empty: every one).
    sources: tuple[str, ...] = ()
    #: The default of ``login --server``.
    server: str | None = None
    #: The count columns of report tables and CSV (empty: the usual ones).
    columns: tuple[str, ...] = ()
    breakdown: bool = False
    start_of_week: str = "monday"
    #: model -> prices in USD per million tokens (``input``, ``cached_input``, …) as text.
    prices: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    config_file: Path | None = field(default=None, compare=False)

    def price_book(self, book: PriceBook) -> PriceBook:
        """``book`` with the file's price overrides: each replaces every price of its model
        (on every day), so an override is never beaten by a newer shipped price."""
        if not self.prices:
            return book
        from decimal import Decimal

        from usageledger.ledger.pricing import Price, PriceBook

        overridden = {model for model, _ in self.prices}
        source = f"config file {self.config_file}"
        own = []
        for model, fields in self.prices:
            usd = {name: Decimal(value) for name, value in fields}
            own.append(
                Price(
                    model=model,
                    effective_from=date(1970, 1, 1),
                    input=usd["input"],
                    cached_input=usd["cached_input"],
                    cache_write=usd["cache_write"],
                    output=usd["output"],
                    source=source,
                    taken=date(1970, 1, 1),
                )
            )
        kept = [p for p in book.prices if p.model not in overridden]
        return PriceBook([*kept, *own], book.aliases)


#: name (after the prefix) -> the rule that checks it.
RULES: dict[str, Callable[[str], Any]] = {
    "HOME": check_home,
    "DEFAULT_TIME_ZONE": check_time_zone,
}


def load_tracker_settings(env: Mapping[str, str] | None = None) -> TrackerSettings:
    """Read the tracker's settings; ``SettingsError`` names every bad one (a bad value in the
    config file names its key and the file)."""
    env = os.environ if env is None else env
    problems: list[str] = []
    for key, variable in ENVIRONMENT.items():
        value = env.get(variable)
        if value is None:
            continue
        try:
            FILE_RULES[key](value)
        except ValueError as exc:
            problems.append(f"{variable}: {exc}")
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
    config = read_config(config_path(env))

    def setting(key: str) -> Any:
        variable = ENVIRONMENT.get(key)
        if variable and env.get(variable) is not None:
            return FILE_RULES[key](env[variable])
        return config.get(key)

    return TrackerSettings(
        home=check_home(home) if home is not None else default_home(),
        default_time_zone=env.get(PREFIX + "DEFAULT_TIME_ZONE") or None,
        time_zone=setting("timezone"),
        sources=tuple(setting("sources") or ()),
        server=setting("server"),
        columns=tuple(setting("report.columns") or ()),
        breakdown=bool(setting("report.breakdown")),
        start_of_week=setting("report.start_of_week") or "monday",
        prices=tuple(
            (model, tuple(sorted(fields.items()))) for model, fields in config.prices.items()
        ),
        config_file=config.path,
    )
