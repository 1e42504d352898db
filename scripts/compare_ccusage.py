"""Compare per-day token totals from our parsers with the peer tool ccusage.

Runs ``npx --yes ccusage@20.0.24 daily --json --by-agent --offline --timezone UTC`` against
a directory of sample logs (by default tests/sources/samples), computes the same per-day,
per-source totals with ``usageledger.sources`` (duplicates resolved by each parser's
policy), and prints every difference. ccusage is pointed at the samples through
``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``GEMINI_DATA_DIR`` and ``OPENCODE_DATA_DIR`` and
given an empty temporary ``HOME``, so neither tool reads the real home directory.

Example::

    .venv/bin/python scripts/compare_ccusage.py
    .venv/bin/python scripts/compare_ccusage.py --ccusage-json saved.json  # no npx run

Field mapping used for the comparison (ours -> ccusage):
    inputTokens         = input_tokens - cache_write_tokens
    cacheCreationTokens = cache_write_tokens
    cacheReadTokens     = cached_input_tokens
    outputTokens        = output_tokens, less reasoning for gemini and opencode
                          (ccusage keeps their reasoning out of outputTokens)
    totalTokens         = total_tokens
Exit status: 0 when the run completed (differences are reported, not failures) unless
``--strict`` is given, 2 when ccusage could not be run or its output not read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from usageledger.sources import (  # noqa: E402
    PARSERS,
    Problem,
    UsageEvent,
    parse_whole,
    resolve_duplicates,
)

CCUSAGE = "ccusage@20.0.24"
FIELDS = ("inputTokens", "cacheCreationTokens", "cacheReadTokens", "outputTokens", "totalTokens")
#: Sources whose reasoning ccusage counts in totalTokens but not in outputTokens.
REASONING_APART = {"gemini", "opencode"}

Totals = dict[tuple[str, str], dict[str, int]]


def sample_env(samples: Path) -> dict[str, str]:
    """Return the directory variables that point both tools at ``samples``."""
    opencode = sorted(str(p) for p in samples.glob("opencode*") if p.is_dir())
    return {
        "CODEX_HOME": str(samples / "codex"),
        "CLAUDE_CONFIG_DIR": str(samples / "claude"),
        "GEMINI_DATA_DIR": str(samples / "gemini" / "tmp"),
        "OPENCODE_DATA_DIR": ",".join(opencode),
    }


def our_totals(env: Mapping[str, str], home: Path) -> tuple[Totals, list[Problem]]:
    """Parse every discovered file with each parser; sum per (UTC day, source)."""
    totals: Totals = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    problems: list[Problem] = []
    for name, parser in PARSERS.items():
        events: list[UsageEvent] = []
        for path in parser.discover(env, home):
            result = parse_whole(parser, path)
            events.extend(result.events)
            problems.extend(result.problems)
        for event in resolve_duplicates(events, parser.duplicate_policy):
            row = totals[(event.timestamp.date().isoformat(), name)]
            output = event.output_tokens
            if name in REASONING_APART:
                output -= event.reasoning_output_tokens
            row["inputTokens"] += event.input_tokens - event.cache_write_tokens
            row["cacheCreationTokens"] += event.cache_write_tokens
            row["cacheReadTokens"] += event.cached_input_tokens
            row["outputTokens"] += output
            row["totalTokens"] += event.total_tokens
    return dict(totals), problems


def run_ccusage(spec: str, env: Mapping[str, str], home: Path) -> dict[str, Any]:
    """Run ccusage through npx with only the sample directories visible; return its JSON."""
    npx = shutil.which("npx")
    if npx is None:
        raise RuntimeError("npx not found on PATH")
    command = [npx, "--yes", spec, "daily", "--json", "--by-agent", "--offline"]
    command += ["--timezone", "UTC"]
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LOG_LEVEL": "0",
        "NO_COLOR": "1",
        # Keep npm's download cache where it was; only the logs' HOME is replaced.
        "NPM_CONFIG_CACHE": os.environ.get("NPM_CONFIG_CACHE", str(Path.home() / ".npm")),
        **env,
    }
    print("$", " ".join(f"{k}={v}" for k, v in env.items()), " ".join(command[1:]))
    done = subprocess.run(
        command, env=child_env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ccusage exited {done.returncode}: {done.stderr.strip()[:500]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def their_totals(report: Mapping[str, Any]) -> Totals:
    """Read per-(day, agent) rows from ``ccusage daily --json --by-agent`` output."""
    totals: Totals = {}
    for day in report.get("daily", []):
        for agent in day.get("agents", []):
            row = {field: int(agent.get(field, 0)) for field in FIELDS}
            totals[(str(day["period"]), str(agent["agent"]))] = row
    return totals


def compare(ours: Totals, theirs: Totals) -> list[str]:
    """Return one printable line per (day, source, field) where the two tools differ."""
    lines: list[str] = []
    for day, source in sorted(set(ours) | set(theirs)):
        mine = ours.get((day, source), dict.fromkeys(FIELDS, 0))
        peer = theirs.get((day, source), dict.fromkeys(FIELDS, 0))
        for field in FIELDS:
            if mine[field] != peer[field]:
                delta = mine[field] - peer[field]
                lines.append(
                    f"{day}  {source:<9} {field:<20} ours={mine[field]:>8} "
                    f"ccusage={peer[field]:>8}  ours-ccusage={delta:+d}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print totals, differences and our parse problems."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=REPO / "tests" / "sources" / "samples")
    parser.add_argument("--ccusage", default=CCUSAGE, help="npm package spec to run")
    parser.add_argument("--ccusage-json", type=Path, help="read a saved ccusage report instead")
    parser.add_argument("--strict", action="store_true", help="exit 1 when totals differ")
    args = parser.parse_args(argv)

    env = sample_env(args.samples.resolve())
    with tempfile.TemporaryDirectory(prefix="compare-ccusage-home-") as tmp:
        home = Path(tmp)
        ours, problems = our_totals(env, home)
        try:
            if args.ccusage_json:
                report = json.loads(args.ccusage_json.read_text())
            else:
                report = run_ccusage(args.ccusage, env, home)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"could not get a ccusage report: {exc}", file=sys.stderr)
            return 2
    theirs = their_totals(report)

    print("\nper-day totalTokens (UTC)")
    for day, source in sorted(set(ours) | set(theirs)):
        mine = ours.get((day, source), {}).get("totalTokens", 0)
        peer = theirs.get((day, source), {}).get("totalTokens", 0)
        mark = "" if mine == peer else "   <- differs"
        print(f"  {day}  {source:<9} ours={mine:>8}  ccusage={peer:>8}{mark}")
    differences = compare(ours, theirs)
    print(f"\n{len(differences)} field differences")
    for line in differences:
        print("  " + line)
    print(f"\n{len(problems)} problems reported by our parsers")
    for problem in problems:
        print(f"  {Path(problem.path).name}:{problem.line}: {problem.reason}")
    return 1 if args.strict and differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
