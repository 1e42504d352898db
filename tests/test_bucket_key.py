"""One declaration of the bucket key: every table, the upsert and the wire agree with BUCKET_KEY.

A new dimension added to :data:`usageledger.buckets.BUCKET_KEY` (or to any one of the places
below without it) fails here, so the idempotency key cannot drift: a key that misses a
dimension merges data (docs/design.md §7).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, get_args, get_type_hints

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, inspect

from tests.conftest import Persona
from tests.factories import batch, bucket
from usageledger.buckets import BUCKET_KEY, IDENTITY_COLUMNS, WIRE_KEY, Key
from usageledger.ledger.ingest import BucketWrite, latest_per_key
from usageledger.store.tables import (
    bucket_revisions,
    push_acks,
    usage_buckets,
    usage_daily,
    usage_events,
)
from usageledger.wire import MODELS, parse_ingest

#: The daily key is the bucket key with the half-hour replaced by the local day, reordered so
#: that ``user_id`` (the Citus distribution column) and then ``day`` (range scans) lead.
DAILY_KEY = ("user_id", "day", "device_id", "source", "model")


def daily_key_from_bucket_key() -> set[str]:
    """BUCKET_KEY with bucket_start → day."""
    return {"day" if c == "bucket_start" else c for c in BUCKET_KEY}


def test_the_wire_key_is_the_bucket_key_without_the_identity_columns() -> None:
    """The client sends the key minus who it is; user and device come from its token."""
    assert set(IDENTITY_COLUMNS) < set(BUCKET_KEY)
    assert tuple(c for c in BUCKET_KEY if c not in IDENTITY_COLUMNS) == WIRE_KEY
    assert BUCKET_KEY[0] == "user_id"
    assert "bucket_start" in WIRE_KEY


def test_the_key_type_has_one_slot_per_key_column() -> None:
    """buckets.Key (the tuple type of a key) grows with BUCKET_KEY."""
    assert len(get_args(Key)) == len(BUCKET_KEY)


def test_the_bucket_tables_declare_the_bucket_key_as_their_primary_key() -> None:
    """usage_buckets and push_acks are keyed by BUCKET_KEY, bucket_revisions by it plus revision."""
    assert tuple(c.name for c in usage_buckets.primary_key) == BUCKET_KEY
    assert tuple(c.name for c in push_acks.primary_key) == BUCKET_KEY
    assert tuple(c.name for c in bucket_revisions.primary_key) == (*BUCKET_KEY, "revision")


@pytest.mark.usefixtures("db_url")
def test_the_migrated_primary_keys_are_the_bucket_key(engine: Engine) -> None:
    """The schema the migrations built has the same keys as the metadata, on both engines."""
    inspector = inspect(engine)

    def pk(table: str) -> tuple[str, ...]:
        return tuple(inspector.get_pk_constraint(table)["constrained_columns"])

    assert pk("usage_buckets") == BUCKET_KEY
    assert pk("push_acks") == BUCKET_KEY
    assert pk("bucket_revisions") == (*BUCKET_KEY, "revision")
    assert set(pk("usage_daily")) == daily_key_from_bucket_key()
    assert pk("usage_daily") == DAILY_KEY


def test_the_daily_key_is_the_bucket_key_by_day() -> None:
    """usage_daily is keyed by every bucket dimension, with the half-hour replaced by the day."""
    key = tuple(c.name for c in usage_daily.primary_key)
    assert set(key) == daily_key_from_bucket_key()
    assert key == DAILY_KEY


def test_every_table_of_bucket_values_has_every_key_column() -> None:
    """The local ledger's events carry each key column, so they can be summed into buckets."""
    for table in (usage_buckets, bucket_revisions, push_acks, usage_events):
        assert set(BUCKET_KEY) <= set(table.c.keys()), table.name


@pytest.mark.usefixtures("db_url")
def test_the_upsert_conflict_target_is_the_bucket_key(
    client: TestClient, alice: Persona, engine: Engine
) -> None:
    """The INSERT … ON CONFLICT that ingest sends for usage_buckets names BUCKET_KEY, in order."""
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        response = client.post(
            "/v1/ingest",
            json=batch(bucket(slot=0), bucket(slot=1, source="claude")),
            headers=alice.headers(),
        )
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == 200, response.text
    targets = [
        re.search(r"ON CONFLICT\s*\(([^)]*)\)", s)
        for s in statements
        if re.match(r"\s*INSERT INTO usage_buckets\b", s)
    ]
    assert targets, "ingest wrote no usage_buckets row"
    for target in targets:
        assert target is not None
        assert tuple(c.strip().strip('"') for c in target.group(1).split(",")) == BUCKET_KEY


def test_every_wire_schema_carries_the_wire_key_and_never_the_identity() -> None:
    """Each schema version's bucket has the WIRE_KEY fields and no user_id or device_id."""
    for version, model in MODELS.items():
        (bucket_model,) = get_args(model.model_fields["buckets"].annotation)
        fields = set(bucket_model.model_fields)
        assert set(WIRE_KEY) <= fields, version
        assert not set(IDENTITY_COLUMNS) & fields, version
        assert not set(IDENTITY_COLUMNS) & set(model.model_fields), version


def test_the_validated_and_applied_buckets_carry_the_wire_key() -> None:
    """wire.parse_ingest returns ingest.BucketWrite, which has a field for each WIRE_KEY column."""
    assert get_type_hints(parse_ingest)["return"] == list[BucketWrite]
    assert set(WIRE_KEY) <= {f.name for f in dataclasses.fields(BucketWrite)}


def _differ(write: BucketWrite, column: str) -> BucketWrite:
    value = getattr(write, column)
    other = value + 1800 if isinstance(value, int) else f"{value}-other"
    return dataclasses.replace(write, **{column: other})


@pytest.mark.parametrize("column", WIRE_KEY)
def test_a_batch_keeps_one_write_per_wire_key(column: str) -> None:
    """Ingest folds a batch by the whole WIRE_KEY: writes differing in any key column both stay."""
    first = BucketWrite("codex", "gpt-5-codex", 1_790_000_000 // 1800 * 1800, 1, {})
    assert len(latest_per_key([first, _differ(first, column)])) == 2
    newer = dataclasses.replace(first, revision=2)
    assert latest_per_key([first, newer]) == [newer]
