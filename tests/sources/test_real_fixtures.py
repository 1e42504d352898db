"""The parsers on the real log fixtures, read in place: the totals their owners or ccusage give.

Each fixture set is parsed whole, duplicates resolved by the source's policy, and the per-day
UTC sums compared with the numbers in ``_real`` (the owners' stated totals, or ccusage 20.0.24
where an owner states none). No fixture may yield a problem: every record in them is one the
parsers know.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import orjson

from usageledger.sources import PARSERS, UsageEvent, parse_whole, resolve_duplicates

from . import _real
from ._real import REAL, Day, needs_real

pytestmark = needs_real


def parse_files(source: str, paths: list[Path]) -> list[UsageEvent]:
    """Parse ``paths`` in order, assert no problems, and resolve duplicates as the ledger does."""
    parser = PARSERS[source]
    events: list[UsageEvent] = []
    for path in paths:
        result = parse_whole(parser, path)
        assert result.problems == [], result.problems
        events += result.events
    return resolve_duplicates(events, parser.duplicate_policy)


def parse_set(source: str, folder: str, pattern: str = "**/*.jsonl") -> list[UsageEvent]:
    """Every file under ``REAL/folder`` matching ``pattern``, in path order."""
    return parse_files(source, sorted((REAL / folder).glob(pattern)))


def discovered(source: str, env: dict[str, str], home: Path) -> list[UsageEvent]:
    """The files the parser discovers itself (its own order), parsed and resolved."""
    return parse_files(source, PARSERS[source].discover(env, home))


def per_day(events: list[UsageEvent]) -> dict[str, Day]:
    """Per UTC day sums in the report's fields."""
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        sums = days[e.timestamp.date().isoformat()]
        sums["input_tokens"] += e.input_tokens
        sums["cached_input_tokens"] += e.cached_input_tokens
        sums["cache_write_tokens"] += e.cache_write_tokens
        sums["output_tokens"] += e.output_tokens
        sums["reasoning_output_tokens"] += e.reasoning_output_tokens
        sums["total_tokens"] += e.total_tokens
    return {d: {f: sums[f] for f in _real.FIELDS} for d, sums in sorted(days.items())}


def test_codex_rollouts_match_the_owners_manifest() -> None:
    """The localpush rollouts give 34,239,227 tokens on 2026-02-23, as their owner states."""
    events = parse_set("codex", "codex/localpush")
    assert per_day(events) == _real.CODEX_LOCALPUSH
    assert per_day(events)["2026-02-23"]["total_tokens"] == 34_239_227


def test_a_codex_fork_counts_the_replayed_parent_once() -> None:
    """The branch file's copy of its parent's token_count is the same event as the parent's."""
    assert per_day(parse_set("codex", "codex/ccusage-branch-history")) == _real.CODEX_BRANCH


def test_codex_counts_are_additive_and_each_event_keeps_its_own_model() -> None:
    """A stated total_tokens that is not input + output is ignored; info.model names the event."""
    events = parse_set("codex", "codex/ccusage-alpha")
    assert per_day(events) == _real.CODEX_ALPHA
    assert {e.timestamp.date().isoformat(): e.model for e in events} == _real.CODEX_ALPHA_MODELS


def test_codex_task_started_lines_change_nothing() -> None:
    """tokscale's rollout without session_meta or reasoning: 13 tokens on each of four days."""
    assert per_day(parse_set("codex", "codex/tokscale")) == _real.CODEX_TOKSCALE


def test_claude_transcripts_match_ccusage_and_collapse_streaming_copies() -> None:
    """Streaming partials and sidechain copies count once; the days match ccusage's."""
    files = sorted((REAL / "claude" / "spotter").glob("**/*.jsonl"))
    messages = [
        orjson.loads(line).get("message")
        for path in files
        for line in path.read_bytes().splitlines()
    ]
    with_usage = sum(1 for m in messages if isinstance(m, dict) and "usage" in m)
    events = parse_files("claude", files)
    assert (with_usage, len(events)) == (
        _real.CLAUDE_SPOTTER_LINES,
        _real.CLAUDE_SPOTTER_RESPONSES,
    )
    assert per_day(events) == _real.CLAUDE_SPOTTER


def test_claude_lines_without_a_type_are_counted() -> None:
    """ccusage's transcripts, whose assistant lines have no top-level type: 1,240 tokens."""
    events = parse_set("claude", "claude/ccusage")
    assert per_day(events) == _real.CLAUDE_CCUSAGE
    assert sum(e.total_tokens for e in events) == 1240


def test_gemini_recordings_give_the_listed_token_vectors(tmp_path: Path) -> None:
    """Re-appended messages, a resumed legacy session and a rewind: each response counts once."""
    env = {"GEMINI_DATA_DIR": str(REAL / "gemini" / "constructed")}
    events = discovered("gemini", env, tmp_path)
    assert per_day(events) == _real.GEMINI


def test_an_opencode_message_file_matches_ccusage(tmp_path: Path) -> None:
    """tokscale's pre-1.2 message file, with cache read and write."""
    env = {"OPENCODE_DATA_DIR": str(REAL / "opencode" / "tokscale")}
    assert per_day(discovered("opencode", env, tmp_path)) == _real.OPENCODE_TOKSCALE


def test_opencode_rows_without_a_role_are_counted_and_the_database_wins(tmp_path: Path) -> None:
    """db-msg-1 and msg-1 have no role (396 tokens); msg-1's stale file loses to its row."""
    env = {"OPENCODE_DATA_DIR": str(REAL / "opencode" / "constructed")}
    events = discovered("opencode", env, tmp_path)
    assert per_day(events) == _real.OPENCODE_CONSTRUCTED
    roleless = {e.event_key: e.total_tokens for e in events if e.event_key in ("db-msg-1", "msg-1")}
    assert roleless == {"db-msg-1": 216, "msg-1": 180}
