"""Prices in the database: ``pricing load``, ``prices missing`` and the server's price book.

The server prices with the shipped table merged with ``model_prices`` (the database wins, by
``(model, effective_from)``). The merged book is cached per process and rebuilt only when
the table changes: each request asks for ``count(*)`` and ``max(loaded_at_ms)`` of the
(small) table, and a load always writes a ``loaded_at_ms`` above the current maximum, so any
change made by any process is seen by the next request.

``model_prices`` holds prices, not aliases (the schema has no alias table): a loaded file's
aliases must already be in the shipped table, otherwise the whole load is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from usageledger.ledger.price_import import ImportResult, apply_import
from usageledger.ledger.pricing import (
    PRICE_FIELDS,
    Price,
    PriceBook,
    PricingError,
    billing_from_json,
    billing_to_json,
)
from usageledger.store.dialect import upsert
from usageledger.store.tables import model_prices, usage_daily

_VALUE_COLUMNS = (*PRICE_FIELDS, "source", "taken", "note", "loaded_at_ms", "billing")


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a price load did, per entry."""

    added: int
    updated: int
    unchanged: int


def merge_books(shipped: PriceBook, loaded: PriceBook) -> PriceBook:
    """``shipped`` with ``loaded`` upserted by (model, effective_from); loaded entries win.

    A shipped alias named like a loaded model is dropped: the loaded price is more specific.
    """
    prices = {price.key: price for price in shipped.prices}
    prices.update((price.key, price) for price in loaded.prices)
    models = {model for model, _ in prices}
    aliases = {a: t for a, t in shipped.aliases.items() if a not in models}
    aliases.update(loaded.aliases)
    return PriceBook(prices.values(), aliases)


def stored_prices(conn: Connection) -> PriceBook:
    """Every entry of ``model_prices`` as a book (no aliases)."""
    rows = conn.execute(select(model_prices)).mappings()
    return PriceBook(_price(row) for row in rows)


def _price(row: Any) -> Price:
    return Price(
        model=row["model"],
        effective_from=row["effective_from"],
        input=Decimal(row["input"]),
        cached_input=Decimal(row["cached_input"]),
        cache_write=Decimal(row["cache_write"]),
        output=Decimal(row["output"]),
        source=row["source"],
        taken=row["taken"],
        note=row["note"] or "",
        # The one-hour cache-write rate and the rate tiers (migration 0008), as file JSON.
        **(billing_from_json(orjson.loads(row["billing"])) if row.get("billing") else {}),
    )


def _fingerprint(conn: Connection) -> tuple[int, int]:
    count, latest = conn.execute(
        select(func.count(), func.coalesce(func.max(model_prices.c.loaded_at_ms), 0))
    ).one()
    return int(count), int(latest)


class PriceBooks:
    """The effective price book of a server process, rebuilt when ``model_prices`` changes."""

    def __init__(self, shipped: PriceBook | None = None) -> None:
        self._shipped = shipped
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], PriceBook] | None = None

    @property
    def shipped(self) -> PriceBook:
        """The shipped table (read from the package once)."""
        if self._shipped is None:
            self._shipped = PriceBook.load_default()
        return self._shipped

    def current(self, conn: Connection) -> PriceBook:
        """The shipped table merged with the database's prices, as of this transaction."""
        fingerprint = _fingerprint(conn)
        with self._lock:
            if self._cached is not None and self._cached[0] == fingerprint:
                return self._cached[1]
        book = merge_books(self.shipped, stored_prices(conn)) if fingerprint[0] else self.shipped
        with self._lock:
            self._cached = (fingerprint, book)
        return book


def load_prices(
    conn: Connection, book: PriceBook, shipped: PriceBook, *, now_ms: int
) -> LoadResult:
    """Upsert ``book``'s entries into ``model_prices`` by (model, effective_from).

    Run it in one write transaction: a refused load changes nothing. Entries equal to the
    stored ones are left alone, so loading the same file twice changes nothing.
    """
    foreign = {a: t for a, t in book.aliases.items() if shipped.aliases.get(a) != t}
    if foreign:
        names = ", ".join(f"{a} -> {t}" for a, t in sorted(foreign.items()))
        raise PricingError(
            f"aliases cannot be stored in the server's price table ({names}); only aliases "
            "already in the shipped table are accepted. Add a price entry for the name instead."
        )
    existing = {price.key: price for price in stored_prices(conn).prices}
    loaded_at = max(now_ms, _fingerprint(conn)[1] + 1)
    rows: list[dict[str, Any]] = []
    added = updated = unchanged = 0
    for price in book.prices:
        before = existing.get(price.key)
        if before == price:
            unchanged += 1
            continue
        if before is None:
            added += 1
        else:
            updated += 1
        rows.append(
            {
                "model": price.model,
                "effective_from": price.effective_from,
                **{name: format(getattr(price, name), "f") for name in PRICE_FIELDS},
                "source": price.source,
                "taken": price.taken,
                "note": price.note,
                "loaded_at_ms": loaded_at,
                "billing": orjson.dumps(billing_to_json(price)).decode()
                if billing_to_json(price)
                else "",
            }
        )
    upsert(conn, model_prices, rows, ("model", "effective_from"), _VALUE_COLUMNS)
    merge_books(shipped, stored_prices(conn))  # the merged book must still be consistent
    return LoadResult(added=added, updated=updated, unchanged=unchanged)


@dataclass(frozen=True, slots=True)
class MissingPrice:
    """A model that had tokens on days with no price in effect: what ``prices missing`` shows."""

    model: str  # as logged
    first_day: date
    last_day: date
    tokens: int  # input + cached input + output on those days
    priced_as: str | None  # the priced model the name resolves to, when it resolves at all
    priced_from: date | None  # that model's first effective date (the days before it lack one)


def find_missing(book: PriceBook, usage: Iterable[tuple[str, date, int]]) -> list[MissingPrice]:
    """Each model of ``usage`` (model, day, tokens) with tokens on a day ``book`` cannot price.

    Pure: the same rules as every report (:meth:`PriceBook.match`), so a model listed here is
    exactly one that reports show under ``unpriced_models``. Sorted by tokens, most first.
    """
    found: dict[str, tuple[date, date, int]] = {}
    for model, day, tokens in usage:
        if tokens <= 0 or book.match(model, day) is not None:
            continue
        first, last, total = found.get(model, (day, day, 0))
        found[model] = (min(first, day), max(last, day), total + tokens)
    missing = []
    for model, (first, last, total) in found.items():
        canonical = book.resolve(model)
        starts = [p.effective_from for p in book.prices if p.model == canonical]
        missing.append(
            MissingPrice(model, first, last, total, canonical, min(starts) if starts else None)
        )
    return sorted(missing, key=lambda m: (-m.tokens, m.model))


def missing_prices(conn: Connection, book: PriceBook) -> list[MissingPrice]:
    """The server's models with unpriced tokens in ``usage_daily`` (every user, every day)."""
    tokens = (
        usage_daily.c.input_tokens + usage_daily.c.cached_input_tokens + usage_daily.c.output_tokens
    )
    rows = conn.execute(
        select(usage_daily.c.model, usage_daily.c.day, func.sum(tokens)).group_by(
            usage_daily.c.model, usage_daily.c.day
        )
    )
    return find_missing(book, ((model, day, int(total or 0)) for model, day, total in rows))


def import_prices(
    conn: Connection,
    sources: Iterable[Iterable[Price]],
    shipped: PriceBook,
    *,
    on: date,
    now_ms: int,
) -> tuple[ImportResult, LoadResult]:
    """``usageledger prices import``: add the sources' prices from ``on`` to ``model_prices``.

    The base is the server's effective book (shipped + database), so a price already in
    effect on ``on`` with the same rates, wherever it lives, is left alone; only new models
    and changed prices are stored, each effective from ``on``. One write transaction.
    """
    base = merge_books(shipped, stored_prices(conn))
    result = apply_import(base, *sources, on=on)
    loaded = load_prices(conn, PriceBook(result.added), shipped, now_ms=now_ms)
    return result, loaded
