"""Which billing rules apply to one request: the schema v3 counts of a parsed event.

A vendor bills some requests at other rates than the base ones: a request whose prompt (input
plus cached input) is over its model's long-context threshold is billed entirely at the
long-context rates, and a request in fast mode or priority processing at those rates. The
local ledger files each request's tokens under the classes it belongs to when it stores the
event (``long_context_*``, ``fast_*``, ``fast_long_context_*``; see
:data:`usageledger.buckets.COUNTS_V3`), so that every sum of events (half-hour buckets, daily
rows, the server's copy of them) is priced exactly as its requests one by one.

The long-context threshold is a property of the price: it is taken from the shipped price
table for the event's model on its UTC day (docs/pricing.md, "How a cost is computed").
"""

from __future__ import annotations

import functools
from datetime import date

from usageledger.buckets import request_counts
from usageledger.ledger.pricing import default_book
from usageledger.sources.base import UsageEvent


@functools.lru_cache(maxsize=4096)
def long_context_above(model: str, day: date) -> int | None:
    """The long-context threshold of ``model`` on ``day`` in the shipped table (the process's
    one :func:`~usageledger.ledger.pricing.default_book`), or ``None``."""
    return default_book().long_context_above(model, day)


def is_long_context(event: UsageEvent, threshold: int | None) -> bool:
    """Whether ``event``'s prompt (input, cache writes included, plus cached input) is over
    ``threshold`` (``None``: the model has one rate at any size)."""
    return threshold is not None and event.input_tokens + event.cached_input_tokens > threshold


def event_counts(event: UsageEvent, *, model: str | None = None) -> dict[str, int]:
    """The v3 counts of ``event`` (``model``: the name it is stored under, if cleaned)."""
    totals = {
        "input_tokens": event.input_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_output_tokens": event.reasoning_output_tokens,
        "total_tokens": event.total_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "cache_write_1h_tokens": event.cache_write_1h_tokens,
        "web_search_requests": event.web_search_requests,
    }
    threshold = long_context_above(model or event.model, event.timestamp.date())
    return request_counts(totals, long_context=is_long_context(event, threshold), fast=event.fast)
