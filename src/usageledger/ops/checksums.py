"""Checksums that prove two states equal: bucket facts of a range, and whole tables.

* :func:`facts_checksum` — SHA-256 over a device's bucket values in a range, one canonical
  JSON line per bucket ``[source, model, bucket_start, *counts]``, sorted in Python (so both
  engines agree whatever their collation). A bucket whose counts are all zero is left out:
  the ledger is append-only, so a bucket cannot be deleted, only zeroed, and every total
  counts a zero bucket as absent. Revisions are not part of it: they order values, they are
  not values. A bucket whose schema v3 counts are all zero is hashed by its v2 counts alone,
  exactly as before v3 existed, so a checksum recorded then (a backfill plan's) still matches
  the same data now.
* :class:`TableDigest` — a digest of a whole table for ``db copy``: the SHA-256 of each row
  (values normalised by the column types, as JSON) added up modulo 2**256, then hashed with
  the table name and row count. The sum does not depend on row order, so a table read from
  SQLite (binary string order) and from PostgreSQL (its locale's order) gives the same digest
  without a dialect-specific collation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

import orjson
from sqlalchemy import Connection, Table, select

from usageledger.buckets import COUNT_COLUMNS, COUNTS_V2
from usageledger.store.tables import usage_buckets

FactKey = tuple[str, str, int]  # source, model, bucket_start
Facts = dict[FactKey, tuple[int, ...]]  # counts in COUNT_COLUMNS order

_MODULUS = 2**256
#: How many of :data:`COUNT_COLUMNS` (its first ones) schema v2 has.
_V2 = len(COUNTS_V2)
assert COUNT_COLUMNS[:_V2] == COUNTS_V2  # later schemas only add counts at the end


def facts_checksum(facts: Mapping[FactKey, Sequence[int]]) -> str:
    """SHA-256 of the non-zero bucket values of ``facts``, in key order.

    Counts are in :data:`COUNT_COLUMNS` order; a shorter tuple (a v2 plan's) has the rest 0.
    A line holds the v2 counts alone when every later count is 0 (see the module notes).
    """
    digest = hashlib.sha256()
    for key in sorted(facts):
        counts = facts[key]
        if any(counts):
            if not any(counts[_V2:]):
                counts = counts[:_V2]
            digest.update(orjson.dumps([*key, *counts]) + b"\n")
    return digest.hexdigest()


def range_facts(conn: Connection, user_id: int, device_id: int, start: int, end: int) -> Facts:
    """A device's stored bucket values with ``bucket_start`` in ``[start, end)``."""
    b = usage_buckets.c
    rows = conn.execute(
        select(b.source, b.model, b.bucket_start, *(b[c] for c in COUNT_COLUMNS)).where(
            b.user_id == user_id,
            b.device_id == device_id,
            b.bucket_start >= start,
            b.bucket_start < end,
        )
    )
    return {(str(r[0]), str(r[1]), int(r[2])): tuple(int(v) for v in r[3:]) for r in rows}


def range_checksum(conn: Connection, user_id: int, device_id: int, start: int, end: int) -> str:
    """:func:`facts_checksum` of the stored range."""
    return facts_checksum(range_facts(conn, user_id, device_id, start, end))


def _plain(value: object) -> str:
    """JSON for what orjson does not know (a future Numeric or binary column): its text."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot checksum a {type(value).__name__}")


class TableDigest:
    """An order-independent digest of a table's rows (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows = 0
        self._sum = 0

    def add(self, row: Sequence[object]) -> None:
        """Add one row (values in column order, as the column types return them)."""
        self.rows += 1
        digest = hashlib.sha256(orjson.dumps(list(row), default=_plain)).digest()
        self._sum = (self._sum + int.from_bytes(digest, "big")) % _MODULUS

    def add_all(self, rows: Iterable[Sequence[object]]) -> None:
        """Add many rows."""
        for row in rows:
            self.add(row)

    def hexdigest(self) -> str:
        """SHA-256 of the table name, the row count and the sum of row digests."""
        text = f"{self.name}\n{self.rows}\n{self._sum:064x}"
        return hashlib.sha256(text.encode()).hexdigest()


def table_digest(conn: Connection, table: Table, batch: int = 5_000) -> TableDigest:
    """Digest every row of ``table``, streamed in batches."""
    digest = TableDigest(table.name)
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(select(table))
    for rows in result.partitions():
        digest.add_all(rows)
    return digest
