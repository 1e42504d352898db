"""scripts/compare_ccusage.py: per-source field mapping and differences, on saved ccusage output.

No test runs ccusage (``npx`` needs the npm registry): each feeds ``--ccusage-json`` a report
written here by hand, next to sample logs written here by hand, so only our side is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import compare_ccusage as script
from usageledger.sources import PARSERS

REPO = Path(__file__).resolve().parent.parent
HERMES_SCHEMA = REPO / "tests" / "sources" / "samples" / "hermes" / "schema.sql"

# 2025-09-15T10:00:00Z (opencode, epoch ms) and 2025-09-16T09:00:00Z (Hermes, epoch seconds).
OPENCODE_MESSAGE = {
    "id": "msg_1",
    "sessionID": "ses_1",
    "role": "assistant",
    "time": {"created": 1757930400000},
    "modelID": "m",
    "providerID": "p",
    "tokens": {"input": 100, "output": 40, "reasoning": 10, "cache": {"read": 200, "write": 5}},
}
HERMES_ROW = (
    "INSERT INTO sessions (id, source, model, started_at, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, reasoning_tokens)"
    " VALUES ('s1', 'cli', 'm', 1758013200, 10, 30, 100, 20, 5);\n"
)


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """An opencode message file and a Hermes database kept as SQL, as the samples are."""
    root = tmp_path / "samples"
    message = root / "opencode" / "storage" / "message" / "ses_1" / "msg_1.json"
    message.parent.mkdir(parents=True)
    message.write_text(json.dumps(OPENCODE_MESSAGE))
    (root / "hermes").mkdir()
    (root / "hermes" / "schema.sql").write_text(HERMES_SCHEMA.read_text())
    (root / "hermes" / "state.sql").write_text(HERMES_ROW)
    return root


def day(date: str, **fields: int) -> dict[str, Any]:
    """One row of ``ccusage <source> daily --json``."""
    return {"date": date, "modelsUsed": ["m"], "totalCost": 0.0, **fields}


def run(samples: Path, tmp_path: Path, reports: dict[str, Any], *extra: str) -> int:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(reports))
    return script.main(["--samples", str(samples), "--ccusage-json", str(saved), *extra])


def differences(out: str) -> set[tuple[str, str, str, str]]:
    """``(source, day, field, ours-ccusage)`` of each printed difference line."""
    found = set()
    for line in out.splitlines():
        if "ours-ccusage=" in line:
            source, date, field = line.split()[:3]
            found.add((source, date, field, line.split("ours-ccusage=")[1].split()[0]))
    return found


def test_every_registered_source_has_a_row_and_ccusage_lacks_four() -> None:
    """SOURCES covers PARSERS; ccusage 20.0.24 has no command for Every Code and the extensions."""
    assert set(script.SOURCES) == set(PARSERS)
    skipped = {name for name, source in script.SOURCES.items() if not source.compared}
    assert skipped == {"every-code", "cline", "roo-code", "kilo-code"}


def test_every_source_points_at_a_section_of_the_sources_doc() -> None:
    """Each difference names a heading of docs/sources.md that explains it."""
    headings = [
        line for line in (REPO / "docs" / "sources.md").read_text().splitlines() if line[:1] == "#"
    ]
    for name, source in script.SOURCES.items():
        assert any(source.section in heading for heading in headings), name


def test_equal_totals_under_the_mapping_print_no_difference(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opencode reasoning leaves output and cache writes leave input, as ccusage has them."""
    # Ours: input 100 + write 5 = 105, cached 200, output 40 + reasoning 10 = 50: total 355.
    # ccusage: inputTokens 100 (no writes), outputTokens 40 (no reasoning), total 355.
    # Hermes: input 10 + write 20 = 30, cached 100, output 30 (reasoning 5 inside): total 160.
    reports = {
        "opencode": {
            "daily": [
                day(
                    "2025-09-15",
                    inputTokens=100,
                    cacheCreationTokens=5,
                    cacheReadTokens=200,
                    outputTokens=40,
                    totalTokens=355,
                )
            ]
        },
        "hermes": {
            "daily": [
                day(
                    "2025-09-16",
                    inputTokens=10,
                    cacheCreationTokens=20,
                    cacheReadTokens=100,
                    outputTokens=30,
                    reasoningOutputTokens=99,  # not a field compared for Hermes
                    totalTokens=160,
                )
            ]
        },
    }
    assert run(samples, tmp_path, reports, "--strict") == 0
    out = capsys.readouterr().out
    assert differences(out) == set()
    assert "0 field differences" in out
    assert "opencode   2025-09-15  ours=     355  ccusage=     355\n" in out
    assert (
        "not compared (no ccusage 20.0.24 command): cline, every-code, kilo-code, roo-code" in out
    )


def test_each_differing_field_is_printed_per_source_and_day(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A day only ccusage has, and a total ccusage inflates, show field by field."""
    reports = {
        "opencode": {
            "daily": [
                day(
                    "2025-09-15",
                    inputTokens=100,
                    cacheCreationTokens=5,
                    cacheReadTokens=200,
                    outputTokens=50,  # reasoning counted in output: 10 more than ours
                    totalTokens=365,
                )
            ]
        },
        "hermes": {
            "daily": [
                day(
                    "2025-09-16",
                    inputTokens=10,
                    cacheCreationTokens=20,
                    cacheReadTokens=100,
                    outputTokens=30,
                    totalTokens=165,  # reasoning 5 added again
                )
            ]
        },
        "codex": {
            "daily": [
                day(
                    "2025-09-14",
                    inputTokens=7,
                    outputTokens=3,
                    reasoningOutputTokens=1,
                    totalTokens=10,
                )
            ]
        },
    }
    assert run(samples, tmp_path, reports) == 0
    out = capsys.readouterr().out
    assert differences(out) == {
        ("opencode", "2025-09-15", "outputTokens", "-10"),
        ("opencode", "2025-09-15", "totalTokens", "-10"),
        ("hermes", "2025-09-16", "totalTokens", "-5"),
        ("codex", "2025-09-14", "inputTokens", "-7"),
        ("codex", "2025-09-14", "outputTokens", "-3"),
        ("codex", "2025-09-14", "reasoningOutputTokens", "-1"),
        ("codex", "2025-09-14", "totalTokens", "-10"),
    }
    assert "[§ Hermes Agent]" in out
    assert run(samples, tmp_path, reports, "--strict") == 1


def test_an_unreadable_saved_report_exits_2(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A saved report that is not JSON is a failure to get ccusage's numbers, not a match."""
    saved = tmp_path / "saved.json"
    saved.write_text("{not json")
    assert script.main(["--samples", str(samples), "--ccusage-json", str(saved)]) == 2
    assert "could not get a ccusage report" in capsys.readouterr().err
