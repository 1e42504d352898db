"""Fair sharing: token buckets, so one device (or one address) cannot starve the others.

Two budgets, both per server process (with several workers, each has its own):

- per API token: a burst of ``rate_burst`` requests, refilled at ``rate_per_minute``. A tracker
  pushing every few minutes never meets it; a flood gets 429 with ``Retry-After``.
- per client address, for failed sign-ins only: every request whose token is missing from the
  database (unknown or revoked) spends one of ``auth_failure_burst``, refilled at
  ``auth_failures_per_minute``. Once it is spent, a token this process has not seen working
  gets 429 before the database is asked, so a flood of guessed tokens costs a dictionary
  lookup, not a database round trip. Requests with a good token spend nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable

from usageledger.errors import RateLimited


class RateLimiter:
    """A thread-safe token bucket per key (a token id, a client address)."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: object = None,
        message: str = "too many requests for this token",
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.message = message
        self._clock = clock if callable(clock) else time.monotonic
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: Hashable) -> None:
        """Take one request from ``key``'s budget, or raise :class:`RateLimited`."""
        self._take(key, refuse=True)

    def ensure(self, key: Hashable) -> None:
        """Raise :class:`RateLimited` if ``key``'s budget is spent; take nothing."""
        now = float(self._clock())
        with self._lock:
            tokens = self._level(key, now)
            if tokens < 1.0:
                self._refuse(tokens)

    def spend(self, key: Hashable) -> None:
        """Take one from ``key``'s budget whatever is left (it never goes below zero)."""
        self._take(key, refuse=False)

    def _level(self, key: Hashable, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def _refuse(self, tokens: float) -> None:
        wait = max(1, math.ceil((1.0 - tokens) / self.rate))
        raise RateLimited(f"{self.message}; retry in {wait} s", headers={"Retry-After": str(wait)})

    def _take(self, key: Hashable, *, refuse: bool) -> None:
        now = float(self._clock())
        with self._lock:
            tokens = self._level(key, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                if refuse:
                    self._refuse(tokens)
                return
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # bound memory: forget full buckets
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
