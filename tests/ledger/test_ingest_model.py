"""Ingest against an in-memory model: any delivery order and any duplication give the same facts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import Engine

from tests.conftest import Persona, make_persona
from tests.factories import BASE, iso
from tests.helpers import bucket_rows, daily_rows, expected_daily
from usageledger.buckets import COUNT_COLUMNS, to_epoch
from usageledger.store.engine import Database

SLOTS = 6  # few keys, so batches collide on keys, revisions tie and values repeat
MODELS = ("gpt-5-codex", "claude-sonnet-4-5")
SOURCES = ("codex", "claude")


def make_bucket(slot: int, source: str, model: str, revision: int, base: int) -> dict[str, Any]:
    """A valid v2 bucket whose counts are derived from ``base``."""
    inp, cached, out = base * 3 + 1, base * 2, base + 1
    from datetime import timedelta

    return {
        "bucket_start": iso(BASE + timedelta(minutes=30 * slot)),
        "source": source,
        "model": model,
        "revision": revision,
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": out // 2,
        "total_tokens": inp + cached + out,
        "cache_write_tokens": inp // 3,
    }


bucket_args = st.tuples(
    st.integers(0, SLOTS - 1),
    st.sampled_from(SOURCES),
    st.sampled_from(MODELS),
    st.integers(1, 8),  # revision
    st.integers(0, 5),  # value seed
)


class IngestMachine(RuleBasedStateMachine):
    """Two users with two devices each upload, retry, correct, reorder and duplicate batches."""

    client: TestClient
    engine: Engine
    #: Device index -> (device token, user id, device id).
    devices: list[tuple[str, int, int]]

    def __init__(self) -> None:
        super().__init__()
        # key -> (revision, values); the model keeps the highest revision per key.
        self.model: dict[tuple[Any, ...], tuple[int, tuple[int, ...]]] = {}
        self.sent: list[tuple[int, dict[str, Any]]] = []

    @initialize()
    def reset(self) -> None:
        """Each example starts from an empty ledger."""
        from sqlalchemy import delete

        from usageledger.store.tables import (
            bucket_revisions,
            ingest_receipts,
            usage_buckets,
            usage_daily,
        )

        with self.engine.begin() as conn:
            for table in (bucket_revisions, usage_buckets, usage_daily, ingest_receipts):
                conn.execute(delete(table))

    def _apply_model(self, device: int, items: list[dict[str, Any]]) -> None:
        _, user_id, device_id = self.devices[device]
        chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for item in items:  # highest revision per key within the batch, ties: later item
            key = (item["source"], item["model"], item["bucket_start"])
            if key not in chosen or item["revision"] >= chosen[key]["revision"]:
                chosen[key] = item
        for item in chosen.values():
            from datetime import datetime

            start = to_epoch(datetime.fromisoformat(item["bucket_start"].replace("Z", "+00:00")))
            key = (user_id, device_id, item["source"], item["model"], start)
            values = tuple(item.get(c, 0) for c in COUNT_COLUMNS)  # a v2 item: v3 counts 0
            current = self.model.get(key)
            if current is None or (item["revision"] > current[0] and values != current[1]):
                self.model[key] = (item["revision"], values)

    def _send(self, device: int, items: list[dict[str, Any]]) -> None:
        device_token = self.devices[device][0]
        response = self.client.post(
            "/v1/ingest",
            content=orjson.dumps({"schema_version": 2, "buckets": items}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {device_token}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert sum(
            body[k] for k in ("inserted", "updated", "unchanged", "stale", "conflicts")
        ) == len(items)
        self._apply_model(device, items)
        self.sent.append((device, items))

    @rule(device=st.integers(0, 3), args=st.lists(bucket_args, min_size=1, max_size=12))
    def upload(self, device: int, args: list[tuple[int, str, str, int, int]]) -> None:
        """A device uploads a batch."""
        self._send(device, [make_bucket(*a) for a in args])

    @rule(data=st.data())
    def retry_or_reorder(self, data: st.DataObject) -> None:
        """A batch sent earlier arrives again, possibly reordered and with duplicated items."""
        if not self.sent:
            return
        device, items = data.draw(st.sampled_from(self.sent))
        shuffled = data.draw(st.permutations(items))
        extra = data.draw(st.lists(st.sampled_from(items), max_size=3))
        # Reordering changes which tie wins, so only reorder items with distinct revisions per key.
        keys: dict[tuple[Any, ...], set[int]] = defaultdict(set)
        for item in items:
            keys[(item["source"], item["model"], item["bucket_start"])].add(item["revision"])
        counts: dict[tuple[Any, ...], int] = defaultdict(int)
        for item in items:
            counts[(item["source"], item["model"], item["bucket_start"])] += 1
        ties = any(len(revs) < counts[k] for k, revs in keys.items())
        self._send(device, items + extra if ties else list(shuffled) + extra)

    @invariant()
    def buckets_equal_the_model(self) -> None:
        """usage_buckets holds exactly the highest revision per key."""
        stored = {k: (v[0], tuple(v[1:])) for k, v in bucket_rows(self.engine).items()}
        assert stored == self.model

    @invariant()
    def rollups_equal_sums_of_buckets(self) -> None:
        """usage_daily equals the sums of usage_buckets by local day, source and model."""
        zones = {d[1]: tz for d, tz in zip(self.devices, ZONES, strict=True)}
        assert daily_rows(self.engine) == expected_daily(self.engine, zones)


ZONES = ("Europe/Berlin", "Europe/Berlin", "Asia/Kathmandu", "Asia/Kathmandu")


@pytest.mark.parametrize("_", [0])
def test_ingest_matches_the_model_under_any_delivery(
    client: TestClient, engine: Engine, db: Database, _: int
) -> None:
    """Uploads, retries, corrections, reordering and duplicates keep facts and rollups exact."""
    from usageledger.ledger import accounts

    carol = make_persona(db, "carol", ZONES[0], device="desk")
    dave = make_persona(db, "dave", ZONES[2], device="desk")

    def tower(p: Persona) -> str:
        token, _ = db.write(
            lambda c: accounts.issue_token(c, p.name, kind="device", device_name="tower", now_ms=1)
        )
        return token

    IngestMachine.devices = [
        (carol.device_token, carol.user_id, 1),
        (tower(carol), carol.user_id, 2),
        (dave.device_token, dave.user_id, 1),
        (tower(dave), dave.user_id, 2),
    ]
    IngestMachine.client = client
    IngestMachine.engine = engine
    runner = IngestMachine.TestCase()
    runner.settings = settings(
        max_examples=25,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    runner.runTest()
