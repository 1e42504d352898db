"""Qwen Code chat-record parser: Gemini usage semantics, telemetry repeats, forks, discovery."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources.qwen import QwenParser, map_usage

from ._support import SAMPLES, Sums, by_day, scan

PARSER = QwenParser()
ROOT = SAMPLES / "qwen"
CHATS = ROOT / "projects" / "-home-alice-proj-q" / "chats"
SESSION = "5f0c7e2a-1b3d-4c8e-9a6f-0d2b4e6a8c1f"
FORK = "9d3e1c7b-2a4f-4b6d-8e0c-1f3a5b7d9e2c"

# Worked by hand from the sample records (input = prompt - cached; output = candidates +
# thoughts unless total = prompt + candidates, which means candidates already hold them):
# 2026-02-23  a1: prompt 12414 cached 0 candidates 76 thoughts 39 total 12529
#                 -> in 12414, cached 0, out 76+39 = 115, reasoning 39 (total 12529)
#             a2: prompt 15000 cached 9000 candidates 500 thoughts 120 total 15500 = 15000+500
#                 -> in 6000, cached 9000, out 500 (thoughts inside), reasoning 120 (15500)
#             (the ui_telemetry records repeat a1 and a2: not counted; the fork's copy of a1
#             has a1's uuid: counted once)
#             day: in 18414, cached 9000, out 615, reasoning 159, total 28029
# 2026-02-24  a3: prompt 1508 < cached 4864, so the prompt is net: in 1508, cached 4864,
#                 out 205+50 = 255, reasoning 50 (6627)
#             a5 (fork): prompt 2000 cached 1500 candidates 300 -> in 500, cached 1500, out 300
#             day: in 2008, cached 6364, out 555, reasoning 50, total 8927
EXPECTED = {
    "2026-02-23": Sums(input=18414, cached=9000, output=615, reasoning=159),
    "2026-02-24": Sums(input=2008, cached=6364, output=555, reasoning=50),
}


def as_paths(found: Sequence[str | Path]) -> list[Path]:
    """Discovered files as ``Path`` objects (a parser may list them as strings)."""
    return [Path(item) for item in found]


def env() -> dict[str, str]:
    return {"QWEN_DATA_DIR": str(ROOT)}


def test_the_samples_add_up_to_the_hand_worked_totals(tmp_path: Path) -> None:
    """Each day of the samples equals the sums worked out by hand above."""
    events, _ = scan(PARSER, env(), tmp_path)
    assert by_day(events) == EXPECTED
    assert EXPECTED["2026-02-23"].total == 28029
    assert EXPECTED["2026-02-24"].total == 8927


def test_cached_tokens_are_taken_out_of_the_prompt() -> None:
    """promptTokenCount includes cachedContentTokenCount, so input is their difference."""
    usage = {"promptTokenCount": 15000, "candidatesTokenCount": 10, "cachedContentTokenCount": 9000}
    assert map_usage(usage) == (6000, 9000, 10, 0)


def test_thoughts_are_added_to_candidates_when_reported_beside_them() -> None:
    """Gemini-shaped usage (total = prompt + candidates + thoughts) adds thoughts to output."""
    usage = {
        "promptTokenCount": 100,
        "candidatesTokenCount": 76,
        "thoughtsTokenCount": 39,
        "totalTokenCount": 215,
    }
    assert map_usage(usage) == (100, 0, 115, 39)
    del usage["totalTokenCount"]  # no total: the documented Gemini shape
    assert map_usage(usage) == (100, 0, 115, 39)


def test_thoughts_already_inside_openai_completion_tokens_are_not_added_twice() -> None:
    """Qwen's OpenAI path stores completion_tokens (reasoning included) as candidates."""
    usage = {
        "promptTokenCount": 100,
        "candidatesTokenCount": 76,
        "thoughtsTokenCount": 39,
        "totalTokenCount": 176,
    }
    assert map_usage(usage) == (100, 0, 76, 39)


def test_telemetry_records_repeating_a_response_are_counted_once() -> None:
    """A ui_telemetry api_response carries the same counts as its assistant record: one event."""
    data = (CHATS / f"{SESSION}.jsonl").read_bytes()
    result = PARSER.parse(data, path=str(CHATS / f"{SESSION}.jsonl"), state=None)
    keys = [e.event_key for e in result.events]
    assert keys == [
        "a1000000-0000-4000-8000-000000000001",
        "a2000000-0000-4000-8000-000000000002",
        "a3000000-0000-4000-8000-000000000003",
    ]
    assert data.count(b'"subtype":"ui_telemetry"') == 2


def test_a_branched_session_copy_counts_once(tmp_path: Path) -> None:
    """/branch copies a record with its uuid into a new session: the copies share the key."""
    events, _ = scan(PARSER, env(), tmp_path)
    a1 = [e for e in events if e.event_key.startswith("a1")]
    assert len(a1) == 1
    assert a1[0].output_tokens == 115


def test_bad_and_misplaced_usage_is_reported_not_counted() -> None:
    """Malformed lines, a total without a breakdown and usage on a user record are problems."""
    path = CHATS / f"{SESSION}.jsonl"
    result = PARSER.parse(path.read_bytes(), path=str(path), state=None)
    reasons = sorted((p.line, p.reason.split(" (")[0]) for p in result.problems)
    assert reasons == [
        (7, "malformed JSON"),
        (10, "usageMetadata has a total but no breakdown"),
        (11, "usageMetadata on a record that is not an assistant response"),
    ]


def test_a_partial_last_line_waits_and_line_numbers_carry_on() -> None:
    """An unterminated record is not consumed; the next call numbers its lines after the last."""
    record = {
        "uuid": "a9",
        "sessionId": "s",
        "timestamp": "2026-02-25T00:00:00Z",
        "type": "assistant",
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1},
    }
    line = orjson.dumps(record)
    first = PARSER.parse(b"{}\n" + line[:20], path="x.jsonl", state=None)
    assert (first.events, first.consumed, first.state) == ([], 3, {"line": 1})
    second = PARSER.parse(line + b"\n{bad\n", path="x.jsonl", state=first.state)
    assert [e.input_tokens for e in second.events] == [5]
    assert [p.line for p in second.problems] == [3]


@pytest.mark.parametrize("value", [-1, 1.5, "7", True])
def test_hostile_counts_are_problems(value: Any) -> None:
    """A count that is not a non-negative integer is reported with its field."""
    record = {
        "uuid": "x",
        "type": "assistant",
        "timestamp": "2026-02-25T00:00:00Z",
        "usageMetadata": {"promptTokenCount": value, "candidatesTokenCount": 1},
    }
    result = PARSER.parse(orjson.dumps(record) + b"\n", path="x.jsonl", state=None)
    assert result.events == []
    assert "usageMetadata.promptTokenCount" in result.problems[0].reason


def make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_discovery_reads_the_env_override_qwen_dirs_and_the_default(tmp_path: Path) -> None:
    """QWEN_DATA_DIR wins; else QWEN_RUNTIME_DIR and QWEN_HOME; else ~/.qwen."""
    home = tmp_path / "home"
    default = make(home / ".qwen" / "projects" / "p" / "chats" / "s.jsonl")
    make(home / ".qwen" / "projects" / "p" / "other" / "s.jsonl")  # not a chat file
    runtime = make(tmp_path / "rt" / "projects" / "p" / "chats" / "r.jsonl")
    custom = make(tmp_path / "qh" / "projects" / "p" / "chats" / "q.jsonl")
    assert as_paths(PARSER.discover({}, home)) == [default]
    assert as_paths(PARSER.discover({"QWEN_RUNTIME_DIR": str(tmp_path / "rt")}, home)) == [
        default,
        runtime,
    ]
    both = {"QWEN_RUNTIME_DIR": str(tmp_path / "rt"), "QWEN_HOME": str(tmp_path / "qh")}
    assert as_paths(PARSER.discover(both, home)) == [custom, runtime]
    assert as_paths(PARSER.discover({"QWEN_DATA_DIR": f"{tmp_path / 'qh'},~/.qwen"}, home)) == [
        default,
        custom,
    ]


def test_the_macos_location_is_the_same_dot_qwen(tmp_path: Path) -> None:
    """Qwen Code uses ~/.qwen on macOS too: Library/Application Support is not read."""
    make(
        tmp_path
        / "Library"
        / "Application Support"
        / "qwen"
        / "projects"
        / "p"
        / "chats"
        / "s.jsonl"
    )
    assert as_paths(PARSER.discover({}, tmp_path)) == []


def test_an_absent_root_finds_nothing(tmp_path: Path) -> None:
    """No ~/.qwen: no files and no error."""
    assert as_paths(PARSER.discover({}, tmp_path)) == []
    assert as_paths(PARSER.discover({"QWEN_DATA_DIR": str(tmp_path / "missing")}, tmp_path)) == []


def test_scan_then_report_daily_gives_the_hand_worked_days(tmp_path: Path) -> None:
    """usageledger scan into a temp ledger, then report daily --json, per day."""
    run_env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        **env(),
    }
    runner = CliRunner()
    scanned = runner.invoke(main, ["scan", "--json"], env=run_env, catch_exceptions=False)
    assert scanned.exit_code == 0, scanned.output
    args = ["report", "daily", "--source", "qwen", "--no-scan", "--json"]
    result = runner.invoke(main, args, env=run_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    days = {row["day"]: row for row in orjson.loads(result.stdout)["days"]}
    assert sorted(days) == sorted(EXPECTED)
    for day, sums in EXPECTED.items():
        row = days[day]
        assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (
            sums.input,
            sums.cached,
            sums.output,
        )
        assert (row["reasoning_output_tokens"], row["total_tokens"]) == (sums.reasoning, sums.total)
