"""Compare per-day token totals from our parsers with the peer tool ccusage, source by source.

For every source in ``usageledger.sources.PARSERS`` that ccusage 20.0.24 also reads, runs
``npx --yes ccusage@20.0.24 <source> daily --json --offline --timezone UTC`` on the committed
sample logs (by default tests/sources/samples), computes the same per-day totals with our
parsers (duplicates resolved by each parser's policy), and prints every difference per
source, day and field. Both tools read a temporary copy of the samples and get an empty
temporary ``HOME`` and only the source's own directory variables (``bench.samples``, which
also builds the SQLite samples kept as SQL text, ``<source>/schema.sql`` + ``X.sql``, into
``X.db`` in the copy), so neither reads the real home directory. Sources that ccusage 20.0.24
has no command for are listed as "not compared", with our totals.

Example::

    .venv/bin/python scripts/compare_ccusage.py
    .venv/bin/python scripts/compare_ccusage.py --save-ccusage-json saved.json
    .venv/bin/python scripts/compare_ccusage.py --ccusage-json saved.json  # no npx run
    .venv/bin/python scripts/compare_ccusage.py --source kimi --source droid  # only these

A saved document maps each source name to that source's ``ccusage <source> daily --json``
output (``{"codex": {"daily": [{"date": …, "inputTokens": …}, …]}, …}``).

Field mapping used for the comparison (ours -> ccusage), the same for every source unless
its ``SOURCES`` row says otherwise:
    inputTokens           = input_tokens - cache_write_tokens (ccusage keeps cache writes
                            out of input for every source)
    cacheCreationTokens   = cache_write_tokens
    cacheReadTokens       = cached_input_tokens
    outputTokens          = output_tokens, less reasoning_output_tokens for the sources whose
                            row has reasoning_apart=True: gemini, opencode, kilo, qwen, droid,
                            goose. ccusage keeps their reasoning (Gemini/Qwen ``thoughts``,
                            opencode/Kilo ``reasoning``, Droid ``thinkingTokens``, Goose's
                            ``total - input - output``) out of outputTokens and adds it to
                            totalTokens only. Where the log shows the reasoning already inside
                            the output (a stored total), ccusage still adds it: that shows as
                            a difference in outputTokens and totalTokens, as it should.
                            Hermes's ``output_tokens`` already contains its reasoning and
                            ccusage reports it unchanged (then adds reasoning to the total):
                            no subtraction there.
    reasoningOutputTokens = reasoning_output_tokens, compared only for codex (the one source
                            whose ccusage rows carry it; it stays inside outputTokens there)
    totalTokens           = total_tokens
Exit status: 0 when the run completed (differences are reported, not failures) unless
``--strict`` is given (then 1 when any field differs), 2 when ccusage could not be run or
its output not read.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from bench.samples import SAMPLES, build_samples, source_env  # noqa: E402
from usageledger.sources import (  # noqa: E402
    PARSERS,
    Problem,
    UsageEvent,
    parse_whole,
    resolve_duplicates,
)

CCUSAGE = "ccusage@20.0.24"
FIELDS = (
    "inputTokens",
    "cacheCreationTokens",
    "cacheReadTokens",
    "outputTokens",
    "reasoningOutputTokens",
    "totalTokens",
)


@dataclass(frozen=True)
class Source:
    """Whether ccusage reads one source, and how its fields map (its samples and directory
    variables: ``bench.samples.SAMPLE_DIRS``)."""

    #: ccusage 20.0.24 has a ``<source> daily`` command for it.
    compared: bool = True
    #: ccusage keeps this source's reasoning out of outputTokens (adds it to totalTokens).
    reasoning_apart: bool = False
    #: ccusage's rows carry reasoningOutputTokens (inside outputTokens).
    reasoning_field: bool = False
    #: The docs/sources.md section that explains this source's differences.
    section: str = ""


#: Every source in PARSERS.
SOURCES: dict[str, Source] = {
    "codex": Source(reasoning_field=True, section="Codex CLI"),
    "claude": Source(section="Claude Code"),
    "gemini": Source(reasoning_apart=True, section="Gemini CLI"),
    "opencode": Source(reasoning_apart=True, section="Opencode"),
    "qwen": Source(reasoning_apart=True, section="Qwen Code"),
    "kimi": Source(section="Kimi CLI"),
    "kilo": Source(reasoning_apart=True, section="Kilo CLI"),
    "droid": Source(reasoning_apart=True, section="Factory Droid"),
    "hermes": Source(section="Hermes Agent"),
    "goose": Source(reasoning_apart=True, section="Goose"),
    "pi": Source(section="pi-agent"),
    "openclaw": Source(section="OpenClaw"),
    "copilot": Source(section="GitHub Copilot CLI"),
    "amp": Source(section="Amp"),
    "every-code": Source(compared=False, section="Every Code"),
    "cline": Source(compared=False, section="Cline"),
    "roo-code": Source(compared=False, section="Roo Code"),
    "kilo-code": Source(compared=False, section="Kilo Code"),
}

Totals = dict[tuple[str, str], dict[str, int]]


def our_totals(name: str, env: Mapping[str, str], home: Path) -> tuple[Totals, list[Problem]]:
    """Parse every file the source discovers; sum per UTC day in ccusage's fields."""
    source = SOURCES[name]
    parser = PARSERS[name]
    totals: Totals = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    problems: list[Problem] = []
    events: list[UsageEvent] = []
    for path in parser.discover(env, home):
        result = parse_whole(parser, path)
        events.extend(result.events)
        problems.extend(result.problems)
    for event in resolve_duplicates(events, parser.duplicate_policy):
        row = totals[(event.timestamp.date().isoformat(), name)]
        output = event.output_tokens
        if source.reasoning_apart:
            output -= event.reasoning_output_tokens
        row["inputTokens"] += event.input_tokens - event.cache_write_tokens
        row["cacheCreationTokens"] += event.cache_write_tokens
        row["cacheReadTokens"] += event.cached_input_tokens
        row["outputTokens"] += output
        if source.reasoning_field:
            row["reasoningOutputTokens"] += event.reasoning_output_tokens
        row["totalTokens"] += event.total_tokens
    return dict(totals), problems


def ccusage_command(spec: str, name: str) -> list[str]:
    """The ccusage command line (after ``npx``) for one source."""
    return ["--yes", spec, name, "daily", "--json", "--offline", "--timezone", "UTC"]


def run_ccusage(spec: str, name: str, env: Mapping[str, str], home: Path) -> dict[str, Any]:
    """Run ccusage's command for ``name`` with only ``env``'s directories visible; its JSON."""
    npx = shutil.which("npx")
    if npx is None:
        raise RuntimeError("npx not found on PATH")
    command = [npx, *ccusage_command(spec, name)]
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LOG_LEVEL": "0",
        "NO_COLOR": "1",
        # Keep npm's download cache where it was; only the logs' HOME is replaced.
        "NPM_CONFIG_CACHE": os.environ.get("NPM_CONFIG_CACHE", str(Path.home() / ".npm")),
        **env,
    }
    print("$", "HOME=<empty>", *(f"{k}={v}" for k, v in env.items()), "npx", *command[1:])
    done = subprocess.run(
        command, env=child_env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ccusage {name} exited {done.returncode}: {done.stderr[:500]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def their_totals(name: str, report: Mapping[str, Any]) -> Totals:
    """Read per-day rows from ``ccusage <source> daily --json`` output, in our field set."""
    source = SOURCES[name]
    totals: Totals = {}
    for day in report.get("daily", []):
        row = {field: int(day.get(field, 0)) for field in FIELDS}
        if not source.reasoning_field:
            row["reasoningOutputTokens"] = 0
        totals[(str(day.get("date", day.get("period"))), name)] = row
    return totals


def compare(ours: Totals, theirs: Totals) -> list[str]:
    """Return one printable line per (source, day, field) where the two tools differ."""
    lines: list[str] = []
    for day, source in sorted(set(ours) | set(theirs), key=lambda key: (key[1], key[0])):
        mine = ours.get((day, source), dict.fromkeys(FIELDS, 0))
        peer = theirs.get((day, source), dict.fromkeys(FIELDS, 0))
        for field in FIELDS:
            if mine[field] != peer[field]:
                delta = mine[field] - peer[field]
                lines.append(
                    f"{source:<9} {day}  {field:<21} ours={mine[field]:>8} "
                    f"ccusage={peer[field]:>8}  ours-ccusage={delta:+d}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print totals, differences and our parse problems."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--ccusage", default=CCUSAGE, help="npm package spec to run")
    parser.add_argument("--ccusage-json", type=Path, help="read saved ccusage reports instead")
    parser.add_argument("--save-ccusage-json", type=Path, help="write the ccusage reports here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when totals differ")
    parser.add_argument(
        "--source",
        action="append",
        choices=sorted(SOURCES),
        help="compare only this source (repeatable; default: every source)",
    )
    args = parser.parse_args(argv)
    chosen = set(args.source or SOURCES)

    samples = args.samples.resolve()
    missing = sorted(set(PARSERS) - set(SOURCES))
    ours: Totals = {}
    theirs: Totals = {}
    problems: list[Problem] = []
    reports: dict[str, Any] = {}
    print(f"ccusage comparison, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, samples {samples}")
    with tempfile.TemporaryDirectory(prefix="compare-ccusage-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        built = build_samples(samples, Path(tmp) / "samples")
        try:
            saved = json.loads(args.ccusage_json.read_text()) if args.ccusage_json else None
            for name, source in SOURCES.items():
                if name not in PARSERS or name not in chosen:
                    continue
                env = source_env(name, built)
                mine, found = our_totals(name, env, home)
                ours.update(mine)
                problems += found
                if not source.compared:
                    continue
                if saved is not None:
                    reports[name] = saved.get(name, {})
                else:
                    reports[name] = run_ccusage(args.ccusage, name, env, home)
                theirs.update(their_totals(name, reports[name]))
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"could not get a ccusage report: {exc}", file=sys.stderr)
            return 2
    if args.save_ccusage_json:
        args.save_ccusage_json.write_text(json.dumps(reports, indent=1, sort_keys=True) + "\n")

    compared = {name for name, source in SOURCES.items() if source.compared and name in chosen}
    print("\nper-day totalTokens (UTC)")
    for day, name in sorted(set(ours) | set(theirs), key=lambda key: (key[1], key[0])):
        mine_total = ours.get((day, name), {}).get("totalTokens", 0)
        if name not in compared:
            print(f"  {name:<10} {day}  ours={mine_total:>8}  ccusage=  (not compared)")
            continue
        peer_total = theirs.get((day, name), {}).get("totalTokens", 0)
        mark = "" if mine_total == peer_total else "   <- differs"
        print(f"  {name:<10} {day}  ours={mine_total:>8}  ccusage={peer_total:>8}{mark}")
    differences = compare({key: row for key, row in ours.items() if key[1] in compared}, theirs)
    print(f"\n{len(differences)} field differences (explained per source in docs/sources.md)")
    for line in differences:
        name = line.split()[0]
        print(f"  {line}   [§ {SOURCES[name].section}]")
    skipped = sorted(
        name for name in set(PARSERS) & chosen if name not in compared and name in SOURCES
    )
    print(f"\nnot compared (no ccusage 20.0.24 command): {', '.join(skipped) or 'none'}")
    if missing:
        print(f"not compared (no sample mapping in SOURCES): {', '.join(missing)}")
    print(f"\n{len(problems)} problems reported by our parsers")
    for problem in problems:
        print(f"  {Path(problem.path).name}:{problem.line}: {problem.reason}")
    return 1 if args.strict and differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
