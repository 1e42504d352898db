"""The `usageledger attribute` command: inputs, output modes and exit codes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from tests.test_attribution import entry
from usageledger.attribution import MAX_LINE_BYTES, STOP_RULE
from usageledger.cli.attribute import attribute

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLAIN = {"COLUMNS": "80", "FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None}


def log(*entries: dict[str, Any] | bytes) -> bytes:
    """Newline-terminated log bytes: dicts as JSON lines, bytes as they are."""
    return b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in entries)


def run(*args: str, stdin: bytes | None = None) -> Result:
    """Invoke the command with a plain, 80-column, colourless terminal."""
    return CliRunner().invoke(attribute, list(args), input=stdin, env=PLAIN)


@pytest.fixture
def incident_log(tmp_path: Path) -> Path:
    """A log with noise, one vendor incident, one application error and an unknown one."""
    path = tmp_path / "evidence.log"
    path.write_bytes(
        log(
            b"INFO: Uvicorn running on http://0.0.0.0:8000",
            entry(),
            entry(ts="2026-11-28T10:31:00Z", request_id="v1", status=503, upstream_status=504),
            entry(ts="2026-11-28T10:31:05Z", request_id="v2", status=503, upstream_status=503),
            entry(ts="2026-11-28T10:40:00Z", request_id="a1", status=422, function="read"),
            entry(ts="2026-11-28T11:00:00Z", request_id="u1", status=500, upstream_status=None),
        )
    )
    return path


def test_it_prints_tables_for_people(incident_log: Path) -> None:
    """The default output names functions, incidents, evidence and the stop rule."""
    result = run(str(incident_log))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "5 M1 lines" in out
    assert "1 skipped (not_json 1)" in out
    assert "Functions" in out
    assert "Incidents" in out
    assert "incident 1 · vendor: v1 v2" in out
    assert "Evidence per function" in out
    assert "ingest · vendor: v1 v2" in out  # per function too, with its codes and statuses
    assert "STOP (1 unknown line: ingest ×1; dominant in incident 3)" in out
    assert "e.g. u1." in out
    assert " ".join(STOP_RULE.split()) in " ".join(out.split())


def test_json_prints_one_object_with_the_documented_keys(incident_log: Path) -> None:
    """--json prints exactly one JSON object on stdout."""
    result = run(str(incident_log), "--json")
    assert result.exit_code == 0
    data = orjson.loads(result.stdout)
    assert set(data) >= {"lines", "skipped", "coverage", "verdicts", "functions", "incidents"}
    assert data["verdicts"] == {
        "ok": 1,
        "vendor": 2,
        "application": 1,
        "app_bottleneck": 0,
        "unknown": 1,
    }
    assert [i["dominant"] for i in data["incidents"]] == ["vendor", "application", "unknown"]
    assert data["inputs"] == [str(incident_log)]


def test_json_always_carries_all_five_verdict_keys() -> None:
    """Even with no evidence line at all, verdicts has all five keys at zero."""
    data = orjson.loads(run("--json", stdin=b"hello\n").stdout)
    assert data["verdicts"] == dict.fromkeys(
        ("ok", "vendor", "application", "app_bottleneck", "unknown"), 0
    )
    assert (data["lines"], data["skipped"]) == (0, 1)


def test_explain_prints_one_json_line_per_evidence_line(incident_log: Path) -> None:
    """--explain prints request_id, verdict and reason for every evidence line, and nothing else."""
    result = run(str(incident_log), "--explain")
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["request_id"], r["verdict"]) for r in records] == [
        ("req-1", "ok"),
        ("v1", "vendor"),
        ("v2", "vendor"),
        ("a1", "application"),
        ("u1", "unknown"),
    ]
    assert all(r["reason"] for r in records)


def test_explain_with_json_ends_with_the_report_line(incident_log: Path) -> None:
    """Both flags give JSON lines: the explanations, then the report object last."""
    lines = run(str(incident_log), "--explain", "--json").stdout.splitlines()
    assert len(lines) == 6
    assert orjson.loads(lines[-1])["lines"] == 5


@pytest.mark.parametrize("args", [["-"], []])
def test_it_reads_stdin_for_a_dash_or_no_files(args: list[str]) -> None:
    """`-`, or no file at all, means standard input."""
    result = run(*args, "--json", stdin=log(entry(), entry(status=500)))
    assert result.exit_code == 0
    data = orjson.loads(result.stdout)
    assert (data["lines"], data["inputs"]) == (2, ["-"])


def test_it_reads_several_files_and_stdin_in_order(tmp_path: Path) -> None:
    """Files and stdin are read one after the other into one report."""
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(log(entry(request_id="a")))
    second.write_bytes(log(entry(request_id="b")))
    result = run(str(first), "-", str(second), "--explain", stdin=log(entry(request_id="s")))
    ids = [orjson.loads(line)["request_id"] for line in result.stdout.splitlines()]
    assert ids == ["a", "s", "b"]


def test_it_exits_2_on_a_missing_file_with_a_message_on_stderr(tmp_path: Path) -> None:
    """A missing input is an error, not an empty report."""
    missing = tmp_path / "nope.log"
    result = run(str(missing), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"cannot read {missing}: No such file or directory" in result.stderr


def test_it_exits_2_on_a_directory(tmp_path: Path) -> None:
    """A directory is not a log file."""
    result = run(str(tmp_path))
    assert result.exit_code == 2
    assert "Is a directory" in result.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_it_exits_2_on_a_file_it_may_not_read(tmp_path: Path) -> None:
    """Permission denied is reported, not skipped."""
    locked = tmp_path / "locked.log"
    locked.write_bytes(log(entry()))
    locked.chmod(0)
    result = run(str(locked))
    assert result.exit_code == 2
    assert "Permission denied" in result.stderr


def test_it_exits_0_whatever_it_finds() -> None:
    """Only unreadable input fails; an all-unknown log is a finding, not an error."""
    result = run(stdin=log(entry(status=500, upstream_status=None), b"\xff\xfe", b"[]"))
    assert result.exit_code == 0
    assert "STOP" in result.stdout


def test_a_huge_line_is_skipped_and_counted() -> None:
    """A line over 1 MiB is counted as skipped and the rest is still read."""
    huge = b'{"request_id": "' + b"x" * (MAX_LINE_BYTES + 1) + b'"}'
    data = orjson.loads(run("--json", stdin=log(huge, entry())).stdout)
    assert (data["lines"], data["skipped_reasons"]["too_long"]) == (1, 1)


def test_filters_and_thresholds_are_applied(incident_log: Path) -> None:
    """--since, --until, --function and --slow-ms reach the analysis."""
    result = run(
        str(incident_log),
        "--json",
        "--since",
        "2026-11-28T10:31:00Z",
        "--until",
        "2026-11-28T11:00:00Z",
        "--function",
        "ingest",
        "--slow-ms",
        "5",
    )
    data = orjson.loads(result.stdout)
    assert (data["lines"], data["filtered_out"]) == (2, 3)
    assert data["params"]["slow_ms"] == 5.0
    assert data["params"]["functions"] == ["ingest"]


def test_a_bad_time_bound_is_a_usage_error() -> None:
    """An unreadable --since is refused before any input is read."""
    result = run("--since", "last tuesday", stdin=b"")
    assert result.exit_code == 2
    assert "neither ISO 8601 nor a relative age" in result.stderr


def test_help_shows_an_example() -> None:
    """The help text carries a runnable example."""
    assert "usageledger attribute server.log --since 2h" in run("--help").stdout


def test_every_option_is_documented() -> None:
    """docs/attribution.md mentions every option of the command."""
    docs = (DOCS / "attribution.md").read_text()
    for param in attribute.params:
        for flag in param.opts:
            if flag.startswith("--"):
                assert f"`{flag}" in docs, flag


@pytest.mark.parametrize(
    ("marker", "example"),
    [("worked-example", "m1-incident.log"), ("js-example", "js-service.log")],
)
def test_the_examples_in_the_docs_are_the_real_output(
    marker: str, example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/attribution.md shows what the command prints today on its example files."""
    docs = (DOCS / "attribution.md").read_text()
    monkeypatch.chdir(DOCS.parent)  # the docs show a path relative to the repository root
    result = run(f"docs/examples/{example}")
    shown = re.search(rf"<!-- {marker} -->\n```text\n(.*?)```", docs, re.S)
    assert shown is not None
    assert [line.rstrip() for line in shown[1].splitlines()] == [
        line.rstrip() for line in result.stdout.splitlines()
    ]
