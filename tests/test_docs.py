"""Docs stay true: every command, option-bearing help and setting is documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from usageledger.cli.root import main
from usageledger.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def commands(
    group: click.Group, prefix: str = "usageledger"
) -> Iterator[tuple[str, click.Command]]:
    """Every command path of the CLI with its command object (loading lazy commands)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


ALL = list(commands(main))


@pytest.mark.parametrize(("path", "command"), ALL, ids=[p for p, _ in ALL])
def test_every_command_is_documented_with_an_example(path: str, command: click.Command) -> None:
    """The command appears in README.md or docs/, and its --help shows an example."""
    assert path in DOCS, f"{path} is not mentioned in README.md or docs/"
    assert "Example" in (command.help or ""), f"{path} --help has no example"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    """Each USAGELEDGER_ variable has a row in docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert f"`USAGELEDGER_{field.upper()}`" in text


@pytest.mark.parametrize(
    "module",
    [
        "usageledger.cli.ops",
        "usageledger.cli.tracker",
        "usageledger.cli.read",
        "usageledger.cli.setup",
    ],
)
def test_every_command_a_module_exports_is_registered(module: str) -> None:
    """The lazy command table names every command of each command module."""
    import importlib

    from usageledger.cli.root import COMMANDS

    exported = importlib.import_module(module).commands
    registered = {getattr(importlib.import_module(m), a) for m, a in COMMANDS.values()}
    assert set(exported) <= registered


def test_the_quick_start_has_exactly_two_commands() -> None:
    """The README's quick start block holds the run command and the test command."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert lines == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_readme_lists_every_supported_assistant_and_sources_md_describes_it() -> None:
    """Each registered parser's ``--source`` name is in the README's table and has its own
    section heading in docs/sources.md."""
    from usageledger.sources import PARSERS

    readme = (ROOT / "README.md").read_text()
    headings = [
        line for line in (ROOT / "docs" / "sources.md").read_text().splitlines() if line[:1] == "#"
    ]
    for name in PARSERS:
        assert f"| `{name}` |" in readme, f"{name} is missing from the README's assistants"
        assert any(f"(`{name}`)" in h for h in headings), f"docs/sources.md has no {name} section"
