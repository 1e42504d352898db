"""Factory Droid settings-file parser: per-session totals, thinking, session start, discovery."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.sources._support import SAMPLES, Sums, by_day, scan
from usageledger.cli.root import main
from usageledger.sources import resolve_duplicates
from usageledger.sources.droid import DroidParser, map_tokens

PARSER = DroidParser()
SESSION = "0d5a2c1e-7f3b-4b8e-9a61-2f4c8d9e1a01"


def settings(usage: Any, **extra: Any) -> bytes:
    """A ``<session>.settings.json`` as Droid writes it."""
    doc: dict[str, Any] = {
        "model": "claude-sonnet-4-5-20250929",
        "providerLock": "anthropic",
        "providerLockTimestamp": "2025-09-15T09:00:00.000Z",
        "tokenUsage": usage,
    }
    doc.update(extra)
    return orjson.dumps(doc)


def usage(i: int, o: int, cw: int, cr: int, th: int, total: int | None = None) -> dict[str, int]:
    u = {
        "inputTokens": i,
        "outputTokens": o,
        "cacheCreationTokens": cw,
        "cacheReadTokens": cr,
        "thinkingTokens": th,
    }
    if total is not None:
        u["totalTokens"] = total
    return u


def parse(raw: bytes, path: str = f"/s/-home-alice-proj-d/{SESSION}.settings.json") -> Any:
    return PARSER.parse(raw, path=path, state=None)


def test_caches_are_apart_from_input_and_thinking_is_added_to_output() -> None:
    """input + cacheCreation is our input; cacheRead is cached; thinking joins output."""
    (event,) = parse(settings(usage(1200, 800, 3000, 50000, 200, total=55200))).events
    # input 1200 + creation 3000 = 4200; cached 50000; output 800 + thinking 200 = 1000;
    # total 4200 + 50000 + 1000 = 55200 = Droid's totalTokens.
    assert (event.input_tokens, event.cached_input_tokens, event.output_tokens) == (
        4200,
        50000,
        1000,
    )
    assert (event.reasoning_output_tokens, event.cache_write_tokens) == (200, 3000)
    assert event.total_tokens == 55200
    assert (event.event_key, event.session_id, event.model) == (
        SESSION,
        SESSION,
        "claude-sonnet-4-5-20250929",
    )
    assert event.timestamp == datetime(2025, 9, 15, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tokens", "output", "reasoning"),
    [
        # no total: thinking is apart from output (as ccusage and tokscale read it).
        (usage(100, 500, 0, 0, 300), 800, 300),
        # total 900 = 100 + 500 + 300: thinking apart -> 500 + 300.
        (usage(100, 500, 0, 0, 300, total=900), 800, 300),
        # total 600 = 100 + 500: thinking already inside output.
        (usage(100, 500, 0, 0, 300, total=600), 500, 300),
    ],
)
def test_thinking_counts_in_output_exactly_once(
    tokens: dict[str, int], output: int, reasoning: int
) -> None:
    """A stored totalTokens tells thinking inside output from thinking beside it."""
    (event,) = parse(settings(tokens)).events
    assert (event.output_tokens, event.reasoning_output_tokens) == (output, reasoning)


def test_map_tokens_rejects_totals_that_do_not_add_up() -> None:
    """A total beyond its parts, or thinking inside a smaller output, is a problem."""
    for tokens, reason in (
        (usage(1, 2, 0, 0, 0, total=100), "totalTokens exceeds"),
        ({"totalTokens": 456}, "totalTokens exceeds"),
        (usage(1, 2, 0, 0, 5, total=3), "thinkingTokens exceeds"),
    ):
        result = parse(settings(tokens))
        assert result.events == []
        assert reason in result.problems[0].reason
    assert map_tokens(usage(1, 2, 3, 4, 5)) == (4, 4, 7, 5, 3)


def test_the_start_falls_back_to_the_transcript_then_is_reported(tmp_path: Path) -> None:
    """Without providerLockTimestamp the first transcript timestamp dates the session."""
    path = tmp_path / f"{SESSION}.settings.json"
    raw = orjson.loads(settings(usage(10, 5, 0, 0, 0)))
    del raw["providerLockTimestamp"]
    result = parse(orjson.dumps(raw), path=str(path))
    assert result.events == []
    assert "no session start" in result.problems[0].reason
    (tmp_path / f"{SESSION}.jsonl").write_text(
        '{"type":"session_start","id":"x","title":"t","cwd":"/p"}\n'
        '{"type":"message","id":"m1","timestamp":"2025-09-16T23:50:00.000Z"}\n'
    )
    (event,) = parse(orjson.dumps(raw), path=str(path)).events
    assert event.timestamp == datetime(2025, 9, 16, 23, 50, tzinfo=UTC)


def test_a_first_message_larger_than_64_kib_still_dates_the_session(tmp_path: Path) -> None:
    """The transcript's first message line is read whole, however long its pasted text."""
    path = tmp_path / f"{SESSION}.settings.json"
    raw = orjson.loads(settings(usage(10, 5, 0, 0, 0)))
    del raw["providerLockTimestamp"]
    paste = "x" * 200_000  # a pasted file: the line is about 200 KB
    (tmp_path / f"{SESSION}.jsonl").write_text(
        '{"type":"session_start","id":"x","title":"t","cwd":"/p"}\n'
        "not json\n"
        '{"type":"message","id":"m1","timestamp":"2025-09-16T23:50:00.000Z",'
        f'"message":{{"role":"user","content":[{{"type":"text","text":"{paste}"}}]}}}}\n'
    )
    (event,) = parse(orjson.dumps(raw), path=str(path)).events
    assert event.timestamp == datetime(2025, 9, 16, 23, 50, tzinfo=UTC)
    assert paste not in repr(event)


def test_the_start_is_the_earlier_of_the_lock_and_the_first_message(tmp_path: Path) -> None:
    """A provider locked again later (a model switch) does not move the session's start."""
    path = tmp_path / f"{SESSION}.settings.json"
    relocked = settings(usage(10, 5, 0, 0, 0), providerLockTimestamp="2025-09-18T08:00:00Z")
    (tmp_path / f"{SESSION}.jsonl").write_text(
        '{"type":"session_start","id":"x","title":"t","cwd":"/p"}\n'
        '{"type":"message","id":"m1","timestamp":"2025-09-16T23:50:00.000Z"}\n'
    )
    (event,) = parse(relocked, path=str(path)).events
    assert event.timestamp == datetime(2025, 9, 16, 23, 50, tzinfo=UTC)
    # A lock earlier than the first message (the usual order is message, then lock) wins.
    early = settings(usage(10, 5, 0, 0, 0), providerLockTimestamp="2025-09-16T23:49:00Z")
    (event,) = parse(early, path=str(path)).events
    assert event.timestamp == datetime(2025, 9, 16, 23, 49, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"tokenUsage": {"inputTokens": 1', "malformed JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[]", "settings file is not an object"),
        (settings([1, 2]), "tokenUsage is not an object"),
        (settings(usage(-1, 1, 0, 0, 0)), "inputTokens is negative"),
        (settings(usage(1, 1, 0, 0, 0), providerLockTimestamp="soon"), "not ISO-8601"),
        (settings({"inputTokens": 1.5}), "not an integer"),
    ],
)
def test_bad_files_are_problems(raw: bytes, reason: str) -> None:
    """Truncated, undecodable or inconsistent files are reported with their path."""
    result = parse(raw, path="/s/x.settings.json")
    assert result.events == []
    assert [(p.path, p.line) for p in result.problems] == [("/s/x.settings.json", None)]
    assert reason in result.problems[0].reason
    assert result.consumed == len(raw)


def test_files_without_usage_yield_nothing() -> None:
    """No tokenUsage (a new session) or all-zero usage is not an event and not a problem."""
    assert parse(b'{"model": "gpt-5"}').events == []
    assert parse(b'{"model": "gpt-5"}').problems == []
    assert parse(settings(usage(0, 0, 0, 0, 0))).events == []
    raw = orjson.loads(settings(usage(3, 4, 0, 0, 0)))
    del raw["model"]
    (event,) = parse(orjson.dumps(raw)).events
    assert event.model == "unknown"


def test_a_grown_session_replaces_its_earlier_total() -> None:
    """Policy "last": the file read again after Droid rewrote it keeps only the new total."""
    early = parse(settings(usage(100, 10, 0, 0, 0))).events
    late = parse(settings(usage(400, 90, 0, 0, 0))).events
    (kept,) = resolve_duplicates(early + late, PARSER.duplicate_policy)
    assert (kept.input_tokens, kept.output_tokens) == (400, 90)


def test_sample_totals_per_day_are_worked_out_by_hand() -> None:
    """The committed samples sum to the hand-computed totals per UTC day."""
    env = {"DROID_SESSIONS_DIR": str(SAMPLES / "droid" / "sessions")}
    events, problems = scan(PARSER, env, Path("/nonexistent"))
    days = by_day(events)
    # 2025-09-15: 0d5a2c1e: in 1200+3000=4200, cached 50000, out 800+200=1000, write 3000.
    assert days["2025-09-15"] == Sums(4200, 50000, 1000, 200, 3000)
    # 2025-09-16:
    #   5b7e9f10 (no lock timestamp; transcript starts 2025-09-16T23:50Z, ends 09-17):
    #            in 73400, cached 3518842, out 47485
    #   9c8b7a65 (two identical copies, counted once): total 600 = 100 + 500, so thinking
    #            300 is inside output 500: in 100, out 500, reasoning 300
    #   = in 73500, cached 3518842, out 47985, reasoning 300
    assert days["2025-09-16"] == Sums(73500, 3518842, 47985, 300)
    assert set(days) == {"2025-09-15", "2025-09-16"}
    assert sorted(Path(p.path).name for p in problems) == [
        "2a3b4c5d-0000-4000-8000-000000000005.settings.json",
        "3b4c5d6e-0000-4000-8000-000000000006.settings.json",
    ]


def test_discover_reads_the_sessions_dir_list_then_the_default(tmp_path: Path) -> None:
    """DROID_SESSIONS_DIR (comma-separated) wins; else ~/.factory/sessions (macOS too)."""
    default = tmp_path / ".factory/sessions/-home-alice-p/a.settings.json"
    listed = tmp_path / "elsewhere/-x/b.settings.json"
    for path in (default, listed):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"{}")
    (default.parent / "a.jsonl").write_bytes(b"")
    (tmp_path / ".factory/settings.json").write_bytes(b"{}")  # Droid's own settings
    assert PARSER.discover({}, tmp_path) == [default]
    env = {"DROID_SESSIONS_DIR": f"{tmp_path / 'elsewhere'}, {tmp_path / 'missing'}"}
    assert PARSER.discover(env, tmp_path) == [listed]
    assert PARSER.discover({}, tmp_path / "nobody") == []
    assert PARSER.discover({"DROID_SESSIONS_DIR": "~/elsewhere"}, tmp_path) == [listed]


def test_it_keeps_no_prompt_or_title_text(tmp_path: Path) -> None:
    """Events carry counts and metadata only, never the transcript's title or messages."""
    root = shutil.copytree(SAMPLES / "droid" / "sessions", tmp_path / "sessions")
    events, _ = scan(PARSER, {"DROID_SESSIONS_DIR": str(root)}, tmp_path)
    assert "flaky" not in repr(events)
    assert "Port the parser" not in repr(events)


def test_scan_then_growth_then_scan_holds_the_new_total_once(tmp_path: Path) -> None:
    """End to end: the ledger replaces a grown session's total instead of adding it again."""
    root = shutil.copytree(SAMPLES / "droid" / "sessions", tmp_path / "sessions")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
        "DROID_SESSIONS_DIR": str(root),
    }

    def totals() -> dict[str, int]:
        result = CliRunner().invoke(
            main, ["report", "daily", "--json", "--source", "droid"], env=env
        )
        assert result.exit_code == 0, result.output
        return {d["day"]: d["total_tokens"] for d in orjson.loads(result.stdout)["days"]}

    # 2025-09-15: 4200 + 50000 + 1000 = 55200.
    # 2025-09-16: 73400 + 3518842 + 47485 = 3639727, plus 100 + 500 = 600 -> 3640327.
    assert totals() == {"2025-09-15": 55200, "2025-09-16": 3640327}
    path = root / "-home-alice-proj-d" / f"{SESSION}.settings.json"
    path.write_bytes(settings(usage(1500, 900, 3000, 60000, 250, total=65650)))
    # The session grew to 1500 + 3000 + 60000 + 900 + 250 = 65650 and is dated at its start.
    assert totals() == {"2025-09-15": 65650, "2025-09-16": 3640327}
