"""GitHub Copilot CLI parser: per-process shutdown snapshots, resumes, cache-inclusive input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources.copilot import CopilotParser, map_usage

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, parse_path, scan

PARSER = CopilotParser()
S1 = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
RESUMED = SAMPLES / f"copilot/session-state/{S1}/events.jsonl"
ENV = {"COPILOT_CONFIG_DIR": str(SAMPLES / "copilot")}


def shutdown(models: dict[str, Any], ts: str, event_id: str | None = "e-1") -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "session.shutdown",
        "data": {"shutdownType": "routine", "modelMetrics": models},
        "timestamp": ts,
    }
    if event_id is not None:
        line["id"] = event_id
    return line


def usage(i: int, o: int, read: int = 0, write: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "requests": {"count": 1, "cost": 1},
        "usage": {
            "inputTokens": i,
            "outputTokens": o,
            "cacheReadTokens": read,
            "cacheWriteTokens": write,
            "reasoningTokens": reasoning,
        },
    }


def parse(*records: Any) -> Any:
    return PARSER.parse(jsonl(*records), path=f"/c/session-state/{S1}/events.jsonl", state=None)


def test_input_is_net_of_cache_reads_and_keeps_the_cache_writes() -> None:
    """inputTokens holds reads and writes: input = inputTokens - cacheRead, writes stay in it."""
    # 12000 - 9000 = 3000 input (1500 of it written to the cache); cached 9000; output 800.
    got = map_usage("claude-sonnet-4.5", usage(12000, 800, 9000, 1500, 200)["usage"])
    assert got == (3000, 9000, 800, 200, 1500)


def test_gemini_reasoning_is_added_to_output_and_others_are_already_inside() -> None:
    """Only Gemini models report reasoningTokens apart from outputTokens."""
    assert map_usage("gemini-2.5-pro", usage(2000, 100, reasoning=250)["usage"]) == (
        2000,
        0,
        350,  # 100 + 250
        250,
        0,
    )
    assert map_usage("gpt-5-mini", usage(3000, 400, 1000, reasoning=150)["usage"]) == (
        2000,
        1000,
        400,  # reasoning 150 is already part of the 400
        150,
        0,
    )


def test_resumed_shutdowns_are_summed_never_differenced() -> None:
    """Each shutdown is one process's own usage; a resume's smaller numbers are not a reset."""
    result = parse(
        shutdown({"m": usage(1000, 100)}, "2025-09-15T10:00:00Z", "a"),
        shutdown({"m": usage(400, 40)}, "2025-09-16T10:00:00Z", "b"),
    )
    assert [e.total_tokens for e in result.events] == [1100, 440]
    assert len({e.event_key for e in result.events}) == 2


def test_the_sample_session_per_day_is_worked_out_by_hand() -> None:
    """The resumed sample session: both processes counted, each on its shutdown's day."""
    events, problems = scan(PARSER, ENV, Path("/nonexistent"))
    # 2025-09-15 (first process): claude 12000-9000=3000 in, 9000 cached, 800 out (200
    # reasoning inside), 1500 written; gpt-5-mini 3000-1000=2000 in, 1000 cached, 400 out
    # (150 reasoning inside); haiku all zero -> nothing.
    # 2025-09-16 (the resumed process): claude 5000-4000=1000 in, 4000 cached, 300 out, 500
    # written; gemini 2000 in, 100 + 250 reasoning = 350 out.
    assert by_day(events) == {
        "2025-09-15": Sums(input=5000, cached=10000, output=1200, reasoning=350, cache_write=1500),
        "2025-09-16": Sums(input=3000, cached=4000, output=650, reasoning=250, cache_write=500),
    }
    assert sum(e.total_tokens for e in events) == 16200 + 7650
    assert [p.reason for p in problems] == ["malformed JSON (unexpected end of data at char 51)"]
    first = events[0]
    assert (first.session_id, first.project, first.model) == (
        S1,
        "/work/copilot-project",
        "claude-sonnet-4.5",
    )


def test_the_words_session_shutdown_inside_a_tool_call_are_not_a_shutdown() -> None:
    """Only the top-level type counts, never the substring in a command or a reply."""
    tool = {
        "type": "tool.execution_start",
        "data": {"arguments": {"command": 'echo {"type":"session.shutdown"}'}},
        "timestamp": "2025-09-15T10:00:00Z",
    }
    assert parse(tool).events == []


def test_a_re_read_of_the_file_counts_each_shutdown_once() -> None:
    """Keys name session, shutdown and model, so reading the file twice changes nothing."""
    first, _ = parse_path(PARSER, RESUMED)
    again, _ = parse_path(PARSER, RESUMED)
    assert [e.event_key for e in first] == [e.event_key for e in again]
    assert first[0].event_key == f"{S1}:0c1b2a39-0000-4000-8000-000000000006:claude-sonnet-4.5"
    assert len({e.event_key for e in first}) == 4


def test_a_shutdown_without_an_id_is_keyed_by_its_timestamp() -> None:
    """Two id-less shutdowns of one model stay two events."""
    result = parse(
        shutdown({"m": usage(10, 1)}, "2025-09-15T10:00:00Z", None),
        shutdown({"m": usage(10, 1)}, "2025-09-15T11:00:00Z", None),
    )
    assert [e.event_key for e in result.events] == [
        f"{S1}:@2025-09-15T10:00:00Z:m",
        f"{S1}:@2025-09-15T11:00:00Z:m",
    ]


def test_resuming_from_a_cursor_gives_the_same_events_as_one_pass() -> None:
    """Incremental reads keep the session id, project and line numbers in the state."""
    data = RESUMED.read_bytes()
    whole = PARSER.parse(data, path=str(RESUMED), state=None)
    for cut in range(0, len(data) + 1, 97):
        events, problems, consumed = parse_in_two(PARSER, data, str(RESUMED), cut)
        assert events == whole.events
        assert problems == whole.problems
        assert consumed == len(data)


@pytest.mark.parametrize(
    ("models", "reason"),
    [
        ({"m": usage(100, 10, read=80, write=30)}, "model m: cacheReadTokens + cacheWriteTokens"),
        ({"m": usage(100, 10, reasoning=11)}, "model m: reasoningTokens exceed outputTokens"),
        ({"m": {"usage": {"inputTokens": -1}}}, "model m: usage.inputTokens is negative"),
        ({"m": {"usage": {"inputTokens": 1.5}}}, "model m: usage.inputTokens is not an integer"),
        ({"m": {"usage": [1]}}, "model m: usage is not an object"),
        ([1, 2], "data.modelMetrics is not an object"),
    ],
)
def test_bad_counts_are_reported_and_the_other_models_still_count(models: Any, reason: str) -> None:
    """A bad model entry is a problem naming the model; a good one beside it counts."""
    if isinstance(models, dict):
        models = {**models, "ok": usage(5, 5)}
    result = parse(shutdown(models, "2025-09-15T10:00:00Z"))
    (problem,) = result.problems
    assert problem.reason.startswith(reason)
    if isinstance(models, dict):
        assert [e.model for e in result.events] == ["ok"]


def test_session_totals_without_a_model_split_are_reported_not_counted() -> None:
    """tokenDetails alone cannot be priced per model: a problem, never a silent drop."""
    line = {
        "type": "session.shutdown",
        "data": {"tokenDetails": {"input": {"tokenCount": 5}}},
        "timestamp": "2025-09-15T10:00:00Z",
    }
    result = parse(line)
    assert result.events == []
    assert [p.reason for p in result.problems] == [
        "session.shutdown with tokenDetails only (not counted)"
    ]


def test_discover_prefers_copilot_config_dir_then_copilot_home_then_the_default(
    tmp_path: Path,
) -> None:
    """COPILOT_CONFIG_DIR wins, then COPILOT_HOME, then ~/.copilot; only <id>/events.jsonl."""
    for root in ("a", "b", "home/.copilot"):
        (tmp_path / root / "session-state/s1").mkdir(parents=True)
        (tmp_path / root / "session-state/s1/events.jsonl").write_text("")
    (tmp_path / "a/session-state/s1/nested").mkdir()
    (tmp_path / "a/session-state/s1/nested/events.jsonl").write_text("")
    (tmp_path / "a/session-state/events.jsonl").write_text("")
    home = tmp_path / "home"
    expected = [tmp_path / "a/session-state/s1/events.jsonl"]
    env = {"COPILOT_CONFIG_DIR": str(tmp_path / "a"), "COPILOT_HOME": str(tmp_path / "b")}
    assert PARSER.discover(env, home) == expected
    assert PARSER.discover({"COPILOT_HOME": str(tmp_path / "b")}, home) == [
        tmp_path / "b/session-state/s1/events.jsonl"
    ]
    default = [home / ".copilot/session-state/s1/events.jsonl"]
    assert PARSER.discover({}, home) == default  # macOS keeps ~/.copilot too
    assert PARSER.discover({}, tmp_path / "absent") == []


def test_report_daily_json_after_scan_has_the_hand_worked_totals(tmp_path: Path) -> None:
    """scan into a temp ledger, then `report daily --json`: 16200 and 7650 tokens."""
    shutil.copytree(SAMPLES / "copilot", tmp_path / "copilot")
    (tmp_path / "home").mkdir()
    env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "COPILOT_CONFIG_DIR": str(tmp_path / "copilot"),
    }
    runner = CliRunner()
    assert runner.invoke(main, ["scan"], env=env, catch_exceptions=False).exit_code == 0
    result = runner.invoke(
        main, ["report", "daily", "--json", "--source", "copilot"], env=env, catch_exceptions=False
    )
    report = orjson.loads(result.stdout)
    days = {d["day"]: (d["total_tokens"], d["cache_write_tokens"]) for d in report["days"]}
    assert days == {"2025-09-15": (16200, 1500), "2025-09-16": (7650, 500)}
