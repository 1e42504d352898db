"""``sources._common.find_files``: patterns, links and odd directory entries."""

from __future__ import annotations

import os
from pathlib import Path

from usageledger.sources._common import find_files


def touch(path: Path, data: bytes = b"{}\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_patterns_match_relative_paths_and_star_crosses_directories(tmp_path: Path) -> None:
    """``*`` crosses ``/``; the result is sorted by path."""
    root = tmp_path / "root"
    deep = touch(root / "2025/09/15/rollout-b.jsonl")
    top = touch(root / "rollout-a.jsonl")
    touch(root / "2025/notes.txt")
    touch(root / "2025/other-a.jsonl")
    assert find_files([root], ["rollout-*.jsonl", "*/rollout-*.jsonl"]) == sorted([deep, top])
    assert find_files([root], ["*.txt"]) == [root / "2025/notes.txt"]


def test_the_same_real_file_is_returned_once(tmp_path: Path) -> None:
    """A hard link, a symlink and a root listed twice all name one file: it comes back once."""
    root = tmp_path / "root"
    real = touch(root / "a/s-1.jsonl")
    os.link(real, root / "a/s-2.jsonl")
    os.symlink(real, root / "a/s-3.jsonl")
    assert find_files([root, root], ["*.jsonl"]) == [real]


def test_links_to_directories_loops_and_broken_links_are_skipped(tmp_path: Path) -> None:
    """A symlinked directory is not entered (no loop can hang discovery); dead links vanish."""
    root = tmp_path / "root"
    real = touch(root / "a/s-1.jsonl")
    elsewhere = touch(tmp_path / "elsewhere/s-9.jsonl")
    os.symlink(tmp_path / "elsewhere", root / "linked-dir")
    os.symlink(root, root / "a/loop")
    os.symlink(tmp_path / "missing.jsonl", root / "a/dead.jsonl")
    os.mkfifo(root / "a/pipe.jsonl")
    os.symlink(tmp_path / "elsewhere", root / "a/dir-link.jsonl")
    found = find_files([root], ["*.jsonl"])
    assert found == [real]
    assert elsewhere not in found


def test_a_missing_or_unlistable_root_gives_nothing(tmp_path: Path) -> None:
    """Roots that do not exist, or are files, yield no paths and no error."""
    touch(tmp_path / "file-root")
    assert find_files([tmp_path / "missing", tmp_path / "file-root"], ["*"]) == []
