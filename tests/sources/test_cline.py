"""Cline, Roo Code and Kilo Code task parsers: tokensIn by protocol and date, rewrites, models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from usageledger.cli.root import main
from usageledger.sources import resolve_duplicates
from usageledger.sources.cline import cline_parsers

from ._support import SAMPLES, Sums, by_day, scan

CLINE, ROO, KILO = cline_parsers()
ENV = {"XDG_CONFIG_HOME": str(SAMPLES / "vscode")}


def test_cline_tokens_in_is_the_uncached_remainder(tmp_path: Path) -> None:
    """Cline's tokensIn excludes both caches: input = tokensIn + cacheWrites."""
    events, problems = scan(CLINE, ENV, tmp_path)
    # 10 + 2000 written = 2010 input, 300 out (2310); 5 + 50 = 55 input, 2000 read, 100 out (2155).
    assert by_day(events) == {
        "2025-09-15": Sums(input=2065, cached=2000, output=400, cache_write=2050)
    }
    assert sum(e.total_tokens for e in events) == 4465
    assert {e.model for e in events} == {"claude-sonnet-4-5"}  # the message's own modelInfo
    # The placeholder yields nothing; the unreadable text is reported with its ts.
    assert [p.reason for p in problems] == [
        "message ts 1757930580000: api_req_started text is not JSON"
    ]


def test_roo_tokens_in_depends_on_protocol_and_release_date(tmp_path: Path) -> None:
    """OpenAI protocol and Roo >= 3.29.5 hold the whole prompt; older Anthropic the remainder."""
    events, problems = scan(ROO, ENV, tmp_path)
    assert problems == []
    # 2025-09-15 anthropic (before 3.29.5): 8 + 1000 written = 1008, out 120 (1128).
    # 2025-09-15 openai: 5000 includes 4000 read: input 1000, cached 4000, out 50 (5050).
    # 2025-11-20 anthropic (3.29.5+): 3100 = 100 + 1000 + 2000: input 1100, cached 2000, out 200.
    # 2025-11-20 tokensIn 30 < 500 read, so it is the remainder: input 30, cached 500, out 10.
    assert by_day(events) == {
        "2025-09-15": Sums(input=2008, cached=4000, output=170, cache_write=1000),
        "2025-11-20": Sums(input=1130, cached=2500, output=210, cache_write=1000),
    }
    assert sum(e.total_tokens for e in events) == 6178 + 3840


def test_roo_models_come_from_the_environment_details_before_each_request(tmp_path: Path) -> None:
    """The <model> named last before the next request is the request's model."""
    events, _ = scan(ROO, ENV, tmp_path)
    assert [e.model for e in sorted(events, key=lambda e: e.timestamp)] == [
        "claude-sonnet-4-5",
        "gpt-5",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5",
    ]


def test_kilo_switches_to_the_whole_prompt_later_than_roo(tmp_path: Path) -> None:
    """A 2025-11-05 Anthropic request is the remainder in Kilo (4.119.0 came 2025-11-12)."""
    events, _ = scan(KILO, ENV, tmp_path)
    # 40 + 400 written = 440 input, 1000 read, 60 out.
    assert by_day(events) == {
        "2025-11-05": Sums(input=440, cached=1000, output=60, cache_write=400)
    }
    assert events[0].model == "anthropic/claude-sonnet-4.5"
    assert events[0].session_id == "k1-before-4.119.0"


def ui(*messages: dict[str, Any]) -> bytes:
    return orjson.dumps(list(messages))


def request(ts: int, **info: Any) -> dict[str, Any]:
    return {"ts": ts, "type": "say", "say": "api_req_started", "text": json.dumps(info)}


def test_a_rewritten_file_fills_the_placeholder_under_the_same_key() -> None:
    """The placeholder, then the filled-in request: one event, the last copy."""
    path = "/x/tasks/t1/ui_messages.json"
    before = CLINE.parse(ui(request(1757930400000, request="r")), path=path, state=None)
    after = CLINE.parse(
        ui(request(1757930400000, request="r", tokensIn=3, tokensOut=4)), path=path, state=None
    )
    again = CLINE.parse(
        ui(request(1757930400000, request="r", tokensIn=3, tokensOut=9)), path=path, state=None
    )
    assert before.events == []
    kept = resolve_duplicates(after.events + again.events, CLINE.duplicate_policy)
    assert [(e.event_key, e.output_tokens) for e in kept] == [("t1:1757930400000", 9)]


def test_cline_task_metadata_names_the_model_of_each_request(tmp_path: Path) -> None:
    """task_metadata.json's model_usage: the model tracked last before the next request."""
    task = tmp_path / "tasks" / "t7"
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_bytes(
        orjson.dumps(
            {
                "files_in_context": [],
                "model_usage": [
                    # Cline tracks the model just after the request is announced.
                    {
                        "ts": 1757930400050,
                        "model_id": "claude-sonnet-4-5",
                        "mode": "act",
                        "model_provider_id": "anthropic",
                    },
                    {
                        "ts": 1757930500050,
                        "model_id": "gpt-5",
                        "mode": "act",
                        "model_provider_id": "openai",
                    },
                ],
            }
        )
    )
    # A history naming another model: the structured record wins over the text tag.
    (task / "api_conversation_history.json").write_bytes(
        orjson.dumps(
            [
                {
                    "role": "user",
                    "ts": 1,
                    "content": [
                        {
                            "type": "text",
                            "text": "<environment_details><model>x</model></environment_details>",
                        }
                    ],
                }
            ]
        )
    )
    data = ui(
        request(1757930400000, tokensIn=3, tokensOut=4),
        request(1757930500000, tokensIn=5, tokensOut=6),
    )
    result = CLINE.parse(data, path=str(task / "ui_messages.json"), state=None)
    assert [e.model for e in result.events] == ["claude-sonnet-4-5", "gpt-5"]
    # Unreadable metadata falls back to the history's <model>, then to "unknown".
    (task / "task_metadata.json").write_text("{not json")
    result = CLINE.parse(data, path=str(task / "ui_messages.json"), state=None)
    assert [e.model for e in result.events] == ["x", "x"]
    (task / "api_conversation_history.json").unlink()
    result = CLINE.parse(data, path=str(task / "ui_messages.json"), state=None)
    assert [e.model for e in result.events] == ["unknown", "unknown"]


def test_hostile_files_are_problems_not_crashes() -> None:
    """Not JSON, not a list, bad counts: reported, never raised."""
    assert CLINE.parse(b"{not json", path="t/ui_messages.json", state=None).problems
    assert CLINE.parse(b"{}", path="t/ui_messages.json", state=None).problems
    bad = CLINE.parse(
        ui(request(1, tokensIn=-1), request(2, tokensOut=1.5)), path="t/u.json", state=None
    )
    assert [p.reason for p in bad.problems] == [
        "message ts 1: tokensIn is negative",
        "message ts 2: tokensOut is not an integer",
    ]


def test_discovery_covers_editors_macos_servers_and_cline_data(tmp_path: Path) -> None:
    """Linux and macOS editors, remote servers, Cline's own data dir; an absent home is empty."""
    home = tmp_path / "home"
    where = [
        ".config/Code/User/globalStorage",
        "Library/Application Support/Cursor/User/globalStorage",
        ".vscode-server/data/User/globalStorage",
        ".cursor-server/data/User/globalStorage",
    ]
    for base in where:
        for ext in ("saoudrizwan.claude-dev", "kilocode.kilo-code"):
            path = home / base / ext / "tasks/t1/ui_messages.json"
            path.parent.mkdir(parents=True)
            path.write_text("[]")
    own = home / ".cline/data/tasks/t9/ui_messages.json"
    own.parent.mkdir(parents=True)
    own.write_text("[]")
    assert len(CLINE.discover({}, home)) == 5
    assert len(KILO.discover({}, home)) == 4
    assert ROO.discover({}, home) == []
    assert CLINE.discover({"CLINE_DATA_DIR": str(tmp_path / "none")}, home) != []
    assert own not in CLINE.discover({"CLINE_DATA_DIR": str(tmp_path / "none")}, home)
    assert CLINE.discover({}, tmp_path / "absent") == []


def test_scan_and_daily_report_through_the_cli(tmp_path: Path) -> None:
    """usageledger scan then report daily --json shows the hand-worked totals of all five."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "XDG_CONFIG_HOME": str(SAMPLES / "vscode"),
        "PI_AGENT_DIR": str(SAMPLES / "pi" / "sessions"),
        "OPENCLAW_DIR": f"{SAMPLES / 'openclaw'},{SAMPLES / 'openclaw-legacy'}",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["scan"], env=env, catch_exceptions=False).exit_code == 0
    twice = runner.invoke(main, ["scan"], env=env, catch_exceptions=False)
    assert twice.exit_code == 0
    names = ("pi", "openclaw", "cline", "roo-code", "kilo-code")
    totals = {}
    for name in names:
        out = runner.invoke(
            main, ["report", "daily", "--json", "--source", name], env=env, catch_exceptions=False
        )
        assert out.exit_code == 0, out.output
        totals[name] = orjson.loads(out.stdout)["totals"]["total_tokens"]
    # pi 2700 + 2115; openclaw 116846 + 675; cline 4465; roo 6178 + 3840; kilo 1500.
    assert totals == {
        "pi": 4815,
        "openclaw": 117521,
        "cline": 4465,
        "roo-code": 10018,
        "kilo-code": 1500,
    }
