"""The tracker's config file: ``$XDG_CONFIG_HOME/usageledger/config.toml``.

It holds a person's defaults, below the environment and the command line (a flag beats a
``USAGELEDGER_`` variable, which beats the file). Every key has one rule here, so reading
(``tracker.settings``), ``usageledger config set`` and ``config show`` agree on what is
valid. A bad value is a :class:`SettingsError` naming the key and the file.

Reading uses ``tomllib`` (the standard library). Writing uses ``tomlkit``, imported only by
:func:`set_value` and :func:`unset_value`, because it keeps the comments, the key order and
the layout a person gave the file; the quick commands never load it.

Keys::

    timezone = "Europe/Berlin"          # the zone of reports and of a new ledger
    sources = ["claude", "codex"]       # what scan (and report's scan) reads
    server = "https://ledger.example"   # the default of `login --server`
    [report]
    columns = ["input_tokens", "output_tokens", "total_tokens"]
    breakdown = true                    # as if --breakdown were always given
    start_of_week = "sunday"
    [prices."my-model"]                 # USD per million tokens, winning on every day
    input = "1.25"
    output = "10"
    cached_input = "0.125"              # default: input
    cache_write = "1.25"                # default: input
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usageledger.settings_rules import SettingsError, check_time_zone

#: What a report may show as columns (``tracker.report.FIELDS``, kept literal so that reading
#: the file imports nothing of the report).
COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PRICE_KEYS = ("input", "cached_input", "cache_write", "output")
_PRICE_TEXT = re.compile(r"^\d{1,6}(?:\.\d{1,9})?$")


class ConfigError(SettingsError):
    """The config file cannot be read or holds a bad value (the message names key and file)."""


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/usageledger/config.toml``, else ``~/.config/usageledger/config.toml``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(xdg) if xdg else home / ".config"
    return base / "usageledger" / "config.toml"


def _zone(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IANA time zone name, like Europe/Berlin")
    check_time_zone(value)
    return value


def _sources(value: object) -> list[str]:
    from usageledger.sources import PARSERS

    known = sorted(PARSERS)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of sources among {', '.join(known)}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(f"unknown source {unknown[0]!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(value))


def _server(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("expected the server's base URL, like https://ledger.example")
    return value.rstrip("/")


def _columns(value: object) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of columns among {', '.join(COLUMNS)}")
    unknown = [v for v in value if v not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; known: {', '.join(COLUMNS)}")
    return list(dict.fromkeys(value))


def _boolean(value: object) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _weekday(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in WEEKDAYS:
        raise ValueError(f"expected a day of the week: {', '.join(WEEKDAYS)}")
    return value.lower()


def _price(value: object) -> str:
    """A price in USD per million tokens, as exact text (a TOML float is turned into text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError('expected USD per million tokens, like "1.25"')
    text = repr(value) if isinstance(value, float) else str(value)
    if not _PRICE_TEXT.match(text):
        raise ValueError(f"expected USD per million tokens (up to 9 decimals), got {text!r}")
    return text


#: dotted key -> the rule that checks (and normalises) its value.
RULES: dict[str, Callable[[object], Any]] = {
    "timezone": _zone,
    "sources": _sources,
    "server": _server,
    "report.columns": _columns,
    "report.breakdown": _boolean,
    "report.start_of_week": _weekday,
}
#: The environment variable that beats each key (keys without one: only a flag beats them).
ENVIRONMENT = {
    "timezone": "USAGELEDGER_TIMEZONE",
    "sources": "USAGELEDGER_SOURCES",
    "server": "USAGELEDGER_SERVER",
    "report.columns": "USAGELEDGER_REPORT_COLUMNS",
}


def rule_for(key: str) -> Callable[[object], Any]:
    """The rule of a dotted key (``prices.MODEL.FIELD`` included); ``KeyError`` if unknown."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[0] == "prices" and parts[-1] in PRICE_KEYS:
        return _price
    return RULES[key]


def known_keys() -> str:
    """The keys, for error messages."""
    return ", ".join([*RULES, "prices.MODEL.{" + ",".join(PRICE_KEYS) + "}"])


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The checked values of the file (dotted keys) and the price overrides per model."""

    path: Path
    values: dict[str, Any]
    prices: dict[str, dict[str, str]]

    def get(self, key: str) -> Any:
        """The value of a dotted key, or ``None``."""
        return self.values.get(key)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in RULES:
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def check_document(document: Mapping[str, Any], path: Path, *, partial: bool = False) -> ConfigFile:
    """Check every key of a parsed file; the first bad one raises :class:`ConfigError`.

    ``partial`` (while ``config set`` writes a price one field at a time) lets a model's
    price lack ``input`` or ``output``; reading the file for a command never does.
    """
    values: dict[str, Any] = {}
    prices: dict[str, dict[str, str]] = {}
    raw_prices = document.get("prices", {})
    if not isinstance(raw_prices, dict):
        raise ConfigError(f"{path}: key 'prices': expected a table of models")
    for model, entry in raw_prices.items():
        where = f"prices.{_quote(model)}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: key '{where}': expected a table with input and output")
        unknown = sorted(set(entry) - set(PRICE_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: key '{where}.{unknown[0]}': unknown; use {', '.join(PRICE_KEYS)}"
            )
        for name in ("input", "output"):
            if name not in entry and not partial:
                raise ConfigError(
                    f"{path}: key '{where}.{name}': missing (a price needs input and output)"
                )
        checked = {}
        for name in PRICE_KEYS:
            if name not in entry and partial:
                continue
            try:
                checked[name] = _price(entry[name] if name in entry else entry["input"])
            except ValueError as exc:
                raise ConfigError(f"{path}: key '{where}.{name}': {exc}") from None
        prices[model] = checked
    rest = {k: v for k, v in document.items() if k != "prices"}
    for key, value in _flatten(rest).items():
        rule = RULES.get(key)
        if rule is None:
            raise ConfigError(f"{path}: key '{key}': unknown; known keys: {known_keys()}")
        try:
            values[key] = rule(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: key '{key}': {exc}") from None
    return ConfigFile(path, values, prices)


def _quote(model: str) -> str:
    return model if re.match(r"^[A-Za-z0-9_-]+$", model) else f'"{model}"'


def read_config(path: Path, *, partial: bool = False) -> ConfigFile:
    """The checked file at ``path``; a missing file is an empty config (``partial``: see
    :func:`check_document`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ConfigFile(path, {}, {})
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return check_document(document, path, partial=partial)


def _split(key: str) -> list[str]:
    """A dotted key's parts; ``prices."a.b".input`` keeps a quoted model name whole."""
    parts = re.findall(r'"([^"]*)"|([^.]+)', key)
    return [quoted or plain for quoted, plain in parts]


def set_value(path: Path, key: str, text: str) -> Any:
    """Check ``text`` for ``key`` and write it, keeping the rest of the file as it was."""
    import tomlkit

    parts = _split(key)
    canonical = ".".join(parts)
    try:
        rule = rule_for(canonical if parts[0] != "prices" else f"prices.m.{parts[-1]}")
    except KeyError:
        raise ConfigError(f"unknown key {key!r}; known keys: {known_keys()}") from None
    if parts[0] == "prices" and len(parts) != 3:
        raise ConfigError(f"key {key!r}: use prices.MODEL.FIELD (quote a model with dots)")
    try:
        value = rule(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: key '{key}': {exc}") from None
    document = _load_for_edit(path)
    table: Any = document
    for part in parts[:-1]:
        if part not in table:
            table[part] = tomlkit.table()
        table = table[part]
    table[parts[-1]] = value
    check_document(document.unwrap(), path, partial=True)
    _write(path, tomlkit.dumps(document))
    return value


def unset_value(path: Path, key: str) -> bool:
    """Remove ``key`` (and a table it leaves empty); ``False`` when it was not set."""
    import tomlkit

    parts = _split(key)
    if not path.exists():
        return False
    document = _load_for_edit(path)
    tables: list[Any] = [document]
    for part in parts[:-1]:
        if part not in tables[-1]:
            return False
        tables.append(tables[-1][part])
    if parts[-1] not in tables[-1]:
        return False
    del tables[-1][parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):
        if len(tables[depth]) == 0:
            del tables[depth - 1][parts[depth - 1]]
    _write(path, tomlkit.dumps(document))
    return True


def _load_for_edit(path: Path) -> Any:
    import tomlkit

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return tomlkit.document()
    read_config(path, partial=True)  # a file that is already bad is reported, not rewritten
    return tomlkit.parse(text)


def _write(path: Path, text: str) -> None:
    """Replace the file atomically (a crash leaves the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
