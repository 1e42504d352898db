"""`usageledger init` and `usageledger hook` against home directories that hold user settings."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.tracker.conftest import Clock
from usageledger.cli.root import main
from usageledger.tracker import init as setup
from usageledger.tracker.hook import last_errors, record_error, run_worker

EXE = ["/opt/bin/usageledger"]
CLAUDE = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]},
    "statusLine": {"type": "command", "command": "my-line"},
}
CODEX = """\
# my codex settings
model = "gpt-5"   # the best one
notify = ["python3", "/home/me/notify.py"]

[projects."/src"]
trust_level = "trusted"
"""
GEMINI = '{\n    "theme": "Dracula",\n    "hooks": {"SessionEnd": []}\n}\n'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home where Claude Code, Codex, Gemini CLI and Opencode already have settings."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(CLAUDE, indent=2) + "\n")
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(CODEX)
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(GEMINI)
    (home / ".config" / "opencode").mkdir(parents=True)
    return home


def paths(home: Path) -> setup.Paths:
    """The assistants' paths in ``home`` (no variables)."""
    return setup.Paths(home, {})


def install(home: Path, data: Path, **options: Any) -> list[setup.Change]:
    """Plan and apply init for every detected assistant."""
    found = setup.detected(paths(home))
    changes = setup.plan(paths(home), EXE, assistants=found, **options)
    return setup.apply(changes, data)


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under ``home`` and its bytes."""
    return {str(p): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def test_it_detects_the_assistants_whose_folders_exist(home: Path, tmp_path: Path) -> None:
    """The four assistants are found; an empty home has none."""
    assert setup.detected(paths(home)) == ["claude", "codex", "gemini", "opencode"]
    assert setup.detected(paths(tmp_path / "nobody")) == []


def test_claude_gets_session_end_and_stop_hooks_and_keeps_everything_else(
    home: Path, tmp_path: Path
) -> None:
    """Its hooks are added beside the user's; model, permissions and statusLine stay."""
    install(home, tmp_path / "data", statusline=True)
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    command = "/opt/bin/usageledger hook claude"
    assert settings["model"] == "opus"
    assert settings["permissions"] == CLAUDE["permissions"]
    assert settings["statusLine"] == CLAUDE["statusLine"]  # the user's own line wins
    assert settings["hooks"]["Stop"][0] == CLAUDE["hooks"]["Stop"][0]
    assert settings["hooks"]["Stop"][1] == {"hooks": [{"type": "command", "command": command}]}
    assert settings["hooks"]["SessionEnd"] == [{"hooks": [{"type": "command", "command": command}]}]
    assert list(settings) == list(CLAUDE)


def test_the_statusline_is_set_only_on_opt_in_and_when_free(tmp_path: Path) -> None:
    """A Claude Code without a statusLine gets `usageledger statusline` when asked."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    setup.apply(setup.plan(paths(home), EXE, assistants=["claude"]), tmp_path / "d1")
    assert "statusLine" not in json.loads((home / ".claude" / "settings.json").read_text())
    setup.apply(
        setup.plan(paths(home), EXE, assistants=["claude"], statusline=True), tmp_path / "d1"
    )
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["statusLine"] == {
        "type": "command",
        "command": "/opt/bin/usageledger statusline",
    }


def test_codex_notify_chains_the_existing_notifier_and_keeps_comments(
    home: Path, tmp_path: Path
) -> None:
    """notify runs the hook, then the old notifier; comments, keys and tables stay."""
    install(home, tmp_path / "data")
    text = (home / ".codex" / "config.toml").read_text()
    assert "# my codex settings" in text
    assert 'model = "gpt-5"   # the best one' in text
    parsed = tomllib.loads(text)
    assert parsed["notify"] == [
        "/opt/bin/usageledger",
        "hook",
        "codex",
        "--",
        "python3",
        "/home/me/notify.py",
    ]
    assert parsed["projects"] == {"/src": {"trust_level": "trusted"}}


def test_the_chained_notifier_gets_the_same_argument(tmp_path: Path) -> None:
    """`hook codex -- prog ARG JSON` runs prog with ARG and the JSON Codex passed."""
    out = tmp_path / "got.txt"
    script = tmp_path / "notifier.py"
    script.write_text(f"import sys\nopen({str(out)!r}, 'w').write(repr(sys.argv[1:]))\n")
    env = {"USAGELEDGER_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    import sys

    payload = '{"type": "agent-turn-complete"}'
    result = CliRunner().invoke(
        main,
        ["hook", "--wait", "codex", "--", sys.executable, str(script), "x", payload],
        env={**env, "USAGELEDGER_HOME": str(tmp_path / "data")},
    )
    assert result.exit_code == 0
    import time

    for _ in range(100):
        if out.exists() and out.read_text():
            break
        time.sleep(0.05)
    assert out.read_text() == repr(["x", payload])


def test_gemini_gets_its_hooks_and_opencode_a_plugin(home: Path, tmp_path: Path) -> None:
    """Gemini's settings keep the theme; Opencode's plugin folder gets usageledger.js."""
    install(home, tmp_path / "data")
    gemini = json.loads((home / ".gemini" / "settings.json").read_text())
    assert gemini["theme"] == "Dracula"
    hook = {"type": "command", "command": "/opt/bin/usageledger hook gemini", "name": "usageledger"}
    assert gemini["hooks"]["SessionEnd"] == [{"hooks": [hook]}]
    assert gemini["hooks"]["AfterAgent"] == [{"hooks": [hook]}]
    assert (home / ".gemini" / "settings.json").read_text().startswith('{\n    "theme"')
    plugin = (home / ".config" / "opencode" / "plugins" / "usageledger.js").read_text()
    assert "session.idle" in plugin
    assert '"/opt/bin/usageledger", ["hook", "opencode"]' in plugin


def test_a_second_run_changes_nothing(home: Path, tmp_path: Path) -> None:
    """After init, a new plan has no change and applying it writes no file."""
    install(home, tmp_path / "data", statusline=True)
    before = snapshot(home)
    again = setup.plan(paths(home), EXE, assistants=setup.detected(paths(home)), statusline=True)
    assert [c.path for c in again if c.changed] == []
    assert setup.apply(again, tmp_path / "data") == []
    assert snapshot(home) == before


def test_every_edited_file_is_backed_up(home: Path, tmp_path: Path) -> None:
    """Each file that existed has a .usageledger-backup copy of its original bytes."""
    original = (home / ".codex" / "config.toml").read_bytes()
    install(home, tmp_path / "data")
    assert (home / ".codex" / "config.toml.usageledger-backup").read_bytes() == original


def test_uninstall_restores_every_untouched_file_byte_for_byte(home: Path, tmp_path: Path) -> None:
    """Install then uninstall: the home is exactly as it was, backups and plugin gone."""
    before = snapshot(home)
    install(home, tmp_path / "data", statusline=True)
    setup.uninstall(tmp_path / "data")
    assert snapshot(home) == before


def test_uninstall_removes_only_its_entries_from_a_file_changed_since(
    home: Path, tmp_path: Path
) -> None:
    """A setting added after init stays; init's hooks go; the chained notifier comes back."""
    install(home, tmp_path / "data")
    path = home / ".claude" / "settings.json"
    settings = json.loads(path.read_text())
    settings["theme"] = "dark"
    path.write_text(json.dumps(settings, indent=2))
    codex = home / ".codex" / "config.toml"
    codex.write_text(codex.read_text() + "\n# added later\n")
    setup.uninstall(tmp_path / "data")
    after = json.loads(path.read_text())
    assert after["theme"] == "dark"
    assert after["hooks"] == CLAUDE["hooks"]
    text = codex.read_text()
    assert "# added later" in text
    assert tomllib.loads(text)["notify"] == ["python3", "/home/me/notify.py"]


def test_a_change_made_between_two_inits_survives_uninstall(home: Path, tmp_path: Path) -> None:
    """The backup is the file before the first init: once the user changed the file and a
    later init wrote it again, uninstall takes out only init's entries, never the user's."""
    install(home, tmp_path / "data")
    path = home / ".claude" / "settings.json"
    settings = json.loads(path.read_text())
    settings["userAddedLater"] = True
    del settings["hooks"]["SessionEnd"]  # so that the second init has something to write
    path.write_text(json.dumps(settings, indent=2))
    assert [c.path for c in install(home, tmp_path / "data")] == [path]
    setup.uninstall(tmp_path / "data")
    after = json.loads(path.read_text())
    assert after["userAddedLater"] is True
    assert after["hooks"] == CLAUDE["hooks"]


def test_a_settings_file_of_blanks_is_treated_as_empty(home: Path, tmp_path: Path) -> None:
    """A settings.json holding only white space is an empty object, not a traceback."""
    (home / ".claude" / "settings.json").write_text("\n  \n")
    install(home, tmp_path / "data")
    hooks = json.loads((home / ".claude" / "settings.json").read_text())["hooks"]
    assert {"SessionEnd", "Stop"} <= set(hooks)


@pytest.mark.parametrize(
    ("relative", "content", "words"),
    [
        (".claude/settings.json", '{"hooks": [', "not valid JSON"),
        (".claude/settings.json", "[1, 2]", "expected a JSON object"),
        (".claude/settings.json", '{"hooks": {"Stop": "x"}}', "hooks.Stop is not a list"),
        (".codex/config.toml", "model = [", "not valid TOML"),
        (".codex/config.toml", 'notify = "say"', "not a list of strings"),
        (".gemini/settings.json", '{"hooks": 3}', "'hooks' is not an object"),
    ],
)
def test_a_malformed_file_is_a_clear_error_and_nothing_changes(
    home: Path, tmp_path: Path, relative: str, content: str, words: str
) -> None:
    """`init --yes` exits 2 naming the file and the problem; no file in the home changes."""
    (home / relative).write_text(content)
    before = snapshot(home)
    env = {"HOME": str(home), "USAGELEDGER_HOME": str(tmp_path / "data")}
    result = CliRunner().invoke(main, ["init", "--yes", "--no-timer"], env=env)
    assert result.exit_code == 2
    assert str(home / relative) in result.stderr
    assert words in result.stderr
    assert "nothing was changed" in result.stderr
    assert snapshot(home) == before


def test_init_shows_the_plan_and_asks_first(home: Path, tmp_path: Path) -> None:
    """Answering no changes nothing; --yes applies; a second --yes has nothing to change."""
    before = snapshot(home)
    env = {"HOME": str(home), "USAGELEDGER_HOME": str(tmp_path / "data")}
    declined = CliRunner().invoke(main, ["init", "--no-timer"], env=env, input="n\n")
    assert declined.exit_code == 1
    assert str(home / ".codex" / "config.toml") in declined.stdout
    assert snapshot(home) == before
    applied = CliRunner().invoke(main, ["init", "--no-timer", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    assert "changed 4 file(s)" in applied.stdout
    again = CliRunner().invoke(main, ["init", "--no-timer", "--yes"], env=env)
    assert "nothing to change" in again.stdout
    undone = CliRunner().invoke(main, ["init", "--uninstall"], env=env)
    assert undone.exit_code == 0
    assert snapshot(home) == before


def test_the_systemd_timer_files_and_the_crontab_line() -> None:
    """The timer runs the hook in the foreground every 15 minutes; so does the cron line."""
    changes = setup.timer_changes(setup.Paths(Path("/h"), {}), EXE)
    service, timer = (c.after.decode() for c in changes)
    assert "ExecStart=/opt/bin/usageledger hook --wait timer" in service
    assert "OnUnitActiveSec=15min" in timer
    cron = setup.crontab_line(EXE)
    assert cron == "*/15 * * * * /opt/bin/usageledger hook --wait timer"
    # What the hook command makes of those words: the foreground run, not a detached worker
    # (an option after the assistant's name would be passed on to a chained notifier).
    from usageledger.cli.setup import hook

    for command in (service.split("ExecStart=")[1].splitlines()[0], cron.split(" ", 5)[5]):
        words = shlex.split(command)[2:]  # after the executable and "hook"
        params = hook.make_context("hook", words).params
        assert (params["assistant"], params["wait"]) == ("timer", True), command


def test_a_busy_lock_leaves_a_pending_mark_that_the_holder_scans_for(tmp_path: Path) -> None:
    """A worker that finds the lock taken returns at once; the holder scans once more."""
    scans: list[str] = []

    def scan_and_call_again() -> None:
        scans.append("scan")
        if len(scans) == 1:
            outcome = run_worker(tmp_path, scan=lambda: None, push=lambda: False, clock=Clock())
            scans.append(outcome)

    run_worker(tmp_path, scan=scan_and_call_again, push=lambda: False, clock=Clock())
    assert scans == ["scan", "busy", "scan"]


def test_pushes_are_debounced(tmp_path: Path) -> None:
    """Two runs a minute apart push once; a run past the interval pushes again."""
    pushes: list[int] = []
    clock = Clock()

    def push() -> bool:
        pushes.append(clock.now)
        return True

    assert run_worker(tmp_path, scan=lambda: None, push=push, clock=clock) == "pushed"
    clock.now += 60_000
    assert run_worker(tmp_path, scan=lambda: None, push=push, clock=clock) == "scanned"
    clock.now += 5 * 60_000
    assert run_worker(tmp_path, scan=lambda: None, push=push, clock=clock) == "pushed"
    assert len(pushes) == 2


def test_a_failing_hook_exits_0_and_its_error_shows_in_status(tmp_path: Path) -> None:
    """A ledger that cannot be opened: the hook still exits 0; status lists the error."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "ledger.db").write_text("not a database")
    env = {"HOME": str(tmp_path), "USAGELEDGER_HOME": str(data)}
    result = CliRunner().invoke(main, ["hook", "--wait", "claude"], env=env)
    assert result.exit_code == 0
    assert last_errors(data)[-1]["where"] == "claude"
    (data / "ledger.db").unlink()
    shown = CliRunner().invoke(main, ["status", "--json"], env=env)
    assert json.loads(shown.stdout)["hook_errors"][-1]["where"] == "claude"


def test_only_the_last_errors_are_kept(tmp_path: Path) -> None:
    """The error list keeps the ten newest."""
    for i in range(15):
        record_error(tmp_path, "claude", f"error {i}", now_ms=i)
    assert [e["message"] for e in last_errors(tmp_path)] == [f"error {i}" for i in range(5, 15)]


def test_uninstall_removes_the_plugins_folder_init_created(home: Path, tmp_path: Path) -> None:
    """Opencode's plugins/ made by init goes with the plugin; .config/opencode stays."""
    install(home, tmp_path / "data")
    report = setup.uninstall(tmp_path / "data")
    assert not (home / ".config" / "opencode" / "plugins").exists()
    assert (home / ".config" / "opencode").is_dir()
    assert (
        home / ".config" / "opencode" / "plugins",
        "removed (an empty folder init created)",
    ) in (report)


def test_uninstall_keeps_a_plugins_folder_that_existed_or_holds_other_files(
    home: Path, tmp_path: Path
) -> None:
    """A folder there before init, or one that got another file since, is never removed."""
    plugins = home / ".config" / "opencode" / "plugins"
    plugins.mkdir()
    install(home, tmp_path / "data")
    setup.uninstall(tmp_path / "data")
    assert plugins.is_dir()
    plugins.rmdir()
    install(home, tmp_path / "data")
    (plugins / "mine.js").write_text("// the user's own plugin\n")
    setup.uninstall(tmp_path / "data")
    assert [p.name for p in plugins.iterdir()] == ["mine.js"]


def test_the_timer_is_disabled_on_uninstall_only_when_init_installed_it(tmp_path: Path) -> None:
    """No timer: nothing runs, no note. A timer: systemctl disables it where systemd runs;
    without systemd, or when systemctl fails, the command is printed instead."""
    home, data = tmp_path / "home", tmp_path / "data"
    calls: list[tuple[str, ...]] = []

    def run(argv: Any) -> int:
        calls.append(tuple(argv))
        return 0

    setup.apply(setup.plan(paths(home), EXE, assistants=[]), data)
    assert setup.stop_timer(data, systemd=True, run=run) is None
    assert calls == []
    setup.apply(setup.plan(paths(home), EXE, assistants=[], systemd=True), data)
    assert "stopped and disabled" in (setup.stop_timer(data, systemd=True, run=run) or "")
    assert calls == [("systemctl", "--user", "disable", "--now", "usageledger.timer")]
    note = setup.stop_timer(data, systemd=False, run=run)
    assert note == "stop the systemd timer with `systemctl --user disable --now usageledger.timer`"
    assert len(calls) == 1
    assert "stop the systemd timer with" in (
        setup.stop_timer(data, systemd=True, run=lambda a: 1) or ""
    )


def test_uninstall_without_a_timer_says_nothing_of_systemctl(home: Path, tmp_path: Path) -> None:
    """`init --uninstall` after an init without the timer mentions no timer."""
    env = {"HOME": str(home), "USAGELEDGER_HOME": str(tmp_path / "data")}
    assert CliRunner().invoke(main, ["init", "--no-timer", "--yes"], env=env).exit_code == 0
    undone = CliRunner().invoke(main, ["init", "--uninstall"], env=env)
    assert undone.exit_code == 0
    assert "systemctl" not in undone.output
    assert "usageledger.timer" not in undone.output


@pytest.mark.parametrize(
    "executable",
    [["/opt/my tools/usageledger"], ["/opt/my python/bin/python3", "-m", "usageledger"]],
)
def test_an_executable_path_with_a_space_is_recognised_as_init_s_own(
    home: Path, tmp_path: Path, executable: list[str]
) -> None:
    """Its quoted command still counts as init's: a second init adds no duplicate, and an
    uninstall after the user changed the files still takes the entries out."""
    before = snapshot(home)
    found = setup.detected(paths(home))
    for _ in range(2):
        setup.apply(setup.plan(paths(home), executable, assistants=found), tmp_path / "data")
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert len(settings["hooks"]["SessionEnd"]) == 1
    assert len(settings["hooks"]["Stop"]) == 2  # the user's and init's
    notify = tomllib.loads((home / ".codex" / "config.toml").read_text())["notify"]
    assert notify == [*executable, "hook", "codex", "--", "python3", "/home/me/notify.py"]
    settings["theme"] = "dark"  # changed since: uninstall must find init's entries itself
    (home / ".claude" / "settings.json").write_text(json.dumps(settings, indent=2))
    codex = home / ".codex" / "config.toml"
    codex.write_text(codex.read_text() + "# later\n")
    plugin = home / ".config" / "opencode" / "plugins" / "usageledger.js"
    plugin.write_text(plugin.read_text() + "// later\n")
    setup.uninstall(tmp_path / "data")
    assert json.loads((home / ".claude" / "settings.json").read_text())["hooks"] == CLAUDE["hooks"]
    assert tomllib.loads(codex.read_text())["notify"] == ["python3", "/home/me/notify.py"]
    assert not plugin.exists()
    assert snapshot(home).keys() == before.keys()


def test_only_usageledger_itself_running_hook_is_recognised() -> None:
    """The executable's name decides, not a substring anywhere in the command."""
    assert setup.command_runs("'/opt/a b/usageledger' hook claude", "hook")
    assert setup.command_runs("python3 -m usageledger hook --wait timer", "hook")
    assert not setup.command_runs("echo usageledger hook", "hook")
    assert not setup.command_runs("/opt/usageledger-old hook claude", "hook")
    assert not setup.command_runs("usageledger statusline", "hook")
    assert not setup.command_runs("'unclosed", "hook")
