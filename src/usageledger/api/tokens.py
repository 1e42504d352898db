"""A per-process memory of tokens found live: ingest skips a database read for them."""

from __future__ import annotations

import threading
import time

from usageledger.ledger.accounts import Principal


class KnownTokens:
    """Principals of tokens this process found live recently, by the SHA-256 of the secret.

    Bounded in size and age. It never makes a token valid by itself: read routes still look the
    token up, and ingest checks it again inside its write transaction. An hour covers a tracker
    that pushes every half-hour, so its uploads need no separate read for the token.
    """

    def __init__(self, *, ttl_s: float = 3600.0, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        """The principal of a token seen live within ``ttl_s``, or None."""
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, digest: str, found: Principal) -> None:
        """Remember a token that was just found live."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[1] >= now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[digest] = (found, time.monotonic() + self.ttl_s)

    def forget(self, digest: str | None = None, *, token_id: int | None = None) -> None:
        """Drop a token (by digest, or by id when a transaction found it revoked)."""
        with self._lock:
            if digest is not None:
                self._entries.pop(digest, None)
            if token_id is not None:
                self._entries = {
                    k: v for k, v in self._entries.items() if v[0].token_id != token_id
                }
