"""``is_database`` works on path strings as ``Path.suffix`` would decide (discovery lists
files as strings, so a rescan builds no ``Path`` per file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from usageledger.sources import is_database

NAMES = [
    "opencode.db",
    "/home/u/.local/share/opencode/opencode.db",
    "/x/.db",  # a hidden file named ".db": no suffix
    "/x/..db",
    "/x/a.b.db",
    "/x/a.db-wal",
    "/x/a.jsonl",
    "/x.db/a.jsonl",  # a directory's suffix is not the file's
    "db",
    "/x/a.DB",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_string_is_judged_as_its_path_suffix_would_be(name: str) -> None:
    assert is_database(name) == (Path(name).suffix == ".db")
    assert is_database(Path(name)) == is_database(name)
