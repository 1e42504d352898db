"""The crash audit: SIGKILL a real server under load and find nothing lost, doubled or torn.

The slow tests run ``scripts/crash_audit.py`` at a small size (5 kills) against a real
``usageledger serve`` on SQLite and on PostgreSQL. The fast ones feed the audit's checks a
hand-made database state with one fault each, to show that a clean report means something.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import crash_audit as audit
from scripts.crash_audit import Batch, Device, Snapshot, Tally, device_key, values_of


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_five_kills_lose_double_and_tear_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every acknowledged bucket survives five SIGKILLs exactly once, with exact rollups."""
    if kind == "postgresql":
        request.getfixturevalue("pg_server_url")  # skips (or fails in CI) without PostgreSQL
    report = tmp_path / "audit.json"
    status = audit.main(["--db", kind, "--kills", "5", "--json", str(report)])
    (result,) = json.loads(report.read_text())
    assert status == 0, result["problems"]
    assert result["kills"] == 5
    assert result["acknowledged"] > 0
    assert result["unacknowledged"] == 0
    faults = ("lost", "duplicated", "partial", "wrong", "rollup_mismatches", "receipts_bad")
    assert {name: result[name] for name in faults} == dict.fromkeys(faults, 0)
    assert result["integrity"] == "ok"
    assert result["verify_drifts"] in (0, None)


def device_with(*batches: Batch, current: Batch | None = None) -> Device:
    """A device of user 1 whose acknowledged batches are ``batches``."""
    device = Device(number=0, user_id=1, device_id=7, token="-", zone="UTC")
    for batch in batches:
        device.acked.append(batch)
        for k in batch.keys:
            device.latest[k] = batch
    device.current = current
    return device


def batch(index: int, keys: list[int]) -> Batch:
    """A batch of ``keys`` (the body is not needed by the checks)."""
    return Batch(device=0, index=index, keys=keys, body=b"", idempotency_key=None)


def snapshot(device: Device, applied: dict[int, int]) -> Snapshot:
    """The state after applying, per key number, the batch with that index (and its rollups)."""
    buckets = {
        device_key(device, k): (index + 1, values_of(index, k)) for k, index in applied.items()
    }
    state = Snapshot(buckets=buckets, daily={}, revisions={}, zones={1: "UTC"}, integrity="ok")
    sums: dict[tuple[Any, ...], list[int]] = {}
    for (uid, did, source, model, start), (_, values) in buckets.items():
        day = audit.local_day(start, audit.ZoneInfo("UTC"))
        acc = sums.setdefault((uid, day, did, source, model), [0] * len(values))
        for i, v in enumerate(values):
            acc[i] += v
    state.daily = {k: tuple(v) for k, v in sums.items()}
    return state


def checked(device: Device, state: Snapshot) -> Tally:
    """The tally of one snapshot check."""
    tally = Tally(database="test", kills=1)
    audit.check_snapshot(state, [device], tally, "test")
    return tally


def test_a_clean_state_passes() -> None:
    """Acknowledged batches fully applied and an in-flight batch not applied: no fault."""
    device = device_with(batch(0, [0, 1, 2]), batch(1, [2, 3]), current=batch(2, [0, 3]))
    tally = checked(device, snapshot(device, {0: 0, 1: 0, 2: 1, 3: 1}))
    assert tally.ok, tally.problems


def test_an_acknowledged_bucket_at_an_older_revision_is_lost() -> None:
    """A bucket still at the revision before its acknowledged batch counts as lost."""
    device = device_with(batch(0, [0, 1]), batch(1, [1]))
    tally = checked(device, snapshot(device, {0: 0, 1: 0}))
    assert tally.lost == 1


def test_a_missing_acknowledged_bucket_is_lost() -> None:
    """An acknowledged bucket absent from the database counts as lost."""
    device = device_with(batch(0, [0, 1]))
    tally = checked(device, snapshot(device, {0: 0}))
    assert tally.lost == 1


def test_half_an_in_flight_batch_is_partial() -> None:
    """An unacknowledged batch applied to some of its buckets only counts as partial."""
    device = device_with(batch(0, [0, 1]), current=batch(1, [0, 1]))
    tally = checked(device, snapshot(device, {0: 1, 1: 0}))
    assert tally.partial == 1


def test_values_of_another_batch_are_wrong() -> None:
    """A bucket whose values are not those of the batch its revision names counts as wrong."""
    device = device_with(batch(0, [0]))
    state = snapshot(device, {0: 0})
    key = device_key(device, 0)
    state.buckets[key] = (1, values_of(5, 0))
    assert checked(device, state).wrong == 1


def test_a_revision_no_batch_wrote_is_duplicated() -> None:
    """A bucket at a revision that no acknowledged or in-flight batch carries counts."""
    device = device_with(batch(0, [0]))
    assert checked(device, snapshot(device, {0: 4})).duplicated == 1


def test_a_rollup_that_differs_from_its_buckets_is_caught() -> None:
    """usage_daily not equal to the sums of usage_buckets is a rollup mismatch."""
    device = device_with(batch(0, [0, 1]))
    state = snapshot(device, {0: 0, 1: 0})
    day = next(iter(state.daily))
    state.daily[day] = tuple(v * 2 for v in state.daily[day])
    assert checked(device, state).rollup_mismatches == 1


def test_a_failed_integrity_check_is_reported() -> None:
    """Anything but ``ok`` from PRAGMA integrity_check fails the audit."""
    device = device_with(batch(0, [0]))
    state = snapshot(device, {0: 0})
    state.integrity = "row 3 missing from index"
    tally = checked(device, state)
    assert tally.integrity == "row 3 missing from index"
    assert not tally.ok


def test_two_revision_rows_for_one_key_and_revision_are_duplicated() -> None:
    """At the end, a key with two log rows of the same revision counts as duplicated."""
    device = device_with(batch(0, [0]))
    state = snapshot(device, {0: 0})
    key = device_key(device, 0)
    state.revisions = {(key, 1): [values_of(0, 0), values_of(0, 0)]}
    tally = Tally(database="test", kills=1)
    audit.check_revision_log(state, [device], tally)
    assert tally.duplicated == 1
