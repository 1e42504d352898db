"""The real log fixtures beside the repository, and the totals their owners (or ccusage) give.

The fixtures are real logs beside the repository, at :data:`REAL` (CI puts a read-only copy
there); the tests read them in place and never copy them into the repository. A user's own
clone has none: the tests that need them are skipped with that reason.

The fixtures are of three kinds: real Codex CLI and Claude Code sessions that their owners
published with the text redacted (token counts, timestamps and line order kept), other
projects' test fixtures (ccusage's and tokscale's), and Gemini CLI and Opencode files built to
those tools' published formats. The expected numbers are never our own output. Each is a total
the fixture's owner states beside it (quoted where it is used below), or, where the owner
states none, ccusage 20.0.24's, run once with::

    HOME=<empty dir> <VAR>=<temp dir holding a copy of the fixture> \
        npx --yes ccusage@20.0.24 <source> daily --json --offline --timezone UTC

(``CODEX_HOME`` with the rollouts under ``sessions/``, ``CLAUDE_CONFIG_DIR`` with the
transcripts under ``projects/``, ``GEMINI_DATA_DIR``, ``OPENCODE_DATA_DIR``). ccusage's
``inputTokens`` leaves out cache writes and Codex's cached input; ours holds cache writes
(docs/design.md §3), so a Claude or Opencode day's ``input_tokens`` below is written as ccusage's
``inputTokens + cacheCreationTokens``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"

#: The assistants' folders of the fixtures, one per assistant.
ASSISTANTS = ("claude", "codex", "gemini", "opencode")

needs_real = pytest.mark.skipif(
    not all((REAL / name).is_dir() for name in ASSISTANTS),
    reason=f"the real log fixtures are not beside this clone ({REAL} is missing)",
)

Day = dict[str, int]
#: The count fields of a day, as ``usageledger report --json`` names them.
FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)


def day(
    *,
    input: int,
    cached: int,
    output: int,
    reasoning: int = 0,
    cache_write: int = 0,
    total: int | None = None,
) -> Day:
    """One day's counts in the report's fields; ``total`` (when given) is checked to add up."""
    additive = input + cached + output
    assert total is None or total == additive, (total, additive)
    return {
        "input_tokens": input,
        "cached_input_tokens": cached,
        "cache_write_tokens": cache_write,
        "output_tokens": output,
        "reasoning_output_tokens": reasoning,
        "total_tokens": additive,
    }


# Codex, madshn/localpush rollouts. 2026-02-23 is the owner's own manifest: 34,239,227
# tokens, input 34,082,306 incl. cached 32,389,760, output 156,921. Reasoning, and all of
# 2026-02-24 (the session that crosses midnight UTC), are ccusage's `codex daily`.
CODEX_LOCALPUSH = {
    "2026-02-23": day(
        input=34_082_306 - 32_389_760,
        cached=32_389_760,
        output=156_921,
        reasoning=64_401,
        total=34_239_227,
    ),
    "2026-02-24": day(
        input=1_458_055, cached=14_299_392, output=66_257, reasoning=17_733, total=15_823_704
    ),
}

# Codex, ccusage's branch-history fork: ccusage `codex daily` (the replayed parent counts once).
CODEX_BRANCH = {
    "2026-05-12": day(input=1300, cached=300, output=450, reasoning=40, total=2050),
}

# Codex, ccusage's session-alpha: ccusage `codex daily` counts. Its totalTokens (1200, 3000)
# echo the stated `total_tokens`, which is not input + output; ours is additive (docs/design.md §3).
CODEX_ALPHA = {
    "2026-05-13": day(input=750, cached=250, output=125, reasoning=75),
    "2026-05-14": day(input=2000, cached=500, output=300, reasoning=200),
}
CODEX_ALPHA_MODELS = {"2026-05-13": "gpt-5.2-codex", "2026-05-14": "gpt-5.3-codex"}

# Codex, tokscale's task_started rollout: ccusage `codex daily`, 13 tokens on each of four days.
CODEX_TOKSCALE = {f"2040-01-0{n}": day(input=8, cached=2, output=3, total=13) for n in (1, 2, 3, 4)}

# Claude Code, marot/spotter transcripts: ccusage `claude daily`.
CLAUDE_SPOTTER = {
    "2026-02-10": day(
        input=1852 + 96_811,
        cache_write=96_811,
        cached=984_890,
        output=1839,
        total=1_085_392,
    ),
    "2026-02-12": day(
        input=4513 + 1_297_908,
        cache_write=1_297_908,
        cached=45_163_970,
        output=114_688,
        total=46_581_079,
    ),
}
#: Lines of the spotter transcripts that carry ``message.usage`` (streaming partials and
#: sidechain copies included), and the distinct responses they collapse to.
CLAUDE_SPOTTER_LINES, CLAUDE_SPOTTER_RESPONSES = 1208, 586

# Claude Code, ccusage's transcripts whose lines have no top-level `type`: ccusage `claude
# daily`, 1,240 tokens in all.
CLAUDE_CCUSAGE = {
    "2026-01-09": day(input=300 + 75, cache_write=75, cached=30, output=125, total=530),
    "2026-01-10": day(input=300, cached=40, output=125, total=465),
    "2026-02-03": day(input=130 + 15, cache_write=15, cached=40, output=60, total=245),
}

# Gemini CLI, constructed recordings: the token vectors they were built for, listed as
# input/output/cached/thoughts/total, mapped as docs/sources.md says (input − cached, output +
# thoughts). The 2025-07-25 legacy .json and the .jsonl it was migrated into are one session:
# ccusage `gemini daily` counts it twice (25,710) and agrees with these on every other day.
GEMINI_VECTORS = {
    "2025-07-25": [(12823, 10, 0, 22, 12855)],
    "2025-11-08": [(17162, 859, 8155, 567, 18588), (10323, 16, 0, 218, 10557)],
    "2026-08-20": [
        (8425, 126, 7887, 197, 8748),
        (7641, 15, 3107, 917, 8573),
        (6079, 52, 0, 62, 6193),
        (9310, 402, 8120, 0, 9712),
    ],
    "2026-08-21": [(11199, 47, 0, 0, 11246)],
}
GEMINI = {
    date: day(
        input=sum(i - c for i, _, c, _, _ in vectors),
        cached=sum(c for _, _, c, _, _ in vectors),
        output=sum(o + t for _, o, _, t, _ in vectors),
        reasoning=sum(t for _, _, _, t, _ in vectors),
        total=sum(total for *_, total in vectors),
    )
    for date, vectors in GEMINI_VECTORS.items()
}

# Opencode, tokscale's pre-1.2 message file: ccusage `opencode daily`.
OPENCODE_TOKSCALE = {
    "2024-12-01": day(input=1000 + 100, cache_write=100, cached=200, output=500, total=1800),
}

# Opencode, the constructed >= 1.2 database plus a stale pre-1.2 file: ccusage `opencode daily`
# (20,848 = the assistant row's 20,452 + the role-less rows db-msg-1 and msg-1, 216 + 180 = 396;
# the stale 999/999 file of msg-1 loses to its database row).
OPENCODE_CONSTRUCTED = {
    "2026-01-02": day(input=252 + 1244, cache_write=1244, cached=18_852, output=500, total=20_848),
}
