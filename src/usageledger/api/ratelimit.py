"""Fair sharing: a token bucket per API token, so one device cannot starve the others.

The budget is per server process (with several workers, each has its own): a burst of
``rate_burst`` requests, refilled at ``rate_per_minute``. A tracker pushing every few minutes
never meets it; a flood gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time

from usageledger.errors import RateLimited


class RateLimiter:
    """A thread-safe token bucket keyed by token id."""

    def __init__(self, per_minute: float, burst: int, *, clock: object = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock if callable(clock) else time.monotonic
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: int) -> None:
        """Take one request from ``key``'s budget, or raise :class:`RateLimited`."""
        now = float(self._clock())
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self.rate)
                self._buckets[key] = (tokens, now)
                raise RateLimited(
                    f"too many requests for this token; retry in {wait} s",
                    headers={"Retry-After": str(max(1, wait))},
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # bound memory: forget full buckets
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
