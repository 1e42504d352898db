"""Docs stay true: every command, option-bearing help and setting is documented."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


CLI_PACKAGE = ROOT / "src" / "usageledger" / "cli"
#: Every module of the cli package but ``root``, whose one command is the group itself.
CLI_MODULES = sorted(
    f"usageledger.cli.{p.stem}" for p in CLI_PACKAGE.glob("*.py") if p.stem != "root"
)


def top_level_commands(module: ModuleType) -> set[click.Command]:
    """The commands a module defines that are no group's sub-command in it (``users``, not
    ``users create``)."""
    defined = [v for v in vars(module).values() if isinstance(v, click.Command)]
    nested = {id(sub) for v in defined if isinstance(v, click.Group) for sub in v.commands.values()}
    return {command for command in defined if id(command) not in nested}


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_command_module_exports_its_commands_and_each_is_registered(module: str) -> None:
    """A module that defines commands lists them all in ``commands`` and the lazy command
    table (``COMMANDS``) registers each of them; a module without commands has no list."""
    from usageledger.cli.root import COMMANDS

    loaded = importlib.import_module(module)
    defined = top_level_commands(loaded)
    registered = {
        id(getattr(importlib.import_module(m), a)) for m, a in COMMANDS.values() if m == module
    }
    if not defined:
        assert not hasattr(loaded, "commands")
        assert registered == set()
        return
    exported = loaded.commands
    assert len(exported) == len(set(exported)) == len(defined)
    assert set(exported) == defined
    assert {id(command) for command in exported} == registered


def test_every_registered_module_is_a_command_module() -> None:
    """``COMMANDS`` names only modules of the cli package, each of which exports ``commands``."""
    from usageledger.cli.root import COMMANDS

    modules = {m for m, _ in COMMANDS.values()}
    assert modules <= set(CLI_MODULES)
    assert all(hasattr(importlib.import_module(m), "commands") for m in modules)
    assert len(modules) == 9


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
