"""Amp thread parser: per-message usage, the legacy usage ledger, one of them per thread."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources import resolve_duplicates
from usageledger.sources.amp import AmpParser

from ._support import SAMPLES, Sums, by_day, parse_path, scan

PARSER = AmpParser()
THREADS = SAMPLES / "amp/threads"
CURRENT = THREADS / "T-5d9c6f1e-1111-4aaa-8bbb-000000000001.json"
BOTH_COMPLETE = THREADS / "T-5d9c6f1e-2222-4aaa-8bbb-000000000002.json"
LEDGER_ONLY = THREADS / "T-5d9c6f1e-3333-4aaa-8bbb-000000000003.json"
ENV = {"AMP_DATA_DIR": str(SAMPLES / "amp")}


def message(mid: int, i: int, o: int, write: int = 0, read: int = 0, **extra: Any) -> Any:
    usage = {
        "model": "claude-sonnet-4-20250514",
        "inputTokens": i,
        "outputTokens": o,
        "cacheCreationInputTokens": write,
        "cacheReadInputTokens": read,
        "timestamp": "2025-09-16T10:00:00.000Z",
    }
    usage.update(extra)
    return {"role": "assistant", "messageId": mid, "content": [], "usage": usage}


def ledger(eid: str, to: int | None, i: int, o: int) -> Any:
    event: dict[str, Any] = {
        "id": eid,
        "timestamp": "2025-09-16T11:00:00.000Z",
        "model": "claude-sonnet-4-20250514",
        "tokens": {"input": i, "output": o},
    }
    if to is not None:
        event["toMessageId"] = to
    return event


def parse(messages: list[Any], events: list[Any] | None = None, **top: Any) -> Any:
    doc: dict[str, Any] = {"id": "T-x", "created": 1758009600000, "messages": messages, **top}
    if events is not None:
        doc["usageLedger"] = {"events": events}
    return PARSER.parse(orjson.dumps(doc), path="/a/threads/T-x.json", state=None)


def test_message_usage_maps_cache_writes_into_input() -> None:
    """input = inputTokens + cacheCreationInputTokens; cached = cacheReadInputTokens."""
    (event,) = parse([message(1, 100, 250, write=2000, read=300)]).events
    # 100 + 2000 = 2100 input (2000 written to the cache), 300 read, 250 out: 2650.
    assert (event.input_tokens, event.cache_write_tokens, event.cached_input_tokens) == (
        2100,
        2000,
        300,
    )
    assert (event.output_tokens, event.total_tokens, event.event_key) == (250, 2650, "T-x:1")


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """Three threads: current format, legacy with both complete, legacy with the ledger only."""
    events, problems = scan(PARSER, ENV, Path("/nonexistent"))
    # 2025-09-15, current thread: msg 1 = 100+2000 in (2000 written), 250 out -> 2350;
    # msg 3 = 50+300 in, 2000 read, 120 out -> 2470; msg 5 all zero -> nothing; msg 7 has no
    # timestamp, dated at the thread's creation (08:00): 5 in, 45 out -> 50. Sum 4870.
    # 2025-09-16, both complete (messages win): msg 1 = 40+1000 in, 500 out -> 1540; msg 3 =
    # 60 in, 1500 read, 200 out -> 1760. Ledger only (ledger wins): ev-a = 10 + 500 (cache
    # write from message 1) in, 90 out -> 600; ev-b = 20 in, 80 out -> 100. Sum 4000.
    assert by_day(events) == {
        "2025-09-15": Sums(input=2455, cached=2000, output=415, cache_write=2300),
        "2025-09-16": Sums(input=1630, cached=1500, output=870, cache_write=1500),
    }
    assert problems == []


def test_a_thread_with_a_complete_ledger_and_message_usage_is_counted_once() -> None:
    """Legacy threads hold both records of each request: the messages are counted, alone."""
    events, _ = parse_path(PARSER, BOTH_COMPLETE)
    assert [e.event_key for e in events] == [
        "T-5d9c6f1e-2222-4aaa-8bbb-000000000002:1",
        "T-5d9c6f1e-2222-4aaa-8bbb-000000000002:3",
    ]
    assert sum(e.total_tokens for e in events) == 3300  # not 6600


def test_the_ledger_wins_when_a_ledger_event_has_no_message_usage() -> None:
    """A ledger event naming a message without usage makes the ledger the thread's record."""
    events, problems = parse_path(PARSER, LEDGER_ONLY)
    assert [(e.event_key, e.total_tokens, e.cache_write_tokens) for e in events] == [
        ("T-5d9c6f1e-3333-4aaa-8bbb-000000000003:1", 600, 500),
        ("T-5d9c6f1e-3333-4aaa-8bbb-000000000003:3", 100, 0),
    ]
    assert problems == []


def test_message_usage_the_winning_ledger_does_not_name_is_reported() -> None:
    """With the ledger counted, a message it does not cover is a problem, not a second count."""
    result = parse(
        [message(1, 10, 90), message(3, 7, 3)],
        [ledger("ev-a", 1, 10, 90), ledger("ev-z", None, 5, 5)],
    )
    assert [e.event_key for e in result.events] == ["T-x:1", "T-x:ledger:ev-z"]
    assert [p.reason for p in result.problems] == [
        "message 3: usage not in the thread's usageLedger (not counted)"
    ]


def test_a_message_and_the_ledger_event_naming_it_share_one_key() -> None:
    """Whichever record wins at a later read replaces the earlier one in the ledger."""
    by_messages = parse([message(1, 10, 90)], [ledger("ev-a", 1, 10, 90)]).events
    by_ledger = parse([message(1, 10, 90)], [ledger("ev-a", 1, 10, 90), ledger("b", 9, 1, 1)])
    assert by_messages[0].event_key == by_ledger.events[0].event_key == "T-x:1"
    kept = resolve_duplicates([*by_messages, *by_ledger.events], PARSER.duplicate_policy)
    assert len(kept) == 2


def test_a_timestamp_comes_from_usage_then_the_message_then_the_thread() -> None:
    """Usage without a time is dated at the thread's creation rather than dropped."""
    no_time = message(1, 1, 1)
    del no_time["usage"]["timestamp"]
    (event,) = parse([no_time]).events
    assert event.timestamp.isoformat() == "2025-09-16T08:00:00+00:00"
    result = parse([no_time], created=None)
    assert [p.reason for p in result.problems] == ["message 1: missing timestamp"]


def test_bad_and_hostile_input_is_reported() -> None:
    """Bad counts, non-assistant usage, a total without parts and broken JSON are problems."""
    user = {"role": "user", "messageId": 2, "usage": {"inputTokens": 5}}
    result = parse(
        [message(1, -1, 1), user, message(4, 0, 0, totalTokens=345), message(5, 1, 1)],
    )
    assert [e.event_key for e in result.events] == ["T-x:5"]
    assert [p.reason for p in result.problems] == [
        "message 2: usage on a message that is not the assistant's",
        "message 1: usage.inputTokens is negative",
        "message 4: totalTokens without its parts (not counted)",
    ]
    broken = PARSER.parse(b'{"id": "T-y", "messages": [', path="T-y.json", state=None)
    assert broken.events == []
    assert broken.problems[0].reason.startswith("malformed JSON")
    assert PARSER.parse(b"[]", path="T-z.json", state=None).problems[0].reason == (
        "thread file is not an object"
    )


def test_discover_reads_amp_data_dir_or_the_default(tmp_path: Path) -> None:
    """AMP_DATA_DIR (comma-separated) wins; else ~/.local/share/amp (macOS too)."""
    for root in ("a", "b", "home/.local/share/amp"):
        (tmp_path / root / "threads").mkdir(parents=True)
        (tmp_path / root / "threads/T-1.json").write_text("{}")
    (tmp_path / "a/threads/notes.json").write_text("{}")
    (tmp_path / "a/threads/old").mkdir()
    (tmp_path / "a/threads/old/T-2.json").write_text("{}")
    home = tmp_path / "home"
    env = {"AMP_DATA_DIR": f"{tmp_path / 'a'}, ,{tmp_path / 'b'}"}
    assert PARSER.discover(env, home) == [
        tmp_path / "a/threads/T-1.json",
        tmp_path / "b/threads/T-1.json",
    ]
    assert PARSER.discover({}, home) == [home / ".local/share/amp/threads/T-1.json"]
    assert PARSER.discover({}, tmp_path / "absent") == []


def test_report_daily_json_after_scan_has_the_hand_worked_totals(tmp_path: Path) -> None:
    """scan into a temp ledger, then `report daily --json`: 4870 and 4000 tokens."""
    shutil.copytree(SAMPLES / "amp", tmp_path / "amp")
    (tmp_path / "home").mkdir()
    env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "AMP_DATA_DIR": str(tmp_path / "amp"),
    }
    runner = CliRunner()
    assert runner.invoke(main, ["scan"], env=env, catch_exceptions=False).exit_code == 0
    # A rewrite that turns the complete-ledger thread into a ledger-wins thread counts once.
    thread = tmp_path / "amp/threads" / BOTH_COMPLETE.name
    doc = orjson.loads(thread.read_bytes())
    del doc["messages"][3]["usage"]
    thread.write_bytes(orjson.dumps(doc))
    result = runner.invoke(
        main, ["report", "daily", "--json", "--source", "amp"], env=env, catch_exceptions=False
    )
    report = orjson.loads(result.stdout)
    days = {d["day"]: d["total_tokens"] for d in report["days"]}
    # 2025-09-16: message 3 is now ledger event ev-2 (60 in, 200 out; no cache known) = 260
    # instead of 1760, under the same key: 4000 - 1760 + 260 = 2500.
    assert days == {"2025-09-15": 4870, "2025-09-16": 2500}
