"""The one place the read side turns token counts into money (docs/design.md §3).

Every read endpoint, the leaderboard and the tracker's reports (``report``, ``blocks``, the
status line) fetch rows of ``(day, source, model, counts)`` and hand them to :func:`tally`
(or :meth:`Tally.add`), which prices each row at the price in effect on the row's day and
adds counts and exact cost per group. No view has arithmetic of its own, so every view of the
same rows agrees on cost to the femto-dollar; only rendering rounds (6 places). The tracker's
logged costs (``report --cost``) are a layer over these tallies (``tracker/report.py``).

The day a row is priced on is the day it is grouped under: the local day (in the request's
time zone) for the usage endpoints and reports, the UTC day for the leaderboard's week and
month. No SQLAlchemy here: the tracker imports this module on its start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from usageledger.buckets import COUNT_COLUMNS, Counts
from usageledger.ledger.pricing import Cost, PriceBook, format_usd

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Summed counts of one source and model on one day (and, for hourly rows, one slot)."""

    day: date
    source: str
    model: str
    counts: Counts
    #: The bucket start (epoch seconds) for half-hour rows; ``None`` for day rows.
    slot: int | None = None


class Tally:
    """Counts and exact cost of a group of rows."""

    __slots__ = ("_sums", "cost")

    def __init__(self) -> None:
        self._sums = [0] * len(COUNT_COLUMNS)  # plain ints: this is the hot loop of every read
        self.cost = Cost()

    @property
    def counts(self) -> Counts:
        """The summed counts."""
        return Counts(*self._sums)

    def merge(self, other: Tally) -> None:
        """Add another group into this one (exact: no rounding happens here)."""
        for i, value in enumerate(other._sums):
            self._sums[i] += value
        self.cost.merge(other.cost)

    def add(self, book: PriceBook, row: UsageRow) -> None:
        """Price ``row`` at the price in effect on its day and add its counts and cost.

        The only cost arithmetic of the read side (:func:`tally` adds every row with it).
        Every count, the v3 subsets included: a row's cost follows the vendor's rules for the
        one-hour cache writes, long-context and fast requests it holds.
        """
        priced = row.counts.as_dict()
        sums = self._sums
        for i, name in enumerate(COUNT_COLUMNS):
            sums[i] += priced[name]
        self.cost.add(book, row.model, row.day, priced)

    @property
    def cost_usd(self) -> str:
        """The cost rendered with 6 decimal places, half to even."""
        return format_usd(self.cost.usd)

    @property
    def unpriced_models(self) -> list[str]:
        """Models of this group that had tokens but no price on their day."""
        return list(self.cost.unpriced_models)


def tally(
    book: PriceBook, rows: Iterable[UsageRow], key: Callable[[UsageRow], K]
) -> dict[K, Tally]:
    """Price every row on its day and add counts and cost per ``key(row)``.

    Views differ only in ``key``; each row is priced once, by :meth:`Tally.add`.
    """
    groups: dict[K, Tally] = {}
    for row in rows:
        group_key = key(row)
        group = groups.get(group_key)
        if group is None:
            group = groups[group_key] = Tally()
        group.add(book, row)
    return groups


def combine(groups: Iterable[Tally]) -> Tally:
    """One tally of several groups (totals are merged, never re-priced or re-rounded)."""
    total = Tally()
    for group in groups:
        total.merge(group)
    return total
