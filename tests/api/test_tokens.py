"""KnownTokens: a bounded, short memory of live tokens, never an authority on its own."""

from __future__ import annotations

import time

from usageledger.api.tokens import KnownTokens
from usageledger.ledger.accounts import Principal


def principal(token_id: int) -> Principal:
    """A device principal with this token id."""
    return Principal(token_id=token_id, user_id=1, device_id=1, kind="device", time_zone="UTC")


def test_a_remembered_token_is_forgotten_after_its_ttl() -> None:
    """Past ttl_s a token is no longer remembered."""
    known = KnownTokens(ttl_s=0.05)
    known.put("a" * 64, principal(1))
    assert known.get("a" * 64) == principal(1)
    time.sleep(0.06)
    assert known.get("a" * 64) is None


def test_a_token_can_be_forgotten_by_digest_or_by_id() -> None:
    """A failed look-up forgets by digest; a transaction that found it revoked, by id."""
    known = KnownTokens()
    known.put("a" * 64, principal(1))
    known.put("b" * 64, principal(2))
    known.forget("a" * 64)
    known.forget(token_id=2)
    assert known.get("a" * 64) is None
    assert known.get("b" * 64) is None


def test_the_memory_is_bounded() -> None:
    """More tokens than max_entries never grow it past the bound."""
    known = KnownTokens(max_entries=10)
    for n in range(35):
        known.put(f"{n:064d}", principal(n))
        assert len(known._entries) <= 10
    assert known.get(f"{34:064d}") == principal(34)
