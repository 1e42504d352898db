"""Public list prices, model-name matching and exact cost arithmetic (docs/design.md §3).

Pure code: a :class:`PriceBook` is built from a JSON price file (the one shipped in
``usageledger/data/prices.json`` or an operator's own) and never touches a database.

Exactness. A price (USD per million tokens, at most 9 decimal places) is held as an integer
number of nano-dollars per million tokens, so ``tokens * price`` is an exact integer number of
femto-dollars (1e-15 USD). Sums of any length stay exact; nothing is rounded until
:func:`format_usd` renders 6 decimal places with ROUND_HALF_EVEN. No float is ever used.

Billing rules. Besides its four base rates an entry may carry a one-hour cache-write rate, a
web-search rate (USD per 1,000 searches) and rate tiers (:class:`Tier`): ``long_context`` (a
request whose prompt, input plus cached input, is above ``above_tokens`` is billed entirely at
these rates), ``fast`` (fast mode or priority processing) and ``fast_long_context`` (both).
Counts say which tokens each rule applies to: ``cache_write_1h_tokens``, the
``long_context_*``, ``fast_*`` and ``fast_long_context_*`` subset counts and
``web_search_requests`` of schema v3 (:data:`usageledger.buckets.COUNTS_V3`), so a sum of
requests is priced exactly as its requests one by one (docs/pricing.md, "How a cost is
computed"). Tokens of a class whose rates the entry does not list (a fast request on a model
without fast rates) and searches of a model without a search rate are never priced by a
guess: :class:`Cost` names them as unpriced (``"claude-opus-4-6 (fast)"``).

Errors::

    PricingError
     ├── PricingFileError        a price file that cannot be used (path, entry, field, reason)
     ├── InvalidCountsError      token counts that break docs/design.md §3 (also a ValueError)
     └── UnpricedCountsError     counts the price lists no rates for (:func:`cost_usd` only)
"""

from __future__ import annotations

import bisect
import functools
import operator
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from importlib import resources
from typing import Any, NotRequired, Protocol, TypedDict

import orjson

FILE_FORMAT = 1
PRICE_FIELDS = ("input", "cached_input", "cache_write", "output")
REQUIRED_KEYS = ("model", "effective_from", *PRICE_FIELDS, "source", "taken")
#: The rate tiers an entry may have, in file order.
TIER_FIELDS = ("long_context", "fast", "fast_long_context")
#: The optional billing fields of an entry (absent in files written before they existed):
#: ``web_search`` is USD per 1,000 web searches, the other rates USD per million tokens.
BILLING_KEYS = ("cache_write_1h", "web_search", *TIER_FIELDS)
OPTIONAL_KEYS = ("note", *BILLING_KEYS)
TIER_KEYS = ("above_tokens", *PRICE_FIELDS, "cache_write_1h")
MAX_PRICE_DECIMALS = 9  # nano-dollars per million tokens: the finest price we can hold exactly

_FEMTO_EXPONENT = -15  # tokens * nano-dollars-per-million = femto-dollars
_NANO = Decimal(1).scaleb(-MAX_PRICE_DECIMALS)
_MICRO_DOLLAR = Decimal("0.000001")
_PRICE_TEXT = re.compile(r"-?\d+(?:\.\d+)?")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

# Matching rules, in the order they are tried (docs/pricing.md describes them for users).
# Droid's bring-your-own-key models: "custom:GLM-4.6-[Fireworks]-0" is GLM-4.6 at a provider.
_CUSTOM_MODEL = re.compile(r"^custom:(?P<name>.+?)(?:-\[[^\]]*\]-\d+)?$")
# Cloud model ids: "us.anthropic.claude-…", "global.anthropic.…", "moonshotai.kimi-k2.5".
_CLOUD_VENDOR_PREFIX = re.compile(
    r"^(?:[a-z]+(?:-[a-z]+)?\.)?"  # an optional region: "us.", "apac.", "us-gov."
    r"(?:anthropic|amazon|deepseek|google|meta|minimax|mistral|moonshotai|openai|qwen|zai)\."
)
_CLAUDE_DOTTED_VERSION = re.compile(r"(?<=\d)\.(?=\d)")  # "claude-sonnet-4.5" → "…-4-5"
_VERSION_SUFFIXES = (
    re.compile(r"\[[^\]]*\]$"),  # context-window tags: "claude-sonnet-4-5[1m]"
    re.compile(r"-v\d+(?::\d+)?$"),  # Bedrock: "…-v1:0"
    re.compile(r"@(?:\d{8}|default)$"),  # Vertex AI: "claude-sonnet-4@20250514", "…@default"
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # OpenAI snapshots: "gpt-5-2025-08-07"
    re.compile(r"-\d{8}$"),  # Anthropic snapshots: "claude-sonnet-4-5-20250929"
    re.compile(r"-latest$"),
    re.compile(r"-00\d$"),  # Google stable versions: "gemini-2.0-flash-001"
)


class PricingError(Exception):
    """Base class of every pricing error."""


class PricingFileError(PricingError):
    """A price file that cannot be used, naming the file, the entry and the reason."""

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        index: int | None = None,
        field: str | None = None,
        model: str | None = None,
        where: str | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.index = index
        self.field = field
        self.model = model
        place = where if where is not None else (f"prices[{index}]" if index is not None else "")
        if model:
            place += f" ({model})"
        if field:
            place += f" field {field!r}"
        super().__init__(f"{path}: {place.strip()}: {reason}" if place else f"{path}: {reason}")


class InvalidCountsError(PricingError, ValueError):
    """Token counts that are not non-negative integers or break ``cache_write ≤ input``."""


class UnpricedCountsError(PricingError):
    """Counts of a kind the price lists no rates for (see :meth:`Price.rates`)."""


class Counts(Protocol):
    """Anything indexable by count name: a dict, a TypedDict or a database row mapping."""

    def __getitem__(self, key: str, /) -> object: ...


class TokenCounts(TypedDict):
    """The counts :func:`cost_usd` reads; ``cache_write_tokens`` is absent on v1 rows (= 0)."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cache_write_tokens: NotRequired[int]


@dataclass(frozen=True, slots=True)
class Tier:
    """The rates of one billing tier, USD per million tokens.

    ``above_tokens`` is the threshold of a ``long_context`` tier (a request whose input plus
    cached input is above it is billed at the tier's rates); the other tiers have none.
    ``cache_write_1h`` ``None`` means the tier's ``cache_write`` when the entry lists no
    one-hour rate; when it does, :meth:`Price.rates` fills it in as the entry's one-hour rate
    times the tier's input factor (docs/pricing.md, "The price file").
    """

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    cache_write_1h: Decimal | None = None
    above_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in (*PRICE_FIELDS, "cache_write_1h"):
            value = getattr(self, name)
            problem = None if value is None and name == "cache_write_1h" else _price_problem(value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        if self.above_tokens is not None and (
            not isinstance(self.above_tokens, int)
            or isinstance(self.above_tokens, bool)
            or self.above_tokens <= 0
        ):
            raise ValueError(
                f"above_tokens: expected a positive integer, got {self.above_tokens!r}"
            )

    @property
    def one_hour_write(self) -> Decimal:
        """The one-hour cache-write rate (the cache-write rate when none is listed)."""
        return self.cache_write if self.cache_write_1h is None else self.cache_write_1h

    def scaled(self, factor: Decimal) -> Tier:
        """Every rate times ``factor`` (a vendor's multiplier), rounded to a nano-dollar."""

        def times(value: Decimal) -> Decimal:
            return _canonical_price((value * factor).quantize(_NANO, rounding=ROUND_HALF_EVEN))

        return Tier(
            input=times(self.input),
            cached_input=times(self.cached_input),
            cache_write=times(self.cache_write),
            output=times(self.output),
            cache_write_1h=None if self.cache_write_1h is None else times(self.cache_write_1h),
            above_tokens=self.above_tokens,
        )


@dataclass(frozen=True, slots=True)
class Price:
    """One model's list prices in USD per million tokens, in effect from ``effective_from``.

    ``cache_write_1h`` is the one-hour cache-write rate (``None``: the vendor lists one
    cache-write rate, ``cache_write``). ``long_context``, ``fast`` and ``fast_long_context``
    are the rate tiers of requests over the long-context threshold, in fast mode or priority
    processing, and both (docs/pricing.md says how a request falls back when its tier is not
    listed).
    """

    model: str
    effective_from: date
    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    source: str
    taken: date
    note: str = ""
    cache_write_1h: Decimal | None = None
    #: USD per 1,000 server-side web searches (``web_search_requests``); ``None``: not listed.
    web_search: Decimal | None = None
    long_context: Tier | None = None
    fast: Tier | None = None
    fast_long_context: Tier | None = None

    def __post_init__(self) -> None:
        problem = _model_problem(self.model)
        if problem:
            raise ValueError(f"model: {problem}")
        for name in ("effective_from", "taken"):
            value = getattr(self, name)
            if not isinstance(value, date) or isinstance(value, datetime):
                raise ValueError(f"{name}: expected a date, got {value!r}")
        for name in PRICE_FIELDS:
            problem = _price_problem(getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("source: expected the URL (or a description) the price came from")
        if not isinstance(self.note, str):
            raise ValueError("note: expected a string")
        for name in ("cache_write_1h", "web_search"):
            value = getattr(self, name)
            problem = None if value is None else _price_problem(value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        for name in TIER_FIELDS:
            tier = getattr(self, name)
            if tier is not None and not isinstance(tier, Tier):
                raise ValueError(f"{name}: expected a Tier, got {type(tier).__name__}")
            if (
                tier is not None
                and tier.cache_write_1h is None
                and self.cache_write_1h is not None
                and self.input == 0
                and tier.input != 0
            ):
                raise ValueError(
                    f"{name}: cache_write_1h is required (the entry lists a one-hour rate and "
                    "its input rate is 0, so the tier's factor cannot be applied to it)"
                )
        if self.long_context is not None and self.long_context.above_tokens is None:
            raise ValueError("long_context: above_tokens is required")
        for name in ("fast", "fast_long_context"):
            tier = getattr(self, name)
            if tier is not None and tier.above_tokens is not None:
                raise ValueError(f"{name}: above_tokens belongs to long_context only")
        if self.fast_long_context is not None and (self.long_context is None or self.fast is None):
            raise ValueError("fast_long_context: needs both long_context and fast")

    @property
    def base(self) -> Tier:
        """The standard rates as a :class:`Tier`."""
        return Tier(
            input=self.input,
            cached_input=self.cached_input,
            cache_write=self.cache_write,
            output=self.output,
            cache_write_1h=self.cache_write_1h,
        )

    @property
    def long_context_above(self) -> int | None:
        """The long-context threshold in prompt tokens, or ``None`` (one rate at any size)."""
        return self.long_context.above_tokens if self.long_context is not None else None

    def rates(self, rate_class: str) -> Tier | None:
        """The rates a request of ``rate_class`` is billed at, or ``None`` when the entry lists
        none for it (its tokens are unpriced; nothing is guessed).

        ``standard`` → the base rates; ``long_context`` → its tier, else the base rates (no
        tier: one rate at any size); ``fast`` → its tier, else ``None``;
        ``fast_long_context`` → its tier, else the fast tier when the entry has no
        long-context tier (one rate at any size) or is an Anthropic model (Anthropic bills
        fast mode at one rate over the whole context window), else ``None``. A tier without
        a one-hour cache-write rate, of an entry that lists one, gets the entry's one-hour
        rate times the tier's input factor (as vendors list cache rates: multiples of input).
        """
        return _rates(self, rate_class)

    @property
    def key(self) -> tuple[str, date]:
        """The identity of an entry: a file may hold one price per model and date."""
        return (self.model, self.effective_from)


def cost_usd(counts: Counts, price: Price) -> Decimal:
    """Exact cost in USD of ``counts`` at ``price`` (no rounding; see :func:`format_usd`).

    Raises :class:`UnpricedCountsError` when ``price`` lists no rates for some of the counts
    (fast tokens of a model without fast rates, searches without a search rate): a total
    without them would be silently low. :class:`Cost` names such parts as unpriced instead.
    """
    femto, _, labels = _price_row(counts, price)
    if labels:
        raise UnpricedCountsError(
            f"{price.model} ({price.effective_from}) lists no rates for its "
            f"{', '.join(labels)} counts"
        )
    return _femto_to_usd(femto)


def format_usd(amount: Decimal) -> str:
    """Render dollars with 6 decimal places, half to even: ``0.0000025`` → ``0.000002``."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"format_usd takes a Decimal, got {type(amount).__name__}")
    digits = max(amount.adjusted() + 1, 1) + 7
    rounded = amount.quantize(_MICRO_DOLLAR, rounding=ROUND_HALF_EVEN, context=Context(digits))
    if rounded.is_zero():
        rounded = abs(rounded)  # never print "-0.000000"
    return format(rounded, "f")


class PriceBook:
    """Immutable prices plus alias rules, answering "what did this model cost on that day"."""

    def __init__(self, prices: Iterable[Price], aliases: Mapping[str, str] | None = None) -> None:
        by_model: dict[str, list[Price]] = {}
        seen: set[tuple[str, date]] = set()
        for price in prices:
            if price.key in seen:
                raise PricingError(f"two prices for {price.model} from {price.effective_from}")
            seen.add(price.key)
            by_model.setdefault(price.model, []).append(price)
        entries: Mapping[str, tuple[Price, ...]] = {
            model: tuple(sorted(entries, key=lambda p: p.effective_from))
            for model, entries in sorted(by_model.items())
        }
        self._setup(entries, aliases)

    def _setup(
        self, entries: Mapping[str, tuple[Price, ...]], aliases: Mapping[str, str] | None
    ) -> None:
        self._entries = entries
        self._dates: dict[str, list[date]] = {}
        self._aliases = dict(sorted((aliases or {}).items()))
        for alias, target in self._aliases.items():
            problem = _alias_problem(alias, target, self._entries)
            if problem:
                raise PricingError(f"alias {alias!r}: {problem}")
        self._by_length = sorted(self._entries, key=len, reverse=True)
        self._resolved: dict[str, str | None] = {}

    @classmethod
    def from_json(cls, data: bytes, *, path: str = "<bytes>") -> PriceBook:
        """Parse and validate a price file; any problem raises :class:`PricingFileError`."""
        return _parse_file(data, path)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PriceBook:
        """Read and validate the price file at ``path``."""
        with open(path, "rb") as handle:
            return cls.from_json(handle.read(), path=os.fspath(path))

    @classmethod
    def load_default(cls) -> PriceBook:
        """The price file shipped with usageledger (``usageledger/data/prices.json``).

        Its entries are read when a model's price is first asked for: a report or a status
        line prices a few models of the hundreds in the file, and building and checking every
        entry would cost most of their start-up. A test proves the shipped file is valid
        (this book equals the one :meth:`from_json` checks entry by entry).
        """
        shipped = resources.files("usageledger").joinpath("data", "prices.json")
        return _deferred_file(shipped.read_bytes(), "usageledger/data/prices.json")

    def to_json(self) -> bytes:
        """The book as a price file (canonical order, prices as exact decimal strings)."""
        document = {
            "format": FILE_FORMAT,
            "aliases": self._aliases,
            "prices": [_price_to_json(price) for price in self.prices],
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"

    @property
    def prices(self) -> tuple[Price, ...]:
        """Every entry, ordered by model then effective date."""
        return tuple(price for entries in self._entries.values() for price in entries)

    @property
    def aliases(self) -> Mapping[str, str]:
        """Explicit alias rules: a model name as logged → the priced model it means."""
        return dict(self._aliases)

    @property
    def models(self) -> tuple[str, ...]:
        """The priced model names, sorted."""
        return tuple(self._entries)

    def merged(self, other: PriceBook) -> PriceBook:
        """Upsert ``other`` into this book by (model, effective_from); its aliases win too."""
        prices = {price.key: price for price in self.prices}
        prices.update((price.key, price) for price in other.prices)
        return PriceBook(prices.values(), {**self._aliases, **other._aliases})

    def resolve(self, model: str) -> str | None:
        """The priced model name that ``model`` (as an assistant logged it) means, or ``None``.

        First hit wins (docs/pricing.md has examples): (1) the exact name, trimmed and in
        lower case, or an explicit alias; (2) the same after removing Droid's ``custom:`` (and
        its ``-[provider]-0`` tail), every provider path up to the last ``/``
        (``openrouter/anthropic/``, ``bedrock/us-east-1/``), a cloud vendor prefix
        (``us.anthropic.``, ``moonshotai.``) and writing Claude's dotted versions with
        hyphens; (3) the same after each version stamp is cut from the end (``[1m]``,
        ``-v1:0``, ``@20250514``, ``-2025-08-07``, ``-20250929``, ``-latest``, ``-001``;
        see :func:`without_version_stamps`); (4) the longest priced name
        the model starts with, followed by ``-`` or ``:`` and a segment that is not a bare
        number; (5) ``None``.
        """
        if model not in self._resolved:
            self._resolved[model] = self._resolve(model)
        return self._resolved[model]

    def match(self, model: str, day: date) -> Price | None:
        """The price of ``model`` in effect on ``day``, or ``None`` when none was in effect.

        In effect means the latest entry with ``effective_from ≤ day``; a day before the
        model's first entry has no price (it is reported as unpriced, never guessed).
        """
        canonical = self.resolve(model)
        if canonical is None:
            return None
        entries = self._entries[canonical]
        dates = self._dates.get(canonical)
        if dates is None:
            dates = self._dates[canonical] = [p.effective_from for p in entries]
        position = bisect.bisect_right(dates, day) - 1
        return entries[position] if position >= 0 else None

    def long_context_above(self, model: str, day: date) -> int | None:
        """The long-context threshold of ``model``'s price on ``day``, or ``None``.

        A request whose input plus cached input is above it is billed at the long-context
        rates; the tracker uses it to file each request's tokens under ``long_context_*``.
        """
        price = self.match(model, day)
        return price.long_context_above if price is not None else None

    def _resolve(self, model: str) -> str | None:
        name = model.strip().lower()
        found = self._lookup(name)
        if found:
            return found
        custom = _CUSTOM_MODEL.match(name)
        if custom:
            name = custom["name"]
        # Provider paths carry no price of their own: "openrouter/anthropic/claude-…",
        # "bedrock/us-east-1/…" and "fireworks_ai/accounts/fireworks/models/…" all end in the
        # model's own name.
        name = name.rsplit("/", 1)[-1]
        name = _CLOUD_VENDOR_PREFIX.sub("", name, count=1)
        if name.startswith("claude-"):
            name = _CLAUDE_DOTTED_VERSION.sub("-", name)
        found = self._lookup(name)
        if found:
            return found
        shorter_names = without_version_stamps(name)
        for shorter in shorter_names:
            found = self._lookup(shorter)
            if found:
                return found
        return self._longest_prefix(shorter_names[-1] if shorter_names else name)

    def _lookup(self, name: str) -> str | None:
        if name in self._entries:
            return name
        return self._aliases.get(name)

    def _longest_prefix(self, name: str) -> str | None:
        for model in self._by_length:
            rest = name[len(model) :]
            if not name.startswith(model) or not rest.startswith(("-", ":")):
                continue
            # "claude-opus-4-6" must not borrow "claude-opus-4": a bare number is a new version.
            first_segment = re.split(r"[-:]", rest[1:], maxsplit=1)[0]
            if first_segment and not first_segment.isdigit():
                return model
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriceBook):
            return NotImplemented
        return self.prices == other.prices and self._aliases == other._aliases

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._entries.values())

    def __repr__(self) -> str:
        return f"PriceBook({len(self)} prices, {len(self._entries)} models)"


def without_version_stamps(name: str) -> list[str]:
    """The shorter names matching rule 3 tries, in order, as each version stamp is cut off.

    ``"claude-sonnet-4-5-20250929-v1:0"`` gives ``["claude-sonnet-4-5-20250929",
    "claude-sonnet-4-5"]``; a name without a stamp gives ``[]``.
    """
    names: list[str] = []
    stripped = True
    while stripped:
        stripped = False
        for suffix in _VERSION_SUFFIXES:
            shorter = suffix.sub("", name, count=1)
            if shorter != name and shorter:
                name, stripped = shorter, True
                names.append(name)
    return names


def load_default() -> PriceBook:
    """The price file shipped with usageledger (a new book; see :func:`default_book`)."""
    return PriceBook.load_default()


@functools.cache
def default_book() -> PriceBook:
    """The shipped price table, one book per process: the tracker's billing classes and the
    status line (and anything else that prices with the shipped table only) share its parsed
    entries and its matching cache instead of each reading the file."""
    return PriceBook.load_default()


class Cost:
    """Sums exact costs over many rows and remembers which models had tokens but no price."""

    __slots__ = ("_femto", "_unpriced", "unpriced_tokens")

    def __init__(self) -> None:
        self._femto = 0
        self._unpriced: set[str] = set()
        self.unpriced_tokens = 0

    def add(self, book: PriceBook, model: str, day: date, counts: Counts) -> Price | None:
        """Price one row with ``book`` and add it; returns the price used, if any."""
        price = book.match(model, day)
        self.add_priced(model, counts, price)
        return price

    def add_priced(self, model: str, counts: Counts, price: Price | None) -> None:
        """Add one row whose price was already matched (``None`` = unpriced).

        The part of a priced row that its price lists no rates for is unpriced too, named
        ``"<model> (<what>)"``: ``claude-opus-4-6 (fast)``, ``gpt-5.4 (fast long context)``,
        ``o3 (web search)``; its tokens count in :attr:`unpriced_tokens`.
        """
        if price is not None:
            femto, tokens, labels = _price_row(counts, price)
            self._femto += femto
            if labels:
                self._unpriced.update(f"{model} ({label})" for label in labels)
                self.unpriced_tokens += tokens
            return
        fresh, cache_write, cached, output = _read_counts(counts)
        tokens = fresh + cache_write + cached + output
        if tokens:
            self._unpriced.add(model)
            self.unpriced_tokens += tokens

    def merge(self, other: Cost) -> None:
        """Fold another accumulator into this one (e.g. per-day totals into a range total)."""
        self._femto += other._femto
        self._unpriced |= other._unpriced
        self.unpriced_tokens += other.unpriced_tokens

    @property
    def usd(self) -> Decimal:
        """The exact total in USD of every priced row added so far."""
        return _femto_to_usd(self._femto)

    @property
    def unpriced_models(self) -> tuple[str, ...]:
        """Sorted names of models that had tokens but no price on their day."""
        return tuple(sorted(self._unpriced))

    def __repr__(self) -> str:
        return f"Cost(usd={format_usd(self.usd)}, unpriced_models={self.unpriced_models!r})"


_PRICED = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
)
_REQUIRED = frozenset({"input_tokens", "cached_input_tokens", "output_tokens"})
_SUBSET_PREFIXES = ("long_context_", "fast_", "fast_long_context_")
# One request class's five priced quantities: fresh input (not written to a cache), five-minute
# cache writes, one-hour cache writes, cache reads and output.
_Vector = tuple[int, int, int, int, int]


def _read_vector(counts: Counts, prefix: str) -> _Vector:
    values: list[int] = []
    for name in _PRICED:
        key = prefix + name
        try:
            value = counts[key]
        except KeyError:
            if not prefix and name in _REQUIRED:
                raise InvalidCountsError(f"{key} is missing") from None
            value = 0  # older schemas carry no cache-write or subset counts
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidCountsError(f"{key} must be a non-negative integer, got {value!r}")
        values.append(value)
    inp, cached, write, write_1h, output = values
    if write > inp:
        raise InvalidCountsError(
            f"{prefix}cache_write_tokens ({write}) is part of {prefix}input_tokens ({inp}) and "
            "cannot exceed it"
        )
    if write_1h > write:
        raise InvalidCountsError(
            f"{prefix}cache_write_1h_tokens ({write_1h}) is part of {prefix}cache_write_tokens "
            f"({write}) and cannot exceed it"
        )
    return (inp - write, write - write_1h, write_1h, cached, output)


def _minus(one: _Vector, other: _Vector, what: str) -> _Vector:
    left = (
        one[0] - other[0],
        one[1] - other[1],
        one[2] - other[2],
        one[3] - other[3],
        one[4] - other[4],
    )
    if min(left) < 0:
        raise InvalidCountsError(f"{what}: a subset count exceeds the count it is part of")
    return left


def split_counts(counts: Counts) -> dict[str, _Vector]:
    """The priced quantities of each rate class in ``counts``, checked (schema v3, docs/pricing.md).

    Each value is ``(fresh input, five-minute cache writes, one-hour cache writes, cache reads,
    output)`` of the requests billed in that class: ``standard``, ``long_context``, ``fast`` and
    ``fast_long_context``. The ``long_context_*`` and ``fast_*`` subsets include their
    ``fast_long_context_*`` part; together they may not exceed the totals.
    """
    total = _read_vector(counts, "")
    long_all = _read_vector(counts, "long_context_")
    fast_all = _read_vector(counts, "fast_")
    both = _read_vector(counts, "fast_long_context_")
    long_only = _minus(long_all, both, "long_context_* less fast_long_context_*")
    fast_only = _minus(fast_all, both, "fast_* less fast_long_context_*")
    standard = _minus(
        _minus(
            _minus(total, long_only, "totals less long_context_*"), fast_only, "totals less fast_*"
        ),
        both,
        "totals less fast_long_context_*",
    )
    return {
        "standard": standard,
        "long_context": long_only,
        "fast": fast_only,
        "fast_long_context": both,
    }


def _read_counts(counts: Counts) -> tuple[int, int, int, int]:
    """Fresh (non-cache-write) input, cache-write input, cached input and output tokens."""
    fresh, write_5m, write_1h, cached, output = _read_vector(counts, "")
    return fresh, write_5m + write_1h, cached, output


def _tier_femto(vector: _Vector, tier: Tier) -> int:
    fresh, write_5m, write_1h, cached, output = vector
    if not (fresh or write_5m or write_1h or cached or output):
        return 0
    return (
        fresh * _nanos(tier.input)
        + write_5m * _nanos(tier.cache_write)
        + write_1h * _nanos(tier.one_hour_write)
        + cached * _nanos(tier.cached_input)
        + output * _nanos(tier.output)
    )


#: What an unpriced part of a row is called in ``unpriced_models`` (``"<model> (fast)"``).
_CLASS_LABELS = {
    "long_context": "long context",
    "fast": "fast",
    "fast_long_context": "fast long context",
}
#: Counts that only some rows have: a row with none of them non-zero is priced on the fast path.
_BILLING_COUNTS = (
    "cache_write_1h_tokens",
    *(prefix + name for prefix in _SUBSET_PREFIXES for name in _PRICED),
    "web_search_requests",
)
_billing_values = operator.itemgetter(*_BILLING_COUNTS)


def _price_row(counts: Counts, price: Price) -> tuple[int, int, tuple[str, ...]]:
    """The femto-dollars of ``counts`` at ``price``, and the tokens and names of the parts
    ``price`` lists no rates for (see :meth:`Price.rates`)."""
    get = getattr(counts, "get", None)
    try:
        special = any(_billing_values(counts))
    except KeyError:  # a row of an older schema: the counts it has (else the careful path)
        special = get is None or any(map(get, _BILLING_COUNTS))
    if not special:
        # The common row: no one-hour writes, no request classes, no searches. Four rates.
        try:
            inp = counts["input_tokens"]
            cached = counts["cached_input_tokens"]
            output = counts["output_tokens"]
            write = (
                get("cache_write_tokens", 0) if get is not None else counts["cache_write_tokens"]
            )
        except KeyError:
            pass  # a count missing: the careful path names it
        else:
            if (
                type(inp) is int
                and type(cached) is int
                and type(output) is int
                and type(write) is int
                and inp >= write >= 0
                and cached >= 0
                and output >= 0
            ):
                femto = (
                    (inp - write) * _nanos(price.input)
                    + write * _nanos(price.cache_write)
                    + cached * _nanos(price.cached_input)
                    + output * _nanos(price.output)
                )
                return femto, 0, ()
    femto = 0
    unpriced = 0
    labels: list[str] = []
    for rate_class, vector in split_counts(counts).items():
        if not any(vector):
            continue
        if rate_class == "standard":  # the base rates, without building a Tier
            fresh, write_5m, write_1h, cached, output = vector
            one_hour = price.cache_write if price.cache_write_1h is None else price.cache_write_1h
            femto += (
                fresh * _nanos(price.input)
                + write_5m * _nanos(price.cache_write)
                + write_1h * _nanos(one_hour)
                + cached * _nanos(price.cached_input)
                + output * _nanos(price.output)
            )
            continue
        tier = _rates(price, rate_class)
        if tier is None:
            unpriced += sum(vector)
            labels.append(_CLASS_LABELS[rate_class])
            continue
        femto += _tier_femto(vector, tier)
    searches = _read_requests(counts, "web_search_requests")
    if searches:
        if price.web_search is None:
            labels.append("web search")
        else:
            # USD per 1,000 requests in nano-dollars: one request is nanos × 10³ femto-dollars.
            femto += searches * _nanos(price.web_search) * 1000
    return femto, unpriced, tuple(labels)


def _read_requests(counts: Counts, name: str) -> int:
    try:
        value = counts[name]
    except KeyError:
        return 0  # schemas before v3 carry no request counts
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidCountsError(f"{name} must be a non-negative integer, got {value!r}")
    return value


#: Anthropic bills fast mode at one rate over the whole context window, so a fast request over
#: the long-context threshold is billed at the fast rates
#: (https://platform.claude.com/docs/en/build-with-claude/fast-mode). Its models' names start so.
_ONE_FAST_RATE_MODELS = ("claude-",)
_HIGH_PRECISION = Context(prec=80)


#: :func:`_rates` by (price object, class): a handful of prices serve every row, and hashing a
#: Price (all its fields) would cost more than the lookup saves. Each entry keeps its price
#: alive, so an id in the cache is never reused by another object.
_RATES_CACHE: dict[tuple[int, str], tuple[Price, Tier | None]] = {}


def _rates(price: Price, rate_class: str) -> Tier | None:
    """:meth:`Price.rates`, cached per price object."""
    key = (id(price), rate_class)
    hit = _RATES_CACHE.get(key)
    if hit is not None and hit[0] is price:
        return hit[1]
    tier = _class_rates(price, rate_class)
    if len(_RATES_CACHE) >= 4096:
        _RATES_CACHE.clear()
    _RATES_CACHE[key] = (price, tier)
    return tier


def _class_rates(price: Price, rate_class: str) -> Tier | None:
    tier: Tier | None
    if rate_class == "standard":
        return price.base
    if rate_class == "long_context":
        tier = price.long_context if price.long_context is not None else price.base
    elif rate_class == "fast":
        tier = price.fast
    elif rate_class == "fast_long_context":
        tier = price.fast_long_context
        if tier is None and (
            price.long_context is None or price.model.startswith(_ONE_FAST_RATE_MODELS)
        ):
            tier = price.fast
    else:
        raise ValueError(f"unknown rate class {rate_class!r}")
    if tier is None or tier.cache_write_1h is not None or price.cache_write_1h is None:
        return tier
    if price.input == 0:  # validation allows this only for a tier whose input is 0 too
        return replace(tier, cache_write_1h=price.cache_write_1h)
    one_hour = _HIGH_PRECISION.divide(
        _HIGH_PRECISION.multiply(price.cache_write_1h, tier.input), price.input
    )
    return replace(
        tier,
        cache_write_1h=_canonical_price(one_hour.quantize(_NANO, rounding=ROUND_HALF_EVEN)),
    )


@functools.lru_cache(maxsize=4096)  # a handful of distinct prices, converted for every row
def _nanos(value: Decimal) -> int:
    """A validated price as an exact integer of nano-dollars per million tokens."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, non-negative: guaranteed by Price validation
    coefficient = int("".join(map(str, digits)))
    shift = exponent + MAX_PRICE_DECIMALS
    scale: int = 10 ** abs(shift)
    # Validation guarantees the digits below a nano-dollar are zeros, so // is exact.
    return coefficient * scale if shift >= 0 else coefficient // scale


def _canonical_price(number: Decimal) -> Decimal:
    """``number`` without trailing zeros and never in exponent form (``2E+1`` → ``20``)."""
    reduced = number.normalize()
    exponent = reduced.as_tuple().exponent
    return reduced.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else reduced


def _femto_to_usd(femto: int) -> Decimal:
    """Exact dollars from femto-dollars, without trailing zeros below the units digit."""
    exponent = _FEMTO_EXPONENT
    while exponent < 0 and femto and femto % 10 == 0:
        femto //= 10
        exponent += 1
    if not femto:
        return Decimal(0)
    return Decimal((0, tuple(int(d) for d in str(femto)), exponent))


def _price_problem(value: object) -> str | None:
    if not isinstance(value, Decimal):
        return f"expected a Decimal, got {type(value).__name__}"
    if not value.is_finite():
        return f"not a number: {value}"
    if value < 0:
        return f"negative price {format(value, 'f')}"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    excess = -MAX_PRICE_DECIMALS - exponent  # digits finer than a nano-dollar
    if excess > 0 and any(digits[-excess:]):
        return f"more than {MAX_PRICE_DECIMALS} decimal places: {format(value, 'f')}"
    return None


def _model_problem(model: object) -> str | None:
    if not isinstance(model, str) or not model:
        return "expected a non-empty model name"
    if model != model.strip().lower() or any(ch.isspace() for ch in model):
        return f"{model!r} must be lower case without spaces (names are matched in lower case)"
    return None


def _alias_problem(alias: object, target: object, entries: Mapping[str, object]) -> str | None:
    problem = _model_problem(alias) or _model_problem(target)
    if problem:
        return problem
    if alias in entries:
        return "is itself a priced model; an alias may not shadow a price"
    if target not in entries:
        return f"points to {target!r}, which has no price"
    return None


def _price_to_json(price: Price) -> dict[str, object]:
    entry: dict[str, object] = {
        "model": price.model,
        "effective_from": price.effective_from.isoformat(),
    }
    entry.update((name, format(getattr(price, name), "f")) for name in PRICE_FIELDS)
    entry.update(source=price.source, taken=price.taken.isoformat())
    if price.note:
        entry["note"] = price.note
    entry.update(billing_to_json(price))
    return entry


def _tier_to_json(tier: Tier) -> dict[str, object]:
    out: dict[str, object] = {}
    if tier.above_tokens is not None:
        out["above_tokens"] = tier.above_tokens
    out.update((name, format(getattr(tier, name), "f")) for name in PRICE_FIELDS)
    if tier.cache_write_1h is not None:
        out["cache_write_1h"] = format(tier.cache_write_1h, "f")
    return out


def billing_to_json(price: Price) -> dict[str, object]:
    """The optional billing fields of ``price`` (``cache_write_1h``, ``web_search`` and the
    tiers), as a price file writes them; ``{}`` for an entry with four rates only."""
    out: dict[str, object] = {}
    for name in ("cache_write_1h", "web_search"):
        value = getattr(price, name)
        if value is not None:
            out[name] = format(value, "f")
    for name in TIER_FIELDS:
        tier = getattr(price, name)
        if tier is not None:
            out[name] = _tier_to_json(tier)
    return out


def billing_from_json(data: Mapping[str, object]) -> dict[str, Any]:
    """The keyword arguments of :class:`Price` for the billing fields of ``data`` (as written by
    :func:`billing_to_json`); raises ``ValueError`` naming the field that is wrong."""
    values: dict[str, Any] = {}
    for field in BILLING_KEYS:
        if field not in data:
            continue
        try:
            values[field] = (
                _parse_tier(data[field]) if field in TIER_FIELDS else _parse_price(data[field])
            )
        except _FieldError as problem:
            raise ValueError(f"{field}: {problem}") from None
    return values


def _parse_file(data: bytes, path: str) -> PriceBook:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PricingFileError(path, f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PricingFileError(path, "expected a JSON object with 'format' and 'prices'")
    unknown = sorted(set(document) - {"format", "prices", "aliases"})
    if unknown:
        raise PricingFileError(path, f"unknown top-level keys: {', '.join(unknown)}")
    if document.get("format") != FILE_FORMAT:
        raise PricingFileError(
            path, f"'format' must be {FILE_FORMAT}, got {document.get('format')!r}"
        )
    entries = document.get("prices")
    if not isinstance(entries, list):
        raise PricingFileError(path, "'prices' must be a list of price entries")
    prices: list[Price] = []
    first_index: dict[tuple[str, date], int] = {}
    for index, entry in enumerate(entries):
        price = _parse_entry(entry, path, index)
        if price.key in first_index:
            raise PricingFileError(
                path,
                f"duplicates prices[{first_index[price.key]}]: one price per model and "
                f"effective_from ({price.effective_from})",
                index=index,
                model=price.model,
            )
        first_index[price.key] = index
        prices.append(price)
    aliases = document.get("aliases", {})
    if not isinstance(aliases, dict):
        raise PricingFileError(path, "'aliases' must map a logged model name to a priced model")
    models = {price.model: None for price in prices}
    for alias, target in aliases.items():
        problem = _alias_problem(alias, target, models)
        if problem:
            raise PricingFileError(path, problem, where=f"aliases[{alias!r}]")
    return PriceBook(prices, aliases)


class _Deferred(Mapping[str, tuple[Price, ...]]):
    """A price file's entries by model, each model's read and checked on first use."""

    def __init__(self, raw: dict[str, list[tuple[int, object]]], path: str) -> None:
        self._raw = raw
        self._path = path
        self._built: dict[str, tuple[Price, ...]] = {}

    def __getitem__(self, model: str) -> tuple[Price, ...]:
        built = self._built.get(model)
        if built is None:
            prices: dict[date, Price] = {}
            for index, entry in self._raw[model]:
                price = _parse_entry(entry, self._path, index)
                if price.effective_from in prices:
                    raise PricingFileError(
                        self._path,
                        f"two prices for {model} from {price.effective_from}",
                        index=index,
                        model=model,
                    )
                prices[price.effective_from] = price
            built = self._built[model] = tuple(prices[day] for day in sorted(prices))
        return built

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, model: object) -> bool:
        return model in self._raw


def _deferred_file(data: bytes, path: str) -> PriceBook:
    """A book of the price file ``data`` whose entries are checked as they are used; a file
    whose shape is not as expected is read (and refused) entry by entry at once."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _parse_file(data, path)
    entries = document.get("prices") if isinstance(document, dict) else None
    aliases = document.get("aliases", {}) if isinstance(document, dict) else None
    if (
        not isinstance(entries, list)
        or not isinstance(aliases, dict)
        or set(document) - {"format", "prices", "aliases"}
        or document.get("format") != FILE_FORMAT
    ):
        return _parse_file(data, path)
    raw: dict[str, list[tuple[int, object]]] = {}
    for index, entry in enumerate(entries):
        model = entry.get("model") if isinstance(entry, dict) else None
        if not isinstance(model, str) or _model_problem(model):
            return _parse_file(data, path)
        raw.setdefault(model, []).append((index, entry))
    book = PriceBook.__new__(PriceBook)
    try:
        book._setup(_Deferred(dict(sorted(raw.items())), path), aliases)
    except PricingError:
        return _parse_file(data, path)
    return book


class _FieldError(Exception):
    """Why one field of one entry is unusable (wrapped into a PricingFileError)."""


def _parse_entry(entry: object, path: str, index: int) -> Price:
    if not isinstance(entry, dict):
        raise PricingFileError(path, "expected an object", index=index)
    model = entry.get("model") if isinstance(entry.get("model"), str) else None
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise PricingFileError(
            path, f"missing fields: {', '.join(missing)}", index=index, model=model
        )
    unknown = sorted(set(entry) - {*REQUIRED_KEYS, *OPTIONAL_KEYS})
    if unknown:
        raise PricingFileError(
            path, f"unknown fields: {', '.join(unknown)}", index=index, model=model
        )
    parsers = {
        "model": _parse_model,
        "effective_from": _parse_date,
        "taken": _parse_date,
        **dict.fromkeys(PRICE_FIELDS, _parse_price),
        "source": _parse_source,
        "note": _parse_note,
        "cache_write_1h": _parse_price,
        "web_search": _parse_price,
        **dict.fromkeys(TIER_FIELDS, _parse_tier),
    }
    values: dict[str, Any] = {}
    for field, parse in parsers.items():
        if field not in entry:
            continue
        try:
            values[field] = parse(entry[field])
        except _FieldError as problem:
            raise PricingFileError(
                path, str(problem), index=index, field=field, model=model
            ) from None
    try:
        return Price(**values)
    except ValueError as problem:  # a rule between fields (a tier without its threshold, …)
        raise PricingFileError(path, str(problem), index=index, model=model) from None


def _parse_tier(value: object) -> Tier:
    if not isinstance(value, dict):
        raise _FieldError("expected an object of rates (input, cached_input, cache_write, output)")
    missing = [key for key in PRICE_FIELDS if key not in value]
    if missing:
        raise _FieldError(f"missing rates: {', '.join(missing)}")
    unknown = sorted(set(value) - set(TIER_KEYS))
    if unknown:
        raise _FieldError(f"unknown keys: {', '.join(map(str, unknown))}")
    rates = {}
    for key in (*PRICE_FIELDS, "cache_write_1h"):
        if key in value:
            try:
                rates[key] = _parse_price(value[key])
            except _FieldError as problem:
                raise _FieldError(f"{key}: {problem}") from None
    above = value.get("above_tokens")
    if above is not None and (not isinstance(above, int) or isinstance(above, bool) or above <= 0):
        raise _FieldError(
            f"above_tokens: expected a positive whole number of tokens, got {above!r}"
        )
    return Tier(**rates, above_tokens=above)


def _parse_model(value: object) -> str:
    problem = _model_problem(value)
    if problem:
        raise _FieldError(problem)
    assert isinstance(value, str)
    return value


def _parse_date(value: object) -> date:
    if not isinstance(value, str) or not _DATE_TEXT.fullmatch(value):
        raise _FieldError(f"expected a date written YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _FieldError(f"not a calendar date: {value!r}") from None


def _parse_price(value: object) -> Decimal:
    if isinstance(value, bool | float):
        raise _FieldError(
            f'write prices as strings (e.g. "1.25") so they are read exactly; got {value!r}'
        )
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _PRICE_TEXT.fullmatch(value):
        raise _FieldError(f"expected a decimal number of USD per million tokens, got {value!r}")
    price = Decimal(value)
    problem = _price_problem(price)
    if problem:
        raise _FieldError(problem)
    return price


def _parse_source(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _FieldError("expected the URL (or a description) the price came from")
    return value


def _parse_note(value: object) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"expected a string, got {value!r}")
    return value
