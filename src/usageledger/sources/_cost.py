"""Costs that a log records itself, read exactly (``report --cost logged|auto``).

Some assistants write the cost of a response next to its tokens: Claude Code's ``costUSD``
(older versions), pi's and OpenClaw's ``usage.cost.total``, Copilot CLI's per-model
``totalNanoAiu``. The ledger keeps such a cost as an integer number of pico-dollars
(1e-12 USD), so sums stay exact and no float arithmetic ever touches it.

The number is read from its shortest decimal form: the JSON parser yields a float, and
``repr`` of a float is the shortest decimal that reads back as the same float, which is the
text a JavaScript or Python writer put into the log. That decimal is then rounded half-even to
whole pico-dollars (the vendors write at most 17 significant digits; anything finer than
1e-12 USD is floating-point noise of their own arithmetic).

A value that cannot be a cost is ignored and the response still counts, priced from its tokens:
not a number (a string, ``true``, ``null``), negative, not finite, or above
:data:`MAX_LOGGED_USD`. Zero is ignored too: pi writes 0 for every model its own catalog has no
price for, so a zero does not tell a free request from an unknown one.
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
#: Pico-dollars per Copilot nano-AIU: 1 AI credit (AIU) = $0.01 (GitHub's usage-based billing
#: for Copilot), so 1e-9 AIU = 1e-11 USD = 10 pico-dollars.
PICO_PER_NANO_AIU = 10
_MAX_PICO = MAX_LOGGED_USD * PICO_PER_USD


def logged_pico(value: Any, pico_per_unit: int = PICO_PER_USD) -> int | None:
    """``value`` (a JSON number of some unit) as whole pico-dollars, or None if unusable."""
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
    if amount <= 0:
        return None
    pico = int((amount * pico_per_unit).to_integral_value(rounding=ROUND_HALF_EVEN))
    if pico <= 0 or pico > _MAX_PICO:
        return None
    return pico


def logged_usd(value: Any) -> int | None:
    """A logged cost in US dollars as whole pico-dollars, or None (see the module notes)."""
    return logged_pico(value, PICO_PER_USD)
