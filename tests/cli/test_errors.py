"""One mapping from a failure to its exit status and message, for every command.

Exit status 1 when the command ran and could not finish (a domain refusal, a database that
cannot be reached, a file that cannot be written); 2 when it cannot run as asked (an option, a
setting, the config file). Either way one ``error:`` line on standard error, no traceback.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from bench.harness import LOOPBACK, free_port, libpq_url
from tests.tracker.conftest import user_env
from usageledger.cli import errors
from usageledger.cli.root import main
from usageledger.errors import LedgerError, NotFound, ValidationFailed
from usageledger.ledger.pricing import InvalidCountsError, PricingFileError
from usageledger.settings_rules import SettingsError

CLI_PACKAGE = Path(errors.__file__).parent


def server_env(tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of a server command on the database at ``url``."""
    return {
        "USAGELEDGER_DATABASE_URL": url,
        "USAGELEDGER_HOME": str(tmp_path / "data"),
        "USAGELEDGER_LOG_FILE": "off",
    }


def assert_one_error_line(result: Result, status: int, *words: str) -> None:
    """Exit ``status``, standard error one ``error:`` line naming ``words``, no traceback."""
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> dict[str, str]:
    """The environment of a migrated, empty SQLite server ledger."""
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'server.db'}")
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    return env


# -- operational errors: exit status 1 ---------------------------------------------------------


def test_a_domain_refusal_is_exit_1_and_one_line(sqlite_ledger: dict[str, str]) -> None:
    """Revoking a token that does not exist: the domain's NotFound, exit 1."""
    result = CliRunner().invoke(main, ["tokens", "revoke", "999"], env=sqlite_ledger)
    assert_one_error_line(result, 1, "999")


def test_a_database_server_that_cannot_be_reached_is_exit_1(tmp_path: Path) -> None:
    """Nothing listens on the port: the server is down, the URL may well be right."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/ledger"
    result = CliRunner().invoke(main, ["users", "list"], env=server_env(tmp_path, url))
    assert_one_error_line(result, 1, "cannot open the database", "127.0.0.1")


def test_a_file_that_cannot_be_written_is_exit_1_naming_it(tmp_path: Path) -> None:
    """`prices import --output` into a folder that is not there: an I/O error no command
    catches itself becomes one line naming the file, not a traceback."""
    price_map = tmp_path / "prices.json"
    price_map.write_bytes(
        orjson.dumps(
            {
                "acme-coder-9": {
                    "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06,
                    "litellm_provider": "openai",
                    "mode": "chat",
                }
            }
        )
    )
    output = tmp_path / "missing" / "new-prices.json"
    result = CliRunner().invoke(
        main,
        ["prices", "import", "--litellm", str(price_map), "--output", str(output)],
        env=server_env(tmp_path, f"sqlite:///{tmp_path / 'server.db'}"),
    )
    assert_one_error_line(result, 1, str(output), "No such file or directory")


def test_a_tracker_ledger_that_cannot_be_opened_is_exit_1(tmp_path: Path) -> None:
    """USAGELEDGER_HOME is a file, so the ledger's folder cannot be made."""
    env = user_env(tmp_path)
    Path(env["USAGELEDGER_HOME"]).write_text("not a folder")
    result = CliRunner().invoke(main, ["report", "--no-scan"], env=env)
    assert_one_error_line(result, 1, "cannot open the ledger")


def test_an_unreachable_database_in_a_real_process_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    """The console entry point, not only the click group: the same line and status."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/ledger"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("USAGELEDGER")}
    done = subprocess.run(
        [sys.executable, "-m", "usageledger", "users", "list"],
        env={**environ, **server_env(tmp_path, url)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: cannot open the database"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


# -- usage and settings errors: exit status 2 --------------------------------------------------


def test_a_bad_environment_setting_is_exit_2(tmp_path: Path) -> None:
    """A server command with an invalid variable names the variable."""
    env = {**server_env(tmp_path, f"sqlite:///{tmp_path / 's.db'}"), "USAGELEDGER_MAX_BUCKETS": "x"}
    result = CliRunner().invoke(main, ["users", "list"], env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "USAGELEDGER_MAX_BUCKETS" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_config_file_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    """A tracker command on a config file that is not TOML."""
    env = user_env(tmp_path)
    path = Path(env["XDG_CONFIG_HOME"]) / "usageledger" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("timezone = \n[[[")
    result = CliRunner().invoke(main, ["report", "--no-scan"], env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["report", "--json", "--csv", "--no-scan"], ("--json and --csv",)),
        (["report", "--since", "someday", "--no-scan"], ("--since/--until",)),
        (["blocks", "--token-limit", "lots", "--no-scan"], ("--token-limit",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_bad_option_value_is_exit_2_and_one_line(
    tmp_path: Path, args: list[str], words: tuple[str, ...]
) -> None:
    """Values click cannot check itself: our line, click's status."""
    result = CliRunner().invoke(main, args, env=user_env(tmp_path))
    assert_one_error_line(result, 2, *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["users", "create", "bad name!"], ("invalid user name", "'bad name!'")),
        (["users", "create", "carol", "--tz", "Not/AZone"], ("Not/AZone",)),
        (["users", "create", "alice"], ("'alice' already exists",)),
        (["tokens", "issue", "--user", "alice", "--kind", "device"], ("--device NAME",)),
        (["tokens", "issue", "--user", "bob", "--kind", "device"], ("--device NAME",)),
        (["tokens", "issue", "--user", "alice", "--kind", "read", "--device", "x"], ("read",)),
        (["tokens", "issue", "--user", "alice", "--device", "bad device!"], ("device name",)),
        (["verify", "--from", "2026-11-02", "--to", "2026-11-01"], ("is after --to",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_value_the_command_refuses_is_exit_2_and_one_line(
    sqlite_ledger: dict[str, str], args: list[str], words: tuple[str, ...]
) -> None:
    """A name, a time zone, a range or a missing companion option that breaks a rule (a
    ``ValidationFailed`` of the command's own input) is a usage error like one click finds,
    exit 2; ``bob`` does not exist, and the missing --device is still what is reported."""
    runner = CliRunner()
    created = runner.invoke(main, ["users", "create", "alice"], env=sqlite_ledger)
    assert created.exit_code == 0, created.output
    result = runner.invoke(main, args, env=sqlite_ledger)
    assert_one_error_line(result, 2, *words)


def test_a_price_file_that_cannot_be_used_is_exit_2_naming_it(tmp_path: Path) -> None:
    """`prices missing --prices FILE` on a file that is not JSON: the pricing error of the
    command's input goes through the mapping (no traceback), exit 2, naming the file."""
    bad = tmp_path / "prices.json"
    bad.write_text("{ not json")
    result = CliRunner().invoke(
        main,
        ["prices", "missing", "--prices", str(bad), "gpt-5"],
        env=server_env(tmp_path, f"sqlite:///{tmp_path / 'server.db'}"),
    )
    assert_one_error_line(result, 2, str(bad))


def test_serve_on_a_busy_port_is_exit_1_naming_the_address(tmp_path: Path) -> None:
    """Another socket listens on the port: one ``error:`` line naming host and port, exit 1
    (uvicorn's own message and its exit status 3 never show), and no database is made."""
    port = free_port()
    with socket.create_server((LOOPBACK, port)):
        result = CliRunner().invoke(
            main,
            ["serve", "--port", str(port)],
            env=server_env(tmp_path, f"sqlite:///{tmp_path / 'server.db'}"),
        )
    assert_one_error_line(result, 1, f"cannot listen on {LOOPBACK}:{port}", "in use")
    assert not (tmp_path / "server.db").exists()


def test_clicks_own_usage_errors_stay_exit_2(tmp_path: Path) -> None:
    """An unknown option is click's to report (with the usage line), and exits 2."""
    result = CliRunner().invoke(main, ["report", "--bogus"], env=user_env(tmp_path))
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.output


# -- the mapping itself, and that it is the only one -------------------------------------------


def test_exit_for_maps_each_kind_of_failure() -> None:
    """2 for usage and settings, 1 for what happened while running."""
    assert errors.exit_for(NotFound("no user named 'x'")) == 1
    assert errors.exit_for(LedgerError("refused")) == 1
    assert errors.exit_for(ValidationFailed("invalid user name 'a b'")) == 2
    assert errors.exit_for(PricingFileError("p.json", "not JSON")) == 2
    assert errors.exit_for(InvalidCountsError("cache_write_tokens > input_tokens")) == 1
    assert errors.handled(PricingFileError("p.json", "not JSON"))
    assert errors.message_for(PricingFileError("p.json", "not JSON")) == "p.json: not JSON"
    assert errors.exit_for(FileNotFoundError(2, "No such file or directory", "/x")) == 1
    assert errors.exit_for(SettingsError("USAGELEDGER_HOME: must be a directory path")) == 2
    assert errors.exit_for(click.UsageError("no such option")) == 2
    assert errors.message_for(FileNotFoundError(2, "No such file or directory", "/x")) == (
        "/x: No such file or directory"
    )


def exits(tree: ast.AST) -> list[str]:
    """Every way ``tree`` ends the process: ``sys.exit(…)``, ``exit(…)``, ``os._exit(…)``,
    ``raise SystemExit``, click's ``Exit`` and ``ctx.exit(…)``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in {"sys.exit", "exit", "quit", "os._exit"} or name.endswith(".exit"):
                found.append(f"{node.lineno}: {name}(")
        elif isinstance(node, ast.Raise) and node.exc is not None:
            raised = ast.unparse(node.exc)
            if raised.startswith(("SystemExit", "click.exceptions.Exit", "Exit(")):
                found.append(f"{node.lineno}: raise {raised}")
        elif isinstance(node, (ast.Attribute, ast.Name, ast.alias)):
            text = node.name if isinstance(node, ast.alias) else ast.unparse(node)
            if text in {"click.exceptions.Exit", "SystemExit"}:
                found.append(f"{getattr(node, 'lineno', 0)}: {text}")
    return found


def test_only_the_errors_module_ends_the_process() -> None:
    """No command module calls ``sys.exit`` or raises ``SystemExit`` itself."""
    stray = {
        path.name: found
        for path in sorted(CLI_PACKAGE.glob("*.py"))
        if path.name != "errors.py" and (found := exits(ast.parse(path.read_text())))
    }
    assert stray == {}
    # The scan is not blind: it sees the one place that does end the process.
    assert exits(ast.parse((CLI_PACKAGE / "errors.py").read_text()))


def test_the_console_entry_imports_neither_click_nor_rich() -> None:
    """``usageledger.cli`` (the console script's module) loads the click group only when
    ``main`` runs, so a fast path can answer before click is imported."""
    probe = (
        "import sys, usageledger.cli as c; "
        "print(sorted(m for m in ('click', 'rich') if m in sys.modules), callable(c.main))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[] True"


@pytest.mark.postgres
def test_a_postgresql_login_that_is_refused_is_a_settings_error(
    pg_server_url: str, tmp_path: Path
) -> None:
    """The server answers and refuses the role in the URL: the URL is wrong, exit 2 (while
    a server that does not answer at all is exit 1, above)."""
    url = libpq_url(
        make_url(pg_server_url)
        .set(username=f"no_such_role_{os.getpid()}")
        .render_as_string(hide_password=False)
    )
    result = CliRunner().invoke(main, ["users", "list"], env=server_env(tmp_path, url))
    assert_one_error_line(result, 2, "cannot open the database", "does not exist")
