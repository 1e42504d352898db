"""Prose stands on its own: no text of the repository points at a document outside it, and
every reference to a page of docs/ (``docs/api.md#…``, ``docs/design.md §4``) points at a page
and a section that exist.

CHANGELOG.md is not read: released entries are a record and keep the words they shipped with.
The tests that read the real logs kept beside the repository build that path in code, from
parts (``".." / "shared"``), which none of the patterns below matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: This file plants bad lines on purpose (as strings, to test the check itself).
SELF = Path(__file__).resolve()
#: Folders and top-level files whose text is prose the project keeps.
FOLDERS = ("src", "docs", "tests", "bench", "scripts", ".ci")
TOP_FILES = ("README.md", "Makefile", "pyproject.toml")
TEXT_SUFFIXES = frozenset(
    {".py", ".md", ".toml", ".sh", ".html", ".js", ".css", ".txt", ".cfg", ".ini", ".mako"}
)
#: Data, not prose: recorded assistant logs and generated output.
SKIP_PARTS = frozenset({"__pycache__", "samples", "out", "screenshots", "examples"})

#: Words that point at a document outside the repository, each with what to write instead.
OUTSIDE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bDESIGN\b"), "an outside design document; cite docs/design.md §n"),
    (re.compile(r"\bSTYLE\b"), "an outside style guide; say the rule, or cite docs/design.md"),
    (
        re.compile(r"\.\./shared\b|\bshared/(?:data|notes|seed)\b"),
        "a folder outside the repository",
    ),
    (re.compile(r"\bseed/|backend-mvp-guardrails"), "an outside guardrails document"),
    (re.compile(r"\bthe seed(?:'s)?\b", re.IGNORECASE), "an outside guardrails document"),
    (re.compile(r"\bguardrail \d", re.IGNORECASE), "a numbered outside guardrail"),
    (re.compile(r"\bhabit \d", re.IGNORECASE), "a numbered outside style habit"),
    (re.compile(r"assistant-formats\.md"), "an outside notes file"),
)

#: ``docs/page.md`` or ``docs/page.md#anchor``, anywhere.
DOC_PATH = re.compile(r"(?<![\w/.-])docs/([\w-]+\.md)(?:#([\w-]+))?")
#: A Markdown link from a page of docs/ to a sibling: ``](page.md#anchor)`` or ``](#anchor)``.
RELATIVE_LINK = re.compile(r"\]\((?:\./)?([\w-]+\.md)?(?:#([\w-]+))?\)")
#: ``design.md §4``, ``docs/design.md §2–§3``, ``docs/design.md §2, §6``.
SECTIONS = re.compile(r"design\.md\s*((?:§\d+)(?:\s*(?:,|–|-|and)\s*§\d+)*)")
NUMBERED_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad line: where it is and what is wrong with it."""

    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def text_files(root: Path = ROOT) -> Iterator[Path]:
    """Every text file of the repository whose prose the project keeps."""
    for name in TOP_FILES:
        if (root / name).is_file():
            yield root / name
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root).parts
            if not path.is_file() or SKIP_PARTS.intersection(relative) or path == SELF:
                continue
            if any(part.endswith(".egg-info") for part in relative):
                continue
            if path.suffix in TEXT_SUFFIXES or (folder == ".ci" and not path.suffix):
                yield path


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them (duplicates numbered)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def sections(page: Path) -> set[int]:
    """The numbers of a page's numbered sections (``## 4. Ingest rules`` is 4)."""
    return {int(n) for n in NUMBERED_HEADING.findall(page.read_text(encoding="utf-8"))}


def check_reference(page: str, anchor: str | None, docs: Path, where: str) -> Iterator[Problem]:
    """A reference to ``docs/page`` (and its anchor) that does not resolve."""
    target = docs / page
    if not target.is_file():
        yield Problem(where, f"docs/{page} does not exist")
    elif anchor is not None and anchor not in anchors(target):
        yield Problem(where, f"docs/{page} has no section #{anchor}")


def problems(path: Path, root: Path = ROOT, docs: Path = DOCS) -> Iterator[Problem]:
    """What is wrong with the prose of one file, line by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    in_docs = path.parent == docs
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        for pattern, why in OUTSIDE:
            if match := pattern.search(line):
                yield Problem(where, f"{match.group(0)!r} points at {why}")
        for match in DOC_PATH.finditer(line):
            yield from check_reference(match.group(1), match.group(2), docs, where)
        if in_docs:
            for match in RELATIVE_LINK.finditer(line):
                page, anchor = match.group(1) or path.name, match.group(2)
                if match.group(1) is not None or anchor is not None:
                    yield from check_reference(page, anchor, docs, where)
        for match in SECTIONS.finditer(line):
            known = sections(docs / "design.md") if (docs / "design.md").is_file() else set()
            for n in re.findall(r"§(\d+)", match.group(1)):
                if int(n) not in known:
                    yield Problem(where, f"docs/design.md has no section §{n}")


def test_no_text_points_outside_the_repository_and_every_docs_reference_resolves() -> None:
    """Every text file is clean; the failure lists each bad line as file:line."""
    found = [str(p) for path in text_files() for p in problems(path)]
    assert not found, "\n".join(found)


def test_the_walk_covers_code_docs_tests_and_the_readme() -> None:
    """The files the rules matter most for are among those read."""
    walked = {p.relative_to(ROOT).as_posix() for p in text_files()}
    for name in ("README.md", "docs/design.md", "src/usageledger/evidence.py", "tests/conftest.py"):
        assert name in walked, name
    assert "CHANGELOG.md" not in walked


def test_the_design_has_its_numbered_sections() -> None:
    """docs/design.md has the sections §1–§8 that code and docs cite."""
    assert sections(DOCS / "design.md") == set(range(1, 9))
    assert "2-data-layers" in anchors(DOCS / "design.md")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"""Replay the ledger (DESIGN §2)."""', "'DESIGN' points at an outside design"),
        ("as STYLE.md says", "'STYLE' points at an outside style guide"),
        ("one rebuild path (habit 6)", "'habit 6' points at a numbered outside style habit"),
        ("the seed's stop rule", '"the seed\'s" points at an outside guardrails'),
        ("See seed/backend-mvp-guardrails.md.", "'seed/' points at an outside guardrails"),
        ("Guardrail 6 says so", "'Guardrail 6' points at a numbered outside guardrail"),
        ("logs in ../shared/data/real", "'../shared' points at a folder outside"),
        ("see docs/nowhere.md", "docs/nowhere.md does not exist"),
        ("see docs/design.md#9-nothing", "docs/design.md has no section #9-nothing"),
        ("the rules of docs/design.md §2–§12", "docs/design.md has no section §12"),
    ],
)
def test_a_planted_bad_line_fails_naming_its_file_and_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    """A file with one bad line among good ones yields exactly one problem, at that line."""
    planted = tmp_path / "src" / "planted.py"
    planted.parent.mkdir()
    good = "# Fine: docs/design.md §2, §4 and docs/design.md#3-token-semantics; random.seed(7)\n"
    planted.write_text(good + f"# {line}\n" + good, encoding="utf-8")
    found = list(problems(planted, root=tmp_path))
    assert [p.where for p in found] == ["src/planted.py:2"], found
    assert expected in str(found[0]), found[0]


def test_a_relative_link_between_pages_is_checked_too(tmp_path: Path) -> None:
    """Inside docs/, ``](page.md#anchor)`` and ``](#anchor)`` links must resolve as well."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\n## Two words\n\n[ok](#two-words) [ok](b.md#b)\n")
    (docs / "b.md").write_text("# B\n\n[bad](a.md#three-words) [bad](#nothing) [bad](c.md)\n")
    assert list(problems(docs / "a.md", root=tmp_path, docs=docs)) == []
    found = [str(p) for p in problems(docs / "b.md", root=tmp_path, docs=docs)]
    assert found == [
        "docs/b.md:3: docs/a.md has no section #three-words",
        "docs/b.md:3: docs/b.md has no section #nothing",
        "docs/b.md:3: docs/c.md does not exist",
    ]
