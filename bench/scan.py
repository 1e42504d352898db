"""Scan benchmark: `usageledger report` against `ccusage daily --json` on a heavy user's history.

Generates, in a temp dir, Claude Code transcripts and Codex rollouts shaped like a heavy
user's (thousands of files from a few KiB to tens of MiB, tool output and reasoning blobs
between the usage lines, streamed copies of responses, sub-agent files) at two corpus sizes
(313 MB and 1 GB by default), then measures, alternating our command and ccusage's on the same
files (``npx --yes ccusage@20.0.24 daily --json --offline``, pointed at the corpus by
CLAUDE_CONFIG_DIR and CODEX_HOME with an empty HOME; it re-reads everything on every run):

- cold: `usageledger report daily --json` with no ledger yet (it creates the ledger, scans
  everything, reports) — target ≤ 2× ccusage;
- nothing new: the same report again — target ≤ 0.2× ccusage at 313 MB, ≥ 10× faster at 1 GB;
- after 1 MiB: the report after 1 MiB of new lines in a few transcripts — target ≤ 0.25×;
- `usageledger --help` (start-up), and `usageledger statusline` against ccusage's cached
  `statusline` on the same status-line JSON — target: median ≤ ccusage's;
- peak RSS of each (``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper process, no psutil):
  the cold scan's at 1 GB within 1.25× of its at 313 MB.

Each figure is the median of ``--repeat`` runs (cold: of ``--repeat-cold``).

With ``--every-source``, the corpus also holds the committed samples of the 16 other sources
(tests/sources/samples, built by :mod:`bench.samples`) and our runs get their directory
variables, so every report looks at all 18 sources; ccusage still reads Claude and Codex only.
The rows measured so are marked, and the report with nothing new is also measured with the
other sources' directories absent (a second ledger that never saw them) against present,
alternately, so their cost shows as a number.

Run: ``.venv/bin/python -m bench.scan`` (results into docs/benchmarks.md) or ``--quick``
(20 and 40 MB; nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.samples import SAMPLE_DIRS, SAMPLES, build_samples, sample_env

ROOT = Path(__file__).resolve().parent.parent
CCUSAGE = "ccusage@20.0.24"
MIB = 1024 * 1024
EPOCH = datetime(2025, 5, 1, tzinfo=UTC)
CLAUDE_MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5")
CODEX_MODELS = ("gpt-5-codex", "gpt-5")
#: The sources the generated corpus holds (the ones ccusage's ``daily`` reads).
CORPUS_SOURCES = ("claude", "codex")
#: Every other source: with ``--every-source``, its committed samples sit beside the corpus.
OTHER_SOURCES = tuple(name for name in SAMPLE_DIRS if name not in CORPUS_SOURCES)
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "with",
    "as",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "from",
    "or",
    "have",
    "an",
    "they",
    "which",
    "function",
    "return",
    "value",
    "error",
    "import",
    "class",
    "self",
    "none",
    "true",
    "false",
    "data",
    "file",
    "path",
    "config",
    "test",
    "assert",
    "result",
    "print",
    "string",
    "list",
    "dict",
    "int",
    "float",
    "async",
    "await",
    "yield",
    "lambda",
    "module",
    "package",
    "refactor",
    "parser",
    "ledger",
    "bucket",
    "token",
    "usage",
    "model",
    "session",
    "project",
    "build",
    "deploy",
    "commit",
    "branch",
]

# The child that runs one measured command and reports its wall time and peak RSS.
_WRAPPER = """
import json, resource, subprocess, sys, time
stdin = sys.stdin.buffer.read()
start = time.perf_counter()
done = subprocess.run(sys.argv[2:], env=json.loads(sys.argv[1]), input=stdin, capture_output=True)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": elapsed, "peak_kib": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime, "code": done.returncode,
                  "stdout": done.stdout.decode(errors="replace"),
                  "stderr": done.stderr.decode(errors="replace")[-2000:]}))
"""


class Text:
    """Cheap pseudo-prose: slices of one long random string of words."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = " ".join(rng.choice(WORDS) for _ in range(400_000))

    def __call__(self, size: int) -> str:
        start = self.rng.randrange(0, len(self.pool) - size - 1)
        return self.pool[start : start + size]


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ClaudeSession:
    """Writes one Claude Code transcript: user turns, streamed assistant lines, tool results."""

    def __init__(self, rng: random.Random, text: Text, cwd: str, start: datetime) -> None:
        self.rng, self.text, self.cwd = rng, text, cwd
        self.session = str(uuid.UUID(int=rng.getrandbits(128)))
        self.now = start
        self.model = rng.choice(CLAUDE_MODELS)
        self.parent: str | None = None

    def _base(self, kind: str) -> dict[str, Any]:
        self.now += timedelta(seconds=self.rng.randint(1, 40))
        me = str(uuid.UUID(int=self.rng.getrandbits(128)))
        base = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": "2.0.14",
            "gitBranch": "main",
            "type": kind,
            "uuid": me,
            "timestamp": _ts(self.now),
        }
        self.parent = me
        return base

    def turn(self) -> list[bytes]:
        """A user message, a streamed response (1-3 lines, one usage), a tool result."""
        rng = self.rng
        out = [
            self._line(
                {
                    **self._base("user"),
                    "message": {"role": "user", "content": self.text(rng.randint(40, 900))},
                }
            )
        ]
        message_id = f"msg_{rng.getrandbits(80):020x}"
        request_id = f"req_{rng.getrandbits(80):020x}"
        usage = {
            "input_tokens": rng.randint(1, 60),
            "cache_creation_input_tokens": rng.randint(0, 8000),
            "cache_read_input_tokens": rng.randint(5000, 150_000),
            "output_tokens": rng.randint(20, 3000),
            "service_tier": "standard",
        }
        blocks = rng.randint(1, 3)
        for n in range(blocks):
            kind = ("thinking", "text", "tool_use")[n]
            if kind == "thinking":
                block: dict[str, Any] = {
                    "type": "thinking",
                    "thinking": self.text(rng.randint(200, 3000)),
                    "signature": self.text(300),
                }
            elif kind == "text":
                block = {"type": "text", "text": self.text(rng.randint(50, 1500))}
            else:
                block = {
                    "type": "tool_use",
                    "id": f"toolu_{rng.getrandbits(64):016x}",
                    "name": "Bash",
                    "input": {"command": self.text(80)},
                }
            streamed = dict(
                usage,
                output_tokens=usage["output_tokens"] if n == blocks - 1 else rng.randint(1, 20),
            )
            line = {
                **self._base("assistant"),
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": streamed,
                },
                "requestId": request_id,
            }
            out.append(self._line(line))
        if blocks == 3:
            size = rng.choice((200, 800, 3000, 8000, 20_000)) if rng.random() < 0.97 else 120_000
            body = self.text(size)
            result = {
                **self._base("user"),
                "message": {
                    "role": "user",
                    "content": [{"tool_use_id": "toolu_x", "type": "tool_result", "content": body}],
                },
                "toolUseResult": {"stdout": body[: size // 2], "stderr": "", "interrupted": False},
            }
            out.append(self._line(result))
        return out

    @staticmethod
    def _line(record: dict[str, Any]) -> bytes:
        return orjson.dumps(record) + b"\n"


class CodexSession:
    """Writes one Codex rollout: meta, turn contexts, reasoning, tool calls, token counts."""

    def __init__(self, rng: random.Random, text: Text, cwd: str, start: datetime) -> None:
        self.rng, self.text, self.cwd = rng, text, cwd
        self.session = str(uuid.UUID(int=rng.getrandbits(128)))
        self.now = start
        self.totals = [0, 0, 0, 0]
        self.model = rng.choice(CODEX_MODELS)

    def _line(self, kind: str, payload: dict[str, Any]) -> bytes:
        self.now += timedelta(seconds=self.rng.randint(1, 30))
        return orjson.dumps({"timestamp": _ts(self.now), "type": kind, "payload": payload}) + b"\n"

    def head(self) -> list[bytes]:
        """The session_meta line (with the long instructions Codex records)."""
        return [
            self._line(
                "session_meta",
                {
                    "id": self.session,
                    "timestamp": _ts(self.now),
                    "cwd": self.cwd,
                    "originator": "codex_cli_rs",
                    "cli_version": "0.46.0",
                    "instructions": self.text(6000),
                },
            )
        ]

    def turn(self) -> list[bytes]:
        """A turn: context, user message, reasoning, a tool call and output, a token count."""
        rng = self.rng
        out = [
            self._line(
                "turn_context",
                {
                    "cwd": self.cwd,
                    "approval_policy": "on-request",
                    "model": self.model,
                    "effort": "medium",
                },
            ),
            self._line(
                "response_item",
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": self.text(rng.randint(40, 800))}],
                },
            ),
            self._line(
                "response_item",
                {
                    "type": "reasoning",
                    "summary": [],
                    "encrypted_content": self.text(rng.randint(800, 6000)),
                },
            ),
            self._line(
                "response_item",
                {
                    "type": "function_call",
                    "name": "shell",
                    "arguments": json.dumps({"command": ["bash", "-lc", self.text(60)]}),
                    "call_id": f"call_{rng.getrandbits(64):x}",
                },
            ),
            self._line(
                "response_item",
                {
                    "type": "function_call_output",
                    "call_id": "call_x",
                    "output": self.text(rng.choice((300, 2000, 9000, 40_000))),
                },
            ),
        ]
        fresh, cached = rng.randint(500, 20_000), rng.randint(2000, 120_000)
        output, reasoning = rng.randint(20, 4000), 0
        reasoning = rng.randint(0, output)
        last = [fresh + cached, cached, output, reasoning]
        self.totals = [a + b for a, b in zip(self.totals, last, strict=True)]
        names = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
        info = {
            "total_token_usage": {
                **dict(zip(names, self.totals, strict=True)),
                "total_tokens": self.totals[0] + self.totals[2],
            },
            "last_token_usage": {
                **dict(zip(names, last, strict=True)),
                "total_tokens": last[0] + last[2],
            },
            "model_context_window": 272000,
        }
        out.append(
            self._line(
                "event_msg",
                {
                    "type": "token_count",
                    "info": info,
                    "rate_limits": {"primary": {"used_percent": 12.0}},
                },
            )
        )
        out.append(
            self._line(
                "event_msg", {"type": "agent_message", "message": self.text(rng.randint(50, 600))}
            )
        )
        return out


@dataclass
class Corpus:
    """A generated history: where it is, how big, how many files."""

    root: Path
    bytes: int
    files: int

    @property
    def env(self) -> dict[str, str]:
        """Directory variables pointing both tools at the corpus."""
        return {
            "CLAUDE_CONFIG_DIR": str(self.root / "claude"),
            "CODEX_HOME": str(self.root / "codex"),
        }


def _file_size(rng: random.Random) -> int:
    """A log file's target size: mostly a few tens of KiB, some MiB."""
    if rng.random() < 0.02:
        return rng.randint(1 * MIB, 4 * MIB)
    return int(min(rng.lognormvariate(9.9, 1.0), 600_000))  # median ~20 KiB


#: Every corpus starts with a few long-running sessions: (share of the corpus, Claude?).
LARGE_FILES = ((0.06, True), (0.05, True), (0.04, False))


def generate(root: Path, target_bytes: int, seed: int = 7) -> Corpus:
    """Write Claude (60 %) and Codex (40 %) logs totalling about ``target_bytes``."""
    rng = random.Random(seed)
    text = Text(rng)
    written = files = 0
    projects = [f"/home/dev/src/project-{n:02d}" for n in range(24)]
    large = list(LARGE_FILES)
    while written < target_bytes:
        cwd = rng.choice(projects)
        start = EPOCH + timedelta(seconds=rng.randint(0, 180 * 86400))
        if large:
            share, claude = large.pop(0)
            size = int(target_bytes * share)
        else:
            size = min(_file_size(rng), max(target_bytes - written, 4096))
            claude = rng.random() < 0.6
        if claude:
            session = ClaudeSession(rng, text, cwd, start)
            folder = root / "claude" / "projects" / cwd.replace("/", "-")
            path = folder / f"{session.session}.jsonl"
            if rng.random() < 0.15:  # a sub-agent transcript
                path = (
                    folder
                    / session.session
                    / "subagents"
                    / f"agent-{rng.getrandbits(32):08x}.jsonl"
                )
            head: list[bytes] = []
            turn = session.turn
        else:
            codex = CodexSession(rng, text, cwd, start)
            day = start.strftime("%Y/%m/%d")
            stamp = start.strftime("%Y-%m-%dT%H-%M-%S")
            path = root / "codex" / "sessions" / day / f"rollout-{stamp}-{codex.session}.jsonl"
            head, turn = codex.head(), codex.turn
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            chunk = head
            length = 0
            while length < size:
                data = b"".join(chunk)
                handle.write(data)
                length += len(data)
                chunk = turn()
        written += length
        files += 1
    return Corpus(root, written, files)


def append_mib(corpus: Corpus, seed: int = 11) -> int:
    """Append about 1 MiB of new turns to the eight newest Claude transcripts."""
    rng = random.Random(seed)
    text = Text(rng)
    paths = sorted((corpus.root / "claude").rglob("*.jsonl"), key=lambda p: p.stat().st_size)[-8:]
    added = 0
    for index, path in enumerate(paths):
        session = ClaudeSession(
            rng, text, "/home/dev/src/project-00", datetime(2025, 11, 1, tzinfo=UTC)
        )
        with path.open("ab") as handle:
            while added < MIB * (index + 1) // len(paths):
                data = b"".join(session.turn())
                handle.write(data)
                added += len(data)
    return added


def measure(command: list[str], env: dict[str, str], stdin: bytes = b"") -> dict[str, Any]:
    """Run ``command`` in a wrapper process; return seconds, peak RSS (KiB) and output."""
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps(env), *command],
        input=stdin,
        capture_output=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{command[0]} exited {result['code']}: {result['stderr']}")
    return result


def base_env(home: Path) -> dict[str, str]:
    """An environment with only PATH, an empty HOME and npm's cache kept."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "NPM_CONFIG_CACHE": os.environ.get("NPM_CONFIG_CACHE", str(Path.home() / ".npm")),
        "NO_COLOR": "1",
        "LOG_LEVEL": "0",
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
    }


def ours(*args: str) -> list[str]:
    """A `usageledger` command of this checkout."""
    return [sys.executable, "-m", "usageledger", *args]


def npx() -> list[str]:
    """`npx --yes ccusage@20.0.24`."""
    found = shutil.which("npx")
    if found is None:
        raise RuntimeError("npx not found on PATH")
    return [found, "--yes", CCUSAGE]


def ccusage_command() -> list[str]:
    """`npx --yes ccusage@20.0.24 daily --json --offline` (UTC days, no pricing download)."""
    return [*npx(), "daily", "--json", "--offline", "--timezone", "UTC"]


def ccusage_total(stdout: str) -> int:
    """Total tokens of a ccusage daily --json report."""
    report = json.loads(stdout)
    totals = report.get("totals") or {}
    return int(totals.get("totalTokens", 0))


def our_total(stdout: str, sources: tuple[str, ...] = CORPUS_SOURCES) -> int:
    """Total tokens of ``sources`` in a `usageledger report daily --json` (what ccusage read)."""
    report = json.loads(stdout)
    return sum(
        int(row["total_tokens"])
        for day in report["days"]
        for row in day["models"]
        if row["source"] in sources
    )


def add_other_sources(corpus: Corpus) -> tuple[dict[str, str], int]:
    """Build every other source's samples into the corpus; their variables and file count."""
    built = build_samples(SAMPLES, corpus.root / "other-sources")
    env = sample_env(built, OTHER_SOURCES)
    folders = {Path(folder) for value in env.values() for folder in value.split(",")}
    files = {path for folder in folders for path in folder.rglob("*") if path.is_file()}
    return env, len(files)


def median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    """The median of one measure over runs."""
    return float(statistics.median(r[key] for r in runs))


def pairs(
    repeat: int, mine: Callable[[], dict[str, Any]], theirs: Callable[[], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``repeat`` runs of each, alternating (so both see the same load)."""
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    for _ in range(repeat):
        a.append(mine())
        b.append(theirs())
    return a, b


def status_input(corpus: Corpus) -> bytes:
    """Claude Code's status-line JSON for the largest transcript of the corpus."""
    transcript = max((corpus.root / "claude").rglob("*.jsonl"), key=lambda p: p.stat().st_size)
    return orjson.dumps(
        {
            "hook_event_name": "Status",
            "session_id": transcript.stem,
            "transcript_path": str(transcript),
            "cwd": "/home/dev/src/project-00",
            "model": {"id": CLAUDE_MODELS[0], "display_name": "Sonnet 4.5"},
            "workspace": {
                "current_dir": "/home/dev/src/project-00",
                "project_dir": "/home/dev/src/project-00",
            },
            "version": "2.0.14",
            "cost": {"total_cost_usd": 1.25, "total_duration_ms": 60_000},
        }
    )


def has_statusline(env: dict[str, str]) -> bool:
    """Whether this checkout has `usageledger statusline`."""
    done = subprocess.run(ours("statusline", "--help"), env=env, capture_output=True)
    return done.returncode == 0


def run_size(
    work: Path, target: int, label: str, repeat: int, repeat_cold: int, every_source: bool = False
) -> dict[str, Any]:
    """Generate one corpus and measure every command against ccusage on it.

    ``every_source``: our runs also see the other sources' samples (ccusage's do not), and
    the report with nothing new is measured with them absent and present.
    """
    corpus = generate(work / f"corpus-{label}", target)
    home = work / f"home-{label}"
    home.mkdir()
    data = work / f"data-{label}"
    env = {**base_env(home), **corpus.env, "USAGELEDGER_HOME": str(data)}
    env["PYTHONPATH"] = str(ROOT / "src")
    others, other_files = add_other_sources(corpus) if every_source else ({}, 0)
    mine = {**env, **others}  # ours: with every source, if asked; ccusage: Claude and Codex
    report = ours("report", "daily", "--json")

    def cold() -> dict[str, Any]:
        shutil.rmtree(data, ignore_errors=True)
        return measure(report, mine)

    def ccusage() -> dict[str, Any]:
        return measure(ccusage_command(), env)

    measure(ccusage_command(), env)  # npx's own first-run work is not ccusage's
    cold_runs, cold_theirs = pairs(repeat_cold, cold, ccusage)
    ours_total = our_total(cold_runs[-1]["stdout"])
    their_total = ccusage_total(cold_theirs[-1]["stdout"])
    idle_runs, idle_theirs = pairs(repeat, lambda: measure(report, mine), ccusage)
    absent_present = None
    if every_source:
        # A second ledger that never saw the other sources: their directories are absent
        # (their variables unset, nothing under the empty HOME). Alternate with the first.
        absent = {**env, "USAGELEDGER_HOME": str(work / f"data-{label}-absent")}
        measure(report, absent)  # cold
        measure(report, absent)  # the first rescan
        absent_present = pairs(
            repeat, lambda: measure(report, absent), lambda: measure(report, mine)
        )
    appended: list[int] = []

    def after_mib() -> dict[str, Any]:
        appended.append(append_mib(corpus, seed=11 + len(appended)))
        return measure(report, mine)

    new_runs, new_theirs = pairs(repeat, after_mib, ccusage)
    helps = [measure(ours("--help"), env) for _ in range(repeat)]
    result: dict[str, Any] = {
        "mb": corpus.bytes / 1e6,
        "files": corpus.files,
        "cold": cold_runs,
        "cold_ccusage": cold_theirs,
        "idle": idle_runs,
        "idle_ccusage": idle_theirs,
        "new": new_runs,
        "new_ccusage": new_theirs,
        "appended": appended,
        "help": helps,
        "our_total": ours_total,
        "ccusage_total": their_total,
        "statusline": None,
        "every_source": every_source,
        "other_files": other_files,
        "absent_present": absent_present,
    }
    if has_statusline(env):
        stdin = status_input(corpus)
        line = ours("statusline")
        cached = [*npx(), "statusline", "--offline", "--refresh-interval", "3600"]
        measure(line, mine, stdin)
        measure(cached, env, stdin)  # fills ccusage's cache
        result["statusline"] = pairs(
            repeat, lambda: measure(line, mine, stdin), lambda: measure(cached, env, stdin)
        )
    return result


def machine() -> str:
    """CPU, cores, memory, OS and tool versions."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kib // 1024 // 1024} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"SQLite {__import__('sqlite3').sqlite_version}, Node {node}"
    )


def _s(runs: list[dict[str, Any]]) -> str:
    return f"{median(runs):.2f} s"


def _mib(runs: list[dict[str, Any]]) -> str:
    return f"{max(r['peak_kib'] for r in runs) / 1024:.0f} MiB"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (medians), then each target and whether it is met."""
    lines = [
        "| corpus | files | command | usageledger: wall (peak RSS) | ccusage: wall (peak RSS) "
        "| ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        mark = " †" if r["every_source"] else ""
        rows = [
            (f"cold `report daily --json`{mark}", r["cold"], r["cold_ccusage"]),
            (f"report, nothing new{mark}", r["idle"], r["idle_ccusage"]),
            (f"report after 1 MiB of new lines{mark}", r["new"], r["new_ccusage"]),
        ]
        if r["statusline"] is not None:
            rows.append((f"`statusline` (ccusage: cached){mark}", *r["statusline"]))
        for name, mine, theirs in rows:
            lines.append(
                f"| {r['mb']:.0f} MB | {r['files']:,} | {name} | {_s(mine)} ({_mib(mine)}) "
                f"| {_s(theirs)} ({_mib(theirs)}) | {median(mine) / median(theirs):.2f}× |"
            )
        ours_only = [("`usageledger --help`", r["help"])]
        if r["absent_present"] is not None:
            absent, present = r["absent_present"]
            ours_only += [
                ("report, nothing new, the other sources absent", absent),
                ("report, nothing new, the other sources present †", present),
            ]
        for name, mine in ours_only:
            lines.append(
                f"| {r['mb']:.0f} MB | {r['files']:,} | {name} | {_s(mine)} ({_mib(mine)}) | | |"
            )
    marked = [r for r in results if r["every_source"]]
    if marked:
        lines += [
            "",
            f"† usageledger with every source present: the corpus's Claude and Codex logs and "
            f"the committed samples of the {len(OTHER_SOURCES)} other sources "
            f"({marked[0]['other_files']} files), each pointed at by its directory variable; "
            "ccusage reads Claude and Codex only.",
        ]
    lines.append("")
    for r in results:
        cold = median(r["cold"]) / median(r["cold_ccusage"])
        idle = median(r["idle"]) / median(r["idle_ccusage"])
        new = median(r["new"]) / median(r["new_ccusage"])
        agree = (
            "equal"
            if r["our_total"] == r["ccusage_total"]
            else f"differ: ours {r['our_total']:,}, ccusage {r['ccusage_total']:,}"
        )
        idle_target = (
            f"≤ 0.2×: {_verdict(idle <= 0.2)}"
            if r["mb"] < 500
            else f"≥ 10× faster, i.e. ≤ 0.1×: {_verdict(idle <= 0.1)}"
        )
        parts = [
            f"cold **{cold:.2f}×** (≤ 2×: {_verdict(cold <= 2)})",
            f"nothing new **{idle:.2f}×** = {1 / idle:.1f}× faster ({idle_target})",
            f"after 1 MiB **{new:.2f}×** (≤ 0.25×: {_verdict(new <= 0.25)})",
        ]
        if r["statusline"] is None:
            parts.append("`statusline` not measured (no such command in this checkout)")
        else:
            line = median(r["statusline"][0]) / median(r["statusline"][1])
            parts.append(f"`statusline` **{line:.2f}×** (≤ 1×: {_verdict(line <= 1)})")
        if r["absent_present"] is not None:
            absent, present = (median(runs) for runs in r["absent_present"])
            parts.append(
                f"the {len(OTHER_SOURCES)} other sources cost a report with nothing new "
                f"**{(present - absent) * 1000:+.0f} ms** ({absent:.3f} s absent, "
                f"{present:.3f} s present)"
            )
        lines.append(f"- {r['mb']:.0f} MB: " + "; ".join(parts) + f"; total tokens {agree}.")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = max(x["peak_kib"] for x in last["cold"]) / max(
            x["peak_kib"] for x in first["cold"]
        )
        lines.append(
            f"- Peak RSS of the cold report: {_mib(first['cold'])} at {first['mb']:.0f} MB, "
            f"{_mib(last['cold'])} at {last['mb']:.0f} MB (**{growth:.2f}×** for "
            f"{last['mb'] / first['mb']:.1f}× the data; ≤ 1.25×: {_verdict(growth <= 1.25)})."
        )
    return "\n".join(lines)


def load() -> str:
    """The load averages (1, 5, 15 minutes)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and targets; record them unless --quick.

    The default sizes are 313 MB (the issue's measured history: 2,520 files) and 1 GB: a
    heavy user's history (public reports of ccusage users range from 0.6 to 5 GB).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 and 40 MB; do not write docs")
    parser.add_argument("--sizes", default=None, help="comma-separated corpus sizes in MB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measure (median)")
    parser.add_argument("--repeat-cold", type=int, default=3, help="cold runs (median)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--every-source",
        action="store_true",
        help="our runs also see the other sources' committed samples (ccusage's do not)",
    )
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([20, 40] if args.quick else [313, 1000])
    )
    work = Path(tempfile.mkdtemp(prefix="ul-bench-scan-"))
    before = load()
    try:
        results = []
        for size in sizes:
            print(f"corpus of {size} MB …", file=sys.stderr, flush=True)
            results.append(
                run_size(
                    work,
                    size * 1_000_000,
                    f"{size}",
                    args.repeat,
                    args.repeat_cold,
                    every_source=args.every_source,
                )
            )
        report = table(results)
        after = load()
        print(report)
        print(f"load average before: {before}, after: {after} on {os.cpu_count()} cores")
        if not args.quick:
            _record(report, sizes, before, after, args)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _record(
    report: str, sizes: list[int], before: str, after: str, args: argparse.Namespace
) -> None:
    """Write the results into the "## Scan" section of docs/benchmarks.md."""
    from bench.common import write_section

    corpora = " and ".join(f"{s} MB" for s in sizes)
    flag = " --every-source" if args.every_source else ""
    every = (
        f"""

With `--every-source` (the rows marked †), the corpus also holds the committed samples of the
{len(OTHER_SOURCES)} other sources (tests/sources/samples; `bench/samples.py` builds the SQLite
ones from their SQL) and our runs set each one's directory variable, so every report looks at
all {len(SAMPLE_DIRS)} sources; ccusage's runs are unchanged. "The other sources absent" is the
report with nothing new on a second ledger of the same corpus, whose runs leave those variables
unset (nothing under the empty `HOME` either), measured alternately with the first: the
difference is what looking at the other sources costs."""
        if args.every_source
        else ""
    )
    body = f"""Command: `.venv/bin/python -m bench.scan{flag}` (corpora of {corpora}; medians of
{args.repeat} runs, cold of {args.repeat_cold}; `--quick` runs 20 and 40 MB and writes
nothing). Machine: {machine()}. The machine was shared with other jobs (load average
{before} before the run, {after} after it), so wall times are noisy; both tools ran
alternately, so they saw the same load.

{report}

Both tools run as fresh processes over the same files; ccusage is
`npx --yes ccusage@20.0.24 daily --json --offline --timezone UTC` with `CLAUDE_CONFIG_DIR` and
`CODEX_HOME` pointing at the corpus and an empty `HOME` (it reads Claude and Codex; it has no
cursor, so every run is a full re-read). Ours is `usageledger report daily --json`, which
scans what is new first: "cold" starts without a ledger (creating it runs the schema
migrations), "nothing new" is the next report, "after 1 MiB" follows appending 1 MiB of turns
to the eight largest transcripts. `statusline` gets the status-line JSON of the largest
transcript on stdin; ccusage's runs with `--refresh-interval 3600` after a first run filled its
cache. Peak RSS is `ru_maxrss` (the largest process of the tree). The corpus mimics a heavy
user: about 60 % Claude Code transcripts (streamed copies of responses, thinking blocks, tool
results up to 120 KB, sub-agent files) and 40 % Codex rollouts (long instructions, encrypted
reasoning, tool output, cumulative token counts), thousands of files from a few KiB to 6 % of
the corpus each.{every}
"""
    write_section("Scan", body)


if __name__ == "__main__":
    raise SystemExit(main())
