"""Setting the tracker up once: ``usageledger config`` and ``usageledger init``.

Thin: ``config`` reads and edits the config file through ``tracker.config_file``; ``init``
plans and applies the assistants' hooks through ``tracker.init``. Like the tracker's other
commands they load no server library; ``tomlkit`` (to edit TOML keeping its comments) loads
only when a file is written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
import orjson

from usageledger.cli.errors import OPERATIONAL, exit_with, fail, report, usage
from usageledger.settings_rules import SettingsError
from usageledger.tracker.config_file import (
    ENVIRONMENT,
    ConfigError,
    config_path,
    known_keys,
    read_config,
    set_value,
    unset_value,
)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@click.group("config")
def config_group() -> None:
    """Read and change the config file (defaults below flags and environment variables).

    \b
    Examples:
      usageledger config path
      usageledger config set timezone Europe/Berlin
      usageledger config set sources claude,codex
      usageledger config set report.columns input_tokens,output_tokens,total_tokens
      usageledger config set 'prices."my-model".input' 1.25
      usageledger config get timezone
      usageledger config unset report.breakdown
      usageledger config show --json
    """


@config_group.command("path")
def config_path_command() -> None:
    """Print the config file's path (it may not exist yet).

    \b
    Example:
      usageledger config path
    """
    click.echo(str(config_path()))


def _loaded() -> Any:
    try:
        return read_config(config_path(), partial=True)
    except ConfigError as exc:
        report(exc)


@config_group.command("get")
@click.argument("key")
def config_get(key: str) -> None:
    """Print one key's value from the file (exit 1 when it is not set).

    \b
    Example:
      usageledger config get report.start_of_week
    """
    config = _loaded()
    parts = key.replace('"', "").split(".")
    if parts[0] == "prices" and len(parts) >= 3:
        value = config.prices.get(".".join(parts[1:-1]), {}).get(parts[-1])
    else:
        value = config.get(key)
    if value is None:
        fail(f"{key} is not set in {config.path}")
    click.echo(_show(value))


@config_group.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Check VALUE for KEY and write it, keeping the file's comments and order.

    Lists are given comma-separated (sources, report.columns).

    \b
    Examples:
      usageledger config set server https://ledger.example
      usageledger config set report.breakdown true
    """
    try:
        stored = set_value(config_path(), key, value)
    except ConfigError as exc:
        report(exc)
    click.echo(f"{key} = {_show(stored)}  ({config_path()})")


@config_group.command("unset")
@click.argument("key")
def config_unset(key: str) -> None:
    """Remove KEY from the file (nothing happens when it is not there).

    \b
    Example:
      usageledger config unset timezone
    """
    try:
        removed = unset_value(config_path(), key)
    except ConfigError as exc:
        report(exc)
    click.echo(f"{key} removed" if removed else f"{key} was not set")


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(as_json: bool) -> None:
    """Every key in effect and where its value comes from (file or environment).

    \b
    Examples:
      usageledger config show
      usageledger config show --json
    """
    import os

    from usageledger.tracker.config_file import RULES

    config = _loaded()
    rows: dict[str, dict[str, Any]] = {}
    for key in RULES:
        variable = ENVIRONMENT.get(key)
        if variable and os.environ.get(variable) is not None:
            try:
                value = RULES[key](os.environ[variable])
            except ValueError as exc:
                usage(f"{variable}: {exc}")
            rows[key] = {"value": value, "from": variable}
        elif config.get(key) is not None:
            rows[key] = {"value": config.get(key), "from": "file"}
    for model, fields in config.prices.items():
        for name, price in fields.items():
            rows[f'prices."{model}".{name}'] = {"value": price, "from": "file"}
    if as_json:
        document = {"path": str(config.path), "exists": config.path.exists(), "keys": rows}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"# {config.path}" + ("" if config.path.exists() else " (not created yet)"))
    if not rows:
        click.echo(f"# nothing set; keys: {known_keys()}")
    for key, row in rows.items():
        click.echo(f"{key} = {_show(row['value'])}  # from {row['from']}")


def _executable() -> list[str]:
    """How the assistants should start usageledger: the installed script, else this Python."""
    import shutil

    found = shutil.which("usageledger")
    if found:
        return [found]
    return [sys.executable, "-m", "usageledger"]


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--uninstall", is_flag=True, help="Undo what init wrote.")
@click.option(
    "--assistant",
    "assistants",
    multiple=True,
    type=click.Choice(["claude", "codex", "gemini", "opencode"]),
    help="Only this assistant (default: every one found).",
)
@click.option("--statusline", is_flag=True, help="Also set Claude Code's statusLine.")
@click.option(
    "--timer/--no-timer",
    default=True,
    help="A user systemd timer every 15 minutes (else a crontab line); default on.",
)
def init(
    yes: bool, uninstall: bool, assistants: tuple[str, ...], statusline: bool, timer: bool
) -> None:
    """Wire each installed assistant's own hooks to a quick, detached scan (and push).

    Shows every file it will change and asks first; backs each one up; a second run changes
    nothing. `init --uninstall` restores each file byte for byte when nothing else changed it
    since, else removes only its own entries. docs/tracker.md lists what it writes.

    \b
    Examples:
      usageledger init
      usageledger init --yes --statusline
      usageledger init --assistant codex --no-timer
      usageledger init --uninstall
    """
    import os
    from pathlib import Path

    from usageledger.tracker import init as setup
    from usageledger.tracker.settings import load_tracker_settings

    try:
        data_home = load_tracker_settings().home
    except SettingsError as exc:
        report(exc)
    if uninstall:
        # The timer is disabled while its unit files still exist (systemctl needs them).
        note = setup.stop_timer(data_home, systemd=_systemd(), run=_run)
        for path, what in setup.uninstall(data_home):
            click.echo(f"{path}: {what}")
        if note:
            click.echo(note)
        click.echo("done")
        return
    paths = setup.Paths(Path.home(), os.environ)
    chosen = list(assistants) or setup.detected(paths)
    systemd = timer and _systemd()
    executable = _executable()
    try:
        changes = setup.plan(
            paths, executable, assistants=chosen, statusline=statusline, systemd=systemd
        )
    except setup.InitError as exc:
        usage(f"{exc} (nothing was changed)")
    pending = [c for c in changes if c.changed]
    if not chosen:
        click.echo("no assistant found (looked for Claude Code, Codex, Gemini CLI, Opencode)")
    for change in changes:
        mark = "change" if change.changed else "as is "
        click.echo(f"{mark}  {change.assistant}: {change.path}\n        {change.summary}")
    if timer and not systemd:
        click.echo(
            "no systemd here: add this line with `crontab -e` to scan every 15 minutes:\n  "
            + setup.crontab_line(executable)
        )
    if not pending:
        click.echo("nothing to change")
        return
    if not yes and not click.confirm("apply these changes?", default=True):
        click.echo("nothing changed")
        exit_with(OPERATIONAL)
    done = setup.apply(pending, data_home)
    click.echo(f"changed {len(done)} file(s); each has a {setup.BACKUP_SUFFIX} copy")
    if systemd:
        import subprocess

        subprocess.run(["systemctl", "--user", "enable", "--now", "usageledger.timer"], check=False)


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def _systemd() -> bool:
    """Whether systemd runs here and ``systemctl`` is there to drive a user timer."""
    from pathlib import Path

    return Path("/run/systemd/system").is_dir() and bool(_which("systemctl"))


def _run(argv: Sequence[str]) -> int:
    """Run a command quietly; its exit status (127 when it cannot be started)."""
    import subprocess

    try:
        return subprocess.run(list(argv), check=False, capture_output=True).returncode
    except OSError:
        return 127


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("assistant")
@click.argument("chained", nargs=-1, type=click.UNPROCESSED)
@click.option("--wait", is_flag=True, help="Scan in the foreground (for timers and cron).")
@click.option("--worker", is_flag=True, hidden=True)
def hook(assistant: str, chained: tuple[str, ...], wait: bool, worker: bool) -> None:
    """What `usageledger init` makes each assistant run: returns at once, scans detached.

    ASSISTANT names the caller (claude, codex, gemini, opencode, timer). Arguments after
    `--` are a notifier that was there before (Codex's `notify`): it is run, detached, with
    them and the argument the assistant passed. Never fails the assistant: errors go to
    the list `usageledger status` shows.

    \b
    Examples:
      usageledger hook claude
      usageledger hook codex -- notify-send-wrapper '{"type": "agent-turn-complete"}'
      usageledger hook --wait timer
    """
    from usageledger.tracker import hook as runner
    from usageledger.tracker.settings import load_tracker_settings

    try:
        home = load_tracker_settings().home
    except Exception as exc:  # a hook never fails its assistant
        import os

        runner.record_error(runner.error_home(os.environ), assistant, str(exc))
        return
    try:
        rest = list(chained)
        if "--" in rest:
            rest = rest[rest.index("--") + 1 :]
            if rest:
                runner.spawn_detached(rest)
        if assistant == "gemini":
            click.echo("{}")  # Gemini CLI reads a hook's stdout as JSON
        if worker or wait:
            _work(home, assistant)
        else:
            runner.spawn_detached(runner.worker_argv(assistant))
    except Exception as exc:  # a hook never fails its assistant
        runner.record_error(home, assistant, f"{type(exc).__name__}: {exc}")


def _work(home: Any, assistant: str) -> None:
    """Scan and push (debounced) under the hook lock; failures are recorded, never raised."""
    import os
    from pathlib import Path

    from usageledger.cli.tracker import clock
    from usageledger.tracker import hook as runner
    from usageledger.tracker.ledger import open_ledger
    from usageledger.tracker.login import load_login
    from usageledger.tracker.scan import scan
    from usageledger.tracker.settings import load_tracker_settings

    settings = load_tracker_settings()
    env = dict(os.environ)
    if settings.time_zone and not env.get("USAGELEDGER_DEFAULT_TIME_ZONE"):
        env["USAGELEDGER_DEFAULT_TIME_ZONE"] = settings.time_zone
    ledger = open_ledger(home, now_ms=clock(), env=env)
    try:

        def do_scan() -> None:
            summary = scan(
                ledger,
                env=os.environ,
                home=Path.home(),
                clock=clock,
                sources=settings.sources or None,
            )
            if summary.problems:
                runner.record_error(
                    home,
                    assistant,
                    f"scan: {len(summary.problems)} line(s) or file(s) "
                    "could not be read; `usageledger scan` lists them",
                )

        def do_push() -> bool:
            saved = load_login(ledger.home)
            if saved is None:
                return False
            from usageledger.tracker.push import PushError, push

            try:
                push(ledger, saved, clock=clock)
            except PushError as exc:
                runner.record_error(home, assistant, f"push: {exc.message}")
            return True

        runner.run_worker(home, scan=do_scan, push=do_push, clock=clock)
    finally:
        ledger.close()


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [config_group, init, hook]
