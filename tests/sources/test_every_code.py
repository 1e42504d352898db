"""Every Code parser: Codex rollouts whose token counts are wrapped in ``payload.msg``."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources.codex import CodexParser
from usageledger.sources.every_code import EveryCodeParser

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, parse_path, scan

PARSER = EveryCodeParser()
U = "0199c000-0000-7000-8000-00000000e001"
NAME = f"rollout-2025-09-15T14-00-00-{U}.jsonl"
LIVE = SAMPLES / f"every-code/sessions/2025/09/15/{NAME}"
ARCHIVED = SAMPLES / f"every-code/archived_sessions/{NAME}"
ENV = {"CODE_HOME": str(SAMPLES / "every-code")}


def as_paths(found: Sequence[str | Path]) -> list[Path]:
    """Discovered files as ``Path`` objects (a parser may list them as strings)."""
    return [Path(item) for item in found]


def usage(i: int, c: int, o: int, r: int) -> dict[str, int]:
    return {
        "input_tokens": i,
        "cached_input_tokens": c,
        "output_tokens": o,
        "reasoning_output_tokens": r,
    }


def wrapped(ts: str, total: Any, last: Any, kind: str = "event_msg") -> dict[str, Any]:
    info = {"total_token_usage": total, "last_token_usage": last}
    msg = {"type": "token_count", "info": info}
    return {"timestamp": ts, "type": kind, "payload": {"id": "1", "msg": msg}}


def test_a_wrapped_token_count_maps_like_codex() -> None:
    """payload.msg.info is Codex's info: input includes cached input, output reasoning."""
    data = jsonl(wrapped("2025-09-15T14:00:05Z", usage(3000, 1000, 400, 100), None))
    (event,) = PARSER.parse(data, path=str(LIVE), state=None).events
    # 3000 - 1000 = 2000 input, 1000 cached, 400 output (100 reasoning inside): 3400.
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (2000, 1000, 400)
    assert (event.reasoning_output_tokens, event.total_tokens, event.source) == (
        100,
        3400,
        "every-code",
    )


def test_sample_totals_are_worked_out_by_hand() -> None:
    """Wrapped, re-emitted, rate-limit-only, plain Codex and `event` lines; an archived copy."""
    events, problems = scan(PARSER, ENV, Path("/nonexistent"))
    # 1st: last 3000/1000/400/100 -> 2000 in, 1000 cached, 400 out. The re-emit (same totals)
    # and the info-null refresh add nothing. 2nd (plain Codex shape): last 2000/800/300/50 ->
    # 1200 in, 800 cached, 300 out. 3rd (`event` item): last 600/0/60/0 -> 600 in, 60 out.
    # The archived copy has the same keys. Sum: 3800 + 1800 + 760 = 6360 = total 5600 + 760.
    assert by_day(events) == {
        "2025-09-15": Sums(input=3800, cached=1800, output=760, reasoning=150),
    }
    assert problems == []
    assert {(e.session_id, e.project, e.model) for e in events} == {
        (U, "/work/every-code-project", "gpt-5-codex")
    }


def test_the_codex_parser_sees_no_wrapped_usage_and_every_code_sees_all() -> None:
    """The wrapping is what Every Code adds: Codex alone would miss two of the three."""
    codex, _ = parse_path(CodexParser(), LIVE)
    every, _ = parse_path(PARSER, LIVE)
    assert len(codex) == 1
    assert len(every) == 3
    assert every[1].event_key == codex[0].event_key  # same content-based key as Codex's


def test_resuming_from_any_cursor_gives_the_same_events_as_one_pass() -> None:
    """The Codex state (line, totals, model, session) carries over between reads."""
    data = LIVE.read_bytes()
    whole = PARSER.parse(data, path=str(LIVE), state=None)
    for cut in range(0, len(data) + 1, 131):
        events, problems, consumed = parse_in_two(PARSER, data, str(LIVE), cut)
        assert (events, problems, consumed) == (whole.events, whole.problems, len(data))


def test_bad_wrapped_counts_are_reported_with_their_line() -> None:
    """A negative wrapped count is a problem on its line, like Codex's."""
    data = b"not json\n" + jsonl(wrapped("2025-09-15T14:00:05Z", usage(-1, 0, 1, 0), None))
    result = PARSER.parse(data, path=str(LIVE), state=None)
    assert result.events == []
    assert [(p.line, p.reason) for p in result.problems] == [
        (1, "malformed JSON (invalid literal, expected 'null' at char 0)"),
        (2, "total_token_usage.input_tokens is negative"),
    ]


def test_discover_reads_code_home_or_the_default(tmp_path: Path) -> None:
    """CODE_HOME (comma-separated) wins; else ~/.code (macOS too); sessions and archives."""
    for root in ("a", "home/.code"):
        (tmp_path / root / "sessions/2025/09/15").mkdir(parents=True)
        (tmp_path / root / "sessions/2025/09/15/rollout-1.jsonl").write_text("")
    (tmp_path / "a/archived_sessions").mkdir()
    (tmp_path / "a/archived_sessions/rollout-1.jsonl").write_text("")
    (tmp_path / "a/sessions/notes.jsonl").write_text("")
    home = tmp_path / "home"
    assert as_paths(PARSER.discover({"CODE_HOME": str(tmp_path / "a")}, home)) == [
        tmp_path / "a/archived_sessions/rollout-1.jsonl",
        tmp_path / "a/sessions/2025/09/15/rollout-1.jsonl",
    ]
    assert as_paths(PARSER.discover({}, home)) == [
        home / ".code/sessions/2025/09/15/rollout-1.jsonl"
    ]
    assert as_paths(PARSER.discover({"CODEX_HOME": str(tmp_path / "a")}, tmp_path / "absent")) == []


def test_report_daily_json_after_scan_has_the_hand_worked_totals(tmp_path: Path) -> None:
    """scan into a temp ledger, then `report daily --json`: 6360 tokens, once."""
    shutil.copytree(SAMPLES / "every-code", tmp_path / "every-code")
    (tmp_path / "home").mkdir()
    env = {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "CODE_HOME": str(tmp_path / "every-code"),
    }
    runner = CliRunner()
    assert runner.invoke(main, ["scan"], env=env, catch_exceptions=False).exit_code == 0
    result = runner.invoke(main, ["report", "daily", "--json", "--source", "every-code"], env=env)
    report = orjson.loads(result.stdout)
    assert [(d["day"], d["total_tokens"]) for d in report["days"]] == [("2025-09-15", 6360)]
