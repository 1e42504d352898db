"""The config file: `usageledger config`, precedence under flags and variables, bad values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from usageledger.cli.root import main
from usageledger.tracker.config_file import ConfigError, config_path, read_config, set_value

MINE = """\
# my defaults
timezone = "UTC"   # where I live

[report]
# I like it short
start_of_week = "monday"
"""


def invoke(env: dict[str, str], *args: str) -> Result:
    """Run ``usageledger ARGS``."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write(env: dict[str, str], text: str) -> Path:
    """Write the user's config file."""
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def report(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``report ARGS --json``, parsed."""
    result = invoke(env, "report", *args, "--json")
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = orjson.loads(result.stdout)
    return parsed


def test_the_path_follows_xdg_config_home_else_the_home_directory(tmp_path: Path) -> None:
    """$XDG_CONFIG_HOME/usageledger/config.toml, else ~/.config/usageledger/config.toml."""
    assert config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path(
        "/x/usageledger/config.toml"
    )
    assert config_path({"HOME": "/h"}) == Path("/h/.config/usageledger/config.toml")
    result = invoke({"XDG_CONFIG_HOME": str(tmp_path)}, "config", "path")
    assert result.stdout.strip() == str(tmp_path / "usageledger" / "config.toml")


def test_set_keeps_comments_order_and_other_keys(cli_env: dict[str, str]) -> None:
    """`config set` adds its key and leaves every comment and key where it was."""
    path = write(cli_env, MINE)
    assert invoke(cli_env, "config", "set", "report.breakdown", "true").exit_code == 0
    assert invoke(cli_env, "config", "set", "sources", "codex,claude").exit_code == 0
    assert path.read_text() == (
        "# my defaults\n"
        'timezone = "UTC"   # where I live\n'
        'sources = ["codex", "claude"]\n'
        "\n"
        "[report]\n"
        "# I like it short\n"
        'start_of_week = "monday"\n'
        "breakdown = true\n"
    )
    assert invoke(cli_env, "config", "get", "sources").stdout.strip() == "codex,claude"
    assert invoke(cli_env, "config", "unset", "report.breakdown").exit_code == 0
    assert invoke(cli_env, "config", "unset", "sources").exit_code == 0
    assert path.read_text() == MINE


def test_unset_of_a_missing_key_and_get_of_an_unset_key(cli_env: dict[str, str]) -> None:
    """Unset of nothing changes nothing; get of an unset key exits 1."""
    path = write(cli_env, MINE)
    assert "was not set" in invoke(cli_env, "config", "unset", "server").stdout
    assert path.read_text() == MINE
    assert invoke(cli_env, "config", "get", "server").exit_code == 1


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("timezone", "Mars/Base", "unknown time zone"),
        ("sources", "codex,nope", "unknown source 'nope'"),
        ("report.columns", "tokens", "unknown column 'tokens'"),
        ("report.start_of_week", "someday", "day of the week"),
        ("server", "ledger.example", "base URL"),
        ('prices."m".input', "cheap", "USD per million"),
        ("colour", "blue", "unknown key"),
    ],
)
def test_set_refuses_a_bad_value_naming_the_key_and_leaves_the_file(
    cli_env: dict[str, str], key: str, value: str, reason: str
) -> None:
    """A value its rule refuses: exit 2, the key and the reason, and the file unchanged."""
    path = write(cli_env, MINE)
    result = invoke(cli_env, "config", "set", key, value)
    assert result.exit_code == 2
    assert key in result.stderr
    assert reason in result.stderr
    assert path.read_text() == MINE


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('timezone = "Nowhere/Land"\n', "timezone"),
        ("[report]\ncolumns = [1]\n", "report.columns"),
        ('[prices."m"]\ninput = "1"\n', "prices.m.output"),
        ("volume = 11\n", "volume"),
    ],
)
def test_a_bad_file_stops_tracker_commands_with_exit_2_naming_key_and_file(
    cli_env: dict[str, str], text: str, key: str
) -> None:
    """Every tracker command refuses to run on a bad file, naming the key and the path."""
    path = write(cli_env, text)
    for args in (("report", "--no-scan"), ("scan",), ("status",)):
        result = invoke(cli_env, *args)
        assert result.exit_code == 2, args
        assert str(path) in result.stderr
        assert key in result.stderr


def test_a_file_that_is_not_toml_is_one_clear_error(cli_env: dict[str, str]) -> None:
    """Broken TOML: exit 2 naming the file; `config set` does not rewrite it."""
    path = write(cli_env, "timezone = \n[[[")
    assert "not valid TOML" in invoke(cli_env, "report", "--no-scan").stderr
    assert invoke(cli_env, "config", "set", "timezone", "UTC").exit_code == 2
    assert path.read_text() == "timezone = \n[[["


def test_a_flag_beats_the_environment_which_beats_the_file(cli_env: dict[str, str]) -> None:
    """Zone: the file's applies alone, the variable beats it, --timezone beats both."""
    write(cli_env, 'timezone = "Asia/Tokyo"\n')
    assert report(cli_env)["timezone"] == "Asia/Tokyo"
    variable = {**cli_env, "USAGELEDGER_TIMEZONE": "America/New_York"}
    assert report(variable, "--no-scan")["timezone"] == "America/New_York"
    flagged = report(variable, "--no-scan", "--timezone", "Europe/Berlin")
    assert flagged["timezone"] == "Europe/Berlin"
    bad = invoke({**cli_env, "USAGELEDGER_TIMEZONE": "Mars/Base"}, "report", "--no-scan")
    assert bad.exit_code == 2
    assert "USAGELEDGER_TIMEZONE" in bad.stderr


def test_the_files_sources_limit_what_is_scanned_unless_a_flag_says_otherwise(
    cli_env: dict[str, str],
) -> None:
    """`sources = ["codex"]` scans and reports Codex only; --source and the variable win."""
    write(cli_env, 'sources = ["codex"]\n')
    only = report(cli_env)
    assert {m["source"] for d in only["days"] for m in d["models"]} == {"codex"}
    claude = report(cli_env, "--no-scan", "--source", "claude")
    assert claude["sources"] == ["claude"]
    assert claude["totals"]["total_tokens"] == 0  # never scanned: the file said codex only
    both = report({**cli_env, "USAGELEDGER_SOURCES": "codex,claude"})
    assert {m["source"] for d in both["days"] for m in d["models"]} == {"codex", "claude"}


def test_report_columns_and_breakdown_come_from_the_file(cli_env: dict[str, str]) -> None:
    """The file's columns choose the table's count columns; breakdown adds model rows."""
    write(cli_env, '[report]\ncolumns = ["output_tokens"]\nbreakdown = true\n')
    table = invoke(cli_env, "report").stdout
    assert "Output" in table
    assert "Cache read" not in table
    assert "└ gpt-5 (codex)" in table
    header = invoke(cli_env, "report", "--csv", "--no-scan").stdout.splitlines()[0]
    assert header == "day,models,source,model,output_tokens,cost_usd"


def test_a_price_override_replaces_the_models_price_on_every_day(cli_env: dict[str, str]) -> None:
    """gpt-5 at $1000/M input and output: its cost follows; other models keep theirs."""
    before = report(cli_env, "models")
    write(cli_env, '[prices."gpt-5"]\ninput = "1000"\noutput = "1000"\n')
    after = report(cli_env, "models", "--no-scan")

    def cost(rep: dict[str, Any], model: str) -> Decimal:
        return sum(
            (Decimal(r["cost_usd"]) for r in rep["models"] if r["model"] == model), Decimal(0)
        )

    gpt5 = [r for r in after["models"] if r["model"] == "gpt-5"]
    expected = sum(
        Decimal(r["input_tokens"] + r["cached_input_tokens"] + r["output_tokens"]) for r in gpt5
    ) * Decimal("0.001")
    assert cost(after, "gpt-5") == expected
    assert cost(after, "gpt-5-codex") == cost(before, "gpt-5-codex")


def test_set_writes_a_price_one_field_at_a_time(tmp_path: Path) -> None:
    """A half-written price is allowed while editing, and complete once output is set."""
    path = tmp_path / "config.toml"
    set_value(path, 'prices."claude.local".input', "1.5")
    with pytest.raises(ConfigError, match="output"):
        read_config(path)
    set_value(path, 'prices."claude.local".output', "3")
    assert read_config(path).prices == {
        "claude.local": {
            "input": "1.5",
            "cached_input": "1.5",
            "cache_write": "1.5",
            "output": "3",
        }
    }


def test_show_lists_each_key_with_where_it_comes_from(cli_env: dict[str, str]) -> None:
    """`config show --json` marks the file's keys and the variables that beat them."""
    write(cli_env, MINE)
    shown = orjson.loads(
        invoke({**cli_env, "USAGELEDGER_TIMEZONE": "Asia/Tokyo"}, "config", "show", "--json").stdout
    )
    assert shown["keys"]["timezone"] == {"value": "Asia/Tokyo", "from": "USAGELEDGER_TIMEZONE"}
    assert shown["keys"]["report.start_of_week"] == {"value": "monday", "from": "file"}


def test_a_hook_with_a_bad_file_records_its_error_under_usageledger_home(
    cli_env: dict[str, str],
) -> None:
    """The variable is valid, the file is not: the error goes where `status` looks."""
    path = write(cli_env, 'timezone = "Nowhere/Land"\n')
    assert invoke(cli_env, "hook", "--wait", "claude").exit_code == 0
    from usageledger.tracker.hook import last_errors

    data = Path(cli_env["USAGELEDGER_HOME"])
    assert str(path) in last_errors(data)[-1]["message"]
    assert last_errors(Path(cli_env["XDG_DATA_HOME"]) / "usageledger") == []
    path.unlink()  # once the file is fixed, status shows what went wrong meanwhile
    shown = orjson.loads(invoke(cli_env, "status", "--json").stdout)
    assert str(path) in shown["hook_errors"][-1]["message"]


def test_a_hook_with_a_bad_usageledger_home_records_its_error_under_the_default_home(
    cli_env: dict[str, str],
) -> None:
    """An empty USAGELEDGER_HOME names no folder: the error goes to the default home."""
    from usageledger.tracker.hook import last_errors

    bad = {**cli_env, "USAGELEDGER_HOME": ""}
    assert invoke(bad, "hook", "--wait", "claude").exit_code == 0
    default = Path(cli_env["XDG_DATA_HOME"]) / "usageledger"
    assert "USAGELEDGER_HOME" in last_errors(default)[-1]["message"]
