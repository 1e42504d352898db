"""Costs that a log records itself, read exactly (``report --cost logged|auto``).

Some assistants write the cost of a response next to its tokens: Claude Code's ``costUSD``
(older versions), pi's and OpenClaw's ``usage.cost.total``, Copilot CLI's per-model
``totalNanoAiu``. The ledger keeps such a cost as an integer number of pico-dollars
(1e-12 USD), so sums stay exact and no float arithmetic ever touches it.

The number is read through the shortest decimal of the float the JSON parser yields: ``repr``
of a float is the shortest decimal that reads back as the same float. That is the text the
assistant wrote whenever its writer (JavaScript's ``JSON.stringify``, Python's ``json``) also
writes the shortest form, which both do; a log that wrote more digits than the float holds
(``0.1000000000000000055``) is read as that float's shortest decimal (``0.1``), the digits
beyond a float's precision being lost in parsing. The decimal is then rounded half-even to
whole pico-dollars (anything finer than 1e-12 USD is floating-point noise of the vendors'
own arithmetic).

A value that cannot be a cost is ignored and the response still counts, priced from its tokens:
not a number (a string, ``true``, ``null``), negative, not finite, or above the source's cap
(:data:`MAX_LOGGED_USD` for one response, :data:`MAX_LOGGED_PROCESS_USD` for Copilot's total
of one process and model). Zero is decided per source (docs/pricing.md, "Logged costs"): pi
and OpenClaw write 0 for every model pi's catalog has no price for, and Claude Code's
``costUSD`` is its own list-price estimate, which is never 0 for a response with tokens, so
their 0 means "not known" and is ignored; Copilot's ``totalNanoAiu`` is GitHub's metering of
what it bills, where 0 is a real $0 (a model included in the plan), so it is kept.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

#: Pico-dollars in one US dollar.
PICO_PER_USD = 10**12
#: No single response costs more than this; a larger logged value is taken to be corrupt. It
#: also bounds a half-hour's sum of pico-dollars far below the 64-bit integer range.
MAX_LOGGED_USD = 1_000
#: Copilot CLI logs one cost per process and model (the sum of a whole session, resumes
#: included), so its bound is a session's, not a response's.
MAX_LOGGED_PROCESS_USD = 100_000
#: Pico-dollars per Copilot nano-AIU: 1 AI credit (AIU) = $0.01 (GitHub's usage-based billing
#: for Copilot), so 1e-9 AIU = 1e-11 USD = 10 pico-dollars.
PICO_PER_NANO_AIU = 10


def logged_pico(
    value: Any,
    pico_per_unit: int = PICO_PER_USD,
    *,
    zero_is_cost: bool = False,
    max_usd: int = MAX_LOGGED_USD,
) -> int | None:
    """``value`` (a JSON number of some unit) as whole pico-dollars, or None if unusable.

    ``zero_is_cost``: a 0 is a logged $0 (else it means "not known": None); ``max_usd``: the
    largest cost the value can be (see the module notes).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        try:
            amount = Decimal(repr(value))
        except InvalidOperation:  # pragma: no cover - repr of a finite float always parses
            return None
    else:
        return None
    if amount < 0 or (amount == 0 and not zero_is_cost):
        return None
    pico = int((amount * pico_per_unit).to_integral_value(rounding=ROUND_HALF_EVEN))
    if pico < 0 or pico > max_usd * PICO_PER_USD:
        return None
    return pico


def logged_usd(value: Any) -> int | None:
    """A logged cost in US dollars as whole pico-dollars, or None (see the module notes)."""
    return logged_pico(value, PICO_PER_USD)
