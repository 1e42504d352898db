"""bench/samples.py: the committed samples built into one tree, and each source pointed at it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench.samples import SAMPLE_DIRS, SAMPLES, build_samples, sample_env, source_env
from bench.scan import our_total
from usageledger.sources import PARSERS, parse_whole


def test_every_source_we_parse_has_sample_directories() -> None:
    assert set(SAMPLE_DIRS) == set(PARSERS)


def test_sql_is_built_into_databases_and_everything_else_copied(tmp_path: Path) -> None:
    """A schema runs before each script of its directory; a script without one stands alone."""
    root = tmp_path / "samples"
    (root / "alpha" / "deep").mkdir(parents=True)
    (root / "alpha" / "schema.sql").write_text("CREATE TABLE t (n INTEGER);\n")
    (root / "alpha" / "deep" / "x.sql").write_text(
        "INSERT INTO t VALUES (2);\nINSERT INTO t VALUES (5);\n"
    )
    (root / "beta").mkdir()
    (root / "beta" / "own.sql").write_text(
        "CREATE TABLE u (s TEXT);\nINSERT INTO u VALUES ('a');\n"
    )
    (root / "gamma").mkdir()
    (root / "gamma" / "log.jsonl").write_bytes(b'{"a": 1}\n')

    dest = tmp_path / "built"
    assert build_samples(root, dest) == dest

    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "alpha/deep/x.db",
        "beta/own.db",
        "gamma/log.jsonl",
    ]
    with sqlite3.connect(dest / "alpha" / "deep" / "x.db") as conn:
        assert conn.execute("SELECT sum(n) FROM t").fetchone() == (7,)  # 2 + 5
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    with sqlite3.connect(dest / "beta" / "own.db") as conn:
        assert conn.execute("SELECT s FROM u").fetchall() == [("a",)]
    conn.close()
    assert (dest / "gamma" / "log.jsonl").read_bytes() == b'{"a": 1}\n'


def test_variables_point_into_the_built_tree(tmp_path: Path) -> None:
    built = tmp_path / "built"
    assert source_env("opencode", built) == {
        "OPENCODE_DATA_DIR": f"{built}/opencode,{built}/opencode-backup"
    }
    # The three VS Code extensions share one variable, so one value.
    assert sample_env(built, ["kimi", "cline", "roo-code"]) == {
        "KIMI_DATA_DIR": f"{built}/kimi/share,{built}/kimi/synced,{built}/kimi/code",
        "XDG_CONFIG_HOME": f"{built}/vscode",
    }
    everything = sample_env(built)
    assert everything["CLAUDE_CONFIG_DIR"] == f"{built}/claude"
    assert everything["HERMES_HOME"] == f"{built}/hermes"


def test_with_every_variable_set_each_source_reads_usage_from_the_copy(tmp_path: Path) -> None:
    """All variables at once (as the scan benchmark sets them): every source finds its own
    files in the copy, none in the empty home, and reads usage from them (the SQL ones too)."""
    built = build_samples(SAMPLES, tmp_path / "built")
    home = tmp_path / "home"
    home.mkdir()
    env = sample_env(built)
    for name, parser in PARSERS.items():
        files = list(parser.discover(env, home))
        assert files, name
        assert all(Path(f).is_relative_to(built) for f in files), name
        events = [e for f in files for e in parse_whole(parser, f).events]
        assert events, name


def test_the_scan_benchmark_compares_only_the_corpus_sources_with_ccusage() -> None:
    """With every source present, our report's total holds the samples too: ccusage read only
    Claude and Codex, so only their rows count."""
    report = {
        "days": [
            {
                "total_tokens": 130,
                "models": [
                    {"source": "claude", "model": "a", "total_tokens": 100},
                    {"source": "hermes", "model": "b", "total_tokens": 30},
                ],
            },
            {"total_tokens": 7, "models": [{"source": "codex", "model": "c", "total_tokens": 7}]},
        ],
        "totals": {"total_tokens": 137},
    }
    assert our_total(json.dumps(report)) == 107  # claude 100 + codex 7, not hermes's 30
