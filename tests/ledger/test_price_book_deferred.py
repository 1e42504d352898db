"""The shipped price file is read lazily (each model's entries on first use) and means exactly
what the entry-by-entry check of the same file means."""

from __future__ import annotations

from datetime import date
from importlib import resources

import orjson
import pytest

from usageledger.ledger.pricing import PriceBook, PricingFileError, _deferred_file

SHIPPED = resources.files("usageledger").joinpath("data", "prices.json").read_bytes()


def test_the_shipped_file_is_valid_and_the_lazy_book_equals_the_checked_one() -> None:
    checked = PriceBook.from_json(SHIPPED, path="shipped")
    lazy = PriceBook.load_default()
    assert lazy.models == checked.models
    assert lazy.aliases == checked.aliases
    assert lazy == checked  # every entry of the lazy book built and compared
    assert len(lazy) == len(checked) == len(orjson.loads(SHIPPED)["prices"])


def test_the_lazy_book_answers_as_the_checked_one_for_every_model_and_day() -> None:
    checked = PriceBook.from_json(SHIPPED, path="shipped")
    lazy = PriceBook.load_default()
    days = sorted({p.effective_from for p in checked.prices})
    probes = [*checked.models, *checked.aliases, "claude-sonnet-4-5-20250929", "nobody-1"]
    for model in probes:
        assert lazy.resolve(model) == checked.resolve(model), model
        for day in (date(1970, 1, 1), *days[:: max(1, len(days) // 12)], date(2100, 1, 1)):
            assert lazy.match(model, day) == checked.match(model, day), (model, day)


def test_only_the_models_asked_for_are_built() -> None:
    lazy = PriceBook.load_default()
    lazy.match("gpt-5", date(2025, 9, 1))
    built = lazy._entries._built  # type: ignore[attr-defined]
    assert set(built) == {"gpt-5"}


def document(prices: list[object], aliases: dict[str, str] | None = None) -> bytes:
    return orjson.dumps({"format": 1, "prices": prices, "aliases": aliases or {}})


GOOD = {
    "model": "m",
    "effective_from": "2025-01-01",
    "input": "1",
    "cached_input": "0.1",
    "cache_write": "1.25",
    "output": "2",
    "source": "test",
    "taken": "2025-01-01",
}


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        orjson.dumps({"format": 2, "prices": []}),
        orjson.dumps({"format": 1, "prices": [], "extra": 1}),
        document(["not an entry"]),
        document([{**GOOD, "model": ""}]),
        document([GOOD], {"alias": "missing"}),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused_at_once_as_the_check_refuses_it(
    data: bytes,
) -> None:
    with pytest.raises(PricingFileError) as lazily:
        _deferred_file(data, "f.json")
    with pytest.raises(PricingFileError) as checked:
        PriceBook.from_json(data, path="f.json")
    assert str(lazily.value) == str(checked.value)


def test_a_bad_entry_is_refused_when_its_model_is_first_used() -> None:
    data = document([GOOD, {**GOOD, "model": "n", "input": "-1"}])
    book = _deferred_file(data, "f.json")
    assert book.match("m", date(2025, 6, 1)) is not None
    with pytest.raises(PricingFileError):
        book.match("n", date(2025, 6, 1))
