"""Checksums: bucket facts ignore order and zero buckets; table digests ignore row order."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from usageledger.ops.checksums import TableDigest, facts_checksum

ROWS = st.lists(
    st.tuples(st.integers(0, 2**62), st.text(max_size=8), st.booleans(), st.none()),
    unique_by=lambda row: row[0],
    max_size=30,
)


@given(rows=ROWS, seed=st.randoms())
def test_a_table_digest_does_not_depend_on_row_order(
    rows: list[tuple[object, ...]], seed: Random
) -> None:
    """Both engines return rows in their own order; the digest is the same."""
    shuffled = list(rows)
    seed.shuffle(shuffled)
    first, second = TableDigest("t"), TableDigest("t")
    first.add_all(rows)
    second.add_all(shuffled)
    assert first.hexdigest() == second.hexdigest()


def test_a_table_digest_changes_with_any_value_the_table_name_or_a_missing_row() -> None:
    """One changed value, another table name or one row fewer gives another digest."""
    rows = [(1, "a", date(2026, 1, 1), True), (2, "b", date(2026, 1, 2), False)]

    def digest(name: str, items: list[tuple[object, ...]]) -> str:
        table = TableDigest(name)
        table.add_all(items)
        return table.hexdigest()

    base = digest("t", rows)
    assert digest("t", [rows[0], (2, "b", date(2026, 1, 2), True)]) != base
    assert digest("u", rows) != base
    assert digest("t", rows[:1]) != base
    assert digest("t", [(Decimal("1.50"), b"\x01")]) == digest("t", [(Decimal("1.50"), b"\x01")])


def test_facts_checksums_count_a_zero_bucket_as_absent_and_ignore_order() -> None:
    """A bucket zeroed by rollback equals no bucket; insertion order does not matter."""
    one = {("codex", "o3", 1800): (1, 0, 0, 0, 1, 0)}
    zero = {("claude", "x", 3600): (0, 0, 0, 0, 0, 0)}
    two = {("codex", "o3", 3600): (2, 0, 0, 0, 2, 0)}
    assert facts_checksum({**one, **zero}) == facts_checksum(one)
    assert facts_checksum({**one, **two}) == facts_checksum({**two, **one})
    assert facts_checksum(one) != facts_checksum(two)
