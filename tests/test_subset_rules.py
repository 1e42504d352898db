"""The schema v3 subset rules make every accepted bucket priceable.

A v3 bucket splits into four disjoint request classes: standard (the totals less the others),
long context only, fast only, and both. The ingest rules (``buckets.subset_violations``) must
refuse exactly the buckets that cannot be split, so that reads never fail on a stored bucket:
a bucket of ``input_tokens=10, cache_write_tokens=10, long_context_input_tokens=10`` has 10
cache writes among 0 standard input tokens, and was once accepted and then broke every read
of its user.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Persona
from usageledger.buckets import COUNTS_V3, PRICED_COUNTS, SUBSET_PREFIXES, equality_violations
from usageledger.ledger.pricing import (
    Cost,
    InvalidCountsError,
    Price,
    Tier,
    split_counts,
)

#: A price with every tier and a search rate: any bucket the rules accept is priced by it.
FULL = Price(
    model="claude-test-1",
    effective_from=date(2026, 1, 1),
    input=Decimal(3),
    cached_input=Decimal("0.3"),
    cache_write=Decimal("3.75"),
    output=Decimal(15),
    source="test",
    taken=date(2026, 1, 1),
    cache_write_1h=Decimal(6),
    web_search=Decimal(10),
    long_context=Tier(
        input=Decimal(6),
        cached_input=Decimal("0.6"),
        cache_write=Decimal("7.5"),
        output=Decimal("22.5"),
        cache_write_1h=Decimal(12),
        above_tokens=200_000,
    ),
    fast=Tier(
        input=Decimal(18),
        cached_input=Decimal("1.8"),
        cache_write=Decimal("22.5"),
        output=Decimal(90),
    ),
)


def with_totals(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` with every v3 name; total and reasoning as docs/design.md §3 says."""
    full = dict.fromkeys(COUNTS_V3, 0)
    full.update(counts)
    full["total_tokens"] = (
        full["input_tokens"] + full["cached_input_tokens"] + full["output_tokens"]
    )
    full["reasoning_output_tokens"] = 0
    return full


def splittable(counts: dict[str, int]) -> bool:
    """Whether the pricing arithmetic can split ``counts`` into its four classes."""
    try:
        split_counts(counts)
    except InvalidCountsError:
        return False
    return True


def test_the_leftover_standard_class_must_hold_its_writes() -> None:
    """10 input, 10 of them cache writes, all 10 input in a long-context request: the standard
    requests have 0 input and 10 writes, which no request can have."""
    counts = with_totals(
        {"input_tokens": 10, "cache_write_tokens": 10, "long_context_input_tokens": 10}
    )
    assert not splittable(counts)
    fields = [field for field, _ in equality_violations(counts)]
    assert fields == ["cache_write_tokens"]
    assert "standard requests" in equality_violations(counts)[0][1]


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        # 1h writes left in the standard class beyond its writes: the standard requests
        # have 10 - 10 = 0 writes but 10 - 0 = 10 one-hour writes.
        (
            {
                "input_tokens": 20,
                "cache_write_tokens": 10,
                "cache_write_1h_tokens": 10,
                "long_context_input_tokens": 10,
                "long_context_cache_write_tokens": 10,
            },
            "cache_write_1h_tokens",
        ),
        # Long-context-only writes above long-context-only input: long 10/10, both 10/0 →
        # long only 0 input, 10 writes.
        (
            {
                "input_tokens": 10,
                "cache_write_tokens": 10,
                "long_context_input_tokens": 10,
                "long_context_cache_write_tokens": 10,
                "fast_input_tokens": 10,
                "fast_cache_write_tokens": 0,
                "fast_long_context_input_tokens": 10,
            },
            "long_context_cache_write_tokens",
        ),
    ],
)
def test_each_class_must_hold_its_own_writes(counts: dict[str, int], field: str) -> None:
    """The rule is checked per class, and the problem names the class's field."""
    full = with_totals(counts)
    assert not splittable(full)
    assert field in [f for f, _ in equality_violations(full)]


small = st.integers(min_value=0, max_value=4)


@st.composite
def subset_counts(draw: st.DrawFn) -> dict[str, int]:
    """Random v3 counts: half built from four valid classes (accepted by construction, then
    perhaps nudged), half drawn freely (mostly refused)."""
    if draw(st.booleans()):
        counts = {
            name: draw(small)
            for name in (*PRICED_COUNTS, *(p + n for p in SUBSET_PREFIXES for n in PRICED_COUNTS))
        }
        counts["web_search_requests"] = draw(small)
        return with_totals(counts)
    parts: list[dict[str, int]] = []
    for _ in range(4):  # standard, long only, fast only, both
        inp = draw(small)
        write = draw(st.integers(0, inp))
        parts.append(
            {
                "input_tokens": inp,
                "cache_write_tokens": write,
                "cache_write_1h_tokens": draw(st.integers(0, write)),
                "cached_input_tokens": draw(small),
                "output_tokens": draw(small),
            }
        )
    _, long_only, fast_only, both = parts  # the first is the standard requests
    counts = {}
    for name in PRICED_COUNTS:
        counts[name] = sum(part[name] for part in parts)
        counts["long_context_" + name] = long_only[name] + both[name]
        counts["fast_" + name] = fast_only[name] + both[name]
        counts["fast_long_context_" + name] = both[name]
    counts["web_search_requests"] = draw(small)
    names = sorted(counts)
    nudge = draw(st.sampled_from([None, *names]))
    if nudge is not None:
        counts[nudge] = max(0, counts[nudge] + draw(st.sampled_from([-1, 1])))
    return with_totals(counts)


@given(subset_counts())
@settings(max_examples=2000, deadline=None)
def test_accepted_exactly_when_the_pricing_can_split_it(counts: dict[str, int]) -> None:
    """Accepted ⇒ priced without error at a price with every tier; refused ⇒ the split fails
    too (the rules refuse nothing that could be priced), and a field is named."""
    problems = equality_violations(counts)
    if problems:
        assert not splittable(counts), problems
        assert all(field in COUNTS_V3 for field, _ in problems)
        return
    assert splittable(counts)
    cost = Cost()
    cost.add_priced(FULL.model, counts, FULL)
    assert cost.unpriced_models == ()
    assert cost.usd >= 0


def post(client: TestClient, who: Persona, counts: dict[str, int]) -> Any:
    """Upload one v3 bucket of ``counts``."""
    bucket = {
        "bucket_start": "2026-11-04T10:00:00Z",
        "source": "claude",
        "model": "claude-sonnet-4-5",
        "revision": 1,
        **counts,
    }
    return client.post(
        "/v1/ingest",
        content=orjson.dumps({"schema_version": 3, "buckets": [bucket]}),
        headers={**who.headers(), "Content-Type": "application/json"},
    )


def test_the_server_refuses_an_unpriceable_bucket_and_keeps_reading(
    client: TestClient, alice: Persona
) -> None:
    """The reviewed bucket is a 422 naming its field; an accepted v3 bucket (a long-context
    request of 10 input, all cache writes) is stored and every read of the user answers."""
    bad = post(
        client,
        alice,
        with_totals(
            {"input_tokens": 10, "cache_write_tokens": 10, "long_context_input_tokens": 10}
        ),
    )
    assert bad.status_code == 422, bad.text
    error = bad.json()["error"]
    assert error["code"] == "TOKEN_EQUALITY_VIOLATED"
    assert [d["loc"] for d in error["details"]] == ["buckets[0].cache_write_tokens"]
    good = post(
        client,
        alice,
        with_totals(
            {
                "input_tokens": 10,
                "cache_write_tokens": 10,
                "long_context_input_tokens": 10,
                "long_context_cache_write_tokens": 10,
            }
        ),
    )
    assert good.status_code == 200, good.text
    read = alice.headers(read=True)
    window = {"from": "2026-11-04", "to": "2026-11-04", "tz": "UTC"}
    summary = client.get("/v1/usage/summary", params=window, headers=read)
    assert summary.status_code == 200, summary.text
    # 10 long-context five-minute writes at Sonnet 4.5's $7.50: 10 × 7.5 = 75 µ$.
    assert summary.json()["totals"]["cost_usd"] == "0.000075"
    daily = client.get("/v1/usage/daily", params=window, headers=read)
    assert daily.status_code == 200, daily.text


@given(subset_counts())
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_the_server_answers_as_the_rules_say(
    client: TestClient, alice: Persona, counts: dict[str, int]
) -> None:
    """Through the real app: refused ⇒ a 422 naming a field of the bucket; accepted ⇒ 200,
    and the user's summary still prices."""
    problems = equality_violations(counts)
    response = post(client, alice, counts)
    if problems:
        assert response.status_code == 422, response.text
        locs = {d["loc"] for d in response.json()["error"]["details"]}
        assert {f"buckets[0].{field}" for field, _ in problems} <= locs
        return
    assert response.status_code == 200, response.text
    summary = client.get(
        "/v1/usage/summary",
        params={"from": "2026-11-04", "to": "2026-11-04", "tz": "UTC"},
        headers=alice.headers(read=True),
    )
    assert summary.status_code == 200, summary.text
