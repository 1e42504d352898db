"""Prices in the database: ``usageledger pricing load`` and the server's effective price book.

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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from usageledger.ledger.pricing import PRICE_FIELDS, Price, PriceBook, PricingError
from usageledger.store.dialect import upsert
from usageledger.store.tables import model_prices

_VALUE_COLUMNS = (*PRICE_FIELDS, "source", "taken", "note", "loaded_at_ms")


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
            }
        )
    upsert(conn, model_prices, rows, ("model", "effective_from"), _VALUE_COLUMNS)
    merge_books(shipped, stored_prices(conn))  # the merged book must still be consistent
    return LoadResult(added=added, updated=updated, unchanged=unchanged)
