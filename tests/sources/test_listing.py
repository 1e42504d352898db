"""Remembered directory listings: an unchanged directory is not read again, and discovery
with them finds exactly what discovery without them finds, whatever changed in between."""

from __future__ import annotations

import itertools
import marshal
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usageledger.sources import PARSERS, listing
from usageledger.sources.listing import RACY_NS, Listings, remembered
from usageledger.tracker.scan import discover

HOUR_NS = 3_600_000_000_000


class Scandirs:
    """Counts ``os.scandir`` calls (then makes them for real)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.paths: list[str] = []

    def __call__(self, path: Any = ".") -> Any:
        self.paths.append(str(path))
        return self.real(path)


@pytest.fixture
def scandirs(monkeypatch: pytest.MonkeyPatch) -> Scandirs:
    counting = Scandirs(os.scandir)
    monkeypatch.setattr(os, "scandir", counting)
    return counting


_SETTLED = itertools.count(1)


def settle(*paths: Path) -> None:
    """Date directories an hour back, as if their last change were long settled (each time
    by a different amount, so that two changes in one clock tick still get different times,
    as they would in real time)."""
    for path in paths:
        info = path.stat()
        back = HOUR_NS + next(_SETTLED) * 1_000_000
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - back))


def claude_tree(root: Path, files: dict[str, str]) -> list[Path]:
    """Write ``projects/<dir>/<name>`` files under a Claude config dir; return the dirs."""
    dirs = set()
    for rel, text in files.items():
        path = root / "projects" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        dirs.add(path.parent)
    return sorted({*dirs, root / "projects"})


def found(env: dict[str, str], home: Path, cache: Path | None) -> list[str]:
    result, problems = discover({"claude": PARSERS["claude"]}, env, home, listings=cache)
    assert problems == []
    return [str(p) for p in result["claude"]]


def test_an_unchanged_directory_is_not_read_again(tmp_path: Path, scandirs: Scandirs) -> None:
    root = tmp_path / "claude"
    dirs = claude_tree(root, {"a/1.jsonl": "", "a/2.jsonl": "", "b/3.jsonl": ""})
    settle(*dirs)
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"

    first = found(env, tmp_path, cache)
    assert len(scandirs.paths) == 3  # projects, a, b
    scandirs.paths.clear()
    second = found(env, tmp_path, cache)

    assert (
        second
        == first
        == [str(root / "projects" / r) for r in ("a/1.jsonl", "a/2.jsonl", "b/3.jsonl")]
    )
    assert scandirs.paths == []


def test_a_directory_that_changed_is_read_again(tmp_path: Path, scandirs: Scandirs) -> None:
    root = tmp_path / "claude"
    dirs = claude_tree(root, {"a/1.jsonl": "", "b/3.jsonl": ""})
    settle(*dirs)
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    found(env, tmp_path, cache)

    (root / "projects" / "a" / "new.jsonl").write_text("")  # a's mtime moves
    (root / "projects" / "b" / "3.jsonl").unlink()
    scandirs.paths.clear()
    after = found(env, tmp_path, cache)

    assert after == [str(root / "projects" / "a" / r) for r in ("1.jsonl", "new.jsonl")]
    assert sorted(scandirs.paths) == [str(root / "projects" / "a"), str(root / "projects" / "b")]


def test_a_fresh_directory_is_never_remembered(tmp_path: Path, scandirs: Scandirs) -> None:
    """A directory changed within RACY_NS of its listing may change again in the same clock
    tick without its time moving: it is read again until its time has settled."""
    root = tmp_path / "claude"
    dirs = claude_tree(root, {"a/1.jsonl": ""})
    settle(root / "projects")  # a/ stays fresh (written just now)
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    found(env, tmp_path, cache)
    fresh = root / "projects" / "a"
    assert fresh in dirs

    # A second file in the same tick: simulate it by restoring a/'s time after the write.
    before = fresh.stat()
    (fresh / "2.jsonl").write_text("")
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    scandirs.paths.clear()

    assert found(env, tmp_path, cache) == [str(fresh / "1.jsonl"), str(fresh / "2.jsonl")]
    assert scandirs.paths == [str(fresh)]


def test_the_racy_window_is_counted_from_the_listing(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    listings = Listings()
    listings.entries(str(directory))
    assert str(directory) not in listings.known  # just made: too fresh
    info = directory.stat()
    os.utime(directory, ns=(info.st_atime_ns, info.st_mtime_ns - RACY_NS - 10**9))
    listings.entries(str(directory))
    assert str(directory) in listings.known


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not marshal at all",
        marshal.dumps(("usageledger-listings-0-other", {})),
        marshal.dumps(("x", "y", "z")),
        marshal.dumps(["a list"]),
    ],
)
def test_a_broken_or_foreign_file_is_ignored(
    tmp_path: Path, scandirs: Scandirs, content: bytes
) -> None:
    root = tmp_path / "claude"
    settle(*claude_tree(root, {"a/1.jsonl": ""}))
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    cache.write_bytes(content)

    assert found(env, tmp_path, cache) == [str(root / "projects" / "a" / "1.jsonl")]
    assert len(scandirs.paths) == 2
    scandirs.paths.clear()
    assert found(env, tmp_path, cache) == [str(root / "projects" / "a" / "1.jsonl")]
    assert scandirs.paths == []  # rewritten in the current form


def test_a_directory_replaced_by_another_is_read(tmp_path: Path) -> None:
    """Same path, same mtime, another inode: not the directory that was listed."""
    root = tmp_path / "claude"
    a = root / "projects" / "a"
    settle(*claude_tree(root, {"a/1.jsonl": ""}))
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    found(env, tmp_path, cache)
    info = a.stat()

    a.rename(root / "old")
    a.mkdir()
    (a / "other.jsonl").write_text("")
    os.utime(a, ns=(info.st_atime_ns, info.st_mtime_ns))
    projects = (root / "projects").stat()
    os.utime(root / "projects", ns=(projects.st_atime_ns, projects.st_mtime_ns - HOUR_NS))

    assert found(env, tmp_path, cache) == [str(a / "other.jsonl")]


def test_listings_are_not_saved_when_nothing_changed(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    settle(*claude_tree(root, {"a/1.jsonl": ""}))
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    found(env, tmp_path, cache)
    stamp = cache.stat().st_mtime_ns
    os.utime(cache, ns=(stamp - HOUR_NS, stamp - HOUR_NS))
    found(env, tmp_path, cache)
    assert cache.stat().st_mtime_ns == stamp - HOUR_NS


def test_outside_a_remembered_block_nothing_is_remembered(
    tmp_path: Path, scandirs: Scandirs
) -> None:
    root = tmp_path / "claude"
    settle(*claude_tree(root, {"a/1.jsonl": ""}))
    env = {"CLAUDE_CONFIG_DIR": str(root)}
    with remembered(tmp_path / "listings"):
        PARSERS["claude"].discover(env, tmp_path)
    scandirs.paths.clear()
    PARSERS["claude"].discover(env, tmp_path)
    assert len(scandirs.paths) == 2
    assert listing._CURRENT.get() is None


def test_random_changes_find_what_a_fresh_listing_finds(tmp_path: Path) -> None:
    """Files and directories appear, vanish and are renamed between discoveries (some in
    settled directories, some in fresh ones): remembered listings never change the answer."""
    rng = random.Random(20261204)
    root = tmp_path / "claude"
    projects = root / "projects"
    projects.mkdir(parents=True)
    env, cache = {"CLAUDE_CONFIG_DIR": str(root)}, tmp_path / "listings"
    for step in range(60):
        dirs = [d for d in projects.iterdir() if d.is_dir()]
        action = rng.random()
        if action < 0.25 or not dirs:
            (projects / f"p{step}").mkdir()
        elif action < 0.6:
            (rng.choice(dirs) / f"s{step}.jsonl").write_text("")
        elif action < 0.75:
            files = [f for d in dirs for f in d.iterdir()]
            if files:
                rng.choice(files).unlink()
        elif action < 0.85:
            files = [f for d in dirs for f in d.iterdir()]
            if files:
                victim = rng.choice(files)
                victim.rename(rng.choice(dirs) / f"moved{step}.jsonl")
        else:
            settle(*dirs, projects)
        assert found(env, tmp_path, cache) == found(env, tmp_path, None), step
