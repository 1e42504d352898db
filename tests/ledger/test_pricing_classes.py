"""Which rates a request class gets, web searches, and the fast path of the arithmetic.

Hand-worked in micro-dollars (µ$ = tokens × USD per million); prices are the published ones
where a real model is named: Claude Opus 4.6 $5 input / $25 output, one-hour writes $10, web
search $10 per 1,000 searches (platform.claude.com/docs/en/about-claude/pricing).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger.buckets import COUNTS_V3
from usageledger.ledger.price_import import SourceFile, convert_litellm
from usageledger.ledger.pricing import (
    Cost,
    Price,
    PriceBook,
    PricingFileError,
    Tier,
    UnpricedCountsError,
    cost_usd,
    split_counts,
)

DAY = date(2026, 12, 4)


def tier(inp: str, cached: str, write: str, out: str, **extra: Any) -> Tier:
    """A tier of rates (USD per million)."""
    return Tier(
        input=Decimal(inp),
        cached_input=Decimal(cached),
        cache_write=Decimal(write),
        output=Decimal(out),
        **extra,
    )


def price(model: str, **billing: Any) -> Price:
    """$5 / $0.50 / $6.25 / $25 with a $10 one-hour write (Claude Opus 4.6's rates)."""
    fields: dict[str, Any] = {
        "model": model,
        "effective_from": date(2026, 1, 1),
        "input": Decimal(5),
        "cached_input": Decimal("0.5"),
        "cache_write": Decimal("6.25"),
        "output": Decimal(25),
        "source": "test",
        "taken": date(2026, 1, 1),
        "cache_write_1h": Decimal(10),
    }
    fields.update(billing)
    return Price(**fields)


def request(long_context: bool = False, fast: bool = False, **counts: int) -> dict[str, int]:
    """One request's v3 counts (every class it is in repeats its counts)."""
    out = dict.fromkeys(COUNTS_V3, 0)
    out.update(counts)
    out["total_tokens"] = out["input_tokens"] + out["cached_input_tokens"] + out["output_tokens"]
    for prefix, member in (
        ("long_context_", long_context),
        ("fast_", fast),
        ("fast_long_context_", long_context and fast),
    ):
        if member:
            for name in (
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "cache_write_1h_tokens",
                "output_tokens",
            ):
                out[prefix + name] = out[name]
    return out


def tally(model: str, p: Price, *rows: dict[str, int]) -> Cost:
    """The rows priced at ``p`` under ``model``."""
    cost = Cost()
    for row in rows:
        cost.add_priced(model, row, p)
    return cost


def test_a_fast_request_without_fast_rates_is_unpriced_and_named() -> None:
    """Opus 4.6 without a fast tier: a standard request is priced (1,000 × 5 + 100 × 25 =
    7,500 µ$), the fast one (2,000 in, 200 out) is not guessed at the base rates."""
    opus = price("claude-opus-4-6")
    cost = tally(
        "claude-opus-4-6",
        opus,
        request(input_tokens=1_000, output_tokens=100),
        request(fast=True, input_tokens=2_000, output_tokens=200),
    )
    assert cost.usd == Decimal("0.0075")
    assert cost.unpriced_models == ("claude-opus-4-6 (fast)",)
    assert cost.unpriced_tokens == 2_200
    with pytest.raises(UnpricedCountsError, match=r"claude-opus-4-6 .* fast counts"):
        cost_usd(request(fast=True, input_tokens=1, output_tokens=1), opus)


def test_anthropic_fast_mode_covers_the_whole_context() -> None:
    """A fast request over the long-context threshold of a Claude model without a
    fast_long_context tier is billed at the fast rates (Anthropic bills fast mode at one rate
    over the whole context): 1,000 × 30 + 100 × 150 = 45,000 µ$."""
    opus = price(
        "claude-opus-4-6",
        long_context=tier("10", "1", "12.5", "37.5", above_tokens=200_000),
        fast=tier("30", "3", "37.5", "150"),
    )
    cost = tally(
        "claude-opus-4-6",
        opus,
        request(long_context=True, fast=True, input_tokens=1_000, output_tokens=100),
    )
    assert (cost.usd, cost.unpriced_models) == (Decimal("0.045"), ())


def test_other_vendors_fast_long_context_needs_its_own_rates() -> None:
    """gpt-5.4 with long-context and priority tiers but no tier for both: a priority request
    over the threshold is unpriced (OpenAI lists its own rates for it); without a long-context
    tier (one rate at any size) the priority rates apply: 1,000 × 5 + 100 × 30 = 8,000 µ$."""
    both_tiers = price(
        "gpt-5.4",
        cache_write_1h=None,
        long_context=tier("10", "1", "10", "45", above_tokens=272_000),
        fast=tier("5", "0.5", "5", "30"),
    )
    row = request(long_context=True, fast=True, input_tokens=1_000, output_tokens=100)
    cost = tally("gpt-5.4", both_tiers, row)
    assert (cost.usd, cost.unpriced_models, cost.unpriced_tokens) == (
        Decimal(0),
        ("gpt-5.4 (fast long context)",),
        1_100,
    )
    one_size = replace(both_tiers, long_context=None)
    assert tally("gpt-5.4", one_size, row).usd == Decimal("0.008")


def test_a_tier_without_a_one_hour_rate_scales_the_base_one_by_its_input_factor() -> None:
    """A long-context tier at 2× input ($10) without cache_write_1h, of an entry whose 1h
    write is $10: its 1h writes cost 10 × 10/5 = $20 per million, not the tier's five-minute
    $12.50: 1,000 one-hour writes = 20,000 µ$."""
    opus = price(
        "claude-opus-4-6",
        long_context=tier("10", "1", "12.5", "37.5", above_tokens=200_000),
    )
    assert opus.rates("long_context") == tier(
        "10", "1", "12.5", "37.5", above_tokens=200_000, cache_write_1h=Decimal(20)
    )
    row = request(
        long_context=True,
        input_tokens=1_000,
        cache_write_tokens=1_000,
        cache_write_1h_tokens=1_000,
    )
    assert cost_usd(row, opus) == Decimal("0.02")


def test_a_tier_whose_factor_cannot_apply_to_the_one_hour_rate_is_refused() -> None:
    """An entry with a 1h rate and input 0 cannot scale it: the tier must list its own."""
    entry = {
        "model": "m",
        "effective_from": "2026-01-01",
        "input": "0",
        "cached_input": "0",
        "cache_write": "0",
        "cache_write_1h": "1",
        "output": "2",
        "source": "s",
        "taken": "2026-01-01",
        "fast": {"input": "1", "cached_input": "0", "cache_write": "1", "output": "4"},
    }
    with pytest.raises(PricingFileError, match="cache_write_1h is required"):
        PriceBook.from_json(orjson.dumps({"format": 1, "prices": [entry]}))


def test_web_searches_are_priced_per_thousand() -> None:
    """3 searches at $10 per 1,000 = 30,000 µ$, plus 1,000 input × 5 = 5,000 µ$: 35,000 µ$.
    A model without a search rate names its searches as unpriced."""
    opus = price("claude-opus-4-6", web_search=Decimal(10))
    row = request(input_tokens=1_000, web_search_requests=3)
    assert cost_usd(row, opus) == Decimal("0.035")
    cost = tally("gpt-5", replace(opus, web_search=None), row)
    assert cost.usd == Decimal("0.005")
    assert cost.unpriced_models == ("gpt-5 (web search)",)
    assert cost.unpriced_tokens == 0  # searches are requests, not tokens


def test_the_shipped_table_prices_claude_web_searches_from_their_first_day() -> None:
    """Every Claude model that offers the web search tool has $10 per 1,000 in the shipped
    table, on its first day and on the import day."""
    book = PriceBook.load_default()
    for model, first in (
        ("claude-sonnet-4-5", date(2025, 9, 29)),
        ("claude-opus-4-6", date(2026, 2, 5)),
        ("claude-opus-5-5", DAY),
    ):
        for day in (first, DAY):
            found = book.match(model, day)
            assert found is not None, (model, day)
            assert found.web_search == Decimal(10), (model, day)


def test_the_web_search_rate_round_trips_and_is_validated() -> None:
    """``web_search`` is a price string like the others."""
    book = PriceBook([price("claude-opus-4-6", web_search=Decimal(10))])
    text = book.to_json()
    assert b'"web_search": "10"' in text
    assert PriceBook.from_json(text) == book
    entry = orjson.loads(text)["prices"][0]
    entry["web_search"] = 10.5
    with pytest.raises(PricingFileError, match="web_search"):
        PriceBook.from_json(orjson.dumps({"format": 1, "prices": [entry]}))


def test_litellm_search_cost_per_query_becomes_the_web_search_rate() -> None:
    """``search_context_cost_per_query`` of 0.01 USD at every size is $10 per 1,000; rates
    that depend on the (unlogged) context size are not applied."""
    sample = {
        "claude-opus-4-6": {
            "litellm_provider": "anthropic",
            "mode": "chat",
            "input_cost_per_token": 5e-06,
            "output_cost_per_token": 2.5e-05,
            "search_context_cost_per_query": {
                "search_context_size_low": 0.01,
                "search_context_size_medium": 0.01,
                "search_context_size_high": 0.01,
            },
        },
        "gpt-4o": {
            "litellm_provider": "openai",
            "mode": "chat",
            "input_cost_per_token": 2.5e-06,
            "output_cost_per_token": 1e-05,
            "search_context_cost_per_query": {
                "search_context_size_low": 0.03,
                "search_context_size_medium": 0.035,
                "search_context_size_high": 0.05,
            },
        },
    }
    source = SourceFile(json.dumps(sample).encode(), "litellm sample")
    converted = {p.model: p for p in convert_litellm(source, on=DAY).prices}
    assert converted["claude-opus-4-6"].web_search == Decimal(10)
    assert converted["gpt-4o"].web_search is None


counts_strategy = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 10**9),
        "cached_input_tokens": st.integers(0, 10**9),
        "output_tokens": st.integers(0, 10**9),
        "cache_write_share": st.integers(0, 100),
    }
)


@given(counts_strategy)
@settings(max_examples=300, deadline=None)
def test_the_fast_path_prices_as_the_careful_path(drawn: dict[str, int]) -> None:
    """A row without subset counts (the common one) is priced on a shortcut; it must give
    the femto-dollar the class-by-class arithmetic gives."""
    opus = price("claude-opus-4-6", web_search=Decimal(10))
    write = drawn["input_tokens"] * drawn["cache_write_share"] // 100
    row = request(
        input_tokens=drawn["input_tokens"],
        cached_input_tokens=drawn["cached_input_tokens"],
        output_tokens=drawn["output_tokens"],
        cache_write_tokens=write,
    )
    fresh, write_5m, write_1h, cached, output = split_counts(row)["standard"]
    careful = (
        fresh * Decimal(5)
        + write_5m * Decimal("6.25")
        + write_1h * Decimal(10)
        + cached * Decimal("0.5")
        + output * Decimal(25)
    ) / 1_000_000
    assert cost_usd(row, opus) == careful
    v2_row = {k: v for k, v in row.items() if k in ("input_tokens", "cached_input_tokens")}
    v2_row.update(output_tokens=row["output_tokens"], cache_write_tokens=write)
    assert cost_usd(v2_row, opus) == careful
