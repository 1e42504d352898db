"""A plain ``usageledger statusline`` is answered before click loads, exactly as click's
command answers it; anything else goes to click."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tracker.conftest import SAMPLES, logs_env
from usageledger.cli.quick import DEFAULT_SEGMENTS, statusline_args

SESSION = "11111111-aaaa-4aaa-8aaa-111111111111"
#: Runs the console entry (fast path first) or click's group directly, then writes the
#: modules it ended with.
PROBE = """
import json, sys
out, how, args = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    if how == "entry":
        sys.argv = ["usageledger", *args]
        from usageledger.cli import main
        main()
    else:
        from usageledger.cli.root import main
        main(args, prog_name="usageledger")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
with open(out, "w") as handle:
    json.dump(sorted(sys.modules), handle)
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], (DEFAULT_SEGMENTS, True)),
        (["--no-scan"], (DEFAULT_SEGMENTS, False)),
        (["--segments", "model,limits"], ("model,limits", True)),
        (["--segments=model", "--no-scan"], ("model", False)),
        (["--no-scan", "--segments", "today"], ("today", False)),
        (["--segments="], ("", True)),  # click passes the empty value on too
        (["--help"], None),
        (["-h"], None),
        (["--segments"], None),  # click reports the missing value
        (["--segments", "--no-scan"], None),  # a value that looks like an option
        (["--no-scan", "--no-scan"], None),
        (["--segments", "a", "--segments", "b"], None),
        (["--segment", "a"], None),  # click's prefix matching is click's business
        (["extra"], None),
        (["--"], None),
    ],
)
def test_only_the_plain_forms_are_read_without_click(
    argv: list[str], expected: tuple[str, bool] | None
) -> None:
    assert statusline_args(argv) == expected


@pytest.fixture
def user(tmp_path: Path) -> tuple[dict[str, str], bytes]:
    """A user with the sample logs, and Claude Code's input for one of their sessions."""
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLES, logs)
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGELEDGER")}
    env |= logs_env(logs)
    env |= {
        "HOME": str(tmp_path / "home"),
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "NO_COLOR": "1",
        "USAGELEDGER_DEFAULT_TIME_ZONE": "UTC",
    }
    transcript = logs / "claude" / "projects" / "-home-alice-proj-b" / f"{SESSION}.jsonl"
    assert transcript.is_file()
    given = {
        "session_id": SESSION,
        "transcript_path": str(transcript),
        "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
        "rate_limits": {"five_hour": {"used_percentage": 12.5, "resets_at": 1790003600}},
    }
    return env, json.dumps(given).encode()


def run(
    env: dict[str, str], stdin: bytes, tmp_path: Path, how: str, *args: str
) -> tuple[str, list[str]]:
    """The line printed and the modules loaded by one run in a fresh interpreter."""
    report = tmp_path / f"modules-{how}.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), how, "statusline", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(report.read_text())
    return done.stdout.decode(), modules


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--segments", "model,session,limits"),
        ("--no-scan", "--segments=model,session,context"),
    ],
)
def test_a_plain_call_answers_as_click_does_without_loading_click(
    user: tuple[dict[str, str], bytes], tmp_path: Path, args: tuple[str, ...]
) -> None:
    env, stdin = user
    quick, quick_modules = run(env, stdin, tmp_path, "entry", *args)
    slow, slow_modules = run(env, stdin, tmp_path, "click", *args)

    assert quick == slow
    assert quick.count("\n") == 1
    assert quick.startswith("Sonnet 4.5 | ")
    assert "unavailable" not in quick
    assert "click" not in {m.split(".")[0] for m in quick_modules}
    assert "click" in {m.split(".")[0] for m in slow_modules}  # the check is not blind


def test_anything_else_goes_to_click(user: tuple[dict[str, str], bytes], tmp_path: Path) -> None:
    env, stdin = user
    helped, modules = run(env, stdin, tmp_path, "entry", "--help")
    assert "--segments LIST" in helped
    assert "click" in {m.split(".")[0] for m in modules}


def test_a_broken_answer_still_prints_one_line(
    user: tuple[dict[str, str], bytes], tmp_path: Path
) -> None:
    """A setting that cannot be used: the fallback line, exit 0 (through the quick path)."""
    env, stdin = user
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line, _ = run(env | {"USAGELEDGER_HOME": str(blocker)}, stdin, tmp_path, "entry")
    assert line.count("\n") == 1
    assert line.startswith("Sonnet 4.5 | usageledger: unavailable")
