"""Costs the logs record themselves: read exactly, stored per event, reported by ``--cost``.

The samples under tests/sources/samples/logged-cost mirror the real shapes: Claude Code's
top-level ``costUSD`` (older versions), pi's ``usage.cost`` object, Copilot CLI's per-model
``totalNanoAiu``. Prices used by hand below (the shipped table, per million tokens):
claude-sonnet-4-20250514 and claude-sonnet-4-5 both $3 input, $15 output.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.sources._support import SAMPLES, parse_path
from tests.tracker.conftest import Clock
from tests.tracker.support import run_scan
from usageledger.ledger.pricing import PriceBook
from usageledger.sources._cost import PICO_PER_NANO_AIU, logged_pico, logged_usd
from usageledger.sources.claude import ClaudeParser
from usageledger.sources.copilot import CopilotParser
from usageledger.sources.openclaw import OpenClawParser
from usageledger.sources.pi import PiParser
from usageledger.tracker.ledger import LocalLedger
from usageledger.tracker.report import KINDS, ReportRequest, build_report

LOGGED = SAMPLES / "logged-cost"
CLAUDE_FILE = LOGGED / "claude" / "projects" / "-home-u-ledger" / "s-logged.jsonl"
PI_FILE = next((LOGGED / "pi" / "sessions").rglob("*.jsonl"))
COPILOT_FILE = next((LOGGED / "copilot" / "session-state").rglob("events.jsonl"))
BOOK = PriceBook.load_default()
PICO = 10**12


# --- reading a cost -------------------------------------------------------------------------


def test_a_logged_usd_value_becomes_exact_pico_dollars() -> None:
    """The shortest decimal of the number, rounded half-even to whole pico-dollars."""
    assert logged_usd(0.12) == 120_000_000_000
    assert logged_usd(7) == 7 * PICO
    # JavaScript's 0.003 + 0.0015 is written 0.0045000000000000005: the noise is below 1e-12.
    assert logged_usd(0.0045000000000000005) == 4_500_000_000
    # 0.333333333333333 USD = 333,333,333,333.333 pico-dollars -> 333,333,333,333.
    assert logged_usd(0.333333333333333) == 333_333_333_333
    # Half a pico-dollar rounds to the even neighbour: 2.5e-12 -> 2, 3.5e-12 -> 4.
    assert logged_usd(2.5e-12) == 2
    assert logged_usd(3.5e-12) == 4


@pytest.mark.parametrize(
    "value",
    ["0.5", "NaN", None, True, -0.5, -1, 0, 0.0, 1e300, 1001, math.nan, math.inf, [1], {"a": 1}],
)
def test_a_value_that_cannot_be_a_cost_is_ignored(value: Any) -> None:
    """Strings, booleans, negatives, zero, non-finite and absurd amounts are not costs."""
    assert logged_usd(value) is None


def test_copilot_nano_aiu_is_ten_pico_dollars() -> None:
    """1 AI credit = $0.01, so 1e-9 credit = 1e-11 USD = 10 pico-dollars."""
    assert PICO_PER_NANO_AIU == 10
    # 1,510,581,560,000 nano-credits = 1,510.58156 credits = $15.1058156.
    assert logged_pico(1_510_581_560_000, PICO_PER_NANO_AIU) == 15_105_815_600_000


# --- parsers ---------------------------------------------------------------------------------


def test_claude_costusd_is_kept_and_a_malformed_one_ignored_with_the_event_counted() -> None:
    """costUSD 0.01 and 0.333333333333333 are kept; "0.5", -0.5 and 1e300 are not costs."""
    events, problems = parse_path(ClaudeParser(), CLAUDE_FILE)
    assert problems == []
    by_id = {e.event_key.split(":")[0]: e for e in events}
    assert len(by_id) == 7  # every response counts, whatever its costUSD
    assert by_id["msg-c1"].logged_cost_picousd == 10_000_000_000  # $0.01
    assert by_id["msg-c6"].logged_cost_picousd == 333_333_333_333
    for key in ("msg-c2", "msg-c3", "msg-c4", "msg-c5", "msg-c7"):
        assert by_id[key].logged_cost_picousd is None, key
    assert by_id["msg-c3"].input_tokens == 200  # the string cost's event still has its tokens


def test_pi_cost_total_is_kept_and_a_string_total_ignored() -> None:
    """pi's usage.cost.total; a "NaN" total leaves the response counted without a cost."""
    events, problems = parse_path(PiParser(), PI_FILE)
    assert problems == []
    assert sorted((e.total_tokens, e.logged_cost_picousd) for e in events) == [
        (11, None),
        (1100, 4_500_000_000),  # 0.0045000000000000005 -> $0.0045
    ]


def test_openclaw_reads_the_same_cost_object() -> None:
    """OpenClaw writes pi's format: cost.total is the logged cost; a missing cost is None."""
    lines = [
        {"type": "session", "id": "claw-1", "cwd": "/home/u"},
        {
            "type": "message",
            "timestamp": "2026-01-10T12:00:00.000Z",
            "message": {
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "usage": {"input": 5, "output": 2, "cost": {"total": 0.000045}},
                "timestamp": 1768046400000,
            },
        },
        {
            "type": "message",
            "timestamp": "2026-01-10T12:01:00.000Z",
            "message": {
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "usage": {"input": 6, "output": 2},
                "timestamp": 1768046460000,
            },
        },
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    result = OpenClawParser().parse(data, path="agents/main/sessions/claw-1.jsonl", state=None)
    assert [e.logged_cost_picousd for e in result.events] == [45_000_000, None]


def test_copilot_total_nano_aiu_per_model_is_the_logged_cost() -> None:
    """modelMetrics[model].totalNanoAiu, not the shutdown's total nor requests.cost."""
    events, problems = parse_path(CopilotParser(), COPILOT_FILE)
    assert problems == []
    assert {e.model: e.logged_cost_picousd for e in events} == {
        "claude-opus-5.5": 15_105_815_600_000,  # 1,510,581,560,000 nano-credits x 10
        "gpt-6-mini": 20_000_000_000,  # 2,000,000,000 x 10 = $0.02
        "gpt-5-mini": None,  # "12" is a string
    }


# --- reports ---------------------------------------------------------------------------------


@pytest.fixture
def scanned(ledger: LocalLedger, tmp_path: Path, empty_home: Path, clock: Clock) -> LocalLedger:
    """A ledger holding the Claude and pi logged-cost samples."""
    root = tmp_path / "logged"
    shutil.copytree(LOGGED, root)
    env = {"CLAUDE_CONFIG_DIR": str(root / "claude"), "PI_AGENT_DIR": str(root / "pi" / "sessions")}
    run_scan(ledger, env, empty_home, clock)
    return ledger


def make(ledger: LocalLedger, kind: str, cost: str) -> dict[str, Any]:
    """A report of ``kind`` under cost mode ``cost``, in UTC."""
    request = ReportRequest(kind=kind, time_zone="UTC", cost=cost)
    return ledger.db.read(lambda conn: build_report(conn, ledger, request, BOOK))


# Hand-worked costs of the samples, $3/M input and $15/M output for both models:
#   2026-01-09  c1 1000/100 logged $0.01 (priced 0.003 + 0.0015 = $0.0045)
#               c2 100/10 no cost            0.0003 + 0.00015 = $0.00045
#               c3 200/20 "0.5"  (ignored)   0.0006 + 0.0003  = $0.0009
#               c4 300/30 -0.5   (ignored)   0.0009 + 0.00045 = $0.00135
#               c5 400/40 1e300  (ignored)   0.0012 + 0.0006  = $0.0018
#   2026-01-10  c6 2000/200 logged $0.333333333333 (priced 0.006 + 0.003 = $0.009)
#               p1 1000/100 logged $0.0045 (pi)    (priced $0.0045)
#               p2 10/1 "NaN" (ignored)      0.00003 + 0.000015 = $0.000045
#   2026-01-11  c7 1000/0 no cost            $0.003
CALCULATED = {"2026-01-09": "0.009000", "2026-01-10": "0.013545", "2026-01-11": "0.003000"}
# logged: 01-09 $0.01; 01-10 0.333333333333 + 0.0045 = $0.337833333333; 01-11 nothing logged.
LOGGED_COSTS = {"2026-01-09": "0.010000", "2026-01-10": "0.337833", "2026-01-11": "0.000000"}
# auto: 01-09 0.01 + (0.00045 + 0.0009 + 0.00135 + 0.0018 = 0.0045) = $0.0145;
#       01-10 0.337833333333 + 0.000045 = $0.337878333333; 01-11 $0.003 priced.
AUTO = {"2026-01-09": "0.014500", "2026-01-10": "0.337878", "2026-01-11": "0.003000"}


def test_daily_under_each_cost_mode_matches_the_hand_worked_costs(scanned: LocalLedger) -> None:
    """calculate prices every token; logged shows only logged costs; auto mixes per event."""
    for mode, expected in (("calculate", CALCULATED), ("logged", LOGGED_COSTS), ("auto", AUTO)):
        report = make(scanned, "daily", mode)
        assert report["cost"] == mode
        assert {d["day"]: d["cost_usd"] for d in report["days"]} == expected, mode
    # Totals, exact before rounding: calculate 0.009 + 0.013545 + 0.003 = $0.025545;
    # logged 0.01 + 0.337833333333 = $0.347833333333; auto 0.0145 + 0.337878333333 + 0.003.
    assert make(scanned, "daily", "calculate")["totals"]["cost_usd"] == "0.025545"
    assert make(scanned, "daily", "logged")["totals"]["cost_usd"] == "0.347833"
    assert make(scanned, "daily", "auto")["totals"]["cost_usd"] == "0.355378"


def test_auto_rows_say_which_cost_they_used(scanned: LocalLedger) -> None:
    """A mixed day is "mixed", a day without logged costs "calculated", a wholly logged row
    "logged"; both numbers come with the row."""
    days = {d["day"]: d for d in make(scanned, "daily", "auto")["days"]}
    mixed = days["2026-01-09"]
    assert mixed["cost_mode"] == "mixed"
    assert mixed["logged_cost_usd"] == "0.010000"
    assert mixed["calculated_cost_usd"] == "0.009000"
    assert mixed["logged_tokens"] == 1100  # c1 only
    plain = days["2026-01-11"]
    assert (plain["cost_mode"], plain["logged_cost_usd"], plain["logged_tokens"]) == (
        "calculated",
        None,
        0,
    )
    breakdown = {(m["source"], m["model"]): m for m in days["2026-01-10"]["models"]}
    claude = breakdown[("claude", "claude-sonnet-4-20250514")]
    assert (claude["cost_mode"], claude["cost_usd"]) == ("logged", "0.333333")
    pi = breakdown[("pi", "claude-sonnet-4-5")]
    # p1's logged $0.0045 + p2 priced $0.000045 = $0.004545.
    assert (pi["cost_mode"], pi["cost_usd"]) == ("mixed", "0.004545")


def test_calculate_rows_have_no_logged_fields(scanned: LocalLedger) -> None:
    """Calculating never reads logged costs; every row says so."""
    report = make(scanned, "daily", "calculate")
    assert {d["cost_mode"] for d in report["days"]} == {"calculated"}
    assert "logged_cost_usd" not in report["totals"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "hourly"] + ["hourly"])
def test_every_kind_agrees_on_the_totals_under_each_mode(scanned: LocalLedger, kind: str) -> None:
    """Session, projects, models, weekly, monthly, hourly: the same totals as daily."""
    for mode, total in (("calculate", "0.025545"), ("logged", "0.347833"), ("auto", "0.355378")):
        report = make(scanned, kind, mode)
        assert report["totals"]["cost_usd"] == total, (kind, mode)


def test_a_mixed_session_prices_only_its_events_without_a_cost(scanned: LocalLedger) -> None:
    """The pi session: p1 logged $0.0045, p2 priced $0.000045."""
    sessions = {s["session_id"]: s for s in make(scanned, "session", "auto")["sessions"]}
    pi = sessions["cccccccc-3333-4333-8333-333333333333"]
    assert (pi["cost_usd"], pi["cost_mode"], pi["logged_tokens"]) == ("0.004545", "mixed", 1100)
    claude = sessions["s-logged"]
    # auto: 0.01 + 0.0045 (c2..c5) + 0.333333333333 (c6) + 0.003 (c7) = $0.350833333333.
    assert claude["cost_usd"] == "0.350833"
    assert claude["calculated_cost_usd"] == "0.021000"  # 0.009 + 0.009 + 0.003


# --- the CLI ---------------------------------------------------------------------------------


def test_report_json_cost_flag_through_the_cli(tmp_path: Path) -> None:
    """`report daily --json --cost …` scans the logs and reports the hand-worked totals;
    auto is the default; an unknown mode is a usage error."""
    from click.testing import CliRunner

    from usageledger.cli.root import main

    root = tmp_path / "logged"
    shutil.copytree(LOGGED, root)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "CLAUDE_CONFIG_DIR": str(root / "claude"),
        "PI_AGENT_DIR": str(root / "pi" / "sessions"),
    }

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["report", *args], env=env, catch_exceptions=False)

    totals = {}
    for mode in ("calculate", "logged", "auto"):
        result = run("daily", "--json", "--cost", mode)
        assert result.exit_code == 0, result.output
        report = orjson.loads(result.stdout)
        assert report["cost"] == mode
        totals[mode] = report["totals"]["cost_usd"]
    assert totals == {"calculate": "0.025545", "logged": "0.347833", "auto": "0.355378"}
    default = orjson.loads(run("daily", "--json", "--no-scan").stdout)
    assert (default["cost"], default["totals"]["cost_usd"]) == ("auto", "0.355378")
    assert run("daily", "--cost", "display").exit_code == 2
