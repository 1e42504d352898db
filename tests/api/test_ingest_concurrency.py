"""Concurrent batches on PostgreSQL: no deadlock or serialization error reaches a client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import Persona
from tests.factories import bucket
from tests.helpers import bucket_rows, daily_rows, expected_daily


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_eight_concurrent_overlapping_batches_in_opposite_orders_stay_exact(
    client: TestClient, alice: Persona, bob: Persona, engine: Engine
) -> None:
    """8 clients × 200 overlapping keys, half reversed, five rounds: all 200 OK, totals exact."""
    keys = [(slot, model) for slot in range(100) for model in ("gpt-5", "o3")]

    def send(worker: int, round_: int) -> int:
        who = alice if worker % 4 else bob
        order = keys if worker % 2 == 0 else list(reversed(keys))
        revision = round_ * 100 + worker  # distinct per worker: every batch changes values
        items = [
            bucket(slot=slot, model=model, revision=revision, inp=revision, cache_write=0)
            for slot, model in order
        ]
        response = client.post(
            "/v1/ingest",
            content=json.dumps({"schema_version": 2, "buckets": items}),
            headers={"Content-Type": "application/json", **who.headers()},
        )
        return response.status_code

    for round_ in range(1, 6):
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda w, r=round_: send(w, r), range(8)))
        assert statuses == [200] * 8
    rows = bucket_rows(engine)
    assert len(rows) == 400  # 200 keys for each user
    for (user_id, *_), value in rows.items():
        # The highest revision of the last round wins: worker 7 for alice, worker 4 for bob.
        expected = 5 * 100 + (7 if user_id == alice.user_id else 4)
        assert value[0] == expected
        assert value[1] == expected
    zones = {alice.user_id: "Europe/Berlin", bob.user_id: "America/New_York"}
    assert daily_rows(engine) == expected_daily(engine, zones)
