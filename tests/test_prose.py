"""Prose stands on its own: no text of the repository points at a document outside it, and
every document it names is in it.

- Every ``*.md`` file named anywhere must exist in the repository: a path (``docs/api.md``,
  ``../README.md``) from the naming file's folder or from the repository's root, a bare name
  (``tracker.md``) somewhere in it. ``NOTES.md`` or ``../notes/design.md`` fail.
- Every ``§n`` must say whose section it is and that section must exist: ``docs/design.md §4``,
  ``[design §6](design.md#6-…)`` (the link's page), or, inside a page with numbered sections, a
  bare ``§n`` of that page. ``design §4 says`` or ``as the spec §4 says`` fail.
- Every ``src/…``, ``tests/…``, ``scripts/…`` and ``bench/…`` path named must exist.
- References to ``docs/page.md#anchor`` (and ``](page.md#anchor)`` links between pages) must
  name a heading of the page.
- Words that point at documents outside (an outside design, a style guide, a brief, the folder
  beside the clone) fail by name.

CHANGELOG.md is not read: released entries are a record and keep the words they shipped with.
The tests that read the real logs kept beside the repository build that path in code, from
parts (``".." / "shared"``), which none of the patterns below matches.
"""

from __future__ import annotations

import functools
import os
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
    (re.compile(r"\bthe brief\b", re.IGNORECASE), "an outside brief; say the rule itself"),
)

#: ``docs/page.md`` or ``docs/page.md#anchor``, anywhere.
DOC_PATH = re.compile(r"(?<![\w/.-])docs/([\w-]+\.md)(?:#([\w-]+))?")
#: A Markdown link from a page of docs/ to a sibling: ``](page.md#anchor)`` or ``](#anchor)``.
RELATIVE_LINK = re.compile(r"\]\((?:\./)?([\w-]+\.md)?(?:#([\w-]+))?\)")
#: ``page.md §4``, ``docs/design.md §2–§3``, ``docs/design.md §2, §6``: sections of a page.
PAGE_SECTIONS = re.compile(
    r"((?:[\w.-]+/)*[\w-][\w.-]*\.md)\s*((?:§\d+)(?:\s*(?:,|–|-|and)\s*§\d+)*)"
)
#: ``[design §6](design.md#6-…)``: sections named in a link's text are sections of its page.
LINKED_SECTIONS = re.compile(r"\[([^\]]*§\d+[^\]]*)\]\(((?:[\w.-]+/)*[\w-][\w.-]*\.md)[^)]*\)")
SECTION = re.compile(r"§(\d+)")
#: A Markdown file named in prose: ``README.md``, ``docs/api.md``, ``../notes/design.md``
#: (not a suffix such as ``.replay-plan.md``).
MD_NAME = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*(?:[\w-][\w.-]*/)*[\w-][\w.-]*\.md)(?![\w-])")
#: A path of the repository's code folders: ``src/usageledger/cli/errors.py``, ``tests/faults``.
REPO_PATH = re.compile(r"(?<![\w/.-])((?:src|tests|scripts|bench)/[\w./-]*)")
#: What ends a path early: a placeholder (``sources/<name>.py``), a glob or an ellipsis.
PLACEHOLDER = frozenset("<{*[…")
URL = re.compile(r"\b[a-z][\w+.-]*://\S*")
#: Names of a kind of file the project asks for, given as examples: the replay plan a breaking
#: migration ships beside it (``versions/0009_xyz.replay-plan.md``, docs/schema-evolution.md),
#: which exists only once such a migration does.
EXAMPLE_KINDS = (".replay-plan.md",)
#: Folders whose files are no part of the repository's text (tools, caches, environments).
NOT_REPOSITORY = frozenset(
    {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
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


@functools.cache
def file_names(root: Path) -> frozenset[str]:
    """The name of every file in the repository at ``root`` (for a bare ``name.md``)."""
    found: set[str] = set()
    for _folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if f not in NOT_REPOSITORY and not f.endswith(".egg-info")]
        found.update(files)
    return frozenset(found)


@functools.cache
def generated(root: Path) -> tuple[str, ...]:
    """The folders .gitignore names by path (``bench/out/``): output the repository makes."""
    ignore = root / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
    return tuple(line.strip().lstrip("/") for line in lines if "/" in line.strip().rstrip("/"))


def inside(root: Path, *candidates: Path) -> Path | None:
    """The first of ``candidates`` that exists within ``root``, or ``None``."""
    top = root.resolve()
    for candidate in candidates:
        target = candidate.resolve()
        if target.is_relative_to(top) and target.exists():
            return target
    return None


def page_of(name: str, path: Path, root: Path, docs: Path) -> Path | None:
    """The Markdown page ``name`` stands for, seen from ``path``: a sibling, a page of docs/
    (for a bare name) or a path from the repository's root."""
    if "/" not in name:
        return inside(root, path.parent / name, docs / name)
    return inside(root, path.parent / name, root / name)


def section_problems(
    line: str, path: Path, root: Path, docs: Path, where: str
) -> Iterator[Problem]:
    """Every ``§n`` of ``line`` whose page is not said or has no such numbered section."""
    owned: dict[int, Path | None] = {}  # position of a § -> the page it belongs to
    for match in PAGE_SECTIONS.finditer(line):
        page = page_of(match.group(1), path, root, docs)
        for number in SECTION.finditer(match.group(2)):
            owned[match.start(2) + number.start()] = page
    for match in LINKED_SECTIONS.finditer(line):
        page = page_of(match.group(2), path, root, docs)
        for number in SECTION.finditer(match.group(1)):
            owned[match.start(1) + number.start()] = page
    own_sections = sections(path) if path.suffix == ".md" else set()
    for number in SECTION.finditer(line):
        n = int(number.group(1))
        if number.start() in owned:
            page = owned[number.start()]
            if page is not None and n not in sections(page):  # a missing page: MD_NAME says so
                shown = page.relative_to(root.resolve()).as_posix()
                yield Problem(where, f"{shown} has no section §{n}")
        elif own_sections:
            if n not in own_sections:
                yield Problem(where, f"{path.name} has no section §{n}")
        else:
            yield Problem(
                where,
                f"'§{n}' names no document: write docs/design.md §{n} (or the page it is in)",
            )


def name_problems(
    line: str, path: Path, root: Path, spans: list[tuple[int, int]], where: str
) -> Iterator[Problem]:
    """Every ``*.md`` file and every ``src/``, ``tests/``, ``scripts/``, ``bench/`` path of
    ``line`` that is not in the repository (``spans`` are checked already, as docs pages)."""
    for match in MD_NAME.finditer(line):
        if any(start <= match.start() < end for start, end in spans):
            continue
        name = match.group(1)
        if name.endswith(EXAMPLE_KINDS):
            continue
        found = (
            name in file_names(root)
            if "/" not in name
            else inside(root, path.parent / name, root / name) is not None
        )
        if not found:
            yield Problem(where, f"{name} is not in the repository")
    for match in REPO_PATH.finditer(line):
        named = match.group(1)
        if line[match.end() : match.end() + 1] in PLACEHOLDER:
            named = named.rpartition("/")[0] + "/"  # only the folder is literal
        named = named.rstrip(".-")
        if (named.rstrip("/") + "/").startswith(generated(root)):
            continue  # made by a run, not kept (the folder itself may not exist yet)
        if inside(root, root / named) is None:
            yield Problem(where, f"{named} is not in the repository")


def problems(path: Path, root: Path = ROOT, docs: Path = DOCS) -> Iterator[Problem]:
    """What is wrong with the prose of one file, line by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    in_docs = path.parent == docs
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        line = URL.sub(lambda m: " " * len(m.group(0)), raw)  # an address names no file of ours
        for pattern, why in OUTSIDE:
            if match := pattern.search(line):
                yield Problem(where, f"{match.group(0)!r} points at {why}")
        spans: list[tuple[int, int]] = []
        for match in DOC_PATH.finditer(line):
            spans.append(match.span())
            yield from check_reference(match.group(1), match.group(2), docs, where)
        if in_docs:
            for match in RELATIVE_LINK.finditer(line):
                page, anchor = match.group(1) or path.name, match.group(2)
                if match.group(1) is not None or anchor is not None:
                    spans.append(match.span())
                    yield from check_reference(page, anchor, docs, where)
        yield from name_problems(line, path, root, spans, where)
        yield from section_problems(line, path, root, docs, where)


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


@pytest.fixture
def planted_root(tmp_path: Path) -> Path:
    """A small repository: a README, docs/design.md (the real one, for its sections), a test
    file and a script."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text(
        (DOCS / "design.md").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "README.md").write_text("# Planted\n", encoding="utf-8")
    for name in ("tests/store/test_migrations.py", "scripts/tool.py", "bench/harness.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    return tmp_path


#: A line with every kind of reference that resolves in :func:`planted_root`.
GOOD = (
    "# Fine: docs/design.md §2, §4, docs/design.md#3-token-semantics, README.md, design.md §3,"
    " ../README.md, tests/store/test_migrations.py, scripts/, bench/harness.py,"
    " src/planted.py, src/<name>.py, versions/0009_xyz.replay-plan.md; random.seed(7)\n"
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"""Replay the ledger (DESIGN 2)."""', "'DESIGN' points at an outside design"),
        ("as STYLE.md says", "'STYLE' points at an outside style guide"),
        ("one rebuild path (habit 6)", "'habit 6' points at a numbered outside style habit"),
        ("the seed's stop rule", '"the seed\'s" points at an outside guardrails'),
        ("See seed/backend-mvp-guardrails.md.", "'seed/' points at an outside guardrails"),
        ("Guardrail 6 says so", "'Guardrail 6' points at a numbered outside guardrail"),
        ("logs in ../shared/data/real", "'../shared' points at a folder outside"),
        ("done as asked, per the brief", "'the brief' points at an outside brief"),
        ("see docs/nowhere.md", "docs/nowhere.md does not exist"),
        ("see docs/design.md#9-nothing", "docs/design.md has no section #9-nothing"),
        ("the rules of docs/design.md §2–§12", "docs/design.md has no section §12"),
        ("see NOTES.md", "NOTES.md is not in the repository"),
        ("see CONTRIBUTING.md first", "CONTRIBUTING.md is not in the repository"),
        ("as ../notes/design.md explains", "../notes/design.md is not in the repository"),
        ("design §4 says so", "'§4' names no document: write docs/design.md §4"),
        ("as the spec §4 says", "'§4' names no document"),
        ("the spec.md §4 rule", "spec.md is not in the repository"),
        ("tests/store/test_migrate.py checks it", "tests/store/test_migrate.py is not in the"),
        ("run scripts/gone.py", "scripts/gone.py is not in the repository"),
        ("bench/nowhere/ holds it", "bench/nowhere/ is not in the repository"),
        ("in src/usageledger/cli.py.", "src/usageledger/cli.py is not in the repository"),
    ],
)
def test_a_planted_bad_line_fails_naming_its_file_and_line(
    planted_root: Path, line: str, expected: str
) -> None:
    """A file with one bad line among good ones yields problems at that line only, the first
    saying what is wrong (``STYLE.md`` is both an outside guide and a missing file)."""
    planted = planted_root / "src" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(GOOD + f"# {line}\n" + GOOD, encoding="utf-8")
    found = list(problems(planted, root=planted_root, docs=planted_root / "docs"))
    assert found, "the bad line was not found"
    assert {p.where for p in found} == {"src/planted.py:2"}, found
    assert expected in str(found[0]), found[0]


def test_a_bare_section_in_a_page_is_its_own_and_a_linked_one_is_the_links(
    planted_root: Path,
) -> None:
    """In a page with numbered sections, ``(§1)`` is that page's; ``[design §6](design.md#…)``
    is design.md's; in a page without numbered sections a bare ``§1`` names nothing."""
    docs = planted_root / "docs"
    (docs / "rules.md").write_text(
        "# Rules\n\n## 1. One\n\nSee §1 and [design §6](design.md#6-evidence-first-operations)."
        "\n\n## 2. Two\n\nNot §3, nor [design §9](design.md).\n",
        encoding="utf-8",
    )
    (docs / "plain.md").write_text("# Plain\n\nAs §1 says.\n", encoding="utf-8")
    found = [str(p) for p in problems(docs / "rules.md", root=planted_root, docs=docs)]
    assert found == [
        "docs/rules.md:9: rules.md has no section §3",
        "docs/rules.md:9: docs/design.md has no section §9",
    ]
    assert [str(p) for p in problems(docs / "plain.md", root=planted_root, docs=docs)] == [
        "docs/plain.md:3: '§1' names no document: write docs/design.md §1 (or the page it is in)"
    ]


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
