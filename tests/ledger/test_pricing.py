"""Prices, model matching and exact cost arithmetic (usageledger.ledger.pricing)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usageledger.ledger.pricing import (
    Cost,
    InvalidCountsError,
    Price,
    PriceBook,
    PricingError,
    PricingFileError,
    TokenCounts,
    UnpricedCountsError,
    cost_usd,
    format_usd,
    load_default,
)

LAUNCH = date(2025, 8, 7)


def price(
    model: str = "gpt-5",
    effective_from: date = LAUNCH,
    *,
    input: str = "1.25",
    cached_input: str = "0.125",
    cache_write: str = "1.25",
    output: str = "10",
) -> Price:
    """A price with GPT-5's list rates unless told otherwise."""
    return Price(
        model=model,
        effective_from=effective_from,
        input=Decimal(input),
        cached_input=Decimal(cached_input),
        cache_write=Decimal(cache_write),
        output=Decimal(output),
        source="https://example.test/pricing",
        taken=date(2026, 11, 28),
    )


def counts(
    input_tokens: int = 0, cached: int = 0, output: int = 0, cache_write: int = 0
) -> TokenCounts:
    """Token counts in the ledger's semantics (cache_write is part of input)."""
    return {
        "input_tokens": input_tokens,
        "cached_input_tokens": cached,
        "output_tokens": output,
        "cache_write_tokens": cache_write,
    }


def entry(**overrides: Any) -> dict[str, Any]:
    """One valid price-file entry, with fields replaced or removed (value None)."""
    base: dict[str, Any] = {
        "model": "gpt-5",
        "effective_from": "2025-08-07",
        "input": "1.25",
        "cached_input": "0.125",
        "cache_write": "1.25",
        "output": "10",
        "source": "https://developers.openai.com/api/docs/pricing",
        "taken": "2026-11-28",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def price_file(*entries: dict[str, Any], **top: Any) -> bytes:
    """A price file holding ``entries`` (default: one valid entry)."""
    document: dict[str, Any] = {"format": 1, "prices": list(entries) or [entry()]}
    document.update(top)
    return orjson.dumps(document)


@pytest.fixture(scope="module")
def shipped() -> PriceBook:
    """The price file shipped with usageledger."""
    return load_default()


# --- matching ------------------------------------------------------------------------------


def test_it_matches_a_model_by_its_exact_name(shipped: PriceBook) -> None:
    """A logged name that is a priced model gets that model's price."""
    found = shipped.match("gpt-5", date(2025, 9, 1))
    assert found is not None
    assert (found.model, found.input, found.output) == ("gpt-5", Decimal("1.25"), Decimal("10"))


def test_names_match_regardless_of_case_and_surrounding_space(shipped: PriceBook) -> None:
    """Model names compare in lower case after trimming."""
    assert shipped.resolve("  GPT-5 ") == "gpt-5"


@pytest.mark.parametrize(
    ("logged", "priced"),
    [
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("openai/gpt-5", "gpt-5"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("google/gemini-2.5-flash", "gemini-2.5-flash"),
        ("openrouter/anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4@20250514", "claude-sonnet-4"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-sonnet-4-5[1m]", "claude-sonnet-4-5"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ],
)
def test_it_strips_vendor_prefixes_and_version_stamps(
    shipped: PriceBook, logged: str, priced: str
) -> None:
    """Prefixes such as ``anthropic/`` and stamps such as ``-20250929`` do not hide a model."""
    assert shipped.resolve(logged) == priced


@pytest.mark.parametrize(
    ("logged", "priced"),
    [
        ("custom:GLM-4.6-[Fireworks]-0", "glm-4.6"),  # Droid's bring-your-own-key models
        ("custom:glm-4.6", "glm-4.6"),
        ("openrouter/x-ai/grok-code-fast-1", "grok-code-fast-1"),
        ("openrouter/qwen/qwen3-coder-plus", "qwen3-coder-plus"),
        ("bedrock/us-east-1/moonshotai.kimi-k2.5", "kimi-k2.5"),
        ("fireworks_ai/accounts/fireworks/models/kimi-k2.5", "kimi-k2.5"),
        ("global.anthropic.claude-opus-5-5", "claude-opus-5-5"),
        ("us-gov.anthropic.claude-opus-5-5-v1:0", "claude-opus-5-5"),
        ("claude-opus-5-5@default", "claude-opus-5-5"),
        ("vertex_ai/claude-opus-5-5@20261201", "claude-opus-5-5"),
    ],
)
def test_provider_paths_cloud_prefixes_and_custom_names_resolve(logged: str, priced: str) -> None:
    """Every documented prefix and tag is removed before the name is looked up."""
    book = PriceBook(
        [price("glm-4.6"), price("grok-code-fast-1"), price("qwen3-coder-plus"),
         price("kimi-k2.5"), price("claude-opus-5-5")]
    )  # fmt: skip
    assert book.resolve(logged) == priced


def test_a_custom_name_with_a_bare_index_but_no_provider_tag_keeps_it() -> None:
    """``custom:kimi-k2-0`` is not cut to kimi-k2: the ``-0`` is cut only after a ``[…]`` tag."""
    book = PriceBook([price("kimi-k2")])
    assert book.resolve("custom:kimi-k2-0") is None
    assert book.resolve("custom:Kimi-K2-[Moonshot]-0") == "kimi-k2"


def test_an_explicit_alias_names_the_model_it_means(shipped: PriceBook) -> None:
    """Anthropic's ``claude-opus-4-0`` alias is priced as Claude Opus 4."""
    assert shipped.resolve("claude-opus-4-0") == "claude-opus-4"


def test_an_exact_entry_beats_the_alias_rules(shipped: PriceBook) -> None:
    """The 2024-05-13 GPT-4o snapshot keeps its own price instead of losing its date stamp."""
    day = date(2025, 1, 1)
    snapshot, alias = shipped.match("gpt-4o-2024-05-13", day), shipped.match("gpt-4o", day)
    assert snapshot is not None
    assert alias is not None
    assert (snapshot.input, alias.input) == (Decimal("5"), Decimal("2.50"))


def test_the_longest_priced_prefix_wins(shipped: PriceBook) -> None:
    """A variant without an entry takes its closest family's price (gpt-5.1-codex, not gpt-5.1)."""
    assert shipped.resolve("gpt-5-codex-high") == "gpt-5-codex"
    assert shipped.resolve("gemini-2.5-flash-lite-preview-06-17") == "gemini-2.5-flash-lite"


def test_a_bare_version_number_never_borrows_an_older_models_price(shipped: PriceBook) -> None:
    """``claude-opus-4-9`` is unpriced rather than priced as Claude Opus 4."""
    assert shipped.resolve("claude-opus-4-9") is None
    assert shipped.resolve("gpt-5.9") is None


def test_an_unknown_model_is_unpriced(shipped: PriceBook) -> None:
    """A model with no entry, alias or prefix has no price."""
    assert shipped.match("llama-3-70b", date(2026, 1, 1)) is None
    assert shipped.match("<synthetic>", date(2026, 1, 1)) is None


# --- effective dates -----------------------------------------------------------------------


def test_each_day_gets_the_price_in_effect_that_day() -> None:
    """A bucket before a price change keeps the old price; the change day and later get the new."""
    change = date(2025, 6, 10)
    book = PriceBook(
        [
            price("o3", date(2025, 4, 16), input="10", output="40"),
            price("o3", change, input="2", output="8"),
        ]
    )
    before, on, after = (book.match("o3", day) for day in (date(2025, 6, 9), change, LAUNCH))
    assert before is not None
    assert on is not None
    assert after is not None
    assert (before.input, on.input, after.input) == (Decimal("10"), Decimal("2"), Decimal("2"))


def test_a_day_before_the_first_price_is_unpriced() -> None:
    """No price was in effect before a model's first entry, so none is guessed."""
    book = PriceBook([price("gpt-5", LAUNCH)])
    assert book.match("gpt-5", date(2025, 8, 6)) is None


def test_the_shipped_o3_price_cut_applies_from_2025_06_10(shipped: PriceBook) -> None:
    """The shipped file carries o3's launch price and its 80% cut on 2025-06-10."""
    before, after = shipped.match("o3", date(2025, 6, 9)), shipped.match("o3", date(2025, 6, 10))
    assert before is not None
    assert after is not None
    assert (before.output, after.output) == (Decimal("40"), Decimal("8"))


# --- arithmetic ----------------------------------------------------------------------------


def test_the_cost_of_input_tokens_is_exact() -> None:
    """1,234,567 input tokens at $1.25/M cost exactly $1.54320875."""
    # 1,234,567 x 1.25 = 1,543,208.75 micro-dollars = $1.54320875
    assert cost_usd(counts(1_234_567), price()) == Decimal("1.54320875")


def test_cached_input_and_output_are_priced_at_their_own_rates() -> None:
    """Cached input at the cached rate and output (reasoning included) at the output rate."""
    # 2,000,000 cached x $0.125 = $0.25; 300,000 output x $10 = $3.00; total $3.25
    assert cost_usd(counts(cached=2_000_000, output=300_000), price()) == Decimal("3.25")


def test_cache_write_tokens_are_the_part_of_input_priced_at_cache_write() -> None:
    """Of 1,000,000 input tokens, the 400,000 written to cache cost the cache-write rate."""
    sonnet = price(input="3", cached_input="0.30", cache_write="3.75", output="15")
    # fresh 600,000 x $3 = $1.80; cache write 400,000 x $3.75 = $1.50; total $3.30
    assert cost_usd(counts(1_000_000, cache_write=400_000), sonnet) == Decimal("3.30")


def test_the_worked_example_in_the_docs_is_right(shipped: PriceBook) -> None:
    """docs/pricing.md's Claude Sonnet 4.5 example costs $4.05."""
    sonnet = shipped.match("claude-sonnet-4-5", date(2025, 10, 1))
    assert sonnet is not None
    row = counts(1_000_000, cached=2_000_000, output=10_000, cache_write=400_000)
    assert cost_usd(row, sonnet) == Decimal("4.05")


def test_a_v1_row_without_cache_write_tokens_costs_as_if_none_were_written() -> None:
    """Schema v1 rows carry no cache_write_tokens; all their input is priced as fresh input."""
    row = {"input_tokens": 1_000_000, "cached_input_tokens": 0, "output_tokens": 0}
    assert cost_usd(row, price()) == Decimal("1.25")


def test_a_cost_is_never_rounded() -> None:
    """One token at $0.005/M costs exactly $0.000000005, below the displayed precision."""
    nano = price(input="0.05", cached_input="0.005")
    assert cost_usd(counts(cached=1), nano) == Decimal("0.000000005")


@pytest.mark.parametrize(
    "bad",
    [
        counts(-1),
        {"input_tokens": 1.0, "cached_input_tokens": 0, "output_tokens": 0},
        {"input_tokens": True, "cached_input_tokens": 0, "output_tokens": 0},
        counts(10, cache_write=11),
        {"input_tokens": 1, "output_tokens": 0},
    ],
    ids=["negative", "float", "bool", "cache-write-above-input", "missing"],
)
def test_it_rejects_counts_that_break_the_token_rules(bad: Any) -> None:
    """Counts must be non-negative integers with cache_write_tokens ≤ input_tokens."""
    with pytest.raises(InvalidCountsError):
        cost_usd(bad, price())


# --- rounding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("1.54320875", "1.543209"),
        ("0.0000005", "0.000000"),  # a tie rounds to the even digit 0
        ("0.0000015", "0.000002"),  # ... and to 2
        ("0.0000025", "0.000002"),  # ... and stays at 2
        ("0.0000035", "0.000004"),
        ("0.00000251", "0.000003"),  # not a tie
        ("0", "0.000000"),
        ("-0.0000001", "0.000000"),  # never "-0.000000"
        ("12345678901234.5", "12345678901234.500000"),
    ],
)
def test_format_usd_shows_six_places_rounding_half_to_even(amount: str, shown: str) -> None:
    """Display rounds to 6 decimal places, ties to even."""
    assert format_usd(Decimal(amount)) == shown


def test_five_tokens_at_ten_cents_a_million_round_down_to_zero() -> None:
    """5 tokens at $0.10/M are $0.0000005, a tie that shows as 0.000000; 15 show as 0.000002."""
    cheap = price(input="0.10")
    assert format_usd(cost_usd(counts(5), cheap)) == "0.000000"
    assert format_usd(cost_usd(counts(15), cheap)) == "0.000002"


def test_format_usd_refuses_floats() -> None:
    """A float would already be inexact, so it is refused."""
    with pytest.raises(TypeError):
        format_usd(0.1)  # type: ignore[arg-type]  # the point of the test


# --- properties ----------------------------------------------------------------------------

prices_per_million = st.decimals(
    min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False
)


@st.composite
def token_counts(draw: st.DrawFn) -> TokenCounts:
    """Counts obeying docs/design.md §3: cache_write is part of input."""
    limit = 2**40
    input_tokens = draw(st.integers(0, limit))
    return counts(
        input_tokens,
        cached=draw(st.integers(0, limit)),
        output=draw(st.integers(0, limit)),
        cache_write=draw(st.integers(0, input_tokens)),
    )


def plus(a: TokenCounts, b: TokenCounts) -> TokenCounts:
    """The counts of two rows taken together."""
    return counts(
        a["input_tokens"] + b["input_tokens"],
        cached=a["cached_input_tokens"] + b["cached_input_tokens"],
        output=a["output_tokens"] + b["output_tokens"],
        cache_write=a.get("cache_write_tokens", 0) + b.get("cache_write_tokens", 0),
    )


@given(
    a=token_counts(),
    b=token_counts(),
    rates=st.tuples(prices_per_million, prices_per_million, prices_per_million, prices_per_million),
)
def test_cost_is_exactly_additive(
    a: TokenCounts, b: TokenCounts, rates: tuple[Decimal, Decimal, Decimal, Decimal]
) -> None:
    """cost(a) + cost(b) == cost(a + b), to the last digit, for any counts and prices."""
    fresh, cached, write, out = (format(rate, "f") for rate in rates)
    rate_card = price(input=fresh, cached_input=cached, cache_write=write, output=out)
    assert cost_usd(a, rate_card) + cost_usd(b, rate_card) == cost_usd(plus(a, b), rate_card)
    total = Cost()
    total.add_priced("m", a, rate_card)
    total.add_priced("m", b, rate_card)
    assert total.usd == cost_usd(plus(a, b), rate_card)


@st.composite
def price_books(draw: st.DrawFn) -> PriceBook:
    """Books with a few models, several dated prices each, and aliases to priced models."""
    models = st.sampled_from(["gpt-5", "claude-sonnet-4-5", "gemini-2.5-pro", "o3"])
    entries = draw(
        st.lists(
            st.builds(
                price,
                models,
                st.dates(date(2024, 1, 1), date(2027, 1, 1)),
                input=prices_per_million.map(lambda d: format(d, "f")),
                output=prices_per_million.map(lambda d: format(d, "f")),
            ),
            min_size=1,
            max_size=8,
            unique_by=lambda p: p.key,
        )
    )
    priced = sorted({p.model for p in entries})
    aliases = draw(st.dictionaries(st.sampled_from(["latest", "default"]), st.sampled_from(priced)))
    return PriceBook(entries, aliases)


@given(book=price_books())
def test_a_price_book_survives_a_json_round_trip(book: PriceBook) -> None:
    """to_json then from_json gives back the same prices and aliases."""
    assert PriceBook.from_json(book.to_json()) == book


# --- accumulation --------------------------------------------------------------------------


def test_cost_sums_rows_and_lists_models_with_tokens_but_no_price(shipped: PriceBook) -> None:
    """Priced rows add up exactly; unpriced models with tokens are named, sorted."""
    day = date(2025, 9, 1)
    total = Cost()
    total.add(shipped, "gpt-5", day, counts(1_000_000))  # $1.25
    total.add(shipped, "gpt-5-2025-08-07", day, counts(output=100_000))  # $1.00
    total.add(shipped, "zeta-model", day, counts(10))
    total.add(shipped, "alpha-model", day, counts(output=5))
    total.add(shipped, "<synthetic>", day, counts())  # no tokens: not worth reporting
    assert total.usd == Decimal("2.25")
    assert total.unpriced_models == ("alpha-model", "zeta-model")
    assert total.unpriced_tokens == 15


def test_costs_merge_into_a_range_total() -> None:
    """Merging per-day accumulators gives the same total and unpriced list."""
    monday, tuesday = Cost(), Cost()
    monday.add_priced("gpt-5", counts(1_000_000), price())
    tuesday.add_priced("mystery", counts(7), None)
    monday.merge(tuesday)
    assert (monday.usd, monday.unpriced_models) == (Decimal("1.25"), ("mystery",))


# --- the shipped file ----------------------------------------------------------------------


def test_the_shipped_file_loads(shipped: PriceBook) -> None:
    """The shipped price file is valid and holds the common assistants' models."""
    expected = {
        "gpt-5", "gpt-5-codex", "gpt-5-mini", "gpt-4.1", "o3", "o4-mini", "gpt-4o",
        "claude-opus-4", "claude-opus-4-1", "claude-sonnet-4", "claude-sonnet-4-5",
        "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-7-sonnet",
        "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
    }  # fmt: skip
    assert expected <= set(shipped.models)


def test_the_shipped_file_prices_the_models_people_use_now(shipped: PriceBook) -> None:
    """Recent Claude, GPT and Gemini models and the new sources' models are in the table."""
    day = date(2026, 12, 4)
    for logged in (
        "claude-opus-5-5", "claude-fable-5-1", "claude-sonnet-5-5", "gpt-6-sol", "gpt-5.3-codex",
        "gemini-3.1-pro-preview", "gemini-3-flash-preview", "qwen3-coder-plus", "kimi-k2.5",
        "glm-4.6", "grok-code-fast-1", "deepseek-chat", "minimax-m2",
        "custom:GLM-4.6-[Fireworks]-0", "us.anthropic.claude-opus-5-5-v1:0",
    ):  # fmt: skip
        assert shipped.match(logged, day) is not None, logged


def test_the_shipped_history_is_kept_when_the_table_is_regenerated(shipped: PriceBook) -> None:
    """Every hand-kept entry is in the shipped table, so a past day keeps its price."""
    root = Path(__file__).resolve().parents[2]
    hand_kept = PriceBook.from_file(root / "scripts" / "prices_hand_kept.json")
    assert set(hand_kept.prices) <= set(shipped.prices)
    o3 = shipped.match("o3", date(2025, 6, 9))
    assert o3 is not None
    assert (o3.input, o3.output) == (Decimal("10"), Decimal("40"))


def test_every_shipped_price_names_an_https_source_and_the_day_it_was_taken(
    shipped: PriceBook,
) -> None:
    """Each entry cites the vendor page it came from and when it was read; no entry takes
    effect after the table's newest reading (the table holds no announced future prices)."""
    as_of = max(entry_.taken for entry_ in shipped.prices)
    for entry_ in shipped.prices:
        assert entry_.source.startswith("https://"), entry_.model
        assert date(2024, 1, 1) <= entry_.taken, entry_.model
        assert entry_.effective_from <= as_of, entry_.model


def test_shipped_openai_cache_writes_cost_the_input_price(shipped: PriceBook) -> None:
    """OpenAI lists no cache-write price, so cache_write = input."""
    for entry_ in shipped.prices:
        if "openai.com" in entry_.source:
            assert entry_.cache_write == entry_.input, entry_.model


def test_shipped_anthropic_cache_writes_are_the_listed_five_minute_rate(
    shipped: PriceBook,
) -> None:
    """Anthropic's 5-minute cache write is 1.25x input (Claude Haiku 3 is listed at $0.30)."""
    for entry_ in shipped.prices:
        if "claude.com" in entry_.source and entry_.model != "claude-3-haiku":
            assert entry_.cache_write == entry_.input * Decimal("1.25"), entry_.model


def test_the_shipped_file_is_written_in_canonical_form(shipped: PriceBook) -> None:
    """The file is exactly what to_json writes, so a reload and rewrite is byte-identical."""
    data = resources.files("usageledger").joinpath("data", "prices.json").read_bytes()
    assert shipped.to_json() == data


# --- bad files -----------------------------------------------------------------------------

BAD_FILES: list[tuple[str, bytes, str]] = [
    ("not-json", b"{nope", "not valid JSON"),
    ("not-an-object", b"[]", "expected a JSON object"),
    ("unknown-top-level-key", price_file(colour="red"), "unknown top-level keys: colour"),
    ("wrong-format", price_file(format=2), "'format' must be 1"),
    ("prices-not-a-list", orjson.dumps({"format": 1, "prices": {}}), "'prices' must be a list"),
    ("entry-not-an-object", price_file(entry(), 3), "prices[1]: expected an object"),  # type: ignore[arg-type]
    ("missing-fields", price_file(entry(output=None, taken=None)), "missing fields: output, taken"),
    ("unknown-field", price_file(entry(currency="EUR")), "unknown fields: currency"),
    ("negative-price", price_file(entry(input="-1.25")), "negative price -1.25"),
    ("float-price", price_file(entry(input=1.25)), "write prices as strings"),
    ("exponent-price", price_file(entry(input="1e3")), "expected a decimal number"),
    ("too-precise", price_file(entry(input="0.0000000001")), "more than 9 decimal places"),
    ("not-a-date", price_file(entry(effective_from="2025-13-01")), "not a calendar date"),
    ("date-format", price_file(entry(taken="20251128")), "expected a date written YYYY-MM-DD"),
    ("upper-case-model", price_file(entry(model="GPT-5")), "must be lower case"),
    ("empty-source", price_file(entry(source=" ")), "expected the URL"),
    (
        "duplicate",
        price_file(entry(), entry(model="o3"), entry(output="12")),
        "prices[2] (gpt-5): duplicates prices[0]",
    ),
    (
        "alias-to-nothing",
        price_file(aliases={"gpt-five": "gpt-6"}),
        "aliases['gpt-five']: points to 'gpt-6', which has no price",
    ),
    (
        "alias-shadows-price",
        price_file(aliases={"gpt-5": "gpt-5"}),
        "aliases['gpt-5']: is itself a priced model",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_it_rejects_a_bad_price_file_with_a_clear_message(data: bytes, message: str) -> None:
    """Every problem names the file and, where it can, the entry, field and reason."""
    with pytest.raises(PricingFileError) as raised:
        PriceBook.from_json(data, path="mine.json")
    assert str(raised.value).startswith("mine.json: ")
    assert message in str(raised.value)


def test_an_error_carries_the_entry_index_and_field() -> None:
    """Callers (the CLI, the API) can point at the exact entry and field."""
    data = price_file(entry(), entry(model="o3", output="-8"))
    with pytest.raises(PricingFileError) as raised:
        PriceBook.from_json(data, path="mine.json")
    error = raised.value
    assert (error.path, error.index, error.field, error.model) == ("mine.json", 1, "output", "o3")
    assert str(error) == "mine.json: prices[1] (o3) field 'output': negative price -8"


def raw_price(**changes: Any) -> Price:
    """A Price built field by field, bypassing the factory's Decimal conversion."""
    fields: dict[str, Any] = {
        "model": "gpt-5",
        "effective_from": LAUNCH,
        "input": Decimal("1.25"),
        "cached_input": Decimal("0.125"),
        "cache_write": Decimal("1.25"),
        "output": Decimal("10"),
        "source": "https://example.test/pricing",
        "taken": LAUNCH,
    }
    fields.update(changes)
    return Price(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": Decimal("-1")}, "input: negative price -1"),
        ({"output": 1.25}, "output: expected a Decimal, got float"),
        ({"cache_write": Decimal("NaN")}, "cache_write: not a number"),
        ({"effective_from": datetime(2025, 8, 7)}, "effective_from: expected a date"),
        ({"model": "GPT-5"}, "must be lower case"),
        ({"source": ""}, "source: expected the URL"),
    ],
    ids=["negative", "float", "nan", "datetime", "upper-case", "no-source"],
)
def test_a_price_refuses_values_it_cannot_hold_exactly(
    changes: dict[str, Any], message: str
) -> None:
    """Prices are non-negative Decimals, dates are dates, names are lower case, sources given."""
    with pytest.raises(ValueError, match=re.escape(message)):
        raw_price(**changes)


def test_a_book_refuses_two_prices_for_the_same_model_and_day() -> None:
    """(model, effective_from) identifies an entry."""
    with pytest.raises(PricingError):
        PriceBook([price(), price(output="12")])


# --- operator files ------------------------------------------------------------------------


def test_an_operators_file_is_read_from_disk(tmp_path: Path) -> None:
    """from_file reads a price file and names it in errors."""
    path = tmp_path / "prices.json"
    path.write_bytes(price_file(entry(model="in-house-model", input="0.5")))
    book = PriceBook.from_file(path)
    found = book.match("in-house-model", date(2026, 1, 1))
    assert found is not None
    assert found.input == Decimal("0.5")
    path.write_bytes(b"{")
    with pytest.raises(PricingFileError, match=str(path)):
        PriceBook.from_file(path)


def test_loading_a_file_upserts_by_model_and_effective_date(shipped: PriceBook) -> None:
    """An operator's entry replaces the same (model, effective_from) and adds the rest."""
    negotiated = PriceBook.from_json(
        price_file(
            entry(input="1", cached_input="0.1", cache_write="1", output="8"),
            entry(model="in-house-model"),
        )
    )
    merged = shipped.merged(negotiated)
    gpt5 = merged.match("gpt-5", date(2025, 9, 1))
    assert gpt5 is not None
    assert gpt5.output == Decimal("8")
    assert "in-house-model" in merged.models
    assert len(merged) == len(shipped) + 1


# --- billing rules: one-hour writes, long context, fast mode ----------------------------------

SONNET_45 = PriceBook.from_json(
    b"""{"format": 1, "prices": [{"model": "claude-sonnet-4-5", "effective_from": "2025-09-29",
    "input": "3", "cached_input": "0.30", "cache_write": "3.75", "output": "15",
    "cache_write_1h": "6",
    "long_context": {"above_tokens": 200000, "input": "6", "cached_input": "0.60",
                     "cache_write": "7.50", "cache_write_1h": "12", "output": "22.50"},
    "fast": {"input": "18", "cached_input": "1.80", "cache_write": "22.50", "output": "90"},
    "source": "https://platform.claude.com/docs/en/about-claude/pricing",
    "taken": "2026-12-04"}]}""",
    path="sonnet.json",
).match("claude-sonnet-4-5", date(2026, 12, 4))


def test_an_entry_with_tiers_round_trips_and_an_old_entry_reads_without_them() -> None:
    """The billing fields are optional: a four-rate file (format 1, as before) still reads."""
    assert SONNET_45 is not None
    book = PriceBook([SONNET_45])
    assert PriceBook.from_json(book.to_json()) == book
    assert SONNET_45.long_context_above == 200_000
    old = PriceBook.load_default().match("gpt-4o-2024-05-13", date(2025, 1, 1))
    assert old is not None
    assert old.cache_write_1h is None
    assert old.long_context is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (
            {
                "long_context": {
                    "input": "6",
                    "cached_input": "1",
                    "cache_write": "6",
                    "output": "9",
                }
            },
            "above_tokens is required",
        ),
        (
            {
                "fast": {
                    "above_tokens": 5,
                    "input": "6",
                    "cached_input": "1",
                    "cache_write": "6",
                    "output": "9",
                }
            },
            "above_tokens belongs to long_context only",
        ),
        (
            {
                "fast_long_context": {
                    "input": "6",
                    "cached_input": "1",
                    "cache_write": "6",
                    "output": "9",
                }
            },
            "needs both long_context and fast",
        ),
        ({"fast": {"input": "6", "output": "9"}}, "missing rates: cached_input, cache_write"),
        (
            {"fast": {"input": 6.5, "cached_input": "1", "cache_write": "6", "output": "9"}},
            "write prices as strings",
        ),
        ({"cache_write_1h": "-1"}, "negative price"),
    ],
)
def test_a_bad_billing_field_rejects_the_file_naming_it(extra: dict[str, Any], reason: str) -> None:
    """Tiers are validated like the base rates; the error names the entry."""
    entry = {
        "model": "m",
        "effective_from": "2026-01-01",
        "input": "1",
        "cached_input": "0.1",
        "cache_write": "1",
        "output": "2",
        "source": "s",
        "taken": "2026-01-01",
        **extra,
    }
    with pytest.raises(PricingFileError, match=re.escape(reason)) as caught:
        PriceBook.from_json(orjson.dumps({"format": 1, "prices": [entry]}), path="x.json")
    assert "prices[0] (m)" in str(caught.value)


def test_each_dimension_is_priced_from_the_published_rate() -> None:
    """Hand-worked at Claude Sonnet 4.5's prices (µ$ = tokens × USD per million)."""
    assert SONNET_45 is not None
    # Cache reads: 100,000 × 0.30 = 30,000 µ$.
    assert cost_usd(
        {"input_tokens": 0, "cached_input_tokens": 100_000, "output_tokens": 0}, SONNET_45
    ) == Decimal("0.03")
    # Reasoning is output: 1,000 output of which 800 reasoning = 1,000 × 15 = 15,000 µ$.
    assert cost_usd(
        {
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "output_tokens": 1_000,
            "reasoning_output_tokens": 800,
        },
        SONNET_45,
    ) == Decimal("0.015")
    # 5-minute vs 1-hour writes: 10,000 writes, 4,000 of them 1h:
    # 6,000 × 3.75 + 4,000 × 6 = 22,500 + 24,000 = 46,500 µ$.
    assert cost_usd(
        {
            "input_tokens": 10_000,
            "cached_input_tokens": 0,
            "output_tokens": 0,
            "cache_write_tokens": 10_000,
            "cache_write_1h_tokens": 4_000,
        },
        SONNET_45,
    ) == Decimal("0.0465")
    # Long context: the whole request at the tier: 10,000 × 6 + 200,000 × 0.60 + 1,000 × 22.50
    # = 60,000 + 120,000 + 22,500 = 202,500 µ$.
    long_request = {"input_tokens": 10_000, "cached_input_tokens": 200_000, "output_tokens": 1_000}
    long_counts = {**long_request, **{f"long_context_{k}": v for k, v in long_request.items()}}
    assert cost_usd(long_counts, SONNET_45) == Decimal("0.2025")
    # Fast: 1,000 × 18 + 100 × 90 = 18,000 + 9,000 = 27,000 µ$.
    fast_request = {"input_tokens": 1_000, "cached_input_tokens": 0, "output_tokens": 100}
    fast_counts = {**fast_request, **{f"fast_{k}": v for k, v in fast_request.items()}}
    assert cost_usd(fast_counts, SONNET_45) == Decimal("0.027")
    # Fast and long context, no fast_long_context tier: the fast rates cover the whole context:
    # 10,000 × 18 + 200,000 × 1.80 + 1,000 × 90 = 180,000 + 360,000 + 90,000 = 630,000 µ$.
    both = {
        **long_counts,
        **{f"fast_{k}": v for k, v in long_request.items()},
        **{f"fast_long_context_{k}": v for k, v in long_request.items()},
    }
    assert cost_usd(both, SONNET_45) == Decimal("0.63")


def test_a_price_without_the_fast_tier_leaves_fast_tokens_unpriced() -> None:
    """A fast request of a model with no fast price is not billed at the base rates: its
    tokens are unpriced and named; a 1h write of a model with one write rate costs its
    cache_write, 1,000 × 2 (gpt-4.1) = 2,000 µ$."""
    assert SONNET_45 is not None
    plain = PriceBook([replace(SONNET_45, fast=None)]).match("claude-sonnet-4-5", date(2026, 1, 1))
    assert plain is not None
    counts = {
        "input_tokens": 1_000,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "fast_input_tokens": 1_000,
    }
    with pytest.raises(UnpricedCountsError, match="fast"):
        cost_usd(counts, plain)
    cost = Cost()
    cost.add_priced("claude-sonnet-4-5", counts, plain)
    assert (cost.usd, cost.unpriced_models, cost.unpriced_tokens) == (
        Decimal(0),
        ("claude-sonnet-4-5 (fast)",),
        1_000,
    )
    gpt = PriceBook.load_default().match("gpt-4.1", date(2025, 6, 1))
    assert gpt is not None
    assert gpt.cache_write_1h is None
    assert cost_usd(
        {
            "input_tokens": 1_000,
            "cached_input_tokens": 0,
            "output_tokens": 0,
            "cache_write_tokens": 1_000,
            "cache_write_1h_tokens": 1_000,
        },
        gpt,
    ) == Decimal("0.002")


@pytest.mark.parametrize(
    "counts",
    [
        {"cache_write_tokens": 10, "cache_write_1h_tokens": 11},
        {"long_context_input_tokens": 101},
        {"fast_long_context_input_tokens": 1, "fast_input_tokens": 1},
        {"long_context_output_tokens": 15, "fast_output_tokens": 15},
    ],
)
def test_counts_that_break_a_subset_rule_are_refused(counts: dict[str, int]) -> None:
    """Never guessed: a subset larger than its whole is an InvalidCountsError."""
    assert SONNET_45 is not None
    base = {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 20}
    with pytest.raises(InvalidCountsError):
        cost_usd({**base, **counts}, SONNET_45)
