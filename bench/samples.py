"""Every source's committed sample logs, built into a directory the tools can be pointed at.

The samples live in tests/sources/samples (read here as data files; nothing of ``tests`` is
imported). The SQLite ones are kept as SQL text so a review can read them: ``<top>/schema.sql``
holds the tool's tables and every other ``X.sql`` below ``<top>`` becomes the database ``X.db``
at the same place, in WAL mode as the tools keep them. :func:`build_samples` copies the whole
tree with those databases built; :func:`sample_env` then gives the directory variables that
point each source at its part of the copy: the variables ccusage reads, which ours read too.

Used by ``scripts/compare_ccusage.py`` (each source on its own) and by ``bench.scan
--every-source`` (every source at once, beside the generated Claude and Codex corpus).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The committed samples.
SAMPLES = ROOT / "tests" / "sources" / "samples"

#: Source -> its directory variables -> the sample directories (relative to the samples'
#: root, comma-joined when more than one) each points at. Every source we parse has a row.
SAMPLE_DIRS: dict[str, dict[str, tuple[str, ...]]] = {
    "codex": {"CODEX_HOME": ("codex",)},
    "claude": {"CLAUDE_CONFIG_DIR": ("claude",)},
    "gemini": {"GEMINI_DATA_DIR": ("gemini/tmp",)},
    "opencode": {"OPENCODE_DATA_DIR": ("opencode", "opencode-backup")},
    "qwen": {"QWEN_DATA_DIR": ("qwen",)},
    "kimi": {"KIMI_DATA_DIR": ("kimi/share", "kimi/synced", "kimi/code")},
    "kilo": {"KILO_DATA_DIR": ("kilo",)},
    "droid": {"DROID_SESSIONS_DIR": ("droid/sessions",)},
    "hermes": {"HERMES_HOME": ("hermes",)},
    "goose": {"GOOSE_PATH_ROOT": ("goose",)},
    "pi": {"PI_AGENT_DIR": ("pi/sessions",)},
    "openclaw": {"OPENCLAW_DIR": ("openclaw", "openclaw-legacy")},
    # Ours also reads COPILOT_CONFIG_DIR first; ccusage 20.0.24 reads only COPILOT_HOME.
    "copilot": {"COPILOT_HOME": ("copilot",)},
    "amp": {"AMP_DATA_DIR": ("amp",)},
    "every-code": {"CODE_HOME": ("every-code",)},
    # The VS Code extensions' storage: <XDG_CONFIG_HOME>/Code/User/globalStorage/<extension>.
    "cline": {"XDG_CONFIG_HOME": ("vscode",)},
    "roo-code": {"XDG_CONFIG_HOME": ("vscode",)},
    "kilo-code": {"XDG_CONFIG_HOME": ("vscode",)},
}


def build_samples(samples: Path, dest: Path) -> Path:
    """Copy the samples tree ``samples`` to ``dest`` (new) with each ``X.sql`` built as ``X.db``.

    A top directory's ``schema.sql`` runs first in each of its databases (a script without
    one holds its own tables). No ``.sql`` file is copied. Returns ``dest``.
    """
    shutil.copytree(samples, dest, ignore=shutil.ignore_patterns("*.sql"))
    for top in sorted(p for p in samples.iterdir() if p.is_dir()):
        schema = top / "schema.sql"
        for script in sorted(s for s in top.rglob("*.sql") if s.name != "schema.sql"):
            target = dest / script.relative_to(samples).with_suffix(".db")
            target.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                if schema.is_file():
                    conn.executescript(schema.read_text())
                conn.executescript(script.read_text())
                conn.commit()
            finally:
                conn.close()
    return dest


def source_env(name: str, built: Path) -> dict[str, str]:
    """The directory variables of source ``name``, pointing into the built samples ``built``."""
    return {
        variable: ",".join(str(built / rel) for rel in dirs)
        for variable, dirs in SAMPLE_DIRS[name].items()
    }


def sample_env(built: Path, sources: Iterable[str] | None = None) -> dict[str, str]:
    """The directory variables of ``sources`` (default: every source), into ``built``.

    Sources sharing a variable (the VS Code extensions) share its value.
    """
    env: dict[str, str] = {}
    for name in SAMPLE_DIRS if sources is None else sources:
        env.update(source_env(name, built))
    return env
