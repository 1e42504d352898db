"""``usageledger init``: wire each installed assistant's own hook to a quick, detached scan.

Plan, then apply. :func:`plan` reads every file it would touch and computes the new bytes; a
file it cannot parse stops the whole plan (nothing is written), so a malformed settings file
is a clear error, never a half-edited one. :func:`apply` backs up each file once
(``FILE.usageledger-backup``), writes the new bytes atomically and records what it wrote in
``init.json`` under ``USAGELEDGER_HOME``. :func:`uninstall` restores a file byte for byte
when it still holds exactly what ``init`` wrote; otherwise it removes only ``init``'s own
entries. Only keys and entries whose command runs ``usageledger hook`` (:func:`runs_usageledger`)
are ever ``init``'s: every other setting, hook, key order and TOML comment stays as it was,
and a second run changes nothing.

What each assistant gets (docs/tracker.md lists it exactly):

- Claude Code, ``~/.claude/settings.json``: a command hook on ``SessionEnd`` and ``Stop``,
  and ``statusLine`` when asked for and not already set;
- Codex, ``~/.codex/config.toml``: ``notify``, chaining a notifier already there (it still
  gets every call, with the same argument);
- Gemini CLI, ``~/.gemini/settings.json``: a command hook on ``SessionEnd`` and ``AfterAgent``;
- Opencode, ``~/.config/opencode/plugins/usageledger.js``: a plugin that runs the hook when a
  session goes idle;
- everything else: a user systemd timer every 15 minutes where systemd runs, else a crontab
  line to add by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The first line of every whole file init writes (Opencode's plugin, the systemd units).
WRITTEN_BY = "Written by `usageledger init`"
BACKUP_SUFFIX = ".usageledger-backup"
STATE_FILE = "init.json"
TIMER_MINUTES = 15


class InitError(Exception):
    """A file init must edit cannot be read or parsed (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One file init writes: who it is for, what it adds, its bytes before and after."""

    assistant: str
    path: Path
    summary: str
    before: bytes | None
    after: bytes

    @property
    def changed(self) -> bool:
        """Whether applying it changes the file."""
        return self.before != self.after


@dataclass(frozen=True, slots=True)
class Paths:
    """Where each assistant keeps its settings, from the home directory and the variables."""

    home: Path
    env: Mapping[str, str]

    @property
    def claude(self) -> Path:
        """The Claude Code settings directory."""
        return Path(self.env.get("CLAUDE_CONFIG_DIR") or self.home / ".claude")

    @property
    def codex(self) -> Path:
        """The Codex home."""
        return Path(self.env.get("CODEX_HOME") or self.home / ".codex")

    @property
    def gemini(self) -> Path:
        """The Gemini CLI settings directory."""
        return self.home / ".gemini"

    @property
    def config(self) -> Path:
        """``$XDG_CONFIG_HOME`` or ``~/.config``."""
        return Path(self.env.get("XDG_CONFIG_HOME") or self.home / ".config")

    @property
    def opencode(self) -> Path:
        """Opencode's config directory."""
        return self.config / "opencode"


def hook_command(executable: Sequence[str], assistant: str, *options: str) -> str:
    """The shell command an assistant runs: ``usageledger hook [OPTIONS] ASSISTANT`` (options
    go before the name: everything after it is passed on, to a chained notifier)."""
    return " ".join(shlex.quote(part) for part in [*executable, "hook", *options, assistant])


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InitError(f"{path}: cannot read: {exc.strerror}") from None


def _json_object(path: Path, data: bytes | None) -> dict[str, Any]:
    if data is None or not data.strip():
        return {}
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InitError(f"{path}: not valid JSON ({exc}); fix it, then run init again") from None
    if not isinstance(document, dict):
        raise InitError(f"{path}: expected a JSON object; fix it, then run init again")
    return document


def _dump_json(document: dict[str, Any], before: bytes | None) -> bytes:
    indent = 2
    if before:
        for line in before.decode("utf-8", "replace").splitlines()[1:]:
            stripped = line.lstrip(" ")
            if stripped and len(line) > len(stripped):
                indent = len(line) - len(stripped)
                break
    return (json.dumps(document, indent=indent, ensure_ascii=False) + "\n").encode()


def runs_usageledger(words: Sequence[str], subcommand: str) -> bool:
    """Whether a command's words start ``usageledger SUBCOMMAND``: an executable named
    ``usageledger`` (any folder) or ``-m usageledger``, then the subcommand.

    Words, not text: a path with a space is quoted (``'/opt/my tools/usageledger' hook``),
    so a plain substring test would miss init's own entries and add them again on every run.
    """
    for at, word in enumerate(words):
        if os.path.basename(word) == "usageledger" and (at == 0 or words[at - 1] == "-m"):
            return list(words[at + 1 : at + 2]) == [subcommand]
    return False


def command_runs(command: object, subcommand: str) -> bool:
    """:func:`runs_usageledger` for a shell command line (one that cannot be split: no)."""
    try:
        words = shlex.split(str(command))
    except ValueError:
        return False
    return runs_usageledger(words, subcommand)


def _is_ours(entry: object) -> bool:
    return isinstance(entry, dict) and command_runs(entry.get("command", ""), "hook")


def _add_event_hook(
    hooks: dict[str, Any], event: str, command: str, extra: Mapping[str, Any]
) -> None:
    """Add one command hook group to ``hooks[event]`` unless one of ours is there."""
    groups = hooks.setdefault(event, [])
    if not isinstance(groups, list):
        raise ValueError(f"hooks.{event} is not a list")
    for group in groups:
        if isinstance(group, dict) and any(_is_ours(h) for h in group.get("hooks") or []):
            return
    groups.append({"hooks": [{"type": "command", "command": command, **extra}]})


def _remove_event_hooks(hooks: dict[str, Any]) -> None:
    """Drop our hook entries, the groups they leave empty and the events left empty."""
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                own = [h for h in group["hooks"] if _is_ours(h)]
                if own:
                    group = {**group, "hooks": [h for h in group["hooks"] if not _is_ours(h)]}
                    if not group["hooks"]:
                        continue
            kept.append(group)
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]


def _json_hooks_change(
    assistant: str,
    path: Path,
    events: Sequence[str],
    command: str,
    extra: Mapping[str, Any],
    statusline: str | None = None,
) -> Change:
    before = _read(path)
    document = _json_object(path, before)
    hooks = document.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InitError(f"{path}: 'hooks' is not an object; fix it, then run init again")
    try:
        for event in events:
            _add_event_hook(hooks, event, command, extra)
    except ValueError as exc:
        raise InitError(f"{path}: {exc}; fix it, then run init again") from None
    summary = f"hooks {', '.join(events)} run `{command}`"
    if statusline and "statusLine" not in document:
        document["statusLine"] = {"type": "command", "command": statusline}
        summary += f"; statusLine runs `{statusline}`"
    after = (
        before if before is not None and json.loads(before.strip() or b"{}") == document else None
    )
    return Change(assistant, path, summary, before, after or _dump_json(document, before))


def claude_change(paths: Paths, executable: Sequence[str], statusline: bool) -> Change:
    """Claude Code: ``SessionEnd`` and ``Stop`` hooks (and ``statusLine`` when asked)."""
    line = " ".join(shlex.quote(p) for p in [*executable, "statusline"]) if statusline else None
    return _json_hooks_change(
        "Claude Code",
        paths.claude / "settings.json",
        ("SessionEnd", "Stop"),
        hook_command(executable, "claude"),
        {},
        line,
    )


def gemini_change(paths: Paths, executable: Sequence[str]) -> Change:
    """Gemini CLI: ``SessionEnd`` and ``AfterAgent`` hooks."""
    return _json_hooks_change(
        "Gemini CLI",
        paths.gemini / "settings.json",
        ("SessionEnd", "AfterAgent"),
        hook_command(executable, "gemini"),
        {"name": "usageledger"},
    )


def codex_change(paths: Paths, executable: Sequence[str]) -> Change:
    """Codex: ``notify`` runs the hook, then any notifier that was there, with its argument."""
    import tomlkit

    path = paths.codex / "config.toml"
    before = _read(path)
    try:
        document = tomlkit.parse((before or b"").decode("utf-8"))
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError) as exc:
        raise InitError(f"{path}: not valid TOML ({exc}); fix it, then run init again") from None
    current = document.get("notify")
    if current is not None and (
        not isinstance(current, list) or not all(isinstance(p, str) for p in current)
    ):
        raise InitError(f"{path}: 'notify' is not a list of strings; fix it, then run init again")
    ours = [*executable, "hook", "codex"]
    if current is not None and runs_usageledger(current, "hook"):
        return Change("Codex", path, "notify already runs the hook", before, before or b"")
    chained = list(current or [])
    wanted = [*ours, "--", *chained] if chained else ours
    document["notify"] = wanted
    summary = f"notify = {wanted}"
    if chained:
        summary += f" (your notifier {chained[0]!r} still gets every call)"
    return Change("Codex", path, summary, before, tomlkit.dumps(document).encode())


OPENCODE_PLUGIN = """\
// Written by `usageledger init`; `usageledger init --uninstall` removes it.
// When a session goes idle, run `{command}` (it returns at once).
import {{ spawn }} from "node:child_process";

export const UsageledgerPlugin = async () => ({{
  event: async ({{ event }}) => {{
    if (event.type !== "session.idle") return;
    try {{
      spawn({argv}, {{ detached: true, stdio: "ignore" }}).unref();
    }} catch {{}}
  }},
}});
"""


def opencode_change(paths: Paths, executable: Sequence[str]) -> Change:
    """Opencode: a plugin file in its global plugins folder."""
    path = paths.opencode / "plugins" / "usageledger.js"
    argv = [*executable, "hook", "opencode"]
    text = OPENCODE_PLUGIN.format(
        command=hook_command(executable, "opencode"),
        argv=f"{json.dumps(argv[0])}, {json.dumps(argv[1:])}",
    )
    return Change(
        "Opencode",
        path,
        f"a plugin running `{hook_command(executable, 'opencode')}`",
        _read(path),
        text.encode(),
    )


def timer_changes(paths: Paths, executable: Sequence[str]) -> list[Change]:
    """A user systemd service and timer running the hook every 15 minutes."""
    folder = paths.config / "systemd" / "user"
    # --wait: a oneshot service's processes are stopped when ExecStart returns, so the timer
    # scans in the foreground instead of in a detached worker.
    command = hook_command(executable, "timer", "--wait")
    service = (
        "# Written by `usageledger init`.\n[Unit]\nDescription=usageledger scan (and push)\n\n"
        f"[Service]\nType=oneshot\nExecStart={command}\n"
    )
    timer = (
        "# Written by `usageledger init`.\n[Unit]\nDescription=usageledger every "
        f"{TIMER_MINUTES} minutes\n\n[Timer]\nOnBootSec=2min\nOnUnitActiveSec={TIMER_MINUTES}min\n"
        "Persistent=true\n\n[Install]\nWantedBy=timers.target\n"
    )
    out = []
    for name, text in (("usageledger.service", service), ("usageledger.timer", timer)):
        path = folder / name
        out.append(Change("systemd", path, f"{name} ({command})", _read(path), text.encode()))
    return out


def crontab_line(executable: Sequence[str]) -> str:
    """The crontab line for machines without systemd (init prints it; it edits no crontab)."""
    return f"*/{TIMER_MINUTES} * * * * {hook_command(executable, 'timer', '--wait')}"


def detected(paths: Paths) -> list[str]:
    """The assistants whose settings folder exists in this home."""
    found = []
    if paths.claude.is_dir():
        found.append("claude")
    if paths.codex.is_dir():
        found.append("codex")
    if paths.gemini.is_dir():
        found.append("gemini")
    if paths.opencode.is_dir() or (paths.home / ".local" / "share" / "opencode").is_dir():
        found.append("opencode")
    return found


def plan(
    paths: Paths,
    executable: Sequence[str],
    *,
    assistants: Sequence[str],
    statusline: bool = False,
    systemd: bool = False,
) -> list[Change]:
    """Every file init would write, computed without writing (``InitError`` on a bad file)."""
    changes: list[Change] = []
    if "claude" in assistants:
        changes.append(claude_change(paths, executable, statusline))
    if "codex" in assistants:
        changes.append(codex_change(paths, executable))
    if "gemini" in assistants:
        changes.append(gemini_change(paths, executable))
    if "opencode" in assistants:
        changes.append(opencode_change(paths, executable))
    if systemd:
        changes.extend(timer_changes(paths, executable))
    return changes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".usageledger-tmp")
    temporary.write_bytes(data)
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)


def load_state(home: Path) -> dict[str, Any]:
    """What init wrote: path -> ``{"assistant", "existed", "written"}`` (a SHA-256)."""
    try:
        state: dict[str, Any] = json.loads((home / STATE_FILE).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return state


def _missing_folders(folder: Path) -> list[str]:
    """``folder`` and its ancestors that do not exist yet (writing a file there creates them)."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(str(folder))
        folder = folder.parent
    return missing


def apply(changes: Sequence[Change], data_home: Path) -> list[Change]:
    """Back each file up once, write it and record it; returns the changes made."""
    state = load_state(data_home)
    done = []
    for change in changes:
        key = str(change.path)
        if not change.changed:
            continue
        backup = change.path.with_name(change.path.name + BACKUP_SUFFIX)
        if change.before is not None and key not in state:
            backup.write_bytes(change.before)
        entry = state.get(key) or {
            "assistant": change.assistant,
            "existed": change.before is not None,
        }
        if key in state and (change.before is None or _sha(change.before) != entry.get("written")):
            # Someone changed the file since init last wrote it: the backup (or "init made
            # it") no longer stands for everything that is not ours, so uninstall must only
            # take our entries out.
            entry["restorable"] = False
        created = _missing_folders(change.path.parent)
        _write(change.path, change.after)
        if created:
            # Uninstall removes these again once they are empty (never a folder that was there).
            entry["created_folders"] = sorted({*entry.get("created_folders", []), *created})
        entry["written"] = _sha(change.after)
        state[key] = entry
        done.append(change)
    data_home.mkdir(parents=True, exist_ok=True)
    (data_home / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return done


def uninstall(data_home: Path) -> list[tuple[Path, str]]:
    """Undo init: restore untouched files byte for byte, else remove only its entries."""
    state = load_state(data_home)
    report: list[tuple[Path, str]] = []
    for key, entry in state.items():
        path = Path(key)
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        current = _read(path)
        if current is None:
            report.append((path, "already gone"))
        elif _sha(current) == entry.get("written") and entry.get("restorable", True):
            if entry.get("existed") and backup.exists():
                _write(path, backup.read_bytes())
                report.append((path, "restored from the backup"))
            else:
                path.unlink()
                report.append((path, "removed (init created it)"))
        else:
            report.append((path, _remove_own(path, current)))
        if backup.exists():
            backup.unlink()
    created = {Path(f) for entry in state.values() for f in entry.get("created_folders", [])}
    for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()  # only when empty: a file someone put there keeps it
        except OSError:
            continue
        report.append((folder, "removed (an empty folder init created)"))
    (data_home / STATE_FILE).unlink(missing_ok=True)
    return report


TIMER_OFF = ("systemctl", "--user", "disable", "--now", "usageledger.timer")


def timer_installed(data_home: Path) -> bool:
    """Whether init wrote the systemd timer (so uninstall must stop it too)."""
    return any(Path(key).name == "usageledger.timer" for key in load_state(data_home))


def stop_timer(
    data_home: Path, *, systemd: bool, run: Callable[[Sequence[str]], int]
) -> str | None:
    """Before uninstall removes the unit files: disable the timer init installed.

    ``None`` when init installed no timer. With ``systemd`` (``systemctl`` there and a
    systemd running) ``run`` disables it; when that is impossible or fails, the command is
    returned for the person to run. ``run`` is injected so that this is testable anywhere.
    """
    if not timer_installed(data_home):
        return None
    command = " ".join(TIMER_OFF)
    if systemd and run(TIMER_OFF) == 0:
        return f"stopped and disabled usageledger.timer (`{command}`)"
    return f"stop the systemd timer with `{command}`"


def _remove_own(path: Path, current: bytes) -> str:
    """Remove init's entries from a file edited since (other changes stay)."""
    if path.suffix == ".json":
        try:
            document = _json_object(path, current)
        except InitError as exc:
            return f"left alone: {exc}"
        hooks = document.get("hooks")
        if isinstance(hooks, dict):
            _remove_event_hooks(hooks)
            if not hooks:
                del document["hooks"]
        status = document.get("statusLine")
        command = str(status.get("command", "")) if isinstance(status, dict) else ""
        if command_runs(command, "statusline"):
            del document["statusLine"]
        _write(path, _dump_json(document, current))
        return "changed since init: removed only its entries"
    if path.suffix == ".toml":
        import tomlkit

        try:
            document = tomlkit.parse(current.decode("utf-8"))
        except (tomlkit.exceptions.ParseError, UnicodeDecodeError) as exc:
            return f"left alone: not valid TOML ({exc})"
        notify = document.get("notify")
        parts = [str(p) for p in notify] if isinstance(notify, list) else []
        if runs_usageledger(parts, "hook"):
            chained = parts[parts.index("--") + 1 :] if "--" in parts else []
            if chained:
                document["notify"] = chained
            else:
                del document["notify"]
        _write(path, tomlkit.dumps(document).encode())
        return "changed since init: removed only its notify"
    if WRITTEN_BY in current.decode("utf-8", "replace"):
        path.unlink()
        return "removed (written by init)"
    return "left alone: it no longer runs the hook"
