"""Kimi wire-log parser: StatusUpdate snapshots, Kimi Code usage.record lines, copies, discovery."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources import resolve_duplicates
from usageledger.sources.kimi import KimiParser, map_usage

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, scan

PARSER = KimiParser()
ROOT = SAMPLES / "kimi"
GROUP = "3b7e0d1c9a5f4e2b8c6d0a1f2e3d4c5b"
SESSION = "7c1e4a2b-5d3f-4e6a-9b8c-0d1e2f3a4b5c"
WIRE = ROOT / "share" / "sessions" / GROUP / SESSION / "wire.jsonl"
COPY = ROOT / "synced" / "sessions" / GROUP / SESSION / "wire.jsonl"

# Worked by hand (input = input_other + input_cache_creation; cached = input_cache_read):
# 2026-02-13  chatcmpl-A: snapshots 1000/10/0/0 then 1200/150/4000/300 (the synced copy holds
#               only the first): the final one counts -> in 1500, cached 4000, out 150,
#               cache write 300 (5650)
#             chatcmpl-B: in 500, cached 6000, out 80 (6580)
#             chatcmpl-S (sub-agent): in 200, cached 100, out 40 (340)
#             day: in 2200, cached 10100, out 270, cache write 300, total 12570
# 2026-02-14  no message_id: in 100, out 20 (120)
EXPECTED = {
    "2026-02-13": Sums(input=2200, cached=10100, output=270, cache_write=300),
    "2026-02-14": Sums(input=100, output=20),
}


def env() -> dict[str, str]:
    return {"KIMI_DATA_DIR": f"{ROOT / 'share'},{ROOT / 'synced'}"}


def status(ts: float, other: int, out: int, read: int = 0, mid: str | None = "m1") -> bytes:
    payload: dict[str, Any] = {
        "token_usage": {
            "input_other": other,
            "output": out,
            "input_cache_read": read,
            "input_cache_creation": 0,
        }
    }
    if mid is not None:
        payload["message_id"] = mid
    return orjson.dumps({"timestamp": ts, "message": {"type": "StatusUpdate", "payload": payload}})


def test_the_samples_add_up_to_the_hand_worked_totals(tmp_path: Path) -> None:
    """Each day of the samples equals the sums worked out by hand above."""
    events, _ = scan(PARSER, env(), tmp_path)
    assert by_day(events) == EXPECTED
    assert EXPECTED["2026-02-13"].total == 12570
    assert EXPECTED["2026-02-14"].total == 120


def test_growing_snapshots_of_one_message_count_once_at_their_final_size() -> None:
    """Two StatusUpdates for one message_id are one event: the larger snapshot wins."""
    result = PARSER.parse(WIRE.read_bytes(), path=str(WIRE), state=None)
    kept = resolve_duplicates(result.events, PARSER.duplicate_policy)
    a = [e for e in kept if e.event_key == "chatcmpl-A"]
    assert [(e.input_tokens, e.cached_input_tokens, e.output_tokens) for e in a] == [
        (1500, 4000, 150)
    ]
    assert len([e for e in result.events if e.event_key == "chatcmpl-A"]) == 2


def test_a_stale_copy_read_later_does_not_replace_the_final_snapshot(tmp_path: Path) -> None:
    """The synced copy (first snapshot only) is read after the original and still loses."""
    paths = PARSER.discover(env(), tmp_path)
    assert paths == [WIRE, COPY]
    events, _ = scan(PARSER, env(), tmp_path)
    (a,) = [e for e in events if e.event_key == "chatcmpl-A"]
    assert a.output_tokens == 150
    # Under "last" the copy, read last, would have won: that is why the policy is "max".
    found = [e for p in paths for e in PARSER.parse(p.read_bytes(), path=str(p), state=None).events]
    (last,) = [e for e in resolve_duplicates(found, "last") if e.event_key == "chatcmpl-A"]
    assert last.output_tokens == 10


def test_a_later_snapshot_arriving_in_a_later_read_replaces_the_earlier() -> None:
    """Snapshots split across two incremental reads still resolve to the final one."""
    data = status(1770983405.0, 10, 1) + b"\n" + status(1770983409.0, 30, 7) + b"\n"
    events, problems, consumed = parse_in_two(PARSER, data, "wire.jsonl", len(data) - 5)
    assert problems == []
    assert consumed == len(data)
    (final,) = resolve_duplicates(events, PARSER.duplicate_policy)
    assert (final.input_tokens, final.output_tokens) == (30, 7)


def test_sub_agent_status_updates_count() -> None:
    """A StatusUpdate wrapped in a SubagentEvent is usage like any other."""
    result = PARSER.parse(WIRE.read_bytes(), path=str(WIRE), state=None)
    (sub,) = [e for e in result.events if e.event_key == "chatcmpl-S"]
    assert (sub.input_tokens, sub.cached_input_tokens, sub.output_tokens) == (200, 100, 40)
    assert sub.session_id == SESSION
    assert sub.model == "unknown"


def test_cache_creation_is_input_and_cache_write() -> None:
    """input_cache_creation is prompt written to the cache: part of input, and the cache write."""
    usage = {
        "input_other": 1200,
        "output": 150,
        "input_cache_read": 4000,
        "input_cache_creation": 300,
    }
    assert map_usage(usage) == (1500, 4000, 150, 300)


def test_bad_lines_are_reported_not_counted() -> None:
    """A malformed line and a total without a breakdown are problems, with their lines."""
    result = PARSER.parse(WIRE.read_bytes(), path=str(WIRE), state=None)
    reasons = [(p.line, p.reason.split(" (")[0]) for p in result.problems]
    assert reasons == [(11, "malformed JSON"), (12, "token_usage has a total but no breakdown")]


@pytest.mark.parametrize("ts", [None, -1.5, 0, "1770983405", True])
def test_a_missing_or_impossible_timestamp_is_a_problem(ts: Any) -> None:
    """Usage without a positive Unix time is reported, never dated by guess."""
    line = orjson.loads(status(1.0, 5, 1))
    line["timestamp"] = ts
    result = PARSER.parse(orjson.dumps(line) + b"\n", path="wire.jsonl", state=None)
    assert result.events == []
    assert "timestamp" in result.problems[0].reason


def test_a_message_without_id_gets_a_stable_content_key() -> None:
    """The same id-less line read twice has the same key; another line does not."""
    one = PARSER.parse(status(1771070460.0, 100, 20, mid=None) + b"\n", path="a", state=None)
    two = PARSER.parse(status(1771070460.0, 100, 20, mid=None) + b"\n", path="a", state=None)
    other = PARSER.parse(status(1771070461.0, 100, 20, mid=None) + b"\n", path="a", state=None)
    assert one.events[0].event_key == two.events[0].event_key != other.events[0].event_key


def make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_discovery_reads_the_env_override_and_both_default_homes(tmp_path: Path) -> None:
    """KIMI_DATA_DIR wins; else KIMI_SHARE_DIR or ~/.kimi, and KIMI_CODE_HOME or ~/.kimi-code."""
    home = tmp_path / "home"
    cli = make(home / ".kimi" / "sessions" / "g" / "s" / "wire.jsonl")
    make(home / ".kimi" / "sessions" / "g" / "s" / "context.jsonl")  # not a wire log
    code = make(home / ".kimi-code" / "sessions" / "w" / "s" / "agents" / "main" / "wire.jsonl")
    share = make(tmp_path / "share" / "sessions" / "g" / "s" / "wire.jsonl")
    assert PARSER.discover({}, home) == [code, cli]
    assert PARSER.discover({"KIMI_SHARE_DIR": str(tmp_path / "share")}, home) == [code, share]
    assert PARSER.discover({"KIMI_DATA_DIR": str(tmp_path / "share")}, home) == [share]


def test_a_kimi_code_agent_log_is_dated_to_its_session(tmp_path: Path) -> None:
    """In <session>/agents/<agent>/wire.jsonl the session is the directory above agents."""
    path = tmp_path / "sessions" / "w" / "sess-9" / "agents" / "main" / "wire.jsonl"
    result = PARSER.parse(status(1771070460.0, 1, 1) + b"\n", path=str(path), state=None)
    assert result.events[0].session_id == "sess-9"


def test_the_macos_location_is_the_same_dot_kimi(tmp_path: Path) -> None:
    """Kimi uses ~/.kimi on macOS too: Library/Application Support is not read."""
    make(
        tmp_path
        / "Library"
        / "Application Support"
        / "kimi"
        / "sessions"
        / "g"
        / "s"
        / "wire.jsonl"
    )
    assert PARSER.discover({}, tmp_path) == []


def test_an_absent_root_finds_nothing(tmp_path: Path) -> None:
    """No ~/.kimi and no ~/.kimi-code: no files and no error."""
    assert PARSER.discover({}, tmp_path) == []


def run(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_scan_then_report_daily_follows_a_snapshot_written_after_the_first_scan(
    tmp_path: Path,
) -> None:
    """A final snapshot appended after a scan replaces the earlier one in the ledger's report."""
    root = tmp_path / "kimi"
    wire = root / "sessions" / GROUP / SESSION / "wire.jsonl"
    wire.parent.mkdir(parents=True)
    shutil.copyfile(WIRE, wire)
    run_env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "KIMI_DATA_DIR": str(root),
    }
    grown = status(1770983415.0, 1300, 400, 4000, mid="chatcmpl-A")
    with wire.open("ab") as f:
        f.write(grown[:30])  # the final snapshot, half written
    run(run_env, "scan")
    report = ["report", "daily", "--source", "kimi", "--no-scan"]
    days = {d["day"]: d for d in run(run_env, *report)["days"]}
    assert days["2026-02-13"]["total_tokens"] == 12570
    assert days["2026-02-13"]["cache_write_tokens"] == 300
    with wire.open("ab") as f:
        f.write(grown[30:] + b"\n")
    run(run_env, "scan")
    days = {d["day"]: d for d in run(run_env, *report)["days"]}
    # chatcmpl-A becomes 1300 + 0 in, 4000 cached, 400 out (5700 instead of 5650); the day
    # is 12570 - 5650 + 5700 = 12620, its output 270 - 150 + 400 = 520.
    assert (days["2026-02-13"]["total_tokens"], days["2026-02-13"]["output_tokens"]) == (12620, 520)
    assert days["2026-02-14"]["total_tokens"] == 120


# Kimi Code (usage.record lines), worked by hand (input = inputOther + inputCacheCreation;
# cached = inputCacheRead; cache write = inputCacheCreation):
CODE = ROOT / "code"
WORKSPACE = CODE / "sessions" / "wd_proj_4c02790435a7"
MAIN = WORKSPACE / "session_019cd6a0-0000-7000-8000-000000000001" / "agents" / "main" / "wire.jsonl"
FORK = WORKSPACE / "session_019cd6a0-0000-7000-8000-000000000002" / "agents" / "main" / "wire.jsonl"
# 2026-03-10  main step 1: in 5102, cached 13312, out 172 (18586); its step.end repeats it: 0
#             main step 2: in 800 + 256 = 1056, cached 18000, out 420, write 256 (19476)
#             compaction (usageScope absent = "session"): in 20000, out 1500 (21500)
#             sub-agent agent-0: in 200, cached 1000, out 40 (1240)
#             fork: its copy of step 1 is the same record (0); its own step: in 50,
#               cached 19000, out 10 (19060)
#             day: in 5102 + 1056 + 20000 + 200 + 50 = 26408,
#                  cached 13312 + 18000 + 1000 + 19000 = 51312, out 172 + 420 + 1500 + 40 + 10
#                  = 2142, write 256; total 26408 + 51312 + 2142 = 79862
# 2026-03-11  in 300, cached 1000, out 50 (1350)
CODE_EXPECTED = {
    "2026-03-10": Sums(input=26408, cached=51312, output=2142, cache_write=256),
    "2026-03-11": Sums(input=300, cached=1000, output=50),
}
ALIAS = "kimi-code/kimi-for-coding"


def record(
    t: int, other: int, out: int, read: int = 0, creation: int = 0, model: str = ALIAS
) -> dict[str, Any]:
    usage = {"inputOther": other, "output": out, "inputCacheRead": read}
    usage["inputCacheCreation"] = creation
    return {"type": "usage.record", "model": model, "usage": usage, "usageScope": "turn", "time": t}


def request(t: int, model: str, alias: str | None = ALIAS) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "llm.request", "kind": "loop", "model": model, "time": t}
    if alias is not None:
        line["modelAlias"] = alias
    return line


def test_the_kimi_code_samples_add_up_to_the_hand_worked_totals(tmp_path: Path) -> None:
    """Loop steps, compaction, a sub-agent and a fork add up to the sums worked out above."""
    events, problems = scan(PARSER, {"KIMI_DATA_DIR": str(CODE)}, tmp_path)
    assert problems == []
    assert by_day(events) == CODE_EXPECTED
    assert CODE_EXPECTED["2026-03-10"].total == 79862
    assert CODE_EXPECTED["2026-03-11"].total == 1350
    assert {e.session_id for e in events} == {
        "session_019cd6a0-0000-7000-8000-000000000001",
        "session_019cd6a0-0000-7000-8000-000000000002",
    }


def test_a_step_end_repeating_a_usage_record_is_not_counted_again() -> None:
    """The step.end loop event carries the step's usage again: only usage.record counts."""
    step = {"inputOther": 5102, "output": 172, "inputCacheRead": 13312, "inputCacheCreation": 0}
    data = jsonl(
        record(1773129606000, 5102, 172, 13312),
        {
            "type": "context.append_loop_event",
            "event": {"type": "step.end", "step": 1, "usage": step, "messageId": "chatcmpl-K1"},
            "time": 1773129609000,
        },
    )
    result = PARSER.parse(data, path=str(MAIN), state=None)
    assert result.problems == []
    (event,) = result.events
    # 5102 + 0 in, 13312 cached, 172 out: 18586, once.
    assert event.total_tokens == 18586


def test_session_scoped_records_such_as_compaction_count() -> None:
    """A compaction call is recorded without usageScope ("session"): it is billed usage."""
    compaction = record(1773129645000, 20000, 1500)
    del compaction["usageScope"]
    session_scope = dict(record(1773129646000, 7, 3), usageScope="session")
    result = PARSER.parse(jsonl(compaction, session_scope), path=str(MAIN), state=None)
    assert [e.total_tokens for e in result.events] == [21500, 10]


def test_a_forked_sessions_copy_of_a_record_has_the_records_key() -> None:
    """Kimi Code's fork copies the wire log: the copied record gets the original's key."""
    original = PARSER.parse(MAIN.read_bytes(), path=str(MAIN), state=None).events
    forked = PARSER.parse(FORK.read_bytes(), path=str(FORK), state=None).events
    shared = {e.event_key for e in original} & {e.event_key for e in forked}
    (copy,) = [e for e in forked if e.event_key in shared]
    assert (copy.input_tokens, copy.cached_input_tokens, copy.output_tokens) == (5102, 13312, 172)
    assert len(forked) == 2
    assert len(original) == 4


def test_the_request_names_the_model_of_the_record_after_it() -> None:
    """llm.request's provider model wins over the record's alias; a placeholder takes it too."""
    events = PARSER.parse(MAIN.read_bytes(), path=str(MAIN), state=None).events
    assert [e.model for e in events] == ["kimi-for-coding"] * 3 + ["kimi-k2-turbo-preview"]
    # A record whose alias is not the latest request's keeps its own name; a placeholder
    # with no request before it is "unknown".
    data = jsonl(
        request(1, "k3", alias="kimi-code/k3"),
        record(2, 1, 1, model="openai-pro/gpt-5.5"),
    )
    assert [e.model for e in PARSER.parse(data, path="w", state=None).events] == [
        "openai-pro/gpt-5.5"
    ]
    lone = jsonl(record(3, 1, 1, model="kimi-code/__kimi_env_model__"))
    assert [e.model for e in PARSER.parse(lone, path="w", state=None).events] == ["unknown"]


def test_the_request_and_the_format_carry_over_to_the_next_read() -> None:
    """Split between llm.request and usage.record, the model is still the request's."""
    data = jsonl(request(1773129601100, "kimi-for-coding"), record(1773129606000, 10, 2))
    cut = data.index(b"\n") + 1
    events, problems, consumed = parse_in_two(PARSER, data, str(MAIN), cut)
    assert (problems, consumed) == ([], len(data))
    assert [e.model for e in events] == ["kimi-for-coding"]
    later = status(1773129700.0, 5, 1) + b"\n"
    state = PARSER.parse(data, path="w", state=None).state
    assert state["format"] == "usage.record"
    result = PARSER.parse(later, path="w", state=state)
    assert result.events == []
    assert "StatusUpdate usage in a log that counts its responses by usage.record" in (
        result.problems[0].reason
    )


def test_a_file_never_counts_one_response_from_both_formats() -> None:
    """After a StatusUpdate decided the format, a usage.record in the same file is reported."""
    data = status(1773129606.0, 5102, 172, 13312, mid="chatcmpl-K1") + b"\n"
    data += jsonl(record(1773129606000, 5102, 172, 13312))
    result = PARSER.parse(data, path=str(WIRE), state=None)
    assert [e.event_key for e in result.events] == ["chatcmpl-K1"]
    assert [(p.line, p.reason.split(" (")[0]) for p in result.problems] == [
        (2, "usage.record usage in a log that counts its responses by StatusUpdate lines")
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time": None}, "time is not a positive"),
        ({"time": 1773129606.5}, "time is not a positive"),
        ({"time": -1}, "time is not a positive"),
        ({"usage": {"inputOther": -5, "output": 1}}, "usage.inputOther is negative"),
        ({"usage": "lots"}, "usage.record usage is not an object"),
    ],
)
def test_a_bad_usage_record_is_reported_not_counted(change: dict[str, Any], reason: str) -> None:
    """Impossible times and counts are problems with their line, never dated by the file."""
    line = record(1773129606000, 10, 2)
    line.update(change)
    result = PARSER.parse(jsonl(line), path="w", state=None)
    assert result.events == []
    assert [(p.line, reason in p.reason) for p in result.problems] == [(1, True)]


def test_reading_a_kimi_code_log_in_two_parts_at_any_byte_gives_one_passs_events() -> None:
    """The state (line, format, request) makes any split read the same as one whole read."""
    data = MAIN.read_bytes() + status(1773300000.0, 1, 1) + b"\n"  # ends with a refused line
    whole = PARSER.parse(data, path=str(MAIN), state=None)
    assert len(whole.events) == 4
    assert [p.line for p in whole.problems] == [len(data.splitlines())]
    for cut in range(len(data) + 1):
        events, problems, consumed = parse_in_two(PARSER, data, str(MAIN), cut)
        assert consumed == len(data)
        assert events == whole.events, cut
        assert problems == whole.problems, cut
